//! The OpenAPI 3.1 document of the whole HTTP surface, served at
//! `GET /openapi.json`.
//!
//! Generated at compile time by `utoipa`: the axum handlers carry
//! `#[utoipa::path]` where they are declared (admin, identity provider,
//! live stream, metrics); the Graph paths, which [`super::presence`],
//! [`super::users`] and [`super::subscriptions`] parse by hand behind
//! catch-all routes, are declared here once each, for `/v1.0` under the name
//! Graph gives them. [`Expand`] then derives the rest from the code's own
//! tables: every bound action ([`route::Action::all`]) under `/me/presence`
//! and `/communications/presences/{id}` as well as `/users/{id}/presence`,
//! every `/v1.0` path again under `/beta`, the allowed availability and
//! activity values from the domain, the security requirements and the
//! error responses (Graph's envelope, `Retry-After` on 429 and 503) of each
//! group of operations.
//!
//! The request bodies are the handlers' own serde types ([`super::dto`])
//! deriving `ToSchema`; the responses, which the handlers write directly,
//! are described by the `*Doc` types below. `tests/api/openapi.rs` runs
//! schemathesis against a running server to keep the two honest, and the
//! tests at the bottom check that every route the router serves is
//! documented.

use std::sync::{Arc, OnceLock};

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::Response;
use presenced_domain::{Activity, Availability, WorkLocationType};
use serde::Serialize;
use serde_json::Value;
use utoipa::openapi::path::{Operation, Parameter, PathItem};
use utoipa::openapi::security::{
    AuthorizationCode, Flow, HttpAuthScheme, HttpBuilder, OAuth2, Password, Scopes,
    SecurityRequirement, SecurityScheme,
};
use utoipa::openapi::{
    Content, HeaderBuilder, ObjectBuilder, OpenApi as Document, RefOr, ResponseBuilder, Schema,
};
use utoipa::{Modify, OpenApi, ToSchema};

use super::route::{self, Action};
use super::{RouteName, dto};

/// The document, built once.
pub fn document() -> &'static Document {
    static DOCUMENT: OnceLock<Document> = OnceLock::new();
    DOCUMENT.get_or_init(ApiDoc::openapi)
}

/// `GET /openapi.json`.
#[utoipa::path(get, path = "/openapi.json", tag = "meta",
    responses((status = 200, description = "This document.", content_type = "application/json", body = Object)))]
pub async fn serve() -> Response {
    static JSON: OnceLock<Arc<[u8]>> = OnceLock::new();
    let json = JSON.get_or_init(|| serde_json::to_vec(document()).unwrap_or_default().into());
    let mut response = Response::new(axum::body::Body::from(axum::body::Bytes::from_owner(
        json.clone(),
    )));
    *response.status_mut() = StatusCode::OK;
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    response.extensions_mut().insert(RouteName("/openapi.json"));
    response
}

#[derive(OpenApi)]
#[openapi(
    info(
        title = "presenced",
        description = "A self-hosted server of the Microsoft Graph presence API, its built-in \
            identity provider (shaped like Microsoft Entra ID) and its operator calls. Graph \
            paths are served under `/v1.0` and `/beta` alike. Graph errors use Graph's envelope \
            `{\"error\":{\"code\",\"message\",\"innerError\":{...}}}`; the identity provider's \
            token endpoint answers OAuth2's error format.",
        license(name = "MIT OR Apache-2.0"),
    ),
    paths(
        graph::get_presence,
        graph::get_presences_by_user_id,
        graph::set_presence,
        graph::clear_presence,
        graph::set_user_preferred_presence,
        graph::clear_user_preferred_presence,
        graph::set_status_message,
        graph::set_manual_location,
        graph::set_automatic_location,
        graph::clear_automatic_location,
        graph::clear_location,
        graph::get_me,
        graph::list_users,
        graph::count_users,
        graph::get_user,
        graph::get_my_photo,
        graph::get_my_photo_value,
        graph::get_user_photo,
        graph::get_user_photo_value,
        graph::create_subscription,
        graph::list_subscriptions,
        graph::get_subscription,
        graph::renew_subscription,
        graph::delete_subscription,
        graph::reauthorize_subscription,
        graph::batch,
        graph::batch_encoded,
        super::live::stream,
        board::page,
        board::asset,
        super::admin::healthz,
        super::admin::readyz,
        super::admin::get_clock,
        super::admin::advance_clock,
        super::admin::get_scheduler,
        super::admin::get_status,
        super::admin::put_out_of_office,
        super::admin::delete_user,
        crate::telemetry::scrape_main,
        serve,
        super::oauth::discovery::openid_configuration,
        super::oauth::discovery::keys,
        super::oauth::discovery::instance_discovery,
        super::oauth::discovery::user_realm,
        super::oauth::authorize::authorize_page,
        super::oauth::authorize::authorize_submit,
        super::oauth::authorize::logout,
        super::oauth::token,
    ),
    components(schemas(
        GraphErrorDoc, OAuthErrorDoc, AvailabilityDoc, ActivityDoc, WorkLocationTypeDoc,
        PresenceDoc, PresenceCollectionDoc, UserDoc, UserCollectionDoc, SubscriptionDoc,
        SubscriptionCollectionDoc, BatchRequestDoc, BatchResponseDoc,
    )),
    modifiers(&Expand),
    tags(
        (name = "presence", description = "Graph presence: reads, bulk reads, bound actions."),
        (name = "users", description = "Graph directory reads apps make before presence."),
        (name = "subscriptions", description = "Graph change notifications for presence."),
        (name = "batch", description = "Graph JSON batching."),
        (name = "extensions", description = "Not in Graph: the live stream of presence changes."),
        (name = "board", description = "The presence board for people in a browser (its files)."),
        (name = "admin", description = "Operator calls: health, readiness, status, the manual \
            clock, the stand-ins for calendar and directory management."),
        (name = "identity", description = "The built-in identity provider, shaped like Entra ID \
            (OpenID discovery, keys, MSAL's instance discovery and user realm, sign-in, tokens)."),
        (name = "meta", description = "This document and the metrics."),
    ),
)]
pub struct ApiDoc;

