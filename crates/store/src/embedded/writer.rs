//! The single writer thread: group commit through a write-ahead log.
//!
//! Callers enqueue a write and await its acknowledgement. The thread blocks
//! for the first pending write, takes every other one already queued (up to
//! [`MAX_BATCH`]), appends them all as one record to the log
//! ([`super::wal`]), and acknowledges them once the record is written and
//! `fdatasync`ed. No timer is involved: while one append runs, new writes
//! queue up and form the next batch, so the batch size follows the load by
//! itself. Writes leave the queue in the order they entered it.
//!
//! The redb file follows the log lazily, and off the append path: the
//! acknowledged writes wait in `pending` and are handed to the applier
//! thread ([`super::applier`]) every [`APPLY_EVERY`] writes and whenever
//! `due()` asks ([`Message::Sync`], answered once redb holds every write
//! acknowledged before it), so its scan of `deadline_userkey` sees every
//! acknowledged deadline. The applier writes them to redb with
//! `Durability::None`, recording the sequence of the last log record each
//! transaction holds (`log_applied_seq` in `meta`). Once the active log
//! segment reaches [`CHECKPOINT_BYTES`], the writer retires it and asks for
//! a durable transaction (`Durability::Immediate`, which also makes every
//! earlier one durable) up to its last record; the segment is deleted once
//! that is done: a checkpoint that never stops the appends (see
//! [`super::wal`]). When the store is idle and when it closes, the writer
//! lets the applier catch up, pauses it, commits durably itself and empties
//! the log. After a crash, redb holds its last durable transaction, and
//! start-up replays the log's records after its `log_applied_seq`.
//!
//! If a commit fails (a full disk, an I/O error), the store recovers by
//! itself instead of stopping (see [`super::recovery`]): it refuses new
//! writes, fails the batch and every write queued behind it, reopens the
//! file (redb refuses every call on a handle after an I/O error), puts the
//! memory of everything those writes touched back to what the file holds,
//! and only then answers them with [`StoreError::Io`]. From then on reads
//! are served again and writes are refused until a probe finds that the
//! disk takes writes again; then the store is open as before. No restart is
//! needed, no acknowledged write is lost, and no write that failed is ever
//! served.
//!
//! A thread, not a task: redb's API blocks, and a commit is an fsync.
//!
//! This module knows the tables and the order of writes, not the meaning of
//! the bytes it writes.

