//! The configuration file: settings that do not fit on a command line.
//!
//! `presenced serve --config FILE` (or `PRESENCED_CONFIG`) reads a TOML file;
//! environment variables `PRESENCED_<SECTION>__<KEY>` (note the double
//! underscore between levels, e.g. `PRESENCED_THROTTLE__DEFAULT=off`)
//! override it. Every section is optional and has defaults; unknown keys are
//! refused so that a typo never goes unnoticed. Command-line flags and their
//! plain `PRESENCED_<FLAG>` variables are separate and win over the file
//! where both name the same setting.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::Context;
use figment::Figment;
use figment::providers::{Env, Format, Toml};
use jiff::SignedDuration;
use presenced_domain::DurationSyntax;
use presenced_domain::duration::{DurationError, parse_duration};
use presenced_identity::{
    GRAPH_APP_ID, GRAPH_AUDIENCE, JwksIssuerConfig, KeySource, ValidatorConfig,
};
use serde::Deserialize;

/// Everything the configuration file can say.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct FileConfig {
    pub server: ServerConfig,
    pub throttle: ThrottleConfig,
    pub auth: AuthConfig,
    pub notifications: NotificationsConfig,
    pub tls: TlsConfig,
    pub limits: LimitsConfig,
    pub cors: CorsConfig,
    pub metrics: crate::telemetry::MetricsConfig,
    pub store: StoreConfig,
}

/// Which store backend holds the state (`--store` wins over `backend`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Backend {
    /// The embedded redb store in the data directory: one node.
    #[default]
    Embedded,
    /// A Redis Cluster (Redis OSS 7, Valkey) shared by any number of nodes.
    Redis,
}

/// `[store]`: where the state lives.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct StoreConfig {
    /// `embedded` (default) or `redis`.
    pub backend: Backend,
    pub redis: RedisFileConfig,
}

/// `[store.redis]`: how to reach the cluster.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RedisFileConfig {
    /// Seed nodes, `redis://[:password@]host:port` or `rediss://...` (TLS).
    pub urls: Vec<String>,
    /// Replicas each write waits for (`WAIT n`); 0: acknowledged by the master alone.
    pub wait_replicas: u32,
    /// Prefix of every key, so that several deployments can share a cluster.
    pub key_prefix: String,
    /// How long a node's lease on a bucket of time-driven work lasts
    /// without renewal (renewed every third of it): how soon the other
    /// nodes take over the deadlines and deliveries of a node that died.
    pub lease_ms: u64,
}

impl Default for RedisFileConfig {
    fn default() -> RedisFileConfig {
        RedisFileConfig {
            urls: Vec::new(),
            wait_replicas: 0,
            key_prefix: "presenced:".into(),
            lease_ms: 10_000,
        }
    }
}

/// The store a command uses, settled from flags, file and environment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreChoice {
    Embedded,
    Redis(presenced_store::redis::RedisConfig),
}

