//! Start-up, serving and shutdown: wiring only, no presence rule.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context;
use presenced_domain::{DurationSyntax, Rules};
use presenced_identity::{
    DevIssuer, DevIssuerKey, JwksIssuer, JwksIssuerConfig, Registry, TrustedIssuer, Validator,
    ValidatorConfig,
};

use crate::api::edge::{Edge, EdgeLimits};
use crate::api::throttle::{Limit, Throttle};
use crate::api::{self, AppState};
use crate::backend::OpenStore;
use crate::clock::{Clock, ClockKind};
use crate::config::{FileConfig, StoreChoice};
use crate::directory;
use crate::tls::{self, CertificateSource};
use crate::transport::{self, ConnectionLimits, Listener};

/// Everything `presenced serve` is told.
#[derive(Debug, Clone)]
pub struct ServeConfig {
    /// The embedded store and everything else kept on disk; with Redis,
    /// only what is local to the node (the development TLS CA).
    pub data_dir: PathBuf,
    /// Which store holds the state.
    pub store: StoreChoice,
    /// Where to serve plain HTTP; `None`: HTTPS only.
    pub listen: Option<SocketAddr>,
    /// Where to serve HTTPS as well, if anywhere.
    pub tls_listen: Option<SocketAddr>,
    /// `--tls-cert`/`--tls-key`; win over the file's `[tls]` section.
    pub tls_cert: Option<PathBuf>,
    pub tls_key: Option<PathBuf>,
    pub directory: Option<PathBuf>,
    pub clock: ClockKind,
    /// The default per app per tenant limit; `None`: throttling off.
    pub throttle: Option<Limit>,
    /// What the configuration file says.
    pub file: FileConfig,
    pub rules: Rules,
    pub durations: DurationSyntax,
    /// `--webhooks-allow-loopback-http`.
    pub webhooks_allow_loopback_http: bool,
}

