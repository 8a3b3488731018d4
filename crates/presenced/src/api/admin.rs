//! Calls that are not part of Graph: health, readiness, the manual clock, the
//! scheduler's lag, the operator's status figures, and the out-of-office stand-in for the calendar and mailbox.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use axum::extract::{Path, Request, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use jiff::SignedDuration;
use presenced_domain::duration::parse_duration;
use presenced_domain::{DurationSyntax, Guid, Mutation, OutOfOffice};
use presenced_store::{ApplyOutcome, UserKey};

use super::authz::{self, Need};
use super::error::ApiError;
use super::presence::{authenticate, parse_json, read_body};
use super::{AppState, RouteName, json_response};

/// `GET /healthz`: the process is up.
#[utoipa::path(get, path = "/healthz", tag = "admin",
    responses((status = 200, description = "The process is up.", content_type = "application/json", body = super::openapi::HealthDoc)))]
pub async fn healthz() -> Response {
    json_response(StatusCode::OK, br#"{"status":"ok"}"#.to_vec())
}

/// `GET /readyz`: the store is open and accepting work.
#[utoipa::path(get, path = "/readyz", tag = "admin",
    responses((status = 200, description = "Ready.", content_type = "application/json", body = super::openapi::HealthDoc),
        (status = 503, description = "The store is not open.")))]
pub async fn readyz(State(state): State<Arc<AppState>>) -> Response {
    let ready = state.store.is_ready();
    // Logged when readiness changes, not at every poll of a probe.
    let was_not_ready = state.not_ready.swap(!ready, Ordering::AcqRel);
    if ready {
        if was_not_ready {
            tracing::info!("ready again: the store accepts work");
        }
        json_response(StatusCode::OK, br#"{"status":"ready"}"#.to_vec())
    } else {
        if !was_not_ready {
            tracing::warn!("not ready: the store is closed, or out of reach");
        }
        ApiError::unavailable_unlogged().into_response()
    }
}

fn clock_body(state: &AppState) -> Response {
    let now = state.clock.now();
    json_response(
        StatusCode::OK,
        serde_json::json!({ "now": now.to_string() })
            .to_string()
            .into_bytes(),
    )
}

fn manual_only(state: &AppState) -> Result<(), ApiError> {
    if state.clock.is_manual() {
        Ok(())
    } else {
        Err(ApiError::not_found(
            "The clock can only be read and moved here with --clock manual.",
        ))
    }
}

/// `GET /admin/clock` (manual clock only).
#[utoipa::path(get, path = "/admin/clock", tag = "admin",
    responses((status = 200, description = "The manual clock's reading.", content_type = "application/json", body = super::openapi::ClockReadingDoc),
        (status = 404, description = "The server does not run on the manual clock.")))]
pub async fn get_clock(State(state): State<Arc<AppState>>) -> Response {
    let response = manual_only(&state).map(|()| clock_body(&state));
    with_route(
        response.unwrap_or_else(IntoResponse::into_response),
        "/admin/clock",
    )
}

/// `POST /admin/clock` with `{"advance":"PT5M"}` (manual clock only).
#[utoipa::path(post, path = "/admin/clock", tag = "admin",
    request_body(content = super::dto::ClockBody, content_type = "application/json"),
    responses((status = 200, description = "The clock moved forward; its new reading.", content_type = "application/json", body = super::openapi::ClockReadingDoc),
        (status = 404, description = "The server does not run on the manual clock.")))]
pub async fn advance_clock(State(state): State<Arc<AppState>>, request: Request) -> Response {
    let response = advance(&state, request)
        .await
        .unwrap_or_else(IntoResponse::into_response);
    with_route(response, "/admin/clock")
}

async fn advance(state: &AppState, request: Request) -> Result<Response, ApiError> {
    manual_only(state)?;
    let (parts, body) = request.into_parts();
    let body = read_body(&parts.headers, body).await?;
    let body: super::dto::ClockBody = parse_json(&parts.headers, &body)?;
    let text = body.advance.ok_or_else(|| {
        ApiError::invalid_argument("[Advance]: The advance field is required, e.g. \"PT5M\".")
    })?;
    let by = parse_duration(&text, DurationSyntax::Iso8601)
        .map_err(|e| ApiError::invalid_argument(format!("[Advance]: {e}")))?;
    let now = state
        .clock
        .advance(by)
        .ok_or_else(|| ApiError::invalid_argument("[Advance]: the clock cannot move that far."))?;
    state.store.set_manual_clock(now).await?;
    state.notifier.clock_moved();
    Ok(clock_body(state))
}

