//! The transport: listeners, connections and the limits that keep any one
//! client from holding the server.
//!
//! Plain HTTP and HTTPS take one code path: accept (under a cap on
//! connections), an optional TLS handshake, then hyper-util's automatic
//! HTTP/1.1 or HTTP/2 connection serving the router. The limits enforced
//! here are the ones no answer can carry:
//!
//! - at most `max_connections` connections at once over all listeners;
//!   further connections are not accepted and wait in the listen backlog
//!   until one closes (they are neither refused nor answered);
//! - a TLS handshake, and a request head (the first one, or the next one on
//!   a kept-alive HTTP/1.1 connection), must arrive within
//!   `header_read_timeout`, or the connection is closed (slow-loris);
//! - a connection with no request in flight for `idle_timeout` is closed
//!   (gracefully: HTTP/2 gets a GOAWAY);
//! - a connection's first HTTP/1 request head is read and checked here
//!   ([`first_head`]) before hyper sees it, so that what hyper would refuse
//!   with a bare status (unparseable heads, an unknown HTTP version, a
//!   request target that is not a URI or longer than hyper accepts, too
//!   many header fields, conflicting `Content-Length`s, TLS bytes on the
//!   plain port, a head beyond `head_buffer_bytes`) is answered by the
//!   router in Graph's envelope (through a [`Refusal`] extension) with
//!   `Connection: close`. Later heads on a kept-alive connection are checked
//!   by hyper; the bare status it writes for a broken one is replaced on its
//!   way out ([`Rewrite`]) by the router's answer to the same [`Refusal`];
//! - a request body the router left unread (a refusal) is drained, up to
//!   [`DRAIN_BYTES`] within [`DRAIN_TIME`], so the connection stays usable;
//!   past that the answer says `Connection: close`.
//!
//! On shutdown, listeners stop accepting, every connection finishes its
//! in-flight requests (for at most `shutdown_grace`) and closes.
//!
//! This module knows HTTP connections, not Graph: it adds the client's
//! address (`ConnectInfo`), the scheme ([`Scheme`]) and the listener's
//! address ([`LocalAddr`]) to each request, and nothing else; its refusals
//! are rendered by the router.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::Duration;

use anyhow::Context;
use axum::extract::ConnectInfo;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, watch};
use tokio::time::Instant;
use tokio_rustls::TlsAcceptor;

/// The limits on connections.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnectionLimits {
    /// Connections served at once over all listeners.
    pub max_connections: u32,
    /// hyper's own cap on a request head (HTTP/1.1 read buffer, HTTP/2
    /// header list); above the envelope-answered limit, so that only heads
    /// far over it meet hyper's bare refusal.
    pub head_buffer_bytes: usize,
    /// Concurrent requests on one HTTP/2 connection.
    pub max_streams: u32,
    /// Time for a TLS handshake or a request head to arrive.
    pub header_read_timeout: Duration,
    /// Time a connection may stay without a request in flight.
    pub idle_timeout: Duration,
    /// Time in-flight requests get to finish on shutdown.
    pub shutdown_grace: Duration,
}

impl Default for ConnectionLimits {
    fn default() -> ConnectionLimits {
        ConnectionLimits {
            max_connections: 1024,
            head_buffer_bytes: 256 * 1024,
            max_streams: 100,
            header_read_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(60),
            shutdown_grace: Duration::from_secs(31),
        }
    }
}

/// A bound socket, with TLS or without.
pub struct Listener {
    tcp: TcpListener,
    tls: Option<TlsAcceptor>,
}

impl Listener {
    /// Binds `address`; with `tls`, connections speak HTTPS.
    pub async fn bind(
        address: SocketAddr,
        tls: Option<Arc<rustls::ServerConfig>>,
    ) -> anyhow::Result<Listener> {
        let tcp = TcpListener::bind(address)
            .await
            .with_context(|| format!("cannot listen on {address}"))?;
        Ok(Listener {
            tcp,
            tls: tls.map(TlsAcceptor::from),
        })
    }

    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.tcp.local_addr()
    }
}