/// Graph's error envelope.
#[derive(Serialize, ToSchema)]
#[schema(as = GraphError, example = json!({"error": {"code": "NotFound",
    "message": "User 'fa8bf3dc-eca7-46b7-bad1-db199b62afc3' was not found.",
    "innerError": {"date": "2026-01-01T00:00:00",
        "request-id": "2b3e4a52-6f1e-4f25-9c8e-2d1d2e3f4a5b",
        "client-request-id": "2b3e4a52-6f1e-4f25-9c8e-2d1d2e3f4a5b"}}}))]
pub struct GraphErrorDoc {
    error: GraphErrorDetailDoc,
}

#[derive(Serialize, ToSchema)]
#[schema(as = GraphErrorDetail)]
#[serde(rename_all = "camelCase")]
pub struct GraphErrorDetailDoc {
    /// Graph's error code, e.g. `BadRequest`, `InvalidAuthenticationToken`,
    /// `Forbidden`, `NotFound`, `TooManyRequests`.
    code: String,
    message: String,
    inner_error: InnerErrorDoc,
}

#[derive(Serialize, ToSchema)]
#[schema(as = InnerError)]
pub struct InnerErrorDoc {
    /// The server's time of the error, `YYYY-MM-DDThh:mm:ss` (UTC).
    date: String,
    #[serde(rename = "request-id")]
    request_id: String,
    /// The client's `client-request-id` header, or the request id.
    #[serde(rename = "client-request-id")]
    client_request_id: String,
}

/// The identity provider's error format (OAuth2, as Entra ID writes it).
#[derive(Serialize, ToSchema)]
#[schema(as = OAuthError)]
pub struct OAuthErrorDoc {
    /// `invalid_request`, `invalid_client`, `invalid_grant`, `unauthorized_client`,
    /// `unsupported_grant_type`, `invalid_scope`, `invalid_tenant`...
    error: String,
    /// `AADSTSnnnnn: ` and a message.
    error_description: String,
    error_codes: Vec<u32>,
    timestamp: String,
    trace_id: String,
    correlation_id: String,
}

/// A presence's availability (the values are the domain's).
#[derive(Serialize, ToSchema)]
#[schema(as = Availability)]
pub struct AvailabilityDoc(String);

/// A presence's activity (the values are the domain's; only certain pairs
/// with an availability are accepted by each action).
#[derive(Serialize, ToSchema)]
#[schema(as = Activity)]
pub struct ActivityDoc(String);

/// A work location type (the values are the domain's).
#[derive(Serialize, ToSchema)]
#[schema(as = WorkLocationType)]
pub struct WorkLocationTypeDoc(String);

/// `microsoft.graph.presence`. Which properties appear follows `$select`;
/// a status message's dates are shown to the user themself only.
#[derive(Serialize, ToSchema)]
#[schema(as = Presence)]
#[serde(rename_all = "camelCase")]
pub struct PresenceDoc {
    /// On a single read: the `$metadata` URL of the entity.
    #[serde(rename = "@odata.context")]
    #[schema(required = false)]
    odata_context: String,
    /// The user's object id.
    #[schema(required = false)]
    id: String,
    #[schema(required = false)]
    availability: AvailabilityDoc,
    #[schema(required = false)]
    activity: ActivityDoc,
    /// `null` when the user has none.
    status_message: Option<PresenceStatusMessageDoc>,
    #[schema(required = false)]
    out_of_office_settings: OutOfOfficeSettingsDoc,
    #[schema(required = false)]
    work_location: WorkLocationDoc,
    /// Orders a user's presence changes: a letter then fixed-width digits.
    #[schema(required = false)]
    sequence_number: String,
}

#[derive(Serialize, ToSchema)]
#[schema(as = PresenceStatusMessage)]
#[serde(rename_all = "camelCase")]
pub struct PresenceStatusMessageDoc {
    message: ItemBodyDoc,
    /// Shown to the user themself only.
    #[schema(required = false)]
    published_date_time: String,
    /// Shown to the user themself only, when the message expires.
    #[schema(required = false)]
    expiry_date_time: DateTimeTimeZoneDoc,
}

#[derive(Serialize, ToSchema)]
#[schema(as = ItemBody)]
#[serde(rename_all = "camelCase")]
pub struct ItemBodyDoc {
    content: String,
    content_type: String,
}

#[derive(Serialize, ToSchema)]
#[schema(as = DateTimeTimeZone)]
#[serde(rename_all = "camelCase")]
pub struct DateTimeTimeZoneDoc {
    date_time: String,
    time_zone: String,
}

#[derive(Serialize, ToSchema)]
#[schema(as = OutOfOfficeSettings)]
#[serde(rename_all = "camelCase")]
pub struct OutOfOfficeSettingsDoc {
    #[schema(required)]
    message: Option<String>,
    is_out_of_office: bool,
}

