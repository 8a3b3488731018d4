//! The redb file's tables, their key encodings, and reading the file back
//! into memory at start-up.
//!
//! Table names follow conduwuit's `key_value` habit: the name says what the
//! key is and what the value is. Keys are fixed-width byte arrays whose byte
//! order is the order that range scans need. What a value's bytes mean is
//! [`crate::codec`]'s business, not this module's.

use std::collections::BTreeMap;

use jiff::Timestamp;
use presenced_domain::Guid;
use redb::{
    AccessGuard, Database, Range, ReadTransaction, ReadableDatabase, ReadableTable,
    ReadableTableMetadata, TableDefinition,
};

use super::memory::{KeyBytes, Memory, Resident};
use crate::{StoreError, Tenant, UserKey, codec};

/// The name of the single redb file inside the store's directory.
pub const FILE_NAME: &str = "presenced.redb";

/// The layout of the tables below; a file with another one is refused.
/// Version 2 adds the write-ahead log beside the file ([`META_APPLIED_SEQ`]);
/// a version 1 file (written before the log) is upgraded in place when
/// opened: its tables are the same, and it has no log to replay. Older
/// builds refuse a version 2 file rather than ignore its log.
pub(super) const SCHEMA_VERSION: u8 = 2;
const SCHEMA_VERSION_BEFORE_THE_LOG: u8 = 1;

/// tenant id ‖ user id → the user's record (facts and current deadline, see
/// [`codec::encode_user_record`]).
pub(super) const USERKEY_FACTS: TableDefinition<&[u8; 32], &[u8]> =
    TableDefinition::new("userkey_facts");

/// big-endian deadline ‖ tenant id ‖ user id → nothing: one row per user
/// with a deadline, so "who is due by T" is a range scan from the start.
pub(super) const DEADLINE_USERKEY: TableDefinition<&[u8; 48], ()> =
    TableDefinition::new("deadline_userkey");

/// tenant id → the tenant's record ([`codec::encode_tenant`]).
pub(super) const TENANTID_TENANT: TableDefinition<&[u8; 16], &[u8]> =
    TableDefinition::new("tenantid_tenant");

/// tenant id ‖ user id → the directory user's record ([`codec::encode_directory_user`]).
pub(super) const TENANTID_USERID_USER: TableDefinition<&[u8; 32], &[u8]> =
    TableDefinition::new("tenantid_userid_user");

/// subscription id → the subscription's record (see `notify`).
pub(super) const SUBSCRIPTIONID_SUBSCRIPTION: TableDefinition<&[u8; 16], &[u8]> =
    TableDefinition::new("subscriptionid_subscription");

/// big-endian due instant ‖ entry id → the outbox entry's body (see `notify`).
pub(super) const OUTBOX: TableDefinition<&[u8; 24], &[u8]> = TableDefinition::new("due_id_outbox");

/// Named single values: [`META_SCHEMA_VERSION`], [`META_MANUAL_CLOCK`].
pub(super) const META: TableDefinition<&str, &[u8]> = TableDefinition::new("meta");

pub(super) const META_SCHEMA_VERSION: &str = "schema_version";
pub(super) const META_MANUAL_CLOCK: &str = "manual_clock";
/// The sequence of the last log record the tables hold (u64, big-endian).
pub(super) const META_APPLIED_SEQ: &str = "log_applied_seq";

/// Maps any redb error to [`StoreError::Io`].
pub(super) fn io(error: impl std::fmt::Display) -> StoreError {
    StoreError::Io(error.to_string())
}

/// tenant id ‖ user id.
pub(super) fn user_key_bytes(key: UserKey) -> KeyBytes {
    let mut out = [0; 32];
    out[..16].copy_from_slice(&key.tenant.to_bytes());
    out[16..].copy_from_slice(&key.user.to_bytes());
    out
}

pub(super) fn user_key_from_bytes(bytes: &KeyBytes) -> UserKey {
    let (tenant, user) = bytes.split_at(16);
    UserKey {
        tenant: guid_from_slice(tenant),
        user: guid_from_slice(user),
    }
}

fn guid_from_slice(bytes: &[u8]) -> Guid {
    let mut array = [0; 16];
    array.copy_from_slice(bytes);
    Guid::from_bytes(array)
}

/// An instant as 16 bytes whose byte order is the instants' order: the
/// nanoseconds since the epoch, sign bit flipped, big-endian.
pub(super) fn instant_bytes(at: Timestamp) -> [u8; 16] {
    ((at.as_nanosecond() as u128) ^ (1 << 127)).to_be_bytes()
}