impl StoreConfig {
    /// The store to use: `backend` and `urls` from the flags when given
    /// (they win over the file), `password` from `PRESENCED_REDIS_PASSWORD`
    /// for URLs without one.
    pub fn choose(
        &self,
        backend: Option<Backend>,
        urls: Option<&[String]>,
        password: Option<String>,
    ) -> anyhow::Result<StoreChoice> {
        let backend = backend.unwrap_or(self.backend);
        let urls: Vec<String> = match urls {
            Some(urls) => urls.to_vec(),
            None => self.redis.urls.clone(),
        };
        if backend == Backend::Embedded {
            if !urls.is_empty() && urls != self.redis.urls {
                anyhow::bail!("--redis-url needs --store redis (or [store] backend = \"redis\")");
            }
            return Ok(StoreChoice::Embedded);
        }
        let urls: Vec<String> = urls
            .iter()
            .flat_map(|u| u.split(','))
            .map(str::trim)
            .filter(|u| !u.is_empty())
            .map(str::to_owned)
            .collect();
        if urls.is_empty() {
            anyhow::bail!(
                "the redis store needs at least one cluster node: --redis-url redis://host:port[,...] or [store.redis] urls"
            );
        }
        for url in &urls {
            redis_url(url)?;
        }
        if self.redis.key_prefix.is_empty()
            || self.redis.key_prefix.contains(['{', '}'])
            || self.redis.key_prefix.chars().any(char::is_whitespace)
        {
            anyhow::bail!(
                "store.redis.key_prefix: '{}' must be non-empty, without braces or spaces (such as \"presenced:\")",
                self.redis.key_prefix
            );
        }
        if !(300..=600_000).contains(&self.redis.lease_ms) {
            anyhow::bail!(
                "store.redis.lease_ms: {} is out of range: from 300 (renewed every 100 ms) to 600000 (10 minutes)",
                self.redis.lease_ms
            );
        }
        let lease = std::time::Duration::from_millis(self.redis.lease_ms);
        Ok(StoreChoice::Redis(presenced_store::redis::RedisConfig {
            urls,
            password: password.filter(|p| !p.is_empty()),
            wait_replicas: self.redis.wait_replicas,
            key_prefix: self.redis.key_prefix.clone(),
            leases: presenced_store::redis::LeaseTiming {
                lease,
                renew_every: lease / 3,
            },
            ..presenced_store::redis::RedisConfig::default()
        }))
    }
}

/// Checks one seed URL: `redis://` or `rediss://`, a host and a port.
fn redis_url(url: &str) -> anyhow::Result<()> {
    let rest = url
        .strip_prefix("redis://")
        .or_else(|| url.strip_prefix("rediss://"))
        .ok_or_else(|| {
            anyhow::anyhow!(
                "'{}' is not a Redis URL such as redis://host:6379 or rediss://host:6380",
                redact(url)
            )
        })?;
    let authority = rest.split('/').next().unwrap_or_default();
    let host_port = authority.rsplit('@').next().unwrap_or_default();
    let port_ok = host_port
        .rsplit_once(':')
        .is_some_and(|(host, port)| !host.is_empty() && port.parse::<u16>().is_ok_and(|p| p > 0));
    if !port_ok {
        anyhow::bail!(
            "'{}' needs a host and a port, such as redis://10.0.0.5:6379",
            redact(url)
        );
    }
    Ok(())
}

/// A Redis URL fit for a message: any password replaced by `***`.
pub fn redact(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    let authority_end = rest.find('/').unwrap_or(rest.len());
    match rest[..authority_end].rfind('@') {
        Some(at) => format!("{scheme}://***@{}", &rest[at + 1..]),
        None => url.to_owned(),
    }
}

/// Token validation: clock skew, the validated-token cache, and the issuers
/// trusted besides the development issuer (which is always trusted).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AuthConfig {
    /// Clock skew allowed on `exp` and `nbf`, ISO 8601 (default `PT5M`).
    pub leeway: Option<String>,
    /// How many validated tokens to remember (default 100000; 0: none).
    pub cache_capacity: Option<usize>,
    pub issuers: Vec<IssuerConfig>,
}

/// One `[[auth.issuers]]` entry: an OpenID Connect issuer and where its keys are.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct IssuerConfig {
    /// `iss`, fixed or with `{tenantid}` (Entra: `https://login.microsoftonline.com/{tenantid}/v2.0`).
    pub issuer: String,
    /// Accepted `aud` values; default Microsoft Graph's, as URL and as app id.
    pub audiences: Option<Vec<String>>,
    /// Exactly one of these four says where the keys are.
    pub jwks_file: Option<PathBuf>,
    pub jwks_url: Option<String>,
    pub discovery_url: Option<String>,
    /// `true`: discovery at `<issuer>/.well-known/openid-configuration`.
    pub discovery: bool,
    /// ISO 8601; default `PT1H`.
    pub refresh_interval: Option<String>,
    /// ISO 8601; default `PT30S`.
    pub min_refresh_interval: Option<String>,
    /// ISO 8601; default `PT5S`.
    pub fetch_timeout: Option<String>,
}