#[derive(Serialize, ToSchema)]
#[schema(as = WorkLocation)]
#[serde(rename_all = "camelCase")]
pub struct WorkLocationDoc {
    work_location_type: WorkLocationTypeDoc,
    /// `none`, `manual`, `scheduled` or `automatic`.
    source: String,
    #[schema(required)]
    place_id: Option<String>,
}

/// The answer of `getPresencesByUserId`.
#[derive(Serialize, ToSchema)]
#[schema(as = PresenceCollection)]
pub struct PresenceCollectionDoc {
    #[serde(rename = "@odata.context")]
    odata_context: String,
    value: Vec<PresenceDoc>,
}

/// `microsoft.graph.user`, the properties presenced keeps; which appear
/// follows `$select` (by default Graph's default set).
#[derive(Serialize, ToSchema)]
#[schema(as = User)]
#[serde(rename_all = "camelCase")]
pub struct UserDoc {
    #[serde(rename = "@odata.context")]
    odata_context: Option<String>,
    id: Option<String>,
    user_principal_name: Option<String>,
    display_name: Option<String>,
    given_name: Option<String>,
    surname: Option<String>,
    mail: Option<String>,
    job_title: Option<String>,
    mobile_phone: Option<String>,
    office_location: Option<String>,
    preferred_language: Option<String>,
    business_phones: Option<Vec<String>>,
}

/// A page of users; `@odata.nextLink` names the next page.
#[derive(Serialize, ToSchema)]
#[schema(as = UserCollection)]
pub struct UserCollectionDoc {
    #[serde(rename = "@odata.context")]
    odata_context: String,
    /// With `$count=true` (and `ConsistencyLevel: eventual`).
    #[serde(rename = "@odata.count")]
    odata_count: Option<u64>,
    #[serde(rename = "@odata.nextLink")]
    odata_next_link: Option<String>,
    value: Vec<UserDoc>,
}

/// `microsoft.graph.subscription`.
#[derive(Serialize, ToSchema)]
#[schema(as = Subscription)]
#[serde(rename_all = "camelCase")]
pub struct SubscriptionDoc {
    #[serde(rename = "@odata.context")]
    odata_context: Option<String>,
    id: String,
    resource: String,
    application_id: String,
    change_type: String,
    client_state: Option<String>,
    notification_url: String,
    notification_query_options: Option<String>,
    lifecycle_notification_url: Option<String>,
    expiration_date_time: String,
    creator_id: String,
    include_resource_data: bool,
    latest_supported_tls_version: String,
    encryption_certificate: Option<String>,
    encryption_certificate_id: Option<String>,
    notification_url_app_id: Option<String>,
}

#[derive(Serialize, ToSchema)]
#[schema(as = SubscriptionCollection)]
pub struct SubscriptionCollectionDoc {
    #[serde(rename = "@odata.context")]
    odata_context: String,
    value: Vec<SubscriptionDoc>,
}

/// A JSON batch: up to 20 requests, URLs relative to the version.
#[derive(Serialize, ToSchema)]
#[schema(as = BatchRequest)]
pub struct BatchRequestDoc {
    requests: Vec<BatchRequestItemDoc>,
}

#[derive(Serialize, ToSchema)]
#[schema(as = BatchRequestItem)]
#[serde(rename_all = "camelCase")]
pub struct BatchRequestItemDoc {
    id: String,
    /// `GET`, `POST`, `PATCH`, `PUT` or `DELETE`.
    method: String,
    /// Relative to the version, e.g. `/me/presence`.
    url: String,
    headers: Option<std::collections::HashMap<String, String>>,
    #[schema(value_type = Option<Object>)]
    body: Option<Value>,
    depends_on: Option<Vec<String>>,
}

#[derive(Serialize, ToSchema)]
#[schema(as = BatchResponse)]
pub struct BatchResponseDoc {
    responses: Vec<BatchResponseItemDoc>,
}

#[derive(Serialize, ToSchema)]
#[schema(as = BatchResponseItem)]
pub struct BatchResponseItemDoc {
    id: String,
    status: u16,
    headers: Option<std::collections::HashMap<String, String>>,
    /// The sub-response's JSON body.
    #[schema(value_type = Option<Object>)]
    body: Option<Value>,
}

/// `{"status":"ok"}` or `{"status":"ready"}`.
#[derive(Serialize, ToSchema)]
#[schema(as = Health)]
pub struct HealthDoc {
    status: String,
}

/// The manual clock's reading.
#[derive(Serialize, ToSchema)]
#[schema(as = ClockReading)]
pub struct ClockReadingDoc {
    /// RFC 3339.
    now: String,
}

#[derive(Serialize, ToSchema)]
#[schema(as = SchedulerReport)]
#[serde(rename_all = "camelCase")]
pub struct SchedulerReportDoc {
    now: String,
    processed: u64,
    max_lag_seconds: f64,
    lag_seconds: f64,
    #[schema(required)]
    oldest_due: Option<String>,
}

/// What `presenced status` prints; a figure the store cannot tell cheaply is `null`.
#[derive(Serialize, ToSchema)]
#[schema(as = StatusReport)]
#[serde(rename_all = "camelCase")]
pub struct StatusReportDoc {
    ready: bool,
    version: String,
    store: String,
    #[schema(required)]
    users: Option<u64>,
    #[schema(required)]
    live_sessions: Option<u64>,
    scheduler: StatusSchedulerDoc,
    outbox: StatusOutboxDoc,
}

