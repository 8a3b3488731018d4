//! The HTTP API: Graph's presence URLs, the admin calls, health checks.
//!
//! Architecture invariant: this is the only module that knows Graph's JSON,
//! URLs, status codes and error envelope. It turns requests into domain
//! mutations and views into JSON; it holds no presence rule itself.
//!
//! Layout: [`route`] parses Graph URLs, [`dto`] holds the wire shapes,
//! [`presence`] the Graph handlers, [`users`] the directory reads (`/me`,
//! `/users`), [`batch`] JSON batching, [`admin`] the non-Graph calls,
//! [`authz`] the permission model, [`live`] the live stream (an extension),
//! [`board`] the presence board's page and files (`/`, `/board/`),
//! [`error`] the one error type, [`edge`] the size, time and
//! authentication-flood limits answered in the envelope,
//! [`envelope`] the service around the routes that gives requests their ids,
//! error bodies and access-log line, [`cors`] the cross-origin layer outside
//! it, and [`openapi`] the OpenAPI document of all of it (`GET /openapi.json`).

pub mod admin;
pub mod authz;
pub mod batch;
pub mod board;
pub mod cors;
pub mod dto;
pub mod edge;
pub mod error;
pub mod live;
pub mod oauth;
pub mod openapi;
pub mod presence;
pub mod route;
pub mod subscriptions;
pub mod throttle;
pub mod users;

use std::sync::Arc;
use std::time::Instant;

use axum::Router;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{MethodRouter, any, get};
use presenced_domain::{DurationSyntax, Rules};
use presenced_identity::{DevIssuerKey, Registry, Validator};
use presenced_store::Store;

use crate::clock::Clock;
use error::ApiError;
use throttle::Throttle;

/// Everything a handler needs, shared by all requests.
pub struct AppState {
    pub store: Arc<dyn Store>,
    pub clock: Arc<Clock>,
    pub validator: Arc<Validator>,
    /// Signs the tokens of the built-in identity provider.
    pub issuer_key: DevIssuerKey,
    /// App registrations and test users of the built-in identity provider.
    pub registry: Arc<Registry>,
    pub rules: Rules,
    pub durations: DurationSyntax,
    /// Per app per tenant request limits.
    pub throttle: Throttle,
    /// Change notifications: subscriptions, handshakes, the clock hook.
    pub notifier: Arc<crate::notify::Notifier>,
    /// Head size, request time and per-address authentication limits.
    pub edge: edge::Edge,
    /// Which origins browser apps may call from.
    pub cors: Arc<cors::Cors>,
    /// `--public-url`: the origin the identity provider names itself under
    /// and `@odata.context` names; `None`: each request's own (the Host for
    /// the identity provider, the listener's address for `@odata.context`).
    pub public_url: Option<PublicUrl>,
    /// Authorization codes waiting to be redeemed at the token endpoint
    /// (in memory, or shared through the store's cell on Redis).
    pub codes: Arc<presenced_identity::grants::CodeStore>,
    /// Refresh tokens, persisted in the data directory (or the shared store).
    pub refresh_tokens: Arc<presenced_identity::grants::RefreshTokens>,
    /// The manual clock is shared by several nodes through the store: every
    /// request first reads it there ([`sync_clock`]).
    pub shared_clock: bool,
    /// `/readyz` last answered not ready: its log line is written when
    /// readiness changes, not at every poll.
    pub not_ready: std::sync::atomic::AtomicBool,
}