/// `GET /admin/scheduler`: how far behind the presence clock the scheduler
/// runs, on either clock. `processed` counts the deadlines handled since
/// start; `maxLagSeconds` is the most any of them waited from its instant
/// until its handling completed; `lagSeconds` is how long the oldest deadline
/// not yet handled has been due (0 when none is), `oldestDue` that deadline.
#[utoipa::path(get, path = "/admin/scheduler", tag = "admin",
    responses((status = 200, description = "The scheduler's lag.", content_type = "application/json", body = super::openapi::SchedulerReportDoc)))]
pub async fn get_scheduler(State(state): State<Arc<AppState>>) -> Response {
    let response = scheduler(&state)
        .await
        .unwrap_or_else(IntoResponse::into_response);
    with_route(response, "/admin/scheduler")
}

async fn scheduler(state: &AppState) -> Result<Response, ApiError> {
    let now = state.clock.now();
    // The scheduler's progress first, the store's deadlines after: a
    // deadline counted in `processed` was moved on before it was counted, so
    // the answer never reports as due a deadline it also counts as handled
    // (the other order raced a step completing in between, on Redis often).
    let progress = &state.notifier.scheduler_progress;
    let (processed, max_lag) = (progress.processed(), progress.max_lag());
    let oldest = state.store.due(now, 1).await?.first().map(|(_, at)| *at);
    let lag = oldest.map_or(SignedDuration::ZERO, |at| now.duration_since(at));
    let body = serde_json::json!({
        "now": now.to_string(),
        "processed": processed,
        "maxLagSeconds": max_lag.as_secs_f64(),
        "lagSeconds": lag.max(SignedDuration::ZERO).as_secs_f64(),
        "oldestDue": oldest.map(|at| at.to_string()),
    });
    Ok(json_response(StatusCode::OK, body.to_string().into_bytes()))
}

/// `GET /admin/status`: what `presenced status` prints. Unauthenticated like
/// `/admin/scheduler` and `/readyz`: counts only, nothing about any user.
/// Always 200 while the process answers; `ready` says whether the store
/// accepts calls. A figure the store cannot tell cheaply is `null`.
#[utoipa::path(get, path = "/admin/status", tag = "admin",
    responses((status = 200, description = "The operator's figures.", content_type = "application/json", body = super::openapi::StatusReportDoc)))]
pub async fn get_status(State(state): State<Arc<AppState>>) -> Response {
    let f = crate::telemetry::figures(&state).await;
    let seconds = |d: SignedDuration| d.as_secs_f64();
    let body = serde_json::json!({
        "ready": f.ready,
        "version": f.version,
        "store": f.store,
        "users": f.users,
        "liveSessions": f.live_sessions,
        "scheduler": {
            "lagSeconds": f.scheduler_lag.map(seconds),
            "maxLagSeconds": seconds(f.scheduler_max_lag),
            "processed": f.scheduler_processed,
            "deadlinesDue": f.deadlines_due,
            "deadlinesDueCountedUpTo": crate::telemetry::DUE_COUNT_CAP,
        },
        "outbox": {
            "entries": f.outbox_entries,
            "oldestDueAgeSeconds": f.outbox_oldest_due_age.map(seconds),
        },
    });
    with_route(
        json_response(StatusCode::OK, body.to_string().into_bytes()),
        "/admin/status",
    )
}

/// `PUT /admin/tenants/{tid}/users/{uid}/outOfOfficeSettings` with
/// `{"isOutOfOffice":true,"message":"..."}`: 204. Needs an application token
/// of that tenant with Presence.ReadWrite.All.
#[utoipa::path(put, path = "/admin/tenants/{tenant}/users/{user}/outOfOfficeSettings", tag = "admin",
    params(("tenant" = String, Path, description = "The tenant id (a GUID)."),
        ("user" = String, Path, description = "The user's object id (a GUID).")),
    request_body(content = super::dto::OutOfOfficeBody, content_type = "application/json"),
    responses((status = 204, description = "Set.")))]