/// Runs the server until SIGINT or SIGTERM, then finishes in-flight requests
/// and writes before returning.
pub async fn serve(config: ServeConfig) -> anyhow::Result<()> {
    // Settings first: a mistake in them stops start-up before anything is opened.
    let validator_config = config.file.auth.validator_config()?;
    // Before anything that records (store, validator, scheduler) starts.
    crate::telemetry::install(&config.file.metrics)?;
    let trusted = config.file.auth.issuers()?;
    tls::install_provider();
    let (edge_limits, connection_limits) = limits(&config)?;
    let config = ServeConfig {
        rules: Rules {
            max_sessions: config.file.limits.max_sessions_per_user,
            ..config.rules
        },
        ..config
    };
    let cors = config.file.cors.cors()?;
    let public_url = match &config.file.server.public_url {
        Some(url) => {
            let url = crate::config::public_url(url).context("--public-url / server.public_url")?;
            Some(crate::api::PublicUrl(url.into()))
        }
        None => None,
    };
    let tls = match config.tls_listen {
        Some(_) => Some(tls::load(
            &certificate_source(&config)?,
            jiff::Timestamp::now(),
        )?),
        None => None,
    };
    let opened = OpenStore::open(
        &config.store,
        &config.data_dir,
        config.rules,
        config.file.limits.max_user_record_bytes,
    )
    .await?;
    let store = opened.store.clone();

    let key = opened.issuer_key().await?;
    let validator = Arc::new(validator(validator_config, trusted, &key).await?);

    let registry = load_directory(&opened, config.directory.as_deref()).await?;
    let refresh_tokens = opened.refresh_tokens().await?;

    let shared_clock = config.clock == ClockKind::Manual && opened.redis.is_some();
    let clock = match config.clock {
        ClockKind::System => Clock::System,
        ClockKind::Manual => {
            // Whole milliseconds, so that readings print the same in every format.
            let real = jiff::Timestamp::from_millisecond(jiff::Timestamp::now().as_millisecond())?;
            let saved = store.manual_clock().await?;
            match saved {
                // Shared by several nodes: join it where it is.
                Some(saved) if shared_clock => Clock::manual(saved),
                // Resume where the manual clock was, so a restart never moves
                // presence time backwards and expirations still hold.
                Some(saved) => Clock::manual(saved.max(real)),
                None => {
                    if shared_clock {
                        store.set_manual_clock(real).await?;
                    }
                    Clock::manual(real)
                }
            }
        }
    };
    let clock = Arc::new(clock);
    let notifier = crate::notify::Notifier::new(
        store.clone(),
        clock.clone(),
        config.rules,
        notify_config(&config)?,
        target_policy(&config)?,
        key.clone(),
    )?;
    notifier.start();
    if shared_clock {
        follow_shared_clock(store.clone(), clock.clone(), notifier.clone());
    }
    if let Some(redis) = &opened.redis {
        watch_redis(redis.clone());
    }
    let state = Arc::new(AppState {
        notifier,
        store: store.clone(),
        clock,
        validator,
        issuer_key: key,
        registry: Arc::new(registry),
        rules: config.rules,
        durations: config.durations,
        throttle: throttle(&config)?.with_shared(store.shared_limiter()),
        edge: Edge::new(edge_limits),
        cors: Arc::new(cors),
        public_url,
        codes: Arc::new(opened.codes()),
        refresh_tokens: Arc::new(refresh_tokens),
        shared_clock,
        not_ready: std::sync::atomic::AtomicBool::new(false),
    });

    // The metrics listener first: its line precedes the API's on stdout.
    let metrics_server = match config.file.metrics.listen {
        Some(address) => {
            let listener = Listener::bind(address, None)
                .await
                .context("metrics.listen")?;
            println!("presenced metrics on http://{}", listener.local_addr()?);
            let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
            let task = tokio::spawn(transport::serve(
                vec![listener],
                crate::telemetry::router(state.clone()),
                connection_limits,
                async {
                    let _ = stopped.await;
                },
            ));
            Some((stop, task))
        }
        None => None,
    };

    let mut listeners = Vec::new();
    if let Some(listen) = config.listen {
        let plain = Listener::bind(listen, None).await?;
        let address = plain.local_addr()?;
        tracing::info!(%address, data_dir = %config.data_dir.display(), store = opened.kind(), clock = ?config.clock, "presenced ready");
        println!("presenced listening on http://{address}");
        listeners.push(plain);
    }
    if let (Some(tls_listen), Some(tls)) = (config.tls_listen, &tls) {
        let secure = Listener::bind(tls_listen, Some(tls.config.clone())).await?;
        let address = secure.local_addr()?;
        tracing::info!(%address, "presenced ready for HTTPS");
        println!("presenced listening on https://{address}");
        if let Some(ca) = &tls.ca_file {
            println!(
                "HTTPS uses a development certificate: trust the CA in {} \
                 (curl --cacert, SSL_CERT_FILE, NODE_EXTRA_CA_CERTS)",
                ca.display()
            );
        }
        listeners.push(secure);
    }

    transport::serve(
        listeners,
        api::service(state),
        connection_limits,
        shutdown_signal(),
    )
    .await;
    if let Some((stop, task)) = metrics_server {
        let _ = stop.send(());
        let _ = task.await;
    }
    tracing::info!("shutting down: finishing writes");
    store.close().await?;
    Ok(())
}

/// How often a node looks for another node's move of the shared manual clock.
const SHARED_CLOCK_POLL: std::time::Duration = std::time::Duration::from_millis(50);

/// With the manual clock shared through Redis, moves this node's clock when
/// another node moved it, and wakes this node's scheduler and outbox as a
/// local `POST /admin/clock` would. (Requests read the clock themselves;
/// this is for the time-driven work.) Ends when the store closes.
fn follow_shared_clock(
    store: Arc<dyn presenced_store::Store>,
    clock: Arc<Clock>,
    notifier: Arc<crate::notify::Notifier>,
) {
    tokio::spawn(async move {
        loop {
            tokio::time::sleep(SHARED_CLOCK_POLL).await;
            match store.manual_clock().await {
                Ok(Some(at)) => {
                    if clock.catch_up(at) {
                        notifier.clock_moved();
                    }
                }
                Ok(None) => {}
                Err(presenced_store::StoreError::Closed) => return,
                // Redis unreachable: requests answer 503 meanwhile; try again.
                Err(_) => {}
            }
        }
    });
}

