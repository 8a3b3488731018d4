//! Prometheus metrics (`/metrics`) and the figures of `GET /admin/status`.
//!
//! # Recording
//! Series are recorded through the `metrics` facade into one
//! `metrics-exporter-prometheus` recorder, installed by [`install`] before
//! the store, the validator or the scheduler start (a handle registered
//! before it would count into nothing). Nothing on a request's path takes a
//! lock or allocates to record: every handle is registered once and kept
//! (in a `OnceLock`, or, for the per-route series whose label sets are only
//! met at run time, in a per-thread map filled on a route's first request
//! on that thread), and updating a handle is an atomic operation. With
//! metrics off, no recorder is installed and [`request`] returns at once.
//!
//! Who records what: [`crate::api::envelope`] every response (route template,
//! status, latency); the throttle and the edge guard each refusal; the
//! identity crate each token validation; the store's writer thread each
//! commit; [`crate::notify::delivery`] each webhook POST. Figures that are
//! state rather than events (users, live sessions, deadlines due, scheduler
//! lag, outbox depth and age) are read at scrape time by [`figures`], from
//! counters kept cheaply elsewhere: no scrape walks every user.
//!
//! # Exposure
//! `[metrics]` in the configuration file: off by default. `listen` serves
//! `/metrics` on a listener of its own (plain HTTP, meant for loopback or an
//! internal network); `on_main_listener` also serves it on the API's
//! listeners, where it needs `bearer_token`. A `bearer_token` is required on
//! the dedicated listener too when set.

use std::cell::RefCell;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use jiff::{SignedDuration, Timestamp};
use metrics::{Counter, Gauge, Histogram};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use serde::Deserialize;

use crate::api::error::ApiError;
use crate::api::{AppState, RouteName};

/// The `[metrics]` section of the configuration file.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MetricsConfig {
    /// Serve `/metrics` on this address, on a listener of its own.
    pub listen: Option<SocketAddr>,
    /// Also serve `/metrics` on the API's listeners (needs `bearer_token`).
    pub on_main_listener: bool,
    /// When set, `/metrics` answers only `Authorization: Bearer <token>`.
    pub bearer_token: Option<String>,
}

impl MetricsConfig {
    /// Whether metrics are recorded at all.
    pub fn enabled(&self) -> bool {
        self.listen.is_some() || self.on_main_listener
    }

    /// Refuses settings that would expose `/metrics` unprotected on the API's listeners.
    pub fn check(&self) -> anyhow::Result<()> {
        if self.bearer_token.as_deref().is_some_and(str::is_empty) {
            anyhow::bail!("metrics.bearer_token: empty; remove it or give a secret");
        }
        if self.on_main_listener && self.bearer_token.is_none() {
            anyhow::bail!(
                "metrics.on_main_listener needs metrics.bearer_token: the API's listeners are public"
            );
        }
        Ok(())
    }
}

/// The text exposition format's content type.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Request latency buckets (seconds): 250 µs to 10 s.
const LATENCY_BUCKETS: &[f64] = &[
    0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];
/// Webhook POST buckets (seconds): 5 ms to 30 s (the longest delivery timeout).
const DELIVERY_BUCKETS: &[f64] = &[
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];
/// Writes per commit: 1 to the writer's batch limit (4096).
const BATCH_BUCKETS: &[f64] = &[
    1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 512.0, 1024.0, 2048.0, 4096.0,
];

/// Deadlines due are counted up to this many per scrape.
pub const DUE_COUNT_CAP: usize = 10_000;

/// The installed exporter and who may read it.
struct Exporter {
    handle: PrometheusHandle,
    on_main_listener: bool,
    bearer_token: Option<String>,
    handles: Handles,
}

/// Handles registered once at install.
struct Handles {
    throttled_app_tenant: Counter,
    throttled_unauthenticated: Counter,
    webhook_delivered: Counter,
    webhook_failed: Counter,
    webhook_seconds: Histogram,
    webhook_dropped_slow: Counter,
    webhook_dropped_expired: Counter,
    users: Gauge,
    live_sessions: Gauge,
    deadlines_due: Gauge,
    scheduler_lag: Gauge,
    scheduler_max_lag: Gauge,
    scheduler_processed: Counter,
    outbox_entries: Gauge,
    outbox_age: Gauge,
    ready: Gauge,
}

