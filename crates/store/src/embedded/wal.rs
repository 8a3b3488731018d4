//! The write-ahead log: what makes a batch of writes durable.
//!
//! The writer appends each group-committed batch as one record and
//! `fdatasync`s the file before it acknowledges any write of the batch; the
//! redb file is written later, many batches per transaction (see
//! [`super::writer`]). A record is
//!
//! ```text
//! payload length (u32 LE) ‖ sequence (u64 LE) ‖ payload ‖ XXH3-64 of all before (u64 LE)
//! ```
//!
//! after a file header ([`MAGIC`]). The payload is the batch's writes
//! ([`Op`]s) encoded here. Sequences grow by one from record to record and
//! across the log being emptied: redb's `meta` table records the last
//! sequence its tables hold (`applied_seq`), so start-up and recovery replay
//! exactly the records after it.
//!
//! Reading stops at the first record that is incomplete, fails its
//! checksum, or breaks the sequence: that is where a crash tore the tail
//! (or the disk damaged it), and nothing from there on was acknowledged as
//! durable by this log. Opening truncates the file there, so later appends
//! follow the last complete record. A record whose checksum holds but whose
//! payload does not decode is not a torn write: opening refuses it.
//!
//! The log is reclaimed while it is being appended to by segments: the
//! writer retires the active file ([`Log::roll`]: it becomes
//! `presenced.wal.prev` and a new, empty `presenced.wal` takes the appends,
//! sequences going on), asks for a durable redb commit up to the retired
//! segment's last sequence, and deletes the segment once that commit is done
//! ([`Log::drop_retired`]). At most one segment is retired at a time.
//! Opening reads the retired segment, then the active one; a retired
//! segment whose records redb holds all is deleted. When the store is idle
//! or closes, a durable commit holds every record and both are emptied
//! ([`Log::clear`]). A segment is never dropped or emptied before a durable
//! redb commit holds its last sequence, so nothing acknowledged is lost.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

use jiff::Timestamp;
use xxhash_rust::xxh3::xxh3_64;

use super::tables::io;
use super::writer::Op;
use crate::StoreError;

/// The name of the log inside the store's directory.
pub const LOG_FILE_NAME: &str = "presenced.wal";

/// The file header: names the format and its version.
pub(super) const MAGIC: &[u8; 8] = b"PRSDWAL1";

/// Length, sequence before the payload; checksum after it.
const HEAD: usize = 4 + 8;
const TAIL: usize = 8;

/// The largest payload a record may claim; a longer claimed length is
/// treated as a torn or damaged header.
const MAX_PAYLOAD: usize = 1 << 30;

/// The log, open for appending.
pub(super) struct Log {
    file: File,
    path: PathBuf,
    /// The file's length: where the next record goes.
    len: u64,
    /// The sequence of the last record written (or of the last one redb
    /// held when the log was opened empty).
    last_seq: u64,
    /// Scratch space for encoding a record.
    buffer: Vec<u8>,
    /// The retired segment (see [`Log::roll`]) and its last sequence.
    retired: Option<(PathBuf, u64)>,
}

/// The most encoding space kept between appends.
const KEEP_BUFFER: usize = 1 << 20;

/// A record read back: its sequence and writes.
pub(super) struct Record {
    pub seq: u64,
    pub ops: Vec<Op>,
}

