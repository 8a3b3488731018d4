//! The applier thread: writes acknowledged writes into redb, off the
//! append path.
//!
//! The writer thread ([`super::writer`]) appends, fsyncs and acknowledges;
//! it hands the acknowledged writes over here in chunks, each with the
//! sequence of the last log record it holds. This thread takes every chunk
//! queued (so a lagging applier catches up in fewer, larger transactions)
//! and writes them to redb in one transaction with `Durability::None`,
//! recording that sequence as `log_applied_seq`; when a chunk asks for it
//! (the writer retired a log segment, see [`super::wal::Log::roll`]), the
//! transaction is durable instead, and [`Applier::durable`] tells the writer
//! up to which sequence the log may be reclaimed.
//!
//! Memory is bounded: the writer waits in [`Applier::hand_off`] while
//! [`MAX_QUEUED`] writes are queued (back-pressure, which reaches the
//! callers as slower acknowledgements). `due()`'s sync waits here until the
//! applied sequence reaches the one acknowledged when it was asked.
//!
//! If a transaction fails, the thread stops applying and keeps the error
//! for the writer, which recovers ([`super::recovery`]): it pauses this
//! thread, reopens the file, reads the writes after what the file holds
//! back from the log, and resumes it at the sequence the file then holds.
//! The writer also pauses it whenever it uses the file itself (idle
//! checkpoint, compaction, close). Pausing gives the queued writes back to
//! the writer ([`Applier::pause`]), and while paused nothing is queued, so
//! the writer's pending writes are then exactly the acknowledged writes
//! redb does not hold (unless a transaction failed: the writer then reads
//! them back from the log).

use std::collections::VecDeque;
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::thread::{self, JoinHandle};

use tokio::sync::oneshot;

use super::writer::{Op, Shared, write_ops};

/// The most acknowledged writes waiting for redb before the writer waits.
pub(super) const MAX_QUEUED: usize = 4 * super::writer::APPLY_EVERY;

struct Chunk {
    ops: Vec<Op>,
    last_seq: u64,
}

#[derive(Default)]
struct State {
    chunks: VecDeque<Chunk>,
    /// Writes in `chunks`.
    queued: usize,
    /// A transaction is running (and holds the file's handle).
    busy: bool,
    /// The last sequence redb's tables hold.
    applied: u64,
    /// The last sequence a durable redb commit holds.
    durable: u64,
    /// Commit durably once `applied` reaches this.
    wanted: u64,
    /// Syncs waiting for `applied` to reach their sequence.
    syncs: Vec<(u64, oneshot::Sender<()>)>,
    failed: Option<String>,
    paused: bool,
    stop: bool,
}

struct Inner {
    state: Mutex<State>,
    changed: Condvar,
}

impl Inner {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn wait<'a>(&self, guard: MutexGuard<'a, State>) -> MutexGuard<'a, State> {
        self.changed
            .wait(guard)
            .unwrap_or_else(PoisonError::into_inner)
    }
}

/// The writer's handle on the applier thread; dropping it stops the thread
/// (after the transaction it runs, if any) and joins it.
pub(super) struct Applier {
    inner: Arc<Inner>,
    thread: Option<JoinHandle<()>>,
}

impl Applier {
    /// Starts the thread; redb holds, durably, everything up to `applied`.
    pub(super) fn start(shared: Arc<Shared>, applied: u64) -> std::io::Result<Applier> {
        let inner = Arc::new(Inner {
            state: Mutex::new(State {
                applied,
                durable: applied,
                wanted: applied,
                ..State::default()
            }),
            changed: Condvar::new(),
        });
        let thread = {
            let inner = Arc::clone(&inner);
            thread::Builder::new()
                .name("presenced-store-applier".to_owned())
                .spawn(move || run(&inner, &shared))?
        };
        Ok(Applier {
            inner,
            thread: Some(thread),
        })
    }

    /// Queues `ops` (the acknowledged writes of the log's records up to
    /// `last_seq`, emptied from the vector); `durable` asks for a durable
    /// commit up to `last_seq`. Waits while the queue is full. An error is
    /// the failure of an earlier transaction: nothing is queued then; while
    /// paused, nothing is queued either (`ops` stays as it is).
    pub(super) fn hand_off(
        &self,
        ops: &mut Vec<Op>,
        last_seq: u64,
        durable: bool,
    ) -> Result<(), String> {
        let mut state = self.inner.lock();
        loop {
            if let Some(why) = &state.failed {
                return Err(why.clone());
            }
            if state.paused || state.queued == 0 || state.queued + ops.len() <= MAX_QUEUED {
                break;
            }
            state = self.inner.wait(state);
        }
        if state.paused {
            return Ok(());
        }
        if !ops.is_empty() {
            state.queued += ops.len();
            state.chunks.push_back(Chunk {
                ops: std::mem::take(ops),
                last_seq,
            });
        }
        if durable {
            state.wanted = state.wanted.max(last_seq);
        }
        drop(state);
        self.inner.changed.notify_all();
        Ok(())
    }

