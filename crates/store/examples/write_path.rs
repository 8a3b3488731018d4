//! Measures candidate durable write paths for the embedded store on this
//! machine, so that the choice rests on numbers:
//!
//! - `redb-per-batch`: one redb transaction with `Durability::Immediate` per
//!   group-committed batch (the write path before the log);
//! - `log+redb-per-batch`: each batch appended to a checksummed log and
//!   `fdatasync`ed, then written to redb with `Durability::None`;
//! - `log+redb-lazy`: the same log, with redb written only every
//!   `APPLY_EVERY` writes, in one `Durability::None` transaction;
//!
//! each with a durable redb checkpoint (and the log emptied) every
//! `CHECKPOINT_BYTES` of log. Batches are `BATCH` writes of a ~110-byte
//! record and the move of its deadline row, to random users of a table
//! filled beforehand, the shape of a busy `setPresence` load.
//!
//! Usage: `cargo run --release -p presenced-store --example write_path -- [users] [writes]`
//! (defaults 100000 and 200000; both bounded to 2,000,000). It writes in a
//! temporary directory and removes it.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::time::{Duration, Instant};

use redb::{Database, Durability, ReadableDatabase, TableDefinition};

const FACTS: TableDefinition<&[u8; 32], &[u8]> = TableDefinition::new("userkey_facts");
const DEADLINES: TableDefinition<&[u8; 48], ()> = TableDefinition::new("deadline_userkey");
const BATCH: usize = 64;
const APPLY_EVERY: usize = 8192;
const CHECKPOINT_BYTES: u64 = 32 * 1024 * 1024;
const RECORD: usize = 110;
const LIMIT: usize = 2_000_000;

fn main() {
    let mut args = std::env::args().skip(1);
    let users: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(100_000);
    let writes: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(200_000);
    let (users, writes) = (users.clamp(1, LIMIT), writes.clamp(BATCH, LIMIT));
    println!("{users} users, {writes} writes in batches of {BATCH}");
    println!(
        "{:<20} {:>10} {:>10} {:>10} {:>10}",
        "path", "writes/s", "fsync ms", "redb ms", "total ms"
    );
    for path in [Path::RedbPerBatch, Path::LogPerBatch, Path::LogLazy] {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let db = Database::builder()
            .set_cache_size(16 * 1024 * 1024)
            .create(dir.path().join("bench.redb"))
            .expect("redb opens");
        fill(&db, users);
        let log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(dir.path().join("bench.wal"))
            .expect("log opens");
        let figures = run(path, &db, log, users, writes);
        println!(
            "{:<20} {:>10.0} {:>10.0} {:>10.0} {:>10.0}",
            path.name(),
            writes as f64 / figures.total.as_secs_f64(),
            figures.fsync.as_secs_f64() * 1e3,
            figures.redb.as_secs_f64() * 1e3,
            figures.total.as_secs_f64() * 1e3,
        );
    }
}

#[derive(Clone, Copy)]
enum Path {
    RedbPerBatch,
    LogPerBatch,
    LogLazy,
}

impl Path {
    fn name(self) -> &'static str {
        match self {
            Path::RedbPerBatch => "redb-per-batch",
            Path::LogPerBatch => "log+redb-per-batch",
            Path::LogLazy => "log+redb-lazy",
        }
    }
}

#[derive(Default)]
struct Figures {
    fsync: Duration,
    redb: Duration,
    total: Duration,
}

/// A small xorshift generator: the same sequence every run, no dependency.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

