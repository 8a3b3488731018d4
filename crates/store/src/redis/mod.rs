//! The Redis Cluster backend: every piece of state in Redis, so that any
//! number of stateless presenced nodes can share it.
//!
//! # Key layout
//! `P` is the key prefix (`presenced:` by default). Users are spread over
//! [`BUCKETS`] buckets by a fixed hash of (tenant, user); every per-user key
//! and its bucket's indexes share the bucket's hash tag `{b:NNNN}`, so one
//! Lua script can change them together:
//! - `P{b:NNNN}:u:<tenant><user>` — hash: `d` the directory entry
//!   (`codec::encode_directory_user`), `f` the facts record
//!   (`codec::encode_user_record`), `v` the record's version (compare-and-set).
//! - `P{b:NNNN}:due` — sorted set of the bucket's "next change" deadlines:
//!   member `<tenant><user><exact instant>` (binary), score the deadline in
//!   milliseconds.
//! - `P{b:NNNN}:s:<tenant><user>` — set of the subscription ids covering the user.
//! - `P{b:NNNN}:ob` (hash seq → due ‖ body), `P{b:NNNN}:obz` (sorted set of
//!   seq by due ms), `P{b:NNNN}:obseq` (counter) — the bucket's outbox; an
//!   [`OutboxId`] is `bucket << 40 | seq`.
//! - `P{g}:tenants` (hash tenant → record), `P{g}:t:<tenant>` (set of the
//!   tenant's user ids), `P{g}:subs` (hash id → subscription), `P{g}:clock`.
//!
//! # Writes
//! [`Store::apply`] reads the user's hash (`HMGET f v`), runs the domain's
//! `apply` in Rust, then [`APPLY_SCRIPT`] (EVALSHA) checks that the version
//! is unchanged, writes the record, moves the deadline and — for a visible
//! change of a subscribed user — appends the outbox entry, atomically. A
//! version mismatch (another node wrote meanwhile) re-reads and retries, at
//! most [`MAX_ATTEMPTS`] times. With `wait_replicas = n` every write is
//! followed by `WAIT n` on the master that took it.
//!
//! # Time-driven work
//! Nodes lease buckets ([`lease`]): a node's [`Store::due`],
//! [`Store::claim_outbox`] and [`Store::outbox_next_due`] see only the
//! buckets it holds. A claim moves the entry from the bucket's outbox zset
//! to its `P{b:NNNN}:obc` zset (same score) in one script that first checks
//! the lease, so only the holder claims; settling removes it from there.
//! Which held buckets a claim scans is planned by [`hints`].
//! [`Store::advance_deadline`] enqueues the `Changed` entry of the handled
//! deadline itself, in the compare-and-set script that moves the deadline,
//! so a deadline is announced once however many nodes handle it
//! ([`Store::advance_announces`]).
//!
//! # Writes across buckets
//! A subscription's record (`{g}`) and its users' index entries (their
//! buckets) cannot change in one script. They change in steps, each done
//! before the next: on put, the new users' entries, the record, then the
//! entries of users it no longer covers; on delete, the record, then its
//! entries. Invariant: every user a stored subscription covers has its id in
//! their index; an index entry may outlive its record or point to a record
//! that no longer covers the user, and readers check the record (the
//! notification layer skips both). Every step is idempotent, so a retried
//! call completes a failed one.
//!
//! An outbox settlement also touches several buckets: its additions are
//! written (each in one script) before its retries and removals. Invariant:
//! a failure part-way repeats work (an entry done but not removed is
//! claimed again: delivery at least once), never loses it.

mod batch;
mod export;
mod figures;
mod hints;
mod lease;
mod limiter;
mod live;
mod shared;

pub use lease::LeaseTiming;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use ::redis::cluster::ClusterClientBuilder;
use ::redis::cluster_async::ClusterConnection;
use ::redis::cluster_routing::{RoutingInfo, SingleNodeRoutingInfo};
use ::redis::{AsyncCommands, Script};
use jiff::Timestamp;
use presenced_domain::{Guid, Mutation, Rules, UserFacts};

use crate::embedded::notify::{decode_body, decode_subscription, encode_body, encode_subscription};
use crate::{
    ApplyOutcome, BoxFuture, ChangeFeed, DirectoryChange, DirectoryUser, KnownFacts, OutboxBody,
    OutboxEntry, OutboxId, OutboxSettlement, SharedLimiter, Store, StoreError, SubscriptionRecord,
    TenantRecord, UserKey, codec,
};
use batch::Batch;

/// Buckets users are spread over; part of the stored layout, never changed.
pub const BUCKETS: u16 = 1_024;
/// Compare-and-set attempts of one write before it gives up.
pub const MAX_ATTEMPTS: usize = 16;
const SEQ_BITS: u32 = 40;

/// The compare-and-set write of one user's record (see the module docs).
/// KEYS: user hash, due zset, outbox hash, outbox zset, outbox counter,
/// user's subscription set. ARGV: expected version, record, old due member
/// (or ""), new due member (or ""), new due score, "1" to announce a change,
/// outbox entry. Returns -1 on version mismatch, else the outbox seq or 0.
pub const APPLY_SCRIPT: &str = r#"
local v = redis.call('HGET', KEYS[1], 'v')
if not v then v = '0' end
if v ~= ARGV[1] then return -1 end
redis.call('HSET', KEYS[1], 'f', ARGV[2], 'v', tostring(tonumber(v) + 1))
if ARGV[3] ~= '' then redis.call('ZREM', KEYS[2], ARGV[3]) end
if ARGV[4] ~= '' then redis.call('ZADD', KEYS[2], ARGV[5], ARGV[4]) end
if ARGV[6] == '1' and redis.call('SCARD', KEYS[6]) > 0 then
  local seq = redis.call('INCR', KEYS[5])
  redis.call('HSET', KEYS[3], seq, ARGV[7])
  redis.call('ZADD', KEYS[4], '-inf', seq)
  return seq
end
return 0
"#;

