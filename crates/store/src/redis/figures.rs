//! The outbox's size for the operator's figures (`/admin/status`,
//! `presenced status`, `/metrics`): `HLEN` of every bucket's `ob` hash (its
//! entries, claimed or not), all sent at once (per master one pipeline),
//! summed, and kept [`OUTBOX_COUNT_FOR`] so that frequent scrapes cost
//! one count per interval whatever their number. Counted only when asked:
//! nothing runs while nobody looks.

use std::sync::PoisonError;
use std::time::{Duration, Instant};

use super::{BUCKETS, Batch, RedisStore};
use crate::StoreError;

/// How long a count answers before the next question counts again.
pub(super) const OUTBOX_COUNT_FOR: Duration = Duration::from_secs(2);

impl RedisStore {
    /// The outbox's entries on every bucket (not only this node's), at most
    /// [`OUTBOX_COUNT_FOR`] old.
    pub(super) async fn outbox_entries_now(&self) -> Result<u64, StoreError> {
        if let Some((at, count)) = *self
            .outbox_count
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            && at.elapsed() < OUTBOX_COUNT_FOR
        {
            return Ok(count);
        }
        let conn = self.conn()?;
        let mut pipe = Batch::new();
        for bucket in 0..BUCKETS {
            pipe.cmd("HLEN").arg(self.bucket_key(bucket, "ob"));
        }
        let lengths: Vec<u64> = pipe.query(self, &conn).await?;
        let count = lengths.iter().sum();
        *self
            .outbox_count
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = Some((Instant::now(), count));
        Ok(count)
    }
}
