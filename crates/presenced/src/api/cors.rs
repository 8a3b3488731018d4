//! Cross-origin requests, answered like Graph's: browser apps call Graph
//! from their own origin with bearer tokens (never cookies), so any origin
//! may call by default; the configuration can narrow that to an allow-list.
//!
//! The layer runs outside [`super::envelope`] so that every answer carries
//! the CORS headers, errors (401, 403, 429) included: without them a browser
//! hides the answer from the app. A preflight (`OPTIONS` with an `Origin`) is
//! answered here, before the envelope and the edge guard, so it needs no
//! token, is never throttled and never counts as a failed authentication.
//! Requests without an `Origin` (servers, SDKs) skip the layer entirely.
//! `/admin`, `/healthz` and `/readyz` are not for browsers and get no CORS
//! headers.

use std::convert::Infallible;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::extract::Request;
use axum::http::{HeaderName, HeaderValue, Method, header};
use axum::response::{IntoResponse, Response};
use tower::{Layer, ServiceExt};
use tower_http::cors::{AllowHeaders, AllowOrigin, CorsLayer, ExposeHeaders};

/// The headers a browser app may read from an answer: Graph's list.
const EXPOSED: [&str; 10] = [
    "request-id",
    "client-request-id",
    "Retry-After",
    "Location",
    "ETag",
    "WWW-Authenticate",
    "Preference-Applied",
    "Content-Range",
    "ReadWriteConsistencyToken",
    "SdkVersion",
];

const METHODS: [Method; 6] = [
    Method::GET,
    Method::HEAD,
    Method::POST,
    Method::PUT,
    Method::PATCH,
    Method::DELETE,
];

/// How long a browser may cache a preflight's answer by default.
pub const DEFAULT_MAX_AGE: Duration = Duration::from_secs(3600);

/// Which origins may call, and for how long preflights are cached.
#[derive(Debug, Clone)]
pub struct Cors {
    layer: CorsLayer,
}

/// The origins allowed to call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origins {
    /// Any origin (`Access-Control-Allow-Origin: *`), as Graph.
    Any,
    /// Only these serialized origins (`https://app.example:8443`).
    List(Vec<HeaderValue>),
}

impl Origins {
    /// Reads the configuration's `allowed_origins`: `["*"]`, or origins
    /// written `scheme://host[:port]` with no path.
    pub fn parse(origins: &[String]) -> Result<Origins, String> {
        if origins.iter().any(|o| o == "*") {
            if origins.len() > 1 {
                return Err("'*' allows every origin and cannot be listed with others".into());
            }
            return Ok(Origins::Any);
        }
        if origins.is_empty() {
            return Err("name at least one origin, or '*' for any".into());
        }
        origins
            .iter()
            .map(|origin| parse_origin(origin))
            .collect::<Result<_, _>>()
            .map(Origins::List)
    }
}

fn parse_origin(origin: &str) -> Result<HeaderValue, String> {
    let bad = || {
        format!(
            "'{origin}' is not an origin: write scheme://host or scheme://host:port, with no path (https://app.example)"
        )
    };
    let (scheme, rest) = origin.split_once("://").ok_or_else(bad)?;
    let scheme_ok = !scheme.is_empty()
        && scheme
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"+-.".contains(&b));
    let host_ok = !rest.is_empty()
        && rest
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-.:[]_".contains(&b));
    if !scheme_ok || !host_ok {
        return Err(bad());
    }
    // Browsers send origins in lower case; compare them that way.
    HeaderValue::from_str(&origin.to_ascii_lowercase()).map_err(|_| bad())
}

impl Cors {
    pub fn new(origins: Origins, max_age: Duration) -> Cors {
        let allow_origin = match origins {
            Origins::Any => AllowOrigin::any(),
            Origins::List(list) => AllowOrigin::list(list),
        };
        let layer = CorsLayer::new()
            .allow_origin(allow_origin)
            .allow_methods(METHODS)
            .allow_headers(AllowHeaders::mirror_request())
            .expose_headers(ExposeHeaders::list(EXPOSED.map(|name| {
                HeaderName::from_bytes(name.as_bytes()).expect("a header name")
            })))
            .max_age(max_age);
        Cors { layer }
    }
}

impl Default for Cors {
    fn default() -> Cors {
        Cors::new(Origins::Any, DEFAULT_MAX_AGE)
    }
}

/// Whether `path` is one browsers call: Graph, the identity provider and the
/// extensions; not the operator's paths.
fn applies_to(path: &str) -> bool {
    let first = path.trim_start_matches('/').split('/').next().unwrap_or("");
    !matches!(first, "admin" | "healthz" | "readyz")
}

/// The outermost service: requests with an `Origin` on a browser path go
/// through tower-http's CORS service around `inner` (the rest of the stack);
/// the others go to `inner` directly.
#[derive(Clone)]
pub struct Apply<S> {
    pub cors: Arc<Cors>,
    pub inner: S,
}

impl<S> tower_service::Service<Request> for Apply<S>
where
    S: tower_service::Service<
            Request,
            Response = Response,
            Error = Infallible,
            Future = super::ResponseFuture,
        > + Clone
        + Send
        + 'static,
{
    type Response = Response;
    type Error = Infallible;
    type Future = super::ResponseFuture;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: Request) -> super::ResponseFuture {
        if !request.headers().contains_key(header::ORIGIN) || !applies_to(request.uri().path()) {
            return self.inner.call(request);
        }
        let layered = self.cors.layer.layer(self.inner.clone());
        Box::pin(async move {
            match layered.oneshot(request).await {
                Ok(response) => Ok(response.into_response()),
                Err(never) => match never {},
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn allowed_origins_are_any_or_a_list_of_bare_origins() {
        let list = |items: &[&str]| items.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(Origins::parse(&list(&["*"])), Ok(Origins::Any));
        assert_eq!(
            Origins::parse(&list(&["https://App.example", "http://127.0.0.1:8080"])),
            Ok(Origins::List(vec![
                HeaderValue::from_static("https://app.example"),
                HeaderValue::from_static("http://127.0.0.1:8080"),
            ]))
        );
        for bad in [
            &["*", "https://a.example"][..],
            &[],
            &["app.example"],
            &["https://app.example/"],
            &["https://app.example/path"],
            &["https://"],
            &["https://app example"],
        ] {
            assert!(Origins::parse(&list(bad)).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn operator_paths_get_no_cors() {
        for path in ["/admin/clock", "/healthz", "/readyz"] {
            assert!(!applies_to(path), "{path}");
        }
        for path in [
            "/v1.0/me/presence",
            "/beta/$batch",
            "/common/oauth2/v2.0/token",
            "/v1.0/presences/stream",
        ] {
            assert!(applies_to(path), "{path}");
        }
    }
}
