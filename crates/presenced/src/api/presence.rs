//! The Graph presence handlers: reads, bulk reads and the bound actions.
//!
//! Every request goes through the same steps, in Graph's order: authenticate
//! (401), refuse personal accounts (403), throttle (429), parse the target id
//! (400), parse and validate the body (400/413/415), check permissions (403),
//! find the user (404), then read or apply.

use std::sync::Arc;

use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use jiff::SignedDuration;
use percent_encoding::percent_decode_str;
use presenced_domain::{
    Activity, Availability, Guid, Mutation, MutationError, NewStatusMessage, PreferredExpiration,
    PreferredState, SessionExpiration, SessionId, SessionState, UserFacts, WorkLocationType,
    derive,
};
use presenced_identity::Principal;
use presenced_store::{ApplyOutcome, KnownFacts, UserKey};
use serde::Deserialize;

use super::authz::{self, Need};
use super::dto::{self, PresenceJson, Selection, Viewer};
use super::error::ApiError;
use super::route::{self, Action, GraphRoute, Target, Version};
use super::{AppState, RouteName, json_response};

/// Bodies larger than this are refused with 413 (decisions.md 21).
pub const MAX_BODY: usize = 1024 * 1024;

/// getPresencesByUserId takes at most this many ids (decisions.md 15).
pub const MAX_IDS: usize = 650;

/// Entry point for everything under `/v1.0` and `/beta`.
pub async fn dispatch(State(state): State<Arc<AppState>>, request: Request) -> Response {
    let (parts, body) = request.into_parts();
    let Some((version, route)) = route::parse(parts.uri.path()) else {
        if let Some((version, route)) = super::users::parse(parts.uri.path()) {
            return super::users::dispatch(&state, version, route, &parts).await;
        }
        return ApiError::not_found(format!(
            "Resource not found for the path '{}'.",
            parts.uri.path()
        ))
        .into_response();
    };
    let mut response = if parts.method.as_str() != route.method() {
        let mut response = ApiError::new(
            StatusCode::METHOD_NOT_ALLOWED,
            "MethodNotAllowed",
            format!(
                "{} is not allowed on this resource; use {}.",
                parts.method,
                route.method()
            ),
        )
        .into_response();
        response
            .headers_mut()
            .insert(header::ALLOW, HeaderValue::from_static(route.method()));
        response
    } else {
        handle(&state, version, &route, &parts, body)
            .await
            .unwrap_or_else(IntoResponse::into_response)
    };
    response
        .extensions_mut()
        .insert(RouteName(route.template()));
    response
}

async fn handle(
    state: &AppState,
    version: Version,
    route: &GraphRoute,
    parts: &Parts,
    body: Body,
) -> Result<Response, ApiError> {
    let principal = authenticate(state, &parts.headers).await?;
    match route {
        GraphRoute::GetPresence(target) => {
            get_presence(state, version, &principal, target, parts).await
        }
        GraphRoute::GetPresencesByUserId => {
            let body = read_body(&parts.headers, body).await?;
            get_presences_by_user_id(state, version, &principal, parts, &body).await
        }
        GraphRoute::Act(target, action) => {
            let body = read_body(&parts.headers, body).await?;
            act(state, &principal, target, *action, &parts.headers, &body).await
        }
    }
}

/// Validates the bearer token, refuses personal accounts and applies the
/// per app per tenant throttle.
pub async fn authenticate(state: &AppState, headers: &HeaderMap) -> Result<Principal, ApiError> {
    let authorization = headers
        .get(header::AUTHORIZATION)
        .map(HeaderValue::as_bytes);
    let principal = state
        .validator
        .validate(authorization)
        .map_err(|e| ApiError::unauthenticated(e.to_string()))?;
    authz::check_account(&principal)?;
    state
        .throttle
        .check(principal.tenant, &principal.app)
        .await
        .map_err(|wait| {
            ApiError::too_many_requests(
                wait,
                format!(
                    "Too many requests from application {} in tenant {}. Please try again later.",
                    principal.app, principal.tenant
                ),
            )
        })?;
    Ok(principal)
}

/// The user a path names, as a GUID of the caller's tenant.
fn resolve(principal: &Principal, target: &Target) -> Result<Guid, ApiError> {
    match target {
        Target::Me => match principal.user.filter(|_| principal.is_delegated()) {
            Some(user) => Ok(user),
            None => Err(ApiError::bad_request(
                "/me request is only valid with delegated authentication flow.",
            )),
        },
        Target::User(id) | Target::Communications(id) => parse_user_id(id),
    }
}