#[derive(Serialize, ToSchema)]
#[schema(as = StatusScheduler)]
#[serde(rename_all = "camelCase")]
pub struct StatusSchedulerDoc {
    #[schema(required)]
    lag_seconds: Option<f64>,
    max_lag_seconds: f64,
    processed: u64,
    #[schema(required)]
    deadlines_due: Option<u64>,
    deadlines_due_counted_up_to: u64,
}

#[derive(Serialize, ToSchema)]
#[schema(as = StatusOutbox)]
#[serde(rename_all = "camelCase")]
pub struct StatusOutboxDoc {
    #[schema(required)]
    entries: Option<u64>,
    #[schema(required)]
    oldest_due_age_seconds: Option<f64>,
}

/// The token endpoint's form (`application/x-www-form-urlencoded`); the
/// client may authenticate with HTTP Basic instead of `client_id` and
/// `client_secret`.
#[derive(Serialize, ToSchema)]
#[schema(as = TokenForm)]
pub struct TokenFormDoc {
    grant_type: GrantTypeDoc,
    client_id: Option<String>,
    client_secret: Option<String>,
    /// `https://graph.microsoft.com/.default` for `client_credentials`.
    scope: Option<String>,
    username: Option<String>,
    password: Option<String>,
    code: Option<String>,
    redirect_uri: Option<String>,
    code_verifier: Option<String>,
    refresh_token: Option<String>,
}

/// The grants the token endpoint issues tokens for.
#[derive(Serialize, ToSchema)]
#[schema(as = GrantType)]
#[serde(rename_all = "snake_case")]
pub enum GrantTypeDoc {
    ClientCredentials,
    Password,
    AuthorizationCode,
    RefreshToken,
}

#[derive(Serialize, ToSchema)]
#[schema(as = TokenResponse)]
pub struct TokenResponseDoc {
    /// `Bearer`.
    token_type: String,
    scope: Option<String>,
    expires_in: i64,
    ext_expires_in: i64,
    /// A JWT (RS256) for Graph's audience.
    access_token: String,
    refresh_token: Option<String>,
    refresh_token_expires_in: Option<i64>,
    id_token: Option<String>,
    client_info: Option<String>,
}

/// OpenID Connect discovery (the members Entra ID's document has).
#[derive(Serialize, ToSchema)]
#[schema(as = OpenIdConfiguration)]
pub struct OpenIdConfigurationDoc {
    issuer: String,
    token_endpoint: String,
    jwks_uri: String,
    authorization_endpoint: String,
    end_session_endpoint: String,
    grant_types_supported: Vec<String>,
    response_types_supported: Vec<String>,
    code_challenge_methods_supported: Vec<String>,
    id_token_signing_alg_values_supported: Vec<String>,
}

/// A JSON Web Key Set.
#[derive(Serialize, ToSchema)]
#[schema(as = JsonWebKeySet)]
pub struct JsonWebKeySetDoc {
    #[schema(value_type = Vec<Object>)]
    keys: Vec<Value>,
}

/// MSAL's instance discovery answer.
#[derive(Serialize, ToSchema)]
#[schema(as = InstanceDiscovery)]
pub struct InstanceDiscoveryDoc {
    tenant_discovery_endpoint: String,
    #[serde(rename = "api-version")]
    api_version: String,
    #[schema(value_type = Vec<Object>)]
    metadata: Vec<Value>,
}

/// MSAL's user realm answer: every account is a managed one.
#[derive(Serialize, ToSchema)]
#[schema(as = UserRealm)]
pub struct UserRealmDoc {
    ver: String,
    account_type: String,
    domain_name: String,
    cloud_instance_name: String,
    cloud_audience_urn: String,
}

/// The Graph operations, declared once each for `/v1.0` (see [`Expand`]).
/// The functions are never called: the catch-all routes' dispatchers serve
/// these paths.
#[allow(dead_code)]
pub mod graph {
    use super::*;

    const JSON: &str = "application/json";

