//! Graph's subscription API for presence (fact sheet §4): create, list,
//! read, renew, delete and reauthorize, under `/v1.0` and `/beta`.
//!
//! This module turns Graph's subscription JSON into a
//! [`Subscription`](crate::notify::subscription::Subscription) and back, and
//! refuses what Graph refuses; the handshake, storage and delivery belong
//! to [`crate::notify`].

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Request, State};
use axum::http::{Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use jiff::Timestamp;
use presenced_domain::Guid;
use presenced_identity::Principal;
use presenced_store::UserKey;
use serde::Deserialize;
use serde_json::{Value, json};

use super::error::ApiError;
use super::presence::{authenticate, parse_json, read_body};
use super::{AppState, RouteName, json_response};
use crate::notify::payload::graph_instant;
use crate::notify::subscription::{
    MAX_CERTIFICATE_ID, MAX_CLIENT_STATE, MAX_IDS, Subscription, clamp_expiry, parse_resource,
};

/// The body of `POST /subscriptions` and `PATCH /subscriptions/{id}`.
/// `POST` needs `changeType` (`updated`), `notificationUrl`, `resource` and
/// `expirationDateTime`; `PATCH` takes `expirationDateTime` only.
#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
#[schema(as = SubscriptionRequest)]
#[serde(rename_all = "camelCase", default)]
pub struct SubscriptionBody {
    change_type: Option<String>,
    notification_url: Option<String>,
    lifecycle_notification_url: Option<String>,
    resource: Option<String>,
    expiration_date_time: Option<String>,
    client_state: Option<String>,
    include_resource_data: Option<bool>,
    encryption_certificate: Option<String>,
    encryption_certificate_id: Option<String>,
}

/// The subscription routes (templates without the version) and the method
/// each answers, as [`dispatch`] serves them.
pub fn templates() -> Vec<(&'static str, String)> {
    [
        ("POST", "/subscriptions"),
        ("GET", "/subscriptions"),
        ("GET", "/subscriptions/{id}"),
        ("PATCH", "/subscriptions/{id}"),
        ("DELETE", "/subscriptions/{id}"),
        ("POST", "/subscriptions/{id}/reauthorize"),
    ]
    .into_iter()
    .map(|(method, path)| (method, path.to_string()))
    .collect()
}

/// What a path under `/subscriptions` names.
enum Target {
    Collection,
    One(String),
    Reauthorize(String),
}

/// Entry point for `/{version}/subscriptions[/{id}[/reauthorize]]`.
pub async fn dispatch(State(state): State<Arc<AppState>>, request: Request) -> Response {
    let (parts, body) = request.into_parts();
    let path = parts.uri.path().to_owned();
    let rest = path
        .trim_start_matches('/')
        .split_once('/')
        .map_or("", |(_, rest)| rest)
        .trim_end_matches('/');
    let segments: Vec<&str> = rest.split('/').collect();
    let target = match segments.as_slice() {
        ["subscriptions"] => Target::Collection,
        ["subscriptions", id] => Target::One((*id).to_owned()),
        ["subscriptions", id, action] if action.eq_ignore_ascii_case("reauthorize") => {
            Target::Reauthorize((*id).to_owned())
        }
        _ => {
            return ApiError::not_found(format!("Resource not found for the path '{path}'."))
                .into_response();
        }
    };
    let (route, result) = match (&target, &parts.method) {
        (Target::Collection, &Method::POST) => {
            ("/subscriptions", create(&state, &parts, body).await)
        }
        (Target::Collection, &Method::GET) => ("/subscriptions", list(&state, &parts).await),
        (Target::One(id), &Method::GET) => {
            ("/subscriptions/{id}", get_one(&state, &parts, id).await)
        }
        (Target::One(id), &Method::PATCH) => {
            ("/subscriptions/{id}", renew(&state, &parts, body, id).await)
        }
        (Target::One(id), &Method::DELETE) => {
            ("/subscriptions/{id}", delete(&state, &parts, id).await)
        }
        (Target::Reauthorize(id), &Method::POST) => (
            "/subscriptions/{id}/reauthorize",
            reauthorize(&state, &parts, id).await,
        ),
        (target, _) => {
            let allow = match target {
                Target::Collection => "GET, POST",
                Target::One(_) => "GET, PATCH, DELETE",
                Target::Reauthorize(_) => "POST",
            };
            let mut response = ApiError::new(
                StatusCode::METHOD_NOT_ALLOWED,
                "MethodNotAllowed",
                format!(
                    "{} is not allowed on this resource; use {allow}.",
                    parts.method
                ),
            )
            .into_response();
            response
                .headers_mut()
                .insert(header::ALLOW, header::HeaderValue::from_static(allow));
            ("/subscriptions", Ok(response))
        }
    };
    let mut response = result.unwrap_or_else(IntoResponse::into_response);
    response.extensions_mut().insert(RouteName(route));
    response
}

/// A subscription limit of `[limits]` is reached: `403 QuotaLimitReached`
/// (Graph's generic code for a quota, in presence's PascalCase).
fn quota_reached(message: String) -> ApiError {
    ApiError::new(StatusCode::FORBIDDEN, "QuotaLimitReached", message)
}

fn invalid(message: impl Into<String>) -> ApiError {
    ApiError::new(StatusCode::BAD_REQUEST, "InvalidRequest", message)
}

/// Who may subscribe: delegated Presence.Read.All, or (extension)
/// application Presence.Read.All / Presence.ReadWrite.All.
fn authorize(state: &AppState, principal: &Principal) -> Result<(), ApiError> {
    if principal.is_delegated() {
        if principal.has_scope("Presence.Read.All") {
            return Ok(());
        }
        return Err(ApiError::forbidden(
            "Missing permission: presence subscriptions need the delegated permission Presence.Read.All.",
        ));
    }
    if !state.notifier.config.app_subscriptions {
        return Err(ApiError::forbidden(
            "Presence subscriptions need delegated permission Presence.Read.All; application permissions are not supported.",
        ));
    }
    if principal.has_role("Presence.Read.All") || principal.has_role("Presence.ReadWrite.All") {
        Ok(())
    } else {
        Err(ApiError::forbidden(
            "Missing permission: presence subscriptions need the application permission Presence.Read.All or Presence.ReadWrite.All.",
        ))
    }
}

/// The creator id: the signed-in user, or the app's service principal.
fn creator(principal: &Principal) -> String {
    match principal.user.filter(|_| principal.is_delegated()) {
        Some(user) => user.to_string(),
        None => Guid::parse(&principal.app)
            .map(|app| presenced_identity::service_principal_id(principal.tenant, app).to_string())
            .unwrap_or_default(),
    }
}

fn parse_instant(text: &str) -> Result<Timestamp, ApiError> {
    text.parse::<Timestamp>()
        .or_else(|_| {
            text.parse::<jiff::civil::DateTime>()
                .map_err(|_| ())
                .and_then(|dt| jiff::tz::TimeZone::UTC.to_timestamp(dt).map_err(|_| ()))
        })
        .map_err(|_| {
            invalid(format!(
                "expirationDateTime '{text}' is not a date and time such as 2026-01-01T10:00:00Z."
            ))
        })
}

async fn create(
    state: &AppState,
    parts: &axum::http::request::Parts,
    body: axum::body::Body,
) -> Result<Response, ApiError> {
    let principal = authenticate(state, &parts.headers).await?;
    authorize(state, &principal)?;
    let body = read_body(&parts.headers, body).await?;
    let body: SubscriptionBody = parse_json(&parts.headers, &body)?;
    let notifier = &state.notifier;
    let now = state.clock.now();

    match body.change_type.as_deref() {
        Some(kinds) if kinds.split(',').all(|k| k.trim() == "updated") => {}
        Some(other) => {
            return Err(invalid(format!(
                "changeType '{other}' is not supported for presence; use 'updated'."
            )));
        }
        None => return Err(invalid("changeType is required ('updated').")),
    }
    let resource = body
        .resource
        .ok_or_else(|| invalid("resource is required."))?;
    let users = parse_resource(&resource).map_err(|e| invalid(format!("resource: {e}.")))?;
    if users.len() > MAX_IDS && !notifier.config.unlimited_ids {
        return Err(invalid(format!(
            "A presence subscription may name at most {MAX_IDS} ids; {} were sent.",
            users.len()
        )));
    }
    let notification_url = body
        .notification_url
        .ok_or_else(|| invalid("notificationUrl is required."))?;
    let notification = notifier
        .policy
        .check(&notification_url)
        .map_err(|e| invalid(format!("notificationUrl: {e}.")))?;
    let lifecycle = match &body.lifecycle_notification_url {
        None => None,
        Some(url) => Some(
            notifier
                .policy
                .check(url)
                .map_err(|e| invalid(format!("lifecycleNotificationUrl: {e}.")))?,
        ),
    };
    if body
        .client_state
        .as_ref()
        .is_some_and(|s| s.chars().count() > MAX_CLIENT_STATE)
    {
        return Err(invalid(format!(
            "clientState may have at most {MAX_CLIENT_STATE} characters."
        )));
    }
    if body
        .encryption_certificate_id
        .as_ref()
        .is_some_and(|s| s.chars().count() > MAX_CERTIFICATE_ID)
    {
        return Err(invalid(format!(
            "encryptionCertificateId may have at most {MAX_CERTIFICATE_ID} characters."
        )));
    }
    let include_resource_data = body.include_resource_data.unwrap_or(false);
    if include_resource_data {
        let (Some(certificate), Some(_)) = (
            &body.encryption_certificate,
            &body.encryption_certificate_id,
        ) else {
            return Err(invalid(
                "includeResourceData needs encryptionCertificate and encryptionCertificateId.",
            ));
        };
        notifier
            .check_certificate(certificate)
            .map_err(|e| invalid(format!("encryptionCertificate: {e}.")))?;
    }
    let expires = match &body.expiration_date_time {
        Some(text) => clamp_expiry(parse_instant(text)?, now),
        None => return Err(invalid("expirationDateTime is required.")),
    };
    for user in &users {
        let key = UserKey {
            tenant: principal.tenant,
            user: *user,
        };
        if state.store.user(key).await?.is_none() {
            return Err(ApiError::not_found(format!(
                "User '{user}' was not found in tenant '{}'.",
                principal.tenant
            )));
        }
    }
    let creator = creator(&principal);
    let existing = state.store.subscriptions().await?;
    let mut of_this_app = 0;
    for existing in &existing {
        let existing = Subscription::from_record(existing.clone())?;
        if existing.tenant != principal.tenant || *existing.app != *principal.app {
            continue;
        }
        of_this_app += 1;
        if principal.is_delegated() && existing.creator == creator && !existing.is_expired(now) {
            return Err(ApiError::new(
                StatusCode::CONFLICT,
                "Conflict",
                "conflict; Reason: A subscripton already exists. It must be deleted before a another can be made",
            ));
        }
    }
    // Expired subscriptions count until the sweep removes them: they hold
    // storage all the same.
    let limits = &notifier.config;
    if of_this_app >= limits.max_subscriptions_per_app {
        return Err(quota_reached(format!(
            "Subscription limit reached: this application already has {of_this_app} subscriptions \
             in this tenant, the most allowed ({}). Delete one first.",
            limits.max_subscriptions_per_app
        )));
    }
    if existing.len() >= limits.max_subscriptions {
        return Err(quota_reached(format!(
            "Subscription limit reached: the service holds {} subscriptions, the most allowed ({}). \
             Try again later.",
            existing.len(),
            limits.max_subscriptions
        )));
    }

    let handshake_failed = |e: crate::notify::handshake::HandshakeError| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "ValidationError",
            format!(
                "Subscription validation request failed. Notification endpoint must respond with 200 OK to validation request: {e}."
            ),
        )
    };
    notifier
        .handshake(&notification)
        .await
        .map_err(handshake_failed)?;
    if let Some(lifecycle) = &lifecycle {
        notifier
            .handshake(lifecycle)
            .await
            .map_err(handshake_failed)?;
    }

    let subscription = Subscription {
        id: Guid::from_bytes(*uuid::Uuid::new_v4().as_bytes()),
        tenant: principal.tenant,
        users,
        app: principal.app.to_string(),
        creator,
        delegated: principal.is_delegated(),
        resource: resource.trim_start_matches('/').to_owned(),
        notification_url,
        lifecycle_url: body.lifecycle_notification_url,
        expires_ms: expires.as_millisecond(),
        client_state: body.client_state,
        include_resource_data,
        certificate: body.encryption_certificate,
        certificate_id: body.encryption_certificate_id,
        reauthorization_sent: false,
    };
    state
        .store
        .put_subscription(subscription.to_record())
        .await?;
    Ok(entity(StatusCode::CREATED, parts, &subscription))
}