fn parse_user_id(id: &str) -> Result<Guid, ApiError> {
    Guid::parse(id).ok_or_else(|| {
        ApiError::bad_request(format!(
            "'{id}' is not a valid user id: presence needs the user's object id (a GUID), not a user principal name or other name."
        ))
    })
}

fn user_not_found(key: UserKey) -> ApiError {
    ApiError::not_found(format!(
        "User '{}' was not found in tenant '{}'.",
        key.user, key.tenant
    ))
}

fn viewer(principal: &Principal, user: Guid) -> Viewer {
    if principal.is_delegated() && principal.user == Some(user) {
        Viewer::Owner
    } else {
        Viewer::Other
    }
}

async fn get_presence(
    state: &AppState,
    version: Version,
    principal: &Principal,
    target: &Target,
    parts: &Parts,
) -> Result<Response, ApiError> {
    let user = resolve(principal, target)?;
    let selection = selection(parts.uri.query())?;
    let need = if viewer(principal, user) == Viewer::Owner {
        Need::ReadOwn
    } else {
        Need::ReadAny
    };
    authz::authorize(principal, need, user)?;
    let key = UserKey {
        tenant: principal.tenant,
        user,
    };
    let facts = match state.store.known_facts(key).await? {
        KnownFacts::NotInDirectory => return Err(user_not_found(key)),
        KnownFacts::Facts(facts) => facts,
    };
    let facts = facts.as_deref().unwrap_or(&EMPTY);
    let view = derive(facts, state.clock.now(), &state.rules);
    let id = user.to_string();
    let mut context = String::with_capacity(160);
    write_metadata_url(&mut context, parts, version);
    match target {
        Target::Communications(_) => context.push_str("#communications/presences"),
        _ => {
            context.push_str("#users('");
            context.push_str(&id);
            context.push_str("')/presence");
        }
    }
    context.push_str(&selection.context_suffix());
    context.push_str("/$entity");
    let json = PresenceJson {
        context: Some(&context),
        id: &id,
        view: &view,
        selection,
        viewer: viewer(principal, user),
    };
    let mut body = Vec::with_capacity(512);
    json.write(&mut body);
    Ok(json_response(StatusCode::OK, body))
}

static EMPTY: std::sync::LazyLock<UserFacts> = std::sync::LazyLock::new(UserFacts::default);

/// `$select` from the query string; other query options are ignored.
fn selection(query: Option<&str>) -> Result<Selection, ApiError> {
    let Some(query) = query else {
        return Ok(Selection::ALL);
    };
    for pair in query.split('&') {
        let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
        let name = percent_decode_str(name).decode_utf8_lossy();
        if name.eq_ignore_ascii_case("$select") || name.eq_ignore_ascii_case("select") {
            let value = percent_decode_str(&value.replace('+', " "))
                .decode_utf8_lossy()
                .into_owned();
            return Selection::parse(&value).map_err(ApiError::bad_request);
        }
    }
    Ok(Selection::ALL)
}

/// `http://host/v1.0/$metadata`, from the scheme and Host the caller used.
fn metadata_url(parts: &Parts, version: Version) -> String {
    let mut url = String::new();
    write_metadata_url(&mut url, parts, version);
    url
}

/// Appends [`metadata_url`] to `out`.
fn write_metadata_url(out: &mut String, parts: &Parts, version: Version) {
    super::write_context_base(out, parts);
    out.push('/');
    out.push_str(version.as_str());
    out.push_str("/$metadata");
}