impl Log {
    /// Opens the log at `path` (and its retired segment, if one is left),
    /// creating it if missing. Truncates a torn or damaged tail, and
    /// answers the complete records after `applied` (the last sequence the
    /// redb file holds), oldest first.
    pub(super) fn open(path: &Path, applied: u64) -> Result<(Log, Vec<Record>), StoreError> {
        let retired_path = retired_path(path);
        let mut records = Vec::new();
        let mut retired = None;
        if retired_path.exists() {
            // Sealed complete before it was renamed: its records come first.
            let bytes = std::fs::read(&retired_path).map_err(io)?;
            let (older, _, last) = scan(&bytes, applied)?;
            if older.is_empty() {
                remove(&retired_path).map_err(io)?;
            } else {
                retired = last.map(|last| (retired_path.clone(), last));
                records = older;
            }
        }
        if !path.exists() {
            create(path).map_err(io)?;
        }
        let bytes = std::fs::read(path).map_err(io)?;
        let (newer, mut valid, last) = scan(&bytes, applied)?;
        // Appends go to the end, wherever a cut left it.
        let file = OpenOptions::new().append(true).open(path).map_err(io)?;
        if valid < bytes.len() {
            tracing::warn!(
                path = %path.display(),
                kept_bytes = valid,
                dropped_bytes = bytes.len() - valid,
                "the store's log ends in an incomplete or damaged record; \
                 it is cut after the last complete one"
            );
        }
        if newer.is_empty() && retired.is_none() {
            // Every complete record is in redb already (a stop between a
            // checkpoint and the log being emptied): start the log afresh,
            // so that its sequences follow redb's.
            valid = MAGIC.len();
        }
        if valid < bytes.len() {
            file.set_len(valid as u64).map_err(io)?;
            file.sync_data().map_err(io)?;
        }
        let last_seq = last
            .into_iter()
            .chain(retired.as_ref().map(|(_, seq)| *seq))
            .fold(applied, u64::max);
        records.extend(newer);
        Ok((
            Log {
                file,
                path: path.to_owned(),
                len: valid as u64,
                last_seq,
                buffer: Vec::new(),
                retired,
            },
            records,
        ))
    }

    /// Seals the active segment as the retired one (its records up to
    /// [`Log::last_seq`]) and appends to a new, empty segment from now on,
    /// so that a checkpoint can reclaim the sealed records while appends go
    /// on. Only one segment is retired at a time: `Ok(false)` while one
    /// still waits for [`Log::drop_retired`]. On error the log is as it was.
    ///
    /// The new segment is written (header, synced) under a scratch name and
    /// opened before anything is renamed; then the active file becomes the
    /// retired one and the scratch file the active one. A crash between the
    /// two renames leaves no active file: opening creates an empty one.
    pub(super) fn roll(&mut self) -> Result<bool, StoreError> {
        if self.retired.is_some() {
            return Ok(false);
        }
        let scratch = self.path.with_extension("wal.new");
        let retired = retired_path(&self.path);
        let new = (|| -> std::io::Result<File> {
            let mut file = OpenOptions::new()
                .create(true)
                .append(true)
                .open(&scratch)?;
            file.set_len(0)?;
            file.write_all(MAGIC)?;
            file.sync_data()?;
            Ok(file)
        })();
        let new = match new {
            Ok(file) => file,
            Err(error) => {
                let _ = std::fs::remove_file(&scratch);
                return Err(io(error));
            }
        };
        if let Err(error) = std::fs::rename(&self.path, &retired) {
            let _ = std::fs::remove_file(&scratch);
            return Err(io(error));
        }
        if let Err(error) = std::fs::rename(&scratch, &self.path) {
            // Put the active file back under its name.
            if let Err(back) = std::fs::rename(&retired, &self.path) {
                return Err(StoreError::Io(format!(
                    "{error}; and the log could not be renamed back: {back}"
                )));
            }
            let _ = std::fs::remove_file(&scratch);
            return Err(io(error));
        }
        if let Some(dir) = self.path.parent() {
            // Not needed for safety (either name set replays the same
            // records), only so that the rename is not undone by a crash.
            let _ = File::open(dir).and_then(|dir| dir.sync_all());
        }
        self.file = new;
        self.len = MAGIC.len() as u64;
        self.retired = Some((retired, self.last_seq));
        Ok(true)
    }

    /// The last sequence of the retired segment, if one waits to be dropped.
    pub(super) fn retired_seq(&self) -> Option<u64> {
        self.retired.as_ref().map(|(_, seq)| *seq)
    }

    /// Deletes the retired segment once `durable` (the last sequence a
    /// durable redb commit holds) covers it; a failure is retried at the
    /// next call.
    pub(super) fn drop_retired(&mut self, durable: u64) {
        if let Some((path, seq)) = &self.retired
            && *seq <= durable
        {
            match remove(path) {
                Ok(()) => self.retired = None,
                Err(error) => {
                    tracing::warn!(%error, "deleting the store's retired log segment failed");
                }
            }
        }
    }

