//! The notification half of the embedded store: subscriptions (with the
//! index from user to subscriptions) and the durable outbox.
//!
//! Both live in memory for reads and claims, and in redb tables for
//! durability; every change goes through the writer thread like any other
//! write, so it is group-committed and acknowledged only once durable.
//!
//! # Locks
//! `subscriptions` is a `std::sync::RwLock` (reads on every write of a
//! subscribed user, writes only when subscriptions change); `outbox` a
//! `std::sync::Mutex` (every access changes it). Neither is held across an
//! `.await`. [`EmbeddedStore::apply`](crate::Store::apply) takes the outbox lock while it holds
//! a user's shard lock; nothing takes them the other way round.
//!
//! Claims are memory only: after a restart every entry is unclaimed, which
//! is what makes delivery at least once.

use std::collections::{BTreeMap, HashMap};
use std::sync::PoisonError;

use jiff::Timestamp;
use presenced_domain::Guid;
use redb::{ReadTransaction, ReadableTable};

use super::tables::{OUTBOX, SUBSCRIPTIONID_SUBSCRIPTION, instant_bytes, instant_from_bytes, io};
use super::writer::Op;
use super::{EmbeddedStore, Step};
use crate::{
    OutboxBody, OutboxEntry, OutboxId, OutboxSettlement, StoreError, SubscriptionRecord, UserKey,
};

/// The key of an outbox row: due instant ‖ id, both big-endian.
pub(super) type OutboxKey = [u8; 24];

/// Subscriptions by id, and which ones cover each user.
///
/// The index has an entry per covered user per subscription (650 for a
/// full Graph subscription), so its entries are kept small: most users are
/// covered by one subscription, which is held inline rather than in a
/// vector of its own (a heap allocation per entry).
#[derive(Default)]
pub(super) struct Subscriptions {
    by_id: HashMap<Guid, SubscriptionRecord>,
    by_user: HashMap<UserKey, Covering>,
}

/// The subscriptions covering one user: never empty.
enum Covering {
    One(Guid),
    Many(Vec<Guid>),
}

impl Covering {
    fn add(&mut self, id: Guid) {
        match self {
            Covering::One(first) => *self = Covering::Many(vec![*first, id]),
            Covering::Many(ids) => ids.push(id),
        }
    }

    /// Removes `id`; false once none is left.
    fn remove(&mut self, id: Guid) -> bool {
        match self {
            Covering::One(only) => *only != id,
            Covering::Many(ids) => {
                ids.retain(|other| *other != id);
                match ids.as_slice() {
                    [] => false,
                    [last] => {
                        *self = Covering::One(*last);
                        true
                    }
                    _ => true,
                }
            }
        }
    }

    fn ids(&self) -> Vec<Guid> {
        match self {
            Covering::One(id) => vec![*id],
            Covering::Many(ids) => ids.clone(),
        }
    }
}

impl Subscriptions {
    fn insert(&mut self, record: SubscriptionRecord) {
        self.remove(record.id);
        for user in &record.users {
            let key = UserKey {
                tenant: record.tenant,
                user: *user,
            };
            match self.by_user.get_mut(&key) {
                Some(covering) => covering.add(record.id),
                None => {
                    self.by_user.insert(key, Covering::One(record.id));
                }
            }
        }
        self.by_id.insert(record.id, record);
    }

    fn remove(&mut self, id: Guid) -> bool {
        let Some(old) = self.by_id.remove(&id) else {
            return false;
        };
        for user in &old.users {
            let key = UserKey {
                tenant: old.tenant,
                user: *user,
            };
            if let Some(covering) = self.by_user.get_mut(&key)
                && !covering.remove(id)
            {
                self.by_user.remove(&key);
            }
        }
        true
    }

    pub(super) fn covers(&self, key: &UserKey) -> bool {
        self.by_user.contains_key(key)
    }
}