impl AuthConfig {
    /// The validator's settings, or why they are wrong.
    pub fn validator_config(&self) -> anyhow::Result<ValidatorConfig> {
        let defaults = ValidatorConfig::default();
        Ok(ValidatorConfig {
            leeway: match &self.leeway {
                None => defaults.leeway,
                // No skew allowed at all is a choice too.
                Some(text) => match parse_duration(text, DurationSyntax::Iso8601) {
                    Ok(leeway) => leeway,
                    Err(DurationError::NotPositive(_)) if !text.starts_with('-') => {
                        SignedDuration::ZERO
                    }
                    Err(e) => anyhow::bail!("auth.leeway: {e}"),
                },
            },
            cache_capacity: self.cache_capacity.unwrap_or(defaults.cache_capacity),
        })
    }

    /// The configured issuers, checked, in file order.
    pub fn issuers(&self) -> anyhow::Result<Vec<JwksIssuerConfig>> {
        self.issuers
            .iter()
            .enumerate()
            .map(|(index, issuer)| {
                issuer
                    .resolve()
                    .with_context(|| format!("auth.issuers[{index}] ({})", issuer.issuer))
            })
            .collect()
    }
}

impl IssuerConfig {
    fn resolve(&self) -> anyhow::Result<JwksIssuerConfig> {
        if self.issuer.is_empty() {
            anyhow::bail!("'issuer' is required");
        }
        let source = match (
            &self.jwks_file,
            &self.jwks_url,
            &self.discovery_url,
            self.discovery,
        ) {
            (Some(path), None, None, false) => KeySource::File(path.clone()),
            (None, Some(url), None, false) => KeySource::jwks_url(url)?,
            (None, None, Some(url), false) => KeySource::discovery_url(url)?,
            (None, None, None, true) => KeySource::discovery_of_issuer(&self.issuer)?,
            _ => anyhow::bail!(
                "give exactly one of jwks_file, jwks_url, discovery_url or discovery = true"
            ),
        };
        let audiences = self
            .audiences
            .clone()
            .unwrap_or_else(|| vec![GRAPH_AUDIENCE.to_owned(), GRAPH_APP_ID.to_owned()]);
        let mut config = JwksIssuerConfig::new(&self.issuer, audiences, source);
        let duration = |key: &str, text: &Option<String>, default| match text {
            Some(text) => iso_duration(key, text).map(|d| d.unsigned_abs()),
            None => Ok(default),
        };
        config.refresh_interval = duration(
            "refresh_interval",
            &self.refresh_interval,
            config.refresh_interval,
        )?;
        config.min_refresh_interval = duration(
            "min_refresh_interval",
            &self.min_refresh_interval,
            config.min_refresh_interval,
        )?;
        config.fetch_timeout =
            duration("fetch_timeout", &self.fetch_timeout, config.fetch_timeout)?;
        Ok(config)
    }
}

/// A positive ISO 8601 duration such as `PT5M`.
fn iso_duration(key: &str, text: &str) -> anyhow::Result<SignedDuration> {
    parse_duration(text, DurationSyntax::Iso8601).map_err(|e| anyhow::anyhow!("{key}: {e}"))
}