static EXPORTER: OnceLock<Exporter> = OnceLock::new();

/// Open live-stream connections; kept whether metrics are on or not, for
/// `presenced status`.
static LIVE_SESSIONS: AtomicU64 = AtomicU64::new(0);

const REQUESTS: &str = "presenced_http_requests_total";
const REQUEST_SECONDS: &str = "presenced_http_request_duration_seconds";

/// Installs the process's recorder if `config` turns metrics on, and starts
/// its upkeep (which bounds the memory histograms hold between scrapes).
/// Call once, inside the runtime, before anything records.
pub fn install(config: &MetricsConfig) -> anyhow::Result<()> {
    config.check()?;
    if !config.enabled() || EXPORTER.get().is_some() {
        return Ok(());
    }
    let recorder = PrometheusBuilder::new()
        .set_buckets_for_metric(Matcher::Full(REQUEST_SECONDS.into()), LATENCY_BUCKETS)?
        .set_buckets_for_metric(
            Matcher::Full("presenced_store_commit_seconds".into()),
            LATENCY_BUCKETS,
        )?
        .set_buckets_for_metric(
            Matcher::Full("presenced_webhook_delivery_seconds".into()),
            DELIVERY_BUCKETS,
        )?
        .set_buckets_for_metric(
            Matcher::Full("presenced_store_commit_writes".into()),
            BATCH_BUCKETS,
        )?
        .build_recorder();
    let handle = recorder.handle();
    metrics::set_global_recorder(recorder)
        .map_err(|_| anyhow::anyhow!("a metrics recorder is already installed"))?;
    describe();
    let handles = Handles {
        throttled_app_tenant: metrics::counter!("presenced_throttled_requests_total", "limit" => "app_tenant"),
        throttled_unauthenticated: metrics::counter!("presenced_throttled_requests_total", "limit" => "unauthenticated"),
        webhook_delivered: metrics::counter!("presenced_webhook_deliveries_total", "outcome" => "delivered"),
        webhook_failed: metrics::counter!("presenced_webhook_deliveries_total", "outcome" => "failed"),
        webhook_seconds: metrics::histogram!("presenced_webhook_delivery_seconds"),
        webhook_dropped_slow: metrics::counter!("presenced_webhook_notifications_dropped_total", "reason" => "slow_endpoint"),
        webhook_dropped_expired: metrics::counter!("presenced_webhook_notifications_dropped_total", "reason" => "retry_window"),
        users: metrics::gauge!("presenced_users"),
        live_sessions: metrics::gauge!("presenced_live_sessions"),
        deadlines_due: metrics::gauge!("presenced_scheduler_deadlines_due"),
        scheduler_lag: metrics::gauge!("presenced_scheduler_lag_seconds"),
        scheduler_max_lag: metrics::gauge!("presenced_scheduler_max_lag_seconds"),
        scheduler_processed: metrics::counter!("presenced_scheduler_deadlines_processed_total"),
        outbox_entries: metrics::gauge!("presenced_outbox_entries"),
        outbox_age: metrics::gauge!("presenced_outbox_oldest_due_age_seconds"),
        ready: metrics::gauge!("presenced_ready"),
    };
    let upkeep = handle.clone();
    tokio::spawn(async move {
        let mut every = tokio::time::interval(Duration::from_secs(5));
        loop {
            every.tick().await;
            upkeep.run_upkeep();
        }
    });
    let _ = EXPORTER.set(Exporter {
        handle,
        on_main_listener: config.on_main_listener,
        bearer_token: config.bearer_token.clone(),
        handles,
    });
    Ok(())
}

