//! Which store holds the state, and where the identity provider's state
//! lives with it: wiring only.
//!
//! - `embedded`: the redb store, the signing key, the registrations and the
//!   refresh tokens all in the data directory (one node).
//! - `redis`: all of them in the Redis Cluster, so that any number of nodes
//!   share them; the data directory keeps only what is local to a node (the
//!   development TLS CA and its certificate).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use presenced_domain::Rules;
use presenced_identity::grants::RefreshTokens;
use presenced_identity::{DevIssuerKey, IdentityError, Registry, StateCell};
use presenced_store::Store;
use presenced_store::embedded::{EmbeddedConfig, EmbeddedStore};
use presenced_store::redis::{RedisConfig, RedisStore};

use crate::config::{StoreChoice, redact};

/// The shared value holding the built-in provider's registrations.
const REGISTRATIONS: &str = "identity-registrations";
/// The shared value holding the built-in provider's authorization codes.
const CODES: &str = "identity-codes";
/// The shared value holding the built-in provider's refresh tokens.
const REFRESH_TOKENS: &str = "identity-refresh-tokens";

/// An open store, and the Redis store behind it when it is one.
#[derive(Clone)]
pub struct OpenStore {
    pub store: Arc<dyn Store>,
    pub redis: Option<Arc<RedisStore>>,
    /// The same store when it is the embedded one (for `presenced import`).
    pub embedded: Option<Arc<EmbeddedStore>>,
    data_dir: PathBuf,
}

/// How long connecting to Redis may take at start.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

impl OpenStore {
    /// Opens the chosen store: the embedded one in `data_dir`, or a
    /// connection to the cluster, which must answer within [`CONNECT_TIMEOUT`].
    pub async fn open(
        choice: &StoreChoice,
        data_dir: &Path,
        rules: Rules,
        max_record_bytes: usize,
    ) -> anyhow::Result<OpenStore> {
        match choice {
            StoreChoice::Embedded => {
                let dir = data_dir.to_path_buf();
                let config = EmbeddedConfig {
                    max_record_bytes,
                    ..EmbeddedConfig::default()
                };
                let store = tokio::task::spawn_blocking(move || {
                    EmbeddedStore::open_with(&dir, rules, config)
                })
                .await?
                .with_context(|| format!("cannot open the store in {}", data_dir.display()))?;
                Ok(OpenStore {
                    store: store.clone(),
                    redis: None,
                    embedded: Some(store),
                    data_dir: data_dir.to_path_buf(),
                })
            }
            StoreChoice::Redis(config) => {
                let config = RedisConfig {
                    max_record_bytes,
                    ..config.clone()
                };
                let redis = connect(&config, rules).await?;
                Ok(OpenStore {
                    store: redis.clone(),
                    redis: Some(redis),
                    embedded: None,
                    data_dir: data_dir.to_path_buf(),
                })
            }
        }
    }

