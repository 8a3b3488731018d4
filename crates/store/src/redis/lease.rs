//! Leases of buckets between nodes: who fires a bucket's deadlines and
//! delivers its outbox.
//!
//! - `P{g}:nodes` — sorted set of live nodes, scored by when their
//!   announcement lapses (the `{g}` master's clock, `TIME` in the script).
//!   Each node announces itself at every tick; the count is "live nodes".
//! - `P{b:NNNN}:lease` — the node id holding the bucket, set with `SET NX
//!   PX lease` and extended by a compare-and-extend script at every tick.
//!
//! Every `renew_every` a node announces itself, extends the leases it holds
//! (a failed extension drops the bucket at once: another node holds it),
//! gives back buckets above its share of ⌈[`BUCKETS`] / live nodes⌉ (only
//! those with no claimed outbox entry in flight), and takes free buckets up
//! to its share, starting at an offset derived from its id. A bucket counts
//! as held only until `lease - lease/5` after the extension was *sent*
//! (measured on this node's monotonic clock), so a node cut off from Redis
//! stops firing before another node can take the bucket over.
//!
//! Taking a bucket returns the claims of its earlier holder to the queue
//! with their original due scores (the holder died, or gave the bucket
//! back with nothing in flight), so a dead node's deliveries are retried:
//! delivery is at least once.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, PoisonError, Weak};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use ::redis::Script;
use ::redis::cluster_async::ClusterConnection;

use super::{BUCKETS, RedisStore, io};
use crate::StoreError;

/// Announces a node and answers how many are live. KEYS: nodes zset.
/// ARGV: node id, announcement lifetime in ms.
const HEARTBEAT_SCRIPT: &str = r#"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
redis.call('ZADD', KEYS[1], now + tonumber(ARGV[2]), ARGV[1])
return redis.call('ZCARD', KEYS[1])
"#;

/// Takes a bucket, or keeps it when this node holds it already. KEYS:
/// lease, outbox zset, claimed zset. ARGV: node id, lease ms. Returns 1 if
/// the node holds the bucket afterwards.
const ACQUIRE_SCRIPT: &str = r#"
local holder = redis.call('GET', KEYS[1])
if holder == ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return 1
end
if holder then return 0 end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
local claimed = redis.call('ZRANGE', KEYS[3], 0, -1, 'WITHSCORES')
for i = 1, #claimed, 2 do
  redis.call('ZADD', KEYS[2], claimed[i + 1], claimed[i])
end
redis.call('DEL', KEYS[3])
return 1
"#;

/// Extends a lease this node holds. KEYS: lease. ARGV: node id, lease ms.
const RENEW_SCRIPT: &str = r#"
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return 1
end
return 0
"#;

/// Gives a bucket back. KEYS: lease, outbox zset, claimed zset. ARGV: node
/// id, "1" to give it back even with claims in flight (they return to the
/// queue). Returns 1 if released.
const RELEASE_SCRIPT: &str = r#"
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
if ARGV[2] ~= '1' and redis.call('ZCARD', KEYS[3]) > 0 then return 0 end
local claimed = redis.call('ZRANGE', KEYS[3], 0, -1, 'WITHSCORES')
for i = 1, #claimed, 2 do
  redis.call('ZADD', KEYS[2], claimed[i + 1], claimed[i])
end
redis.call('DEL', KEYS[3], KEYS[1])
return 1
"#;

/// How long leases last and how often they are renewed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LeaseTiming {
    /// A lease's lifetime in Redis, and a node's announcement's.
    pub lease: Duration,
    /// How often a node renews, rebalances and announces itself.
    pub renew_every: Duration,
}

impl LeaseTiming {
    /// How long after sending a renewal the node still counts on it.
    fn trusted_for(self) -> Duration {
        self.lease - self.lease / 5
    }

    fn lease_ms(self) -> u64 {
        u64::try_from(self.lease.as_millis())
            .unwrap_or(u64::MAX)
            .max(1)
    }
}

/// This node's leases.
pub(super) struct Leases {
    pub(super) node: String,
    pub(super) timing: LeaseTiming,
    /// Bucket → until when this node counts on holding it.
    held: Mutex<BTreeMap<u16, Instant>>,
    heartbeat: Script,
    acquire: Script,
    renew: Script,
    release: Script,
}

/// A node id: unique among nodes that ever share a cluster (process id,
/// wall-clock nanoseconds and a per-process counter).
fn new_node_id() -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    format!(
        "{:x}-{nanos:x}-{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    )
}

