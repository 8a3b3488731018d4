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
//! Not yet: leases of buckets between nodes (each node scans every bucket's
//! deadlines and outbox; claims are per node), and atomicity of
//! subscriptions and outbox settlements across buckets (they are written
//! bucket by bucket, each step idempotent).

mod export;
mod shared;

use std::collections::{BTreeMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use ::redis::cluster::ClusterClientBuilder;
use ::redis::cluster_async::ClusterConnection;
use ::redis::cluster_routing::{RoutingInfo, SingleNodeRoutingInfo};
use ::redis::{AsyncCommands, Script};
use jiff::Timestamp;
use presenced_domain::{Guid, Mutation, Rules, UserFacts};

use crate::embedded::notify::{decode_body, decode_subscription, encode_body, encode_subscription};
use crate::{
    ApplyOutcome, BoxFuture, DirectoryChange, DirectoryUser, KnownFacts, OutboxBody, OutboxEntry,
    OutboxId, OutboxSettlement, Store, StoreError, SubscriptionRecord, TenantRecord, UserKey,
    codec,
};

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
            max_record_bytes: 64 * 1024,
        }
    }
}

/// The Redis Cluster backend of [`Store`].
pub struct RedisStore {
    /// Replaced whole when the cluster came back and the old connection did
    /// not find its way back (see `shared.rs`).
    conn: std::sync::RwLock<ClusterConnection>,
    client: ::redis::cluster::ClusterClient,
    connect_timeout: Duration,
    max_record_bytes: usize,
    prefix: String,
    wait_replicas: u32,
    rules: Rules,
    apply_script: Script,
    enqueue_script: Script,
    /// Outbox entries this node has claimed and not settled.
    claimed: Mutex<HashSet<OutboxId>>,
    /// Spreads outbox entries that belong to no user over the buckets.
    next_bucket: AtomicU64,
    closed: AtomicBool,
    /// Whether the last probe reached every master (see `shared.rs`).
    reachable: AtomicBool,
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

/// Commands sent together. A cluster pipeline must stay within one slot,
/// so a batch sends each command on its own over the multiplexed connection
/// (all in flight at once: per node they travel as one pipeline) and
/// collects the answers in order.
struct Batch {
    cmds: Vec<(::redis::Cmd, bool)>,
}

impl Batch {
    fn new() -> Self {
        Batch { cmds: Vec::new() }
    }

    fn cmd(&mut self, name: &str) -> &mut Self {
        self.cmds.push((::redis::cmd(name), false));
        self
    }

    fn arg<T: ::redis::ToRedisArgs>(&mut self, arg: T) -> &mut Self {
        if let Some((cmd, _)) = self.cmds.last_mut() {
            cmd.arg(arg);
        }
        self
    }

    /// Leaves the last command's answer out of the result.
    fn ignore(&mut self) -> &mut Self {
        if let Some((_, ignored)) = self.cmds.last_mut() {
            *ignored = true;
        }
        self
    }

