//! The in-memory copy of every user's records: what reads are served from.
//!
//! # Layout
//! One [`Resident`] per user: a single allocation holding the user's key,
//! directory record and presence record, each exactly as the file stores
//! it. Decoded `UserFacts` would be 400 bytes inline before their session
//! vector and strings, and a map entry per table would pay the hash table's
//! slack twice; this way a user with one session, a preferred presence and a
//! directory entry costs one ~190-byte allocation plus a 16-byte slot (with
//! the table's slack, at most about 35 bytes). A read decodes its record,
//! which takes well under a microsecond.
//!
//! # Locks
//! 64 shards, each a `std::sync::RwLock` around a `HashSet`, chosen by a hash
//! of the user key. A std lock (not tokio's) because no critical section
//! awaits anything: each one is a lookup, a decode or an insert. A read-write
//! lock because reads (every GET, 650-user batches) far outnumber writes, and
//! sharding keeps writers to different users apart. A read of many users
//! (`known_facts_many`) groups them by shard and takes each lock once. A panic while a lock is
//! held cannot leave a set half-updated (every change is one `replace`), so
//! poisoning is ignored.
//!
//! This module knows neither the codec nor the file: records are opaque bytes.

use std::borrow::Borrow;
use std::collections::HashSet;
use std::hash::{BuildHasher, Hash, Hasher, RandomState};
use std::sync::{PoisonError, RwLock, RwLockReadGuard, RwLockWriteGuard};

/// How many shards; a power of two comfortably above the core count.
const SHARDS: usize = 64;

/// The storage key of a user: tenant id ‖ user id.
pub(super) type KeyBytes = [u8; 32];

/// One user's records: `key ‖ varint directory length ‖ directory record ‖
/// presence record`. A zero directory length means "not in the directory";
/// an empty presence record means "no facts stored" (a real record is never
/// empty: it starts with its version byte).
///
/// Equality and hashing look at the key only, so a `HashSet<Resident>` is a
/// map from key to records (looked up through `Borrow<KeyBytes>`).
pub(super) struct Resident(Box<[u8]>);

impl Resident {
    pub(super) fn new(key: &KeyBytes, directory: Option<&[u8]>, facts: Option<&[u8]>) -> Resident {
        let directory = directory.unwrap_or_default();
        let facts = facts.unwrap_or_default();
        let mut bytes = Vec::with_capacity(32 + 3 + directory.len() + facts.len());
        bytes.extend_from_slice(key);
        let mut len = directory.len();
        while len >= 0x80 {
            bytes.push((len as u8) | 0x80);
            len >>= 7;
        }
        bytes.push(len as u8);
        bytes.extend_from_slice(directory);
        bytes.extend_from_slice(facts);
        Resident(bytes.into_boxed_slice())
    }

    pub(super) fn key(&self) -> &KeyBytes {
        self.0[..32]
            .try_into()
            .expect("a resident starts with its key")
    }

    /// Where the directory record starts, and its length.
    fn directory_span(&self) -> (usize, usize) {
        let (mut len, mut shift, mut pos) = (0usize, 0, 32);
        loop {
            let byte = self.0[pos];
            pos += 1;
            len |= usize::from(byte & 0x7f) << shift;
            if byte & 0x80 == 0 {
                return (pos, len);
            }
            shift += 7;
        }
    }

    /// The directory record, if the user is in the directory.
    pub(super) fn directory(&self) -> Option<&[u8]> {
        let (start, len) = self.directory_span();
        (len > 0).then(|| &self.0[start..start + len])
    }

    /// The presence record, if facts were ever stored.
    pub(super) fn facts(&self) -> Option<&[u8]> {
        let (start, len) = self.directory_span();
        let facts = &self.0[start + len..];
        (!facts.is_empty()).then_some(facts)
    }
}

impl Borrow<KeyBytes> for Resident {
    fn borrow(&self) -> &KeyBytes {
        self.key()
    }
}