use std::sync::atomic::{AtomicU8, AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::sync::{Arc, Mutex, PoisonError, RwLock, RwLockReadGuard};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use jiff::Timestamp;
use redb::{Database, Durability, Table, TableDefinition, WriteTransaction};
use tokio::sync::oneshot;

use super::StoreStats;
use super::applier::Applier;
use super::compaction;
use super::recovery::{self, Reopen, Views};
use super::tables::{
    self, DEADLINE_USERKEY, META, META_APPLIED_SEQ, META_MANUAL_CLOCK, OUTBOX,
    SUBSCRIPTIONID_SUBSCRIPTION, TENANTID_TENANT, TENANTID_USERID_USER, USERKEY_FACTS,
    deadline_key,
};
use super::wal::{AppendError, Log};
use crate::{StoreError, codec};

/// The most writes one log record takes; a bound on commit latency.
pub(super) const MAX_BATCH: usize = 4096;

/// Acknowledged writes are handed to the applier once this many wait.
pub(super) const APPLY_EVERY: usize = 8192;

/// The active log segment's length at which it is retired and a checkpoint
/// asked for: a bound on the log's size and on how much start-up replays
/// after a crash (small in unit tests, so that they see it happen).
const CHECKPOINT_BYTES: u64 = if cfg!(test) {
    256 * 1024
} else {
    8 * 1024 * 1024
};

/// The active segment's length at which appends wait for the checkpoint
/// of the retired one (which may itself have grown this long): the log
/// never holds more than twice this, plus a batch per segment.
const LOG_MOST_BYTES: u64 = 4 * CHECKPOINT_BYTES;

/// Where the outcome of one write goes.
pub(super) type Ack = oneshot::Sender<Result<(), StoreError>>;

/// One write, as the tables see it.
#[derive(Debug)]
pub(super) enum Op {
    /// A user's new record, and the move of their deadline row.
    UserRecord {
        key: [u8; 32],
        record: Vec<u8>,
        /// The row to remove from `deadline_userkey`, if it differs from the new one.
        old_deadline: Option<Timestamp>,
        new_deadline: Option<Timestamp>,
        /// An outbox row announcing the change, in the same commit.
        outbox: Option<([u8; 24], Vec<u8>)>,
    },
    /// A subscription to insert or replace (`Some`) or remove (`None`).
    Subscription {
        id: [u8; 16],
        record: Option<Vec<u8>>,
    },
    /// Outbox rows to remove, then rows to insert.
    Outbox {
        remove: Vec<[u8; 24]>,
        insert: Vec<([u8; 24], Vec<u8>)>,
    },
    /// Tenants and directory users to insert or replace.
    Directory {
        tenants: Vec<([u8; 16], Vec<u8>)>,
        users: Vec<([u8; 32], Vec<u8>)>,
    },
    /// A directory user to remove (their presence record stays).
    RemoveUser([u8; 32]),
    ManualClock(Timestamp),
    /// Writes nothing; acknowledged once everything queued before it is durable.
    Barrier,
    /// Several writes (never groups themselves) under one acknowledgement.
    Group(Vec<Op>),
}

impl Op {
    /// The writes this op stands for: a group's members, or the op itself.
    fn parts(&self) -> &[Op] {
        match self {
            Op::Group(ops) => ops,
            op => std::slice::from_ref(op),
        }
    }

    /// The users whose residents (directory entry or facts) this op writes.
    pub(super) fn user_keys(&self) -> Vec<[u8; 32]> {
        let mut keys = Vec::new();
        for op in self.parts() {
            match op {
                Op::UserRecord { key, .. } | Op::RemoveUser(key) => keys.push(*key),
                Op::Directory { users, .. } => keys.extend(users.iter().map(|(key, _)| *key)),
                _ => {}
            }
        }
        keys
    }
}

pub(super) enum Message {
    Write(Op, Ack),
    /// Write every acknowledged write to redb (not durably: the log holds
    /// them), then answer; `due()` asks before it scans.
    Sync(oneshot::Sender<()>),
    /// Commit everything queued before, close the file, then answer.
    Shutdown(oneshot::Sender<()>),
}

/// Reads and writes are served.
const OPEN: u8 = 0;
/// `close()` was called.
const CLOSED: u8 = 1;
/// The writer thread panicked: nothing is served until a restart.
const FAILED: u8 = 2;
/// A commit failed; memory is being put back to what the file holds:
/// nothing is served, for the few milliseconds this takes.
const RESTORING: u8 = 3;
/// Memory agrees with the file again: reads are served, writes are refused
/// until the disk takes writes again.
const DEGRADED: u8 = 4;

/// What the store and its writer thread both see.
#[derive(Default)]
pub(super) struct Shared {
    /// `OPEN`, `CLOSED`, `FAILED`, `RESTORING` or `DEGRADED`; atomic so that
    /// every call can check it without a lock.
    state: AtomicU8,
    /// Every write holds this shared from its admission (the state is
    /// `OPEN`) until its op is queued and memory updated; the writer takes it
    /// exclusively to leave `OPEN`, so once it has, every admitted write's op
    /// is in the queue.
    gate: RwLock<()>,
    /// Why the last commit failed, for the errors of calls refused since.
    failure: Mutex<String>,
    /// The file; `None` while the writer reopens it, and after `close()`.
    pub db: RwLock<Option<Arc<Database>>>,
    /// Batches made durable by the writer (one log record and fsync each).
    commits: AtomicU64,
    /// Writes made durable by those batches (barriers not counted).
    writes: AtomicU64,
    /// The most writes one batch carried.
    largest_batch: AtomicU64,
    /// Test hook: the next commit fails as if the disk had.
    #[cfg(test)]
    pub fail_next_commit: std::sync::atomic::AtomicBool,
    /// Test hook: a commit waits while a test holds this lock.
    #[cfg(test)]
    pub commit_gate: std::sync::Mutex<()>,
    /// Test hook: the applier's next transaction waits while a test holds this lock.
    #[cfg(test)]
    pub apply_gate: std::sync::Mutex<()>,
}

impl Shared {
    /// `Ok` while reads are served (open, or refusing writes only);
    /// otherwise the error a read returns.
    pub(super) fn check(&self) -> Result<(), StoreError> {
        match self.state.load(Ordering::Acquire) {
            OPEN | DEGRADED => Ok(()),
            _ => Err(self.unavailable()),
        }
    }

    /// Admits a write: `Ok` while the store is open. Hold the guard until
    /// the write's op is queued and memory updated.
    pub(super) fn admit(&self) -> Result<RwLockReadGuard<'_, ()>, StoreError> {
        let gate = self.gate.read().unwrap_or_else(PoisonError::into_inner);
        if self.state.load(Ordering::Acquire) == OPEN {
            Ok(gate)
        } else {
            Err(self.unavailable())
        }
    }

    /// The error for a call that the store's state refuses.
    pub(super) fn unavailable(&self) -> StoreError {
        let why = || {
            self.failure
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .clone()
        };
        match self.state.load(Ordering::Acquire) {
            FAILED => StoreError::Io(format!(
                "the store's writer stopped, so the store accepts no more calls: {}",
                why()
            )),
            RESTORING | DEGRADED => StoreError::Io(format!(
                "the store cannot write to its file and refuses writes until it can \
                 (it retries by itself): {}",
                why()
            )),
            _ => StoreError::Closed,
        }
    }

    /// Ready for `/readyz`: open, taking writes.
    pub(super) fn is_open(&self) -> bool {
        self.state.load(Ordering::Acquire) == OPEN
    }

    /// Marks the store closed; false if it was closed already or failed.
    pub(super) fn close(&self) -> bool {
        self.state
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |state| {
                matches!(state, OPEN | RESTORING | DEGRADED).then_some(CLOSED)
            })
            .is_ok()
    }

    fn fail(&self, why: &str) {
        *self.failure.lock().unwrap_or_else(PoisonError::into_inner) = why.to_owned();
        self.state.store(FAILED, Ordering::Release);
    }

    /// Leaves `OPEN` for `RESTORING` after a failed commit; false if the
    /// store was not open (closing). Returns once no write is between its
    /// admission and its queueing.
    fn begin_restoring(&self, why: &str) -> bool {
        *self.failure.lock().unwrap_or_else(PoisonError::into_inner) = why.to_owned();
        let _gate = self.gate.write().unwrap_or_else(PoisonError::into_inner);
        self.state
            .compare_exchange(OPEN, RESTORING, Ordering::AcqRel, Ordering::Acquire)
            .is_ok()
    }

    /// Moves `from` → `to` unless the store was closed meanwhile.
    fn advance(&self, from: u8, to: u8) -> bool {
        self.state
            .compare_exchange(from, to, Ordering::AcqRel, Ordering::Acquire)
            .is_ok()
    }

    /// The file's current handle, if it is open.
    pub(super) fn database(&self) -> Option<Arc<Database>> {
        self.db
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    pub(super) fn stats(&self) -> StoreStats {
        StoreStats {
            commits: self.commits.load(Ordering::Relaxed),
            writes: self.writes.load(Ordering::Relaxed),
            largest_batch: self.largest_batch.load(Ordering::Relaxed),
        }
    }
}