pub async fn put_out_of_office(
    State(state): State<Arc<AppState>>,
    Path((tenant, user)): Path<(String, String)>,
    request: Request,
) -> Response {
    let response = out_of_office(&state, &tenant, &user, request)
        .await
        .unwrap_or_else(IntoResponse::into_response);
    with_route(
        response,
        "/admin/tenants/{tid}/users/{uid}/outOfOfficeSettings",
    )
}

async fn out_of_office(
    state: &AppState,
    tenant: &str,
    user: &str,
    request: Request,
) -> Result<Response, ApiError> {
    let (parts, body) = request.into_parts();
    let principal = authenticate(state, &parts.headers).await?;
    let tenant = Guid::parse(tenant)
        .ok_or_else(|| ApiError::bad_request(format!("'{tenant}' is not a tenant id (a GUID).")))?;
    let user = Guid::parse(user)
        .ok_or_else(|| ApiError::bad_request(format!("'{user}' is not a user id (a GUID).")))?;
    let body = read_body(&parts.headers, body).await?;
    let body: super::dto::OutOfOfficeBody = parse_json(&parts.headers, &body)?;
    let is_out_of_office = body.is_out_of_office.ok_or_else(|| {
        ApiError::invalid_argument("[IsOutOfOffice]: The isOutOfOffice field is required.")
    })?;
    if principal.is_delegated() || principal.tenant != tenant {
        return Err(ApiError::forbidden(
            "Out-of-office settings need an application token of this tenant with Presence.ReadWrite.All.",
        ));
    }
    authz::authorize(&principal, Need::Write, user)?;
    let key = UserKey { tenant, user };
    if state.store.user(key).await?.is_none() {
        return Err(ApiError::not_found(format!(
            "User '{user}' was not found in tenant '{tenant}'."
        )));
    }
    let message = body.message.filter(|m| !m.is_empty());
    let mutation = Mutation::SetOutOfOffice(OutOfOffice {
        is_out_of_office,
        message,
    });
    let now = state.clock.now();
    match state.store.apply(key, mutation, now).await? {
        ApplyOutcome::Applied(applied) => {
            if applied.visible_change {
                state.notifier.changed_user(key, now).await;
            }
            Ok(StatusCode::NO_CONTENT.into_response())
        }
        ApplyOutcome::Refused(refusal) => Err(super::presence::refused(refusal)),
    }
}

fn with_route(mut response: Response, route: &'static str) -> Response {
    response.extensions_mut().insert(RouteName(route));
    response
}

/// `DELETE /admin/tenants/{tid}/users/{uid}`: removes a user from the
/// directory (204). Their presence can no longer be read or set, and the
/// subscriptions they created are removed with a `subscriptionRemoved`
/// lifecycle event. Needs an application token of that tenant with
/// Presence.ReadWrite.All.
#[utoipa::path(delete, path = "/admin/tenants/{tenant}/users/{user}", tag = "admin",
    params(("tenant" = String, Path, description = "The tenant id (a GUID)."),
        ("user" = String, Path, description = "The user's object id (a GUID).")),
    responses((status = 204, description = "Removed.")))]
pub async fn delete_user(
    State(state): State<Arc<AppState>>,
    Path((tenant, user)): Path<(String, String)>,
    request: Request,
) -> Response {
    let response = remove_user(&state, &tenant, &user, request)
        .await
        .unwrap_or_else(IntoResponse::into_response);
    with_route(response, "/admin/tenants/{tid}/users/{uid}")
}

async fn remove_user(
    state: &AppState,
    tenant: &str,
    user: &str,
    request: Request,
) -> Result<Response, ApiError> {
    let principal = authenticate(state, request.headers()).await?;
    let tenant = Guid::parse(tenant)
        .ok_or_else(|| ApiError::bad_request(format!("'{tenant}' is not a tenant id (a GUID).")))?;
    let user = Guid::parse(user)
        .ok_or_else(|| ApiError::bad_request(format!("'{user}' is not a user id (a GUID).")))?;
    if principal.is_delegated() || principal.tenant != tenant {
        return Err(ApiError::forbidden(
            "Removing a user needs an application token of this tenant with Presence.ReadWrite.All.",
        ));
    }
    authz::authorize(&principal, Need::Write, user)?;
    if !state.store.remove_user(UserKey { tenant, user }).await? {
        return Err(ApiError::not_found(format!(
            "User '{user}' was not found in tenant '{tenant}'."
        )));
    }
    state.notifier.directory_changed();
    Ok(StatusCode::NO_CONTENT.into_response())
}