    /// `embedded` or `redis`, for logs.
    pub fn kind(&self) -> &'static str {
        if self.redis.is_some() {
            "redis"
        } else {
            "embedded"
        }
    }

    /// The development issuer's signing key: the data directory's, or the
    /// cluster's (created once with `SET NX`, so every node signs with the
    /// same key).
    pub async fn issuer_key(&self) -> anyhow::Result<DevIssuerKey> {
        let Some(redis) = &self.redis else {
            let dir = self.data_dir.clone();
            return tokio::task::spawn_blocking(move || DevIssuerKey::load_or_create(&dir))
                .await?
                .context("cannot load or create the signing key");
        };
        let origin = PathBuf::from("redis:issuer-key");
        let pem = match redis.issuer_key().await? {
            Some(pem) => pem,
            None => {
                let fresh = tokio::task::spawn_blocking(DevIssuerKey::generate_pem)
                    .await?
                    .context("cannot create the signing key")?;
                redis.create_issuer_key(&fresh).await?
            }
        };
        DevIssuerKey::from_pem(&pem, origin).context("the signing key stored in Redis")
    }

    /// The cell of one piece of the identity provider's state.
    fn cell(&self, name: &'static str, file: &str) -> Box<dyn StateCell> {
        match &self.redis {
            Some(redis) => Box::new(RedisCell {
                store: redis.clone(),
                name,
                runtime: tokio::runtime::Handle::current(),
            }),
            None => Box::new(presenced_identity::FileCell::new(self.data_dir.join(file))),
        }
    }

    /// Adds `change` to the stored registrations and returns them all.
    pub async fn update_registry(
        &self,
        change: impl FnMut(&mut Registry) -> Result<(), IdentityError> + Send + 'static,
    ) -> anyhow::Result<Registry> {
        let cell = self.cell(REGISTRATIONS, presenced_identity::registry::REGISTRY_FILE);
        tokio::task::spawn_blocking(move || Registry::update(&*cell, change))
            .await?
            .context("cannot save the identity registrations")
    }

    /// The built-in provider's authorization codes: in memory on one node,
    /// in Redis when nodes share it (so any node redeems a code, once).
    pub fn codes(&self) -> presenced_identity::grants::CodeStore {
        match &self.redis {
            Some(_) => presenced_identity::grants::CodeStore::in_cell(self.cell(CODES, "")),
            None => presenced_identity::grants::CodeStore::default(),
        }
    }

    /// The built-in provider's refresh tokens, where this store keeps them.
    pub async fn refresh_tokens(&self) -> anyhow::Result<RefreshTokens> {
        let cell = self.cell(REFRESH_TOKENS, presenced_identity::grants::REFRESH_FILE);
        tokio::task::spawn_blocking(move || RefreshTokens::in_cell(cell))
            .await?
            .context("cannot load the identity provider's refresh tokens")
    }
}

/// Connects to the cluster, or says in one line why not.
async fn connect(config: &RedisConfig, rules: Rules) -> anyhow::Result<Arc<RedisStore>> {
    let config = RedisConfig {
        connect_timeout: CONNECT_TIMEOUT,
        ..config.clone()
    };
    let started = Instant::now();
    let seeds: Vec<String> = config.urls.iter().map(|u| redact(u)).collect();
    // The client may keep retrying on its own: the whole attempt is bounded here too.
    let attempt = tokio::time::timeout(
        CONNECT_TIMEOUT + Duration::from_secs(1),
        RedisStore::connect(&config, rules),
    )
    .await;
    let error = match attempt {
        Ok(Ok(store)) => return Ok(store),
        Ok(Err(error)) => error.to_string(),
        Err(_) => format!("no answer within {:?}", started.elapsed()),
    };
    let mut reason = error.replace(['\n', '\r'], " ");
    for (url, shown) in config.urls.iter().zip(&seeds) {
        reason = reason.replace(url.as_str(), shown);
    }
    if let Some(password) = &config.password {
        reason = reason.replace(password.as_str(), "***");
    }
    anyhow::bail!(
        "cannot reach the Redis cluster at {}: {reason}",
        seeds.join(",")
    )
}

/// A shared value in Redis as the identity provider's [`StateCell`]. Its
/// calls block on the runtime: they are made from `spawn_blocking`.
struct RedisCell {
    store: Arc<RedisStore>,
    name: &'static str,
    runtime: tokio::runtime::Handle,
}

impl std::fmt::Debug for RedisCell {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisCell")
            .field("name", &self.name)
            .finish()
    }
}

impl RedisCell {
    fn failed(&self, error: presenced_store::StoreError) -> IdentityError {
        IdentityError::Shared {
            location: self.location(),
            reason: error.to_string(),
        }
    }
}

impl StateCell for RedisCell {
    fn location(&self) -> String {
        format!("redis:{}", self.name)
    }

    fn read(&self) -> Result<(Option<Vec<u8>>, u64), IdentityError> {
        self.runtime
            .block_on(self.store.shared_value(self.name))
            .map_err(|e| self.failed(e))
    }

    fn write(&self, version: u64, bytes: &[u8]) -> Result<bool, IdentityError> {
        self.runtime
            .block_on(self.store.put_shared_value(self.name, version, bytes))
            .map_err(|e| self.failed(e))
    }
}
