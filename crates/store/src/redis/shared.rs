//! Small shared values besides presence state: what every node must agree
//! on and read the same, such as the development issuer's signing key and
//! the built-in identity provider's registrations and refresh tokens.
//!
//! Keys (all under the global hash tag `{g}`, one master):
//! - `P{g}:issuer-key` — a string, created once with `SET NX` so that every
//!   node and `presenced token` use the first one written.
//! - `P{g}:x:<name>` — a hash: `b` the bytes, `v` a version; written only
//!   through [`PUT_IF_SCRIPT`], which refuses when the version moved on, so
//!   that two nodes' read-modify-write cycles never lose one another's change.

use std::sync::atomic::Ordering;
use std::time::Duration;

use ::redis::cluster_routing::{MultipleNodeRoutingInfo, RoutingInfo};
use ::redis::{AsyncCommands, Script};

use super::{RedisStore, io};
use crate::StoreError;

/// KEYS: the value's hash. ARGV: expected version, new bytes. Returns the
/// new version, or -1 when the version is no longer the expected one.
const PUT_IF_SCRIPT: &str = r#"
local v = redis.call('HGET', KEYS[1], 'v')
if not v then v = '0' end
if v ~= ARGV[1] then return -1 end
local next = tonumber(v) + 1
redis.call('HSET', KEYS[1], 'b', ARGV[2], 'v', tostring(next))
return next
"#;

/// Whether every answer of a multi-node `CLUSTER INFO` says `cluster_state:ok`.
fn cluster_ok(answer: &::redis::Value) -> Result<(), StoreError> {
    use ::redis::Value;
    let mut texts = Vec::new();
    fn collect<'a>(value: &'a Value, texts: &mut Vec<&'a [u8]>) {
        match value {
            Value::BulkString(bytes) => texts.push(bytes),
            Value::VerbatimString { text, .. } => texts.push(text.as_bytes()),
            Value::Array(items) | Value::Set(items) => {
                items.iter().for_each(|item| collect(item, texts))
            }
            Value::Map(pairs) => pairs.iter().for_each(|(_, item)| collect(item, texts)),
            _ => {}
        }
    }
    collect(answer, &mut texts);
    let ok = |text: &&[u8]| {
        String::from_utf8_lossy(text)
            .lines()
            .any(|line| line.trim() == "cluster_state:ok")
    };
    if !texts.is_empty() && texts.iter().all(ok) {
        Ok(())
    } else {
        Err(StoreError::Io(
            "redis: the cluster does not serve every slot (cluster_state is not ok)".into(),
        ))
    }
}

/// How long a probe waits for every master's answer.
pub const PROBE_TIMEOUT: Duration = Duration::from_secs(2);

impl RedisStore {
    /// Asks every master for `CLUSTER INFO` (within [`PROBE_TIMEOUT`]) and
    /// remembers the outcome for [`crate::Store::is_ready`]: ready when each
    /// answers and says `cluster_state:ok` (every slot served). Not ready
    /// while any master, and so any bucket's users, is out of reach. `Err`
    /// says why not.
    ///
    /// The probe has a connection of its own: requests queued on the data
    /// connection by a busy node would otherwise delay it, and a node under
    /// load would call Redis out of reach.
    pub async fn probe(&self) -> Result<(), StoreError> {
        if self.closed.load(Ordering::Acquire) {
            return Err(StoreError::Closed);
        }
        let mut conn = self
            .probe_conn
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone();
        let route = RoutingInfo::MultiNode((MultipleNodeRoutingInfo::AllMasters, None));
        let mut command = ::redis::cmd("CLUSTER");
        command.arg("INFO");
        let outcome =
            match tokio::time::timeout(PROBE_TIMEOUT, conn.route_command(command, route)).await {
                Ok(Ok(answer)) => cluster_ok(&answer),
                Ok(Err(e)) => Err(io(e)),
                Err(_) => Err(StoreError::Io(format!(
                    "redis: a master did not answer within {PROBE_TIMEOUT:?}"
                ))),
            };
        self.reachable.store(outcome.is_ok(), Ordering::Release);
        outcome
    }

    /// Opens a new connection to the cluster (from the seed nodes, bounded
    /// by the connect timeout) and uses it from now on, with a fresh probe
    /// connection and slot map. For a cluster that
    /// came back while the old connection kept failing.
    pub async fn reconnect(&self) -> Result<(), StoreError> {
        if self.closed.load(Ordering::Acquire) {
            return Err(StoreError::Closed);
        }
        let connect = || async {
            tokio::time::timeout(self.connect_timeout, self.client.get_async_connection())
                .await
                .map_err(|_| StoreError::Io("redis: reconnecting timed out".into()))?
                .map_err(io)
        };
        let fresh = connect().await?;
        let fresh_probe = connect().await?;
        *self
            .conn
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = fresh;
        *self
            .probe_conn
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = fresh_probe;
        self.forget_slot_owners();
        Ok(())
    }

    fn shared_key(&self, name: &str) -> Vec<u8> {
        self.global_key(&format!("x:{name}"))
    }

    /// The shared value `name` and its version (0 and `None` before the first write).
    pub async fn shared_value(&self, name: &str) -> Result<(Option<Vec<u8>>, u64), StoreError> {
        let mut conn = self.conn()?;
        let (bytes, version): (Option<Vec<u8>>, Option<u64>) = ::redis::cmd("HMGET")
            .arg(self.shared_key(name))
            .arg("b")
            .arg("v")
            .query_async(&mut conn)
            .await
            .map_err(io)?;
        Ok((bytes, version.unwrap_or(0)))
    }

    /// Replaces the shared value `name` if its version is still `version`;
    /// `false` when another writer came first (read again and retry).
    pub async fn put_shared_value(
        &self,
        name: &str,
        version: u64,
        bytes: &[u8],
    ) -> Result<bool, StoreError> {
        let mut conn = self.conn()?;
        let key = self.shared_key(name);
        let result: i64 = Script::new(PUT_IF_SCRIPT)
            .key(&key)
            .arg(version.to_string())
            .arg(bytes)
            .invoke_async(&mut conn)
            .await
            .map_err(io)?;
        if result < 0 {
            return Ok(false);
        }
        self.wait_for_replicas(&key).await?;
        Ok(true)
    }

    /// The development issuer's signing key (PEM), if one was stored.
    pub async fn issuer_key(&self) -> Result<Option<String>, StoreError> {
        let mut conn = self.conn()?;
        conn.get(self.global_key("issuer-key")).await.map_err(io)
    }

    /// Stores `pem` as the signing key unless one is there already, and
    /// returns the key every node uses: the first one stored.
    pub async fn create_issuer_key(&self, pem: &str) -> Result<String, StoreError> {
        let mut conn = self.conn()?;
        let key = self.global_key("issuer-key");
        let created: bool = ::redis::cmd("SET")
            .arg(&key)
            .arg(pem)
            .arg("NX")
            .query_async::<Option<String>>(&mut conn)
            .await
            .map_err(io)?
            .is_some();
        if created {
            self.wait_for_replicas(&key).await?;
        }
        self.issuer_key()
            .await?
            .ok_or_else(|| StoreError::Io("redis: the signing key vanished after SET NX".into()))
    }
}
