//! The embedded backend: memory answers reads, a write-ahead log makes
//! writes durable, one writer thread group-commits them, and a redb file
//! holds the tables, following the log lazily.
//!
//! # How a write goes
//! [`Store::apply`] takes the user's shard lock, decodes the user's record,
//! applies the mutation with [`presenced_domain::apply`], computes the new
//! deadline with [`presenced_domain::next_change`], then — still under the
//! lock — enqueues the new record to the writer and replaces it in memory.
//! Holding the lock across both steps is what keeps one user's writes in the
//! same order in memory and in the file. The lock is released and the call
//! awaits the writer's acknowledgement, which comes only after the log
//! record that carries it has been fsynced: nothing is acknowledged that
//! lives only in memory. redb receives the write later (see `writer`). A mutation that changes nothing writes nothing, but still waits
//! until every write queued before it is durable (a barrier), since what it
//! answers may rest on one of them.
//!
//! Reads see the newest state in memory, which may run a commit ahead of the
//! file. If a commit fails (a full disk), the writer fails that write and
//! every one queued behind it, puts memory back to what the file holds, and
//! keeps refusing writes ([`StoreError::Io`]) while reads are served, until
//! the disk takes writes again; then the store is open as before, without a
//! restart (see `recovery`). A write that failed is never served.
//!
//! `due()` scans the `deadline_userkey` table in a read transaction rather
//! than a mirror in memory: it costs no memory per user. Since redb lags the
//! log, it first asks the writer to write every acknowledged write to redb
//! (a non-durable transaction), so it sees every acknowledged deadline (a
//! write still in its group commit shows up a moment later; a row may name
//! a deadline that a pending write is moving, which
//! [`Store::advance_deadline`] tolerates).
//!
//! # Files
//! - `compaction`: giving space back to the file system after deletes.
//! - `deadlines`: moving many users' deadlines on at once.
//! - `directory`: loading and listing the directory.
//! - `memory`: the sharded sets of encoded records, and the lock choice.
//! - `notify`: subscriptions, the user → subscriptions index, the outbox.
//! - `recovery`: after a failed commit: reopening the file, putting memory
//!   back, probing the disk.
//! - `restore`: `restore_record()`, a record written as exported (import).
//! - `tables`: the redb tables, their keys, and start-up loading.
//! - `wal`: the write-ahead log: records, checksums, a torn tail.
//! - `writer`: the writer thread (group commit into the log, redb lazily,
//!   checkpoints).
//!
//! This module knows no HTTP and no JSON; the meaning of facts is the
//! domain's, the meaning of bytes the codec's.

mod applier;
mod compaction;
mod deadlines;
mod directory;
mod memory;
pub(crate) mod notify;
mod recovery;
mod restore;
mod tables;
#[cfg(test)]
mod tests;
mod wal;
mod writer;

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, Sender};
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::thread::JoinHandle;

use jiff::Timestamp;
use presenced_domain::{Guid, Mutation, MutationError, Rules, UserFacts};
use redb::{Database, ReadableDatabase};
use tokio::sync::oneshot;

use self::memory::{KeyBytes, Memory, Resident};
use self::recovery::{Reopen, Views};
use self::tables::{DEADLINE_USERKEY, io, user_key_bytes};
use self::writer::{Message, Op, Shared, Writer};
use crate::{
    ApplyOutcome, BoxFuture, DirectoryChange, DirectoryUser, KnownFacts, OutboxBody, OutboxEntry,
    OutboxId, OutboxSettlement, Store, StoreError, StoreFigures, SubscriptionRecord, Tenant,
    TenantRecord, UserKey, codec,
};

pub use self::tables::FILE_NAME;
pub use self::wal::LOG_FILE_NAME;

/// Counters of the writer thread, for tests and metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct StoreStats {
    /// Batches made durable (each one log record and one fsync).
    pub commits: u64,
    /// Writes those batches carried; `writes / commits` is the mean batch.
    pub writes: u64,
    /// The most writes one batch carried.
    pub largest_batch: u64,
}

