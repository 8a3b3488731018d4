//! The live stream's log (extension `notifications.live_stream`): every
//! visible presence change, in order, for Server-Sent Events clients.
//!
//! Each change gets a position `{epoch}-{seq}`: `epoch` names this process
//! (a random id drawn at start), `seq` counts up from 1. The log keeps the
//! last `capacity` changes in memory; a client that reconnects with the
//! position of the last event it saw gets every later change still kept.
//! If changes it needs were already dropped (it was away too long, or the
//! server restarted: another epoch), [`LiveLog::read`] says so, and the
//! stream tells the client to read presence afresh.
//!
//! Changes are published by the writers (request-driven) and the
//! scheduler (time-driven); a change whose `sequenceNumber` is not newer
//! than the last one published for that user is skipped, so the two paths
//! never report one change twice. On a store shared by several nodes
//! (Redis) each node also announces its changes through the store
//! (`Store::announce_change`), and every node publishes the changes it
//! hears of (`Store::changes_elsewhere`) to its own log, read afresh from
//! the store: a stream on any node sees changes made on every node.
//! Positions are per process, so a client that a load balancer sends to
//! another node on reconnect resumes as after a restart (told to read
//! presence afresh); a change announced while a node's subscription was
//! down is not in that node's log. This module knows no HTTP and no JSON.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;

use presenced_domain::{Activity, Availability};
use presenced_store::UserKey;
use tokio::sync::watch;

/// One change of one user's presence.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LiveEvent {
    pub seq: u64,
    pub key: UserKey,
    pub availability: Availability,
    pub activity: Activity,
    /// The presence's `sequenceNumber` (as a number).
    pub sequence: u64,
}

/// Where a client resumes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Resume {
    /// From now on (no `Last-Event-ID`).
    Now,
    /// After this position of this process.
    After(u64),
    /// A position of another process (before a restart).
    OtherEpoch,
}

/// What a read found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Batch {
    /// Changes the client needed were dropped before it came back: the
    /// position just before the oldest change kept.
    pub gap: Option<u64>,
    /// The matching changes after the cursor, in order.
    pub events: Vec<LiveEvent>,
    /// The position to read after next time.
    pub cursor: u64,
}

struct Inner {
    events: VecDeque<LiveEvent>,
    last_seq: u64,
    /// The last `sequenceNumber` published per user.
    published: HashMap<UserKey, u64>,
}

/// The bounded log and its wake-up signal.
pub struct LiveLog {
    epoch: String,
    capacity: usize,
    /// A `std::sync::Mutex`: held for in-memory work only, never across `.await`.
    inner: Mutex<Inner>,
    /// The last position published, for waiting streams.
    wake: watch::Sender<u64>,
}

impl LiveLog {
    pub fn new(capacity: usize) -> LiveLog {
        let mut bytes = [0u8; 6];
        let _ = getrandom::fill(&mut bytes);
        let epoch = bytes.iter().map(|b| format!("{b:02x}")).collect();
        LiveLog {
            epoch,
            capacity: capacity.max(1),
            inner: Mutex::new(Inner {
                events: VecDeque::new(),
                last_seq: 0,
                published: HashMap::new(),
            }),
            wake: watch::channel(0).0,
        }
    }

    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// The text of a position (an SSE `id`).
    pub fn position(&self, seq: u64) -> String {
        format!("{}-{seq}", self.epoch)
    }

    /// Reads a `Last-Event-ID`; `None` if it is not a position at all.
    pub fn parse_position(&self, text: &str) -> Option<Resume> {
        let (epoch, seq) = text.trim().rsplit_once('-')?;
        let seq: u64 = seq.parse().ok()?;
        if epoch.is_empty() {
            return None;
        }
        Some(if epoch == self.epoch {
            Resume::After(seq)
        } else {
            Resume::OtherEpoch
        })
    }