/// What the transport serves: an axum `Router`, or any cloneable service
/// of the same requests and answers (the API serves its outermost service
/// directly, without a router around it that would only route to it).
pub trait App:
    tower_service::Service<
        hyper::Request<axum::body::Body>,
        Response = axum::response::Response,
        Error = Infallible,
        Future: Send + 'static,
    > + Clone
    + Send
    + Sync
    + Unpin
    + 'static
{
}

impl<S> App for S where
    S: tower_service::Service<
            hyper::Request<axum::body::Body>,
            Response = axum::response::Response,
            Error = Infallible,
            Future: Send + 'static,
        > + Clone
        + Send
        + Sync
        + Unpin
        + 'static
{
}

/// Serves `router` on every listener until `shutdown` completes, then lets
/// in-flight requests finish.
pub async fn serve<A: App>(
    listeners: Vec<Listener>,
    router: A,
    limits: ConnectionLimits,
    shutdown: impl Future<Output = ()>,
) {
    let shared = Arc::new(Shared {
        router,
        limits,
        http: http_builder(&limits),
        permits: Arc::new(Semaphore::new(limits.max_connections as usize)),
    });
    let (stop, stopped) = watch::channel(false);
    let accepting: Vec<_> = listeners
        .into_iter()
        .map(|listener| tokio::spawn(accept(listener, shared.clone(), stopped.clone())))
        .collect();
    shutdown.await;
    stop.send_replace(true);
    for task in accepting {
        let _ = task.await;
    }
    // Every connection holds a permit until it is closed.
    let all_closed = shared.permits.acquire_many(limits.max_connections);
    if tokio::time::timeout(limits.shutdown_grace + Duration::from_secs(1), all_closed)
        .await
        .is_err()
    {
        tracing::warn!("connections still open after the shutdown grace; closing them");
    }
}

/// What every connection shares.
struct Shared<A> {
    router: A,
    limits: ConnectionLimits,
    /// Built once: the HTTP/1.1 and HTTP/2 settings.
    http: auto::Builder<TokioExecutor>,
    /// One permit per open connection, over all listeners; an `Arc` because
    /// each connection task owns its permit.
    permits: Arc<Semaphore>,
}

fn http_builder(limits: &ConnectionLimits) -> auto::Builder<TokioExecutor> {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout)
        .max_headers(MAX_HEADERS)
        .max_buf_size(limits.head_buffer_bytes.max(8192));
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_header_list_size(u32::try_from(limits.head_buffer_bytes).unwrap_or(u32::MAX))
        .max_concurrent_streams(limits.max_streams);
    builder
}