fn describe() {
    use metrics::{describe_counter, describe_gauge, describe_histogram};
    describe_counter!(
        REQUESTS,
        "HTTP requests answered, by route template and status."
    );
    describe_histogram!(
        REQUEST_SECONDS,
        "Time to answer an HTTP request (to its response head), by route template."
    );
    describe_counter!(
        "presenced_throttled_requests_total",
        "Requests refused with 429, by limit: app_tenant (per app per tenant) or unauthenticated (per address failing authentication)."
    );
    describe_counter!(
        presenced_identity::validate::outcome::NAME,
        "Bearer token validations, by outcome."
    );
    describe_gauge!("presenced_users", "Users in the directory.");
    describe_gauge!(
        "presenced_live_sessions",
        "Open live-stream connections (GET /presences/stream)."
    );
    describe_gauge!(
        "presenced_scheduler_deadlines_due",
        "Presence deadlines due and not yet handled (counted up to 10000)."
    );
    describe_gauge!(
        "presenced_scheduler_lag_seconds",
        "How long the oldest deadline not yet handled has been due (presence clock)."
    );
    describe_gauge!(
        "presenced_scheduler_max_lag_seconds",
        "The most any handled deadline waited, since start."
    );
    describe_counter!(
        "presenced_scheduler_deadlines_processed_total",
        "Deadlines handled since start."
    );
    describe_gauge!(
        "presenced_outbox_entries",
        "Entries in the outbox of notification work (claimed or not)."
    );
    describe_gauge!(
        "presenced_outbox_oldest_due_age_seconds",
        "How long the earliest unclaimed outbox entry has been due (0: none is)."
    );
    describe_counter!(
        "presenced_webhook_deliveries_total",
        "Webhook POSTs, by outcome: delivered (2xx in time) or failed (retried later)."
    );
    describe_histogram!(
        "presenced_webhook_delivery_seconds",
        "Time of a webhook POST, whatever its outcome."
    );
    describe_counter!(
        "presenced_webhook_notifications_dropped_total",
        "Notifications given up, by reason: slow_endpoint or retry_window."
    );
    describe_histogram!(
        "presenced_store_commit_seconds",
        "Time of a store write transaction's commit, fsync included."
    );
    describe_histogram!(
        "presenced_store_commit_writes",
        "Writes carried by one store commit (the group-commit batch)."
    );
    describe_counter!(
        "presenced_store_commit_failures_total",
        "Store commits that failed (the store then stops accepting calls)."
    );
    describe_gauge!("presenced_ready", "1 while the store accepts calls.");
}

fn handles() -> Option<&'static Handles> {
    EXPORTER.get().map(|e| &e.handles)
}

