//! Limits at the edge that are answered in Graph's envelope: a request head
//! over the size limit (`431`), a request not answered in time (`408`), a
//! client address whose requests keep failing authentication (`429`), and
//! the heads the transport refused before routing (`crate::transport::Refusal`).
//!
//! It runs inside [`super::envelope`], so its refusals carry the envelope and
//! the request's ids. What cannot be answered — too many connections, a head
//! that never finishes, idle connections — is the transport's job
//! (`crate::transport`). This module knows no presence rule.
//!
//! The authentication guard runs on real time (`std::time::Instant`), never
//! on the manual presence clock.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::{ConnectInfo, Request};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

use super::AppState;
use super::error::ApiError;
use super::throttle::Limit;

/// The edge limits answered per request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EdgeLimits {
    /// Bytes of the request line and header fields.
    pub max_header_bytes: usize,
    /// Time from the request's head to its answer.
    pub request_timeout: Duration,
    /// Failed authentications per client address; `None`: unguarded.
    pub unauthenticated: Option<Limit>,
}

impl Default for EdgeLimits {
    fn default() -> EdgeLimits {
        EdgeLimits {
            max_header_bytes: 128 * 1024,
            request_timeout: Duration::from_secs(30),
            unauthenticated: Some(Limit {
                requests: 300,
                window: Duration::from_secs(60),
            }),
        }
    }
}

/// The limits and the per-address record of failed authentications.
#[derive(Debug, Default)]
pub struct Edge {
    limits: EdgeLimits,
    /// Per client address, the GCRA theoretical arrival time of its failed
    /// authentications. A `std::sync::Mutex`: held for a lookup and an
    /// addition, never across an `.await`.
    failures: Mutex<HashMap<IpAddr, Instant>>,
}

impl Edge {
    pub fn new(limits: EdgeLimits) -> Edge {
        Edge {
            limits,
            failures: Mutex::new(HashMap::new()),
        }
    }

    pub fn limits(&self) -> EdgeLimits {
        self.limits
    }

    /// Whether `address` may be served at `now`, or how many whole seconds it
    /// must wait because too many of its requests failed authentication.
    pub fn admit(&self, address: IpAddr, now: Instant) -> Result<(), u64> {
        let Some(limit) = self.limits.unauthenticated else {
            return Ok(());
        };
        let failures = self.failures.lock().unwrap_or_else(|e| e.into_inner());
        let Some(tat) = failures.get(&address) else {
            return Ok(());
        };
        let ahead = tat.saturating_duration_since(now);
        let tolerance = limit.window.saturating_sub(limit.window / limit.requests);
        if ahead > tolerance {
            let wait = ahead - tolerance;
            return Err(wait.as_secs() + u64::from(wait.subsec_nanos() > 0));
        }
        Ok(())
    }

    /// Counts one failed authentication of `address` at `now`.
    pub fn record_failure(&self, address: IpAddr, now: Instant) {
        let Some(limit) = self.limits.unauthenticated else {
            return;
        };
        let mut failures = self.failures.lock().unwrap_or_else(|e| e.into_inner());
        if failures.len() > 100_000 {
            failures.retain(|_, tat| *tat > now);
        }
        let tat = failures.entry(address).or_insert(now);
        *tat = (*tat).max(now) + limit.window / limit.requests;
    }
}