/// Change notifications (`[notifications]`). Durations are ISO 8601.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct NotificationsConfig {
    /// How long failed notifications are retried before `missed` (default `PT4H`).
    pub retry_window: Option<String>,
    /// The first retry's delay (default `PT1S`); later ones double.
    pub retry_initial: Option<String>,
    /// The longest delay between retries (default `PT5M`).
    pub retry_max: Option<String>,
    /// How long an endpoint has to echo the validation token (default `PT10S`).
    pub handshake_timeout: Option<String>,
    /// How long one delivery may take (default `PT10S`).
    pub delivery_timeout: Option<String>,
    /// How long before expiry `reauthorizationRequired` is sent (default `PT15M`).
    pub reauthorize_before: Option<String>,
    /// Slow-endpoint rules: a response slower than this is slow (default `PT2.9S`).
    pub slow_threshold: Option<String>,
    /// The rules apply once this many notifications went out in a window (default 100).
    pub slow_after: Option<u64>,
    /// Slow share, in percent, that flags an endpoint (default 10).
    pub slow_flag_percent: Option<u8>,
    /// Slow share, in percent, at which notifications are dropped (default 15).
    pub slow_drop_percent: Option<u8>,
    /// How long a flagged endpoint's notifications are held back (default `PT10M`).
    pub slow_delay: Option<String>,
    /// How often the counters restart (default `PT10M`).
    pub slow_window: Option<String>,
    /// Extension: subscriptions with application permissions.
    pub app_subscriptions: bool,
    /// Extension: more than 650 ids in one subscription.
    pub unlimited_ids: bool,
    /// Extension: the Server-Sent Events live stream.
    pub live_stream: bool,
    /// How many changes the live stream keeps for reconnecting clients (default 100000).
    pub live_stream_log: Option<usize>,
    /// Networks webhooks may reach even though the deny list names them.
    pub allow_networks: Vec<String>,
    /// Networks webhooks may not reach; default: loopback, private,
    /// link-local, CGNAT and unspecified ranges.
    pub deny_networks: Option<Vec<String>>,
}

/// Per app per tenant request limits (decisions.md 22).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ThrottleConfig {
    /// `off`, or `REQUESTS/SECONDSs` such as `1500/30s`; overrides `--throttle`.
    pub default: Option<String>,
    /// Per tenant id: `off` or `REQUESTS/SECONDSs`.
    pub tenants: BTreeMap<String, String>,
}

/// The HTTPS listener's certificate. Without both files, a development CA in
/// `<data-dir>/tls/` signs one for `localhost`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TlsConfig {
    /// PEM certificate chain, leaf first; used as given.
    pub cert_file: Option<PathBuf>,
    /// PEM private key (PKCS#8, PKCS#1 or SEC1) of the leaf certificate.
    pub key_file: Option<PathBuf>,
}

/// Limits at the edge, so that no client can hold the server.
/// Durations are ISO 8601 (`PT30S`, `PT0.5S`).
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LimitsConfig {
    /// Connections served at once over all listeners; more wait in the
    /// listen backlog until one closes.
    pub max_connections: usize,
    /// Bytes of a request's head (request line and header fields); more is
    /// `431` in Graph's envelope.
    pub max_header_bytes: usize,
    /// Concurrent requests (streams) on one HTTP/2 connection.
    pub max_streams_per_connection: u32,
    /// A request that has not been answered by then (a body that arrives
    /// too slowly, a stuck handler) is answered `408`.
    pub request_timeout: String,
    /// Time to send a request's whole head, counted from the connection's
    /// start or the previous answer; also bounds the TLS handshake.
    pub header_read_timeout: String,
    /// A connection with no request in flight for this long is closed.
    pub idle_timeout: String,
    /// Requests failing authentication (401) allowed per client IP address:
    /// `off` or `REQUESTS/SECONDSs`. Over it, every request from that address
    /// is `429` until the budget refills.
    pub unauthenticated: String,
    /// Sessions one user keeps; a new one beyond it drops the least
    /// recently refreshed one.
    pub max_sessions_per_user: usize,
    /// Subscriptions one app may hold in one tenant; more is `403`.
    pub max_subscriptions_per_app: usize,
    /// Subscriptions over all apps and tenants; more is `403`.
    pub max_subscriptions: usize,
    /// Bytes one user's stored presence record may take (a backstop; the
    /// parts are bounded on their own); a write over it is `400`.
    pub max_user_record_bytes: usize,
}

impl Default for LimitsConfig {
    fn default() -> LimitsConfig {
        LimitsConfig {
            max_connections: 1024,
            max_header_bytes: 128 * 1024,
            max_streams_per_connection: 100,
            request_timeout: "PT30S".into(),
            header_read_timeout: "PT10S".into(),
            idle_timeout: "PT60S".into(),
            unauthenticated: "300/60s".into(),
            max_sessions_per_user: 64,
            max_subscriptions_per_app: 1000,
            max_subscriptions: 100_000,
            max_user_record_bytes: 64 * 1024,
        }
    }
}

