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

impl RedisStore {
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