/// Head size, the authentication guard, the request timeout: run by
/// [`super::envelope`] around the routes.
pub async fn guard(state: &Arc<AppState>, request: Request, routes: Router) -> Response {
    if let Some(refusal) = request.extensions().get::<crate::transport::Refusal>() {
        let status = StatusCode::from_u16(refusal.status).unwrap_or(StatusCode::BAD_REQUEST);
        return ApiError::new(status, refusal.code, refusal.message.clone()).into_response();
    }
    let edge = &state.edge;
    let limits = edge.limits;
    let size = head_size(&request);
    if size > limits.max_header_bytes {
        return ApiError::new(
            StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            "RequestHeaderFieldsTooLarge",
            format!(
                "The request line and headers are {size} bytes; at most {} are accepted.",
                limits.max_header_bytes
            ),
        )
        .into_response();
    }
    let address = request
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|info| info.0.ip());
    if let Some(address) = address
        && let Err(wait) = edge.admit(address, Instant::now())
    {
        crate::telemetry::throttled(crate::telemetry::Throttled::Unauthenticated);
        return ApiError::too_many_requests(
            wait,
            format!(
                "Too many requests from {address} failed authentication. Please try again later."
            ),
        )
        .into_response();
    }
    let response = match tokio::time::timeout(
        limits.request_timeout,
        super::serve_routes(state, routes, request),
    )
    .await
    {
        Ok(response) => response,
        Err(_) => ApiError::new(
            StatusCode::REQUEST_TIMEOUT,
            "RequestTimeout",
            format!(
                "The request was not completed within {} seconds.",
                limits.request_timeout.as_secs_f64()
            ),
        )
        .into_response(),
    };
    if let Some(address) = address
        && response.status() == StatusCode::UNAUTHORIZED
    {
        edge.record_failure(address, Instant::now());
    }
    response
}

/// The size of the request line and header fields as HTTP/1.1 sends them.
fn head_size(request: &Request) -> usize {
    let line =
        request.method().as_str().len() + display_len(request.uri()) + " HTTP/1.1\r\n".len() + 1;
    request
        .headers()
        .iter()
        .map(|(name, value)| name.as_str().len() + value.len() + ": \r\n".len())
        .sum::<usize>()
        + line
}

/// How many bytes `value` displays as, without building the text.
fn display_len(value: &impl std::fmt::Display) -> usize {
    struct Count(usize);
    impl std::fmt::Write for Count {
        fn write_str(&mut self, s: &str) -> std::fmt::Result {
            self.0 += s.len();
            Ok(())
        }
    }
    let mut count = Count(0);
    let _ = std::fmt::write(&mut count, format_args!("{value}"));
    count.0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn edge(requests: u32, seconds: u64) -> Edge {
        Edge::new(EdgeLimits {
            unauthenticated: Some(Limit {
                requests,
                window: Duration::from_secs(seconds),
            }),
            ..EdgeLimits::default()
        })
    }

    #[test]
    fn an_address_is_refused_after_its_budget_of_failures_and_admitted_again_later() {
        let edge = edge(3, 30);
        let flooder: IpAddr = [127, 0, 0, 1].into();
        let other: IpAddr = [127, 0, 0, 2].into();
        let now = Instant::now();
        for _ in 0..3 {
            assert_eq!(edge.admit(flooder, now), Ok(()));
            edge.record_failure(flooder, now);
        }
        assert_eq!(edge.admit(flooder, now), Err(10));
        assert_eq!(edge.admit(other, now), Ok(()));
        assert_eq!(edge.admit(flooder, now + Duration::from_secs(10)), Ok(()));
    }

    #[test]
    fn with_the_guard_off_failures_never_refuse() {
        let edge = Edge::new(EdgeLimits {
            unauthenticated: None,
            ..EdgeLimits::default()
        });
        let address: IpAddr = [127, 0, 0, 1].into();
        let now = Instant::now();
        for _ in 0..1000 {
            edge.record_failure(address, now);
        }
        assert_eq!(edge.admit(address, now), Ok(()));
    }

    #[test]
    fn the_head_size_counts_the_request_line_and_every_header() {
        let request = Request::builder()
            .uri("/healthz")
            .header("x-a", "12345")
            .body(axum::body::Body::empty())
            .unwrap();
        // "GET /healthz HTTP/1.1\r\n" is 23 bytes, "x-a: 12345\r\n" 12.
        assert_eq!(head_size(&request), 23 + 12);
    }
}