/// What the writer thread owns: its queue, the shared state, the memory it
/// puts back after a failed commit, and how to reopen the file.
pub(super) struct Writer {
    pub queue: Receiver<Message>,
    pub shared: Arc<Shared>,
    pub views: Views,
    pub reopen: Reopen,
    /// The log, open for appending.
    pub log: Log,
    /// Acknowledged writes (in the log) not yet handed to the applier, in
    /// order: the ops of the log's last records.
    pub pending: Vec<Op>,
    /// The thread that writes acknowledged writes into redb.
    pub applier: Applier,
}

/// Starts the writer thread.
pub(super) fn spawn(writer: Writer) -> std::io::Result<JoinHandle<()>> {
    thread::Builder::new()
        .name("presenced-store-writer".to_owned())
        .spawn(move || run(writer))
}

/// Marks the store failed if the writer thread unwinds.
struct FailOnPanic<'a>(&'a Shared);

impl Drop for FailOnPanic<'_> {
    fn drop(&mut self) {
        if thread::panicking() {
            self.0.fail("the writer thread panicked");
        }
    }
}

fn run(mut writer: Writer) {
    let shared = Arc::clone(&writer.shared);
    let _fail_on_panic = FailOnPanic(&shared);
    let metrics = CommitMetrics::register();
    let mut batch = Vec::new();
    let mut idle = Idle::new();
    // Ends when every sender is gone (the store was dropped): by then
    // everything queued has been taken and committed.
    loop {
        let first = match writer.queue.recv_timeout(IDLE_AFTER) {
            Ok(first) => first,
            Err(RecvTimeoutError::Timeout) => {
                if let Err(why) = idle.quiet(&mut writer) {
                    match recover(&mut writer, Vec::new(), why, None) {
                        Recovered::Open => {}
                        Recovered::Shutdown(done) => return finish(&mut writer, done),
                        Recovered::Dropped => return,
                    }
                }
                continue;
            }
            Err(RecvTimeoutError::Disconnected) => {
                checkpoint_at_exit(&mut writer);
                return;
            }
        };
        let mut shutdown = None;
        let mut syncs = Vec::new();
        let mut next = Some(first);
        while let Some(message) = next.take() {
            match message {
                Message::Write(op, ack) => batch.push((op, ack)),
                Message::Sync(done) => syncs.push(done),
                Message::Shutdown(done) => {
                    shutdown = Some(done);
                    break;
                }
            }
            if batch.len() < MAX_BATCH {
                next = writer.queue.try_recv().ok();
            }
        }
        idle.note(&batch);
        let mut outcome = write_batch(&mut writer, &mut batch, &metrics);
        if outcome.is_ok() {
            outcome = hand_over(&mut writer, !syncs.is_empty()).map_err(Failure::Failed);
        }
        match outcome {
            Ok(()) => {}
            Err(Failure::Stuck(why)) => {
                tracing::error!(error = %why, "the store's log cannot be trusted; stopping the store");
                shared.fail(&why);
                let error = format!("the write was not stored: {why}");
                for (_, ack) in batch.drain(..) {
                    let _ = ack.send(Err(StoreError::Io(error.clone())));
                }
                return;
            }
            Err(Failure::Failed(why)) => {
                let failed = std::mem::take(&mut batch);
                match recover(&mut writer, failed, why, shutdown) {
                    Recovered::Open => shutdown = None,
                    Recovered::Shutdown(done) => shutdown = Some(done),
                    Recovered::Dropped => return,
                }
            }
        }
        // Answered once redb holds every write acknowledged so far (at once
        // after a failure: redb then holds what it holds).
        for done in syncs {
            writer.applier.sync(writer.log.last_seq(), done);
        }
        if let Some(done) = shutdown {
            return finish(&mut writer, done);
        }
    }
}