/// The route template a response was produced for, for the access log.
#[derive(Debug, Clone, Copy)]
pub struct RouteName(pub &'static str);

/// The whole HTTP surface as a `Router`; tests drive it with `oneshot`.
pub fn router(state: Arc<AppState>) -> Router {
    Router::new().fallback_service(service(state))
}

/// The whole HTTP surface as the server serves it: [`router`] without the
/// router around it, whose only route is this service (per request one
/// path lookup, `OriginalUri` extension, boxed service clone and future
/// fewer).
///
/// The envelope and CORS wrap the whole router once, as services of their
/// own ([`Enveloped`], [`cors::Apply`]), rather than as `Router::layer`
/// middleware, which wraps every route and clones and boxes each layer's
/// inner service on every request.
pub fn service(state: Arc<AppState>) -> cors::Apply<Enveloped> {
    // `$batch` sub-requests go through the same routes inside the envelope,
    // without CORS (the batch has it) and without `$batch` itself.
    let inner = Router::new().fallback_service(Enveloped {
        state: state.clone(),
        routes: routes().with_state(state.clone()),
    });
    let batch = |version: route::Version| {
        let inner = inner.clone();
        axum::routing::post(move |state: State<Arc<AppState>>, request: Request| {
            batch::handle(state, inner.clone(), version, request)
        })
    };
    let mut outer = BATCH_PATHS
        .into_iter()
        .fold(routes(), |router, (path, version)| {
            router.route(path, batch(version))
        });
    // Only where the manual clock is shared: the system clock's requests
    // pay no layer for it.
    if state.shared_clock {
        outer = outer.layer(axum::middleware::from_fn_with_state(
            state.clone(),
            sync_clock,
        ));
    }
    let outer = outer.with_state(state.clone());
    cors::Apply {
        cors: state.cors.clone(),
        inner: Enveloped {
            state,
            routes: outer,
        },
    }
}

/// What the services around the routes answer with.
pub type ResponseFuture =
    std::pin::Pin<Box<dyn Future<Output = Result<Response, std::convert::Infallible>> + Send>>;

/// [`envelope`] around `routes`, as a service.
#[derive(Clone)]
pub struct Enveloped {
    state: Arc<AppState>,
    routes: Router,
}

impl tower_service::Service<Request> for Enveloped {
    type Response = Response;
    type Error = std::convert::Infallible;
    type Future = ResponseFuture;

    fn poll_ready(
        &mut self,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), std::convert::Infallible>> {
        std::task::Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: Request) -> ResponseFuture {
        let state = self.state.clone();
        let routes = self.routes.clone();
        Box::pin(async move { Ok(envelope(state, request, routes).await) })
    }
}

/// Where `$batch` is served, per version (some clients encode the `$`).
const BATCH_PATHS: [(&str, route::Version); 4] = [
    ("/v1.0/$batch", route::Version::V1),
    ("/v1.0/%24batch", route::Version::V1),
    ("/beta/$batch", route::Version::Beta),
    ("/beta/%24batch", route::Version::Beta),
];
/// With a manual clock shared through the store (several nodes on Redis),
/// reads it there before the request is handled, so that a request sees a
/// `POST /admin/clock` any node answered before it. One store round trip,
/// in that test mode only; the system clock never pays it.
async fn sync_clock(
    State(state): State<Arc<AppState>>,
    request: Request,
    next: axum::middleware::Next,
) -> Response {
    // The probes answer for the process and the store, whatever the clock.
    let probe = matches!(request.uri().path(), "/healthz" | "/readyz");
    if state.shared_clock && !probe {
        match state.store.manual_clock().await {
            Ok(Some(at)) => {
                if state.clock.catch_up(at) {
                    state.notifier.clock_moved();
                }
            }
            Ok(None) => {}
            Err(error) => return ApiError::from(error).into_response(),
        }
    }
    next.run(request).await
}

/// Every route but `$batch`.
fn routes() -> Router<Arc<AppState>> {
    route_table()
        .into_iter()
        .fold(Router::new(), |router, (path, methods)| {
            router.route(path, methods)
        })
        .fallback(graph_or_not_found)
}

/// The paths the router serves, `$batch` included (the subscriptions'
/// catch-alls, and the fallback to the presence handlers, stand for the
/// paths their dispatchers parse): what [`openapi`]'s drift test checks the
/// document against.
pub fn route_paths() -> Vec<&'static str> {
    route_table()
        .into_iter()
        .map(|(path, _)| path)
        .chain(BATCH_PATHS.into_iter().map(|(path, _)| path))
        .collect()
}