/// How often a node checks that every Redis master answers.
const REDIS_PROBE_INTERVAL: std::time::Duration = std::time::Duration::from_millis(500);

/// Probes the cluster every [`REDIS_PROBE_INTERVAL`], so that `/readyz`
/// says "not ready" while a master is out of reach and "ready" again as
/// soon as it answers. While probes fail, the node also opens a fresh
/// connection from the seed nodes each time (the client's own repair does
/// not always find a restarted master), so service resumes without a
/// restart. Logs each change. Ends when the store closes.
fn watch_redis(redis: Arc<presenced_store::redis::RedisStore>) {
    use presenced_store::StoreError;
    tokio::spawn(async move {
        let mut reachable = true;
        loop {
            tokio::time::sleep(REDIS_PROBE_INTERVAL).await;
            let mut outcome = redis.probe().await;
            if outcome.is_err() && !reachable {
                outcome = match redis.reconnect().await {
                    Ok(()) => redis.probe().await,
                    Err(error) => Err(error),
                };
            }
            match outcome {
                Ok(()) if !reachable => {
                    reachable = true;
                    tracing::warn!("Redis reachable again: ready");
                }
                Ok(()) => {}
                Err(StoreError::Closed) => return,
                Err(error) if reachable => {
                    reachable = false;
                    tracing::error!(%error, "Redis out of reach: not ready, requests answer 503");
                }
                Err(_) => {}
            }
        }
    });
}

/// The token validator: the development issuer, always trusted so that
/// `presenced token` keeps working, then every `[[auth.issuers]]` entry.
async fn validator(
    settings: ValidatorConfig,
    trusted: Vec<JwksIssuerConfig>,
    key: &DevIssuerKey,
) -> anyhow::Result<Validator> {
    let mut issuers: Vec<Arc<dyn TrustedIssuer>> = vec![Arc::new(DevIssuer::new(key))];
    for issuer in trusted {
        issuers.push(Arc::new(JwksIssuer::start(issuer).await?));
    }
    Ok(Validator::new(settings, issuers))
}

/// The `[notifications]` settings.
fn notify_config(config: &ServeConfig) -> anyhow::Result<crate::notify::NotifyConfig> {
    use presenced_domain::duration::parse_duration;
    let file = &config.file.notifications;
    let mut out = crate::notify::NotifyConfig::default();
    let duration =
        |name: &str, text: &Option<String>| -> anyhow::Result<Option<jiff::SignedDuration>> {
            text.as_deref()
                .map(|t| {
                    parse_duration(t, DurationSyntax::Iso8601)
                        .map_err(|e| anyhow::anyhow!("notifications.{name}: {e}"))
                })
                .transpose()
        };
    let std = |d: jiff::SignedDuration| std::time::Duration::try_from(d).unwrap_or_default();
    if let Some(d) = duration("retry_window", &file.retry_window)? {
        out.retry_window = d;
    }
    if let Some(d) = duration("retry_initial", &file.retry_initial)? {
        out.retry_initial = std(d);
    }
    if let Some(d) = duration("retry_max", &file.retry_max)? {
        out.retry_max = std(d);
    }
    if let Some(d) = duration("handshake_timeout", &file.handshake_timeout)? {
        out.handshake_timeout = std(d);
    }
    if let Some(d) = duration("delivery_timeout", &file.delivery_timeout)? {
        out.delivery_timeout = std(d);
    }
    if let Some(d) = duration("reauthorize_before", &file.reauthorize_before)? {
        out.reauthorize_before = d;
    }
    if let Some(d) = duration("slow_threshold", &file.slow_threshold)? {
        out.slow.threshold = std(d);
    }
    if let Some(d) = duration("slow_delay", &file.slow_delay)? {
        out.slow.delay = std(d);
    }
    if let Some(d) = duration("slow_window", &file.slow_window)? {
        out.slow.window = std(d);
    }
    out.slow.after = file.slow_after.unwrap_or(out.slow.after);
    out.slow.flag_percent = file.slow_flag_percent.unwrap_or(out.slow.flag_percent);
    out.slow.drop_percent = file.slow_drop_percent.unwrap_or(out.slow.drop_percent);
    out.app_subscriptions = file.app_subscriptions;
    out.unlimited_ids = file.unlimited_ids;
    out.live_stream = file.live_stream;
    out.live_stream_log = file.live_stream_log.unwrap_or(out.live_stream_log);
    out.max_subscriptions_per_app = config.file.limits.max_subscriptions_per_app;
    out.max_subscriptions = config.file.limits.max_subscriptions;
    Ok(out)
}

