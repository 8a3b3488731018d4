//! Recovery from a failed commit (a full disk, an I/O error): reopening the
//! file, putting memory back to what the file holds, and probing the disk
//! until it takes writes again. The writer thread drives it (see
//! [`super::writer`]).
//!
//! Why memory has to be put back: a write reaches memory when it is queued,
//! before its commit (that is what keeps one user's writes in the same order
//! in memory and in the file). When the commit fails, memory holds writes
//! that never reached the file — and so may every write queued behind them,
//! each applied on top of them. They are all answered as failed; the users
//! they touched get their residents back from the file, and the small
//! wholesale parts of the store (tenants, the manual clock, subscriptions,
//! the outbox) are read back whole. Claims of the outbox are dropped with it:
//! every entry is claimable again, so a delivery whose settlement was lost is
//! made again (delivery is at least once).
//!
//! What "the file holds" means: the redb file's last durable transaction,
//! with the write-ahead log's records after it on top (see
//! [`super::writer`]): redb lags the log, and a reopen loses redb's
//! non-durable transactions, never the log's records.
//!
//! Why the file is reopened: after an I/O error redb answers every later
//! call on that handle with "previous I/O error". Reopening is safe: the
//! file holds the last committed state, and memory holds nothing else that
//! was acknowledged.

use std::collections::{BTreeMap, HashMap};
use std::io::Write;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::{Duration, Instant};

use jiff::Timestamp;
use presenced_domain::Guid;
use redb::{Database, Durability, ReadableDatabase};

use super::memory::{self, KeyBytes, Memory, Resident};
use super::notify::{Outbox, Subscriptions};
use super::tables::{self, META, TENANTID_USERID_USER, USERKEY_FACTS, io};
use super::writer::{Op, Shared};
use crate::{StoreError, Tenant, codec};

/// The store's memory, as the writer thread sees it to put it back.
pub(super) struct Views {
    pub memory: Arc<Memory>,
    pub tenants: Arc<RwLock<BTreeMap<Guid, Tenant>>>,
    pub manual_clock: Arc<Mutex<Option<Timestamp>>>,
    pub subscriptions: Arc<RwLock<Subscriptions>>,
    pub outbox: Arc<Mutex<Outbox>>,
}

type Bytes = Vec<u8>;

/// How to open the file again.
#[derive(Debug, Clone)]
pub(super) struct Reopen {
    pub path: PathBuf,
    pub cache_bytes: usize,
}

impl Reopen {
    pub(super) fn open(&self) -> Result<Database, StoreError> {
        Database::builder()
            .set_cache_size(self.cache_bytes)
            .create(&self.path)
            .map_err(io)
    }
}

/// How long a reopen waits for the read transactions of `due()` that still
/// hold the old handle.
const HANDLE_WAIT: Duration = Duration::from_secs(10);

/// Closes the file's handle and opens it again; the new handle is the
/// store's from then on.
pub(super) fn reopen(shared: &Shared, reopen: &Reopen) -> Result<Arc<Database>, StoreError> {
    let old = shared
        .db
        .write()
        .unwrap_or_else(PoisonError::into_inner)
        .take();
    if let Some(mut old) = old {
        // A read transaction of `due()` may still hold a clone for a moment;
        // redb allows one handle per file, so wait for it to go.
        let since = Instant::now();
        loop {
            match Arc::try_unwrap(old) {
                Ok(db) => {
                    drop(db);
                    break;
                }
                Err(still_shared) if since.elapsed() < HANDLE_WAIT => {
                    old = still_shared;
                    std::thread::sleep(Duration::from_millis(1));
                }
                Err(still_shared) => {
                    *shared.db.write().unwrap_or_else(PoisonError::into_inner) = Some(still_shared);
                    return Err(StoreError::Io(
                        "the store's file is still in use; cannot reopen it".to_owned(),
                    ));
                }
            }
        }
    }
    let db = Arc::new(reopen.open()?);
    *shared.db.write().unwrap_or_else(PoisonError::into_inner) = Some(Arc::clone(&db));
    Ok(db)
}

/// The file's handle, reopened if an earlier attempt left none.
pub(super) fn current_or_reopen(
    shared: &Shared,
    reopen: &Reopen,
) -> Result<Arc<Database>, StoreError> {
    match shared.database() {
        Some(db) => Ok(db),
        None => self::reopen(shared, reopen),
    }
}