impl PartialEq for Resident {
    fn eq(&self, other: &Self) -> bool {
        self.key() == other.key()
    }
}

impl Eq for Resident {}

impl Hash for Resident {
    fn hash<H: Hasher>(&self, state: &mut H) {
        // Must hash exactly as `KeyBytes` does, for `Borrow` lookups.
        self.key().hash(state);
    }
}

/// One shard's residents, behind its lock.
pub(super) type Shard = RwLock<HashSet<Resident>>;

/// All shards, and the hash that picks one.
pub(super) struct Memory {
    shards: Box<[Shard]>,
    /// Keyed per process, so crafted ids cannot pile onto one shard.
    hasher: RandomState,
}

impl Memory {
    pub(super) fn new() -> Self {
        let shards = (0..SHARDS).map(|_| RwLock::new(HashSet::new())).collect();
        Memory {
            shards,
            hasher: RandomState::new(),
        }
    }

    pub(super) fn shard(&self, key: &KeyBytes) -> &Shard {
        &self.shards[self.shard_index(key)]
    }

    /// Which of [`Memory::shards`] holds `key`.
    pub(super) fn shard_index(&self, key: &KeyBytes) -> usize {
        // The high bits: the sets inside use the low bits of their own hash.
        let hash = self.hasher.hash_one(key);
        (hash >> 58) as usize % SHARDS
    }

    pub(super) fn shards(&self) -> &[Shard] {
        &self.shards
    }

    /// Room for `users` residents in total, spread over the shards (start-up).
    pub(super) fn reserve(&self, users: usize) {
        for shard in self.shards.iter() {
            write(shard).reserve(users / SHARDS);
        }
    }

    /// Adds or replaces a resident.
    pub(super) fn insert(&self, resident: Resident) {
        write(self.shard(resident.key())).replace(resident);
    }

    /// How many users are in the directory (walks every shard: start-up only).
    pub(super) fn directory_len(&self) -> usize {
        self.shards
            .iter()
            .map(|shard| {
                read(shard)
                    .iter()
                    .filter(|r| r.directory().is_some())
                    .count()
            })
            .sum()
    }

    /// How many users have a presence record.
    pub(super) fn facts_len(&self) -> usize {
        self.shards
            .iter()
            .map(|shard| read(shard).iter().filter(|r| r.facts().is_some()).count())
            .sum()
    }
}

pub(super) fn read(shard: &Shard) -> RwLockReadGuard<'_, HashSet<Resident>> {
    shard.read().unwrap_or_else(PoisonError::into_inner)
}

pub(super) fn write(shard: &Shard) -> RwLockWriteGuard<'_, HashSet<Resident>> {
    shard.write().unwrap_or_else(PoisonError::into_inner)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_resident_keeps_its_parts_apart() {
        let key = [9; 32];
        let long = vec![7; 300];
        for directory in [None, Some(&[1u8, 2][..]), Some(&long[..])] {
            for facts in [None, Some(&[1u8][..]), Some(&[1u8, 0, 3][..])] {
                let resident = Resident::new(&key, directory, facts);
                assert_eq!(resident.key(), &key);
                assert_eq!(resident.directory(), directory);
                assert_eq!(resident.facts(), facts);
            }
        }
    }

    #[test]
    fn residents_are_found_by_key_alone() {
        let memory = Memory::new();
        memory.insert(Resident::new(&[1; 32], None, Some(&[1])));
        memory.insert(Resident::new(&[1; 32], Some(&[1]), Some(&[1, 2])));
        {
            let shard = read(memory.shard(&[1; 32]));
            let found = shard.get(&[1u8; 32]).unwrap();
            assert_eq!(found.facts(), Some(&[1u8, 2][..]));
            assert_eq!(found.directory(), Some(&[1u8][..]));
        }
        assert_eq!(memory.facts_len(), 1);
    }
}