/// Which webhook targets are allowed.
fn target_policy(config: &ServeConfig) -> anyhow::Result<crate::notify::outbound::TargetPolicy> {
    use crate::notify::outbound::{DEFAULT_DENY, Network, TargetPolicy};
    let file = &config.file.notifications;
    let parse = |name: &str, list: &[String]| -> anyhow::Result<Vec<Network>> {
        list.iter()
            .map(|n| Network::parse(n).map_err(|e| anyhow::anyhow!("notifications.{name}: {e}")))
            .collect()
    };
    let default_deny: Vec<String> = DEFAULT_DENY.iter().map(|n| n.to_string()).collect();
    Ok(TargetPolicy {
        allow_loopback_http: config.webhooks_allow_loopback_http,
        allow: parse("allow_networks", &file.allow_networks)?,
        deny: parse(
            "deny_networks",
            file.deny_networks.as_deref().unwrap_or(&default_deny),
        )?,
    })
}

/// The throttle from `--throttle` and the file's `[throttle]` section.
fn throttle(config: &ServeConfig) -> anyhow::Result<Throttle> {
    let parse = |what: &str, text: &str| {
        Limit::parse(text).map_err(|e| anyhow::anyhow!("throttle.{what}: {e}"))
    };
    let default = match &config.file.throttle.default {
        Some(text) => parse("default", text)?,
        None => config.throttle,
    };
    let mut tenants = std::collections::HashMap::new();
    for (tenant, text) in &config.file.throttle.tenants {
        let id = presenced_domain::Guid::parse(tenant).ok_or_else(|| {
            anyhow::anyhow!("throttle.tenants: '{tenant}' is not a tenant id (a GUID)")
        })?;
        tenants.insert(id, parse(&format!("tenants.{tenant}"), text)?);
    }
    Ok(Throttle::new(default, tenants))
}

/// The configured certificate files, or the development CA.
fn certificate_source(config: &ServeConfig) -> anyhow::Result<CertificateSource> {
    let cert = config
        .tls_cert
        .clone()
        .or(config.file.tls.cert_file.clone());
    let key = config.tls_key.clone().or(config.file.tls.key_file.clone());
    match (cert, key) {
        (Some(cert), Some(key)) => Ok(CertificateSource::Files { cert, key }),
        (None, None) => Ok(CertificateSource::Development {
            data_dir: config.data_dir.clone(),
        }),
        _ => anyhow::bail!("a TLS certificate needs both a certificate file and a key file"),
    }
}