/// The axum routes: one table, so that [`route_paths`] lists exactly what
/// [`routes`] serves.
fn route_table() -> Vec<(&'static str, MethodRouter<Arc<AppState>>)> {
    vec![
        ("/", get(board::index)),
        ("/board/{file}", get(board::asset)),
        ("/healthz", get(admin::healthz)),
        ("/readyz", get(admin::readyz)),
        ("/openapi.json", get(openapi::serve)),
        (
            "/admin/clock",
            get(admin::get_clock).post(admin::advance_clock),
        ),
        ("/admin/scheduler", get(admin::get_scheduler)),
        ("/admin/status", get(admin::get_status)),
        ("/metrics", get(crate::telemetry::scrape_main)),
        (
            "/admin/tenants/{tenant}/users/{user}/outOfOfficeSettings",
            axum::routing::put(admin::put_out_of_office),
        ),
        (
            "/admin/tenants/{tenant}/users/{user}",
            axum::routing::delete(admin::delete_user),
        ),
        (
            "/{tenant}/v2.0/.well-known/openid-configuration",
            get(oauth::openid_configuration),
        ),
        ("/{tenant}/discovery/v2.0/keys", get(oauth::keys)),
        (
            "/{tenant}/discovery/instance",
            get(oauth::instance_discovery),
        ),
        ("/{tenant}/userrealm/{user}", get(oauth::user_realm)),
        (
            "/{tenant}/oauth2/v2.0/authorize",
            get(oauth::authorize_page).post(oauth::authorize_submit),
        ),
        (
            "/{tenant}/oauth2/v2.0/logout",
            get(oauth::logout).post(oauth::logout),
        ),
        (
            "/{tenant}/oauth2/v2.0/token",
            axum::routing::post(oauth::token),
        ),
        ("/v1.0/subscriptions", any(subscriptions::dispatch)),
        ("/v1.0/subscriptions/{*rest}", any(subscriptions::dispatch)),
        ("/beta/subscriptions", any(subscriptions::dispatch)),
        ("/beta/subscriptions/{*rest}", any(subscriptions::dispatch)),
        ("/v1.0/presences/stream", get(live::stream)),
        ("/beta/presences/stream", get(live::stream)),
    ]
}

/// Everything else under `/v1.0/` and `/beta/` is the presence handlers'
/// (as a `/v1.0/{*rest}` route would be, without the router percent-decoding
/// and storing a capture nobody reads): a non-empty path there goes to
/// [`presence::dispatch`]; anything else is 404.
async fn graph_or_not_found(state: State<Arc<AppState>>, request: Request) -> Response {
    let path = request.uri().path();
    let graph = ["/v1.0/", "/beta/"]
        .iter()
        .any(|prefix| path.len() > prefix.len() && path.starts_with(prefix));
    if graph {
        presence::dispatch(state, request).await
    } else {
        ApiError::for_status(StatusCode::NOT_FOUND).into_response()
    }
}

/// The routes' answer to `request`. The hot Graph paths (`users/…`, `me…`,
/// `communications/…` under a version), which no route of the table
/// matches, go to [`graph_or_not_found`] directly, as the router's fallback
/// would send them, without its lookup and boxed service call; the response
/// is finished as the router finishes a fallback's (a `Content-Length` from
/// the body's exact size, no body for `HEAD`). With a manual clock shared
/// through the store, every request goes through the router, whose
/// [`sync_clock`] layer reads it.
async fn serve_routes(state: &Arc<AppState>, routes: Router, request: Request) -> Response {
    if state.shared_clock || !direct_graph(request.uri().path()) {
        let Ok(response) = tower::ServiceExt::oneshot(routes, request).await;
        return response;
    }
    let head = request.method() == axum::http::Method::HEAD;
    let mut response = graph_or_not_found(State(state.clone()), request).await;
    if !response.headers().contains_key(header::CONTENT_LENGTH)
        && let Some(size) = http_body::Body::size_hint(response.body()).exact()
    {
        response
            .headers_mut()
            .insert(header::CONTENT_LENGTH, HeaderValue::from(size));
    }
    if head {
        *response.body_mut() = Body::empty();
    }
    response
}