/// Tunables of the embedded store.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EmbeddedConfig {
    /// redb's page cache, in bytes. Reads are served from memory, so the
    /// cache only speeds up commits (which read the B-tree pages they
    /// change) and `due()`; pages it misses come from the OS page cache.
    /// redb's own default (1 GiB) would keep most of the file resident after
    /// start-up, which reads every page once.
    pub cache_bytes: usize,
    /// The most bytes one user's encoded record may take; a mutation that
    /// would make it larger is refused ([`MutationError::RecordTooLarge`]).
    /// A backstop: the domain bounds each part (sessions, status message).
    pub max_record_bytes: usize,
}

impl Default for EmbeddedConfig {
    fn default() -> Self {
        EmbeddedConfig {
            cache_bytes: 16 * 1024 * 1024,
            max_record_bytes: 64 * 1024,
        }
    }
}

/// The acknowledgement a caller awaits once its write is queued.
type Pending = oneshot::Receiver<Result<(), StoreError>>;

/// The embedded store. Open it with [`EmbeddedStore::open`].
pub struct EmbeddedStore {
    /// Every user's record and directory entry, encoded; what reads use.
    /// The parts of memory behind an `Arc` are shared with the writer
    /// thread, which puts them back after a failed commit.
    memory: Arc<Memory>,
    /// The directory's tenants: few, read by `directory()` only.
    tenants: Arc<RwLock<BTreeMap<Guid, Tenant>>>,
    /// Serialises directory loads, so that the counts each one reports and
    /// the order its rows reach the writer agree with memory.
    directory_writes: Mutex<()>,
    /// The manual clock's last recorded reading; the lock also orders the
    /// readings sent to the writer.
    manual_clock: Arc<Mutex<Option<Timestamp>>>,
    /// Subscriptions and the index from user to subscriptions.
    subscriptions: Arc<RwLock<notify::Subscriptions>>,
    /// The outbox of notification work.
    outbox: Arc<Mutex<notify::Outbox>>,
    /// The presence rules that `apply` and `next_change` need.
    rules: Rules,
    /// The bound on one user's encoded record.
    max_record_bytes: usize,
    /// The writer's queue; `None` only while the store is being dropped.
    queue: Option<Sender<Message>>,
    /// Open/closed/failed state, counters and the file's handle (for
    /// `due()`'s read transactions), shared with the writer.
    shared: Arc<Shared>,
    /// The writer thread, joined by `close()` or on drop.
    writer: Mutex<Option<JoinHandle<()>>>,
    /// Users in the directory: counted at start-up, then kept by directory
    /// loads and removals (under `directory_writes`), for [`Store::figures`].
    directory_users: AtomicU64,
}

/// The result of the synchronous part of a write.
enum Step<T> {
    /// Nothing to wait for.
    Done(T),
    /// The answer, once the queued write is durable.
    Wait(T, Pending),
}

impl EmbeddedStore {
    /// Opens (creating it if needed) the store in `dir`: the directory, and
    /// the files [`FILE_NAME`] and [`LOG_FILE_NAME`] inside it, with the
    /// default [`EmbeddedConfig`].
    ///
    /// This blocks: it opens the file (redb repairs it after a crash),
    /// replays the log into it, reads every record into memory and starts
    /// the writer thread. Calling it from
    /// inside a tokio runtime is fine at start-up (nothing here needs the
    /// runtime); elsewhere, call it through `spawn_blocking`.
    pub fn open(dir: &Path, rules: Rules) -> Result<Arc<EmbeddedStore>, StoreError> {
        Self::open_with(dir, rules, EmbeddedConfig::default())
    }