/// A thread's handles of the per-route series, by route template and status.
type RouteHandles = HashMap<(&'static str, u16), (Counter, Histogram)>;

thread_local! {
    /// This thread's handles of the per-route series: route templates are
    /// `&'static str`, so a key is a pointer, a length and a status.
    static ROUTES: RefCell<RouteHandles> =
        RefCell::new(HashMap::new());
}

/// Counts one answered request.
pub fn request(route: &'static str, status: StatusCode, elapsed: Duration) {
    if EXPORTER.get().is_none() {
        return;
    }
    ROUTES.with_borrow_mut(|routes| {
        let (counter, histogram) = routes.entry((route, status.as_u16())).or_insert_with(|| {
            (
                metrics::counter!(REQUESTS, "route" => route, "status" => status.as_str().to_owned()),
                metrics::histogram!(REQUEST_SECONDS, "route" => route),
            )
        });
        counter.increment(1);
        histogram.record(elapsed.as_secs_f64());
    });
}

/// Which limit refused a request with 429.
#[derive(Debug, Clone, Copy)]
pub enum Throttled {
    /// The per app per tenant request rate.
    AppTenant,
    /// The per address limit on failed authentications.
    Unauthenticated,
}

/// Counts one throttled request.
pub fn throttled(limit: Throttled) {
    if let Some(h) = handles() {
        match limit {
            Throttled::AppTenant => h.throttled_app_tenant.increment(1),
            Throttled::Unauthenticated => h.throttled_unauthenticated.increment(1),
        }
    }
}

/// Counts one webhook POST and its time.
pub fn webhook_post(delivered: bool, elapsed: Duration) {
    if let Some(h) = handles() {
        if delivered {
            h.webhook_delivered.increment(1);
        } else {
            h.webhook_failed.increment(1);
        }
        h.webhook_seconds.record(elapsed.as_secs_f64());
    }
}

/// Why notifications were given up.
#[derive(Debug, Clone, Copy)]
pub enum Dropped {
    SlowEndpoint,
    RetryWindow,
}

/// Counts `count` notifications given up.
pub fn webhook_dropped(reason: Dropped, count: usize) {
    if let Some(h) = handles() {
        let counter = match reason {
            Dropped::SlowEndpoint => &h.webhook_dropped_slow,
            Dropped::RetryWindow => &h.webhook_dropped_expired,
        };
        counter.increment(count as u64);
    }
}

/// Held by an open live stream: counts it in `presenced_live_sessions`.
#[derive(Debug)]
pub struct LiveSession(());

impl LiveSession {
    pub fn open() -> LiveSession {
        LIVE_SESSIONS.fetch_add(1, Ordering::Relaxed);
        LiveSession(())
    }
}

impl Drop for LiveSession {
    fn drop(&mut self) {
        LIVE_SESSIONS.fetch_sub(1, Ordering::Relaxed);
    }
}

/// The state figures of `/metrics` and `GET /admin/status`.
#[derive(Debug, Clone, PartialEq)]
pub struct Figures {
    pub ready: bool,
    pub version: &'static str,
    /// The store backend's name.
    pub store: &'static str,
    pub users: Option<u64>,
    pub live_sessions: u64,
    /// `None`: the store could not be asked.
    pub deadlines_due: Option<u64>,
    pub scheduler_lag: Option<SignedDuration>,
    pub scheduler_max_lag: SignedDuration,
    pub scheduler_processed: u64,
    pub outbox_entries: Option<u64>,
    pub outbox_oldest_due_age: Option<SignedDuration>,
}

/// Reads the figures: a few atomics, two short locks, and the store's due
/// deadlines (up to [`DUE_COUNT_CAP`]); on Redis also the outbox's size
/// (a count over every bucket, at most one per 2 s).
pub async fn figures(state: &AppState) -> Figures {
    let store = state.store.figures();
    let now = state.clock.now();
    let ready = state.store.is_ready();
    let due = if ready {
        state.store.due(now, DUE_COUNT_CAP).await.ok()
    } else {
        None
    };
    let scheduler_lag = due.as_ref().map(|due| {
        due.iter()
            .map(|(_, at)| *at)
            .min()
            .map_or(SignedDuration::ZERO, |oldest| {
                now.duration_since(oldest).max(SignedDuration::ZERO)
            })
    });
    // A store that counts in its engine (Redis) is asked only when ready.
    let outbox_entries = match store.outbox_entries {
        Some(count) => Some(count),
        None if ready => state.store.outbox_entries().await,
        None => None,
    };
    let outbox_oldest_due_age = if ready {
        // The outbox runs on real time, whatever the presence clock.
        state.store.outbox_next_due().await.ok().map(|next| {
            next.filter(|due| *due != Timestamp::MIN)
                .map_or(SignedDuration::ZERO, |due| {
                    Timestamp::now()
                        .duration_since(due)
                        .max(SignedDuration::ZERO)
                })
        })
    } else {
        None
    };
    let progress = &state.notifier.scheduler_progress;
    Figures {
        ready,
        version: env!("CARGO_PKG_VERSION"),
        store: store.backend,
        users: store.users,
        live_sessions: LIVE_SESSIONS.load(Ordering::Relaxed),
        deadlines_due: due.map(|due| due.len() as u64),
        scheduler_lag,
        scheduler_max_lag: progress.max_lag(),
        scheduler_processed: progress.processed(),
        outbox_entries,
        outbox_oldest_due_age,
    }
}

fn secs(d: SignedDuration) -> f64 {
    d.as_secs_f64()
}

/// Sets the gauges from `figures`; a figure not known leaves its gauge as it was.
fn publish(h: &Handles, f: &Figures) {
    h.ready.set(if f.ready { 1.0 } else { 0.0 });
    if let Some(users) = f.users {
        h.users.set(users as f64);
    }
    h.live_sessions.set(f.live_sessions as f64);
    if let Some(due) = f.deadlines_due {
        h.deadlines_due.set(due as f64);
    }
    if let Some(lag) = f.scheduler_lag {
        h.scheduler_lag.set(secs(lag));
    }
    h.scheduler_max_lag.set(secs(f.scheduler_max_lag));
    h.scheduler_processed.absolute(f.scheduler_processed);
    if let Some(entries) = f.outbox_entries {
        h.outbox_entries.set(entries as f64);
    }
    if let Some(age) = f.outbox_oldest_due_age {
        h.outbox_age.set(secs(age));
    }
}

/// Whether `authorization` carries `token`, compared in constant time.
fn authorized(token: Option<&str>, authorization: Option<&HeaderValue>) -> bool {
    let Some(token) = token else {
        return true;
    };
    let Some(given) = authorization
        .map(HeaderValue::as_bytes)
        .and_then(|v| v.strip_prefix(b"Bearer "))
    else {
        return false;
    };
    let expected = token.as_bytes();
    let mut difference = u8::from(given.len() != expected.len());
    for (index, byte) in expected.iter().enumerate() {
        difference |= byte ^ given.get(index).copied().unwrap_or(!byte);
    }
    difference == 0
}

async fn render(state: &AppState, exporter: &Exporter, headers: &HeaderMap) -> Response {
    if !authorized(
        exporter.bearer_token.as_deref(),
        headers.get(header::AUTHORIZATION),
    ) {
        return ApiError::unauthenticated("/metrics needs the configured bearer token.")
            .into_response();
    }
    publish(&exporter.handles, &figures(state).await);
    let mut response = Response::new(Body::from(exporter.handle.render()));
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(CONTENT_TYPE));
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

fn with_route(mut response: Response) -> Response {
    response.extensions_mut().insert(RouteName("/metrics"));
    response
}

/// `GET /metrics` on the API's listeners: 404, as any unknown path, unless
/// `metrics.on_main_listener`.
#[utoipa::path(get, path = "/metrics", tag = "meta",
    summary = "Prometheus metrics, when `metrics.on_main_listener` is set (else 404).",
    responses((status = 200, description = "The Prometheus text format.", content_type = "text/plain", body = String),
        (status = 401, description = "`metrics.bearer_token` is set and was not sent."),
        (status = 404, description = "Metrics are not served on this listener.")))]