/// Puts back the residents of `keys`, and the tenants, the manual clock,
/// the subscriptions and the outbox whole, as the file holds them with
/// `tail` (the log's writes after what the file holds) on top. Run while the
/// store serves nothing (`RESTORING`), so no call sees memory halfway.
pub(super) fn restore(
    db: &Database,
    views: &Views,
    keys: &[KeyBytes],
    tail: &[Op],
) -> Result<(), StoreError> {
    let txn = db.begin_read().map_err(io)?;
    // Each key's directory entry and facts.
    let mut residents: HashMap<KeyBytes, (Option<Bytes>, Option<Bytes>)> = HashMap::new();
    {
        let facts = txn.open_table(USERKEY_FACTS).map_err(io)?;
        let users = txn.open_table(TENANTID_USERID_USER).map_err(io)?;
        for key in keys {
            let record = facts.get(key).map_err(io)?.map(|g| g.value().to_vec());
            let directory = users.get(key).map_err(io)?.map(|g| g.value().to_vec());
            residents.insert(*key, (directory, record));
        }
    }
    let mut tenants = tables::load_tenants(&txn)?;
    let mut manual_clock = tables::load_manual_clock(&txn)?;
    let (mut subscriptions, mut outbox) = super::notify::load(&txn)?;
    for op in tail {
        match op {
            Op::UserRecord { key, record, .. } => {
                if let Some((_, facts)) = residents.get_mut(key) {
                    *facts = Some(record.clone());
                }
            }
            Op::Directory {
                tenants: tenant_rows,
                users,
            } => {
                for (id, record) in tenant_rows {
                    let id = Guid::from_bytes(*id);
                    tenants.insert(id, codec::decode_tenant(id, record)?);
                }
                for (key, record) in users {
                    if let Some((directory, _)) = residents.get_mut(key) {
                        *directory = Some(record.clone());
                    }
                }
            }
            Op::RemoveUser(key) => {
                if let Some((directory, _)) = residents.get_mut(key) {
                    *directory = None;
                }
            }
            Op::ManualClock(at) => manual_clock = Some(*at),
            Op::Subscription { .. } | Op::Outbox { .. } | Op::Barrier | Op::Group(_) => {}
        }
        super::notify::replay(&mut subscriptions, &mut outbox, op)?;
    }
    for (key, (directory, record)) in &residents {
        let mut shard = memory::write(views.memory.shard(key));
        match (directory, record) {
            (None, None) => {
                shard.remove(key);
            }
            _ => {
                shard.replace(Resident::new(key, directory.as_deref(), record.as_deref()));
            }
        }
    }
    *views
        .tenants
        .write()
        .unwrap_or_else(PoisonError::into_inner) = tenants;
    *views
        .manual_clock
        .lock()
        .unwrap_or_else(PoisonError::into_inner) = manual_clock;
    *views
        .subscriptions
        .write()
        .unwrap_or_else(PoisonError::into_inner) = subscriptions;
    views
        .outbox
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .replace_with(outbox);
    Ok(())
}

/// How much a probe writes beside the file before it tries a commit: a disk
/// with less room than this would most likely fail the next batch again.
const PROBE_BYTES: usize = 256 * 1024;

/// The META key a probe commit writes (the instant of the probe).
const META_WRITE_PROBE: &str = "write_probe";

/// Whether the disk takes writes again: a scratch file of [`PROBE_BYTES`]
/// beside the store's file is written, synced and removed, then one small
/// commit is made. A failed commit leaves the handle refusing every call, so
/// it is reopened for the next probe.
pub(super) fn probe(shared: &Shared, reopen: &Reopen) -> Result<(), StoreError> {
    let scratch = reopen.path.with_extension("redb.probe");
    let written = (|| -> std::io::Result<()> {
        let mut file = std::fs::File::create(&scratch)?;
        file.write_all(&vec![0; PROBE_BYTES])?;
        file.sync_all()
    })();
    let _ = std::fs::remove_file(&scratch);
    written.map_err(io)?;
    let db = current_or_reopen(shared, reopen)?;
    let committed = (|| -> Result<(), redb::Error> {
        let mut txn = db.begin_write()?;
        txn.set_durability(Durability::Immediate)?;
        {
            let mut meta = txn.open_table(META)?;
            let now = Timestamp::now().as_nanosecond().to_be_bytes();
            meta.insert(META_WRITE_PROBE, now.as_slice())?;
        }
        txn.commit()?;
        Ok(())
    })();
    if let Err(error) = committed {
        drop(db);
        let _ = self::reopen(shared, reopen);
        return Err(io(error));
    }
    Ok(())
}