impl Leases {
    pub(super) fn new(timing: LeaseTiming) -> Leases {
        Leases {
            node: new_node_id(),
            timing,
            held: Mutex::new(BTreeMap::new()),
            heartbeat: Script::new(HEARTBEAT_SCRIPT),
            acquire: Script::new(ACQUIRE_SCRIPT),
            renew: Script::new(RENEW_SCRIPT),
            release: Script::new(RELEASE_SCRIPT),
        }
    }

    /// The buckets this node may fire now, in order.
    pub(super) fn held_now(&self) -> Vec<u16> {
        let now = Instant::now();
        self.held
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
            .filter(|(_, until)| **until > now)
            .map(|(bucket, _)| *bucket)
            .collect()
    }

    fn set_held(&self, bucket: u16, until: Option<Instant>) {
        let mut held = self.held.lock().unwrap_or_else(PoisonError::into_inner);
        match until {
            Some(until) => {
                held.insert(bucket, until);
            }
            None => {
                held.remove(&bucket);
            }
        }
    }

    /// Where this node starts looking for free buckets.
    fn offset(&self) -> u16 {
        let mut hash: u32 = 0x811c_9dc5;
        for byte in self.node.bytes() {
            hash ^= u32::from(byte);
            hash = hash.wrapping_mul(0x0100_0193);
        }
        (hash % u32::from(BUCKETS)) as u16
    }
}

/// Runs one script per key set, all at once; the answers in order (an
/// unreachable node answers its error).
async fn run_each(
    conn: &ClusterConnection,
    script: &Script,
    calls: Vec<(Vec<Vec<u8>>, Vec<String>)>,
) -> Vec<Result<i64, ::redis::RedisError>> {
    let mut tasks = tokio::task::JoinSet::new();
    let count = calls.len();
    for (i, (keys, args)) in calls.into_iter().enumerate() {
        let mut conn = conn.clone();
        let script = script.clone();
        tasks.spawn(async move {
            let mut invocation = script.prepare_invoke();
            for key in keys {
                invocation.key(key);
            }
            for arg in args {
                invocation.arg(arg);
            }
            (i, invocation.invoke_async::<i64>(&mut conn).await)
        });
    }
    let mut answers: Vec<Option<Result<i64, ::redis::RedisError>>> =
        (0..count).map(|_| None).collect();
    while let Some(joined) = tasks.join_next().await {
        if let Ok((i, answer)) = joined {
            answers[i] = Some(answer);
        }
    }
    answers
        .into_iter()
        .map(|a| {
            a.unwrap_or_else(|| {
                Err(::redis::RedisError::from((
                    ::redis::ErrorKind::Io,
                    "a lease task stopped",
                )))
            })
        })
        .collect()
}

impl RedisStore {
    fn lease_keys(&self, bucket: u16) -> Vec<Vec<u8>> {
        vec![
            self.bucket_key(bucket, "lease"),
            self.bucket_key(bucket, "obz"),
            self.bucket_key(bucket, "obc"),
        ]
    }