/// The inverse of [`instant_bytes`]; `None` outside jiff's range.
pub(super) fn instant_from_bytes(bytes: [u8; 16]) -> Option<Timestamp> {
    Timestamp::from_nanosecond((u128::from_be_bytes(bytes) ^ (1 << 127)) as i128).ok()
}

/// deadline ‖ user key, the key of [`DEADLINE_USERKEY`].
pub(super) fn deadline_key(at: Timestamp, user: &[u8; 32]) -> [u8; 48] {
    let mut out = [0; 48];
    out[..16].copy_from_slice(&instant_bytes(at));
    out[16..].copy_from_slice(user);
    out
}

/// The greatest [`DEADLINE_USERKEY`] key at `at`: every user due at or before
/// `at` sorts at or before it.
pub(super) fn last_deadline_key(at: Timestamp) -> [u8; 48] {
    deadline_key(at, &[0xff; 32])
}

pub(super) fn deadline_from_key(bytes: &[u8; 48]) -> Result<(UserKey, Timestamp), StoreError> {
    let mut instant = [0; 16];
    instant.copy_from_slice(&bytes[..16]);
    let nanos = (u128::from_be_bytes(instant) ^ (1 << 127)) as i128;
    let at = Timestamp::from_nanosecond(nanos)
        .map_err(|_| StoreError::Corrupt("deadline_userkey: deadline out of range".to_owned()))?;
    let mut user = [0; 32];
    user.copy_from_slice(&bytes[16..]);
    Ok((user_key_from_bytes(&user), at))
}

/// Creates missing tables and records the schema version in a new file, or
/// checks it in an existing one.
pub(super) fn prepare(db: &Database) -> Result<(), StoreError> {
    let txn = db.begin_write().map_err(io)?;
    {
        txn.open_table(USERKEY_FACTS).map_err(io)?;
        txn.open_table(DEADLINE_USERKEY).map_err(io)?;
        txn.open_table(TENANTID_TENANT).map_err(io)?;
        txn.open_table(TENANTID_USERID_USER).map_err(io)?;
        txn.open_table(SUBSCRIPTIONID_SUBSCRIPTION).map_err(io)?;
        txn.open_table(OUTBOX).map_err(io)?;
        let mut meta = txn.open_table(META).map_err(io)?;
        let stored = meta
            .get(META_SCHEMA_VERSION)
            .map_err(io)?
            .map(|guard| guard.value().to_vec());
        match stored.as_deref() {
            None => {
                meta.insert(META_SCHEMA_VERSION, [SCHEMA_VERSION].as_slice())
                    .map_err(io)?;
            }
            Some([SCHEMA_VERSION]) => {}
            Some([SCHEMA_VERSION_BEFORE_THE_LOG]) => {
                tracing::info!("upgrading {FILE_NAME} to schema version {SCHEMA_VERSION}");
                meta.insert(META_SCHEMA_VERSION, [SCHEMA_VERSION].as_slice())
                    .map_err(io)?;
            }
            Some(other) => {
                return Err(StoreError::Corrupt(format!(
                    "{FILE_NAME} has schema version {other:?}; this build reads version {SCHEMA_VERSION}"
                )));
            }
        }
    }
    txn.commit().map_err(io)
}

/// The sequence of the last log record the file holds (0 before any).
pub(super) fn applied_seq(db: &Database) -> Result<u64, StoreError> {
    let txn = db.begin_read().map_err(io)?;
    let meta = txn.open_table(META).map_err(io)?;
    match meta.get(META_APPLIED_SEQ).map_err(io)? {
        None => Ok(0),
        Some(value) => {
            let bytes: [u8; 8] = value.value().try_into().map_err(|_| {
                StoreError::Corrupt(format!("{FILE_NAME}: {META_APPLIED_SEQ} is not 8 bytes"))
            })?;
            Ok(u64::from_be_bytes(bytes))
        }
    }
}

/// What start-up reads besides the per-user records.
pub(super) struct Loaded {
    pub tenants: BTreeMap<Guid, Tenant>,
    pub manual_clock: Option<Timestamp>,
    pub subscriptions: super::notify::Subscriptions,
    pub outbox: super::notify::Outbox,
}