/// After a batch: reclaims the retired log segment once redb holds it
/// durably, retires the active one once it is [`CHECKPOINT_BYTES`] long,
/// and hands the pending writes to the applier when there are
/// [`APPLY_EVERY`] of them, when a sync asks, or with the retired segment
/// (asking for a durable commit: a checkpoint). An error is the applier's
/// failure.
fn hand_over(writer: &mut Writer, sync: bool) -> Result<(), String> {
    if let Some(why) = writer.applier.failed() {
        return Err(why);
    }
    if let Some(retired) = writer.log.retired_seq()
        && writer.log.len() >= LOG_MOST_BYTES
    {
        // The applier lags by a whole log: appends wait for its checkpoint
        // (back-pressure), so the log's size stays bounded.
        writer.applier.wait_durable(retired)?;
    }
    writer.log.drop_retired(writer.applier.durable());
    let mut checkpoint = false;
    if writer.log.len() >= CHECKPOINT_BYTES && writer.log.retired_seq().is_none() {
        match writer.log.roll() {
            Ok(rolled) => checkpoint = rolled,
            Err(error) => {
                // Appends go on in the active segment; the next batch tries again.
                tracing::warn!(%error, "retiring the store's log segment failed");
            }
        }
    }
    if checkpoint || sync || writer.pending.len() >= APPLY_EVERY {
        let last = writer.log.last_seq();
        writer
            .applier
            .hand_off(&mut writer.pending, last, checkpoint)?;
    }
    Ok(())
}

/// Puts the writes a paused applier gave back before the pending ones.
fn give_back(writer: &mut Writer, mut back: Vec<Op>) {
    if !back.is_empty() {
        back.append(&mut writer.pending);
        writer.pending = back;
    }
}

/// Checkpoints, lets go of the file, then answers `close()`.
fn finish(writer: &mut Writer, done: oneshot::Sender<()>) {
    checkpoint_at_exit(writer);
    // Let go of the file before answering: once close() drops the store's
    // own handle, the file is released and may be reopened.
    writer
        .shared
        .db
        .write()
        .unwrap_or_else(PoisonError::into_inner)
        .take();
    let _ = done.send(());
}

/// A last checkpoint, so that the next start has no log to replay. If it
/// fails, the log keeps every acknowledged write and the next start
/// replays it.
fn checkpoint_at_exit(writer: &mut Writer) {
    match writer.applier.drain_and_pause() {
        Ok(back) => give_back(writer, back),
        Err(error) => {
            tracing::warn!(%error, "the store's last checkpoint failed; the next start replays its log");
            return;
        }
    }
    if let Err(error) = apply_pending(writer, true) {
        tracing::warn!(%error, "the store's last checkpoint failed; the next start replays its log");
    }
}

/// How long without a write before the writer looks at compacting the file
/// (short in unit tests, so that they can see it happen).
const IDLE_AFTER: Duration = if cfg!(test) {
    Duration::from_millis(200)
} else {
    Duration::from_secs(30)
};
/// The least time between two looks (each one walks redb's trees).
const COMPACT_CHECK_EVERY: Duration = if cfg!(test) {
    Duration::ZERO
} else {
    Duration::from_secs(600)
};

/// When the writer last looked at compacting, and whether rows were
/// removed since (without removals the file has not become sparser).
struct Idle {
    last_check: Instant,
    removed: bool,
}

impl Idle {
    fn new() -> Idle {
        Idle {
            last_check: Instant::now(),
            removed: false,
        }
    }

    /// Notes whether a batch removes rows.
    fn note(&mut self, batch: &[(Op, Ack)]) {
        self.removed |= batch.iter().flat_map(|(op, _)| op.parts()).any(|op| {
            matches!(
                op,
                Op::Subscription { record: None, .. } | Op::RemoveUser(_)
            ) || matches!(op, Op::Outbox { remove, .. } if !remove.is_empty())
        });
    }

    /// The queue has been empty for [`IDLE_AFTER`]: checkpoint (so the log
    /// is empty while nothing happens), and compact if rows were removed
    /// since the last look, at most every [`COMPACT_CHECK_EVERY`]. An error
    /// is a failed checkpoint.
    fn quiet(&mut self, writer: &mut Writer) -> Result<(), String> {
        if !writer.shared.is_open() {
            return Ok(());
        }
        // The applier catches up and stops while this thread uses the file.
        let back = writer.applier.drain_and_pause()?;
        give_back(writer, back);
        apply_pending(writer, true)?;
        if self.removed && self.last_check.elapsed() >= COMPACT_CHECK_EVERY {
            self.last_check = Instant::now();
            self.removed = false;
            if let Err(error) = compaction::compact_in_place(&writer.shared, &writer.reopen.path) {
                tracing::warn!(%error, "compacting the store's file failed");
            }
        }
        writer.applier.resume(writer.log.last_seq());
        Ok(())
    }
}