/// The outbox in memory: unclaimed entries by due instant, claimed ones
/// aside until they are settled.
#[derive(Default)]
pub(super) struct Outbox {
    queue: BTreeMap<(Timestamp, OutboxId), OutboxBody>,
    claimed: HashMap<OutboxId, Timestamp>,
    next_id: OutboxId,
}

impl Outbox {
    /// Gives a new entry its id; answers the id and the row to write.
    pub(super) fn reserve(
        &mut self,
        due: Timestamp,
        body: &OutboxBody,
    ) -> (OutboxId, OutboxKey, Vec<u8>) {
        let id = self.next_id;
        self.next_id += 1;
        (id, outbox_key(due, id), encode_body(body))
    }

    /// Takes `loaded`'s entries (all unclaimed), keeping ids unique.
    pub(super) fn replace_with(&mut self, loaded: Outbox) {
        let next_id = self.next_id.max(loaded.next_id);
        *self = loaded;
        self.next_id = next_id;
    }

    /// Makes a reserved entry claimable, once its row is queued to the writer.
    pub(super) fn commit(&mut self, due: Timestamp, id: OutboxId, body: OutboxBody) {
        self.queue.insert((due, id), body);
    }
}

pub(super) fn outbox_key(due: Timestamp, id: OutboxId) -> OutboxKey {
    let mut out = [0; 24];
    out[..16].copy_from_slice(&instant_bytes(due));
    out[16..].copy_from_slice(&id.to_be_bytes());
    out
}

const TAG_CHANGED: u8 = 0;
const TAG_OPAQUE: u8 = 1;

pub(crate) fn encode_body(body: &OutboxBody) -> Vec<u8> {
    match body {
        OutboxBody::Changed { key, at } => {
            let mut out = Vec::with_capacity(49);
            out.push(TAG_CHANGED);
            out.extend_from_slice(&key.tenant.to_bytes());
            out.extend_from_slice(&key.user.to_bytes());
            out.extend_from_slice(&instant_bytes(*at));
            out
        }
        OutboxBody::Opaque(bytes) => {
            let mut out = Vec::with_capacity(1 + bytes.len());
            out.push(TAG_OPAQUE);
            out.extend_from_slice(bytes);
            out
        }
    }
}

pub(crate) fn decode_body(bytes: &[u8]) -> Result<OutboxBody, StoreError> {
    let corrupt = || StoreError::Corrupt("outbox: malformed entry".to_owned());
    match bytes.split_first() {
        Some((&TAG_CHANGED, rest)) if rest.len() == 48 => Ok(OutboxBody::Changed {
            key: UserKey {
                tenant: guid(&rest[..16]),
                user: guid(&rest[16..32]),
            },
            at: instant_from_bytes(rest[32..].try_into().map_err(|_| corrupt())?)
                .ok_or_else(corrupt)?,
        }),
        Some((&TAG_OPAQUE, rest)) => Ok(OutboxBody::Opaque(rest.to_vec())),
        _ => Err(corrupt()),
    }
}

fn guid(bytes: &[u8]) -> Guid {
    let mut array = [0; 16];
    array.copy_from_slice(bytes);
    Guid::from_bytes(array)
}

/// tenant ‖ user count (u32, big-endian) ‖ users ‖ body.
pub(crate) fn encode_subscription(record: &SubscriptionRecord) -> Vec<u8> {
    let mut out = Vec::with_capacity(20 + 16 * record.users.len() + record.body.len());
    out.extend_from_slice(&record.tenant.to_bytes());
    out.extend_from_slice(&(record.users.len() as u32).to_be_bytes());
    for user in &record.users {
        out.extend_from_slice(&user.to_bytes());
    }
    out.extend_from_slice(&record.body);
    out
}