/// Accepts connections while a permit is free, until told to stop.
async fn accept<A: App>(
    listener: Listener,
    shared: Arc<Shared<A>>,
    mut stop: watch::Receiver<bool>,
) {
    loop {
        let permit = tokio::select! {
            permit = shared.permits.clone().acquire_owned() => match permit {
                Ok(permit) => permit,
                Err(_) => return,
            },
            () = stopped(&mut stop) => return,
        };
        let (stream, peer) = tokio::select! {
            accepted = listener.tcp.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(error) => {
                    // Out of file descriptors and the like: back off, keep serving.
                    tracing::warn!(%error, "cannot accept a connection");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
            () = stopped(&mut stop) => return,
        };
        let shared = shared.clone();
        let tls = listener.tls.clone();
        let stop = stop.clone();
        tokio::spawn(async move {
            connection(stream, peer, tls, &shared, stop).await;
            drop(permit);
        });
    }
}

async fn stopped(stop: &mut watch::Receiver<bool>) {
    let _ = stop.wait_for(|stopped| *stopped).await;
}

/// One connection: the TLS handshake if any, then HTTP.
async fn connection<A: App>(
    stream: TcpStream,
    peer: SocketAddr,
    tls: Option<TlsAcceptor>,
    shared: &Shared<A>,
    stop: watch::Receiver<bool>,
) {
    let _ = stream.set_nodelay(true);
    let Ok(local) = stream.local_addr() else {
        return;
    };
    let Some(tls) = tls else {
        return serve_http(stream, peer, local, Scheme::HTTP, shared, stop).await;
    };
    match tokio::time::timeout(shared.limits.header_read_timeout, tls.accept(stream)).await {
        Ok(Ok(stream)) => serve_http(stream, peer, local, Scheme::HTTPS, shared, stop).await,
        Ok(Err(error)) => tracing::debug!(%peer, %error, "TLS handshake failed"),
        Err(_) => tracing::debug!(%peer, "TLS handshake timed out"),
    }
}

/// Serves HTTP on one connection until it ends, is idle too long, or the
/// server stops.
async fn serve_http<IO, A: App>(
    mut io: IO,
    peer: SocketAddr,
    local: SocketAddr,
    scheme: Scheme,
    shared: &Shared<A>,
    mut stop: watch::Receiver<bool>,
) where
    IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let service = Handler {
        router: shared.router.clone(),
        peer,
        local: LocalAddr(local),
        scheme,
        activity: Arc::new(Activity::new()),
    };
    let read = first_head(&mut io, shared.limits.head_buffer_bytes);
    let head = match tokio::time::timeout(shared.limits.header_read_timeout, read).await {
        Ok(Ok(Head::Pass(bytes))) => bytes,
        Ok(Ok(Head::Refuse(refusal))) => return refuse(io, &service, refusal).await,
        Ok(Err(error)) => return tracing::debug!(%peer, %error, "connection failed"),
        Err(_) => return tracing::debug!(%peer, "no request head in time"),
    };
    let activity = service.activity.clone();
    let io = Rewrite {
        io,
        prefix: head,
        at: 0,
        handler: service.clone(),
        pending: Pending::Nothing,
    };
    let connection = shared.http.serve_connection(TokioIo::new(io), service);
    tokio::pin!(connection);
    // Once closing: the instant after which the connection is dropped.
    let mut closing: Option<Instant> = None;
    loop {
        let wake = closing.unwrap_or_else(|| activity.idle_deadline(&shared.limits));
        tokio::select! {
            result = connection.as_mut() => {
                if let Err(error) = result {
                    tracing::debug!(%peer, %error, "connection ended with an error");
                }
                return;
            }
            () = stopped(&mut stop), if closing.is_none() => {
                connection.as_mut().graceful_shutdown();
                closing = Some(Instant::now() + shared.limits.shutdown_grace);
            }
            () = tokio::time::sleep_until(wake) => {
                if closing.is_some() {
                    tracing::debug!(%peer, "closing a connection that did not finish");
                    return;
                }
                if activity.is_idle(&shared.limits, Instant::now()) {
                    tracing::debug!(%peer, "closing an idle connection");
                    connection.as_mut().graceful_shutdown();
                    closing = Some(Instant::now() + Duration::from_secs(1));
                }
            }
        }
    }
}

/// When a connection last had work, for the idle and first-head timeouts.
#[derive(Debug)]
struct Activity {
    opened: Instant,
    /// Requests being answered now.
    in_flight: AtomicU32,
    /// Requests started so far.
    started: AtomicU64,
    /// Milliseconds from `opened` to the last answer.
    last_answer_ms: AtomicU64,
}

impl Activity {
    fn new() -> Activity {
        Activity {
            opened: Instant::now(),
            in_flight: AtomicU32::new(0),
            started: AtomicU64::new(0),
            last_answer_ms: AtomicU64::new(0),
        }
    }

    /// When the connection becomes idle unless a request comes.
    fn idle_deadline(&self, limits: &ConnectionLimits) -> Instant {
        if self.in_flight.load(Ordering::Acquire) > 0 {
            return Instant::now() + limits.idle_timeout;
        }
        if self.started.load(Ordering::Acquire) == 0 {
            return self.opened + limits.header_read_timeout;
        }
        self.opened
            + Duration::from_millis(self.last_answer_ms.load(Ordering::Acquire))
            + limits.idle_timeout
    }