    /// The file's length in bytes.
    pub(super) fn len(&self) -> u64 {
        self.len
    }

    /// The sequence of the last record appended.
    pub(super) fn last_seq(&self) -> u64 {
        self.last_seq
    }

    /// Whether the log holds no record.
    pub(super) fn is_empty(&self) -> bool {
        self.len <= MAGIC.len() as u64 && self.retired.is_none()
    }

    /// Appends `ops` as one record and makes it durable. On error the file
    /// is cut back to where it was, so the record is not replayed later;
    /// [`AppendError::Stuck`] if even that failed.
    pub(super) fn append<'a>(
        &mut self,
        ops: impl Iterator<Item = &'a Op>,
    ) -> Result<u64, AppendError> {
        let seq = self.last_seq + 1;
        self.buffer.clear();
        self.buffer.extend_from_slice(&[0; HEAD]);
        for op in ops {
            encode_op(&mut self.buffer, op);
        }
        let payload = self.buffer.len() - HEAD;
        if payload > MAX_PAYLOAD {
            return Err(AppendError::Failed(format!(
                "a batch of {payload} bytes is larger than the log takes"
            )));
        }
        self.buffer[..4].copy_from_slice(&(payload as u32).to_le_bytes());
        self.buffer[4..HEAD].copy_from_slice(&seq.to_le_bytes());
        let check = xxh3_64(&self.buffer);
        self.buffer.extend_from_slice(&check.to_le_bytes());
        let written = (&self.file)
            .write_all(&self.buffer)
            .and_then(|()| self.file.sync_data());
        let length = self.buffer.len() as u64;
        if self.buffer.capacity() > KEEP_BUFFER {
            // A directory load makes one huge record: its buffer is not
            // kept for the small batches that follow.
            self.buffer = Vec::new();
        }
        match written {
            Ok(()) => {
                self.len += length;
                self.last_seq = seq;
                Ok(seq)
            }
            Err(error) => {
                // Whatever reached the file must not be replayed: it was
                // never acknowledged.
                let cut = self
                    .file
                    .set_len(self.len)
                    .and_then(|()| self.file.sync_data());
                match cut {
                    Ok(()) => Err(AppendError::Failed(error.to_string())),
                    Err(cut) => Err(AppendError::Stuck(format!(
                        "{error}; and the log could not be cut back: {cut}"
                    ))),
                }
            }
        }
    }

    /// Empties the log (back to its header): a durable redb commit holds
    /// every record in it.
    pub(super) fn clear(&mut self) -> Result<(), StoreError> {
        if let Some((path, _)) = &self.retired {
            remove(path).map_err(io)?;
            self.retired = None;
        }
        let header = MAGIC.len() as u64;
        if self.len == header {
            return Ok(());
        }
        self.file.set_len(header).map_err(io)?;
        self.file.sync_data().map_err(io)?;
        self.len = header;
        Ok(())
    }

    /// The complete records after `applied`, read back from the file.
    pub(super) fn records_after(&self, applied: u64) -> Result<Vec<Record>, StoreError> {
        let mut records = match &self.retired {
            Some((path, _)) => scan(&std::fs::read(path).map_err(io)?, applied)?.0,
            None => Vec::new(),
        };
        let mut bytes = std::fs::read(&self.path).map_err(io)?;
        bytes.truncate(self.len as usize);
        records.extend(scan(&bytes, applied)?.0);
        Ok(records)
    }
}

/// How an append failed.
#[derive(Debug)]
pub(super) enum AppendError {
    /// Nothing of the record is in the log.
    Failed(String),
    /// The log may hold part or all of a record that was not acknowledged.
    Stuck(String),
}

/// Writes a new, empty log: header to a scratch file, synced, renamed into
/// place, directory synced, so the log is never seen without its header.
fn create(path: &Path) -> std::io::Result<()> {
    let scratch = path.with_extension("wal.new");
    {
        let mut file = File::create(&scratch)?;
        file.write_all(MAGIC)?;
        file.sync_all()?;
    }
    std::fs::rename(&scratch, path)?;
    if let Some(dir) = path.parent() {
        File::open(dir)?.sync_all()?;
    }
    Ok(())
}