    /// [`EmbeddedStore::open`] with an explicit configuration.
    pub fn open_with(
        dir: &Path,
        rules: Rules,
        config: EmbeddedConfig,
    ) -> Result<Arc<EmbeddedStore>, StoreError> {
        std::fs::create_dir_all(dir).map_err(io)?;
        let reopen = Reopen {
            path: dir.join(FILE_NAME),
            cache_bytes: config.cache_bytes,
        };
        let mut db = reopen.open()?;
        tables::prepare(&db)?;
        // Writes acknowledged through the log but not yet in redb's last
        // durable transaction are replayed into it, durably, and the log
        // emptied: a checkpoint before anything else happens.
        let applied = tables::applied_seq(&db)?;
        let (mut log, tail) = wal::Log::open(&dir.join(LOG_FILE_NAME), applied)?;
        if let Some(last) = tail.last().map(|record| record.seq) {
            tracing::info!(
                records = tail.len(),
                "replaying the store's log into {FILE_NAME}"
            );
            writer::write_ops(
                &db,
                tail.iter().flat_map(|record| record.ops.iter()),
                last,
                true,
            )
            .map_err(io)?;
            log.clear()?;
        }
        drop(tail);
        // Space freed by deletes before the last stop is given back first.
        // A failure leaves the file as it was (compaction commits as it
        // goes); the handle is reopened in case the failure latched it.
        if let Err(error) = compaction::compact_if_worth_it(&mut db, &reopen.path) {
            tracing::warn!(%error, "compacting the store's file at start-up failed");
            drop(db);
            db = reopen.open()?;
        }
        let memory = Arc::new(Memory::new());
        let loaded = tables::load(&db, &memory)?;
        let directory_users = memory.directory_len() as u64;
        let shared = Arc::new(Shared::default());
        *shared.db.write().unwrap_or_else(PoisonError::into_inner) = Some(Arc::new(db));
        let views = Views {
            memory,
            tenants: Arc::new(RwLock::new(loaded.tenants)),
            manual_clock: Arc::new(Mutex::new(loaded.manual_clock)),
            subscriptions: Arc::new(RwLock::new(loaded.subscriptions)),
            outbox: Arc::new(Mutex::new(loaded.outbox)),
        };
        let (memory, tenants, manual_clock, subscriptions, outbox) = (
            Arc::clone(&views.memory),
            Arc::clone(&views.tenants),
            Arc::clone(&views.manual_clock),
            Arc::clone(&views.subscriptions),
            Arc::clone(&views.outbox),
        );
        let (queue, receiver) = mpsc::channel();
        let applier = applier::Applier::start(Arc::clone(&shared), log.last_seq()).map_err(io)?;
        let writer = writer::spawn(Writer {
            queue: receiver,
            shared: Arc::clone(&shared),
            views,
            reopen,
            log,
            pending: Vec::new(),
            applier,
        })
        .map_err(io)?;
        Ok(Arc::new(EmbeddedStore {
            memory,
            tenants,
            directory_writes: Mutex::new(()),
            manual_clock,
            subscriptions,
            outbox,
            rules,
            max_record_bytes: config.max_record_bytes,
            queue: Some(queue),
            shared,
            writer: Mutex::new(Some(writer)),
            directory_users: AtomicU64::new(directory_users),
        }))
    }

    /// True while the store takes writes: open, not closed, and not
    /// refusing writes after a failed commit.
    pub fn is_ready(&self) -> bool {
        self.shared.is_open()
    }

    /// The writer's counters.
    pub fn stats(&self) -> StoreStats {
        self.shared.stats()
    }

    /// How many users have stored facts (walks every shard: for tests and
    /// occasional metrics, not for a request path).
    pub fn user_count(&self) -> usize {
        self.memory.facts_len()
    }

    /// Queues `op`; the receiver answers once it is durable.
    fn send(&self, op: Op) -> Result<Pending, StoreError> {
        let (ack, pending) = oneshot::channel();
        let queue = self.queue.as_ref().ok_or(StoreError::Closed)?;
        queue
            .send(Message::Write(op, ack))
            .map_err(|_| self.shared.unavailable())?;
        Ok(pending)
    }

    /// Waits until a queued write is durable.
    async fn durable(&self, pending: Pending) -> Result<(), StoreError> {
        match pending.await {
            Ok(result) => result,
            // The writer ended without answering: closed, or failed.
            Err(_) => Err(self.shared.unavailable()),
        }
    }

    async fn finish<T>(&self, step: Step<T>) -> Result<T, StoreError> {
        match step {
            Step::Done(value) => Ok(value),
            Step::Wait(value, pending) => self.durable(pending).await.map(|()| value),
        }
    }

    fn facts_now(&self, key: UserKey) -> Result<Option<Arc<UserFacts>>, StoreError> {
        let key = user_key_bytes(key);
        let residents = memory::read(self.memory.shard(&key));
        match residents.get(&key).and_then(Resident::facts) {
            None => Ok(None),
            Some(record) => Ok(Some(Arc::new(codec::decode_user_record(record)?.0))),
        }
    }

    /// One user's directory entry and facts, under one shard lock.
    fn known_facts_now(&self, key: UserKey) -> Result<KnownFacts, StoreError> {
        let key = user_key_bytes(key);
        let residents = memory::read(self.memory.shard(&key));
        known_facts_of(residents.get(&key))
    }