/// The writer's series, registered once when the thread starts (after the
/// process installed its recorder): recording is then an atomic update.
struct CommitMetrics {
    /// `presenced_store_commit_seconds`: a batch's append to the log, fsync included.
    seconds: metrics::Histogram,
    /// `presenced_store_commit_writes`: the writes one batch carried.
    writes: metrics::Histogram,
    /// `presenced_store_commit_failures_total`.
    failures: metrics::Counter,
}

impl CommitMetrics {
    fn register() -> CommitMetrics {
        CommitMetrics {
            seconds: metrics::histogram!("presenced_store_commit_seconds"),
            writes: metrics::histogram!("presenced_store_commit_writes"),
            failures: metrics::counter!("presenced_store_commit_failures_total"),
        }
    }
}

/// Why a batch, or the writing of pending writes to redb, failed.
enum Failure {
    /// Nothing of it is durable; the store recovers by itself.
    Failed(String),
    /// The log may hold a record that was not acknowledged: the store stops.
    Stuck(String),
}

/// Appends one batch to the log and acknowledges it; its writes then wait
/// in `pending` for redb. If the append fails, nothing is acknowledged and
/// the batch is left for [`recover`].
fn write_batch(
    writer: &mut Writer,
    batch: &mut Vec<(Op, Ack)>,
    metrics: &CommitMetrics,
) -> Result<(), Failure> {
    let shared = &writer.shared;
    let writes = batch
        .iter()
        .flat_map(|(op, _)| op.parts())
        .filter(|op| !matches!(op, Op::Barrier))
        .count() as u64;
    if writes > 0 {
        let started = Instant::now();
        #[cfg(test)]
        drop(shared.commit_gate.lock());
        #[cfg(test)]
        if shared.fail_next_commit.swap(false, Ordering::SeqCst) {
            metrics.failures.increment(1);
            return Err(Failure::Failed("injected commit failure".to_owned()));
        }
        let appended = writer
            .log
            .append(batch.iter().flat_map(|(op, _)| op.parts()));
        match appended {
            Ok(_) => {}
            Err(AppendError::Failed(why)) => {
                metrics.failures.increment(1);
                return Err(Failure::Failed(why));
            }
            Err(AppendError::Stuck(why)) => {
                metrics.failures.increment(1);
                return Err(Failure::Stuck(why));
            }
        }
        metrics.seconds.record(started.elapsed().as_secs_f64());
        metrics.writes.record(writes as f64);
        shared.commits.fetch_add(1, Ordering::Relaxed);
        shared.writes.fetch_add(writes, Ordering::Relaxed);
        shared.largest_batch.fetch_max(writes, Ordering::Relaxed);
    }
    for (op, ack) in batch.drain(..) {
        // The caller may have stopped waiting; the write stands.
        let _ = ack.send(Ok(()));
        match op {
            Op::Barrier => {}
            Op::Group(ops) => writer
                .pending
                .extend(ops.into_iter().filter(|op| !matches!(op, Op::Barrier))),
            op => writer.pending.push(op),
        }
    }
    Ok(())
}

/// Writes the pending writes to redb in one transaction on this thread (the
/// applier paused and caught up), recording the log's last sequence with
/// them; `durable` makes it a checkpoint: the commit is fsynced and the log
/// emptied. An error leaves `pending` as it was (and the redb handle, most
/// likely, refusing every call).
fn apply_pending(writer: &mut Writer, durable: bool) -> Result<(), String> {
    if writer.pending.is_empty() && (!durable || writer.log.is_empty()) {
        return Ok(());
    }
    let db = writer
        .shared
        .database()
        .ok_or_else(|| "the store's file is not open".to_owned())?;
    write_ops(&db, writer.pending.iter(), writer.log.last_seq(), durable)
        .map_err(|e| e.to_string())?;
    writer.pending.clear();
    if durable && let Err(error) = writer.log.clear() {
        // The records stay in the log; redb holds them, so they are
        // skipped when replayed. The next checkpoint tries again.
        tracing::warn!(%error, "emptying the store's log after a checkpoint failed");
    }
    Ok(())
}

/// Reads the pending writes back from the log: the records after what the
/// (reopened) redb file holds.
fn reload_pending(writer: &mut Writer, db: &Database) -> Result<(), StoreError> {
    let applied = tables::applied_seq(db)?;
    writer.pending = writer
        .log
        .records_after(applied)?
        .into_iter()
        .flat_map(|record| record.ops)
        .collect();
    Ok(())
}

/// Reopens the file (`reopen`; otherwise only if no handle is open), reads
/// the pending writes back from the log, then puts back the residents of
/// `keys` and the wholesale parts of memory from the file with the log on
/// top.
fn restore_from_file(
    writer: &mut Writer,
    keys: &[[u8; 32]],
    reopen: bool,
) -> Result<(), StoreError> {
    let db = if reopen {
        recovery::reopen(&writer.shared, &writer.reopen)?
    } else {
        recovery::current_or_reopen(&writer.shared, &writer.reopen)?
    };
    reload_pending(writer, &db)?;
    recovery::restore(&db, &writer.views, keys, &writer.pending)
}

