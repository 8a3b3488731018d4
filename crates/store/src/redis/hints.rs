//! Where this node's outbox loop looks: the buckets it knows to have work.
//!
//! The outbox loop wakes at every visible change; scanning the outbox of
//! every bucket the node holds at each wake cost a command per bucket,
//! many times per write. Instead, the node notes the buckets it queued work
//! in itself (a change of a subscribed user, a settlement's additions and
//! retries), with the earliest due time it knows of, and scans only those.
//! Work it cannot know of — queued by another node into a bucket this one
//! holds, a bucket just taken over, claims returned by a dead node — is
//! found by a scan of every held bucket at most [`FULL_SCAN`] apart.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// The longest time between two scans of every held bucket's outbox.
pub const FULL_SCAN: Duration = Duration::from_millis(500);

#[derive(Debug, Default)]
pub struct OutboxHints {
    inner: Mutex<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    /// Bucket -> the earliest due time (ms) of work known to be queued there.
    due: HashMap<u16, i64>,
    last_full: Option<Instant>,
}

impl OutboxHints {
    fn inner(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Work due at `due_ms` is queued in `bucket`.
    pub fn note(&self, bucket: u16, due_ms: i64) {
        let mut inner = self.inner();
        let slot = inner.due.entry(bucket).or_insert(due_ms);
        *slot = (*slot).min(due_ms);
    }

    /// Whether the next plan scans every held bucket.
    pub fn full_due(&self, now: Instant) -> bool {
        self.inner()
            .last_full
            .is_none_or(|at| now.duration_since(at) >= FULL_SCAN)
    }

    /// The buckets to scan for work due by `until_ms` (any if `None`):
    /// every held one when a full scan is due, else the noted ones due by
    /// then. Their notes are taken: the scan notes again what it leaves.
    pub fn plan(&self, held: &[u16], until_ms: Option<i64>, now: Instant) -> Vec<u16> {
        let mut inner = self.inner();
        inner.due.retain(|bucket, _| held.contains(bucket));
        if inner
            .last_full
            .is_none_or(|at| now.duration_since(at) >= FULL_SCAN)
        {
            inner.last_full = Some(now);
            inner.due.clear();
            return held.to_vec();
        }
        let mut buckets: Vec<u16> = inner
            .due
            .iter()
            .filter(|&(_, &due)| until_ms.is_none_or(|until| due <= until))
            .map(|(&bucket, _)| bucket)
            .collect();
        buckets.sort_unstable();
        for bucket in &buckets {
            inner.due.remove(bucket);
        }
        buckets
    }

    /// The earliest due time noted, if any.
    pub fn earliest(&self) -> Option<i64> {
        self.inner().due.values().min().copied()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_plan_scans_every_held_bucket_then_only_noted_ones() {
        let hints = OutboxHints::default();
        let start = Instant::now();
        assert_eq!(hints.plan(&[1, 2, 3], Some(0), start), vec![1, 2, 3]);
        assert!(hints.plan(&[1, 2, 3], Some(0), start).is_empty());
        hints.note(2, -5);
        hints.note(3, 100);
        // Only what is due by `until`; a bucket no longer held is forgotten.
        hints.note(9, 0);
        assert_eq!(hints.plan(&[1, 2, 3], Some(0), start), vec![2]);
        assert_eq!(hints.earliest(), Some(100));
        assert_eq!(hints.plan(&[1, 2, 3], None, start), vec![3]);
        assert_eq!(hints.earliest(), None);
    }

    #[test]
    fn the_earliest_note_of_a_bucket_counts() {
        let hints = OutboxHints::default();
        let start = Instant::now();
        hints.plan(&[7], None, start);
        hints.note(7, 50);
        hints.note(7, 20);
        hints.note(7, 80);
        assert_eq!(hints.earliest(), Some(20));
        assert_eq!(hints.plan(&[7], Some(20), start), vec![7]);
    }

    #[test]
    fn every_held_bucket_is_scanned_again_after_the_full_scan_interval() {
        let hints = OutboxHints::default();
        let start = Instant::now();
        hints.plan(&[1, 2], None, start);
        assert!(!hints.full_due(start + FULL_SCAN / 2));
        assert!(hints.plan(&[1, 2], None, start + FULL_SCAN / 2).is_empty());
        assert!(hints.full_due(start + FULL_SCAN));
        assert_eq!(hints.plan(&[1, 2], None, start + FULL_SCAN), vec![1, 2]);
    }
}
