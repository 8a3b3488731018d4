//! One contract suite, two backends: a test written as
//! `async fn name(backend: Backend)` runs against the embedded store and
//! against the Redis Cluster store through [`both!`].

#![allow(dead_code)]

use std::sync::{Arc, Mutex, Weak};

use presenced_domain::Rules;
use presenced_store::Store;
use presenced_store::embedded::{EmbeddedStore, StoreStats};
use presenced_store::redis::{RedisConfig, RedisStore};
use presenced_testkit::RedisCluster;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Embedded,
    Redis,
}

/// Where one test's state lives: a data directory, or a key prefix in the
/// test binary's shared cluster. Opening it again is what a restarted node
/// sees.
pub enum Place {
    /// The directory and the store opened last (for its statistics).
    Embedded(tempfile::TempDir, Mutex<Weak<EmbeddedStore>>),
    Redis(String),
}

impl Backend {
    pub fn place(self) -> Place {
        match self {
            Backend::Embedded => {
                Place::Embedded(tempfile::tempdir().unwrap(), Mutex::new(Weak::new()))
            }
            Backend::Redis => Place::Redis(RedisCluster::shared().unique_prefix("store")),
        }
    }
}

impl Place {
    pub async fn open(&self) -> Arc<dyn Store> {
        match self {
            Place::Embedded(dir, last) => {
                let store = EmbeddedStore::open(dir.path(), Rules::default()).unwrap();
                *last.lock().unwrap() = Arc::downgrade(&store);
                store
            }
            Place::Redis(prefix) => {
                let config = RedisConfig {
                    urls: RedisCluster::shared().urls(),
                    key_prefix: prefix.clone(),
                    ..RedisConfig::default()
                };
                RedisStore::connect(&config, Rules::default())
                    .await
                    .unwrap()
            }
        }
    }
}

impl Place {
    /// The embedded store's write statistics (of the store opened last);
    /// `None` on Redis, which has no such counters per test.
    pub fn stats(&self) -> Option<StoreStats> {
        match self {
            Place::Embedded(_, last) => last.lock().unwrap().upgrade().map(|s| s.stats()),
            Place::Redis(_) => None,
        }
    }
}

/// Instantiates `async fn $name(backend: Backend)` once per backend, as
/// `$name::embedded` and `$name::redis`.
#[macro_export]
macro_rules! both {
    ($($name:ident),* $(,)?) => {$(
        mod $name {
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn embedded() {
                super::$name($crate::support::Backend::Embedded).await
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn redis() {
                super::$name($crate::support::Backend::Redis).await
            }
        }
    )*};
}