async fn get_presences_by_user_id(
    state: &AppState,
    version: Version,
    principal: &Principal,
    parts: &Parts,
    body: &Bytes,
) -> Result<Response, ApiError> {
    let request: dto::IdsBody = parse_json(&parts.headers, body)?;
    let ids = request
        .ids
        .ok_or_else(|| ApiError::invalid_argument("[Ids]: The ids field is required."))?;
    if ids.is_empty() || ids.len() > MAX_IDS {
        return Err(ApiError::invalid_argument(format!(
            "[Ids]: between 1 and {MAX_IDS} ids are allowed; {} were sent.",
            ids.len()
        )));
    }
    let mut users = Vec::with_capacity(ids.len());
    for id in &ids {
        let user = Guid::parse(id).ok_or_else(|| {
            ApiError::invalid_argument(format!("[Ids]: '{id}' is not a valid user id: presence needs the user's object id (a GUID)."))
        })?;
        users.push(user);
    }
    drop(ids);
    first_occurrences(&mut users);
    authz::authorize(principal, Need::ReadAny, Guid::from_u128(0))?;
    let read = state
        .store
        .known_facts_many(principal.tenant, &users)
        .await?;
    let now = state.clock.now();
    let mut out = Vec::with_capacity(64 + users.len() * 400);
    out.extend_from_slice(b"{\"@odata.context\":");
    serde_json::to_writer(
        &mut out,
        &format!(
            "{}#Collection(microsoft.graph.presence)",
            metadata_url(parts, version)
        ),
    )
    .map_err(ApiError::internal)?;
    out.extend_from_slice(b",\"value\":[");
    let mut first = true;
    for (user, read) in users.iter().zip(&read) {
        let KnownFacts::Facts(facts) = read else {
            continue;
        };
        if !first {
            out.push(b',');
        }
        first = false;
        let view = derive(facts.as_deref().unwrap_or(&EMPTY), now, &state.rules);
        let id = user.text();
        let json = PresenceJson {
            context: None,
            id: std::str::from_utf8(&id).map_err(ApiError::internal)?,
            view: &view,
            selection: Selection::ALL,
            viewer: viewer(principal, *user),
        };
        json.write(&mut out);
    }
    out.extend_from_slice(b"]}");
    Ok(json_response(StatusCode::OK, out))
}

/// Keeps the first occurrence of each id, in the order sent: a sort of
/// (id, position) pairs finds the repeats without hashing every id.
fn first_occurrences(users: &mut Vec<Guid>) {
    let mut order: Vec<(Guid, usize)> = users.iter().copied().zip(0..).collect();
    order.sort_unstable();
    let mut keep = vec![true; users.len()];
    let mut repeats = false;
    for pair in order.windows(2) {
        if pair[0].0 == pair[1].0 {
            keep[pair[1].1] = false;
            repeats = true;
        }
    }
    if repeats {
        let mut position = 0;
        users.retain(|_| {
            position += 1;
            keep[position - 1]
        });
    }
}

async fn act(
    state: &AppState,
    principal: &Principal,
    target: &Target,
    action: Action,
    headers: &HeaderMap,
    body: &Bytes,
) -> Result<Response, ApiError> {
    let user = resolve(principal, target)?;
    let mutation = mutation(state, action, headers, body)?;
    let need = if action.is_location() {
        Need::WriteLocation
    } else {
        Need::Write
    };
    authz::authorize(principal, need, user)?;
    let key = UserKey {
        tenant: principal.tenant,
        user,
    };
    let now = state.clock.now();
    let Some(outcome) = state.store.apply_known(key, mutation, now).await? else {
        return Err(user_not_found(key));
    };
    match outcome {
        ApplyOutcome::Applied(applied) => {
            if applied.visible_change {
                state.notifier.changed_user(key, now).await;
            }
            Ok(StatusCode::OK.into_response())
        }
        ApplyOutcome::Refused(refusal) => Err(refused(refusal)),
    }
}

/// The answer to a mutation the domain or the store refused.
pub fn refused(refusal: MutationError) -> ApiError {
    match refusal {
        MutationError::SessionNotFound(_) => ApiError::not_found(refusal.to_string()),
        MutationError::RecordTooLarge { .. } => ApiError::invalid_argument(refusal.to_string()),
    }
}