/// A path no route of [`route_table`] (or `$batch`) matches that
/// [`graph_or_not_found`] hands to the presence handlers.
fn direct_graph(path: &str) -> bool {
    let Some(rest) = path
        .strip_prefix("/v1.0/")
        .or_else(|| path.strip_prefix("/beta/"))
    else {
        return false;
    };
    rest.starts_with("users/")
        || rest.starts_with("communications/")
        || rest == "me"
        || rest.starts_with("me/")
}

const REQUEST_ID: HeaderName = HeaderName::from_static("request-id");
const CLIENT_REQUEST_ID: HeaderName = HeaderName::from_static("client-request-id");

/// The envelope: gives every request its ids, runs [`edge::guard`] and the
/// routes inside it, renders every error in Graph's envelope, and writes the
/// access-log line.
pub async fn envelope(state: Arc<AppState>, mut request: Request, routes: Router) -> Response {
    let started = Instant::now();
    let method = request.method().clone();
    let mut id_text = [0u8; uuid::fmt::Hyphenated::LENGTH];
    let request_id: &str = request_id::next().hyphenated().encode_lower(&mut id_text);
    let request_id_header = HeaderValue::from_str(request_id).expect("a uuid is a header value");
    let client_request_id = request
        .headers()
        .get(&CLIENT_REQUEST_ID)
        .filter(|v| !v.is_empty())
        .cloned()
        .unwrap_or_else(|| request_id_header.clone());

    if let Some(url) = &state.public_url {
        request.extensions_mut().insert(url.clone());
    }

    // The edge guard runs inside the envelope, called directly rather than
    // as a layer of its own: one boxed service clone and future fewer per
    // request.
    let mut response = edge::guard(&state, request, routes).await;

    let status = response.status();
    // Errors of ours carry an `ApiError`; a bare error status from the HTTP
    // machinery has no body type, and the framework's extractor rejections
    // (an undecodable path or query) a plain-text one. All get the envelope.
    // An error that already has its own JSON body (OAuth2's format) is left
    // as it is.
    let own_body = response
        .headers()
        .get(header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"application/json"));
    if (status.is_client_error() || status.is_server_error())
        && (response.extensions().get::<ApiError>().is_some() || !own_body)
    {
        let allow = response.headers().get(header::ALLOW).cloned();
        let route = response.extensions().get::<RouteName>().copied();
        let error = match response.extensions_mut().remove::<ApiError>() {
            Some(error) => error,
            None => framework_error(status, response.into_body()).await,
        };
        response = render_error(&state, &error, request_id, &client_request_id, route);
        if let Some(allow) = allow {
            response.headers_mut().insert(header::ALLOW, allow);
        }
    }
    let headers = response.headers_mut();
    headers.insert(REQUEST_ID, request_id_header);
    headers.insert(CLIENT_REQUEST_ID, client_request_id);

    let route = response
        .extensions()
        .get::<RouteName>()
        .map_or("unmatched", |r| r.0);
    let latency = started.elapsed();
    crate::telemetry::request(route, response.status(), latency);
    access_log(&method, route, response.status(), latency, request_id);
    response
}