    fn is_idle(&self, limits: &ConnectionLimits, now: Instant) -> bool {
        self.in_flight.load(Ordering::Acquire) == 0 && now >= self.idle_deadline(limits)
    }

    fn begin(self: &Arc<Self>) -> Busy {
        self.started.fetch_add(1, Ordering::AcqRel);
        self.in_flight.fetch_add(1, Ordering::AcqRel);
        Busy(self.clone())
    }
}

/// A request in flight; dropping it records the answer.
struct Busy(Arc<Activity>);

impl Drop for Busy {
    fn drop(&mut self) {
        let elapsed = u64::try_from(self.0.opened.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.0.last_answer_ms.fetch_max(elapsed, Ordering::AcqRel);
        self.0.in_flight.fetch_sub(1, Ordering::AcqRel);
    }
}

/// The router as a hyper service of one connection.
#[derive(Clone)]
struct Handler<A> {
    router: A,
    peer: SocketAddr,
    local: LocalAddr,
    /// Which listener the connection came through, for absolute URLs.
    scheme: Scheme,
    activity: Arc<Activity>,
}

/// The scheme a request arrived over, attached to every request: HTTP/1.1
/// request targets carry none, and absolute URLs (OpenID discovery,
/// `@odata.context`) must name the one the client used.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Scheme(pub &'static str);

impl Scheme {
    pub const HTTP: Scheme = Scheme("http");
    pub const HTTPS: Scheme = Scheme("https");
}

/// The local address of the connection a request arrived on (the
/// listener's address as the client reached it), attached to every request:
/// absolute URLs of the Graph API name it, never a client-supplied `Host`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LocalAddr(pub SocketAddr);

/// A request head the transport refuses before hyper sees it. The router
/// answers a request carrying this extension with the refusal, in its
/// envelope; the transport writes that answer and closes the connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    pub status: u16,
    pub code: &'static str,
    pub message: String,
}

/// hyper's cap on header fields in one HTTP/1 head (its default is 100);
/// the first head of a connection with more is refused in the envelope.
pub const MAX_HEADERS: usize = 512;
/// hyper's cap on the length of a request target.
const MAX_TARGET: usize = u16::MAX as usize - 1;
/// Unread request body drained after an answer so the connection can be reused.
pub const DRAIN_BYTES: usize = 1024 * 1024;
/// Time the drain may take before the connection is closed instead.
pub const DRAIN_TIME: Duration = Duration::from_secs(2);

const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// What the first read of a connection found.
enum Head {
    /// Bytes for hyper: a good HTTP/1 head (and whatever followed it), the
    /// HTTP/2 preface, or what came before the client closed.
    Pass(Vec<u8>),
    Refuse(Refusal),
}

fn refusal(status: u16, code: &'static str, message: impl Into<String>) -> Head {
    Head::Refuse(Refusal {
        status,
        code,
        message: message.into(),
    })
}

/// Reads until the first request head is complete and checks it as hyper
/// would, so that what hyper refuses bare is refused here in the envelope.
async fn first_head<IO: AsyncRead + Unpin>(io: &mut IO, limit: usize) -> std::io::Result<Head> {
    use tokio::io::AsyncReadExt;
    let mut buf = Vec::with_capacity(4096);
    loop {
        if buf.starts_with(H2_PREFACE) {
            return Ok(Head::Pass(buf));
        }
        // Nothing yet, or a prefix of the HTTP/2 preface so far: read on.
        if !buf.is_empty() && !H2_PREFACE.starts_with(&buf) {
            match check_head(&buf) {
                Some(head) => return Ok(head),
                None if buf.len() > limit => {
                    return Ok(refusal(
                        431,
                        "RequestHeaderFieldsTooLarge",
                        format!("The request head is larger than {limit} bytes."),
                    ));
                }
                None => {}
            }
        }
        if buf.len() == buf.capacity() {
            buf.reserve(buf.len().min(64 * 1024));
        }
        if io.read_buf(&mut buf).await? == 0 {
            return Ok(Head::Pass(buf));
        }
    }
}

