//! The live stream (extension `notifications.live_stream`):
//! `GET /v1.0/presences/stream?ids=a,b` (and under `/beta`) serves
//! Server-Sent Events of presence changes for users the caller may read.
//!
//! Each change is one `presence` event whose `id` is its position in the
//! server's log ([`crate::notify::live`]); a client that reconnects with
//! `Last-Event-ID` gets every change it missed that the log still keeps.
//! When the log no longer has them (the client was away for more than
//! `live_stream_log` changes, or the server restarted), a `missed` event
//! says so before the stream goes on: the client should read presence
//! afresh. This module renders events; the log is `notify`'s.

use std::collections::{HashSet, VecDeque};
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Request, State};
use axum::http::HeaderMap;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use presenced_domain::Guid;
use presenced_store::UserKey;
use serde_json::json;
use tokio::sync::watch;

use super::authz::{self, Need};
use super::error::ApiError;
use super::presence::{MAX_IDS, authenticate};
use super::{AppState, RouteName};
use crate::notify::Notifier;
use crate::notify::live::Resume;

/// `GET /{version}/presences/stream`.
#[utoipa::path(get, path = "/v1.0/presences/stream", tag = "extensions",
    summary = "Follow users' presence changes as Server-Sent Events (not in Graph).",
    params(("ids" = String, Query, description = "Comma-separated user ids (GUIDs), at most 650."),
        ("Last-Event-ID" = Option<String>, Header, description = "Resume after this event.")),
    responses((status = 200, description = "An endless `text/event-stream`: one `presence` event per change, `missed` after a gap.",
        content_type = "text/event-stream", body = String)))]
pub async fn stream(State(state): State<Arc<AppState>>, request: Request) -> Response {
    let mut response = match open(&state, request.headers(), request.uri().query()).await {
        Ok(response) => response,
        Err(error) => error.into_response(),
    };
    response
        .extensions_mut()
        .insert(RouteName("/presences/stream"));
    response
}

async fn open(
    state: &Arc<AppState>,
    headers: &HeaderMap,
    query: Option<&str>,
) -> Result<Response, ApiError> {
    let Some(live) = &state.notifier.live else {
        return Err(ApiError::not_found(
            "The live stream is off on this server (notifications.live_stream).",
        ));
    };
    let principal = authenticate(state, headers).await?;
    let ids = ids(query, state.notifier.config.unlimited_ids)?;
    for user in &ids {
        let need = if principal.is_delegated() && principal.user == Some(*user) {
            Need::ReadOwn
        } else {
            Need::ReadAny
        };
        authz::authorize(&principal, need, *user)?;
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
    let resume = match headers.get("last-event-id") {
        None => Resume::Now,
        Some(value) => value
            .to_str()
            .ok()
            .and_then(|text| live.parse_position(text))
            .ok_or_else(|| {
                ApiError::bad_request(
                    "Last-Event-ID is not an event id of this stream (such as 3f2a9c01d4e5-42).",
                )
            })?,
    };
    // Subscribe before the first read, so no change slips between them.
    let wake = live.subscribe();
    let (cursor, gap) = live.start(resume);
    let mut reader = Reader {
        notifier: Arc::clone(&state.notifier),
        tenant: principal.tenant,
        ids: ids.into_iter().collect(),
        cursor,
        pending: VecDeque::new(),
        wake,
        _session: crate::telemetry::LiveSession::open(),
    };
    if gap {
        reader.pending.push_back(reader.missed(cursor));
    }
    let events = futures_util::stream::unfold(reader, |mut reader| async move {
        let event = reader.next().await?;
        Some((Ok::<Event, Infallible>(event), reader))
    });
    Ok(Sse::new(events)
        .keep_alive(KeepAlive::new().interval(Duration::from_secs(15)))
        .into_response())
}

/// `ids=a,b,c`: GUIDs, at least one, at most 650 (unless unlimited).
fn ids(query: Option<&str>, unlimited: bool) -> Result<Vec<Guid>, ApiError> {
    let pairs: Vec<(String, String)> = serde_urlencoded::from_str(query.unwrap_or(""))
        .map_err(|_| ApiError::bad_request("The query string is not URL-encoded."))?;
    let mut ids = Vec::new();
    for (_, value) in pairs.iter().filter(|(name, _)| name == "ids") {
        for text in value.split(',').map(str::trim).filter(|t| !t.is_empty()) {
            let id = Guid::parse(text).ok_or_else(|| {
                ApiError::bad_request(format!("'{text}' is not a user id (a GUID)."))
            })?;
            if !ids.contains(&id) {
                ids.push(id);
            }
        }
    }
    if ids.is_empty() {
        return Err(ApiError::bad_request(
            "Name the users to follow: ?ids=<user id>,<user id>,...",
        ));
    }
    if ids.len() > MAX_IDS && !unlimited {
        return Err(ApiError::bad_request(format!(
            "At most {MAX_IDS} ids may be followed in one stream; {} were sent.",
            ids.len()
        )));
    }
    Ok(ids)
}

/// One client's place in the log.
struct Reader {
    notifier: Arc<Notifier>,
    tenant: Guid,
    ids: HashSet<Guid>,
    cursor: u64,
    pending: VecDeque<Event>,
    wake: watch::Receiver<u64>,
    /// Counts this stream as open until the client goes.
    _session: crate::telemetry::LiveSession,
}

impl Reader {
    /// The next event, waiting for one; `None` when the server shuts down.
    async fn next(&mut self) -> Option<Event> {
        loop {
            if let Some(event) = self.pending.pop_front() {
                return Some(event);
            }
            let live = self.notifier.live.as_ref()?;
            let (tenant, ids) = (self.tenant, &self.ids);
            let batch = live.read(self.cursor, |key| {
                key.tenant == tenant && ids.contains(&key.user)
            });
            self.cursor = batch.cursor;
            if let Some(before_oldest) = batch.gap {
                self.pending.push_back(self.missed(before_oldest));
            }
            for change in batch.events {
                let data = json!({
                    "@odata.type": "#microsoft.graph.presence",
                    "id": change.key.user.to_string(),
                    "availability": change.availability.as_str(),
                    "activity": change.activity.as_str(),
                    "sequenceNumber": super::dto::sequence_number(change.sequence),
                });
                self.pending.push_back(
                    Event::default()
                        .id(live.position(change.seq))
                        .event("presence")
                        .data(data.to_string()),
                );
            }
            if self.pending.is_empty() && self.wake.changed().await.is_err() {
                return None;
            }
        }
    }

    /// Changes this client needed are gone from the log; resuming from
    /// this event's id gives every change still kept.
    fn missed(&self, before_oldest: u64) -> Event {
        let position = self
            .notifier
            .live
            .as_ref()
            .map(|live| live.position(before_oldest))
            .unwrap_or_default();
        Event::default().id(position).event("missed").data(
            json!({"message": "Some changes were dropped before this stream resumed; read presence afresh."})
                .to_string(),
        )
    }
}