pub(crate) fn decode_subscription(
    id: Guid,
    bytes: &[u8],
) -> Result<SubscriptionRecord, StoreError> {
    let corrupt = || StoreError::Corrupt(format!("subscription {id}: malformed record"));
    if bytes.len() < 20 {
        return Err(corrupt());
    }
    let count = u32::from_be_bytes(bytes[16..20].try_into().map_err(|_| corrupt())?) as usize;
    let end = count
        .checked_mul(16)
        .and_then(|n| n.checked_add(20))
        .filter(|end| *end <= bytes.len())
        .ok_or_else(corrupt)?;
    Ok(SubscriptionRecord {
        id,
        tenant: guid(&bytes[..16]),
        users: bytes[20..end].chunks_exact(16).map(guid).collect(),
        body: bytes[end..].to_vec(),
    })
}

/// Reads both tables at start-up.
pub(super) fn load(txn: &ReadTransaction) -> Result<(Subscriptions, Outbox), StoreError> {
    let mut subscriptions = Subscriptions::default();
    for row in txn
        .open_table(SUBSCRIPTIONID_SUBSCRIPTION)
        .map_err(io)?
        .iter()
        .map_err(io)?
    {
        let (key, value) = row.map_err(io)?;
        let id = Guid::from_bytes(*key.value());
        subscriptions.insert(decode_subscription(id, value.value())?);
    }
    let mut outbox = Outbox::default();
    for row in txn.open_table(OUTBOX).map_err(io)?.iter().map_err(io)? {
        let (key, value) = row.map_err(io)?;
        outbox.insert_row(key.value(), value.value())?;
    }
    Ok((subscriptions, outbox))
}

/// Applies a write's subscription and outbox rows to loaded ones: how
/// recovery puts the log's writes on top of what redb holds.
pub(super) fn replay(
    subscriptions: &mut Subscriptions,
    outbox: &mut Outbox,
    op: &Op,
) -> Result<(), StoreError> {
    match op {
        Op::Subscription { id, record } => {
            let id = Guid::from_bytes(*id);
            match record {
                Some(record) => subscriptions.insert(decode_subscription(id, record)?),
                None => {
                    subscriptions.remove(id);
                }
            }
        }
        Op::UserRecord {
            outbox: Some((row, body)),
            ..
        } => outbox.insert_row(row, body)?,
        Op::Outbox { remove, insert } => {
            for row in remove {
                let key = row_key(row)?;
                outbox.queue.remove(&key);
            }
            for (row, body) in insert {
                outbox.insert_row(row, body)?;
            }
        }
        _ => {}
    }
    Ok(())
}

/// The (due, id) of an outbox row's key.
fn row_key(key: &OutboxKey) -> Result<(Timestamp, OutboxId), StoreError> {
    let due = instant_from_bytes(key[..16].try_into().expect("16 bytes"))
        .ok_or_else(|| StoreError::Corrupt("outbox: due out of range".to_owned()))?;
    let id = OutboxId::from_be_bytes(key[16..].try_into().expect("8 bytes"));
    Ok((due, id))
}

impl Outbox {
    /// Inserts a stored row (loading, or replaying the log).
    fn insert_row(&mut self, key: &OutboxKey, body: &[u8]) -> Result<(), StoreError> {
        let (due, id) = row_key(key)?;
        self.next_id = self.next_id.max(id + 1);
        self.queue.insert((due, id), decode_body(body)?);
        Ok(())
    }
}

impl EmbeddedStore {
    pub(super) fn put_subscription_in_memory(
        &self,
        record: SubscriptionRecord,
    ) -> Result<Step<()>, StoreError> {
        let _admitted = self.shared.admit()?;
        let mut subscriptions = self
            .subscriptions
            .write()
            .unwrap_or_else(PoisonError::into_inner);
        let pending = self.send(Op::Subscription {
            id: record.id.to_bytes(),
            record: Some(encode_subscription(&record)),
        })?;
        subscriptions.insert(record);
        Ok(Step::Wait((), pending))
    }