/// The access-log line: written by hand when the log has no colours (the
/// same text `tracing`'s formatter makes, at a fraction of its cost), else
/// through `tracing`.
fn access_log(
    method: &axum::http::Method,
    route: &'static str,
    status: StatusCode,
    latency: std::time::Duration,
    request_id: &str,
) {
    if !tracing::enabled!(tracing::Level::INFO) {
        return;
    }
    let latency_us = u64::try_from(latency.as_micros()).unwrap_or(u64::MAX);
    let written =
        crate::logging::direct_line(tracing::Level::INFO, module_path!(), "request", |line| {
            line.extend_from_slice(b" method=");
            line.extend_from_slice(method.as_str().as_bytes());
            line.extend_from_slice(b" route=");
            // `route` as `Debug` writes it: route templates need no escapes.
            if route
                .bytes()
                .all(|b| b.is_ascii_graphic() && b != b'"' && b != b'\\')
            {
                line.push(b'"');
                line.extend_from_slice(route.as_bytes());
                line.push(b'"');
            } else {
                let _ = std::io::Write::write_fmt(line, format_args!("{route:?}"));
            }
            line.extend_from_slice(b" status=");
            push_decimal(line, u64::from(status.as_u16()));
            line.extend_from_slice(b" latency_us=");
            push_decimal(line, latency_us);
            line.extend_from_slice(b" request_id=");
            line.extend_from_slice(request_id.as_bytes());
        });
    if !written {
        tracing::info!(
            method = %method,
            route,
            status = status.as_u16(),
            latency_us,
            request_id = %request_id,
            "request"
        );
    }
}

/// Appends `n` in decimal.
fn push_decimal(out: &mut Vec<u8>, mut n: u64) {
    let mut digits = [0u8; 20];
    let mut at = digits.len();
    loop {
        at -= 1;
        digits[at] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    out.extend_from_slice(&digits[at..]);
}

/// The error for a status the HTTP machinery produced without an
/// [`ApiError`]: a bare status, or an extractor's plain-text rejection whose
/// text (up to a bound) becomes the message.
async fn framework_error(status: StatusCode, body: Body) -> ApiError {
    let text = axum::body::to_bytes(body, 1024).await.unwrap_or_default();
    let text = String::from_utf8_lossy(&text);
    let text = text.trim();
    let mut error = ApiError::for_status(status);
    if !text.is_empty() {
        if status == StatusCode::BAD_REQUEST {
            error.code = "BadRequest";
        }
        error.message = if text.ends_with('.') {
            text.to_owned()
        } else {
            format!("{text}.")
        };
    }
    error
}

fn render_error(
    state: &AppState,
    error: &ApiError,
    request_id: &str,
    client_request_id: &HeaderValue,
    route: Option<RouteName>,
) -> Response {
    let date = state.clock.now().strftime("%Y-%m-%dT%H:%M:%S").to_string();
    let body = ErrorBody {
        error: ErrorDetail {
            code: error.code,
            message: &error.message,
            inner_error: InnerError {
                date: &date,
                request_id,
                client_request_id: client_request_id.to_str().unwrap_or(request_id),
            },
        },
    };
    let body = serde_json::to_string(&body).unwrap_or_default();
    let mut response = (error.status, json_headers(), body).into_response();
    if let Some(seconds) = error.retry_after {
        response
            .headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from(seconds));
    }
    if error.status == StatusCode::UNAUTHORIZED {
        // The challenge Graph sends with a 401 (RFC 6750): bearer tokens,
        // for Graph's resource id.
        response.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            HeaderValue::from_static(
                r#"Bearer realm="", client_id="00000003-0000-0000-c000-000000000000""#,
            ),
        );
    }
    if let Some(route) = route {
        response.extensions_mut().insert(route);
    }
    response
}

/// Graph's error envelope, fields in Graph's order.
#[derive(serde::Serialize)]
struct ErrorBody<'a> {
    error: ErrorDetail<'a>,
}

#[derive(serde::Serialize)]
#[serde(rename_all = "camelCase")]
struct ErrorDetail<'a> {
    code: &'a str,
    message: &'a str,
    inner_error: InnerError<'a>,
}

#[derive(serde::Serialize)]
struct InnerError<'a> {
    date: &'a str,
    #[serde(rename = "request-id")]
    request_id: &'a str,
    #[serde(rename = "client-request-id")]
    client_request_id: &'a str,
}