    /// [`EmbeddedStore::known_facts_now`] of many users, taking each shard's
    /// lock once: the users are grouped by shard, and within a shard every
    /// lookup is made before any record is decoded, so the lookups' cache
    /// misses overlap instead of following one another.
    fn known_facts_many_now(
        &self,
        tenant: Guid,
        users: &[Guid],
    ) -> Result<Vec<KnownFacts>, StoreError> {
        let keys: Vec<(usize, KeyBytes)> = users
            .iter()
            .map(|&user| {
                let key = user_key_bytes(UserKey { tenant, user });
                (self.memory.shard_index(&key), key)
            })
            .collect();
        // The positions grouped by shard (a counting sort: no comparisons).
        let mut starts = vec![0usize; self.memory.shards().len() + 1];
        for (shard, _) in &keys {
            starts[shard + 1] += 1;
        }
        for shard in 1..starts.len() {
            starts[shard] += starts[shard - 1];
        }
        let mut next = starts.clone();
        let mut grouped = vec![0usize; keys.len()];
        for (position, (shard, _)) in keys.iter().enumerate() {
            grouped[next[*shard]] = position;
            next[*shard] += 1;
        }
        let mut out = vec![KnownFacts::NotInDirectory; users.len()];
        for (shard, span) in starts.windows(2).enumerate() {
            let group = &grouped[span[0]..span[1]];
            if group.is_empty() {
                continue;
            }
            let residents = memory::read(&self.memory.shards()[shard]);
            let found: Vec<Option<&Resident>> = group
                .iter()
                .map(|&position| residents.get(&keys[position].1))
                .collect();
            for (&position, resident) in group.iter().zip(&found) {
                out[position] = known_facts_of(*resident)?;
            }
        }
        Ok(out)
    }

    /// Applies `mutation` under the user's shard lock; `None` (nothing
    /// written) when `known_only` and the directory does not have the user,
    /// told by the same lookup.
    fn apply_in_memory(
        &self,
        key: UserKey,
        mutation: Mutation,
        now: Timestamp,
        known_only: bool,
    ) -> Result<Option<Step<ApplyOutcome>>, StoreError> {
        let _admitted = self.shared.admit()?;
        let user = key;
        let key = user_key_bytes(key);
        let mut residents = memory::write(self.memory.shard(&key));
        let current = residents.get(&key);
        if known_only && current.and_then(Resident::directory).is_none() {
            return Ok(None);
        }
        let (mut facts, old_deadline) = match current.and_then(Resident::facts) {
            Some(record) => codec::decode_user_record(record)?,
            None => (UserFacts::default(), None),
        };
        let applied = match presenced_domain::apply(&mut facts, mutation, now, &self.rules) {
            Ok(applied) => applied,
            Err(refused) => return Ok(Some(Step::Done(ApplyOutcome::Refused(refused)))),
        };
        if !applied.facts_changed {
            drop(residents);
            return Ok(Some(Step::Wait(
                ApplyOutcome::Applied(applied),
                self.send(Op::Barrier)?,
            )));
        }
        let new_deadline = presenced_domain::next_change(&facts, now, &self.rules);
        let record = codec::encode_user_record(&facts, new_deadline);
        if record.len() > self.max_record_bytes {
            return Ok(Some(Step::Done(ApplyOutcome::Refused(
                MutationError::RecordTooLarge {
                    size: record.len(),
                    limit: self.max_record_bytes,
                },
            ))));
        }
        let resident = Resident::new(&key, current.and_then(Resident::directory), Some(&record));
        // A visible change of a subscribed user is announced in the same commit.
        let subscribed = applied.visible_change
            && self
                .subscriptions
                .read()
                .unwrap_or_else(PoisonError::into_inner)
                .covers(&user);
        let mut outbox =
            subscribed.then(|| self.outbox.lock().unwrap_or_else(PoisonError::into_inner));
        let change = OutboxBody::Changed { key: user, at: now };
        let row = outbox
            .as_mut()
            .map(|outbox| outbox.reserve(Timestamp::MIN, &change));
        // Queue first: memory never holds a record the writer has not got.
        let pending = self.send(Op::UserRecord {
            key,
            record,
            old_deadline,
            new_deadline,
            outbox: row.clone().map(|(_, row, body)| (row, body)),
        })?;
        if let (Some(outbox), Some((id, _, _))) = (outbox.as_mut(), row) {
            outbox.commit(Timestamp::MIN, id, change);
        }
        residents.replace(resident);
        Ok(Some(Step::Wait(ApplyOutcome::Applied(applied), pending)))
    }