/// `Some` once the head is decided: passed to hyper or refused; `None`
/// while it is incomplete.
fn check_head(buf: &[u8]) -> Option<Head> {
    let lines = buf.iter().filter(|b| **b == b'\n').count();
    let mut headers = vec![httparse::EMPTY_HEADER; lines + 1];
    let mut request = httparse::Request::new(&mut headers);
    match request.parse(buf) {
        Ok(httparse::Status::Partial) => None,
        Err(httparse::Error::Version) => Some(refusal(
            505,
            "HttpVersionNotSupported",
            "Only HTTP/1.0, HTTP/1.1 and HTTP/2 are supported.",
        )),
        Err(error) => Some(refusal(
            400,
            "BadRequest",
            format!("The request could not be parsed as HTTP: {error}."),
        )),
        Ok(httparse::Status::Complete(_)) => {
            Some(check_parsed(&request).unwrap_or_else(|| Head::Pass(buf.to_vec())))
        }
    }
}

/// The checks hyper makes after parsing; `None` when the head passes.
fn check_parsed(request: &httparse::Request<'_, '_>) -> Option<Head> {
    let target = request.path.unwrap_or_default();
    if target.len() > MAX_TARGET {
        return Some(refusal(
            414,
            "RequestUriTooLong",
            format!(
                "The request target is {} bytes; at most {MAX_TARGET} are accepted.",
                target.len()
            ),
        ));
    }
    if !target.bytes().all(|b| b.is_ascii_graphic()) || axum::http::Uri::try_from(target).is_err() {
        return Some(refusal(
            400,
            "BadRequest",
            "The request target is not a valid URI (bytes outside ASCII must be percent-encoded).",
        ));
    }
    if request.headers.len() > MAX_HEADERS {
        return Some(refusal(
            431,
            "RequestHeaderFieldsTooLarge",
            format!(
                "The request has {} header fields; at most {MAX_HEADERS} are accepted.",
                request.headers.len()
            ),
        ));
    }
    let mut length: Option<&[u8]> = None;
    for header in request.headers.iter() {
        if header.name.eq_ignore_ascii_case("content-length") {
            let valid = !header.value.is_empty() && header.value.iter().all(u8::is_ascii_digit);
            if !valid || length.is_some_and(|first| first != header.value) {
                return Some(refusal(
                    400,
                    "BadRequest",
                    "The request has an invalid or conflicting Content-Length.",
                ));
            }
            length = Some(header.value);
        }
    }
    None
}

/// Has the router answer `refusal` in its envelope, writes the answer with
/// `Connection: close`, and closes the connection after reading (and
/// discarding) what the client still sends, for a bounded time, so the
/// client sees the answer rather than a reset.
async fn refuse<IO, A: App>(mut io: IO, handler: &Handler<A>, refusal: Refusal)
where
    IO: AsyncRead + AsyncWrite + Unpin,
{
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let out = render(handler.clone(), refusal).await;
    let written = async {
        io.write_all(&out).await?;
        io.flush().await?;
        io.shutdown().await
    };
    if tokio::time::timeout(DRAIN_TIME, written).await.is_err() {
        return;
    }
    let linger = async {
        let mut sink = [0u8; 8192];
        let mut left = DRAIN_BYTES;
        while left > 0 {
            match io.read(&mut sink).await {
                Ok(0) | Err(_) => break,
                Ok(n) => left = left.saturating_sub(n),
            }
        }
    };
    let _ = tokio::time::timeout(DRAIN_TIME, linger).await;
}