    /// One round of lease upkeep: announce, renew, give back, take.
    pub(super) async fn maintain_leases(&self) -> Result<(), StoreError> {
        let conn = self.conn()?;
        let leases = &self.leases;
        let lease_ms = leases.timing.lease_ms().to_string();
        let node = leases.node.clone();
        let live: i64 = leases
            .heartbeat
            .key(self.global_key("nodes"))
            .arg(&node)
            .arg(&lease_ms)
            .invoke_async(&mut conn.clone())
            .await
            .map_err(io)?;
        let live = usize::try_from(live.max(1)).unwrap_or(1);
        let share = usize::from(BUCKETS).div_ceil(live);

        // Renew what this node holds (expired entries too: Redis may still
        // hold the lease for this node).
        let mine: Vec<u16> = leases
            .held
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .keys()
            .copied()
            .collect();
        let sent = Instant::now();
        let answers = run_each(
            &conn,
            &leases.renew,
            mine.iter()
                .map(|&b| {
                    (
                        vec![self.bucket_key(b, "lease")],
                        vec![node.clone(), lease_ms.clone()],
                    )
                })
                .collect(),
        )
        .await;
        let until = sent + leases.timing.trusted_for();
        let mut kept = Vec::with_capacity(mine.len());
        for (&bucket, answer) in mine.iter().zip(answers) {
            match answer {
                Ok(1) => {
                    leases.set_held(bucket, Some(until));
                    kept.push(bucket);
                }
                Ok(_) => {
                    tracing::warn!(bucket, "lost the lease of a bucket");
                    leases.set_held(bucket, None);
                }
                // Unknown: keep counting on the last renewal until it lapses.
                Err(error) => {
                    self.unhealthy
                        .store(true, std::sync::atomic::Ordering::Release);
                    tracing::warn!(bucket, %error, "could not renew a lease");
                }
            }
        }

        // Give back what is above this node's share.
        if kept.len() > share {
            let surplus: Vec<u16> = kept.split_off(share);
            let answers = run_each(
                &conn,
                &leases.release,
                surplus
                    .iter()
                    .map(|&b| (self.lease_keys(b), vec![node.clone(), "0".to_owned()]))
                    .collect(),
            )
            .await;
            for (&bucket, answer) in surplus.iter().zip(answers) {
                if matches!(answer, Ok(1)) {
                    leases.set_held(bucket, None);
                } else {
                    kept.push(bucket);
                }
            }
        }

        // Take free buckets up to the share.
        let offset = leases.offset();
        let mut candidates: Vec<u16> = (0..BUCKETS)
            .map(|i| (offset + i) % BUCKETS)
            .filter(|b| !kept.contains(b))
            .collect();
        candidates.reverse();
        while kept.len() < share && !candidates.is_empty() {
            let want = share - kept.len();
            let round: Vec<u16> = (0..want).map_while(|_| candidates.pop()).collect();
            let sent = Instant::now();
            let answers = run_each(
                &conn,
                &leases.acquire,
                round
                    .iter()
                    .map(|&b| (self.lease_keys(b), vec![node.clone(), lease_ms.clone()]))
                    .collect(),
            )
            .await;
            let until = sent + leases.timing.trusted_for();
            for (&bucket, answer) in round.iter().zip(answers) {
                match answer {
                    Ok(1) => {
                        leases.set_held(bucket, Some(until));
                        kept.push(bucket);
                    }
                    Ok(_) => {}
                    Err(_) => self
                        .unhealthy
                        .store(true, std::sync::atomic::Ordering::Release),
                }
            }
        }
        // Other nodes' directory changes show in the figures within a round.
        if let Err(error) = self.count_users().await {
            tracing::debug!(%error, "could not count the users");
        }
        // A close that raced with this round gives back what it took.
        if self.closed.load(std::sync::atomic::Ordering::Acquire) {
            self.release_leases().await;
        }
        Ok(())
    }

    /// Gives every lease back (claims in flight return to the queue) and
    /// leaves the live nodes: a clean shutdown, so that another node takes
    /// over at once instead of when the leases lapse.
    pub(super) async fn release_leases(&self) {
        let leases = &self.leases;
        let mine: Vec<u16> =
            std::mem::take(&mut *leases.held.lock().unwrap_or_else(PoisonError::into_inner))
                .into_keys()
                .collect();
        let node = leases.node.clone();
        let _ = run_each(
            &self.raw_conn(),
            &leases.release,
            mine.iter()
                .map(|&b| (self.lease_keys(b), vec![node.clone(), "1".to_owned()]))
                .collect(),
        )
        .await;
        let mut conn = self.raw_conn();
        let _: Result<i64, _> = ::redis::cmd("ZREM")
            .arg(self.global_key("nodes"))
            .arg(&node)
            .query_async(&mut conn)
            .await;
    }
}

/// Keeps the node's leases for as long as the store lives and is open.
pub(super) fn spawn_upkeep(store: &Arc<RedisStore>) {
    let weak: Weak<RedisStore> = Arc::downgrade(store);
    let every = store.leases.timing.renew_every;
    tokio::spawn(async move {
        let mut ticks = tokio::time::interval(every);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        ticks.tick().await;
        loop {
            ticks.tick().await;
            let Some(store) = weak.upgrade() else { return };
            let failed = match store.maintain_leases().await {
                Ok(()) => false,
                Err(StoreError::Closed) => return,
                Err(error) => {
                    tracing::warn!(%error, "lease upkeep failed");
                    true
                }
            };
            // A node did not answer: maybe a master died and a replica
            // serves its slots now. Read the topology afresh.
            if (store
                .unhealthy
                .swap(false, std::sync::atomic::Ordering::AcqRel)
                || failed)
                && let Err(error) = store.reconnect().await
            {
                tracing::warn!(%error, "cannot reconnect to the Redis cluster");
            }
        }
    });
}