    fn advance_in_memory(
        &self,
        key: UserKey,
        handled: Timestamp,
        now: Timestamp,
    ) -> Result<Step<Option<Timestamp>>, StoreError> {
        let _admitted = self.shared.admit()?;
        let key = user_key_bytes(key);
        let mut residents = memory::write(self.memory.shard(&key));
        let current = residents.get(&key);
        let Some(record) = current.and_then(Resident::facts) else {
            return Ok(Step::Done(None));
        };
        let (facts, old_deadline) = codec::decode_user_record(record)?;
        if old_deadline != Some(handled) {
            // Facts changed since: their write already moved the row.
            return Ok(Step::Done(old_deadline));
        }
        let new_deadline = presenced_domain::next_change(&facts, now.max(handled), &self.rules);
        let record = codec::replace_user_record_deadline(record, new_deadline)?;
        let resident = Resident::new(&key, current.and_then(Resident::directory), Some(&record));
        let pending = self.send(Op::UserRecord {
            key,
            record,
            old_deadline,
            new_deadline,
            outbox: None,
        })?;
        residents.replace(resident);
        Ok(Step::Wait(new_deadline, pending))
    }

    fn set_manual_clock_in_memory(&self, now: Timestamp) -> Result<Step<()>, StoreError> {
        let _admitted = self.shared.admit()?;
        let mut reading = self
            .manual_clock
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let pending = self.send(Op::ManualClock(now))?;
        *reading = Some(now);
        Ok(Step::Wait((), pending))
    }

    fn database(&self) -> Result<Arc<Database>, StoreError> {
        self.shared
            .database()
            .ok_or_else(|| match self.shared.unavailable() {
                // Open, but the writer is reopening the file: try again shortly.
                StoreError::Closed if self.shared.is_open() => {
                    StoreError::Io("the store's file is being reopened".to_owned())
                }
                other => other,
            })
    }

    async fn due_now(
        &self,
        until: Timestamp,
        limit: usize,
    ) -> Result<Vec<(UserKey, Timestamp)>, StoreError> {
        self.shared.check()?;
        if limit == 0 {
            return Ok(Vec::new());
        }
        // redb lags the log: the writer first writes every acknowledged
        // write to it (answering at once while it refuses writes).
        let (done, synced) = oneshot::channel();
        let queue = self.queue.as_ref().ok_or(StoreError::Closed)?;
        queue
            .send(Message::Sync(done))
            .map_err(|_| self.shared.unavailable())?;
        if synced.await.is_err() {
            return Err(self.shared.unavailable());
        }
        let db = self.database()?;
        // A read transaction never waits for the writer, but it is blocking
        // I/O, so it runs off the async threads.
        let scan = tokio::task::spawn_blocking(move || -> Result<_, StoreError> {
            let txn = db.begin_read().map_err(io)?;
            let table = txn.open_table(DEADLINE_USERKEY).map_err(io)?;
            let mut due = Vec::new();
            let last = tables::last_deadline_key(until);
            for row in table.range::<&[u8; 48]>(..=&last).map_err(io)?.take(limit) {
                due.push(tables::deadline_from_key(row.map_err(io)?.0.value())?);
            }
            Ok(due)
        });
        scan.await.map_err(io)?
    }

    async fn close_now(&self) -> Result<(), StoreError> {
        let was_open = self.shared.close();
        let handle = self
            .writer
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        let Some(handle) = handle else {
            // Already closed (or being closed) by an earlier call.
            return if was_open {
                Ok(())
            } else {
                self.shared.check().or_else(closed_is_fine)
            };
        };
        let (done, finished) = oneshot::channel();
        if let Some(queue) = &self.queue
            && queue.send(Message::Shutdown(done)).is_ok()
        {
            // The writer commits everything queued before, then answers.
            let _ = finished.await;
        }
        // The thread has answered (or already ended): joining does not wait long.
        if handle.join().is_err() {
            tracing::error!("the store writer thread panicked");
        }
        self.shared
            .db
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        self.shared.check().or_else(closed_is_fine)
    }
}