    /// Records a change unless it is not newer than the last one published
    /// for the user.
    pub fn publish(
        &self,
        key: UserKey,
        availability: Availability,
        activity: Activity,
        sequence: u64,
    ) {
        let seq = {
            let mut inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
            let last = inner.published.entry(key).or_insert(0);
            if sequence <= *last && *last != 0 {
                return;
            }
            *last = sequence;
            inner.last_seq += 1;
            let seq = inner.last_seq;
            inner.events.push_back(LiveEvent {
                seq,
                key,
                availability,
                activity,
                sequence,
            });
            while inner.events.len() > self.capacity {
                inner.events.pop_front();
            }
            seq
        };
        self.wake.send_replace(seq);
    }

    /// The cursor for a client that resumes so.
    pub fn start(&self, resume: Resume) -> (u64, bool) {
        let inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        match resume {
            Resume::Now => (inner.last_seq, false),
            Resume::After(seq) => (seq.min(inner.last_seq), false),
            // Everything kept came after the restart; what came before is lost.
            Resume::OtherEpoch => (
                inner.events.front().map_or(inner.last_seq, |e| e.seq - 1),
                true,
            ),
        }
    }

    /// The changes after `cursor` that `wanted` accepts.
    pub fn read(&self, cursor: u64, wanted: impl Fn(&UserKey) -> bool) -> Batch {
        let inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        let oldest = inner.events.front().map_or(inner.last_seq + 1, |e| e.seq);
        let gap = (cursor + 1 < oldest).then(|| oldest - 1);
        let events = inner
            .events
            .iter()
            .filter(|e| e.seq > cursor && wanted(&e.key))
            .cloned()
            .collect();
        Batch {
            gap,
            events,
            cursor: inner.last_seq.max(cursor),
        }
    }

    /// Wakes when something is published after this call.
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.wake.subscribe()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use presenced_domain::Guid;

    fn key(n: u128) -> UserKey {
        UserKey {
            tenant: Guid::from_u128(1),
            user: Guid::from_u128(n),
        }
    }

    fn publish(log: &LiveLog, user: u128, sequence: u64) {
        log.publish(key(user), Availability::Busy, Activity::InACall, sequence);
    }

    #[test]
    fn a_client_resumes_after_its_last_event_and_filters_by_user() {
        let log = LiveLog::new(10);
        publish(&log, 1, 1);
        publish(&log, 2, 1);
        publish(&log, 1, 2);
        let batch = log.read(1, |k| *k == key(1));
        assert_eq!(batch.gap, None);
        assert_eq!(
            batch
                .events
                .iter()
                .map(|e| (e.seq, e.sequence))
                .collect::<Vec<_>>(),
            [(3, 2)]
        );
        assert_eq!(batch.cursor, 3);
    }

    #[test]
    fn a_change_not_newer_than_the_last_published_is_skipped() {
        let log = LiveLog::new(10);
        publish(&log, 1, 5);
        publish(&log, 1, 5);
        publish(&log, 1, 4);
        publish(&log, 1, 6);
        assert_eq!(log.read(0, |_| true).events.len(), 2);
    }

    #[test]
    fn past_the_bound_a_returning_client_learns_of_the_gap() {
        let log = LiveLog::new(2);
        for sequence in 1..=5 {
            publish(&log, 1, sequence);
        }
        let behind = log.read(1, |_| true);
        assert_eq!(behind.gap, Some(3));
        assert_eq!(behind.events.len(), 2);
        assert_eq!(log.read(3, |_| true).gap, None);
    }

    #[test]
    fn positions_name_this_process() {
        let log = LiveLog::new(2);
        let text = log.position(7);
        assert_eq!(log.parse_position(&text), Some(Resume::After(7)));
        assert_eq!(
            log.parse_position("0badc0ffee00-7"),
            Some(Resume::OtherEpoch)
        );
        assert_eq!(log.parse_position("7"), None);
        assert_eq!(log.parse_position("x-y"), None);
    }
}