/// Whether the caller may see `subscription`: same tenant and app, and for a
/// delegated caller, its creator.
fn belongs_to(subscription: &Subscription, principal: &Principal) -> bool {
    subscription.tenant == principal.tenant
        && *subscription.app == *principal.app
        && (!principal.is_delegated() || subscription.creator == creator(principal))
}

/// A subscription of the caller's app and tenant (delegated: its creator's), else 404.
async fn owned(
    state: &AppState,
    principal: &Principal,
    id: &str,
) -> Result<Subscription, ApiError> {
    let missing = || ApiError::not_found(format!("The subscription '{id}' does not exist."));
    let guid = Guid::parse(id).ok_or_else(missing)?;
    let record = state.store.subscription(guid).await?.ok_or_else(missing)?;
    let subscription = Subscription::from_record(record)?;
    if !belongs_to(&subscription, principal) || subscription.is_expired(state.clock.now()) {
        return Err(missing());
    }
    Ok(subscription)
}

async fn list(state: &AppState, parts: &axum::http::request::Parts) -> Result<Response, ApiError> {
    let principal = authenticate(state, &parts.headers).await?;
    let now = state.clock.now();
    let mut values = Vec::new();
    for record in state.store.subscriptions().await? {
        let subscription = Subscription::from_record(record)?;
        if belongs_to(&subscription, &principal) && !subscription.is_expired(now) {
            values.push(json_of(&subscription));
        }
    }
    values.sort_by(|a, b| a["id"].as_str().cmp(&b["id"].as_str()));
    let body = json!({
        "@odata.context": format!("{}#subscriptions", metadata(parts)),
        "value": values,
    });
    Ok(json_response(StatusCode::OK, body.to_string().into_bytes()))
}