/// How [`recover`] ended.
enum Recovered {
    /// The disk takes writes again; the store is open.
    Open,
    /// `close()` asked the writer to stop meanwhile.
    Shutdown(oneshot::Sender<()>),
    /// The store was dropped.
    Dropped,
}

/// The shortest and longest waits between two attempts to reopen the file
/// or to write to it again.
const RETRY_FIRST: Duration = Duration::from_millis(100);
const RETRY_MOST: Duration = Duration::from_secs(2);

/// After a failed commit: refuse writes, fail `failed` and every write
/// queued behind it, put memory back to what the file holds, answer them,
/// then serve reads and probe the disk until it takes writes again.
fn recover(
    writer: &mut Writer,
    mut failed: Vec<(Op, Ack)>,
    why: String,
    mut shutdown: Option<oneshot::Sender<()>>,
) -> Recovered {
    let shared = Arc::clone(&writer.shared);
    tracing::error!(
        error = %why,
        writes = failed.len(),
        "store commit failed; refusing writes until the disk takes them again"
    );
    let shared = &*shared;
    // The applier lets go of the file and gives back the writes it had not
    // applied (restoring reads them all back from the log in any case).
    let back = writer.applier.pause();
    give_back(writer, back);
    let restoring = shared.begin_restoring(&why);
    // Every write admitted before is queued now; each was applied to memory
    // on top of state that did not reach the file, so none may commit.
    let mut dropped = false;
    loop {
        match writer.queue.try_recv() {
            Ok(Message::Write(op, ack)) => failed.push((op, ack)),
            Ok(Message::Sync(done)) => {
                let _ = done.send(());
            }
            Ok(Message::Shutdown(done)) => shutdown = Some(done),
            Err(std::sync::mpsc::TryRecvError::Empty) => break,
            Err(std::sync::mpsc::TryRecvError::Disconnected) => {
                dropped = true;
                break;
            }
        }
    }
    if restoring && !dropped {
        // redb refuses every call on a handle after an I/O error: reopen it
        // (the file holds its last durable transaction), read the log's
        // records after it back as pending, then read back what the failed
        // writes touched, from the file with the log on top. All are
        // retried until they succeed, unless the store is closed meanwhile.
        let mut wait = RETRY_FIRST;
        loop {
            let keys: Vec<_> = failed.iter().flat_map(|(op, _)| op.user_keys()).collect();
            let result = restore_from_file(writer, &keys, true);
            match result {
                Ok(()) => break,
                Err(error) => {
                    tracing::warn!(%error, "cannot reopen the store's file yet; retrying");
                    if shutdown.is_some() {
                        break;
                    }
                    match writer.queue.recv_timeout(wait) {
                        Ok(Message::Write(op, ack)) => failed.push((op, ack)),
                        Ok(Message::Sync(done)) => {
                            let _ = done.send(());
                        }
                        Ok(Message::Shutdown(done)) => shutdown = Some(done),
                        Err(RecvTimeoutError::Timeout) => {}
                        Err(RecvTimeoutError::Disconnected) => {
                            dropped = true;
                            break;
                        }
                    }
                    wait = (wait * 2).min(RETRY_MOST);
                }
            }
        }
    }
    // Reads are served again before the failures are answered, so a client
    // told its write failed reads what the file holds.
    let degraded =
        restoring && !dropped && shutdown.is_none() && shared.advance(RESTORING, DEGRADED);
    let error = format!("the write was not stored: {why}");
    for (_, ack) in failed.drain(..) {
        let _ = ack.send(Err(StoreError::Io(error.clone())));
    }
    if dropped {
        return Recovered::Dropped;
    }
    if let Some(done) = shutdown {
        return Recovered::Shutdown(done);
    }
    if !degraded {
        // Closed meanwhile: the shutdown message is on its way.
        return Recovered::Open;
    }
    tracing::warn!("store memory restored from its file; reads are served, writes refused");
    let mut wait = RETRY_FIRST;
    loop {
        match writer.queue.recv_timeout(wait) {
            Ok(Message::Shutdown(done)) => return Recovered::Shutdown(done),
            Ok(Message::Sync(done)) => {
                // redb may lag the log while the disk is full: due() sees
                // what it holds.
                let _ = done.send(());
            }
            Ok(Message::Write(op, ack)) => {
                // Not admitted while degraded; answered as refused all the same.
                let keys = op.user_keys();
                if let Err(error) = restore_from_file(writer, &keys, false) {
                    tracing::error!(%error, "cannot restore a refused write's users");
                }
                let _ = ack.send(Err(shared.unavailable()));
            }
            Err(RecvTimeoutError::Disconnected) => return Recovered::Dropped,
            Err(RecvTimeoutError::Timeout) => match probe(writer) {
                Ok(()) => {
                    // The probe's checkpoint put every acknowledged write in the file.
                    writer.applier.resume(writer.log.last_seq());
                    if shared.advance(DEGRADED, OPEN) {
                        tracing::warn!("the store's file takes writes again; the store is open");
                    }
                    return Recovered::Open;
                }
                Err(error) => {
                    tracing::debug!(%error, "the store's file does not take writes yet");
                    wait = (wait * 2).min(RETRY_MOST);
                }
            },
        }
    }
}