    async fn query<T: ::redis::FromRedisValue>(
        &self,
        conn: &ClusterConnection,
    ) -> Result<T, StoreError> {
        let mut tasks = tokio::task::JoinSet::new();
        for (i, (cmd, _)) in self.cmds.iter().enumerate() {
            let mut conn = conn.clone();
            let cmd = cmd.clone();
            tasks.spawn(async move { (i, cmd.query_async::<::redis::Value>(&mut conn).await) });
        }
        let mut answers: Vec<Option<::redis::Value>> = vec![None; self.cmds.len()];
        while let Some(joined) = tasks.join_next().await {
            let (i, answer) = joined.map_err(|e| StoreError::Io(format!("redis: {e}")))?;
            answers[i] = Some(answer.map_err(io)?);
        }
        let values = answers
            .into_iter()
            .zip(&self.cmds)
            .filter(|(_, (_, ignored))| !ignored)
            .map(|(value, _)| value.unwrap_or(::redis::Value::Nil))
            .collect();
        ::redis::from_redis_value(::redis::Value::Array(values))
            .map_err(|e| StoreError::Corrupt(format!("redis: unexpected answer: {e}")))
    }
}

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
        let conn = tokio::time::timeout(config.connect_timeout, client.get_async_connection())
            .await
            .map_err(|_| {
                StoreError::Io(format!(
                    "redis: no answer from {} within {:?}",
                    config.urls.join(","),
                    config.connect_timeout
                ))
            })?
            .map_err(io)?;
        let store = RedisStore {
            conn: std::sync::RwLock::new(conn),
            client,
            connect_timeout: config.connect_timeout,
            max_record_bytes: config.max_record_bytes,
            prefix: config.key_prefix.clone(),
            wait_replicas: config.wait_replicas,
            rules,
            apply_script: Script::new(APPLY_SCRIPT),
            enqueue_script: Script::new(ENQUEUE_SCRIPT),
            claimed: Mutex::new(HashSet::new()),
            next_bucket: AtomicU64::new(0),
            closed: AtomicBool::new(false),
            reachable: AtomicBool::new(true),
        };
        // The clock key answers only when every slot is served.
        store.manual_clock_now().await?;
        Ok(Arc::new(store))
    }

    fn conn(&self) -> Result<ClusterConnection, StoreError> {
        if self.closed.load(Ordering::Acquire) {
            return Err(StoreError::Closed);
        }
        Ok(self
            .conn
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone())
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
        self.wait_for_replicas(&user_key).await?;
        Ok(Some(result))
    }

    async fn apply_now(
        &self,
        key: UserKey,
        mutation: Mutation,
        now: Timestamp,
    ) -> Result<ApplyOutcome, StoreError> {
        for _ in 0..MAX_ATTEMPTS {
            let (record, version) = self.read_record(key).await?;
            let (mut facts, old_deadline) = match &record {
                Some(bytes) => codec::decode_user_record(bytes)?,
                None => (UserFacts::default(), None),
            };
            let applied =
                match presenced_domain::apply(&mut facts, mutation.clone(), now, &self.rules) {
                    Ok(applied) => applied,
                    Err(refused) => return Ok(ApplyOutcome::Refused(refused)),
                };
            if !applied.facts_changed {
                return Ok(ApplyOutcome::Applied(applied));
            }
            let new_deadline = presenced_domain::next_change(&facts, now, &self.rules);
            let record = codec::encode_user_record(&facts, new_deadline);
            if record.len() > self.max_record_bytes {
                return Ok(ApplyOutcome::Refused(
                    presenced_domain::MutationError::RecordTooLarge {
                        size: record.len(),
                        limit: self.max_record_bytes,
                    },
                ));
            }
            let change = OutboxBody::Changed { key, at: now };
            let announce = applied.visible_change.then_some(&change);
            let written = self
                .write_record(key, &version, &record, old_deadline, new_deadline, announce)
                .await?;
            if written.is_some() {
                return Ok(ApplyOutcome::Applied(applied));
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
            if self
                .write_record(key, &version, &record, old_deadline, new_deadline, None)
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
        let rows: Vec<DirectoryAndFacts> = pipe.query(&conn).await?;
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
        let rows: Vec<Option<Vec<u8>>> = pipe.query(&conn).await?;
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
        for bucket in 0..BUCKETS {
            pipe.cmd("ZRANGEBYSCORE")
                .arg(self.bucket_key(bucket, "due"))
                .arg("-inf")
                .arg(score(until))
                .arg("LIMIT")
                .arg(0)
                .arg(limit.min(i64::MAX as usize));
        }
        let rows: Vec<Vec<Vec<u8>>> = pipe.query(&conn).await?;
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
            let before: Vec<Option<Vec<u8>>> = read.query(&conn).await?;
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
            let () = write.query(&conn).await?;
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
        let rows: Vec<Option<Vec<u8>>> = pipe.query(&conn).await?;
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
        // Index first, record last: a reader never finds a record whose
        // users do not lead to it.
        let mut pipe = Batch::new();
        for &user in &record.users {
            pipe.cmd("SADD")
                .arg(self.subs_of_key(UserKey {
                    tenant: record.tenant,
                    user,
                }))
                .arg(&id)
                .ignore();
        }
        pipe.cmd("HSET")
            .arg(self.global_key("subs"))
            .arg(&id)
            .arg(encode_subscription(&record))
            .ignore();
        if let Some(old) = old {
            for user in old
                .users
                .iter()
                .filter(|u| !record.users.contains(u) || old.tenant != record.tenant)
            {
                pipe.cmd("SREM")
                    .arg(self.subs_of_key(UserKey {
                        tenant: old.tenant,
                        user: *user,
                    }))
                    .arg(&id)
                    .ignore();
            }
        }
        let () = pipe.query(&conn).await?;
        self.wait_for_replicas(&self.global_key("subs")).await
    }

    async fn delete_subscription_now(&self, id: Guid) -> Result<bool, StoreError> {
        let Some(old) = self.subscription_now(id).await? else {
            return Ok(false);
        };
        let conn = self.conn()?;
        let bytes = id.to_bytes().to_vec();
        let mut pipe = Batch::new();
        pipe.cmd("HDEL").arg(self.global_key("subs")).arg(&bytes);
        for &user in &old.users {
            pipe.cmd("SREM")
                .arg(self.subs_of_key(UserKey {
                    tenant: old.tenant,
                    user,
                }))
                .arg(&bytes)
                .ignore();
        }
        let (removed,): (i64,) = pipe.query(&conn).await?;
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
        for (due, body) in &settlement.add {
            let bucket = match body {
                OutboxBody::Changed { key, .. } => bucket_of(*key),
                OutboxBody::Opaque(_) => {
                    (self.next_bucket.fetch_add(1, Ordering::Relaxed) % u64::from(BUCKETS)) as u16
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
            added.push(outbox_id(bucket, seq));
        }
        let mut pipe = Batch::new();
        for (id, due, body) in &settlement.retry {
            let (bucket, seq) = split_outbox_id(*id);
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
        }
        for id in &settlement.done {
            let (bucket, seq) = split_outbox_id(*id);
            pipe.cmd("ZREM")
                .arg(self.bucket_key(bucket, "obz"))
                .arg(seq)
                .ignore();
            pipe.cmd("HDEL")
                .arg(self.bucket_key(bucket, "ob"))
                .arg(seq)
                .ignore();
        }
        let () = pipe.query(&conn).await?;
        let mut claimed = self.claimed.lock().unwrap_or_else(PoisonError::into_inner);
        for id in settlement
            .done
            .iter()
            .chain(settlement.retry.iter().map(|(id, _, _)| id))
        {
            claimed.remove(id);
        }
        Ok(added)
    }

    /// Unclaimed entries due at or before `until` (all if `None`), earliest
    /// first, at most `limit`.
    async fn outbox_due(
        &self,
        until: Option<Timestamp>,
        limit: usize,
    ) -> Result<Vec<OutboxEntry>, StoreError> {
        let claimed: HashSet<OutboxId> = self
            .claimed
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        let fetch = limit.saturating_add(claimed.len());
        let conn = self.conn()?;
        let mut pipe = Batch::new();
        for bucket in 0..BUCKETS {
            pipe.cmd("ZRANGEBYSCORE")
                .arg(self.bucket_key(bucket, "obz"))
                .arg("-inf")
                .arg(until.map_or_else(|| "+inf".to_owned(), score_ceiling))
                .arg("LIMIT")
                .arg(0)
                .arg(fetch.min(i64::MAX as usize));
        }
        let rows: Vec<Vec<u64>> = pipe.query(&conn).await?;
        let mut ids: Vec<(u16, u64)> = Vec::new();
        for (bucket, seqs) in rows.into_iter().enumerate() {
            for seq in seqs {
                if !claimed.contains(&outbox_id(bucket as u16, seq)) {
                    ids.push((bucket as u16, seq));
                }
            }
        }
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let mut pipe = Batch::new();
        for (bucket, seq) in &ids {
            pipe.cmd("HGET")
                .arg(self.bucket_key(*bucket, "ob"))
                .arg(*seq);
        }
        let values: Vec<Option<Vec<u8>>> = pipe.query(&conn).await?;
        let mut entries = Vec::new();
        for ((bucket, seq), value) in ids.into_iter().zip(values) {
            let Some(value) = value else { continue };
            let (due, body) = parse_outbox_value(&value)?;
            if until.is_some_and(|until| due > until) {
                continue;
            }
            entries.push(OutboxEntry {
                id: outbox_id(bucket, seq),
                due,
                body,
            });
        }
        entries.sort_by_key(|e| (e.due, e.id));
        entries.truncate(limit);
        Ok(entries)
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
        Box::pin(self.apply_now(key, mutation, now))
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

    fn load_directory(
        &self,
        records: Vec<TenantRecord>,
    ) -> BoxFuture<'_, Result<DirectoryChange, StoreError>> {
        Box::pin(self.load_directory_now(records))
    }

    fn remove_user(&self, key: UserKey) -> BoxFuture<'_, Result<bool, StoreError>> {
        Box::pin(self.remove_user_now(key))
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
        Box::pin(async move {
            let entries = self.outbox_due(Some(until), limit).await?;
            let mut claimed = self.claimed.lock().unwrap_or_else(PoisonError::into_inner);
            claimed.extend(entries.iter().map(|e| e.id));
            Ok(entries)
        })
    }

    fn outbox_next_due(&self) -> BoxFuture<'_, Result<Option<Timestamp>, StoreError>> {
        Box::pin(async move { Ok(self.outbox_due(None, 1).await?.first().map(|e| e.due)) })
    }

    fn close(&self) -> BoxFuture<'_, Result<(), StoreError>> {
        self.closed.store(true, Ordering::Release);
        Box::pin(async { Ok(()) })
    }

    fn is_ready(&self) -> bool {
        !self.closed.load(Ordering::Acquire) && self.reachable.load(Ordering::Acquire)
    }
}
