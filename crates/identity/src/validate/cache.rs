//! Validated tokens, remembered until they expire, so that a client's next request costs a hash and a
//! lookup instead of an RSA verification.
//!
//! Keyed by the SHA-256 of the token (the token itself is a credential and is not kept). Bounded: a full
//! shard first drops its expired entries, then arbitrary ones, always freeing an eighth of its room so
//! that the sweep is paid for by many insertions.

use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard, PoisonError};

use sha2::{Digest, Sha256};

use crate::Principal;

/// The SHA-256 of a token.
pub(crate) type TokenDigest = [u8; 32];

pub(crate) fn digest(token: &[u8]) -> TokenDigest {
    Sha256::digest(token).into()
}

/// Independent maps, picked by the digest's first byte, so that concurrent requests rarely wait for the
/// same lock.
const SHARDS: usize = 16;

pub(crate) struct TokenCache {
    /// `std::sync::Mutex`: held for one map operation, never across an `.await`.
    shards: Box<[Mutex<HashMap<TokenDigest, Entry>>]>,
    /// The most entries one shard keeps; 0 turns the cache off.
    shard_capacity: usize,
}

struct Entry {
    /// The last second (Unix time) at which the token is still accepted: `exp` plus the clock-skew leeway.
    valid_until: i64,
    /// Cheap to clone: its strings are shared.
    principal: Principal,
}

/// What the cache knows about a token.
pub(crate) enum Lookup {
    Valid(Principal),
    /// It was valid, and has expired since.
    Expired,
    Unknown,
}

impl TokenCache {
    /// A cache for about `capacity` tokens in all.
    pub fn new(capacity: usize) -> TokenCache {
        TokenCache {
            shards: (0..SHARDS).map(|_| Mutex::new(HashMap::new())).collect(),
            shard_capacity: capacity.div_ceil(SHARDS),
        }
    }

    pub fn get(&self, digest: &TokenDigest, now: i64) -> Lookup {
        let mut shard = self.shard(digest);
        match shard.get(digest) {
            None => Lookup::Unknown,
            Some(entry) if now <= entry.valid_until => Lookup::Valid(entry.principal.clone()),
            Some(_) => {
                shard.remove(digest);
                Lookup::Expired
            }
        }
    }

    pub fn insert(&self, digest: TokenDigest, valid_until: i64, principal: Principal, now: i64) {
        if self.shard_capacity == 0 {
            return;
        }
        let mut shard = self.shard(&digest);
        if shard.len() >= self.shard_capacity && !shard.contains_key(&digest) {
            let target = self.shard_capacity - self.shard_capacity.div_ceil(8);
            shard.retain(|_, entry| now <= entry.valid_until);
            let excess = shard.len().saturating_sub(target);
            let evicted: Vec<TokenDigest> = shard.keys().take(excess).copied().collect();
            for key in &evicted {
                shard.remove(key);
            }
        }
        shard.insert(
            digest,
            Entry {
                valid_until,
                principal,
            },
        );
    }

    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.shards
            .iter()
            .map(|shard| shard.lock().unwrap_or_else(PoisonError::into_inner).len())
            .sum()
    }

    fn shard(&self, digest: &TokenDigest) -> MutexGuard<'_, HashMap<TokenDigest, Entry>> {
        // A poisoned shard still holds consistent entries: each operation is one map call.
        self.shards[usize::from(digest[0]) % SHARDS]
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Guid;

    fn principal() -> Principal {
        Principal::application(Guid::from_u128(1), "app", vec![])
    }

    #[test]
    fn entries_last_until_their_expiry() {
        let cache = TokenCache::new(100);
        let key = digest(b"token");
        assert!(matches!(cache.get(&key, 0), Lookup::Unknown));
        cache.insert(key, 10, principal(), 0);
        assert!(matches!(cache.get(&key, 10), Lookup::Valid(_)));
        assert!(matches!(cache.get(&key, 11), Lookup::Expired));
        assert!(
            matches!(cache.get(&key, 11), Lookup::Unknown),
            "an expired entry is dropped"
        );
    }

    #[test]
    fn the_cache_stays_bounded() {
        let cache = TokenCache::new(SHARDS * 8);
        for i in 0..10_000 {
            cache.insert(digest(i.to_string().as_bytes()), 100, principal(), 0);
        }
        assert!(cache.len() <= SHARDS * 8, "{}", cache.len());
        // The most recent insertion is always kept.
        assert!(matches!(cache.get(&digest(b"9999"), 0), Lookup::Valid(_)));
    }

    #[test]
    fn a_full_shard_drops_expired_entries_first() {
        let cache = TokenCache::new(SHARDS * 8);
        let keys: Vec<TokenDigest> = (0..)
            .map(|i: u32| digest(i.to_string().as_bytes()))
            .filter(|d| usize::from(d[0]).is_multiple_of(SHARDS))
            .take(9)
            .collect();
        for key in &keys[..4] {
            cache.insert(*key, 5, principal(), 0);
        }
        for key in &keys[4..8] {
            cache.insert(*key, 100, principal(), 0);
        }
        cache.insert(keys[8], 100, principal(), 50);
        for key in &keys[4..] {
            assert!(matches!(cache.get(key, 50), Lookup::Valid(_)));
        }
    }

    #[test]
    fn capacity_zero_turns_the_cache_off() {
        let cache = TokenCache::new(0);
        cache.insert(digest(b"t"), 100, principal(), 0);
        assert!(matches!(cache.get(&digest(b"t"), 0), Lookup::Unknown));
    }
}