/// The base of the Graph API's absolute URLs (`@odata.context`,
/// `@odata.nextLink`): `scheme://address` of the listener the request
/// arrived on ([`crate::transport::LocalAddr`]), never a client-supplied
/// `Host` or absolute-form request target; a configured public URL
/// (`--public-url`) takes its place. Requests built in-process without a
/// connection get `http://localhost`.
pub fn context_base(parts: &axum::http::request::Parts) -> String {
    let mut url = String::new();
    write_context_base(&mut url, parts);
    url
}

/// Appends [`context_base`] to `out`.
pub fn write_context_base(out: &mut String, parts: &axum::http::request::Parts) {
    if let Some(url) = parts.extensions.get::<PublicUrl>() {
        out.push_str(&url.0);
        return;
    }
    let scheme = parts
        .extensions
        .get::<crate::transport::Scheme>()
        .map_or("http", |s| s.0);
    out.push_str(scheme);
    out.push_str("://");
    match parts.extensions.get::<crate::transport::LocalAddr>() {
        Some(local) => push_address(out, local.0),
        None => out.push_str("localhost"),
    }
}

/// Appends `address` as `Display` writes it; the text of the last address
/// is kept per thread, as a server answers on one or two addresses.
fn push_address(out: &mut String, address: std::net::SocketAddr) {
    use std::fmt::Write as _;
    thread_local! {
        static LAST: std::cell::RefCell<Option<(std::net::SocketAddr, String)>> =
            const { std::cell::RefCell::new(None) };
    }
    LAST.with_borrow_mut(|last| match last {
        Some((known, text)) if *known == address => out.push_str(text),
        _ => {
            let mut text = String::new();
            let _ = write!(text, "{address}");
            out.push_str(&text);
            *last = Some((address, text));
        }
    })
}

/// The configured public URL (`--public-url`), an origin without a trailing
/// slash. The envelope puts it into each request's extensions, so that
/// [`context_base`] finds it with the request's own parts.
#[derive(Debug, Clone)]
pub struct PublicUrl(pub Arc<str>);

/// `scheme://host` as the client reached presenced: the listener's scheme
/// and the Host (or HTTP/2 authority) the client named. Only the identity
/// provider's discovery documents use it (they follow the client's Host).
pub fn base_url(parts: &axum::http::request::Parts) -> String {
    let mut url = String::new();
    write_base_url(&mut url, parts);
    url
}

/// Appends [`base_url`] to `out`.
pub fn write_base_url(out: &mut String, parts: &axum::http::request::Parts) {
    let scheme = parts
        .extensions
        .get::<crate::transport::Scheme>()
        .map_or_else(|| parts.uri.scheme_str().unwrap_or("http"), |s| s.0);
    let host = parts
        .uri
        .authority()
        .map(|a| a.as_str())
        .or_else(|| {
            parts
                .headers
                .get(header::HOST)
                .and_then(|h| h.to_str().ok())
        })
        .unwrap_or("localhost");
    out.push_str(scheme);
    out.push_str("://");
    out.push_str(host);
}

const JSON_CONTENT_TYPE: HeaderValue = HeaderValue::from_static(
    "application/json;odata.metadata=minimal;odata.streaming=true;IEEE754Compatible=false;charset=utf-8",
);
const PRIVATE: HeaderValue = HeaderValue::from_static("private");

/// The headers of every JSON answer.
pub fn json_headers() -> HeaderMap {
    let mut headers = HeaderMap::with_capacity(2);
    headers.insert(header::CONTENT_TYPE, JSON_CONTENT_TYPE);
    headers.insert(header::CACHE_CONTROL, PRIVATE);
    headers
}

/// A JSON answer.
pub fn json_response(status: StatusCode, body: Vec<u8>) -> Response {
    let mut response = Response::new(Body::from(body));
    *response.status_mut() = status;
    // Room for these two and the request ids the envelope adds.
    let headers = response.headers_mut();
    headers.reserve(4);
    headers.insert(header::CONTENT_TYPE, JSON_CONTENT_TYPE);
    headers.insert(header::CACHE_CONTROL, PRIVATE);
    response
}