/// Claims outbox entries of a bucket this node holds. KEYS: lease, outbox
/// zset, claimed zset, outbox hash. ARGV: node id, seqs. Moves each seq
/// still queued from the zset to the claimed zset (same score) and answers
/// [seq, entry, ...]; -1 when the node does not hold the lease.
const CLAIM_SCRIPT: &str = r#"
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return -1 end
local out = {}
for i = 2, #ARGV do
  local seq = ARGV[i]
  local due = redis.call('ZSCORE', KEYS[2], seq)
  if due then
    redis.call('ZREM', KEYS[2], seq)
    local entry = redis.call('HGET', KEYS[4], seq)
    if entry then
      redis.call('ZADD', KEYS[3], due, seq)
      out[#out + 1] = seq
      out[#out + 1] = entry
    end
  end
end
return out
"#;

/// Appends one outbox entry to a bucket. KEYS: outbox hash, zset, counter.
/// ARGV: due score, entry. Returns the seq.
const ENQUEUE_SCRIPT: &str = r#"
local seq = redis.call('INCR', KEYS[3])
redis.call('HSET', KEYS[1], seq, ARGV[2])
redis.call('ZADD', KEYS[2], ARGV[1], seq)
return seq
"#;

/// How to reach the cluster and what to keep in it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RedisConfig {
    /// Seed nodes: `redis://[:password@]host:port`.
    pub urls: Vec<String>,
    /// Used when a URL carries no password.
    pub password: Option<String>,
    /// `WAIT n` after every write (0: none).
    pub wait_replicas: u32,
    /// Prefix of every key (kept out of hash tags).
    pub key_prefix: String,
    /// How long connecting may take.
    pub connect_timeout: Duration,
    /// Bucket leases between nodes (see [`lease`](self#time-driven-work)):
    /// 10 s, renewed every 3 s by default; tests shorten them.
    pub leases: LeaseTiming,
    /// The bound on one user's encoded record, as the embedded store's.
    pub max_record_bytes: usize,
}

impl Default for RedisConfig {
    fn default() -> Self {
        Self {
            urls: Vec::new(),
            password: None,
            wait_replicas: 0,
            key_prefix: "presenced:".to_owned(),
            connect_timeout: Duration::from_secs(5),
            leases: LeaseTiming {
                lease: Duration::from_secs(10),
                renew_every: Duration::from_secs(3),
            },
            max_record_bytes: 64 * 1024,
        }
    }
}

/// The Redis Cluster backend of [`Store`].
pub struct RedisStore {
    /// Itself, for the shared limiter it hands out.
    myself: std::sync::Weak<RedisStore>,
    /// How it connected (the live-stream subscription connects likewise).
    config: RedisConfig,
    /// Replaced whole when the cluster came back and the old connection did
    /// not find its way back (see `shared.rs`), or a master died (the lease
    /// upkeep, see `lease.rs`).
    conn: std::sync::RwLock<ClusterConnection>,
    client: ::redis::cluster::ClusterClient,
    /// A lease round saw an unreachable node: rebuild the connection.
    unhealthy: AtomicBool,
    connect_timeout: Duration,
    max_record_bytes: usize,
    prefix: String,
    wait_replicas: u32,
    rules: Rules,
    apply_script: Script,
    enqueue_script: Script,
    claim_script: Script,
    /// The buckets this node holds.
    leases: lease::Leases,
    /// Spreads outbox entries that belong to no user over the buckets.
    next_bucket: AtomicU64,
    closed: AtomicBool,
    /// Whether the last probe reached every master (see `shared.rs`).
    reachable: AtomicBool,
    /// The probe's own connection, so that requests queued on `conn` by a
    /// busy node do not delay it (see `shared.rs`).
    probe_conn: std::sync::RwLock<ClusterConnection>,
    /// Which master serves each slot, for one pipeline per master
    /// (`batch.rs`); `None` until read, and after a slot moved.
    slot_owners: std::sync::RwLock<Option<Arc<batch::SlotOwners>>>,
    /// Users in the directory, as last counted ([`RedisStore::count_users`]:
    /// after this node's directory changes and at every lease round);
    /// `u64::MAX` until first counted.
    users: AtomicU64,
    /// The outbox's size as last counted, and when (`figures.rs`).
    outbox_count: std::sync::Mutex<Option<(std::time::Instant, u64)>>,
    /// The buckets this node knows to have outbox work (`hints.rs`).
    outbox_hints: hints::OutboxHints,
}

fn io(e: ::redis::RedisError) -> StoreError {
    StoreError::Io(format!("redis: {e}"))
}

/// The bucket of a user: FNV-1a over tenant and user, modulo [`BUCKETS`].
pub fn bucket_of(key: UserKey) -> u16 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in key
        .tenant
        .to_bytes()
        .iter()
        .chain(key.user.to_bytes().iter())
    {
        hash ^= u64::from(*byte);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    (hash % u64::from(BUCKETS)) as u16
}

/// The hash slot of a key, as Redis Cluster computes it: CRC16 (XMODEM) of
/// the key's hash tag, or of the whole key without one, modulo 16,384.
pub fn slot_of(key: &[u8]) -> u16 {
    let tagged = key
        .iter()
        .position(|&b| b == b'{')
        .and_then(|open| {
            let rest = &key[open + 1..];
            rest.iter()
                .position(|&b| b == b'}')
                .filter(|&close| close > 0)
                .map(|close| &rest[..close])
        })
        .unwrap_or(key);
    let mut crc: u16 = 0;
    for &byte in tagged {
        crc ^= u16::from(byte) << 8;
        for _ in 0..8 {
            crc = if crc & 0x8000 != 0 {
                (crc << 1) ^ 0x1021
            } else {
                crc << 1
            };
        }
    }
    crc % 16_384
}

fn user_bytes(key: UserKey) -> Vec<u8> {
    let mut out = Vec::with_capacity(32);
    out.extend_from_slice(&key.tenant.to_bytes());
    out.extend_from_slice(&key.user.to_bytes());
    out
}

fn guid(bytes: &[u8]) -> Result<Guid, StoreError> {
    let array: [u8; 16] = bytes
        .try_into()
        .map_err(|_| StoreError::Corrupt("redis: malformed id".to_owned()))?;
    Ok(Guid::from_bytes(array))
}

fn due_member(key: UserKey, at: Timestamp) -> Vec<u8> {
    let mut out = user_bytes(key);
    out.extend_from_slice(&codec::encode_timestamp(at));
    out
}

fn parse_due_member(member: &[u8]) -> Result<(UserKey, Timestamp), StoreError> {
    if member.len() < 32 {
        return Err(StoreError::Corrupt("redis: malformed deadline".to_owned()));
    }
    let key = UserKey {
        tenant: guid(&member[..16])?,
        user: guid(&member[16..32])?,
    };
    Ok((key, codec::decode_timestamp(&member[32..])?))
}

/// A score for an instant: its milliseconds, rounded down.
fn score(at: Timestamp) -> String {
    at.as_millisecond().to_string()
}

fn score_ceiling(at: Timestamp) -> String {
    let ms = at.as_millisecond();
    let exact = Timestamp::from_millisecond(ms).is_ok_and(|t| t == at);
    if exact {
        ms.to_string()
    } else {
        (ms + 1).to_string()
    }
}

fn outbox_value(due: Timestamp, body: &OutboxBody) -> Vec<u8> {
    let due = codec::encode_timestamp(due);
    let mut out = Vec::with_capacity(1 + due.len() + 64);
    out.push(due.len() as u8);
    out.extend_from_slice(&due);
    out.extend_from_slice(&encode_body(body));
    out
}

fn parse_outbox_value(bytes: &[u8]) -> Result<(Timestamp, OutboxBody), StoreError> {
    let corrupt = || StoreError::Corrupt("redis: malformed outbox entry".to_owned());
    let (&len, rest) = bytes.split_first().ok_or_else(corrupt)?;
    let len = usize::from(len);
    if rest.len() < len {
        return Err(corrupt());
    }
    Ok((
        codec::decode_timestamp(&rest[..len])?,
        decode_body(&rest[len..])?,
    ))
}

fn outbox_id(bucket: u16, seq: u64) -> OutboxId {
    (u64::from(bucket) << SEQ_BITS) | seq
}

fn split_outbox_id(id: OutboxId) -> (u16, u64) {
    ((id >> SEQ_BITS) as u16, id & ((1 << SEQ_BITS) - 1))
}

/// A user's `HMGET d f`: directory entry and facts record.
type DirectoryAndFacts = (Option<Vec<u8>>, Option<Vec<u8>>);

impl RedisStore {
    /// Connects to the cluster (bounded by `connect_timeout`) and checks that
    /// it answers.
    pub async fn connect(
        config: &RedisConfig,
        rules: Rules,
    ) -> Result<Arc<RedisStore>, StoreError> {
        if config.urls.is_empty() {
            return Err(StoreError::Io("redis: no URL given".to_owned()));
        }
        let mut builder = ClusterClientBuilder::new(config.urls.clone())
            .connection_timeout(config.connect_timeout)
            .response_timeout(Duration::from_secs(5));
        if let Some(password) = &config.password {
            builder = builder.password(password.clone());
        }
        let client = builder.build().map_err(io)?;
        let connect = || async {
            tokio::time::timeout(config.connect_timeout, client.get_async_connection())
                .await
                .map_err(|_| {
                    StoreError::Io(format!(
                        "redis: no answer from {} within {:?}",
                        config.urls.join(","),
                        config.connect_timeout
                    ))
                })?
                .map_err(io)
        };
        let conn = connect().await?;
        let probe_conn = connect().await?;
        let store = Arc::new_cyclic(|myself| RedisStore {
            myself: myself.clone(),
            config: config.clone(),
            conn: std::sync::RwLock::new(conn),
            client,
            unhealthy: AtomicBool::new(false),
            connect_timeout: config.connect_timeout,
            max_record_bytes: config.max_record_bytes,
            prefix: config.key_prefix.clone(),
            wait_replicas: config.wait_replicas,
            rules,
            apply_script: Script::new(APPLY_SCRIPT),
            enqueue_script: Script::new(ENQUEUE_SCRIPT),
            claim_script: Script::new(CLAIM_SCRIPT),
            leases: lease::Leases::new(config.leases),
            next_bucket: AtomicU64::new(0),
            closed: AtomicBool::new(false),
            reachable: AtomicBool::new(true),
            probe_conn: std::sync::RwLock::new(probe_conn),
            slot_owners: std::sync::RwLock::new(None),
            users: AtomicU64::new(u64::MAX),
            outbox_count: std::sync::Mutex::new(None),
            outbox_hints: hints::OutboxHints::default(),
        });
        // The clock key answers only when every slot is served.
        store.manual_clock_now().await?;
        // Take this node's share of the buckets before serving, then keep it.
        store.maintain_leases().await?;
        store.count_users().await?;
        lease::spawn_upkeep(&store);
        Ok(store)
    }

    /// Counts the directory's users for [`Store::figures`]: one `SCARD` per
    /// tenant, all on the `{g}` slot in one round trip (no walk over users),
    /// and keeps the sum.
    pub(super) async fn count_users(&self) -> Result<u64, StoreError> {
        let mut conn = self.conn()?;
        let tenants: Vec<Vec<u8>> = conn.hkeys(self.global_key("tenants")).await.map_err(io)?;
        let mut pipe = Batch::new();
        for tenant in &tenants {
            let mut key = self.global_key("t:");
            key.extend_from_slice(tenant);
            pipe.cmd("SCARD").arg(key);
        }
        let counts: Vec<u64> = if tenants.is_empty() {
            Vec::new()
        } else {
            pipe.query(self, &conn).await?
        };
        let users = counts.iter().sum::<u64>();
        self.users.store(users, Ordering::Relaxed);
        Ok(users)
    }

    /// This node's id in the lease keys and `P{g}:nodes`.
    pub fn node_id(&self) -> &str {
        &self.leases.node
    }

    /// The buckets this node holds now (fires and delivers), in order.
    pub fn held_buckets(&self) -> Vec<u16> {
        self.leases.held_now()
    }

    fn conn(&self) -> Result<ClusterConnection, StoreError> {
        if self.closed.load(Ordering::Acquire) {
            return Err(StoreError::Closed);
        }
        Ok(self.raw_conn())
    }

    /// The current connection, closed or not.
    fn raw_conn(&self) -> ClusterConnection {
        self.conn
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    fn bucket_key(&self, bucket: u16, rest: &str) -> Vec<u8> {
        format!("{}{{b:{bucket:04}}}:{rest}", self.prefix).into_bytes()
    }

    fn user_key(&self, key: UserKey) -> Vec<u8> {
        let mut out = self.bucket_key(bucket_of(key), "u:");
        out.extend_from_slice(&user_bytes(key));
        out
    }

    fn subs_of_key(&self, key: UserKey) -> Vec<u8> {
        let mut out = self.bucket_key(bucket_of(key), "s:");
        out.extend_from_slice(&user_bytes(key));
        out
    }

    fn global_key(&self, rest: &str) -> Vec<u8> {
        format!("{}{{g}}:{rest}", self.prefix).into_bytes()
    }

    fn tenant_users_key(&self, tenant: Guid) -> Vec<u8> {
        let mut out = self.global_key("t:");
        out.extend_from_slice(&tenant.to_bytes());
        out
    }

    /// `WAIT n` on the master that holds `key`, when configured.
    async fn wait_for_replicas(&self, key: &[u8]) -> Result<(), StoreError> {
        if self.wait_replicas == 0 {
            return Ok(());
        }
        let mut conn = self.conn()?;
        let mut cmd = ::redis::cmd("WAIT");
        cmd.arg(self.wait_replicas).arg(5_000);
        let route = RoutingInfo::SingleNode(SingleNodeRoutingInfo::SpecificNode(
            ::redis::cluster_routing::Route::new(
                slot_of(key),
                ::redis::cluster_routing::SlotAddr::Master,
            ),
        ));
        let acked: i64 =
            ::redis::from_redis_value(conn.route_command(cmd, route).await.map_err(io)?)
                .map_err(|e| StoreError::Io(format!("redis: WAIT answered {e}")))?;
        if acked < i64::from(self.wait_replicas) {
            return Err(StoreError::Io(format!(
                "redis: the write reached {acked} of {} replicas in time",
                self.wait_replicas
            )));
        }
        Ok(())
    }

    async fn manual_clock_now(&self) -> Result<Option<Timestamp>, StoreError> {
        let mut conn = self.conn()?;
        let bytes: Option<Vec<u8>> = conn.get(self.global_key("clock")).await.map_err(io)?;
        bytes.map(|b| codec::decode_timestamp(&b)).transpose()
    }

    /// The record and version of a user.
    async fn read_record(&self, key: UserKey) -> Result<(Option<Vec<u8>>, String), StoreError> {
        let mut conn = self.conn()?;
        let (record, version): (Option<Vec<u8>>, Option<String>) = ::redis::cmd("HMGET")
            .arg(self.user_key(key))
            .arg("f")
            .arg("v")
            .query_async(&mut conn)
            .await
            .map_err(io)?;
        Ok((record, version.unwrap_or_else(|| "0".to_owned())))
    }

    /// Runs the write script; `None` when the version moved on.
    #[allow(clippy::too_many_arguments)]
    async fn write_record(
        &self,
        key: UserKey,
        version: &str,
        record: &[u8],
        old_deadline: Option<Timestamp>,
        new_deadline: Option<Timestamp>,
        announce: Option<&OutboxBody>,
    ) -> Result<Option<i64>, StoreError> {
        let bucket = bucket_of(key);
        let mut conn = self.conn()?;
        let user_key = self.user_key(key);
        let outbox = announce
            .map(|body| outbox_value(Timestamp::MIN, body))
            .unwrap_or_default();
        let result: i64 = self
            .apply_script
            .key(&user_key)
            .key(self.bucket_key(bucket, "due"))
            .key(self.bucket_key(bucket, "ob"))
            .key(self.bucket_key(bucket, "obz"))
            .key(self.bucket_key(bucket, "obseq"))
            .key(self.subs_of_key(key))
            .arg(version)
            .arg(record)
            .arg(
                old_deadline
                    .map(|at| due_member(key, at))
                    .unwrap_or_default(),
            )
            .arg(
                new_deadline
                    .map(|at| due_member(key, at))
                    .unwrap_or_default(),
            )
            .arg(new_deadline.map(score).unwrap_or_default())
            .arg(if announce.is_some() { "1" } else { "0" })
            .arg(outbox)
            .invoke_async(&mut conn)
            .await
            .map_err(io)?;
        if result < 0 {
            return Ok(None);
        }
        if result > 0 {
            self.outbox_hints.note(bucket, i64::MIN);
        }
        self.wait_for_replicas(&user_key).await?;
        Ok(Some(result))
    }

    /// The user's record and version, and whether the directory has them,
    /// in one round trip.
    async fn read_known_record(
        &self,
        key: UserKey,
    ) -> Result<(bool, Option<Vec<u8>>, String), StoreError> {
        let mut conn = self.conn()?;
        let (directory, record, version): (Option<Vec<u8>>, Option<Vec<u8>>, Option<String>) =
            ::redis::cmd("HMGET")
                .arg(self.user_key(key))
                .arg("d")
                .arg("f")
                .arg("v")
                .query_async(&mut conn)
                .await
                .map_err(io)?;
        Ok((
            directory.is_some(),
            record,
            version.unwrap_or_else(|| "0".to_owned()),
        ))
    }

    /// Applies a mutation; with `known`, only to a user the directory has
    /// (`None` otherwise), checked by the same read as the record's.
    async fn apply_now(
        &self,
        key: UserKey,
        mutation: Mutation,
        now: Timestamp,
        known: bool,
    ) -> Result<Option<ApplyOutcome>, StoreError> {
        for _ in 0..MAX_ATTEMPTS {
            let (in_directory, record, version) = self.read_known_record(key).await?;
            if known && !in_directory {
                return Ok(None);
            }
            let (mut facts, old_deadline) = match &record {
                Some(bytes) => codec::decode_user_record(bytes)?,
                None => (UserFacts::default(), None),
            };
            let applied =
                match presenced_domain::apply(&mut facts, mutation.clone(), now, &self.rules) {
                    Ok(applied) => applied,
                    Err(refused) => return Ok(Some(ApplyOutcome::Refused(refused))),
                };
            if !applied.facts_changed {
                return Ok(Some(ApplyOutcome::Applied(applied)));
            }
            let new_deadline = presenced_domain::next_change(&facts, now, &self.rules);
            let record = codec::encode_user_record(&facts, new_deadline);
            if record.len() > self.max_record_bytes {
                return Ok(Some(ApplyOutcome::Refused(
                    presenced_domain::MutationError::RecordTooLarge {
                        size: record.len(),
                        limit: self.max_record_bytes,
                    },
                )));
            }
            let change = OutboxBody::Changed { key, at: now };
            let announce = applied.visible_change.then_some(&change);
            let written = self
                .write_record(key, &version, &record, old_deadline, new_deadline, announce)
                .await?;
            if written.is_some() {
                return Ok(Some(ApplyOutcome::Applied(applied)));
            }
        }
        Err(StoreError::Io(format!(
            "redis: user {} changed under {MAX_ATTEMPTS} attempts to write it",
            key.user
        )))
    }

    async fn advance_now(
        &self,
        key: UserKey,
        handled: Timestamp,
        now: Timestamp,
    ) -> Result<Option<Timestamp>, StoreError> {
        for _ in 0..MAX_ATTEMPTS {
            let (record, version) = self.read_record(key).await?;
            let Some(record) = record else {
                return Ok(None);
            };
            let (facts, old_deadline) = codec::decode_user_record(&record)?;
            if old_deadline != Some(handled) {
                return Ok(old_deadline);
            }
            let new_deadline = presenced_domain::next_change(&facts, now.max(handled), &self.rules);
            let record = codec::replace_user_record_deadline(&record, new_deadline)?;
            // Announced in the same compare-and-set as the move: of two
            // nodes handling one deadline, only the one that moves it
            // announces it.
            let change = OutboxBody::Changed { key, at: handled };
            if self
                .write_record(
                    key,
                    &version,
                    &record,
                    old_deadline,
                    new_deadline,
                    Some(&change),
                )
                .await?
                .is_some()
            {
                return Ok(new_deadline);
            }
        }
        Err(StoreError::Io(format!(
            "redis: user {} changed under {MAX_ATTEMPTS} attempts to move its deadline",
            key.user
        )))
    }

    async fn known_many(
        &self,
        tenant: Guid,
        users: &[Guid],
    ) -> Result<Vec<KnownFacts>, StoreError> {
        let conn = self.conn()?;
        let mut pipe = Batch::new();
        for &user in users {
            pipe.cmd("HMGET")
                .arg(self.user_key(UserKey { tenant, user }))
                .arg("d")
                .arg("f");
        }
        let rows: Vec<DirectoryAndFacts> = pipe.query(self, &conn).await?;
        rows.into_iter()
            .map(|(directory, facts)| {
                if directory.is_none() {
                    return Ok(KnownFacts::NotInDirectory);
                }
                let facts = facts
                    .map(|bytes| codec::decode_user_record(&bytes).map(|(f, _)| Arc::new(f)))
                    .transpose()?;
                Ok(KnownFacts::Facts(facts))
            })
            .collect()
    }

    async fn facts_many_now(
        &self,
        tenant: Guid,
        users: &[Guid],
    ) -> Result<Vec<Option<Arc<UserFacts>>>, StoreError> {
        let conn = self.conn()?;
        let mut pipe = Batch::new();
        for &user in users {
            pipe.cmd("HGET")
                .arg(self.user_key(UserKey { tenant, user }))
                .arg("f");
        }
        let rows: Vec<Option<Vec<u8>>> = pipe.query(self, &conn).await?;
        rows.into_iter()
            .map(|row| {
                row.map(|bytes| codec::decode_user_record(&bytes).map(|(f, _)| Arc::new(f)))
                    .transpose()
            })
            .collect()
    }

    async fn due_now(
        &self,
        until: Timestamp,
        limit: usize,
    ) -> Result<Vec<(UserKey, Timestamp)>, StoreError> {
        if limit == 0 {
            return Ok(Vec::new());
        }
        let conn = self.conn()?;
        let mut pipe = Batch::new();
        for bucket in self.held_buckets() {
            pipe.cmd("ZRANGEBYSCORE")
                .arg(self.bucket_key(bucket, "due"))
                .arg("-inf")
                .arg(score(until))
                .arg("LIMIT")
                .arg(0)
                .arg(limit.min(i64::MAX as usize));
        }
        let rows: Vec<Vec<Vec<u8>>> = pipe.query(self, &conn).await?;
        let mut due = Vec::new();
        for member in rows.into_iter().flatten() {
            let (key, at) = parse_due_member(&member)?;
            if at <= until {
                due.push((at, key));
            }
        }
        due.sort_unstable();
        due.truncate(limit);
        Ok(due.into_iter().map(|(at, key)| (key, at)).collect())
    }

    async fn load_directory_now(
        &self,
        records: Vec<TenantRecord>,
    ) -> Result<DirectoryChange, StoreError> {
        let mut conn = self.conn()?;
        let mut change = DirectoryChange::default();
        for record in records {
            let tenant = record.tenant.id;
            let added: bool = conn
                .hset(
                    self.global_key("tenants"),
                    tenant.to_bytes().to_vec(),
                    codec::encode_tenant(&record.tenant),
                )
                .await
                .map_err(io)?;
            if added {
                change.tenants_added += 1;
            }
            // A second mention of a user in one load wins.
            let users: BTreeMap<Guid, DirectoryUser> = record
                .users
                .into_iter()
                .map(|user| (user.id, user))
                .collect();
            let users: Vec<DirectoryUser> = users.into_values().collect();
            let mut read = Batch::new();
            for user in &users {
                read.cmd("HGET")
                    .arg(self.user_key(UserKey {
                        tenant,
                        user: user.id,
                    }))
                    .arg("d");
            }
            let before: Vec<Option<Vec<u8>>> = read.query(self, &conn).await?;
            let mut write = Batch::new();
            for (user, before) in users.iter().zip(before) {
                let encoded = codec::encode_directory_user(user);
                match before {
                    None => change.users_added += 1,
                    Some(old) if old != encoded => change.users_updated += 1,
                    Some(_) => continue,
                }
                write
                    .cmd("HSET")
                    .arg(self.user_key(UserKey {
                        tenant,
                        user: user.id,
                    }))
                    .arg("d")
                    .arg(encoded)
                    .ignore();
                write
                    .cmd("SADD")
                    .arg(self.tenant_users_key(tenant))
                    .arg(user.id.to_bytes().to_vec())
                    .ignore();
            }
            let () = write.query(self, &conn).await?;
        }
        self.wait_for_replicas(&self.global_key("tenants")).await?;
        Ok(change)
    }

    async fn remove_user_now(&self, key: UserKey) -> Result<bool, StoreError> {
        let mut conn = self.conn()?;
        let removed: i64 = conn.hdel(self.user_key(key), "d").await.map_err(io)?;
        let _: i64 = conn
            .srem(
                self.tenant_users_key(key.tenant),
                key.user.to_bytes().to_vec(),
            )
            .await
            .map_err(io)?;
        self.wait_for_replicas(&self.user_key(key)).await?;
        Ok(removed > 0)
    }

    async fn user_now(&self, key: UserKey) -> Result<Option<DirectoryUser>, StoreError> {
        let mut conn = self.conn()?;
        let bytes: Option<Vec<u8>> = conn.hget(self.user_key(key), "d").await.map_err(io)?;
        bytes
            .map(|b| codec::decode_directory_user(key.user, &b))
            .transpose()
    }

    async fn tenant_users_now(&self, tenant: Guid) -> Result<Vec<DirectoryUser>, StoreError> {
        let mut conn = self.conn()?;
        let ids: Vec<Vec<u8>> = conn
            .smembers(self.tenant_users_key(tenant))
            .await
            .map_err(io)?;
        let mut ids = ids.iter().map(|b| guid(b)).collect::<Result<Vec<_>, _>>()?;
        ids.sort_unstable();
        let mut pipe = Batch::new();
        for &user in &ids {
            pipe.cmd("HGET")
                .arg(self.user_key(UserKey { tenant, user }))
                .arg("d");
        }
        let rows: Vec<Option<Vec<u8>>> = pipe.query(self, &conn).await?;
        let mut users = Vec::with_capacity(ids.len());
        for (id, row) in ids.into_iter().zip(rows) {
            if let Some(bytes) = row {
                users.push(codec::decode_directory_user(id, &bytes)?);
            }
        }
        Ok(users)
    }

    async fn directory_now(&self) -> Result<Vec<TenantRecord>, StoreError> {
        let mut conn = self.conn()?;
        let tenants: Vec<(Vec<u8>, Vec<u8>)> =
            conn.hgetall(self.global_key("tenants")).await.map_err(io)?;
        let mut sorted = BTreeMap::new();
        for (id, bytes) in tenants {
            let id = guid(&id)?;
            sorted.insert(id, codec::decode_tenant(id, &bytes)?);
        }
        let mut out = Vec::with_capacity(sorted.len());
        for (id, tenant) in sorted {
            let users = self.tenant_users_now(id).await?;
            out.push(TenantRecord { tenant, users });
        }
        Ok(out)
    }

    async fn subscription_now(&self, id: Guid) -> Result<Option<SubscriptionRecord>, StoreError> {
        let mut conn = self.conn()?;
        let bytes: Option<Vec<u8>> = conn
            .hget(self.global_key("subs"), id.to_bytes().to_vec())
            .await
            .map_err(io)?;
        bytes.map(|b| decode_subscription(id, &b)).transpose()
    }

    async fn put_subscription_now(&self, record: SubscriptionRecord) -> Result<(), StoreError> {
        let old = self.subscription_now(record.id).await?;
        let conn = self.conn()?;
        let id = record.id.to_bytes().to_vec();
        // Three steps, each finished before the next: the new users' index
        // entries, the record, then the index entries of users it no longer
        // covers. A failure part-way leaves extra index entries only, which
        // readers check against the record (see the module docs).
        let mut index = Batch::new();
        for &user in &record.users {
            index
                .cmd("SADD")
                .arg(self.subs_of_key(UserKey {
                    tenant: record.tenant,
                    user,
                }))
                .arg(&id)
                .ignore();
        }
        let () = index.query(self, &conn).await?;
        let mut put = Batch::new();
        put.cmd("HSET")
            .arg(self.global_key("subs"))
            .arg(&id)
            .arg(encode_subscription(&record))
            .ignore();
        let () = put.query(self, &conn).await?;
        if let Some(old) = old {
            let mut stale = Batch::new();
            for user in old
                .users
                .iter()
                .filter(|u| !record.users.contains(u) || old.tenant != record.tenant)
            {
                stale
                    .cmd("SREM")
                    .arg(self.subs_of_key(UserKey {
                        tenant: old.tenant,
                        user: *user,
                    }))
                    .arg(&id)
                    .ignore();
            }
            let () = stale.query(self, &conn).await?;
        }
        self.wait_for_replicas(&self.global_key("subs")).await
    }

    async fn delete_subscription_now(&self, id: Guid) -> Result<bool, StoreError> {
        let Some(old) = self.subscription_now(id).await? else {
            return Ok(false);
        };
        let mut conn = self.conn()?;
        let bytes = id.to_bytes().to_vec();
        // The record first, then its index entries (see put).
        let removed: i64 = conn
            .hdel(self.global_key("subs"), &bytes)
            .await
            .map_err(io)?;
        let mut index = Batch::new();
        for &user in &old.users {
            index
                .cmd("SREM")
                .arg(self.subs_of_key(UserKey {
                    tenant: old.tenant,
                    user,
                }))
                .arg(&bytes)
                .ignore();
        }
        let () = index.query(self, &conn).await?;
        self.wait_for_replicas(&self.global_key("subs")).await?;
        Ok(removed > 0)
    }

    async fn subscriptions_now(&self) -> Result<Vec<SubscriptionRecord>, StoreError> {
        let mut conn = self.conn()?;
        let all: Vec<(Vec<u8>, Vec<u8>)> =
            conn.hgetall(self.global_key("subs")).await.map_err(io)?;
        let mut out = all
            .into_iter()
            .map(|(id, bytes)| decode_subscription(guid(&id)?, &bytes))
            .collect::<Result<Vec<_>, _>>()?;
        out.sort_by_key(|r| r.id);
        Ok(out)
    }

    async fn subscriptions_of_now(&self, key: UserKey) -> Result<Vec<Guid>, StoreError> {
        let mut conn = self.conn()?;
        let ids: Vec<Vec<u8>> = conn.smembers(self.subs_of_key(key)).await.map_err(io)?;
        let mut ids = ids.iter().map(|b| guid(b)).collect::<Result<Vec<_>, _>>()?;
        ids.sort_unstable();
        Ok(ids)
    }

    async fn settle_now(&self, settlement: OutboxSettlement) -> Result<Vec<OutboxId>, StoreError> {
        let mut conn = self.conn()?;
        let mut added = Vec::with_capacity(settlement.add.len());
        let mut held: Option<Vec<u16>> = None;
        for (due, body) in &settlement.add {
            let bucket = match body {
                OutboxBody::Changed { key, .. } => bucket_of(*key),
                // Work of no user goes to a bucket this node holds, so that
                // it is done here at once (another node would find it on
                // its next poll); spread over them, or over all buckets
                // while the node holds none.
                OutboxBody::Opaque(_) => {
                    let turn = self.next_bucket.fetch_add(1, Ordering::Relaxed);
                    let held = held.get_or_insert_with(|| self.held_buckets());
                    if held.is_empty() {
                        (turn % u64::from(BUCKETS)) as u16
                    } else {
                        held[(turn % held.len() as u64) as usize]
                    }
                }
            };
            let seq: u64 = self
                .enqueue_script
                .key(self.bucket_key(bucket, "ob"))
                .key(self.bucket_key(bucket, "obz"))
                .key(self.bucket_key(bucket, "obseq"))
                .arg(score_ceiling(*due))
                .arg(outbox_value(*due, body))
                .invoke_async(&mut conn)
                .await
                .map_err(io)?;
            self.outbox_hints.note(bucket, due.as_millisecond());
            added.push(outbox_id(bucket, seq));
        }
        let mut pipe = Batch::new();
        for (id, due, body) in &settlement.retry {
            let (bucket, seq) = split_outbox_id(*id);
            self.outbox_hints.note(bucket, due.as_millisecond());
            pipe.cmd("HSET")
                .arg(self.bucket_key(bucket, "ob"))
                .arg(seq)
                .arg(outbox_value(*due, body))
                .ignore();
            pipe.cmd("ZADD")
                .arg(self.bucket_key(bucket, "obz"))
                .arg(score_ceiling(*due))
                .arg(seq)
                .ignore();
            pipe.cmd("ZREM")
                .arg(self.bucket_key(bucket, "obc"))
                .arg(seq)
                .ignore();
        }
        for id in &settlement.done {
            let (bucket, seq) = split_outbox_id(*id);
            pipe.cmd("ZREM")
                .arg(self.bucket_key(bucket, "obz"))
                .arg(seq)
                .ignore();
            pipe.cmd("ZREM")
                .arg(self.bucket_key(bucket, "obc"))
                .arg(seq)
                .ignore();
            pipe.cmd("HDEL")
                .arg(self.bucket_key(bucket, "ob"))
                .arg(seq)
                .ignore();
        }
        let () = pipe.query(self, &conn).await?;
        Ok(added)
    }

    /// The earliest queued entries, due at or before `until` (all if
    /// `None`): (score, bucket, seq), earliest first, at most `limit`; of
    /// the buckets this node holds, those its hints name (`hints.rs`), or
    /// every one when a full scan is due. What a scan finds and does not
    /// return is noted again, and so is what it returns when `peek` (it is
    /// not claimed).
    async fn outbox_queued(
        &self,
        until: Option<Timestamp>,
        limit: usize,
        peek: bool,
    ) -> Result<Vec<(i64, u16, u64)>, StoreError> {
        let until_ms = until.map(|at| {
            score_ceiling(at)
                .parse::<i64>()
                .unwrap_or_else(|_| at.as_millisecond())
        });
        let buckets =
            self.outbox_hints
                .plan(&self.held_buckets(), until_ms, std::time::Instant::now());
        if buckets.is_empty() || limit == 0 {
            return Ok(Vec::new());
        }
        let conn = self.conn()?;
        let mut pipe = Batch::new();
        let per_bucket = limit.min(i64::MAX as usize);
        for &bucket in &buckets {
            pipe.cmd("ZRANGEBYSCORE")
                .arg(self.bucket_key(bucket, "obz"))
                .arg("-inf")
                .arg("+inf")
                .arg("WITHSCORES")
                .arg("LIMIT")
                .arg(0)
                .arg(per_bucket);
        }
        let rows: Vec<Vec<(u64, f64)>> = match pipe.query(self, &conn).await {
            Ok(rows) => rows,
            Err(error) => {
                // Scan them again next time.
                for &bucket in &buckets {
                    self.outbox_hints.note(bucket, i64::MIN);
                }
                return Err(error);
            }
        };
        let mut queued: Vec<(i64, u16, u64)> = Vec::new();
        for (bucket, row) in buckets.into_iter().zip(rows) {
            let full = row.len() >= per_bucket;
            let mut last = None;
            for (seq, score) in row {
                let score = score as i64;
                last = Some(score);
                if until_ms.is_none_or(|until| score <= until) {
                    queued.push((score, bucket, seq));
                } else {
                    // Later work: the first of it is what to note.
                    self.outbox_hints.note(bucket, score);
                    break;
                }
            }
            if full && let Some(last) = last {
                // There may be more past what the scan was allowed to see.
                self.outbox_hints.note(bucket, last);
            }
        }
        queued.sort_unstable();
        let kept = if peek { 0 } else { limit.min(queued.len()) };
        for &(score, bucket, _) in &queued[kept..] {
            self.outbox_hints.note(bucket, score);
        }
        queued.truncate(limit);
        Ok(queued)
    }

    /// Claims the earliest entries due at or before `until` in the buckets
    /// this node holds.
    async fn claim_now(
        &self,
        until: Timestamp,
        limit: usize,
    ) -> Result<Vec<OutboxEntry>, StoreError> {
        if limit == 0 {
            return Ok(Vec::new());
        }
        let queued = self.outbox_queued(Some(until), limit, false).await?;
        let mut by_bucket: BTreeMap<u16, Vec<u64>> = BTreeMap::new();
        for (_, bucket, seq) in queued {
            by_bucket.entry(bucket).or_default().push(seq);
        }
        let mut tasks = tokio::task::JoinSet::new();
        for (bucket, seqs) in by_bucket {
            let mut conn = self.conn()?;
            let script = self.claim_script.clone();
            let keys = [
                self.bucket_key(bucket, "lease"),
                self.bucket_key(bucket, "obz"),
                self.bucket_key(bucket, "obc"),
                self.bucket_key(bucket, "ob"),
            ];
            let node = self.leases.node.clone();
            tasks.spawn(async move {
                let mut invocation = script.prepare_invoke();
                for key in keys {
                    invocation.key(key);
                }
                invocation.arg(node);
                for seq in seqs {
                    invocation.arg(seq);
                }
                let answer = invocation.invoke_async::<::redis::Value>(&mut conn).await;
                (bucket, answer)
            });
        }
        let mut entries = Vec::new();
        while let Some(joined) = tasks.join_next().await {
            let (bucket, answer) = joined.map_err(|e| StoreError::Io(format!("redis: {e}")))?;
            let answer = answer.map_err(io)?;
            // -1: the lease moved to another node meanwhile.
            let Ok(pairs) = ::redis::from_redis_value::<Vec<(u64, Vec<u8>)>>(answer) else {
                continue;
            };
            for (seq, value) in pairs {
                let (due, body) = parse_outbox_value(&value)?;
                entries.push(OutboxEntry {
                    id: outbox_id(bucket, seq),
                    due,
                    body,
                });
            }
        }
        entries.sort_by_key(|e| (e.due, e.id));
        Ok(entries)
    }

    /// When the earliest queued entry of the buckets this node holds is due.
    async fn next_due_now(&self) -> Result<Option<Timestamp>, StoreError> {
        if !self.outbox_hints.full_due(std::time::Instant::now()) {
            // Known here without asking; a full scan is at most
            // `hints::FULL_SCAN` away for the rest.
            return Ok(self
                .outbox_hints
                .earliest()
                .map(|ms| Timestamp::from_millisecond(ms).unwrap_or(Timestamp::MIN)));
        }
        let Some((_, bucket, seq)) = self.outbox_queued(None, 1, true).await?.pop() else {
            return Ok(None);
        };
        let mut conn = self.conn()?;
        let value: Option<Vec<u8>> = conn
            .hget(self.bucket_key(bucket, "ob"), seq)
            .await
            .map_err(io)?;
        value
            .map(|v| parse_outbox_value(&v).map(|(due, _)| due))
            .transpose()
    }
}

impl Store for RedisStore {
    fn facts(&self, key: UserKey) -> BoxFuture<'_, Result<Option<Arc<UserFacts>>, StoreError>> {
        Box::pin(async move {
            Ok(self
                .facts_many_now(key.tenant, &[key.user])
                .await?
                .pop()
                .flatten())
        })
    }

    fn facts_many(
        &self,
        tenant: Guid,
        users: Vec<Guid>,
    ) -> BoxFuture<'_, Result<Vec<Option<Arc<UserFacts>>>, StoreError>> {
        Box::pin(async move { self.facts_many_now(tenant, &users).await })
    }

    fn known_facts(&self, key: UserKey) -> BoxFuture<'_, Result<KnownFacts, StoreError>> {
        Box::pin(async move {
            self.known_many(key.tenant, &[key.user])
                .await?
                .pop()
                .ok_or_else(|| StoreError::Io("redis: empty answer".to_owned()))
        })
    }

    fn known_facts_many<'a>(
        &'a self,
        tenant: Guid,
        users: &'a [Guid],
    ) -> BoxFuture<'a, Result<Vec<KnownFacts>, StoreError>> {
        Box::pin(async move { self.known_many(tenant, users).await })
    }

    fn contains_user(&self, key: UserKey) -> BoxFuture<'_, Result<bool, StoreError>> {
        Box::pin(async move {
            let mut conn = self.conn()?;
            conn.hexists(self.user_key(key), "d").await.map_err(io)
        })
    }

    fn has_directory(&self) -> BoxFuture<'_, Result<bool, StoreError>> {
        Box::pin(async move {
            let mut conn = self.conn()?;
            let n: u64 = conn.hlen(self.global_key("tenants")).await.map_err(io)?;
            Ok(n > 0)
        })
    }

    fn apply(
        &self,
        key: UserKey,
        mutation: Mutation,
        now: Timestamp,
    ) -> BoxFuture<'_, Result<ApplyOutcome, StoreError>> {
        Box::pin(async move {
            self.apply_now(key, mutation, now, false)
                .await?
                .ok_or_else(|| {
                    StoreError::Corrupt("redis: an unchecked write found no user".into())
                })
        })
    }

    fn apply_known(
        &self,
        key: UserKey,
        mutation: Mutation,
        now: Timestamp,
    ) -> BoxFuture<'_, Result<Option<ApplyOutcome>, StoreError>> {
        Box::pin(self.apply_now(key, mutation, now, true))
    }

    fn due(
        &self,
        until: Timestamp,
        limit: usize,
    ) -> BoxFuture<'_, Result<Vec<(UserKey, Timestamp)>, StoreError>> {
        Box::pin(self.due_now(until, limit))
    }

    fn advance_deadline(
        &self,
        key: UserKey,
        handled: Timestamp,
        now: Timestamp,
    ) -> BoxFuture<'_, Result<Option<Timestamp>, StoreError>> {
        Box::pin(self.advance_now(key, handled, now))
    }

    fn advance_announces(&self) -> bool {
        true
    }

    fn load_directory(
        &self,
        records: Vec<TenantRecord>,
    ) -> BoxFuture<'_, Result<DirectoryChange, StoreError>> {
        Box::pin(async move {
            let change = self.load_directory_now(records).await?;
            self.count_users().await?;
            Ok(change)
        })
    }

    fn remove_user(&self, key: UserKey) -> BoxFuture<'_, Result<bool, StoreError>> {
        Box::pin(async move {
            let removed = self.remove_user_now(key).await?;
            self.count_users().await?;
            Ok(removed)
        })
    }

    fn user(&self, key: UserKey) -> BoxFuture<'_, Result<Option<DirectoryUser>, StoreError>> {
        Box::pin(self.user_now(key))
    }

    fn tenant_users(&self, tenant: Guid) -> BoxFuture<'_, Result<Vec<DirectoryUser>, StoreError>> {
        Box::pin(self.tenant_users_now(tenant))
    }

    fn directory(&self) -> BoxFuture<'_, Result<Vec<TenantRecord>, StoreError>> {
        Box::pin(self.directory_now())
    }

    fn manual_clock(&self) -> BoxFuture<'_, Result<Option<Timestamp>, StoreError>> {
        Box::pin(self.manual_clock_now())
    }

    fn set_manual_clock(&self, now: Timestamp) -> BoxFuture<'_, Result<(), StoreError>> {
        Box::pin(async move {
            let mut conn = self.conn()?;
            let key = self.global_key("clock");
            let () = conn
                .set(&key, codec::encode_timestamp(now))
                .await
                .map_err(io)?;
            self.wait_for_replicas(&key).await
        })
    }

    fn put_subscription(
        &self,
        record: SubscriptionRecord,
    ) -> BoxFuture<'_, Result<(), StoreError>> {
        Box::pin(self.put_subscription_now(record))
    }

    fn delete_subscription(&self, id: Guid) -> BoxFuture<'_, Result<bool, StoreError>> {
        Box::pin(self.delete_subscription_now(id))
    }

    fn subscription(
        &self,
        id: Guid,
    ) -> BoxFuture<'_, Result<Option<SubscriptionRecord>, StoreError>> {
        Box::pin(self.subscription_now(id))
    }

    fn subscriptions(&self) -> BoxFuture<'_, Result<Vec<SubscriptionRecord>, StoreError>> {
        Box::pin(self.subscriptions_now())
    }

    fn subscriptions_of(&self, key: UserKey) -> BoxFuture<'_, Result<Vec<Guid>, StoreError>> {
        Box::pin(self.subscriptions_of_now(key))
    }

    fn settle_outbox(
        &self,
        settlement: OutboxSettlement,
    ) -> BoxFuture<'_, Result<Vec<OutboxId>, StoreError>> {
        Box::pin(self.settle_now(settlement))
    }

    fn claim_outbox(
        &self,
        until: Timestamp,
        limit: usize,
    ) -> BoxFuture<'_, Result<Vec<OutboxEntry>, StoreError>> {
        Box::pin(self.claim_now(until, limit))
    }

    fn outbox_next_due(&self) -> BoxFuture<'_, Result<Option<Timestamp>, StoreError>> {
        Box::pin(self.next_due_now())
    }

    fn close(&self) -> BoxFuture<'_, Result<(), StoreError>> {
        Box::pin(async move {
            if !self.closed.swap(true, Ordering::AcqRel) {
                self.release_leases().await;
            }
            Ok(())
        })
    }

    fn is_ready(&self) -> bool {
        !self.closed.load(Ordering::Acquire) && self.reachable.load(Ordering::Acquire)
    }

    /// The users as last counted (after this node's directory changes, and
    /// every lease round for other nodes' changes); the outbox's size takes
    /// a command per bucket, so it is told by [`Store::outbox_entries`].
    fn figures(&self) -> crate::StoreFigures {
        let users = self.users.load(Ordering::Relaxed);
        crate::StoreFigures {
            backend: "redis",
            users: (users != u64::MAX).then_some(users),
            outbox_entries: None,
        }
    }

    fn outbox_entries(&self) -> BoxFuture<'_, Option<u64>> {
        Box::pin(async move {
            match self.outbox_entries_now().await {
                Ok(count) => Some(count),
                Err(error) => {
                    tracing::debug!(%error, "could not count the outbox");
                    None
                }
            }
        })
    }

    fn announce_change(
        &self,
        key: UserKey,
        at: Timestamp,
    ) -> BoxFuture<'_, Result<(), StoreError>> {
        Box::pin(self.announce_now(key, at))
    }

    fn changes_elsewhere(&self) -> BoxFuture<'_, Result<Option<ChangeFeed>, StoreError>> {
        Box::pin(async move { Ok(Some(self.watch_now().await?)) })
    }

    fn shared_limiter(&self) -> Option<Arc<dyn SharedLimiter>> {
        let store = self.myself.upgrade()?;
        Some(Arc::new(limiter::RedisLimiter::new(store)))
    }
}
