//! The shared request budget: one GCRA state per budget in Redis,
//! `P{r:<hex of the budget's name>}` (its own hash tag: budgets spread over
//! the masters), updated by one script so that every node's requests count
//! against the same budget.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use ::redis::Script;

use super::{RedisStore, io};
use crate::{BoxFuture, SharedLimiter, StoreError};

/// GCRA on microseconds. KEYS: the budget's key. ARGV: emission interval,
/// tolerance (window − interval), now ("" for the master's `TIME`).
/// Returns 0 when admitted, else the wait in microseconds. Numbers are
/// written with `%.0f`: Lua's `tostring` would round them to 14 digits.
const GCRA_SCRIPT: &str = r#"
local now
if ARGV[3] == '' then
  local t = redis.call('TIME')
  now = tonumber(t[1]) * 1000000 + tonumber(t[2])
else
  now = tonumber(ARGV[3])
end
local interval = tonumber(ARGV[1])
local tolerance = tonumber(ARGV[2])
local tat = tonumber(redis.call('GET', KEYS[1]) or now)
if tat < now then tat = now end
local ahead = tat - now
if ahead > tolerance then return ahead - tolerance end
local next = tat + interval
local ttl = math.floor((next - now) / 1000) + 1
redis.call('SET', KEYS[1], string.format('%.0f', next), 'PX', string.format('%.0f', ttl))
return 0
"#;

/// The Redis store's [`SharedLimiter`].
pub(super) struct RedisLimiter {
    pub(super) store: Arc<RedisStore>,
    pub(super) script: Script,
}

impl RedisLimiter {
    pub(super) fn new(store: Arc<RedisStore>) -> RedisLimiter {
        RedisLimiter {
            store,
            script: Script::new(GCRA_SCRIPT),
        }
    }
}

fn micros(d: Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX)
}

impl SharedLimiter for RedisLimiter {
    fn admit<'a>(
        &'a self,
        key: &'a [u8],
        requests: u32,
        window: Duration,
        now: Option<SystemTime>,
    ) -> BoxFuture<'a, Result<Option<Duration>, StoreError>> {
        Box::pin(async move {
            let mut conn = self.store.conn()?;
            let requests = requests.max(1);
            let interval = window / requests;
            let tolerance = window.saturating_sub(interval);
            let now = now
                .map(|t| {
                    t.duration_since(UNIX_EPOCH)
                        .map(|d| micros(d).to_string())
                        .unwrap_or_else(|_| "0".to_owned())
                })
                .unwrap_or_default();
            let hex: String = key.iter().map(|b| format!("{b:02x}")).collect();
            let wait: u64 = self
                .script
                .key(format!("{}{{r:{hex}}}", self.store.prefix))
                .arg(micros(interval))
                .arg(micros(tolerance))
                .arg(now)
                .invoke_async(&mut conn)
                .await
                .map_err(io)?;
            Ok((wait > 0).then(|| Duration::from_micros(wait)))
        })
    }
}
