//! Giving space back after deletes. redb reuses the pages that deletes free
//! but does not shrink its file by itself, so a store that once held many
//! subscriptions or outbox entries would keep its largest size for ever.
//! [`Database::compact`] moves the live pages down and truncates the file;
//! it needs the only handle, and nothing may write meanwhile.
//!
//! It runs when the file is mostly free space ([`worth_compacting`]): at
//! start-up, before memory is loaded, and in the writer thread once the
//! store has been idle for a while after deletes (see [`super::writer`]).

use std::path::Path;
use std::sync::{Arc, PoisonError};
use std::time::{Duration, Instant};

use redb::Database;

use super::tables::io;
use super::writer::Shared;
use crate::StoreError;

/// Files smaller than this are left alone: there is little to give back.
const SMALLEST_FILE: u64 = 4 * 1024 * 1024;

/// Whether the file is large and at least half of it free pages.
pub(super) fn worth_compacting(db: &Database, path: &Path) -> Result<bool, StoreError> {
    let length = std::fs::metadata(path).map_err(io)?.len();
    if length < SMALLEST_FILE {
        return Ok(false);
    }
    let txn = db.begin_write().map_err(io)?;
    let stats = txn.stats().map_err(io)?;
    txn.abort().map_err(io)?;
    let used = stats.allocated_pages() * stats.page_size() as u64;
    Ok(used.saturating_mul(2) < length)
}

/// Compacts the file if [`worth_compacting`]; answers the file's length
/// before and after, if it ran.
pub(super) fn compact_if_worth_it(
    db: &mut Database,
    path: &Path,
) -> Result<Option<(u64, u64)>, StoreError> {
    if !worth_compacting(db, path)? {
        return Ok(None);
    }
    let before = std::fs::metadata(path).map_err(io)?.len();
    let started = Instant::now();
    db.compact().map_err(io)?;
    let after = std::fs::metadata(path).map_err(io)?.len();
    tracing::info!(
        before_bytes = before,
        after_bytes = after,
        took_ms = started.elapsed().as_millis() as u64,
        "store file compacted"
    );
    Ok(Some((before, after)))
}

/// How long the writer waits for `due()`'s read transactions to let go of
/// the handle before it gives up compacting this time.
const HANDLE_WAIT: Duration = Duration::from_secs(1);

/// Compacts the store's file from the writer thread (nothing else writes):
/// takes the only handle, compacts, puts it back. Reads of `due()` that find
/// no handle meanwhile answer an error and are retried by their callers.
pub(super) fn compact_in_place(shared: &Shared, path: &Path) -> Result<(), StoreError> {
    let Some(db) = shared.database() else {
        return Ok(());
    };
    if !worth_compacting(&db, path)? {
        return Ok(());
    }
    drop(db);
    let taken = shared
        .db
        .write()
        .unwrap_or_else(PoisonError::into_inner)
        .take();
    let Some(mut db) = taken else {
        return Ok(());
    };
    let since = Instant::now();
    let mut exclusive = loop {
        match Arc::try_unwrap(db) {
            Ok(exclusive) => break exclusive,
            Err(shared_still) if since.elapsed() < HANDLE_WAIT => {
                db = shared_still;
                std::thread::sleep(Duration::from_millis(1));
            }
            Err(shared_still) => {
                *shared.db.write().unwrap_or_else(PoisonError::into_inner) = Some(shared_still);
                return Ok(());
            }
        }
    };
    let result = compact_if_worth_it(&mut exclusive, path);
    *shared.db.write().unwrap_or_else(PoisonError::into_inner) = Some(Arc::new(exclusive));
    result.map(|_| ())
}