/// The name of the retired segment next to the log at `path`.
fn retired_path(path: &Path) -> PathBuf {
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(".prev");
    path.with_file_name(name)
}

/// Deletes a file; one already gone is fine.
fn remove(path: &Path) -> std::io::Result<()> {
    match std::fs::remove_file(path) {
        Err(error) if error.kind() != std::io::ErrorKind::NotFound => Err(error),
        _ => Ok(()),
    }
}

/// The complete records of `bytes` after `applied`, the length of the
/// prefix that holds complete records (where a torn tail begins), and the
/// last complete record's sequence.
type Scanned = (Vec<Record>, usize, Option<u64>);

fn scan(bytes: &[u8], applied: u64) -> Result<Scanned, StoreError> {
    if bytes.len() < MAGIC.len() || &bytes[..MAGIC.len()] != MAGIC {
        return Err(StoreError::Corrupt(format!(
            "{LOG_FILE_NAME} does not start with this build's log header"
        )));
    }
    let mut records = Vec::new();
    let mut at = MAGIC.len();
    let mut previous: Option<u64> = None;
    while let Some((seq, payload, next)) = record_at(bytes, at) {
        if previous.is_some_and(|p| p.checked_add(1) != Some(seq)) {
            break;
        }
        if seq > applied {
            let ops = decode_ops(payload).map_err(|why| {
                StoreError::Corrupt(format!(
                    "{LOG_FILE_NAME}: record {seq} is complete but does not decode: {why}"
                ))
            })?;
            records.push(Record { seq, ops });
        }
        previous = Some(seq);
        at = next;
    }
    Ok((records, at, previous))
}

/// The complete, checksummed record at `at`: its sequence, payload and end.
fn record_at(bytes: &[u8], at: usize) -> Option<(u64, &[u8], usize)> {
    let rest = bytes.get(at..)?;
    let head = rest.get(..HEAD)?;
    let payload = u32::from_le_bytes(head[..4].try_into().ok()?) as usize;
    if payload > MAX_PAYLOAD {
        return None;
    }
    let end = HEAD + payload;
    let check = u64::from_le_bytes(rest.get(end..end + TAIL)?.try_into().ok()?);
    if xxh3_64(&rest[..end]) != check {
        return None;
    }
    let seq = u64::from_le_bytes(head[4..].try_into().ok()?);
    Some((seq, &rest[HEAD..end], at + end + TAIL))
}

// Op encoding: a tag byte per op, then its fields. Byte strings are
// length-prefixed (u32 LE), instants are i128 nanoseconds (LE), optional
// values have a 0/1 byte before them.

const USER_RECORD: u8 = 1;
const SUBSCRIPTION: u8 = 2;
const OUTBOX: u8 = 3;
const DIRECTORY: u8 = 4;
const REMOVE_USER: u8 = 5;
const MANUAL_CLOCK: u8 = 6;

fn encode_op(out: &mut Vec<u8>, op: &Op) {
    match op {
        Op::UserRecord {
            key,
            record,
            old_deadline,
            new_deadline,
            outbox,
        } => {
            out.push(USER_RECORD);
            out.extend_from_slice(key);
            bytes(out, record);
            instant(out, *old_deadline);
            instant(out, *new_deadline);
            match outbox {
                None => out.push(0),
                Some((row, body)) => {
                    out.push(1);
                    out.extend_from_slice(row);
                    bytes(out, body);
                }
            }
        }
        Op::Subscription { id, record } => {
            out.push(SUBSCRIPTION);
            out.extend_from_slice(id);
            match record {
                None => out.push(0),
                Some(record) => {
                    out.push(1);
                    bytes(out, record);
                }
            }
        }
        Op::Outbox { remove, insert } => {
            out.push(OUTBOX);
            count(out, remove.len());
            for row in remove {
                out.extend_from_slice(row);
            }
            count(out, insert.len());
            for (row, body) in insert {
                out.extend_from_slice(row);
                bytes(out, body);
            }
        }
        Op::Directory { tenants, users } => {
            out.push(DIRECTORY);
            count(out, tenants.len());
            for (id, record) in tenants {
                out.extend_from_slice(id);
                bytes(out, record);
            }
            count(out, users.len());
            for (key, record) in users {
                out.extend_from_slice(key);
                bytes(out, record);
            }
        }
        Op::RemoveUser(key) => {
            out.push(REMOVE_USER);
            out.extend_from_slice(key);
        }
        Op::ManualClock(at) => {
            out.push(MANUAL_CLOCK);
            out.extend_from_slice(&at.as_nanosecond().to_le_bytes());
        }
        Op::Barrier => {}
        Op::Group(ops) => {
            for op in ops {
                encode_op(out, op);
            }
        }
    }
}

