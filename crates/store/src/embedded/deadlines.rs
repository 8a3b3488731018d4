//! Moving many users' deadlines on at once: the scheduler hands over every
//! deadline it handled in one step.
//!
//! The users are grouped by memory shard. Each shard is locked once, every
//! move in it is computed as [`EmbeddedStore::advance_deadline`] would, and
//! the moves are queued to the writer as one group before memory changes —
//! still under the lock, so each user's writes keep their order in memory
//! and in the file. One acknowledgement per shard instead of one per user,
//! and the writer commits the groups together.

use std::collections::BTreeMap;

use jiff::Timestamp;

use super::memory::{self, Resident};
use super::tables::user_key_bytes;
use super::writer::Op;
use super::{EmbeddedStore, Pending};
use crate::{StoreError, UserKey, codec};

impl EmbeddedStore {
    /// [`crate::Store::advance_deadlines`].
    pub(super) async fn advance_many(
        &self,
        handled: Vec<(UserKey, Timestamp)>,
        now: Timestamp,
    ) -> Result<Vec<Option<Timestamp>>, StoreError> {
        let (after, pending) = self.advance_many_in_memory(&handled, now)?;
        for pending in pending {
            self.durable(pending).await?;
        }
        Ok(after)
    }

    fn advance_many_in_memory(
        &self,
        handled: &[(UserKey, Timestamp)],
        now: Timestamp,
    ) -> Result<(Vec<Option<Timestamp>>, Vec<Pending>), StoreError> {
        let _admitted = self.shared.admit()?;
        let mut by_shard: BTreeMap<usize, Vec<usize>> = BTreeMap::new();
        for (index, (user, _)) in handled.iter().enumerate() {
            let shard = self.memory.shard_index(&user_key_bytes(*user));
            by_shard.entry(shard).or_default().push(index);
        }
        let mut after = vec![None; handled.len()];
        let mut pending = Vec::with_capacity(by_shard.len());
        for (shard, members) in by_shard {
            let mut residents = memory::write(&self.memory.shards()[shard]);
            let mut writes = Vec::with_capacity(members.len());
            let mut replacements = Vec::with_capacity(members.len());
            for index in members {
                let (user, at) = handled[index];
                let key = user_key_bytes(user);
                let current = residents.get(&key);
                let Some(record) = current.and_then(Resident::facts) else {
                    continue;
                };
                let (facts, old_deadline) = codec::decode_user_record(record)?;
                after[index] = old_deadline;
                if old_deadline != Some(at) {
                    // Facts changed since: their write already moved the row.
                    continue;
                }
                let new_deadline = presenced_domain::next_change(&facts, now.max(at), &self.rules);
                let record = codec::replace_user_record_deadline(record, new_deadline)?;
                replacements.push(Resident::new(
                    &key,
                    current.and_then(Resident::directory),
                    Some(&record),
                ));
                writes.push(Op::UserRecord {
                    key,
                    record,
                    old_deadline,
                    new_deadline,
                    outbox: None,
                });
                after[index] = new_deadline;
            }
            if writes.is_empty() {
                continue;
            }
            // Queue first: memory never holds a record the writer has not got.
            pending.push(self.send(Op::Group(writes))?);
            for resident in replacements {
                residents.replace(resident);
            }
        }
        Ok((after, pending))
    }
}