async fn get_one(
    state: &AppState,
    parts: &axum::http::request::Parts,
    id: &str,
) -> Result<Response, ApiError> {
    let principal = authenticate(state, &parts.headers).await?;
    let subscription = owned(state, &principal, id).await?;
    Ok(entity(StatusCode::OK, parts, &subscription))
}

async fn renew(
    state: &AppState,
    parts: &axum::http::request::Parts,
    body: axum::body::Body,
    id: &str,
) -> Result<Response, ApiError> {
    let principal = authenticate(state, &parts.headers).await?;
    let body: Bytes = read_body(&parts.headers, body).await?;
    let body: SubscriptionBody = parse_json(&parts.headers, &body)?;
    let mut subscription = owned(state, &principal, id).await?;
    let text = body
        .expiration_date_time
        .ok_or_else(|| invalid("expirationDateTime is required."))?;
    let now = state.clock.now();
    subscription.expires_ms = clamp_expiry(parse_instant(&text)?, now).as_millisecond();
    subscription.reauthorization_sent = false;
    state
        .store
        .put_subscription(subscription.to_record())
        .await?;
    Ok(entity(StatusCode::OK, parts, &subscription))
}

async fn delete(
    state: &AppState,
    parts: &axum::http::request::Parts,
    id: &str,
) -> Result<Response, ApiError> {
    let principal = authenticate(state, &parts.headers).await?;
    let subscription = owned(state, &principal, id).await?;
    state.store.delete_subscription(subscription.id).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

async fn reauthorize(
    state: &AppState,
    parts: &axum::http::request::Parts,
    id: &str,
) -> Result<Response, ApiError> {
    let principal = authenticate(state, &parts.headers).await?;
    authorize(state, &principal)?;
    let mut subscription = owned(state, &principal, id).await?;
    subscription.reauthorization_sent = false;
    state
        .store
        .put_subscription(subscription.to_record())
        .await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

fn metadata(parts: &axum::http::request::Parts) -> String {
    let host = parts
        .headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or("localhost");
    let version = if parts.uri.path().starts_with("/beta") {
        "beta"
    } else {
        "v1.0"
    };
    format!("http://{host}/{version}/$metadata")
}

fn entity(status: StatusCode, parts: &axum::http::request::Parts, s: &Subscription) -> Response {
    let mut value = json_of(s);
    if let Some(map) = value.as_object_mut() {
        map.insert(
            "@odata.context".into(),
            Value::String(format!("{}#subscriptions/$entity", metadata(parts))),
        );
    }
    json_response(status, value.to_string().into_bytes())
}

/// A subscription in Graph's shape.
fn json_of(s: &Subscription) -> Value {
    json!({
        "id": s.id.to_string(),
        "resource": s.resource,
        "applicationId": s.app,
        "changeType": "updated",
        "clientState": s.client_state,
        "notificationUrl": s.notification_url,
        "notificationQueryOptions": null,
        "lifecycleNotificationUrl": s.lifecycle_url,
        "expirationDateTime": graph_instant(s.expires()),
        "creatorId": s.creator,
        "includeResourceData": s.include_resource_data,
        "latestSupportedTlsVersion": "v1_2",
        "encryptionCertificate": s.certificate,
        "encryptionCertificateId": s.certificate_id,
        "notificationUrlAppId": null,
    })
}