/// `[server]`: how presenced is reached.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ServerConfig {
    /// The URL clients reach presenced at when it sits behind a proxy
    /// (`https://presence.example.com`): the built-in identity provider names
    /// its issuer and endpoints under it instead of the request's own URL.
    pub public_url: Option<String>,
}

/// A public URL as `--public-url` or `[server] public_url` give it:
/// `http(s)://host[:port]`, a trailing `/` dropped; nothing else.
pub fn public_url(text: &str) -> anyhow::Result<String> {
    let trimmed = text.strip_suffix('/').unwrap_or(text);
    if !presenced_identity::is_origin(trimmed) {
        anyhow::bail!(
            "'{text}' is not a public URL such as https://presence.example.com or https://host:8443 (scheme, host and port only)"
        );
    }
    Ok(trimmed.to_ascii_lowercase())
}

/// Cross-origin requests from browser apps (`[cors]`), on every Graph,
/// identity-provider and extension path.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CorsConfig {
    /// `["*"]` (the default: any origin, as Graph, since credentials are
    /// bearer tokens), or origins such as `"https://app.example"`.
    pub allowed_origins: Vec<String>,
    /// How long browsers may cache a preflight's answer, ISO 8601 (default `PT1H`).
    pub max_age: Option<String>,
}

impl Default for CorsConfig {
    fn default() -> CorsConfig {
        CorsConfig {
            allowed_origins: vec!["*".into()],
            max_age: None,
        }
    }
}

impl CorsConfig {
    /// The CORS answers these settings ask for, or why they are wrong.
    pub fn cors(&self) -> anyhow::Result<crate::api::cors::Cors> {
        use crate::api::cors::{Cors, DEFAULT_MAX_AGE, Origins};
        let origins = Origins::parse(&self.allowed_origins)
            .map_err(|e| anyhow::anyhow!("cors.allowed_origins: {e}"))?;
        let max_age = match &self.max_age {
            None => DEFAULT_MAX_AGE,
            Some(text) => iso_duration("cors.max_age", text)?.unsigned_abs(),
        };
        Ok(Cors::new(origins, max_age))
    }
}

impl FileConfig {
    /// Reads `file` (if any) and the `PRESENCED_<SECTION>__<KEY>` variables.
    pub fn load(file: Option<&Path>) -> anyhow::Result<FileConfig> {
        let mut figment = Figment::new();
        if let Some(file) = file {
            if !file.exists() {
                anyhow::bail!("configuration file {} does not exist", file.display());
            }
            figment = figment.merge(Toml::file(file));
        }
        let env = Env::prefixed("PRESENCED_")
            .filter(|key| key.as_str().contains("__"))
            .split("__");
        figment
            .merge(env)
            .extract()
            .context("invalid configuration")
    }
}

#[cfg(test)]
// figment::Jail's closures return its own large error type.
#[allow(clippy::result_large_err)]
mod tests {
    use super::*;

    #[test]
    fn an_empty_configuration_is_all_defaults() {
        figment::Jail::expect_with(|_| {
            let config = FileConfig::load(None).unwrap();
            assert!(config.throttle.default.is_none());
            assert!(config.tls.cert_file.is_none());
            assert_eq!(config.limits.max_connections, 1024);
            assert_eq!(config.limits.max_sessions_per_user, 64);
            assert_eq!(config.limits.max_subscriptions_per_app, 1000);
            assert_eq!(config.limits.max_subscriptions, 100_000);
            assert_eq!(config.limits.max_user_record_bytes, 65536);
            assert_eq!(config.cors.allowed_origins, ["*"]);
            assert!(config.cors.cors().is_ok());
            Ok(())
        });
    }