    pub(super) fn delete_subscription_in_memory(&self, id: Guid) -> Result<Step<bool>, StoreError> {
        let _admitted = self.shared.admit()?;
        let mut subscriptions = self
            .subscriptions
            .write()
            .unwrap_or_else(PoisonError::into_inner);
        if !subscriptions.by_id.contains_key(&id) {
            return Ok(Step::Done(false));
        }
        let pending = self.send(Op::Subscription {
            id: id.to_bytes(),
            record: None,
        })?;
        subscriptions.remove(id);
        Ok(Step::Wait(true, pending))
    }

    pub(super) fn subscription_now(&self, id: Guid) -> Option<SubscriptionRecord> {
        let subscriptions = self
            .subscriptions
            .read()
            .unwrap_or_else(PoisonError::into_inner);
        subscriptions.by_id.get(&id).cloned()
    }

    pub(super) fn subscriptions_now(&self) -> Vec<SubscriptionRecord> {
        let subscriptions = self
            .subscriptions
            .read()
            .unwrap_or_else(PoisonError::into_inner);
        subscriptions.by_id.values().cloned().collect()
    }

    pub(super) fn subscriptions_of_now(&self, key: UserKey) -> Vec<Guid> {
        let subscriptions = self
            .subscriptions
            .read()
            .unwrap_or_else(PoisonError::into_inner);
        subscriptions
            .by_user
            .get(&key)
            .map(Covering::ids)
            .unwrap_or_default()
    }

    pub(super) fn settle_in_memory(
        &self,
        settlement: OutboxSettlement,
    ) -> Result<Step<Vec<OutboxId>>, StoreError> {
        let _admitted = self.shared.admit()?;
        let mut outbox = self.outbox.lock().unwrap_or_else(PoisonError::into_inner);
        let mut remove = Vec::new();
        let mut insert = Vec::new();
        let row_of = |outbox: &mut Outbox, id: OutboxId| -> Option<OutboxKey> {
            if let Some(due) = outbox.claimed.remove(&id) {
                return Some(outbox_key(due, id));
            }
            // Not claimed: look it up in the queue (rare: a settlement of an
            // entry nobody claimed).
            let due = outbox
                .queue
                .keys()
                .find(|(_, other)| *other == id)
                .map(|(due, _)| *due)?;
            outbox.queue.remove(&(due, id));
            Some(outbox_key(due, id))
        };
        for id in settlement.done {
            remove.extend(row_of(&mut outbox, id));
        }
        let mut retried = Vec::new();
        for (id, due, body) in settlement.retry {
            if let Some(row) = row_of(&mut outbox, id) {
                remove.push(row);
                insert.push((outbox_key(due, id), encode_body(&body)));
                retried.push(((due, id), body));
            }
        }
        let mut ids = Vec::with_capacity(settlement.add.len());
        let mut added = Vec::with_capacity(settlement.add.len());
        for (due, body) in settlement.add {
            let id = outbox.next_id;
            outbox.next_id += 1;
            insert.push((outbox_key(due, id), encode_body(&body)));
            added.push(((due, id), body));
            ids.push(id);
        }
        if remove.is_empty() && insert.is_empty() {
            return Ok(Step::Done(ids));
        }
        let pending = self.send(Op::Outbox { remove, insert })?;
        outbox.queue.extend(retried);
        outbox.queue.extend(added);
        Ok(Step::Wait(ids, pending))
    }

    pub(super) fn claim_now(
        &self,
        until: Timestamp,
        limit: usize,
    ) -> Result<Vec<OutboxEntry>, StoreError> {
        // A claim is memory only, but it is work whose settlement is a
        // write: none is handed out while writes are refused.
        let _admitted = self.shared.admit()?;
        let mut outbox = self.outbox.lock().unwrap_or_else(PoisonError::into_inner);
        let keys: Vec<_> = outbox
            .queue
            .range(..=(until, OutboxId::MAX))
            .take(limit)
            .map(|(key, _)| *key)
            .collect();
        let mut entries = Vec::with_capacity(keys.len());
        for (due, id) in keys {
            if let Some(body) = outbox.queue.remove(&(due, id)) {
                outbox.claimed.insert(id, due);
                entries.push(OutboxEntry { id, due, body });
            }
        }
        Ok(entries)
    }

