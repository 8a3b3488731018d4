//! Trusting any OpenID Connect issuer: a [`TrustedIssuer`] whose keys come from a JWK set.
//!
//! A [`JwksIssuer`] answers the validator from a snapshot of its key set (an [`ArcSwap`]: one atomic load
//! per lookup, no lock on the request path). A background task replaces the snapshot:
//!
//! - every `refresh_interval` (default one hour), so that rotated keys arrive before they are used;
//! - soon after a token names a `kid` the snapshot does not have (the provider may have rotated early),
//!   but never sooner than `min_refresh_interval` (default 30 s) after the previous attempt, so that a
//!   flood of made-up `kid`s costs the provider at most one request per interval. The token that named
//!   the unknown `kid` is refused meanwhile: validation never waits for the network.
//!
//! A refresh that fails (provider down, slow past the timeout, or answering something that is not a
//! usable JWK set) keeps the previous snapshot, so cached keys keep working and unknown ones stay
//! refused; failed attempts are retried with a backoff that starts at `min_refresh_interval` and doubles
//! up to `refresh_interval`.
//!
//! This module knows where keys come from and when to fetch them again; `source` knows how, `jwks` the
//! JWK format. Neither knows tokens' claims.

mod source;
#[cfg(test)]
mod tests;

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use arc_swap::ArcSwap;
use tokio::sync::Notify;
use tokio::task::JoinHandle;
use tokio::time::Instant;

pub use source::{
    DISCOVERY_PATH, Fetch, FetchFuture, HttpFetch, KeySource, MAX_DOCUMENT_BYTES, SourceError,
};

use crate::jwks::KeySet;
use crate::validate::{IssuerPattern, SigningAlgorithm, TrustedIssuer, VerificationKey};
use source::Loader;

/// One external issuer, as configured.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JwksIssuerConfig {
    /// The issuer (`iss`), fixed or a template with `{tenantid}`.
    pub issuer: String,
    /// The `aud` values accepted from this issuer.
    pub audiences: Vec<String>,
    pub source: KeySource,
    /// How often keys are fetched again when nothing asks for it.
    pub refresh_interval: Duration,
    /// The least time between two fetches, whatever asks for them.
    pub min_refresh_interval: Duration,
    /// How long one HTTP request may take.
    pub fetch_timeout: Duration,
}

impl JwksIssuerConfig {
    pub const DEFAULT_REFRESH_INTERVAL: Duration = Duration::from_secs(3600);
    pub const DEFAULT_MIN_REFRESH_INTERVAL: Duration = Duration::from_secs(30);
    pub const DEFAULT_FETCH_TIMEOUT: Duration = Duration::from_secs(5);

    /// An issuer with the default intervals and timeout.
    pub fn new(issuer: &str, audiences: Vec<String>, source: KeySource) -> JwksIssuerConfig {
        JwksIssuerConfig {
            issuer: issuer.to_owned(),
            audiences,
            source,
            refresh_interval: Self::DEFAULT_REFRESH_INTERVAL,
            min_refresh_interval: Self::DEFAULT_MIN_REFRESH_INTERVAL,
            fetch_timeout: Self::DEFAULT_FETCH_TIMEOUT,
        }
    }
}

/// Why an issuer could not start.
#[derive(Debug, thiserror::Error)]
pub enum IssuerStartError {
    #[error("issuer {issuer}: {reason}")]
    Invalid { issuer: String, reason: String },
    /// A JWKS file is configuration: if it cannot be read at start, presenced does not start.
    #[error("issuer {issuer}: {error}")]
    File { issuer: String, error: SourceError },
}

/// What the request path and the refresh task share.
struct Shared {
    /// The current key set, replaced whole by the refresh task.
    keys: ArcSwap<KeySet>,
    /// Set when a token names an unknown `kid`, cleared when a fetch starts: the unknown `kid`s that
    /// arrive before a fetch all ask for that one fetch.
    wanted: AtomicBool,
    /// Wakes the refresh task when `wanted` becomes set.
    wake: Notify,
}

/// An issuer trusted through its published JWK set.
pub struct JwksIssuer {
    pattern: IssuerPattern,
    audiences: Vec<String>,
    /// The configured issuer string, for logs.
    issuer: String,
    shared: Arc<Shared>,
    /// The refresh task, stopped when the issuer is dropped.
    task: JoinHandle<()>,
}

impl JwksIssuer {
    /// Loads the keys once and starts refreshing them in the background, fetching over HTTP. Must run
    /// inside a tokio runtime.
    ///
    /// A JWKS file that cannot be read or parsed is an error. A URL that cannot be fetched is not (the
    /// provider may be down for a moment): the issuer starts without keys, refuses its tokens as signed
    /// with an unknown key, and keeps trying.
    pub async fn start(config: JwksIssuerConfig) -> Result<JwksIssuer, IssuerStartError> {
        let fetch =
            HttpFetch::new(config.fetch_timeout).map_err(|reason| IssuerStartError::Invalid {
                issuer: config.issuer.clone(),
                reason,
            })?;
        JwksIssuer::start_with(config, Arc::new(fetch)).await
    }