/// Request ids: version 4 UUIDs from a per-thread buffer of random bytes,
/// refilled from the operating system 256 ids at a time rather than with a
/// system call per request.
mod request_id {
    use std::cell::RefCell;

    const IDS_PER_FILL: usize = 256;

    struct Pool {
        bytes: [u8; 16 * IDS_PER_FILL],
        next: usize,
    }

    thread_local! {
        static POOL: RefCell<Pool> = const {
            RefCell::new(Pool { bytes: [0; 16 * IDS_PER_FILL], next: IDS_PER_FILL })
        };
    }

    /// A new random (version 4) UUID.
    pub fn next() -> uuid::Uuid {
        POOL.with_borrow_mut(|pool| {
            if pool.next == IDS_PER_FILL {
                if getrandom::fill(&mut pool.bytes).is_err() {
                    return uuid::Uuid::new_v4();
                }
                pool.next = 0;
            }
            let start = pool.next * 16;
            pool.next += 1;
            let mut random = [0u8; 16];
            random.copy_from_slice(&pool.bytes[start..start + 16]);
            uuid::Builder::from_random_bytes(random).into_uuid()
        })
    }

    #[cfg(test)]
    mod tests {
        #[test]
        fn ids_are_version_4_and_do_not_repeat() {
            let ids: std::collections::HashSet<uuid::Uuid> =
                (0..2000).map(|_| super::next()).collect();
            assert_eq!(ids.len(), 2000);
            assert!(
                ids.iter()
                    .all(|id| id.get_version_num() == 4
                        && id.get_variant() == uuid::Variant::RFC4122)
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write;
    use std::sync::{Arc, Mutex};

    use axum::http::{Method, StatusCode};

    /// A `Write` whose bytes the test reads afterwards.
    #[derive(Clone, Default)]
    struct Captured(Arc<Mutex<Vec<u8>>>);

    impl Write for Captured {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }

        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    /// The only test of this binary that installs the direct writer.
    #[test]
    fn the_access_log_line_written_directly_reads_as_tracing_writes_it() {
        let out = Captured::default();
        let (writer, guard) = crate::logging::BackgroundWriter::spawn(out.clone()).unwrap();
        writer.install_direct();
        let subscriber = tracing_subscriber::fmt()
            .with_writer(writer.clone())
            .with_ansi(false)
            .finish();
        let id = "3fc66d70-9f68-4c18-a009-8a8fd3c92b7b";
        let latency = std::time::Duration::from_micros(1234);
        tracing::subscriber::with_default(subscriber, || {
            super::access_log(
                &Method::GET,
                "/users/{id}/presence",
                StatusCode::OK,
                latency,
                id,
            );
            tracing::info!(
                target: "presenced::api",
                method = %Method::GET,
                route = "/users/{id}/presence",
                status = 200u16,
                latency_us = 1234u64,
                request_id = %id,
                "request"
            );
        });
        drop(guard);
        let text = String::from_utf8(out.0.lock().unwrap().clone()).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 2, "{text}");
        let (direct_time, direct) = lines[0].split_at(27);
        let (traced_time, traced) = lines[1].split_at(27);
        assert_eq!(direct, traced);
        assert_eq!(
            direct,
            format!(
                "  INFO presenced::api: request method=GET route=\"/users/{{id}}/presence\" status=200 latency_us=1234 request_id={id}"
            )
        );
        // `2026-12-04T07:39:53.403108Z`: same shape, moments apart.
        let direct_time: jiff::Timestamp = direct_time.parse().unwrap();
        let traced_time: jiff::Timestamp = traced_time.parse().unwrap();
        assert!((traced_time - direct_time).as_secs().abs() < 5);
        assert_eq!(lines[0].as_bytes()[26], b'Z');
        assert_eq!(lines[0].as_bytes()[19], b'.');
    }
}