    pub(super) fn outbox_next_due_now(&self) -> Result<Option<Timestamp>, StoreError> {
        self.shared.check()?;
        let outbox = self.outbox.lock().unwrap_or_else(PoisonError::into_inner);
        Ok(outbox.queue.keys().next().map(|(due, _)| *due))
    }

    /// Entries in the outbox, claimed or not.
    pub(super) fn outbox_len(&self) -> usize {
        let outbox = self.outbox.lock().unwrap_or_else(PoisonError::into_inner);
        outbox.queue.len() + outbox.claimed.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_index_follows_subscriptions_covering_the_same_users() {
        let record = |id: u128, users: &[u128]| SubscriptionRecord {
            id: Guid::from_u128(id),
            tenant: Guid::from_u128(9),
            users: users.iter().map(|n| Guid::from_u128(*n)).collect(),
            body: Vec::new(),
        };
        let of = |subscriptions: &Subscriptions, user: u128| {
            let key = UserKey {
                tenant: Guid::from_u128(9),
                user: Guid::from_u128(user),
            };
            let mut ids = subscriptions
                .by_user
                .get(&key)
                .map(Covering::ids)
                .unwrap_or_default();
            ids.sort();
            ids
        };
        let mut subscriptions = Subscriptions::default();
        subscriptions.insert(record(1, &[10, 11]));
        subscriptions.insert(record(2, &[11, 12]));
        subscriptions.insert(record(3, &[11]));
        assert_eq!(of(&subscriptions, 10), [Guid::from_u128(1)]);
        assert_eq!(
            of(&subscriptions, 11),
            [1, 2, 3].map(Guid::from_u128).to_vec()
        );
        assert!(subscriptions.remove(Guid::from_u128(2)));
        assert_eq!(of(&subscriptions, 11), [1, 3].map(Guid::from_u128).to_vec());
        assert!(of(&subscriptions, 12).is_empty());
        // Replacing a subscription moves its entries.
        subscriptions.insert(record(1, &[12]));
        assert!(of(&subscriptions, 10).is_empty());
        assert_eq!(of(&subscriptions, 11), [Guid::from_u128(3)]);
        assert!(subscriptions.remove(Guid::from_u128(3)));
        assert!(subscriptions.remove(Guid::from_u128(1)));
        assert!(!subscriptions.remove(Guid::from_u128(1)));
        assert!(subscriptions.by_user.is_empty());
    }

    #[test]
    fn subscription_records_round_trip() {
        let record = SubscriptionRecord {
            id: Guid::from_u128(1),
            tenant: Guid::from_u128(2),
            users: vec![Guid::from_u128(3), Guid::from_u128(4)],
            body: b"{\"x\":1}".to_vec(),
        };
        let bytes = encode_subscription(&record);
        assert_eq!(decode_subscription(record.id, &bytes).unwrap(), record);
        assert!(decode_subscription(record.id, &bytes[..30]).is_err());
    }

    #[test]
    fn outbox_bodies_round_trip() {
        for body in [
            OutboxBody::Changed {
                key: UserKey {
                    tenant: Guid::from_u128(5),
                    user: Guid::from_u128(6),
                },
                at: Timestamp::from_second(1_800_000_000).unwrap(),
            },
            OutboxBody::Opaque(b"delivery".to_vec()),
            OutboxBody::Opaque(Vec::new()),
        ] {
            assert_eq!(decode_body(&encode_body(&body)).unwrap(), body);
        }
        assert!(decode_body(&[9]).is_err());
        assert!(decode_body(&[TAG_CHANGED, 1, 2]).is_err());
    }
}