/// Turns an action's body into a validated domain mutation.
fn mutation(
    state: &AppState,
    action: Action,
    headers: &HeaderMap,
    body: &Bytes,
) -> Result<Mutation, ApiError> {
    Ok(match action {
        Action::SetPresence => {
            let b: dto::SetPresenceBody = parse_json(headers, body)?;
            let id = session_id(b.session_id)?;
            let (availability, activity) = pair(b.availability, b.activity)?;
            let state_ = SessionState::new(availability, activity)
                .map_err(|e| ApiError::invalid_argument(e.to_string()))?;
            let expiration = match b.expiration_duration {
                None => SessionExpiration::DEFAULT,
                Some(text) => SessionExpiration::new(duration(state, &text)?)
                    .map_err(|e| ApiError::invalid_argument(e.to_string()))?,
            };
            Mutation::SetSession {
                id,
                state: state_,
                expiration,
            }
        }
        Action::ClearPresence => {
            let b: dto::ClearPresenceBody = parse_json(headers, body)?;
            Mutation::ClearSession {
                id: session_id(b.session_id)?,
            }
        }
        Action::SetUserPreferredPresence => {
            let b: dto::SetPreferredBody = parse_json(headers, body)?;
            let (availability, activity) = pair(b.availability, b.activity)?;
            let state_ = PreferredState::new(availability, activity)
                .map_err(|e| ApiError::invalid_argument(e.to_string()))?;
            let expiration = match b.expiration_duration {
                None => None,
                Some(text) => Some(
                    PreferredExpiration::new(duration(state, &text)?)
                        .map_err(|e| ApiError::invalid_argument(e.to_string()))?,
                ),
            };
            Mutation::SetPreferred {
                state: state_,
                expiration,
            }
        }
        Action::ClearUserPreferredPresence => {
            let _: serde_json::Value = parse_json_value(headers, body)?;
            Mutation::ClearPreferred
        }
        Action::SetStatusMessage => {
            let b: dto::SetStatusMessageBody = parse_json(headers, body)?;
            let message = match b.status_message {
                None => {
                    return Err(ApiError::invalid_argument(
                        "[StatusMessage]: The statusMessage field is required.",
                    ));
                }
                Some(None) => None,
                Some(Some(m)) => {
                    let item = m.message.unwrap_or_default();
                    let expiry = match &m.expiry_date_time {
                        None => None,
                        Some(e) => Some((
                            e.date_time.as_deref().ok_or_else(|| {
                                ApiError::invalid_argument(
                                    "[ExpiryDateTime]: The dateTime field is required.",
                                )
                            })?,
                            e.time_zone.as_deref().unwrap_or("UTC"),
                        )),
                    };
                    NewStatusMessage::parse(
                        item.content.as_deref().unwrap_or(""),
                        item.content_type.as_deref(),
                        expiry,
                    )
                    .map_err(|e| ApiError::invalid_argument(e.to_string()))?
                }
            };
            Mutation::SetStatusMessage(message)
        }
        Action::SetManualLocation | Action::SetAutomaticLocation => {
            let b: dto::LocationBody = parse_json(headers, body)?;
            let text = b.work_location_type.ok_or_else(|| {
                ApiError::invalid_argument(
                    "[WorkLocationType]: The workLocationType field is required.",
                )
            })?;
            let kind = WorkLocationType::parse(&text)
                .map_err(|e| ApiError::invalid_argument(format!("[WorkLocationType]: {e}")))?;
            let place_id = b.place_id.filter(|p| !p.is_empty());
            if place_id.as_ref().is_some_and(|p| p.chars().count() > 256) {
                return Err(ApiError::invalid_argument(
                    "[PlaceId]: at most 256 characters are allowed.",
                ));
            }
            if action == Action::SetManualLocation {
                Mutation::SetManualLocation { kind, place_id }
            } else {
                Mutation::SetAutomaticLocation { kind, place_id }
            }
        }
        Action::ClearAutomaticLocation => {
            let _: serde_json::Value = parse_json_value(headers, body)?;
            Mutation::ClearAutomaticLocation
        }
        Action::ClearLocation => {
            let _: serde_json::Value = parse_json_value(headers, body)?;
            Mutation::ClearLocation
        }
    })
}

/// A session id: required, and a GUID (Graph's sessionId is the calling
/// application's client id); kept as sent.
fn session_id(id: Option<String>) -> Result<SessionId, ApiError> {
    let text = id.as_deref().unwrap_or("");
    let id = SessionId::parse(text).map_err(|e| ApiError::invalid_argument(e.to_string()))?;
    if presenced_domain::Guid::parse(text).is_none() {
        return Err(ApiError::invalid_argument(
            "[SessionId]: The SessionId field must be a GUID (the calling application's client id), \
             such as 22553876-f5ab-4529-bffb-cfe50aa89f87.",
        ));
    }
    Ok(id)
}