/// After `close()`, the store reporting itself closed is success.
fn closed_is_fine(error: StoreError) -> Result<(), StoreError> {
    match error {
        StoreError::Closed => Ok(()),
        other => Err(other),
    }
}

impl Drop for EmbeddedStore {
    /// Dropping without `close()` still commits everything queued: the queue
    /// closes, the writer drains it and ends, and the file is released.
    fn drop(&mut self) {
        self.queue.take();
        let handle = self
            .writer
            .get_mut()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        if let Some(handle) = handle
            && handle.join().is_err()
        {
            tracing::error!("the store writer thread panicked");
        }
    }
}

/// What a read of presence needs from a user's resident, if any.
fn known_facts_of(resident: Option<&Resident>) -> Result<KnownFacts, StoreError> {
    let Some(resident) = resident.filter(|r| r.directory().is_some()) else {
        return Ok(KnownFacts::NotInDirectory);
    };
    let facts = match resident.facts() {
        None => None,
        Some(record) => Some(Arc::new(codec::decode_user_record(record)?.0)),
    };
    Ok(KnownFacts::Facts(facts))
}

impl Store for EmbeddedStore {
    fn facts(&self, key: UserKey) -> BoxFuture<'_, Result<Option<Arc<UserFacts>>, StoreError>> {
        Box::pin(async move {
            self.shared.check()?;
            self.facts_now(key)
        })
    }

    fn facts_many(
        &self,
        tenant: Guid,
        users: Vec<Guid>,
    ) -> BoxFuture<'_, Result<Vec<Option<Arc<UserFacts>>>, StoreError>> {
        Box::pin(async move {
            self.shared.check()?;
            users
                .into_iter()
                .map(|user| self.facts_now(UserKey { tenant, user }))
                .collect()
        })
    }

    fn known_facts(&self, key: UserKey) -> BoxFuture<'_, Result<KnownFacts, StoreError>> {
        Box::pin(async move {
            self.shared.check()?;
            self.known_facts_now(key)
        })
    }

    fn known_facts_many<'a>(
        &'a self,
        tenant: Guid,
        users: &'a [Guid],
    ) -> BoxFuture<'a, Result<Vec<KnownFacts>, StoreError>> {
        Box::pin(async move {
            self.shared.check()?;
            self.known_facts_many_now(tenant, users)
        })
    }

    fn has_directory(&self) -> BoxFuture<'_, Result<bool, StoreError>> {
        Box::pin(async move {
            self.shared.check()?;
            Ok(!self
                .tenants
                .read()
                .unwrap_or_else(PoisonError::into_inner)
                .is_empty())
        })
    }

    fn contains_user(&self, key: UserKey) -> BoxFuture<'_, Result<bool, StoreError>> {
        Box::pin(async move {
            self.shared.check()?;
            let key = user_key_bytes(key);
            let residents = memory::read(self.memory.shard(&key));
            Ok(residents
                .get(&key)
                .is_some_and(|resident| resident.directory().is_some()))
        })
    }

    fn apply(
        &self,
        key: UserKey,
        mutation: Mutation,
        now: Timestamp,
    ) -> BoxFuture<'_, Result<ApplyOutcome, StoreError>> {
        Box::pin(async move {
            let step = self
                .apply_in_memory(key, mutation, now, false)?
                .ok_or_else(|| StoreError::Corrupt("an unchecked write found no user".into()))?;
            self.finish(step).await
        })
    }

    fn apply_known(
        &self,
        key: UserKey,
        mutation: Mutation,
        now: Timestamp,
    ) -> BoxFuture<'_, Result<Option<ApplyOutcome>, StoreError>> {
        Box::pin(async move {
            match self.apply_in_memory(key, mutation, now, true)? {
                Some(step) => self.finish(step).await.map(Some),
                None => Ok(None),
            }
        })
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
        Box::pin(async move {
            let step = self.advance_in_memory(key, handled, now)?;
            self.finish(step).await
        })
    }

    fn advance_deadlines(
        &self,
        handled: Vec<(UserKey, Timestamp)>,
        now: Timestamp,
    ) -> BoxFuture<'_, Result<Vec<Option<Timestamp>>, StoreError>> {
        Box::pin(self.advance_many(handled, now))
    }

    fn load_directory(
        &self,
        records: Vec<TenantRecord>,
    ) -> BoxFuture<'_, Result<DirectoryChange, StoreError>> {
        Box::pin(async move {
            let step = self.load_directory_in_memory(records)?;
            self.finish(step).await
        })
    }

    fn remove_user(&self, key: UserKey) -> BoxFuture<'_, Result<bool, StoreError>> {
        Box::pin(async move {
            let step = self.remove_user_in_memory(key)?;
            self.finish(step).await
        })
    }

    fn user(&self, key: UserKey) -> BoxFuture<'_, Result<Option<DirectoryUser>, StoreError>> {
        Box::pin(async move {
            self.shared.check()?;
            let user = key.user;
            let key = user_key_bytes(key);
            let residents = memory::read(self.memory.shard(&key));
            residents
                .get(&key)
                .and_then(Resident::directory)
                .map(|record| codec::decode_directory_user(user, record))
                .transpose()
        })
    }

    fn directory(&self) -> BoxFuture<'_, Result<Vec<TenantRecord>, StoreError>> {
        Box::pin(async move {
            self.shared.check()?;
            self.directory_now()
        })
    }

    fn tenant_users(&self, tenant: Guid) -> BoxFuture<'_, Result<Vec<DirectoryUser>, StoreError>> {
        Box::pin(async move {
            self.shared.check()?;
            self.tenant_users_now(tenant)
        })
    }

    fn manual_clock(&self) -> BoxFuture<'_, Result<Option<Timestamp>, StoreError>> {
        Box::pin(async move {
            self.shared.check()?;
            Ok(*self
                .manual_clock
                .lock()
                .unwrap_or_else(PoisonError::into_inner))
        })
    }

    fn set_manual_clock(&self, now: Timestamp) -> BoxFuture<'_, Result<(), StoreError>> {
        Box::pin(async move {
            let step = self.set_manual_clock_in_memory(now)?;
            self.finish(step).await
        })
    }

    fn put_subscription(
        &self,
        record: SubscriptionRecord,
    ) -> BoxFuture<'_, Result<(), StoreError>> {
        Box::pin(async move {
            let step = self.put_subscription_in_memory(record)?;
            self.finish(step).await
        })
    }

    fn delete_subscription(&self, id: Guid) -> BoxFuture<'_, Result<bool, StoreError>> {
        Box::pin(async move {
            let step = self.delete_subscription_in_memory(id)?;
            self.finish(step).await
        })
    }

    fn subscription(
        &self,
        id: Guid,
    ) -> BoxFuture<'_, Result<Option<SubscriptionRecord>, StoreError>> {
        Box::pin(async move {
            self.shared.check()?;
            Ok(self.subscription_now(id))
        })
    }

    fn subscriptions(&self) -> BoxFuture<'_, Result<Vec<SubscriptionRecord>, StoreError>> {
        Box::pin(async move {
            self.shared.check()?;
            Ok(self.subscriptions_now())
        })
    }

    fn subscriptions_of(&self, key: UserKey) -> BoxFuture<'_, Result<Vec<Guid>, StoreError>> {
        Box::pin(async move {
            self.shared.check()?;
            Ok(self.subscriptions_of_now(key))
        })
    }

    fn settle_outbox(
        &self,
        settlement: OutboxSettlement,
    ) -> BoxFuture<'_, Result<Vec<OutboxId>, StoreError>> {
        Box::pin(async move {
            let step = self.settle_in_memory(settlement)?;
            self.finish(step).await
        })
    }

    fn claim_outbox(
        &self,
        until: Timestamp,
        limit: usize,
    ) -> BoxFuture<'_, Result<Vec<OutboxEntry>, StoreError>> {
        Box::pin(async move { self.claim_now(until, limit) })
    }

    fn outbox_next_due(&self) -> BoxFuture<'_, Result<Option<Timestamp>, StoreError>> {
        Box::pin(async move { self.outbox_next_due_now() })
    }

    fn close(&self) -> BoxFuture<'_, Result<(), StoreError>> {
        Box::pin(self.close_now())
    }

    fn is_ready(&self) -> bool {
        EmbeddedStore::is_ready(self)
    }

    fn figures(&self) -> StoreFigures {
        StoreFigures {
            backend: "embedded",
            users: Some(self.directory_users.load(Ordering::Relaxed)),
            outbox_entries: Some(self.outbox_len() as u64),
        }
    }
}