    /// Get a user's presence.
    #[utoipa::path(get, path = "/v1.0/users/{id}/presence", tag = "presence",
        params(("id" = String, Path, description = "The user's object id (a GUID)."),
            ("$select" = Option<String>, Query, description = "Comma-separated presence properties, or `*`.")),
        responses((status = 200, description = "The presence.", content_type = JSON, body = PresenceDoc)))]
    pub fn get_presence() {}

    /// Get the presences of up to 650 users.
    #[utoipa::path(post, path = "/v1.0/communications/getPresencesByUserId", tag = "presence",
        params(("$select" = Option<String>, Query, description = "Comma-separated presence properties, or `*`.")),
        request_body(content = dto::IdsBody, content_type = JSON),
        responses((status = 200, description = "The presences, in the order asked for.", content_type = JSON, body = PresenceCollectionDoc)))]
    pub fn get_presences_by_user_id() {}

    /// Set the presence of one of the user's app sessions.
    #[utoipa::path(post, path = "/v1.0/users/{id}/presence/setPresence", tag = "presence",
        params(("id" = String, Path, description = "The user's object id (a GUID).")),
        request_body(content = dto::SetPresenceBody, content_type = JSON),
        responses((status = 200, description = "Set.")))]
    pub fn set_presence() {}

    /// Clear an app session's presence.
    #[utoipa::path(post, path = "/v1.0/users/{id}/presence/clearPresence", tag = "presence",
        params(("id" = String, Path, description = "The user's object id (a GUID).")),
        request_body(content = dto::ClearPresenceBody, content_type = JSON),
        responses((status = 200, description = "Cleared.")))]
    pub fn clear_presence() {}

    /// Set the user's preferred presence.
    #[utoipa::path(post, path = "/v1.0/users/{id}/presence/setUserPreferredPresence", tag = "presence",
        params(("id" = String, Path, description = "The user's object id (a GUID).")),
        request_body(content = dto::SetPreferredBody, content_type = JSON),
        responses((status = 200, description = "Set.")))]
    pub fn set_user_preferred_presence() {}

    /// Clear the user's preferred presence.
    #[utoipa::path(post, path = "/v1.0/users/{id}/presence/clearUserPreferredPresence", tag = "presence",
        params(("id" = String, Path, description = "The user's object id (a GUID).")),
        responses((status = 200, description = "Cleared.")))]
    pub fn clear_user_preferred_presence() {}

    /// Set or clear the user's status message.
    #[utoipa::path(post, path = "/v1.0/users/{id}/presence/setStatusMessage", tag = "presence",
        params(("id" = String, Path, description = "The user's object id (a GUID).")),
        request_body(content = dto::SetStatusMessageBody, content_type = JSON),
        responses((status = 200, description = "Set.")))]
    pub fn set_status_message() {}

    /// Set the user's work location for the rest of the day (delegated only).
    #[utoipa::path(post, path = "/v1.0/users/{id}/presence/setManualLocation", tag = "presence",
        params(("id" = String, Path, description = "The user's object id (a GUID).")),
        request_body(content = dto::LocationBody, content_type = JSON),
        responses((status = 200, description = "Set.")))]
    pub fn set_manual_location() {}

    /// Set the automatically detected work location (delegated only).
    #[utoipa::path(post, path = "/v1.0/users/{id}/presence/setAutomaticLocation", tag = "presence",
        params(("id" = String, Path, description = "The user's object id (a GUID).")),
        request_body(content = dto::LocationBody, content_type = JSON),
        responses((status = 200, description = "Set.")))]
    pub fn set_automatic_location() {}

    /// Clear the automatically detected work location (delegated only).
    #[utoipa::path(post, path = "/v1.0/users/{id}/presence/clearAutomaticLocation", tag = "presence",
        params(("id" = String, Path, description = "The user's object id (a GUID).")),
        responses((status = 200, description = "Cleared.")))]
    pub fn clear_automatic_location() {}

    /// Clear every work location layer (delegated only).
    #[utoipa::path(post, path = "/v1.0/users/{id}/presence/clearLocation", tag = "presence",
        params(("id" = String, Path, description = "The user's object id (a GUID).")),
        responses((status = 200, description = "Cleared.")))]
    pub fn clear_location() {}

    /// The signed-in user.
    #[utoipa::path(get, path = "/v1.0/me", tag = "users",
        params(("$select" = Option<String>, Query, description = "Comma-separated user properties.")),
        responses((status = 200, description = "The user.", content_type = JSON, body = UserDoc)))]
    pub fn get_me() {}

    /// The tenant's users, a page at a time.
    #[utoipa::path(get, path = "/v1.0/users", tag = "users",
        params(("$select" = Option<String>, Query, description = "Comma-separated user properties."),
            ("$top" = Option<u32>, Query, description = "Page size (1 to 999)."),
            ("$filter" = Option<String>, Query, description = "`eq`, `startswith`, `in`, `and`/`or` on the directory's properties."),
            ("$search" = Option<String>, Query, description = "`\"property:words\"`; needs `ConsistencyLevel: eventual`."),
            ("$orderby" = Option<String>, Query, description = "`displayName` or `userPrincipalName`, `asc` or `desc`."),
            ("$count" = Option<bool>, Query, description = "Adds `@odata.count`; needs `ConsistencyLevel: eventual`."),
            ("$skiptoken" = Option<String>, Query, description = "From `@odata.nextLink`."),
            ("ConsistencyLevel" = Option<String>, Header, description = "`eventual` for `$search` and `$count`.")),
        responses((status = 200, description = "A page of users.", content_type = JSON, body = UserCollectionDoc)))]
    pub fn list_users() {}

    /// How many users the tenant has.
    #[utoipa::path(get, path = "/v1.0/users/$count", tag = "users",
        params(("ConsistencyLevel" = Option<String>, Header, description = "Must be `eventual`.")),
        responses((status = 200, description = "The count, as text.", content_type = "text/plain", body = String)))]
    pub fn count_users() {}

    /// A user by object id or user principal name.
    #[utoipa::path(get, path = "/v1.0/users/{id}", tag = "users",
        params(("id" = String, Path, description = "Object id or user principal name."),
            ("$select" = Option<String>, Query, description = "Comma-separated user properties.")),
        responses((status = 200, description = "The user.", content_type = JSON, body = UserDoc)))]
    pub fn get_user() {}

    /// The signed-in user's photo: none is stored (404 `ImageNotFound`).
    #[utoipa::path(get, path = "/v1.0/me/photo", tag = "users", responses())]
    pub fn get_my_photo() {}

    /// The signed-in user's photo: none is stored (404 `ImageNotFound`).
    #[utoipa::path(get, path = "/v1.0/me/photo/$value", tag = "users", responses())]
    pub fn get_my_photo_value() {}

    /// A user's photo: none is stored (404 `ImageNotFound`).
    #[utoipa::path(get, path = "/v1.0/users/{id}/photo", tag = "users",
        params(("id" = String, Path, description = "Object id or user principal name.")), responses())]
    pub fn get_user_photo() {}

    /// A user's photo: none is stored (404 `ImageNotFound`).
    #[utoipa::path(get, path = "/v1.0/users/{id}/photo/$value", tag = "users",
        params(("id" = String, Path, description = "Object id or user principal name.")), responses())]
    pub fn get_user_photo_value() {}

    /// Subscribe to presence changes (validates the notification URL first).
    #[utoipa::path(post, path = "/v1.0/subscriptions", tag = "subscriptions",
        request_body(content = super::super::subscriptions::SubscriptionBody, content_type = JSON),
        responses((status = 201, description = "Created.", content_type = JSON, body = SubscriptionDoc)))]
    pub fn create_subscription() {}

    /// The calling app's subscriptions.
    #[utoipa::path(get, path = "/v1.0/subscriptions", tag = "subscriptions",
        responses((status = 200, description = "The subscriptions.", content_type = JSON, body = SubscriptionCollectionDoc)))]
    pub fn list_subscriptions() {}

    /// One subscription.
    #[utoipa::path(get, path = "/v1.0/subscriptions/{id}", tag = "subscriptions",
        params(("id" = String, Path, description = "The subscription's id.")),
        responses((status = 200, description = "The subscription.", content_type = JSON, body = SubscriptionDoc)))]
    pub fn get_subscription() {}

    /// Renew a subscription (a new `expirationDateTime`).
    #[utoipa::path(patch, path = "/v1.0/subscriptions/{id}", tag = "subscriptions",
        params(("id" = String, Path, description = "The subscription's id.")),
        request_body(content = super::super::subscriptions::SubscriptionBody, content_type = JSON),
        responses((status = 200, description = "Renewed.", content_type = JSON, body = SubscriptionDoc)))]
    pub fn renew_subscription() {}

    /// Delete a subscription.
    #[utoipa::path(delete, path = "/v1.0/subscriptions/{id}", tag = "subscriptions",
        params(("id" = String, Path, description = "The subscription's id.")),
        responses((status = 204, description = "Deleted.")))]
    pub fn delete_subscription() {}

    /// Reauthorize a subscription after `reauthorizationRequired`.
    #[utoipa::path(post, path = "/v1.0/subscriptions/{id}/reauthorize", tag = "subscriptions",
        params(("id" = String, Path, description = "The subscription's id.")),
        responses((status = 204, description = "Reauthorized.")))]
    pub fn reauthorize_subscription() {}

    /// Up to 20 requests in one; each is authenticated and throttled on its own.
    #[utoipa::path(post, path = "/v1.0/$batch", tag = "batch",
        request_body(content = BatchRequestDoc, content_type = JSON),
        responses((status = 200, description = "One response per request.", content_type = JSON, body = BatchResponseDoc)))]
    pub fn batch() {}

    /// `$batch` with the `$` percent-encoded, as some clients send it.
    #[utoipa::path(post, path = "/v1.0/%24batch", tag = "batch",
        request_body(content = BatchRequestDoc, content_type = JSON),
        responses((status = 200, description = "One response per request.", content_type = JSON, body = BatchResponseDoc)))]
    pub fn batch_encoded() {}
}