    #[test]
    fn the_file_is_read_and_the_environment_overrides_it() {
        figment::Jail::expect_with(|jail| {
            jail.create_file(
                "presenced.toml",
                "[throttle]\ndefault = \"100/10s\"\ntenants = { \"4f5e1d6c-2b3a-4c9d-8e7f-0a1b2c3d4e5f\" = \"off\" }\n\
                 [tls]\ncert_file = \"server.pem\"\nkey_file = \"server-key.pem\"\n\
                 [limits]\nmax_connections = 8\nrequest_timeout = \"PT5S\"\n",
            )?;
            jail.set_env("PRESENCED_THROTTLE__DEFAULT", "off");
            jail.set_env("PRESENCED_LIMITS__MAX_CONNECTIONS", "16");
            jail.set_env("PRESENCED_LIMITS__MAX_SESSIONS_PER_USER", "8");
            jail.set_env("PRESENCED_DATA_DIR", "/ignored/here");
            let config = FileConfig::load(Some(Path::new("presenced.toml"))).unwrap();
            assert_eq!(config.throttle.default.as_deref(), Some("off"));
            assert_eq!(config.throttle.tenants.len(), 1);
            assert_eq!(config.tls.key_file, Some(PathBuf::from("server-key.pem")));
            assert_eq!(config.limits.max_connections, 16);
            assert_eq!(config.limits.request_timeout, "PT5S");
            assert_eq!(config.limits.idle_timeout, "PT60S");
            assert_eq!(config.limits.max_sessions_per_user, 8);
            Ok(())
        });
    }

