//! Restoring a user's stored record as it is (`presenced import`): no
//! domain rule runs; the record and its deadline are written as exported.
//!
//! A write like every other: the same `Op::UserRecord` through the writer
//! (durable once acknowledged), the deadline row moved from the old
//! record's deadline to the new one's, memory replaced under the shard lock
//! after the op is queued. Nothing here touches the log or the tables.

use super::EmbeddedStore;
use super::memory::{self, Resident};
use super::tables::user_key_bytes;
use super::writer::Op;
use crate::{StoreError, UserKey, codec};

impl EmbeddedStore {
    /// Writes `record` (as [`codec::encode_user_record`] makes it) as the
    /// user's stored facts, replacing any, and files its deadline, so a fade
    /// or an expiry it holds fires as after any write. A record that does
    /// not decode, or is larger than the store's bound, is refused and
    /// nothing is written.
    pub async fn restore_record(&self, key: UserKey, record: &[u8]) -> Result<(), StoreError> {
        let (_, new_deadline) = codec::decode_user_record(record)?;
        if record.len() > self.max_record_bytes {
            return Err(StoreError::Corrupt(format!(
                "a record of {} bytes is larger than the store's bound of {} bytes",
                record.len(),
                self.max_record_bytes
            )));
        }
        let pending = {
            let _admitted = self.shared.admit()?;
            let key = user_key_bytes(key);
            let mut residents = memory::write(self.memory.shard(&key));
            let current = residents.get(&key);
            let old_deadline = match current.and_then(Resident::facts) {
                Some(old) => codec::user_record_deadline(old)?,
                None => None,
            };
            let resident = Resident::new(&key, current.and_then(Resident::directory), Some(record));
            // Queue first: memory never holds a record the writer has not got.
            let pending = self.send(Op::UserRecord {
                key,
                record: record.to_vec(),
                old_deadline,
                new_deadline,
                outbox: None,
            })?;
            residents.replace(resident);
            pending
        };
        self.durable(pending).await
    }
}