fn key(user: usize) -> [u8; 32] {
    let mut key = [0; 32];
    key[..16].copy_from_slice(&[7; 16]);
    // Spread users over the key space as random GUIDs are.
    let spread = (user as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    key[16..24].copy_from_slice(&spread.to_be_bytes());
    key[24..].copy_from_slice(&(user as u64).to_be_bytes());
    key
}

fn deadline_key(at: u64, user: &[u8; 32]) -> [u8; 48] {
    let mut out = [0; 48];
    out[8..16].copy_from_slice(&at.to_be_bytes());
    out[16..].copy_from_slice(user);
    out
}

fn fill(db: &Database, users: usize) {
    let txn = db.begin_write().expect("write");
    {
        let mut facts = txn.open_table(FACTS).expect("table");
        let mut deadlines = txn.open_table(DEADLINES).expect("table");
        for user in 0..users {
            let key = key(user);
            facts.insert(&key, [1; RECORD].as_slice()).expect("insert");
            deadlines
                .insert(&deadline_key(0, &key), ())
                .expect("insert");
        }
    }
    txn.commit().expect("commit");
}

/// One write: the user, their new record, the deadline moved from, to.
type Write1 = ([u8; 32], [u8; RECORD], u64, u64);

fn run(path: Path, db: &Database, mut log: File, users: usize, writes: usize) -> Figures {
    let mut rng = Rng(0x2545_f491_4f6c_dd1d);
    let mut deadline = vec![0u64; users];
    let mut figures = Figures::default();
    let mut pending: Vec<Write1> = Vec::new();
    let mut log_bytes = 0u64;
    let mut buffer = Vec::new();
    let started = Instant::now();
    for _ in 0..writes / BATCH {
        let batch: Vec<Write1> = (0..BATCH)
            .map(|_| {
                let user = (rng.next() % users as u64) as usize;
                let old = deadline[user];
                deadline[user] = rng.next();
                let mut record = [0; RECORD];
                record[..8].copy_from_slice(&deadline[user].to_le_bytes());
                (key(user), record, old, deadline[user])
            })
            .collect();
        match path {
            Path::RedbPerBatch => {
                let at = Instant::now();
                apply(db, &batch, Durability::Immediate);
                figures.redb += at.elapsed();
            }
            Path::LogPerBatch | Path::LogLazy => {
                buffer.clear();
                for (key, record, old, new) in &batch {
                    buffer.extend_from_slice(key);
                    buffer.extend_from_slice(record);
                    buffer.extend_from_slice(&old.to_le_bytes());
                    buffer.extend_from_slice(&new.to_le_bytes());
                }
                let check = xxhash_rust::xxh3::xxh3_64(&buffer);
                buffer.extend_from_slice(&check.to_le_bytes());
                let at = Instant::now();
                log.write_all(&buffer).expect("log write");
                log.sync_data().expect("fdatasync");
                figures.fsync += at.elapsed();
                log_bytes += buffer.len() as u64;
                pending.extend(batch);
                let lazy = matches!(path, Path::LogLazy);
                let checkpoint = log_bytes >= CHECKPOINT_BYTES;
                if !lazy || pending.len() >= APPLY_EVERY || checkpoint {
                    let at = Instant::now();
                    let durability = if checkpoint {
                        Durability::Immediate
                    } else {
                        Durability::None
                    };
                    apply(db, &pending, durability);
                    pending.clear();
                    if checkpoint {
                        log.set_len(0).expect("truncate");
                        log.sync_data().expect("fdatasync");
                        log_bytes = 0;
                    }
                    figures.redb += at.elapsed();
                }
            }
        }
    }
    if !pending.is_empty() {
        let at = Instant::now();
        apply(db, &pending, Durability::Immediate);
        figures.redb += at.elapsed();
    }
    figures.total = started.elapsed();
    // Every write reached redb.
    let txn = db.begin_read().expect("read");
    let facts = txn.open_table(FACTS).expect("table");
    assert_eq!(
        redb::ReadableTableMetadata::len(&facts).expect("len"),
        users as u64
    );
    figures
}

fn apply(db: &Database, writes: &[Write1], durability: Durability) {
    let mut txn = db.begin_write().expect("write");
    txn.set_durability(durability).expect("durability");
    {
        let mut facts = txn.open_table(FACTS).expect("table");
        let mut deadlines = txn.open_table(DEADLINES).expect("table");
        for (key, record, old, new) in writes {
            facts.insert(key, record.as_slice()).expect("insert");
            deadlines.remove(&deadline_key(*old, key)).expect("remove");
            deadlines
                .insert(&deadline_key(*new, key), ())
                .expect("insert");
        }
    }
    txn.commit().expect("commit");
}