/// Streams every table into memory. Every record is decoded once here, so a
/// corrupt one stops start-up (naming the user) instead of failing later
/// reads: memory only ever holds records known to decode.
pub(super) fn load(db: &Database, memory: &Memory) -> Result<Loaded, StoreError> {
    let txn = db.begin_read().map_err(io)?;

    // Presence records and directory users share their key order: one merge
    // pass makes each user's resident in a single allocation.
    let records = txn.open_table(USERKEY_FACTS).map_err(io)?;
    let users = txn.open_table(TENANTID_USERID_USER).map_err(io)?;
    let largest = records.len().map_err(io)?.max(users.len().map_err(io)?);
    memory.reserve(usize::try_from(largest).unwrap_or(0));
    let (mut record_rows, mut user_rows) = (records.iter().map_err(io)?, users.iter().map_err(io)?);
    let (mut record, mut user) = (next_row(&mut record_rows)?, next_row(&mut user_rows)?);
    loop {
        let key = match (&record, &user) {
            (None, None) => break,
            (Some((a, _)), Some((b, _))) => *a.min(b),
            (Some((key, _)), None) | (None, Some((key, _))) => *key,
        };
        let this_record = match record.take_if(|(k, _)| *k == key) {
            Some((_, value)) => {
                record = next_row(&mut record_rows)?;
                Some(value)
            }
            None => None,
        };
        let this_user = match user.take_if(|(k, _)| *k == key) {
            Some((_, value)) => {
                user = next_row(&mut user_rows)?;
                Some(value)
            }
            None => None,
        };
        let user_key = user_key_from_bytes(&key);
        let facts = this_record.as_ref().map(|guard| guard.value());
        let directory = this_user.as_ref().map(|guard| guard.value());
        if let Some(bytes) = facts {
            codec::decode_user_record(bytes).map_err(|e| corrupt_user(user_key, e))?;
        }
        if let Some(bytes) = directory {
            codec::decode_directory_user(user_key.user, bytes)
                .map_err(|e| corrupt_user(user_key, e))?;
        }
        memory.insert(Resident::new(&key, directory, facts));
    }

    let tenants = load_tenants(&txn)?;
    let manual_clock = load_manual_clock(&txn)?;
    let (subscriptions, outbox) = super::notify::load(&txn)?;
    Ok(Loaded {
        tenants,
        manual_clock,
        subscriptions,
        outbox,
    })
}

/// One row of a table keyed by user: the key, and the value still in redb's page.
/// Every tenant of the directory.
pub(super) fn load_tenants(txn: &ReadTransaction) -> Result<BTreeMap<Guid, Tenant>, StoreError> {
    let mut tenants = BTreeMap::new();
    for row in txn
        .open_table(TENANTID_TENANT)
        .map_err(io)?
        .iter()
        .map_err(io)?
    {
        let (key, value) = row.map_err(io)?;
        let id = Guid::from_bytes(*key.value());
        tenants.insert(id, codec::decode_tenant(id, value.value())?);
    }
    Ok(tenants)
}

/// The manual clock's recorded reading.
pub(super) fn load_manual_clock(txn: &ReadTransaction) -> Result<Option<Timestamp>, StoreError> {
    let meta = txn.open_table(META).map_err(io)?;
    match meta.get(META_MANUAL_CLOCK).map_err(io)? {
        Some(value) => Ok(Some(codec::decode_timestamp(value.value())?)),
        None => Ok(None),
    }
}

type Row<'a> = (KeyBytes, AccessGuard<'a, &'static [u8]>);

fn next_row<'a>(
    rows: &mut Range<'a, &'static [u8; 32], &'static [u8]>,
) -> Result<Option<Row<'a>>, StoreError> {
    match rows.next() {
        None => Ok(None),
        Some(row) => {
            let (key, value) = row.map_err(io)?;
            Ok(Some((*key.value(), value)))
        }
    }
}

fn corrupt_user(key: UserKey, error: StoreError) -> StoreError {
    StoreError::Corrupt(format!(
        "user {} of tenant {}: {error}",
        key.user, key.tenant
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deadline_keys_sort_as_their_instants() {
        let user = [7; 32];
        let instants = [
            Timestamp::MIN,
            Timestamp::from_nanosecond(-1).unwrap(),
            Timestamp::UNIX_EPOCH,
            Timestamp::from_nanosecond(1).unwrap(),
            Timestamp::from_second(1_800_000_000).unwrap(),
            Timestamp::MAX,
        ];
        let keys: Vec<_> = instants.iter().map(|at| deadline_key(*at, &user)).collect();
        assert!(keys.windows(2).all(|pair| pair[0] < pair[1]));
        for (at, key) in instants.iter().zip(&keys) {
            assert_eq!(deadline_from_key(key).unwrap().1, *at);
            assert!(*key <= last_deadline_key(*at));
        }
    }
}