fn count(out: &mut Vec<u8>, n: usize) {
    out.extend_from_slice(&(n as u32).to_le_bytes());
}

fn bytes(out: &mut Vec<u8>, value: &[u8]) {
    count(out, value.len());
    out.extend_from_slice(value);
}

fn instant(out: &mut Vec<u8>, at: Option<Timestamp>) {
    match at {
        None => out.push(0),
        Some(at) => {
            out.push(1);
            out.extend_from_slice(&at.as_nanosecond().to_le_bytes());
        }
    }
}

/// Decodes a record's payload; an error names what did not fit.
pub(super) fn decode_ops(payload: &[u8]) -> Result<Vec<Op>, String> {
    let mut input = Input(payload);
    let mut ops = Vec::new();
    while !input.0.is_empty() {
        let op = match input.u8()? {
            USER_RECORD => Op::UserRecord {
                key: input.array()?,
                record: input.bytes()?,
                old_deadline: input.instant()?,
                new_deadline: input.instant()?,
                outbox: match input.u8()? {
                    0 => None,
                    1 => Some((input.array()?, input.bytes()?)),
                    other => return Err(format!("outbox flag {other}")),
                },
            },
            SUBSCRIPTION => Op::Subscription {
                id: input.array()?,
                record: match input.u8()? {
                    0 => None,
                    1 => Some(input.bytes()?),
                    other => return Err(format!("subscription flag {other}")),
                },
            },
            OUTBOX => {
                let n = input.count()?;
                let remove = (0..n).map(|_| input.array()).collect::<Result<_, _>>()?;
                let n = input.count()?;
                let insert = (0..n)
                    .map(|_| Ok((input.array()?, input.bytes()?)))
                    .collect::<Result<_, String>>()?;
                Op::Outbox { remove, insert }
            }
            DIRECTORY => {
                let n = input.count()?;
                let tenants = (0..n)
                    .map(|_| Ok((input.array()?, input.bytes()?)))
                    .collect::<Result<_, String>>()?;
                let n = input.count()?;
                let users = (0..n)
                    .map(|_| Ok((input.array()?, input.bytes()?)))
                    .collect::<Result<_, String>>()?;
                Op::Directory { tenants, users }
            }
            REMOVE_USER => Op::RemoveUser(input.array()?),
            MANUAL_CLOCK => Op::ManualClock(input.timestamp()?),
            other => return Err(format!("unknown write tag {other}")),
        };
        ops.push(op);
    }
    Ok(ops)
}

struct Input<'a>(&'a [u8]);

