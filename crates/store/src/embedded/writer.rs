//! The single writer thread: group commit.
//!
//! Callers enqueue a write and await its acknowledgement. The thread blocks
//! for the first pending write, takes every other one already queued (up to
//! [`MAX_BATCH`]), writes them all in one redb transaction with
//! `Durability::Immediate`, and acknowledges them once the commit (and its
//! fsync) has returned. No timer is involved: while one commit runs, new
//! writes queue up and form the next batch, so the batch size follows the
//! load by itself. Writes leave the queue in the order they entered it.
//!
//! If a commit fails, every write of the batch is answered with
//! [`StoreError::Io`], the store is marked failed (memory already holds the
//! state that did not reach the file, so it must not serve it any longer),
//! and the thread ends; writes still queued are dropped and their callers
//! see the store as failed.
//!
//! A thread, not a task: redb's API blocks, and a commit is an fsync.
//!
//! This module knows the tables and the order of writes, not the meaning of
//! the bytes it writes.

use std::sync::atomic::{AtomicU8, AtomicU64, Ordering};
use std::sync::mpsc::Receiver;
use std::sync::{Arc, OnceLock};
use std::thread::{self, JoinHandle};

use jiff::Timestamp;
use redb::{Database, Durability, Table, TableDefinition, WriteTransaction};
use tokio::sync::oneshot;

use super::StoreStats;
use super::tables::{
    DEADLINE_USERKEY, META, META_MANUAL_CLOCK, OUTBOX, SUBSCRIPTIONID_SUBSCRIPTION,
    TENANTID_TENANT, TENANTID_USERID_USER, USERKEY_FACTS, deadline_key,
};
use crate::{StoreError, codec};

/// The most writes one transaction takes; a bound on commit latency.
pub(super) const MAX_BATCH: usize = 4096;

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
}

pub(super) enum Message {
    Write(Op, Ack),
    /// Commit everything queued before, close the file, then answer.
    Shutdown(oneshot::Sender<()>),
}

const OPEN: u8 = 0;
const CLOSED: u8 = 1;
const FAILED: u8 = 2;

/// What the store and its writer thread both see.
#[derive(Default)]
pub(super) struct Shared {
    /// `OPEN`, `CLOSED` or `FAILED`; atomic so that every call can check it
    /// without a lock.
    state: AtomicU8,
    /// Why the store failed, for the errors of every later call.
    failure: OnceLock<String>,
    /// Transactions committed by the writer.
    commits: AtomicU64,
    /// Writes made durable by those transactions (barriers not counted).
    writes: AtomicU64,
    /// The most writes one transaction carried.
    largest_batch: AtomicU64,
    /// Test hook: the next commit fails as if the disk had.
    #[cfg(test)]
    pub fail_next_commit: std::sync::atomic::AtomicBool,
    /// Test hook: a commit waits while a test holds this lock.
    #[cfg(test)]
    pub commit_gate: std::sync::Mutex<()>,
}

impl Shared {
    /// `Ok` while the store is open; otherwise the error every call returns.
    pub(super) fn check(&self) -> Result<(), StoreError> {
        if self.state.load(Ordering::Acquire) == OPEN {
            Ok(())
        } else {
            Err(self.unavailable())
        }
    }

    /// The error for a call that found the store closed or failed.
    pub(super) fn unavailable(&self) -> StoreError {
        match self.state.load(Ordering::Acquire) {
            FAILED => StoreError::Io(format!(
                "an earlier commit failed, so the store accepts no more calls: {}",
                self.failure.get().map_or("unknown cause", String::as_str)
            )),
            _ => StoreError::Closed,
        }
    }

    pub(super) fn is_open(&self) -> bool {
        self.state.load(Ordering::Acquire) == OPEN
    }

    /// Marks the store closed; false if it was not open.
    pub(super) fn close(&self) -> bool {
        self.state
            .compare_exchange(OPEN, CLOSED, Ordering::AcqRel, Ordering::Acquire)
            .is_ok()
    }

    fn fail(&self, why: &str) {
        let _ = self.failure.set(why.to_owned());
        self.state.store(FAILED, Ordering::Release);
    }

    pub(super) fn stats(&self) -> StoreStats {
        StoreStats {
            commits: self.commits.load(Ordering::Relaxed),
            writes: self.writes.load(Ordering::Relaxed),
            largest_batch: self.largest_batch.load(Ordering::Relaxed),
        }
    }
}