/// The router's answer to `refusal`, as the bytes of an HTTP/1.1 response
/// that closes the connection.
async fn render<A: App>(handler: Handler<A>, refusal: Refusal) -> Vec<u8> {
    let mut request = hyper::Request::new(axum::body::Body::empty());
    request.extensions_mut().insert(ConnectInfo(handler.peer));
    request.extensions_mut().insert(handler.scheme);
    request.extensions_mut().insert(handler.local);
    request.extensions_mut().insert(refusal);
    let mut router = handler.router;
    let Ok(response) = tower_service::Service::call(&mut router, request).await;
    let (parts, body) = response.into_parts();
    let body = http_body_util_collect(body).await;
    let mut out = format!(
        "HTTP/1.1 {} {}\r\n",
        parts.status.as_u16(),
        parts.status.canonical_reason().unwrap_or("")
    )
    .into_bytes();
    for (name, value) in &parts.headers {
        if name == axum::http::header::CONTENT_LENGTH || name == axum::http::header::CONNECTION {
            continue;
        }
        out.extend_from_slice(name.as_str().as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(value.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(
        format!(
            "content-length: {}\r\nconnection: close\r\n\r\n",
            body.len()
        )
        .as_bytes(),
    );
    out.extend_from_slice(&body);
    out
}

/// The refusal behind hyper's own answer to a request head it could not
/// take, if `head` is one: an error status line, then at most `date`,
/// `content-length: 0` and `connection` fields, and nothing after the head.
/// Every answer of the router carries a request id, so none looks like this.
fn hyper_refusal(head: &[u8]) -> Option<Refusal> {
    let rest = head.strip_prefix(b"HTTP/1.1 ")?;
    let status = axum::http::StatusCode::from_bytes(rest.get(..3)?).ok()?;
    if !status.is_client_error() && !status.is_server_error() {
        return None;
    }
    let end = head.windows(4).position(|w| w == b"\r\n\r\n")?;
    if end + 4 != head.len() {
        return None;
    }
    for line in head[..end].split(|b| *b == b'\n').skip(1) {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        let colon = line.iter().position(|b| *b == b':')?;
        let (name, value) = (&line[..colon], line[colon + 1..].trim_ascii());
        let allowed = name.eq_ignore_ascii_case(b"date")
            || name.eq_ignore_ascii_case(b"connection")
            || (name.eq_ignore_ascii_case(b"content-length") && value == b"0");
        if !allowed {
            return None;
        }
    }
    let (code, message) = match status.as_u16() {
        414 => ("RequestUriTooLong", "The request target is too long."),
        431 => (
            "RequestHeaderFieldsTooLarge",
            "The request head has too many header fields, or they are too large.",
        ),
        505 => (
            "HttpVersionNotSupported",
            "Only HTTP/1.0, HTTP/1.1 and HTTP/2 are supported.",
        ),
        408 => ("RequestTimeout", "The request head did not arrive in time."),
        _ if status.is_server_error() => (
            "ServiceUnavailable",
            "The server could not take the request.",
        ),
        _ => (
            "BadRequest",
            "The request could not be parsed as HTTP/1.1 (a malformed request line or header field).",
        ),
    };
    Some(Refusal {
        status: status.as_u16(),
        code,
        message: message.to_owned(),
    })
}

/// A connection's byte stream as hyper sees it. Reading: the bytes
/// [`first_head`] already read come first. Writing: hyper's own bare
/// answers to broken request heads ([`hyper_refusal`]) are replaced by the
/// router's answer to the same [`Refusal`], so a later head on a kept-alive
/// connection gets Graph's envelope like the first one.
struct Rewrite<IO, A> {
    io: IO,
    /// Read already; `at` is how much of it hyper has taken.
    prefix: Vec<u8>,
    at: usize,
    handler: Handler<A>,
    pending: Pending,
}

/// The replacement of a bare answer, until it is written.
enum Pending {
    Nothing,
    Rendering(Pin<Box<dyn Future<Output = Vec<u8>> + Send>>),
    Writing(Vec<u8>, usize),
}

impl<IO: AsyncWrite + Unpin, A: App> Rewrite<IO, A> {
    /// Renders and writes the pending replacement; ready once none is left.
    fn poll_pending(
        &mut self,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        loop {
            match &mut self.pending {
                Pending::Nothing => return std::task::Poll::Ready(Ok(())),
                Pending::Rendering(future) => {
                    let bytes = std::task::ready!(future.as_mut().poll(cx));
                    self.pending = Pending::Writing(bytes, 0);
                }
                Pending::Writing(bytes, at) => {
                    while *at < bytes.len() {
                        let n = std::task::ready!(
                            Pin::new(&mut self.io).poll_write(cx, &bytes[*at..])
                        )?;
                        if n == 0 {
                            return std::task::Poll::Ready(Err(
                                std::io::ErrorKind::WriteZero.into()
                            ));
                        }
                        *at += n;
                    }
                    self.pending = Pending::Nothing;
                }
            }
        }
    }

    /// Takes `head` in place of the stream when it is hyper's bare answer.
    fn replace(&mut self, cx: &mut std::task::Context<'_>, head: &[u8]) -> bool {
        let Some(refusal) = hyper_refusal(head) else {
            return false;
        };
        self.pending = Pending::Rendering(Box::pin(render(self.handler.clone(), refusal)));
        // Start now; whatever is left goes out on the next write, flush or
        // shutdown, which wait for it.
        let _ = self.poll_pending(cx);
        true
    }
}

impl<IO: AsyncRead + Unpin, A: Unpin> AsyncRead for Rewrite<IO, A> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        let this = &mut *self;
        if this.at < this.prefix.len() {
            let n = buf.remaining().min(this.prefix.len() - this.at);
            buf.put_slice(&this.prefix[this.at..this.at + n]);
            this.at += n;
            if this.at == this.prefix.len() {
                this.prefix = Vec::new();
                this.at = 0;
            }
            return std::task::Poll::Ready(Ok(()));
        }
        Pin::new(&mut this.io).poll_read(cx, buf)
    }
}

impl<IO: AsyncWrite + Unpin, A: App> AsyncWrite for Rewrite<IO, A> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        std::task::ready!(self.poll_pending(cx))?;
        if self.replace(cx, buf) {
            return std::task::Poll::Ready(Ok(buf.len()));
        }
        Pin::new(&mut self.io).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> std::task::Poll<std::io::Result<usize>> {
        std::task::ready!(self.poll_pending(cx))?;
        let mut filled = bufs.iter().filter(|b| !b.is_empty());
        if let (Some(only), None) = (filled.next(), filled.next())
            && self.replace(cx, only)
        {
            return std::task::Poll::Ready(Ok(only.len()));
        }
        Pin::new(&mut self.io).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(
        mut self: Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::task::ready!(self.poll_pending(cx))?;
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(
        mut self: Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::task::ready!(self.poll_pending(cx))?;
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
}

/// The bytes of a small body the router produced.
async fn http_body_util_collect(body: axum::body::Body) -> Vec<u8> {
    use http_body::Body as _;
    let mut body = std::pin::pin!(body);
    let mut out = Vec::new();
    while let Some(Ok(frame)) = std::future::poll_fn(|cx| body.as_mut().poll_frame(cx)).await {
        if let Ok(data) = frame.into_data() {
            out.extend_from_slice(&data);
        }
        if out.len() > 64 * 1024 {
            break;
        }
    }
    out
}

/// A request body shared between the router and the connection's handler,
/// so that what the router leaves unread can be drained afterwards.
struct SharedBody(Arc<std::sync::Mutex<Incoming>>);

impl http_body::Body for SharedBody {
    type Data = bytes::Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<bytes::Bytes>, hyper::Error>>> {
        let mut body = self.0.lock().unwrap_or_else(|e| e.into_inner());
        Pin::new(&mut *body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.0.lock().map(|b| b.is_end_stream()).unwrap_or(true)
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.0.lock().map(|b| b.size_hint()).unwrap_or_default()
    }
}

/// Reads what is left of `body`, up to [`DRAIN_BYTES`] within
/// [`DRAIN_TIME`]; whether it reached the end.
async fn drain(body: &std::sync::Mutex<Incoming>) -> bool {
    use http_body::Body as _;
    let declared = body.lock().map_or(0, |b| b.size_hint().lower());
    if declared > DRAIN_BYTES as u64 {
        return false;
    }
    let read = async {
        let mut left = DRAIN_BYTES;
        loop {
            let frame = std::future::poll_fn(|cx| {
                let mut body = body.lock().unwrap_or_else(|e| e.into_inner());
                if body.is_end_stream() {
                    return std::task::Poll::Ready(None);
                }
                Pin::new(&mut *body).poll_frame(cx)
            })
            .await;
            match frame {
                None => return true,
                Some(Err(_)) => return false,
                Some(Ok(frame)) => {
                    let n = frame.data_ref().map_or(0, bytes::Bytes::len);
                    if n > left {
                        return false;
                    }
                    left -= n;
                }
            }
        }
    };
    tokio::time::timeout(DRAIN_TIME, read)
        .await
        .unwrap_or(false)
}

type ResponseFuture =
    Pin<Box<dyn Future<Output = Result<axum::response::Response, Infallible>> + Send>>;

impl<A: App> hyper::service::Service<hyper::Request<Incoming>> for Handler<A> {
    type Response = axum::response::Response;
    type Error = Infallible;
    type Future = ResponseFuture;

    fn call(&self, request: hyper::Request<Incoming>) -> ResponseFuture {
        use http_body::Body as _;
        let (mut parts, body) = request.into_parts();
        parts.extensions.insert(ConnectInfo(self.peer));
        parts.extensions.insert(self.scheme);
        parts.extensions.insert(self.local);
        let busy = self.activity.begin();
        let mut router = self.router.clone();
        if body.is_end_stream() {
            let request = hyper::Request::from_parts(parts, axum::body::Body::new(body));
            return Box::pin(async move {
                let response = tower_service::Service::call(&mut router, request).await;
                drop(busy);
                response
            });
        }
        // A request with a body: what the router leaves unread is drained
        // once it answered, or the answer closes the connection.
        let body = Arc::new(std::sync::Mutex::new(body));
        let request =
            hyper::Request::from_parts(parts, axum::body::Body::new(SharedBody(body.clone())));
        Box::pin(async move {
            let Ok(mut response) = tower_service::Service::call(&mut router, request).await;
            if !drain(&body).await {
                response.headers_mut().insert(
                    axum::http::header::CONNECTION,
                    axum::http::HeaderValue::from_static("close"),
                );
            }
            drop(busy);
            Ok(response)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::hyper_refusal;

    #[test]
    fn only_bare_error_heads_are_taken_for_hyper_refusals() {
        let bare = b"HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\ndate: Fri, 04 Dec 2026 06:00:00 GMT\r\n\r\n";
        let refusal = hyper_refusal(bare).expect("hyper's bare 400");
        assert_eq!((refusal.status, refusal.code), (400, "BadRequest"));
        let too_large = b"HTTP/1.1 431 Request Header Fields Too Large\r\nconnection: close\r\ncontent-length: 0\r\n\r\n";
        assert_eq!(hyper_refusal(too_large).unwrap().status, 431);

        let not_refusals: [&[u8]; 5] = [
            // The router's answers carry a request id and a body.
            b"HTTP/1.1 404 Not Found\r\ncontent-type: application/json\r\nrequest-id: x\r\ncontent-length: 0\r\n\r\n",
            // A success, even a bare one.
            b"HTTP/1.1 204 No Content\r\ndate: Fri, 04 Dec 2026 06:00:00 GMT\r\n\r\n",
            // Something follows the head.
            b"HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\n\r\nx",
            // A body is announced.
            b"HTTP/1.1 400 Bad Request\r\ncontent-length: 2\r\n\r\n",
            // Not a status line.
            b"{\"error\":{}}",
        ];
        for head in not_refusals {
            assert!(
                hyper_refusal(head).is_none(),
                "{}",
                String::from_utf8_lossy(head)
            );
        }
    }
}