/// The edge and connection limits of the file's `[limits]` section.
fn limits(config: &ServeConfig) -> anyhow::Result<(EdgeLimits, ConnectionLimits)> {
    let file = &config.file.limits;
    let duration = |what: &str, text: &str| -> anyhow::Result<std::time::Duration> {
        presenced_domain::duration::parse_duration(text, presenced_domain::DurationSyntax::Iso8601)
            .ok()
            .and_then(|d| std::time::Duration::try_from(d).ok())
            .filter(|d| !d.is_zero())
            .ok_or_else(|| {
                anyhow::anyhow!("limits.{what}: '{text}' is not a duration such as PT30S")
            })
    };
    let request_timeout = duration("request_timeout", &file.request_timeout)?;
    if file.max_header_bytes < 1024 {
        anyhow::bail!("limits.max_header_bytes: at least 1024");
    }
    let max_connections = u32::try_from(file.max_connections)
        .ok()
        .filter(|n| (1..=1_000_000).contains(n))
        .ok_or_else(|| anyhow::anyhow!("limits.max_connections: from 1 to 1000000"))?;
    if file.max_streams_per_connection == 0 {
        anyhow::bail!("limits.max_streams_per_connection: at least 1");
    }
    for (what, value, least) in [
        ("max_sessions_per_user", file.max_sessions_per_user, 1),
        (
            "max_subscriptions_per_app",
            file.max_subscriptions_per_app,
            1,
        ),
        ("max_subscriptions", file.max_subscriptions, 1),
        ("max_user_record_bytes", file.max_user_record_bytes, 1024),
    ] {
        if value < least {
            anyhow::bail!("limits.{what}: at least {least}");
        }
    }
    let edge = EdgeLimits {
        max_header_bytes: file.max_header_bytes,
        request_timeout,
        unauthenticated: Limit::parse(&file.unauthenticated)
            .map_err(|e| anyhow::anyhow!("limits.unauthenticated: {e}"))?,
    };
    let connections = ConnectionLimits {
        max_connections,
        head_buffer_bytes: file.max_header_bytes.saturating_mul(2),
        max_streams: file.max_streams_per_connection,
        header_read_timeout: duration("header_read_timeout", &file.header_read_timeout)?,
        idle_timeout: duration("idle_timeout", &file.idle_timeout)?,
        shutdown_grace: request_timeout,
    };
    Ok((edge, connections))
}

/// Loads the directory file (or the demo tenant into an empty store) and
/// returns the identity provider's registrations with its applications and
/// passwords added.
async fn load_directory(
    opened: &OpenStore,
    file: Option<&std::path::Path>,
) -> anyhow::Result<Registry> {
    let store = &*opened.store;
    let declarations = match file {
        Some(path) => directory::read(path)?,
        None if !store.has_directory().await? => {
            let demo = directory::demo();
            print_demo(&demo);
            vec![demo]
        }
        None => Vec::new(),
    };
    let registrations: Vec<_> = declarations
        .iter()
        .map(|d| {
            (
                d.record.tenant.id,
                d.applications.clone(),
                d.passwords.clone(),
            )
        })
        .collect();
    let registry = opened
        .update_registry(move |registry| {
            for (tenant, applications, passwords) in &registrations {
                registry.merge(*tenant, applications.clone(), passwords.clone())?;
            }
            Ok(())
        })
        .await?;
    if declarations.is_empty() {
        return Ok(registry);
    }
    let records = declarations.into_iter().map(|d| d.record).collect();
    let change = store.load_directory(records).await?;
    tracing::info!(
        tenants_added = change.tenants_added,
        users_added = change.users_added,
        users_updated = change.users_updated,
        "directory loaded"
    );
    Ok(registry)
}

fn print_demo(demo: &directory::TenantDeclaration) {
    let tenant = &demo.record.tenant;
    println!(
        "No directory yet: created the demo tenant {} ({}) with these users:",
        tenant.display_name, tenant.id
    );
    for user in &demo.record.users {
        println!(
            "  {}  {}  {}",
            user.id, user.user_principal_name, user.display_name
        );
    }
    if let Some((_, _, password)) = demo.passwords.first() {
        println!(
            "They sign in with the password {password}, also to the presence board at / (open it in a browser)."
        );
    }
    for app in &demo.applications {
        if app.secrets.is_empty() {
            println!(
                "and the public client {} ({}) for the authorization code flow with PKCE, redirect URIs {}.",
                app.display_name,
                app.app,
                app.redirect_uris.join(", ")
            );
        } else {
            println!(
                "and the application {} ({}), client secret {}, with {}.",
                app.display_name,
                app.app,
                app.secrets.join(", "),
                app.roles.join(" and ")
            );
        }
    }
    if let Some(first) = demo.record.users.first() {
        println!(
            "Mint a token for {}: presenced token --tenant {} --app {} --user {} --scopes \"Presence.ReadWrite Presence.Read.All\"",
            first.display_name,
            tenant.id,
            directory::DEMO_APP,
            first.id
        );
    }
}

async fn shutdown_signal() {
    let interrupt = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        () = interrupt => {},
        () = terminate => {},
    }
}