/// The presence board's files ([`super::board`]), declared here so that its
/// module stays about the page. Never called.
#[allow(dead_code)]
pub mod board {
    /// The board's page, for browsers; API clients get Graph's 404.
    #[utoipa::path(get, path = "/", tag = "board",
        params(("Accept" = Option<String>, Header, description = "The page is sent when it names `text/html`."),
            ("If-None-Match" = Option<String>, Header, description = "An `ETag` of the page.")),
        responses((status = 200, description = "The page.", content_type = "text/html", body = String),
            (status = 304, description = "The page has not changed."),
            (status = 404, description = "The request does not accept `text/html`.")))]
    pub fn page() {}

    /// One of the board's files (`index.html`, `board.js`, `board.css`, `icon.svg`).
    #[utoipa::path(get, path = "/board/{file}", tag = "board",
        params(("file" = String, Path, description = "The file's name."),
            ("If-None-Match" = Option<String>, Header, description = "The file's `ETag`.")),
        responses((status = 200, description = "The file.", content(
                (String = "text/html"), (String = "text/javascript"), (String = "text/css"),
                (String = "image/svg+xml"))),
            (status = 304, description = "The file has not changed."),
            (status = 404, description = "No such file.")))]
    pub fn asset() {}
}

/// Derives what the declarations leave to the code's own tables; see the
/// module's documentation.
struct Expand;

/// Which operations need a bearer token, by tag, and which error statuses
/// each group answers with Graph's envelope.
const GRAPH_ERRORS: &[u16] = &[400, 401, 403, 404, 405, 408, 413, 415, 429, 431, 500, 503];
const ADMIN_WRITE_ERRORS: &[u16] = &[400, 401, 403, 404, 405, 408, 413, 415, 429, 431, 503];
const OPEN_ERRORS: &[u16] = &[400, 404, 405, 408, 429, 431, 503];

impl Modify for Expand {
    fn modify(&self, doc: &mut Document) {
        values(doc);
        security_schemes(doc);
        expand_targets(doc);
        for (path, item) in doc.paths.paths.iter_mut() {
            for (_, operation) in operations(item) {
                let protected = protected(path);
                if protected {
                    operation.security = Some(vec![
                        SecurityRequirement::new("bearer", Vec::<String>::new()),
                        SecurityRequirement::new("entra", Vec::<String>::new()),
                    ]);
                }
                let errors = if path.starts_with("/v1.0/") {
                    GRAPH_ERRORS
                } else if protected {
                    ADMIN_WRITE_ERRORS
                } else {
                    OPEN_ERRORS
                };
                error_responses(operation, errors);
            }
        }
        mirror_beta(doc);
        unique_operation_ids(doc);
    }
}