    #[test]
    fn public_urls_are_origins() {
        assert_eq!(
            public_url("https://Presence.example.com/").unwrap(),
            "https://presence.example.com"
        );
        assert_eq!(public_url("http://h:8080").unwrap(), "http://h:8080");
        for bad in [
            "presence.example.com",
            "https://h/x",
            "https://h?q",
            "https://a\"b",
        ] {
            assert!(public_url(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn cors_origins_are_checked() {
        figment::Jail::expect_with(|jail| {
            jail.create_file(
                "presenced.toml",
                "[cors]\nallowed_origins = [\"https://app.example\"]\nmax_age = \"PT10M\"\n",
            )?;
            let config = FileConfig::load(Some(Path::new("presenced.toml"))).unwrap();
            assert_eq!(config.cors.allowed_origins, ["https://app.example"]);
            assert!(config.cors.cors().is_ok());
            jail.create_file(
                "presenced.toml",
                "[cors]\nallowed_origins = [\"https://app.example/home\"]\n",
            )?;
            let config = FileConfig::load(Some(Path::new("presenced.toml"))).unwrap();
            let error = config.cors.cors().unwrap_err();
            assert!(format!("{error:#}").contains("/home"), "{error:#}");
            Ok(())
        });
    }

    #[test]
    fn the_store_is_embedded_unless_told_otherwise() {
        figment::Jail::expect_with(|jail| {
            let config = FileConfig::load(None).unwrap();
            assert_eq!(
                config.store.choose(None, None, None).unwrap(),
                StoreChoice::Embedded
            );
            jail.create_file(
                "presenced.toml",
                "[store]\nbackend = \"redis\"\n[store.redis]\nurls = [\"redis://10.0.0.5:6379\", \"rediss://:pw@10.0.0.6:6380\"]\nwait_replicas = 1\nkey_prefix = \"p1:\"\n",
            )?;
            let config = FileConfig::load(Some(Path::new("presenced.toml"))).unwrap();
            let StoreChoice::Redis(redis) =
                config.store.choose(None, None, Some("s".into())).unwrap()
            else {
                panic!("redis expected");
            };
            assert_eq!(
                redis.urls,
                ["redis://10.0.0.5:6379", "rediss://:pw@10.0.0.6:6380"]
            );
            assert_eq!(redis.wait_replicas, 1);
            assert_eq!(redis.key_prefix, "p1:");
            assert_eq!(redis.password.as_deref(), Some("s"));
            assert_eq!(redis.leases.lease, std::time::Duration::from_secs(10));
            jail.set_env("PRESENCED_STORE__REDIS__LEASE_MS", "1500");
            let config = FileConfig::load(Some(Path::new("presenced.toml"))).unwrap();
            let StoreChoice::Redis(redis) = config.store.choose(None, None, None).unwrap() else {
                panic!("redis expected");
            };
            assert_eq!(redis.leases.lease, std::time::Duration::from_millis(1500));
            assert_eq!(
                redis.leases.renew_every,
                std::time::Duration::from_millis(500)
            );
            jail.clear_env();
            // Flags win over the file.
            let flag = ["redis://127.0.0.1:7000,redis://127.0.0.1:7001".to_string()];
            let StoreChoice::Redis(redis) = config.store.choose(None, Some(&flag), None).unwrap()
            else {
                panic!("redis expected");
            };
            assert_eq!(
                redis.urls,
                ["redis://127.0.0.1:7000", "redis://127.0.0.1:7001"]
            );
            assert_eq!(
                config
                    .store
                    .choose(Some(Backend::Embedded), None, None)
                    .unwrap(),
                StoreChoice::Embedded
            );
            jail.set_env("PRESENCED_STORE__REDIS__KEY_PREFIX", "p2:");
            let config = FileConfig::load(Some(Path::new("presenced.toml"))).unwrap();
            assert_eq!(config.store.redis.key_prefix, "p2:");
            Ok(())
        });
    }

    #[test]
    fn bad_store_settings_are_refused_clearly() {
        let file = StoreConfig::default();
        let redis = Some(Backend::Redis);
        let url = |u: &str| vec![u.to_string()];
        for (urls, expected) in [
            (None, "at least one cluster node"),
            (Some(url("http://h:6379")), "is not a Redis URL"),
            (Some(url("redis://h")), "needs a host and a port"),
            (Some(url("redis://:secret@h")), "redis://***@h"),
        ] {
            let error = format!(
                "{:#}",
                file.choose(redis, urls.as_deref(), None).unwrap_err()
            );
            assert!(error.contains(expected), "{error}");
            assert!(!error.contains("secret"), "{error}");
        }
        let error = file
            .choose(Some(Backend::Embedded), Some(&url("redis://h:1")), None)
            .unwrap_err();
        assert!(format!("{error:#}").contains("--store redis"), "{error:#}");
        let bad_prefix = StoreConfig {
            redis: RedisFileConfig {
                key_prefix: "a{b}".into(),
                ..RedisFileConfig::default()
            },
            ..StoreConfig::default()
        };
        let error = bad_prefix
            .choose(redis, Some(&url("redis://h:1")), None)
            .unwrap_err();
        assert!(format!("{error:#}").contains("key_prefix"), "{error:#}");
        for lease_ms in [0, 299, 600_001] {
            let bad_lease = StoreConfig {
                redis: RedisFileConfig {
                    lease_ms,
                    ..RedisFileConfig::default()
                },
                ..StoreConfig::default()
            };
            let error = bad_lease
                .choose(redis, Some(&url("redis://h:1")), None)
                .unwrap_err();
            assert!(format!("{error:#}").contains("lease_ms"), "{error:#}");
        }
    }

    #[test]
    fn unknown_keys_are_refused() {
        figment::Jail::expect_with(|jail| {
            jail.create_file("presenced.toml", "[throttle]\ndefualt = \"off\"\n")?;
            let error = FileConfig::load(Some(Path::new("presenced.toml"))).unwrap_err();
            assert!(format!("{error:#}").contains("defualt"), "{error:#}");
            Ok(())
        });
    }

    fn auth(toml: &str) -> anyhow::Result<(ValidatorConfig, Vec<JwksIssuerConfig>)> {
        let mut result = None;
        figment::Jail::expect_with(|jail| {
            jail.create_file("presenced.toml", toml)?;
            result = Some(
                FileConfig::load(Some(Path::new("presenced.toml"))).and_then(|config| {
                    Ok((config.auth.validator_config()?, config.auth.issuers()?))
                }),
            );
            Ok(())
        });
        result.unwrap()
    }

    #[test]
    fn auth_defaults_to_five_minutes_of_skew_and_no_external_issuer() {
        let (validator, issuers) = auth("").unwrap();
        assert_eq!(validator, ValidatorConfig::default());
        assert_eq!(validator.leeway, SignedDuration::from_mins(5));
        assert!(issuers.is_empty());
        let (validator, _) = auth("[auth]\nleeway = \"PT0S\"\ncache_capacity = 0\n").unwrap();
        assert_eq!(validator.leeway, SignedDuration::ZERO);
        assert_eq!(validator.cache_capacity, 0);
    }

    #[test]
    fn issuers_take_their_keys_from_exactly_one_source() {
        let (_, issuers) = auth(
            r#"
[auth]
leeway = "PT1M"

[[auth.issuers]]
issuer = "https://login.microsoftonline.com/{tenantid}/v2.0"
jwks_url = "https://login.microsoftonline.com/common/discovery/v2.0/keys"

[[auth.issuers]]
issuer = "https://accounts.example.com"
audiences = ["api://presence"]
discovery = true
refresh_interval = "PT10M"
min_refresh_interval = "PT10S"
fetch_timeout = "PT2S"

[[auth.issuers]]
issuer = "https://idp.example.org"
discovery_url = "https://idp.example.org/tenant/.well-known/openid-configuration"

[[auth.issuers]]
issuer = "https://files.example.org"
jwks_file = "/etc/presenced/jwks.json"
"#,
        )
        .unwrap();
        let sources: Vec<String> = issuers.iter().map(|i| i.source.to_string()).collect();
        assert_eq!(
            sources,
            [
                "JWKS https://login.microsoftonline.com/common/discovery/v2.0/keys",
                "discovery https://accounts.example.com/.well-known/openid-configuration",
                "discovery https://idp.example.org/tenant/.well-known/openid-configuration",
                "JWKS file /etc/presenced/jwks.json",
            ]
        );
        assert_eq!(issuers[0].audiences, [GRAPH_AUDIENCE, GRAPH_APP_ID]);
        assert_eq!(
            issuers[0].refresh_interval,
            JwksIssuerConfig::DEFAULT_REFRESH_INTERVAL
        );
        assert_eq!(issuers[1].audiences, ["api://presence"]);
        assert_eq!(issuers[1].refresh_interval.as_secs(), 600);
        assert_eq!(issuers[1].min_refresh_interval.as_secs(), 10);
        assert_eq!(issuers[1].fetch_timeout.as_secs(), 2);
    }

    #[test]
    fn bad_auth_settings_are_refused_with_the_key_that_is_wrong() {
        let entry = |body: &str| {
            format!("[[auth.issuers]]\nissuer = \"https://idp.example.com\"\n{body}\n")
        };
        for (toml, expected) in [
            ("[auth]\nleeway = \"5 minutes\"".to_string(), "auth.leeway"),
            ("[auth]\nleeway = \"-PT5M\"".to_string(), "auth.leeway"),
            (entry(""), "exactly one of"),
            (
                entry("jwks_url = \"https://idp.example.com/k\"\ndiscovery = true"),
                "exactly one of",
            ),
            (entry("jwks_url = \"http://idp.example.com/k\""), "loopback"),
            (entry("jwks_url = \"not a url\""), "not a usable URL"),
            (entry("discovery = true\nrefresh_interval = \"1h\""), "refresh_interval"),
            (entry("discovery = true\njwks = \"x\""), "jwks"),
            (
                "[[auth.issuers]]\nissuer = \"https://login.microsoftonline.com/{tenantid}/v2.0\"\ndiscovery = true".to_string(),
                "discovery needs a fixed issuer",
            ),
            ("[[auth.issuers]]\njwks_url = \"https://x/k\"".to_string(), "'issuer' is required"),
        ] {
            let error = format!("{:#}", auth(&toml).unwrap_err());
            assert!(error.contains(expected), "{toml}: {error}");
        }
    }

    #[test]
    fn the_environment_overrides_auth_settings() {
        figment::Jail::expect_with(|jail| {
            jail.set_env("PRESENCED_AUTH__LEEWAY", "PT30S");
            jail.set_env("PRESENCED_AUTH__CACHE_CAPACITY", "10");
            let config = FileConfig::load(None).unwrap();
            let validator = config.auth.validator_config().unwrap();
            assert_eq!(validator.leeway, SignedDuration::from_secs(30));
            assert_eq!(validator.cache_capacity, 10);
            Ok(())
        });
    }
}
