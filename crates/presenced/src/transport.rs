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
//! - heads beyond `head_buffer_bytes` are refused by hyper itself (`431`
//!   without Graph's envelope); the smaller configured limit is answered in
//!   the envelope by `api::edge`.
//!
//! On shutdown, listeners stop accepting, every connection finishes its
//! in-flight requests (for at most `shutdown_grace`) and closes.
//!
//! This module knows HTTP connections, not Graph: it adds the client's
//! address (`ConnectInfo`) and the scheme ([`Scheme`]) to each request, and nothing else.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::Duration;

use anyhow::Context;
use axum::Router;
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

/// Serves `router` on every listener until `shutdown` completes, then lets
/// in-flight requests finish.
pub async fn serve(
    listeners: Vec<Listener>,
    router: Router,
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
struct Shared {
    router: Router,
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
        .max_buf_size(limits.head_buffer_bytes.max(8192));
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_header_list_size(u32::try_from(limits.head_buffer_bytes).unwrap_or(u32::MAX))
        .max_concurrent_streams(limits.max_streams);
    builder
}

/// Accepts connections while a permit is free, until told to stop.
async fn accept(listener: Listener, shared: Arc<Shared>, mut stop: watch::Receiver<bool>) {
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
async fn connection(
    stream: TcpStream,
    peer: SocketAddr,
    tls: Option<TlsAcceptor>,
    shared: &Shared,
    stop: watch::Receiver<bool>,
) {
    let _ = stream.set_nodelay(true);
    let Some(tls) = tls else {
        return serve_http(stream, peer, Scheme::HTTP, shared, stop).await;
    };
    match tokio::time::timeout(shared.limits.header_read_timeout, tls.accept(stream)).await {
        Ok(Ok(stream)) => serve_http(stream, peer, Scheme::HTTPS, shared, stop).await,
        Ok(Err(error)) => tracing::debug!(%peer, %error, "TLS handshake failed"),
        Err(_) => tracing::debug!(%peer, "TLS handshake timed out"),
    }
}

/// Serves HTTP on one connection until it ends, is idle too long, or the
/// server stops.
async fn serve_http<IO>(
    io: IO,
    peer: SocketAddr,
    scheme: Scheme,
    shared: &Shared,
    mut stop: watch::Receiver<bool>,
) where
    IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let activity = Arc::new(Activity::new());
    let service = Handler {
        router: shared.router.clone(),
        peer,
        scheme,
        activity: activity.clone(),
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
struct Handler {
    router: Router,
    peer: SocketAddr,
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

type ResponseFuture =
    Pin<Box<dyn Future<Output = Result<axum::response::Response, Infallible>> + Send>>;

impl hyper::service::Service<hyper::Request<Incoming>> for Handler {
    type Response = axum::response::Response;
    type Error = Infallible;
    type Future = ResponseFuture;

    fn call(&self, mut request: hyper::Request<Incoming>) -> ResponseFuture {
        request.extensions_mut().insert(ConnectInfo(self.peer));
        request.extensions_mut().insert(self.scheme);
        let busy = self.activity.begin();
        let mut router = self.router.clone();
        Box::pin(async move {
            let response = tower_service::Service::call(&mut router, request).await;
            drop(busy);
            response
        })
    }
}