    /// [`JwksIssuer::start`] with another way to fetch documents (tests).
    pub async fn start_with(
        config: JwksIssuerConfig,
        fetch: Arc<dyn Fetch>,
    ) -> Result<JwksIssuer, IssuerStartError> {
        let invalid = |reason: &str| IssuerStartError::Invalid {
            issuer: config.issuer.clone(),
            reason: reason.to_owned(),
        };
        if config.issuer.is_empty() {
            return Err(invalid("the issuer is empty"));
        }
        if config
            .issuer
            .matches(IssuerPattern::TENANT_PLACEHOLDER)
            .count()
            > 1
        {
            return Err(invalid("'{tenantid}' may appear once at most"));
        }
        if config.audiences.is_empty() || config.audiences.iter().any(String::is_empty) {
            return Err(invalid("the audiences must be non-empty strings"));
        }
        if config.min_refresh_interval.is_zero() || config.fetch_timeout.is_zero() {
            return Err(invalid(
                "min_refresh_interval and the fetch timeout must be more than zero",
            ));
        }
        if config.refresh_interval < config.min_refresh_interval {
            return Err(invalid(
                "refresh_interval must be at least min_refresh_interval",
            ));
        }

        let mut loader = Loader {
            source: config.source.clone(),
            fetch,
            timeout: config.fetch_timeout,
            issuer: config.issuer.clone(),
            jwks_uri: None,
        };
        let started = Instant::now();
        let (keys, failures) = match loader.load().await {
            Ok(keys) => {
                tracing::info!(issuer = %config.issuer, source = %config.source, kids = ?keys.kids(), "issuer keys loaded");
                (keys, 0)
            }
            Err(error) if matches!(config.source, KeySource::File(_)) => {
                return Err(IssuerStartError::File {
                    issuer: config.issuer,
                    error,
                });
            }
            Err(error) => {
                tracing::warn!(issuer = %config.issuer, %error, "cannot load the issuer's keys; its tokens are refused until a refresh succeeds");
                (KeySet::default(), 1)
            }
        };
        let shared = Arc::new(Shared {
            keys: ArcSwap::from_pointee(keys),
            wanted: AtomicBool::new(false),
            wake: Notify::new(),
        });
        let refresher = Refresher {
            shared: Arc::clone(&shared),
            loader,
            issuer: config.issuer.clone(),
            interval: config.refresh_interval,
            floor: config.min_refresh_interval,
            last_attempt: started,
            failures,
        };
        Ok(JwksIssuer {
            pattern: IssuerPattern::new(&config.issuer),
            audiences: config.audiences,
            issuer: config.issuer,
            shared,
            task: tokio::spawn(refresher.run()),
        })
    }

    /// The current key set.
    pub fn keys(&self) -> Arc<KeySet> {
        self.shared.keys.load_full()
    }
}

impl Drop for JwksIssuer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl fmt::Debug for JwksIssuer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JwksIssuer")
            .field("issuer", &self.issuer)
            .field("audiences", &self.audiences)
            .field("keys", &self.shared.keys.load().kids())
            .finish()
    }
}

impl TrustedIssuer for JwksIssuer {
    fn pattern(&self) -> &IssuerPattern {
        &self.pattern
    }

    fn verification_key(
        &self,
        kid: Option<&str>,
        algorithm: SigningAlgorithm,
    ) -> Option<Arc<VerificationKey>> {
        let keys = self.shared.keys.load();
        let found = keys.find(kid, algorithm);
        if found.is_none()
            && let Some(kid) = kid
            && !keys.knows(kid)
        {
            // Perhaps a key the provider published since the last fetch.
            if !self.shared.wanted.swap(true, Ordering::AcqRel) {
                self.shared.wake.notify_one();
            }
        }
        found
    }

    fn audiences(&self) -> &[String] {
        &self.audiences
    }
}

/// The background task's state: when it last fetched and how often it has failed since a success.
struct Refresher {
    shared: Arc<Shared>,
    loader: Loader,
    issuer: String,
    interval: Duration,
    floor: Duration,
    last_attempt: Instant,
    /// Failed attempts in a row: the retry delay doubles with each.
    failures: u32,
}

impl Refresher {
    async fn run(mut self) {
        loop {
            self.wait().await;
            self.refresh().await;
        }
    }

    /// Until the next periodic refresh, or an unknown `kid` plus whatever remains of the floor.
    async fn wait(&self) {
        let periodic = self.last_attempt + self.delay();
        tokio::select! {
            () = tokio::time::sleep_until(periodic) => {}
            () = self.shared.wake.notified() => {
                tokio::time::sleep_until(self.last_attempt + self.floor).await;
            }
        }
    }

    /// The time from one attempt to the next periodic one.
    fn delay(&self) -> Duration {
        if self.failures == 0 {
            return self.interval;
        }
        let doubling = 2u32.saturating_pow(self.failures - 1);
        self.floor.saturating_mul(doubling).min(self.interval)
    }

    /// One attempt: fetch, and replace the key set if the answer is usable.
    async fn refresh(&mut self) {
        self.last_attempt = Instant::now();
        self.shared.wanted.store(false, Ordering::Release);
        match self.loader.load().await {
            Ok(keys) => {
                let old = self.shared.keys.load();
                if old.kids() != keys.kids() {
                    tracing::info!(issuer = %self.issuer, kids = ?keys.kids(), was = ?old.kids(), "issuer keys changed");
                }
                self.shared.keys.store(Arc::new(keys));
                self.failures = 0;
            }
            Err(error) => {
                self.failures = self.failures.saturating_add(1);
                tracing::warn!(issuer = %self.issuer, %error, retry_in = ?self.delay(), "cannot refresh the issuer's keys; keeping the previous ones");
            }
        }
    }
}