/// One handler serving several methods (logout) gets one id per method.
fn unique_operation_ids(doc: &mut Document) {
    for item in doc.paths.paths.values_mut() {
        let operations = operations(item);
        if operations.len() < 2 {
            continue;
        }
        for (method, operation) in operations {
            if let Some(id) = operation.operation_id.as_mut() {
                *id = format!("{id}_{method}");
            }
        }
    }
}

/// Fills the value lists of `Availability`, `Activity` and
/// `WorkLocationType` from the domain.
fn values(doc: &mut Document) {
    let Some(components) = doc.components.as_mut() else {
        return;
    };
    let lists: [(&str, Vec<&str>); 3] = [
        (
            "Availability",
            Availability::ALL.iter().map(|a| a.as_str()).collect(),
        ),
        (
            "Activity",
            Activity::ALL.iter().map(|a| a.as_str()).collect(),
        ),
        (
            "WorkLocationType",
            WorkLocationType::ALL.iter().map(|w| w.as_str()).collect(),
        ),
    ];
    for (name, list) in lists {
        let description = components.schemas.get(name).and_then(|s| match s {
            RefOr::T(Schema::Object(o)) => o.description.clone(),
            _ => None,
        });
        let schema = ObjectBuilder::new()
            .schema_type(utoipa::openapi::schema::Type::String)
            .description(description)
            .enum_values(Some(list))
            .build();
        components
            .schemas
            .insert(name.to_string(), RefOr::T(Schema::Object(schema)));
    }
}

fn security_schemes(doc: &mut Document) {
    let components = doc.components.get_or_insert_with(Default::default);
    components.add_security_scheme(
        "bearer",
        SecurityScheme::Http(
            HttpBuilder::new()
                .scheme(HttpAuthScheme::Bearer)
                .bearer_format("JWT")
                .description(Some(
                    "An Entra-shaped access token (RS256 JWT) from the built-in identity \
                     provider or a configured trusted issuer. Application tokens carry `roles` \
                     (Presence.Read.All, Presence.ReadWrite.All), delegated tokens `scp` \
                     (Presence.Read, Presence.Read.All, Presence.ReadWrite).",
                ))
                .build(),
        ),
    );
    let scopes = || {
        Scopes::from_iter([
            (
                "https://graph.microsoft.com/.default",
                "The permissions granted to the app.",
            ),
            ("openid", "Sign in."),
            ("offline_access", "A refresh token."),
        ])
    };
    // Relative URLs resolve against the server. `common` stands for any of
    // the built-in provider's tenants for a user's sign-in, as with Entra ID;
    // client credentials, as with Entra ID, need the tenant's own token
    // endpoint, which no single URL of the document can name.
    let authorize = "/common/oauth2/v2.0/authorize";
    let token = "/common/oauth2/v2.0/token";
    components.add_security_scheme(
        "entra",
        SecurityScheme::OAuth2(OAuth2::with_description(
            [
                Flow::AuthorizationCode(AuthorizationCode::new(authorize, token, scopes())),
                Flow::Password(Password::new(token, scopes())),
            ],
            "The built-in identity provider, shaped like Entra ID: authorization code with \
             PKCE S256, resource owner password and refresh tokens at the URLs below (a \
             tenant id may stand for `common`); client credentials (`grant_type=\
             client_credentials`, `scope=https://graph.microsoft.com/.default`) at the \
             tenant's own `/{tenant}/oauth2/v2.0/token`.",
        )),
    );
}

fn operations(item: &mut PathItem) -> Vec<(&'static str, &mut Operation)> {
    let mut out = Vec::new();
    let PathItem {
        get,
        put,
        post,
        delete,
        patch,
        ..
    } = item;
    for (method, operation) in [
        ("get", get),
        ("put", put),
        ("post", post),
        ("delete", delete),
        ("patch", patch),
    ] {
        if let Some(operation) = operation.as_mut() {
            out.push((method, operation));
        }
    }
    out
}

/// Graph routes and the admin writes take a bearer token; health, status,
/// the clock, the identity provider and this document do not.
fn protected(path: &str) -> bool {
    path.starts_with("/v1.0/") || path.starts_with("/admin/tenants/")
}

fn graph_error_content() -> Content {
    Content::new(Some(RefOr::Ref(utoipa::openapi::Ref::from_schema_name(
        "GraphError",
    ))))
}

/// Adds Graph's envelope to every error status the operation documents and
/// the statuses of `errors` it does not, `Retry-After` on 429 and 503.
fn error_responses(operation: &mut Operation, errors: &[u16]) {
    let responses = &mut operation.responses.responses;
    for &status in errors {
        let key = status.to_string();
        if responses.contains_key(&key) {
            continue;
        }
        let reason = StatusCode::from_u16(status)
            .ok()
            .and_then(|s| s.canonical_reason())
            .unwrap_or("Error");
        responses.insert(
            key,
            RefOr::T(ResponseBuilder::new().description(reason).build()),
        );
    }
    for (status, response) in responses.iter_mut() {
        let Ok(code) = status.parse::<u16>() else {
            continue;
        };
        let RefOr::T(response) = response else {
            continue;
        };
        if code >= 400 && response.content.is_empty() {
            response
                .content
                .insert("application/json".to_string(), graph_error_content());
        }
        if code == 429 || code == 503 {
            response.headers.insert(
                "Retry-After".to_string(),
                HeaderBuilder::new()
                    .schema(RefOr::T(Schema::Object(
                        ObjectBuilder::new()
                            .schema_type(utoipa::openapi::schema::Type::Integer)
                            .build(),
                    )))
                    .description(Some("Seconds to wait before trying again."))
                    .build(),
            );
        }
    }
}