/// Starts the writer thread.
pub(super) fn spawn(
    db: Arc<Database>,
    queue: Receiver<Message>,
    shared: Arc<Shared>,
) -> std::io::Result<JoinHandle<()>> {
    thread::Builder::new()
        .name("presenced-store-writer".to_owned())
        .spawn(move || run(db, queue, shared))
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

fn run(db: Arc<Database>, queue: Receiver<Message>, shared: Arc<Shared>) {
    let _fail_on_panic = FailOnPanic(&shared);
    let metrics = CommitMetrics::register();
    let mut batch = Vec::new();
    // Ends when every sender is gone (the store was dropped): by then
    // everything queued has been taken and committed.
    while let Ok(first) = queue.recv() {
        let mut shutdown = None;
        let mut next = Some(first);
        while let Some(message) = next.take() {
            match message {
                Message::Write(op, ack) => batch.push((op, ack)),
                Message::Shutdown(done) => {
                    shutdown = Some(done);
                    break;
                }
            }
            if batch.len() < MAX_BATCH {
                next = queue.try_recv().ok();
            }
        }
        if !write_batch(&db, &mut batch, &shared, &metrics) {
            return;
        }
        if let Some(done) = shutdown {
            // Let go of the file before answering: once close() drops the
            // store's own handle, the file is released and may be reopened.
            drop(db);
            let _ = done.send(());
            return;
        }
    }
}

/// The writer's series, registered once when the thread starts (after the
/// process installed its recorder): recording is then an atomic update.
struct CommitMetrics {
    /// `presenced_store_commit_seconds`: a transaction's commit, fsync included.
    seconds: metrics::Histogram,
    /// `presenced_store_commit_writes`: the writes one transaction carried.
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

/// Commits and acknowledges one batch; false if the commit failed.
fn write_batch(
    db: &Database,
    batch: &mut Vec<(Op, Ack)>,
    shared: &Shared,
    metrics: &CommitMetrics,
) -> bool {
    let writes = batch
        .iter()
        .flat_map(|(op, _)| op.parts())
        .filter(|op| !matches!(op, Op::Barrier))
        .count() as u64;
    let started = std::time::Instant::now();
    let result = if writes == 0 {
        Ok(())
    } else {
        commit(db, batch, shared)
    };
    match result {
        Ok(()) => {
            if writes > 0 {
                metrics.seconds.record(started.elapsed().as_secs_f64());
                metrics.writes.record(writes as f64);
                shared.commits.fetch_add(1, Ordering::Relaxed);
                shared.writes.fetch_add(writes, Ordering::Relaxed);
                shared.largest_batch.fetch_max(writes, Ordering::Relaxed);
            }
            for (_, ack) in batch.drain(..) {
                // The caller may have stopped waiting; the write stands.
                let _ = ack.send(Ok(()));
            }
            true
        }
        Err(why) => {
            tracing::error!(error = %why, writes, "store commit failed; the store stops accepting calls");
            metrics.failures.increment(1);
            shared.fail(&why);
            for (_, ack) in batch.drain(..) {
                let _ = ack.send(Err(StoreError::Io(why.clone())));
            }
            false
        }
    }
}

fn commit(db: &Database, batch: &[(Op, Ack)], shared: &Shared) -> Result<(), String> {
    #[cfg(test)]
    drop(shared.commit_gate.lock());
    #[cfg(test)]
    if shared.fail_next_commit.swap(false, Ordering::SeqCst) {
        return Err("injected commit failure".to_owned());
    }
    let _ = shared;
    write_all(db, batch).map_err(|e| e.to_string())
}

fn write_all(db: &Database, batch: &[(Op, Ack)]) -> Result<(), redb::Error> {
    let mut txn = db.begin_write()?;
    txn.set_durability(Durability::Immediate)?;
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
        for op in batch.iter().flat_map(|(op, _)| op.parts()) {
            match op {
                Op::UserRecord {
                    key,
                    record,
                    old_deadline,
                    new_deadline,
                    outbox,
                } => {
                    records.get(&txn)?.insert(key, record.as_slice())?;
                    if let Some((row, body)) = outbox {
                        outbox_rows.get(&txn)?.insert(row, body.as_slice())?;
                    }
                    if old_deadline != new_deadline {
                        let deadlines = deadlines.get(&txn)?;
                        if let Some(old) = old_deadline {
                            deadlines.remove(&deadline_key(*old, key))?;
                        }
                        if let Some(new) = new_deadline {
                            deadlines.insert(&deadline_key(*new, key), ())?;
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
    }
    txn.commit()?;
    Ok(())
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