pub async fn scrape_main(State(state): State<Arc<AppState>>, headers: HeaderMap) -> Response {
    let response = match EXPORTER.get().filter(|e| e.on_main_listener) {
        Some(exporter) => render(&state, exporter, &headers).await,
        None => ApiError::for_status(StatusCode::NOT_FOUND).into_response(),
    };
    with_route(response)
}

async fn scrape_dedicated(State(state): State<Arc<AppState>>, headers: HeaderMap) -> Response {
    match EXPORTER.get() {
        Some(exporter) => render(&state, exporter, &headers).await,
        None => StatusCode::NOT_FOUND.into_response(),
    }
}

/// The dedicated listener's routes: `/metrics` and nothing else.
pub fn router(state: Arc<AppState>) -> Router {
    Router::new()
        .route("/metrics", get(scrape_dedicated))
        .fallback(|| async {
            (
                StatusCode::NOT_FOUND,
                [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
                "Only /metrics is served here.\n",
            )
        })
        .with_state(state)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_bearer_token_must_match_exactly() {
        let header = |text: &'static str| HeaderValue::from_static(text);
        assert!(authorized(None, None));
        assert!(authorized(Some("s3cret"), Some(&header("Bearer s3cret"))));
        assert!(!authorized(Some("s3cret"), None));
        assert!(!authorized(Some("s3cret"), Some(&header("Bearer s3cre"))));
        assert!(!authorized(Some("s3cret"), Some(&header("Bearer s3cret2"))));
        assert!(!authorized(Some("s3cret"), Some(&header("Basic s3cret"))));
        assert!(!authorized(Some("s3cret"), Some(&header("Bearer "))));
    }

    #[test]
    fn the_main_listener_needs_a_token() {
        let config = MetricsConfig {
            on_main_listener: true,
            ..MetricsConfig::default()
        };
        assert!(config.check().is_err());
        let config = MetricsConfig {
            bearer_token: Some(String::new()),
            ..MetricsConfig::default()
        };
        assert!(config.check().is_err());
        assert!(!MetricsConfig::default().enabled());
        assert!(MetricsConfig::default().check().is_ok());
    }
}