/// Whether the disk takes writes again (see [`recovery::probe`]), and the
/// pending writes reach redb in a checkpoint.
fn probe(writer: &mut Writer) -> Result<(), StoreError> {
    recovery::probe(&writer.shared, &writer.reopen)?;
    let db = recovery::current_or_reopen(&writer.shared, &writer.reopen)?;
    reload_pending(writer, &db)?;
    drop(db);
    apply_pending(writer, true).map_err(StoreError::Io)
}

/// Writes `ops` to redb in one transaction and records `applied_seq` (the
/// last log record they come from); `durable` commits with
/// `Durability::Immediate`, otherwise `Durability::None`.
pub(super) fn write_ops<'a>(
    db: &Database,
    ops: impl Iterator<Item = &'a Op>,
    applied_seq: u64,
    durable: bool,
) -> Result<(), redb::Error> {
    let mut txn = db.begin_write()?;
    txn.set_durability(if durable {
        Durability::Immediate
    } else {
        Durability::None
    })?;
    {
        // Tables are opened when the batch first needs them: a batch of
        // presence writes touches two of the seven, and every table opened
        // costs a lookup and a root update at commit.
        let mut records = Lazy::new(USERKEY_FACTS);
        let mut deadlines = Lazy::new(DEADLINE_USERKEY);
        let mut tenants = Lazy::new(TENANTID_TENANT);
        let mut users = Lazy::new(TENANTID_USERID_USER);
        let mut meta = Lazy::new(META);
        let mut subscriptions = Lazy::new(SUBSCRIPTIONID_SUBSCRIPTION);
        let mut outbox_rows = Lazy::new(OUTBOX);
        // Records and deadline rows are written after the loop, sorted by
        // key, each once: see `UserRows`.
        let mut user_rows = UserRows::default();
        for op in ops.flat_map(Op::parts) {
            match op {
                Op::UserRecord {
                    key,
                    record,
                    old_deadline,
                    new_deadline,
                    outbox,
                } => {
                    user_rows.record(key, record);
                    if let Some((row, body)) = outbox {
                        outbox_rows.get(&txn)?.insert(row, body.as_slice())?;
                    }
                    if old_deadline != new_deadline {
                        if let Some(old) = old_deadline {
                            user_rows.deadline(deadline_key(*old, key), false);
                        }
                        if let Some(new) = new_deadline {
                            user_rows.deadline(deadline_key(*new, key), true);
                        }
                    }
                }
                Op::Directory {
                    tenants: tenant_rows,
                    users: user_rows,
                } => {
                    for (id, record) in tenant_rows {
                        tenants.get(&txn)?.insert(id, record.as_slice())?;
                    }
                    for (key, record) in user_rows {
                        users.get(&txn)?.insert(key, record.as_slice())?;
                    }
                }
                Op::RemoveUser(key) => {
                    users.get(&txn)?.remove(key)?;
                }
                Op::Subscription { id, record } => match record {
                    Some(record) => {
                        subscriptions.get(&txn)?.insert(id, record.as_slice())?;
                    }
                    None => {
                        subscriptions.get(&txn)?.remove(id)?;
                    }
                },
                Op::Outbox { remove, insert } => {
                    for row in remove {
                        outbox_rows.get(&txn)?.remove(row)?;
                    }
                    for (row, body) in insert {
                        outbox_rows.get(&txn)?.insert(row, body.as_slice())?;
                    }
                }
                Op::ManualClock(at) => {
                    meta.get(&txn)?
                        .insert(META_MANUAL_CLOCK, codec::encode_timestamp(*at).as_slice())?;
                }
                Op::Barrier | Op::Group(_) => {}
            }
        }
        user_rows.write(&txn, &mut records, &mut deadlines)?;
        meta.get(&txn)?
            .insert(META_APPLIED_SEQ, applied_seq.to_be_bytes().as_slice())?;
    }
    txn.commit()?;
    Ok(())
}

/// The user records and deadline rows of one transaction, written in key
/// order, each key once, with the last write to it.
///
/// Only `Op::UserRecord` writes these two tables, so moving its writes to
/// them after the batch's other writes changes nothing but their order; and
/// a record insert, or a deadline row's insert or remove, replaces what came
/// before it, so the last one per key is the batch's effect. In key order,
/// each B-tree leaf is read and changed once per transaction: in arrival
/// order, writes to random users revisit leaves that redb's cache may
/// already have written out and dropped, and read them back.
#[derive(Default)]
struct UserRows<'a> {
    /// (key, arrival, record).
    records: Vec<(&'a [u8; 32], usize, &'a [u8])>,
    /// (row, arrival, present after it).
    deadlines: Vec<([u8; 48], usize, bool)>,
}

impl<'a> UserRows<'a> {
    fn record(&mut self, key: &'a [u8; 32], record: &'a [u8]) {
        let arrival = self.records.len();
        self.records.push((key, arrival, record));
    }