/// The bound actions under every presence path: the declared
/// `/v1.0/users/{id}/presence/{action}` operations are copied under
/// `/me/presence/{action}` and `/communications/presences/{id}/{action}`,
/// and the read under both other forms.
fn expand_targets(doc: &mut Document) {
    let users = "/v1.0/users/{id}/presence";
    let mut added = Vec::new();
    for name in std::iter::once("").chain(Action::all().iter().map(|(_, name)| *name)) {
        let suffix = if name.is_empty() {
            String::new()
        } else {
            format!("/{name}")
        };
        if !name.is_empty() {
            let description = format!(
                "Also served as `.../microsoft.graph.{name}`; action names match without \
                 regard to case."
            );
            if let Some(operation) = doc
                .paths
                .paths
                .get_mut(&format!("{users}{suffix}"))
                .and_then(|item| item.post.as_mut())
            {
                operation.description = Some(description);
            }
        }
        let Some(item) = doc.paths.paths.get(&format!("{users}{suffix}")) else {
            continue;
        };
        let mut me = item.clone();
        for (_, operation) in operations(&mut me) {
            if let Some(parameters) = operation.parameters.as_mut() {
                parameters.retain(|p: &Parameter| p.name != "id");
            }
            rename(operation, "me_");
        }
        added.push((format!("/v1.0/me/presence{suffix}"), me));
        let mut comms = item.clone();
        for (_, operation) in operations(&mut comms) {
            rename(operation, "communications_");
        }
        added.push((
            format!("/v1.0/communications/presences/{{id}}{suffix}"),
            comms,
        ));
    }
    for (path, item) in added {
        doc.paths.paths.insert(path, item);
    }
}

fn rename(operation: &mut Operation, prefix: &str) {
    if let Some(id) = operation.operation_id.as_mut() {
        *id = format!("{prefix}{id}");
    }
}

/// Every `/v1.0` path again under `/beta`, with its own operation ids.
fn mirror_beta(doc: &mut Document) {
    let beta: Vec<(String, PathItem)> = doc
        .paths
        .paths
        .iter()
        .filter_map(|(path, item)| {
            let rest = path.strip_prefix("/v1.0/")?;
            let mut item = item.clone();
            for (_, operation) in operations(&mut item) {
                rename(operation, "beta_");
            }
            Some((format!("/beta/{rest}"), item))
        })
        .collect();
    doc.paths.paths.extend(beta);
}

/// The route templates the router serves, from the code: the axum routes
/// other than the catch-alls, and for those the paths their dispatchers
/// recognise, under both versions. With the method each answers, where the
/// dispatcher tells it (axum's method routers do not; the HTTP test probes
/// those).
pub fn served() -> Vec<(Option<&'static str>, String)> {
    let mut out = Vec::new();
    for path in super::route_paths() {
        if !path.contains("{*rest}") {
            out.push((None, path.to_string()));
        }
    }
    for version in [route::Version::V1, route::Version::Beta] {
        let v = version.as_str();
        for (method, template) in route::templates()
            .into_iter()
            .chain(super::users::templates())
            .chain(super::subscriptions::templates())
        {
            out.push((Some(method), format!("/{v}{template}")));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn method_of(item: &PathItem, method: &str) -> bool {
        match method {
            "GET" => item.get.is_some(),
            "POST" => item.post.is_some(),
            "PUT" => item.put.is_some(),
            "PATCH" => item.patch.is_some(),
            "DELETE" => item.delete.is_some(),
            _ => false,
        }
    }

    #[test]
    fn every_served_route_is_documented() {
        let doc = document();
        for (method, path) in served() {
            let item = doc
                .paths
                .paths
                .get(&path)
                .unwrap_or_else(|| panic!("{path} is served but not documented"));
            if let Some(method) = method {
                assert!(method_of(item, method), "{method} {path} is not documented");
            }
        }
    }

    #[test]
    fn every_error_response_has_graphs_envelope_or_oauths() {
        let doc = document();
        for (path, item) in &doc.paths.paths {
            let mut item = item.clone();
            for (_, operation) in operations(&mut item) {
                for (status, response) in &operation.responses.responses {
                    let RefOr::T(response) = response else {
                        continue;
                    };
                    if status.as_str() >= "400" {
                        assert!(!response.content.is_empty(), "{path} {status} has no body");
                    }
                    if status == "429" {
                        assert!(response.headers.contains_key("Retry-After"), "{path}");
                    }
                }
            }
        }
    }

    #[test]
    fn the_document_is_openapi_3_1_and_names_each_operation_once() {
        let json = serde_json::to_value(document()).unwrap();
        assert!(json["openapi"].as_str().unwrap().starts_with("3.1"));
        let mut ids = std::collections::HashSet::new();
        for (_, item) in json["paths"].as_object().unwrap() {
            for (_, operation) in item.as_object().unwrap() {
                if let Some(id) = operation.get("operationId") {
                    assert!(ids.insert(id.clone()), "{id} twice");
                }
            }
        }
        let availability = &json["components"]["schemas"]["Availability"]["enum"];
        assert!(
            availability
                .as_array()
                .unwrap()
                .contains(&"Available".into())
        );
    }
}