fn pair(
    availability: Option<String>,
    activity: Option<String>,
) -> Result<(Availability, Activity), ApiError> {
    let availability = availability.ok_or_else(|| {
        ApiError::invalid_argument("[Availability]: The Availability field is required.")
    })?;
    let activity = activity
        .ok_or_else(|| ApiError::invalid_argument("[Activity]: The Activity field is required."))?;
    let availability = Availability::parse(&availability)
        .map_err(|e| ApiError::invalid_argument(e.to_string()))?;
    let activity =
        Activity::parse(&activity).map_err(|e| ApiError::invalid_argument(e.to_string()))?;
    Ok((availability, activity))
}

fn duration(state: &AppState, text: &str) -> Result<SignedDuration, ApiError> {
    presenced_domain::duration::parse_duration(text, state.durations)
        .map_err(|e| ApiError::invalid_argument(format!("[ExpirationDuration]: {e}")))
}

/// Reads the whole body, refusing more than [`MAX_BODY`] bytes.
///
/// An oversized body is still read (and dropped) up to [`DRAIN_LIMIT`], so
/// that the client, which is usually still sending, can read the 413 instead
/// of a reset connection.
pub async fn read_body(headers: &HeaderMap, body: Body) -> Result<Bytes, ApiError> {
    use futures_util::StreamExt;
    let too_large = || ApiError::for_status(StatusCode::PAYLOAD_TOO_LARGE);
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > DRAIN_LIMIT as u64) {
        return Err(too_large());
    }
    let mut stream = body.into_data_stream();
    let mut collected = Vec::new();
    let mut seen = 0usize;
    while let Some(chunk) = stream.next().await {
        let chunk =
            chunk.map_err(|_| ApiError::bad_request("The request body could not be read."))?;
        seen += chunk.len();
        if seen <= MAX_BODY {
            collected.extend_from_slice(&chunk);
        } else if seen > DRAIN_LIMIT {
            break;
        }
    }
    if seen > MAX_BODY {
        return Err(too_large());
    }
    Ok(Bytes::from(collected))
}

/// How much of an oversized body is read before answering 413.
const DRAIN_LIMIT: usize = 8 * MAX_BODY;

fn is_json(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|ct| {
            let essence = ct
                .split(';')
                .next()
                .unwrap_or("")
                .trim()
                .to_ascii_lowercase();
            essence == "application/json" || essence.ends_with("+json")
        })
}

/// Parses a JSON body into `T`. An empty body reads as `{}`; a body that is
/// not JSON is 400 under a JSON Content-Type and 415 under any other.
pub fn parse_json<'a, T: Deserialize<'a> + Default>(
    headers: &HeaderMap,
    body: &'a Bytes,
) -> Result<T, ApiError> {
    let value = parse_any(headers, body)?;
    // A body is an object: serde's derived `Deserialize` would also read an
    // array of the fields' values into a struct.
    if body
        .iter()
        .find(|b| !b.is_ascii_whitespace())
        .is_some_and(|b| *b != b'{')
    {
        return Err(ApiError::bad_request(
            "The request body does not have the expected shape: a JSON object is expected.",
        ));
    }
    Ok(value)
}

fn parse_any<'a, T: Deserialize<'a> + Default>(
    headers: &HeaderMap,
    body: &'a Bytes,
) -> Result<T, ApiError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(T::default());
    }
    serde_json::from_slice(body).map_err(|e| json_error(headers, e))
}

fn parse_json_value(headers: &HeaderMap, body: &Bytes) -> Result<serde_json::Value, ApiError> {
    parse_any::<serde_json::Value>(headers, body)
}

fn json_error(headers: &HeaderMap, error: serde_json::Error) -> ApiError {
    use serde_json::error::Category;
    match error.classify() {
        Category::Data => ApiError::bad_request(format!(
            "The request body does not have the expected shape: {error}."
        )),
        _ if is_json(headers) => {
            ApiError::bad_request(format!("The request body is not valid JSON: {error}."))
        }
        _ => ApiError::for_status(StatusCode::UNSUPPORTED_MEDIA_TYPE),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repeated_ids_are_kept_once_where_they_first_appear() {
        let [a, b, c] = [3u128, 1, 2].map(Guid::from_u128);
        let mut users = vec![a, b, a, c, b, b, a];
        first_occurrences(&mut users);
        assert_eq!(users, [a, b, c]);
        let mut distinct = vec![c, a, b];
        first_occurrences(&mut distinct);
        assert_eq!(distinct, [c, a, b]);
    }
}