impl Input<'_> {
    fn take(&mut self, n: usize) -> Result<&[u8], String> {
        if self.0.len() < n {
            return Err("the payload ends early".to_owned());
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Ok(head)
    }

    fn u8(&mut self) -> Result<u8, String> {
        Ok(self.take(1)?[0])
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], String> {
        Ok(self.take(N)?.try_into().expect("N bytes"))
    }

    fn count(&mut self) -> Result<usize, String> {
        let n = u32::from_le_bytes(self.array()?) as usize;
        // Every counted item takes at least one byte: a larger count is damage.
        if n > self.0.len() {
            return Err(format!("a count of {n} beyond the payload"));
        }
        Ok(n)
    }

    fn bytes(&mut self) -> Result<Vec<u8>, String> {
        let n = self.count()?;
        Ok(self.take(n)?.to_vec())
    }

    fn timestamp(&mut self) -> Result<Timestamp, String> {
        let nanos = i128::from_le_bytes(self.array()?);
        Timestamp::from_nanosecond(nanos).map_err(|e| e.to_string())
    }

    fn instant(&mut self) -> Result<Option<Timestamp>, String> {
        match self.u8()? {
            0 => Ok(None),
            1 => Ok(Some(self.timestamp()?)),
            other => Err(format!("instant flag {other}")),
        }
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn sample_ops(n: u8) -> Vec<Op> {
        vec![
            Op::UserRecord {
                key: [n; 32],
                record: vec![n; 40 + n as usize],
                old_deadline: n
                    .is_multiple_of(2)
                    .then(|| Timestamp::from_second(i64::from(n)).unwrap()),
                new_deadline: Some(Timestamp::from_second(1_000 + i64::from(n)).unwrap()),
                outbox: n.is_multiple_of(3).then(|| ([n; 24], vec![1, 2, n])),
            },
            Op::Subscription {
                id: [n; 16],
                record: (!n.is_multiple_of(2)).then(|| vec![n; 7]),
            },
            Op::Outbox {
                remove: vec![[n; 24]],
                insert: vec![([n.wrapping_add(1); 24], vec![n])],
            },
            Op::Directory {
                tenants: vec![([n; 16], vec![3; 5])],
                users: vec![([n; 32], vec![4; 9]), ([n.wrapping_add(1); 32], vec![])],
            },
            Op::RemoveUser([n; 32]),
            Op::ManualClock(Timestamp::from_second(1_780_000_000 + i64::from(n)).unwrap()),
        ]
    }

    /// Writes `batches` records into a new log under `dir`; answers the
    /// file's length after each record.
    fn write_log(dir: &Path, batches: u8) -> Vec<u64> {
        let (mut log, records) = Log::open(&dir.join(LOG_FILE_NAME), 0).unwrap();
        assert!(records.is_empty());
        (0..batches)
            .map(|n| {
                log.append(sample_ops(n).iter()).unwrap();
                log.len()
            })
            .collect()
    }

    fn seqs(records: &[Record]) -> Vec<u64> {
        records.iter().map(|r| r.seq).collect()
    }

    #[test]
    fn records_come_back_in_order_and_whole() {
        let dir = tempfile::tempdir().unwrap();
        write_log(dir.path(), 5);
        let (log, records) = Log::open(&dir.path().join(LOG_FILE_NAME), 0).unwrap();
        assert_eq!(seqs(&records), [1, 2, 3, 4, 5]);
        assert_eq!(log.last_seq(), 5);
        for (n, record) in records.iter().enumerate() {
            let expected = sample_ops(n as u8);
            assert_eq!(format!("{:?}", record.ops), format!("{expected:?}"));
        }
        // Only the records after what redb holds are replayed.
        let (_, records) = Log::open(&dir.path().join(LOG_FILE_NAME), 3).unwrap();
        assert_eq!(seqs(&records), [4, 5]);
    }

    #[test]
    fn sequences_go_on_after_the_log_is_emptied() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(LOG_FILE_NAME);
        write_log(dir.path(), 3);
        let (mut log, _) = Log::open(&path, 0).unwrap();
        log.clear().unwrap();
        assert!(log.is_empty());
        drop(log);
        // redb holds up to 3; the emptied log starts again at 4.
        let (mut log, records) = Log::open(&path, 3).unwrap();
        assert!(records.is_empty());
        assert_eq!(log.append(sample_ops(9).iter()).unwrap(), 4);
        assert_eq!(seqs(&Log::open(&path, 3).unwrap().1), [4]);
    }

    #[test]
    fn a_retired_segment_is_replayed_before_the_active_one_until_redb_holds_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(LOG_FILE_NAME);
        let retired = dir.path().join("presenced.wal.prev");
        let (mut log, _) = Log::open(&path, 0).unwrap();
        log.append(sample_ops(0).iter()).unwrap();
        log.append(sample_ops(1).iter()).unwrap();
        assert!(log.roll().unwrap());
        // One retired segment at a time.
        assert!(!log.roll().unwrap());
        assert_eq!(log.retired_seq(), Some(2));
        assert_eq!(log.append(sample_ops(2).iter()).unwrap(), 3);
        assert_eq!(seqs(&log.records_after(1).unwrap()), [2, 3]);
        drop(log);
        // A crash now: both segments are replayed, oldest first.
        let (mut log, records) = Log::open(&path, 0).unwrap();
        assert_eq!(seqs(&records), [1, 2, 3]);
        assert_eq!(
            format!("{:?}", records[2].ops),
            format!("{:?}", sample_ops(2))
        );
        // Not dropped before redb holds it durably.
        log.drop_retired(1);
        assert!(retired.exists());
        log.drop_retired(2);
        assert!(!retired.exists());
        assert_eq!(seqs(&log.records_after(0).unwrap()), [3]);
        assert!(log.roll().unwrap());
        drop(log);
        // redb holds the retired segment: opening deletes it.
        let (log, records) = Log::open(&path, 3).unwrap();
        assert!(records.is_empty());
        assert!(!retired.exists());
        assert_eq!(log.last_seq(), 3);
    }

    #[test]
    fn a_crash_between_the_renames_of_a_roll_loses_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(LOG_FILE_NAME);
        write_log(dir.path(), 3);
        // The active segment was renamed, its successor not yet.
        std::fs::rename(&path, dir.path().join("presenced.wal.prev")).unwrap();
        let (mut log, records) = Log::open(&path, 0).unwrap();
        assert_eq!(seqs(&records), [1, 2, 3]);
        assert_eq!(log.append(sample_ops(3).iter()).unwrap(), 4);
        drop(log);
        assert_eq!(seqs(&Log::open(&path, 0).unwrap().1), [1, 2, 3, 4]);
    }

    #[test]
    fn a_log_of_another_format_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(LOG_FILE_NAME);
        std::fs::write(&path, b"something else").unwrap();
        assert!(matches!(Log::open(&path, 0), Err(StoreError::Corrupt(_))));
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        /// A log cut anywhere keeps exactly the records that end before
        /// the cut, and the next append follows the last of them.
        #[test]
        fn a_torn_tail_is_cut_at_the_last_complete_record(cut in 0.0f64..1.0) {
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join(LOG_FILE_NAME);
            let ends = write_log(dir.path(), 8);
            let full = *ends.last().unwrap();
            let at = MAGIC.len() as u64 + ((full - MAGIC.len() as u64) as f64 * cut) as u64;
            OpenOptions::new().write(true).open(&path).unwrap().set_len(at).unwrap();
            let complete = ends.iter().filter(|end| **end <= at).count() as u64;
            let (mut log, records) = Log::open(&path, 0).unwrap();
            prop_assert_eq!(seqs(&records), (1..=complete).collect::<Vec<_>>());
            prop_assert_eq!(log.append(sample_ops(42).iter()).unwrap(), complete + 1);
            drop(log);
            let (_, records) = Log::open(&path, 0).unwrap();
            prop_assert_eq!(seqs(&records), (1..=complete + 1).collect::<Vec<_>>());
        }

        /// A damaged byte anywhere after the header ends the log at the
        /// record before the damage: no record from there on is served.
        #[test]
        fn a_damaged_byte_ends_the_log_before_its_record(at in 0.0f64..1.0, flip in 1u8..=255) {
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join(LOG_FILE_NAME);
            let ends = write_log(dir.path(), 8);
            let full = *ends.last().unwrap();
            let offset = MAGIC.len() as u64 + ((full - MAGIC.len() as u64) as f64 * at) as u64;
            let mut bytes = std::fs::read(&path).unwrap();
            bytes[offset as usize] ^= flip;
            std::fs::write(&path, &bytes).unwrap();
            let intact = ends.iter().filter(|end| **end <= offset).count() as u64;
            let (log, records) = Log::open(&path, 0).unwrap();
            prop_assert_eq!(seqs(&records), (1..=intact).collect::<Vec<_>>());
            for record in &records {
                let expected = sample_ops(record.seq as u8 - 1);
                prop_assert_eq!(format!("{:?}", record.ops), format!("{expected:?}"));
            }
            prop_assert_eq!(log.len(), if intact == 0 { MAGIC.len() as u64 } else { ends[intact as usize - 1] });
        }
    }
}