    fn deadline(&mut self, row: [u8; 48], present: bool) {
        let arrival = self.deadlines.len();
        self.deadlines.push((row, arrival, present));
    }

    fn write<'txn>(
        mut self,
        txn: &'txn WriteTransaction,
        records: &mut Lazy<'txn, &'static [u8; 32], &'static [u8]>,
        deadlines: &mut Lazy<'txn, &'static [u8; 48], ()>,
    ) -> Result<(), redb::Error> {
        self.records
            .sort_unstable_by(|a, b| a.0.cmp(b.0).then(a.1.cmp(&b.1)));
        for writes in self.records.chunk_by(|a, b| a.0 == b.0) {
            let (key, _, record) = writes[writes.len() - 1];
            records.get(txn)?.insert(key, record)?;
        }
        self.deadlines
            .sort_unstable_by(|a, b| a.0.cmp(&b.0).then(a.1.cmp(&b.1)));
        for moves in self.deadlines.chunk_by(|a, b| a.0 == b.0) {
            let (row, _, present) = &moves[moves.len() - 1];
            if *present {
                deadlines.get(txn)?.insert(row, ())?;
            } else {
                deadlines.get(txn)?.remove(row)?;
            }
        }
        Ok(())
    }
}

/// A table of the write transaction, opened on first use.
struct Lazy<'txn, K: redb::Key + 'static, V: redb::Value + 'static> {
    definition: TableDefinition<'static, K, V>,
    table: Option<Table<'txn, K, V>>,
}

impl<'txn, K: redb::Key + 'static, V: redb::Value + 'static> Lazy<'txn, K, V> {
    fn new(definition: TableDefinition<'static, K, V>) -> Self {
        Lazy {
            definition,
            table: None,
        }
    }

    fn get(&mut self, txn: &'txn WriteTransaction) -> Result<&mut Table<'txn, K, V>, redb::Error> {
        match &mut self.table {
            Some(table) => Ok(table),
            slot @ None => Ok(slot.insert(txn.open_table(self.definition)?)),
        }
    }
}

#[cfg(test)]
mod tests {
    use proptest::collection::vec;
    use proptest::prelude::*;
    use redb::{ReadableDatabase, ReadableTable};

    use super::*;

    type Rows = (Vec<([u8; 32], Vec<u8>)>, Vec<[u8; 48]>);

    /// Every user record and deadline row in the file.
    fn rows(db: &Database) -> Rows {
        let txn = db.begin_read().unwrap();
        let records = match txn.open_table(USERKEY_FACTS) {
            Ok(table) => table
                .iter()
                .unwrap()
                .map(|row| {
                    let (key, value) = row.unwrap();
                    (*key.value(), value.value().to_vec())
                })
                .collect(),
            Err(redb::TableError::TableDoesNotExist(_)) => Vec::new(),
            Err(error) => panic!("{error}"),
        };
        let deadlines = match txn.open_table(DEADLINE_USERKEY) {
            Ok(table) => table
                .iter()
                .unwrap()
                .map(|row| *row.unwrap().0.value())
                .collect(),
            Err(redb::TableError::TableDoesNotExist(_)) => Vec::new(),
            Err(error) => panic!("{error}"),
        };
        (records, deadlines)
    }

    /// A write to one of a few users, moving their deadline between a few
    /// instants (not always from where the last write left it) and
    /// sometimes carrying an outbox row.
    fn user_record() -> impl Strategy<Value = Op> {
        (
            0u8..4,
            any::<u8>(),
            proptest::option::of(0i64..3),
            proptest::option::of(0i64..3),
            any::<bool>(),
        )
            .prop_map(|(user, value, old, new, outbox)| {
                let key = [user; 32];
                let at = |s: i64| Timestamp::from_second(1_780_000_000 + s).unwrap();
                Op::UserRecord {
                    key,
                    record: vec![value; 1 + usize::from(value % 7)],
                    old_deadline: old.map(at),
                    new_deadline: new.map(at),
                    outbox: outbox.then(|| ([value; 24], vec![user])),
                }
            })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        /// One transaction of many writes leaves the tables exactly as the
        /// same writes do one transaction each, in order.
        #[test]
        fn a_batch_writes_what_its_writes_do_one_by_one(
            before in vec(user_record(), 0..8),
            batch in vec(user_record(), 1..40),
        ) {
            let dir = tempfile::tempdir().unwrap();
            let batched = Database::create(dir.path().join("batched.redb")).unwrap();
            let one_by_one = Database::create(dir.path().join("one_by_one.redb")).unwrap();
            for (seq, op) in before.iter().enumerate() {
                write_ops(&batched, std::iter::once(op), seq as u64, false).unwrap();
                write_ops(&one_by_one, std::iter::once(op), seq as u64, false).unwrap();
            }
            write_ops(&batched, batch.iter(), 100, false).unwrap();
            for op in &batch {
                write_ops(&one_by_one, std::iter::once(op), 100, false).unwrap();
            }
            prop_assert_eq!(rows(&batched), rows(&one_by_one));
        }
    }
}