    /// Answers `done` once redb's tables hold everything up to `seq` (at
    /// once if they do, or if the applier is paused or failed: redb then
    /// holds what it holds, as while the disk is full).
    pub(super) fn sync(&self, seq: u64, done: oneshot::Sender<()>) {
        let mut state = self.inner.lock();
        if state.applied >= seq || state.paused || state.failed.is_some() {
            let _ = done.send(());
        } else {
            state.syncs.push((seq, done));
        }
    }

    /// The last sequence a durable redb commit holds.
    pub(super) fn durable(&self) -> u64 {
        self.inner.lock().durable
    }

    /// Waits until a durable redb commit holds everything up to `seq`
    /// (asked for by an earlier [`Applier::hand_off`]); an error is a
    /// failed transaction.
    pub(super) fn wait_durable(&self, seq: u64) -> Result<(), String> {
        let mut state = self.inner.lock();
        loop {
            if let Some(why) = &state.failed {
                return Err(why.clone());
            }
            if state.durable >= seq || state.paused || state.wanted < seq {
                return Ok(());
            }
            state = self.inner.wait(state);
        }
    }

    /// Why the last transaction failed, if it did.
    pub(super) fn failed(&self) -> Option<String> {
        self.inner.lock().failed.clone()
    }

    /// Waits for the queue to be applied (or a failure), then pauses (see
    /// [`Applier::pause`]). Answers the writes given back (none unless it
    /// was paused already), or the failure.
    pub(super) fn drain_and_pause(&self) -> Result<Vec<Op>, String> {
        let mut state = self.inner.lock();
        while (state.busy || !state.chunks.is_empty()) && state.failed.is_none() && !state.paused {
            state = self.inner.wait(state);
        }
        let failed = state.failed.clone();
        drop(state);
        let back = self.pause();
        match failed {
            Some(why) => Err(why),
            None => Ok(back),
        }
    }

    /// Pauses at once: waits for a running transaction to end, then no
    /// transaction runs and the thread holds no file handle until
    /// [`Applier::resume`]. Answers the queued writes, oldest first (they
    /// precede the writer's pending ones), and the waiting syncs.
    pub(super) fn pause(&self) -> Vec<Op> {
        let mut state = self.inner.lock();
        state.paused = true;
        while state.busy {
            state = self.inner.wait(state);
        }
        let back: Vec<Op> = state.chunks.drain(..).flat_map(|chunk| chunk.ops).collect();
        state.queued = 0;
        for (_, done) in state.syncs.drain(..) {
            let _ = done.send(());
        }
        drop(state);
        self.inner.changed.notify_all();
        back
    }

    /// Resumes after [`Applier::pause`]: redb now holds, durably,
    /// everything up to `applied`, and any failure is over.
    pub(super) fn resume(&self, applied: u64) {
        let mut state = self.inner.lock();
        state.paused = false;
        state.failed = None;
        state.applied = applied;
        state.durable = applied;
        state.wanted = applied;
        drop(state);
        self.inner.changed.notify_all();
    }
}

impl Drop for Applier {
    fn drop(&mut self) {
        self.inner.lock().stop = true;
        self.inner.changed.notify_all();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn run(inner: &Inner, shared: &Shared) {
    let mut state = inner.lock();
    loop {
        if state.stop {
            return;
        }
        let durable_due = state.wanted > state.durable;
        let work = !state.chunks.is_empty() || (durable_due && state.applied >= state.wanted);
        if state.paused || state.failed.is_some() || !work {
            state = inner.wait(state);
            continue;
        }
        let chunks: Vec<Chunk> = state.chunks.drain(..).collect();
        let last_seq = chunks.last().map_or(state.applied, |chunk| chunk.last_seq);
        let durable = durable_due && last_seq >= state.wanted;
        state.busy = true;
        drop(state);
        #[cfg(test)]
        drop(shared.apply_gate.lock());
        let result = match shared.database() {
            Some(db) => write_ops(
                &db,
                chunks.iter().flat_map(|chunk| chunk.ops.iter()),
                last_seq,
                durable,
            )
            .map_err(|error| error.to_string()),
            None => Err("the store's file is not open".to_owned()),
        };
        let writes: usize = chunks.iter().map(|chunk| chunk.ops.len()).sum();
        // Freed outside the lock.
        drop(chunks);
        state = inner.lock();
        state.busy = false;
        state.queued = state.queued.saturating_sub(writes);
        match result {
            Ok(()) => {
                state.applied = last_seq;
                if durable {
                    state.durable = last_seq;
                }
                let applied = state.applied;
                let mut answered = Vec::new();
                let syncs = std::mem::take(&mut state.syncs);
                for (seq, done) in syncs {
                    if seq <= applied {
                        answered.push(done);
                    } else {
                        state.syncs.push((seq, done));
                    }
                }
                for done in answered {
                    let _ = done.send(());
                }
            }
            Err(why) => {
                tracing::error!(error = %why, "writing acknowledged writes to the store's file failed");
                state.failed = Some(why);
                for (_, done) in state.syncs.drain(..) {
                    let _ = done.send(());
                }
            }
        }
        inner.changed.notify_all();
    }
}
