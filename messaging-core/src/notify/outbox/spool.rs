//! The durable half of the outbox: a write-ahead log of notifications in a directory.
//!
//! Layout of the spool directory:
//!
//! - `LOCK`: held with an exclusive advisory lock while a process uses the spool.
//! - `<first seq, 20 digits>.seg`: append-only segments of records. A record is a 16-byte
//!   header, `len: u32 LE`, `crc: u32 LE`, `seq: u64 LE`, then `len` bytes of JSON (one
//!   notification and its destination); `crc` is CRC-32 (IEEE) of the `seq` bytes and the JSON.
//! - `<first seq>.ack`: the sequence numbers of the segment's records that were delivered (or
//!   dropped): 12-byte records, `seq: u64 LE`, `crc: u32 LE` of the `seq` bytes.
//!
//! Appends are fsynced before the notify call that made them returns (one fsync for every
//! append that arrived meanwhile: group commit). Acks are fsynced in batches, after the broker
//! confirmed: a crash in between sends those notifications again (at-least-once). A torn or
//! corrupt record ends its file: the file is truncated there on open. A segment is deleted
//! once every record in it is acked and it is no longer the one being appended to.

use std::collections::{BTreeMap, HashSet};
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

use crate::error::{MessagingError, Result};

const LOCK_FILE: &str = "LOCK";
const SEGMENT_EXT: &str = "seg";
const ACK_EXT: &str = "ack";
const HEADER: usize = 16;
const ACK_RECORD: usize = 12;
/// Larger lengths can only come from a corrupt header.
const MAX_RECORD: usize = 256 << 20;

/// One segment's bookkeeping.
#[derive(Debug)]
struct Segment {
    records: u64,
    acked: u64,
    /// Opened on the first ack.
    ack_file: Option<File>,
    /// Has unsynced ack records.
    ack_dirty: bool,
}

/// An open spool, owned by one writer.
#[derive(Debug)]
pub(crate) struct Spool {
    dir: PathBuf,
    /// Holds the directory's lock until dropped.
    _lock: File,
    segments: BTreeMap<u64, Segment>,
    /// First seq (key in `segments`) of the segment being appended to.
    active: u64,
    active_file: File,
    active_len: u64,
    active_dirty: bool,
    next_seq: u64,
    segment_bytes: u64,
    /// Set after a failed write or fsync: the file's state is unknown, so refuse appends.
    poisoned: bool,
}

/// A record found on open that was never acked.
#[derive(Debug)]
pub(crate) struct Unacked {
    pub(crate) seq: u64,
    pub(crate) body: Vec<u8>,
}

fn spool_error(path: &Path, source: io::Error) -> MessagingError {
    MessagingError::OutboxSpool {
        path: path.to_owned(),
        source,
    }
}

fn segment_path(dir: &Path, first: u64, ext: &str) -> PathBuf {
    dir.join(format!("{first:020}.{ext}"))
}

fn record_crc(seq: u64, body: &[u8]) -> u32 {
    let mut hasher = crc32fast::Hasher::new();
    hasher.update(&seq.to_le_bytes());
    hasher.update(body);
    hasher.finalize()
}

/// Encode one segment record.
fn encode_record(seq: u64, body: &[u8], out: &mut Vec<u8>) {
    let len = u32::try_from(body.len()).expect("records are bounded by MAX_RECORD");
    out.extend_from_slice(&len.to_le_bytes());
    out.extend_from_slice(&record_crc(seq, body).to_le_bytes());
    out.extend_from_slice(&seq.to_le_bytes());
    out.extend_from_slice(body);
}

/// Decode the records of a segment; returns them and the length of the valid prefix.
fn decode_records(data: &[u8]) -> (Vec<(u64, &[u8])>, usize) {
    let mut records = Vec::new();
    let mut at = 0;
    while data.len() - at >= HEADER {
        let word = |i: usize| u32::from_le_bytes(data[at + i..at + i + 4].try_into().unwrap());
        let len = word(0) as usize;
        let crc = word(4);
        let seq = u64::from_le_bytes(data[at + 8..at + 16].try_into().unwrap());
        if len > MAX_RECORD || data.len() - at - HEADER < len {
            break;
        }
        let body = &data[at + HEADER..at + HEADER + len];
        if record_crc(seq, body) != crc {
            break;
        }
        records.push((seq, body));
        at += HEADER + len;
    }
    (records, at)
}

fn encode_ack(seq: u64, out: &mut Vec<u8>) {
    out.extend_from_slice(&seq.to_le_bytes());
    out.extend_from_slice(&crc32fast::hash(&seq.to_le_bytes()).to_le_bytes());
}

/// Decode an ack file; returns the acked seqs and the length of the valid prefix.
fn decode_acks(data: &[u8]) -> (Vec<u64>, usize) {
    let mut seqs = Vec::new();
    let mut at = 0;
    while data.len() - at >= ACK_RECORD {
        let seq_bytes: [u8; 8] = data[at..at + 8].try_into().unwrap();
        let crc = u32::from_le_bytes(data[at + 8..at + 12].try_into().unwrap());
        if crc32fast::hash(&seq_bytes) != crc {
            break;
        }
        seqs.push(u64::from_le_bytes(seq_bytes));
        at += ACK_RECORD;
    }
    (seqs, at)
}

/// Read a whole file, cutting it back to its valid prefix as `decode` finds it.
fn read_and_repair<T>(path: &Path, decode: impl FnOnce(&[u8]) -> (T, usize)) -> io::Result<T> {
    let mut file = OpenOptions::new().read(true).write(true).open(path)?;
    let mut data = Vec::new();
    file.read_to_end(&mut data)?;
    let (decoded, valid) = decode(&data);
    if valid < data.len() {
        tracing::warn!(
            path = %path.display(),
            dropped_bytes = data.len() - valid,
            "outbox spool: truncating a torn or corrupt tail"
        );
        file.set_len(valid as u64)?;
        file.sync_all()?;
    }
    Ok(decoded)
}

fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

fn open_append(path: &Path) -> io::Result<File> {
    OpenOptions::new().create(true).append(true).open(path)
}

impl Segment {
    /// A segment of `records` records, none acked yet.
    fn with_records(records: u64) -> Self {
        Self {
            records,
            acked: 0,
            ack_file: None,
            ack_dirty: false,
        }
    }
}

/// Lock the spool in `dir` for this process (the lock file stays open with the spool).
fn lock_dir(dir: &Path) -> Result<File> {
    let lock = open_append(&dir.join(LOCK_FILE)).map_err(|e| spool_error(dir, e))?;
    match fs4::fs_std::FileExt::try_lock_exclusive(&lock) {
        Ok(true) => Ok(lock),
        Ok(false) => Err(MessagingError::OutboxLocked {
            path: dir.to_owned(),
        }),
        Err(e) => Err(spool_error(dir, e)),
    }
}

/// The spool's files by first seq: whether there is a segment and whether there is an ack
/// file.
fn spool_files(dir: &Path) -> Result<BTreeMap<u64, (bool, bool)>> {
    let err = |e| spool_error(dir, e);
    let mut firsts: BTreeMap<u64, (bool, bool)> = BTreeMap::new();
    for entry in fs::read_dir(dir).map_err(err)? {
        let path = entry.map_err(err)?.path();
        let (Some(stem), Some(ext)) = (
            path.file_stem().and_then(|s| s.to_str()),
            path.extension().and_then(|s| s.to_str()),
        ) else {
            continue;
        };
        let Ok(first) = stem.parse::<u64>() else {
            continue;
        };
        let slot = firsts.entry(first).or_default();
        match ext {
            SEGMENT_EXT => slot.0 = true,
            ACK_EXT => slot.1 = true,
            _ => {}
        }
    }
    Ok(firsts)
}

/// Read the segment starting at `first` and its acks (repairing torn tails), push its unacked
/// records to `unacked`; the segment and the seq after its last record (0 if none).
fn recover_segment(
    dir: &Path,
    first: u64,
    has_acks: bool,
    unacked: &mut Vec<Unacked>,
) -> Result<(Segment, u64)> {
    let seg_path = segment_path(dir, first, SEGMENT_EXT);
    let ack_path = segment_path(dir, first, ACK_EXT);
    let acked: HashSet<u64> = if has_acks {
        read_and_repair(&ack_path, decode_acks)
            .map_err(|e| spool_error(&ack_path, e))?
            .into_iter()
            .collect()
    } else {
        HashSet::new()
    };
    let records = read_and_repair(&seg_path, |data| {
        let (records, valid) = decode_records(data);
        let records: Vec<(u64, Vec<u8>)> = records
            .into_iter()
            .map(|(seq, body)| (seq, body.to_vec()))
            .collect();
        (records, valid)
    })
    .map_err(|e| spool_error(&seg_path, e))?;
    let mut segment = Segment::with_records(records.len() as u64);
    let mut after = 0;
    for (seq, body) in records {
        after = after.max(seq + 1);
        if acked.contains(&seq) {
            segment.acked += 1;
        } else {
            unacked.push(Unacked { seq, body });
        }
    }
    Ok((segment, after))
}

impl Spool {
    /// Open (creating if needed) and lock the spool in `dir`, and return the records that were
    /// never acked, oldest first.
    pub(crate) fn open(dir: &Path, segment_bytes: u64) -> Result<(Self, Vec<Unacked>)> {
        let err = |e| spool_error(dir, e);
        fs::create_dir_all(dir).map_err(err)?;
        let lock = lock_dir(dir)?;
        let mut segments = BTreeMap::new();
        let mut unacked = Vec::new();
        let mut next_seq = 0;
        for (first, (has_segment, has_acks)) in spool_files(dir)? {
            next_seq = next_seq.max(first);
            if !has_segment {
                // The segment was deleted but a crash kept its acks.
                let ack_path = segment_path(dir, first, ACK_EXT);
                fs::remove_file(&ack_path).map_err(|e| spool_error(&ack_path, e))?;
                continue;
            }
            let (segment, after) = recover_segment(dir, first, has_acks, &mut unacked)?;
            next_seq = next_seq.max(after);
            if segment.acked == segment.records {
                Self::delete_segment(dir, first).map_err(err)?;
            } else {
                segments.insert(first, segment);
            }
        }

        // Appends always go to a new segment: old ones are never written again but for acks.
        let active = next_seq;
        let active_path = segment_path(dir, active, SEGMENT_EXT);
        let active_file = open_append(&active_path).map_err(|e| spool_error(&active_path, e))?;
        sync_dir(dir).map_err(err)?;
        segments.insert(active, Segment::with_records(0));
        let spool = Self {
            dir: dir.to_owned(),
            _lock: lock,
            segments,
            active,
            active_file,
            active_len: 0,
            active_dirty: false,
            next_seq,
            segment_bytes: segment_bytes.max(1),
            poisoned: false,
        };
        Ok((spool, unacked))
    }

    /// The spool directory.
    pub(crate) fn dir(&self) -> &Path {
        &self.dir
    }

    fn error(&self, source: io::Error) -> MessagingError {
        spool_error(&self.dir, source)
    }

    /// Append records (not yet durable: [`sync`](Self::sync) makes them so) and return their
    /// sequence numbers. A failed append leaves no partial record behind.
    pub(crate) fn append(&mut self, bodies: &[Vec<u8>]) -> Result<Vec<u64>> {
        if self.poisoned {
            return Err(self.error(io::Error::other(
                "an earlier write or fsync failed; reopen the outbox",
            )));
        }
        let mut buffer = Vec::with_capacity(bodies.iter().map(|b| b.len() + HEADER).sum());
        let mut seqs = Vec::with_capacity(bodies.len());
        for body in bodies {
            if body.len() > MAX_RECORD {
                return Err(MessagingError::PayloadTooLarge {
                    size: body.len(),
                    limit: MAX_RECORD,
                });
            }
            let seq = self.next_seq + seqs.len() as u64;
            encode_record(seq, body, &mut buffer);
            seqs.push(seq);
        }
        if let Err(e) = self.active_file.write_all(&buffer) {
            // Cut off what part of the batch was written; if even that fails, stop appending.
            if self.active_file.set_len(self.active_len).is_err() {
                self.poisoned = true;
            }
            return Err(self.error(e));
        }
        self.active_len += buffer.len() as u64;
        self.active_dirty = true;
        self.next_seq += seqs.len() as u64;
        self.segments
            .get_mut(&self.active)
            .expect("the active segment is tracked")
            .records += seqs.len() as u64;
        Ok(seqs)
    }

    /// Record that these records were delivered or dropped (durable after the next
    /// [`sync`](Self::sync)).
    pub(crate) fn ack(&mut self, seqs: &[u64]) -> Result<()> {
        let mut by_segment: BTreeMap<u64, Vec<u8>> = BTreeMap::new();
        for &seq in seqs {
            let Some((&first, _)) = self.segments.range(..=seq).next_back() else {
                continue;
            };
            encode_ack(seq, by_segment.entry(first).or_default());
        }
        for (first, bytes) in by_segment {
            let path = segment_path(&self.dir, first, ACK_EXT);
            let segment = self.segments.get_mut(&first).expect("found above");
            if segment.ack_file.is_none() {
                segment.ack_file = Some(open_append(&path).map_err(|e| spool_error(&path, e))?);
            }
            let file = segment.ack_file.as_mut().expect("opened above");
            let before = file.metadata().map_err(|e| spool_error(&path, e))?.len();
            if let Err(e) = file.write_all(&bytes) {
                // A partial record would hide the acks appended after it; if it cannot be cut
                // off, those records are merely sent again after a restart.
                let _ = file.set_len(before);
                return Err(spool_error(&path, e));
            }
            segment.ack_dirty = true;
            segment.acked += (bytes.len() / ACK_RECORD) as u64;
        }
        Ok(())
    }

    /// Make every append and ack so far durable, then delete segments that are fully acked
    /// (starting a new active segment when the current one is full).
    pub(crate) fn sync(&mut self) -> Result<()> {
        if self.active_dirty {
            if let Err(e) = self.active_file.sync_data() {
                self.poisoned = true;
                return Err(self.error(e));
            }
            self.active_dirty = false;
        }
        for (first, segment) in &mut self.segments {
            if segment.ack_dirty {
                let file = segment.ack_file.as_ref().expect("dirty means open");
                file.sync_data()
                    .map_err(|e| spool_error(&segment_path(&self.dir, *first, ACK_EXT), e))?;
                segment.ack_dirty = false;
            }
        }
        if self.active_len >= self.segment_bytes {
            self.rotate()?;
        }
        let done: Vec<u64> = self
            .segments
            .iter()
            .filter(|(first, s)| **first != self.active && s.acked >= s.records)
            .map(|(first, _)| *first)
            .collect();
        for first in done {
            self.segments.remove(&first);
            Self::delete_segment(&self.dir, first).map_err(|e| self.error(e))?;
        }
        Ok(())
    }

    fn rotate(&mut self) -> Result<()> {
        let first = self.next_seq;
        let path = segment_path(&self.dir, first, SEGMENT_EXT);
        let file = open_append(&path).map_err(|e| spool_error(&path, e))?;
        // The new file's directory entry must be durable before records in it are confirmed.
        sync_dir(&self.dir).map_err(|e| self.error(e))?;
        self.active_file = file;
        self.active = first;
        self.active_len = 0;
        self.segments.insert(first, Segment::with_records(0));
        Ok(())
    }

    /// Delete a segment, then its acks: acks without their segment are harmless, records
    /// without their acks would be sent again.
    fn delete_segment(dir: &Path, first: u64) -> io::Result<()> {
        match fs::remove_file(segment_path(dir, first, SEGMENT_EXT)) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
        sync_dir(dir)?;
        match fs::remove_file(segment_path(dir, first, ACK_EXT)) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// How many segment files are on disk (for tests).
    #[cfg(test)]
    fn segment_files(&self) -> usize {
        fs::read_dir(&self.dir)
            .unwrap()
            .filter(|e| {
                e.as_ref()
                    .unwrap()
                    .path()
                    .extension()
                    .and_then(|s| s.to_str())
                    == Some(SEGMENT_EXT)
            })
            .count()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bodies(range: std::ops::Range<u32>) -> Vec<Vec<u8>> {
        range
            .map(|i| format!("{{\"n\":{i}}}").into_bytes())
            .collect()
    }

    fn reopen(dir: &Path) -> (Spool, Vec<Unacked>) {
        Spool::open(dir, 1 << 20).unwrap()
    }

    #[test]
    fn unacked_records_come_back_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let (mut spool, recovered) = reopen(dir.path());
        assert!(recovered.is_empty());
        let seqs = spool.append(&bodies(0..5)).unwrap();
        assert_eq!(seqs, [0, 1, 2, 3, 4]);
        spool.ack(&[1, 3]).unwrap();
        spool.sync().unwrap();
        drop(spool);
        let (mut spool, recovered) = reopen(dir.path());
        let got: Vec<(u64, Vec<u8>)> = recovered.into_iter().map(|u| (u.seq, u.body)).collect();
        let want: Vec<(u64, Vec<u8>)> = [0u64, 2, 4]
            .into_iter()
            .map(|seq| (seq, format!("{{\"n\":{seq}}}").into_bytes()))
            .collect();
        assert_eq!(got, want);
        // Numbering continues after the recovered records.
        assert_eq!(spool.append(&bodies(5..6)).unwrap(), [5]);
    }

    #[test]
    fn the_lock_keeps_a_second_user_out() {
        let dir = tempfile::tempdir().unwrap();
        let (spool, _) = reopen(dir.path());
        let err = Spool::open(dir.path(), 1 << 20).unwrap_err();
        assert!(matches!(err, MessagingError::OutboxLocked { .. }), "{err}");
        drop(spool);
        reopen(dir.path());
    }

    #[test]
    fn a_torn_tail_is_cut_off_and_the_rest_recovered() {
        let dir = tempfile::tempdir().unwrap();
        let (mut spool, _) = reopen(dir.path());
        spool.append(&bodies(0..3)).unwrap();
        spool.sync().unwrap();
        let path = segment_path(dir.path(), 0, SEGMENT_EXT);
        let full = fs::metadata(&path).unwrap().len();
        drop(spool);
        // A crash in the middle of the third record's write.
        let file = OpenOptions::new().write(true).open(&path).unwrap();
        file.set_len(full - 3).unwrap();
        drop(file);
        let (_spool, recovered) = reopen(dir.path());
        assert_eq!(recovered.iter().map(|u| u.seq).collect::<Vec<_>>(), [0, 1]);
        let intact = fs::metadata(&path).unwrap().len();
        assert!(intact < full - 3, "the torn record was truncated");

        // A flipped bit fails the CRC the same way.
        let mut data = fs::read(&path).unwrap();
        let last = data.len() - 1;
        data[last] ^= 0x40;
        drop(_spool);
        fs::write(&path, &data).unwrap();
        let (_spool, recovered) = reopen(dir.path());
        assert_eq!(recovered.iter().map(|u| u.seq).collect::<Vec<_>>(), [0]);
    }

    #[test]
    fn a_torn_ack_record_is_ignored() {
        let dir = tempfile::tempdir().unwrap();
        let (mut spool, _) = reopen(dir.path());
        spool.append(&bodies(0..3)).unwrap();
        spool.ack(&[0, 1]).unwrap();
        spool.sync().unwrap();
        drop(spool);
        let ack_path = segment_path(dir.path(), 0, ACK_EXT);
        let file = OpenOptions::new().write(true).open(&ack_path).unwrap();
        file.set_len(ACK_RECORD as u64 + 5).unwrap();
        drop(file);
        let (_spool, recovered) = reopen(dir.path());
        assert_eq!(
            recovered.iter().map(|u| u.seq).collect::<Vec<_>>(),
            [1, 2],
            "the torn ack of 1 does not count: 1 is sent again"
        );
    }

    #[test]
    fn fully_acked_segments_are_deleted() {
        let dir = tempfile::tempdir().unwrap();
        // Tiny segments: every sync rotates.
        let (mut spool, _) = Spool::open(dir.path(), 1).unwrap();
        for i in 0..4 {
            spool.append(&bodies(i..i + 1)).unwrap();
            spool.sync().unwrap();
        }
        assert_eq!(
            spool.segment_files(),
            5,
            "four full segments and the active one"
        );
        spool.ack(&[0, 1, 3]).unwrap();
        spool.sync().unwrap();
        assert_eq!(spool.segment_files(), 2, "segment 2 and the active one");
        drop(spool);
        let (spool, recovered) = Spool::open(dir.path(), 1).unwrap();
        assert_eq!(recovered.iter().map(|u| u.seq).collect::<Vec<_>>(), [2]);
        // The empty active segment of the last run was deleted; a new one was started.
        assert_eq!(spool.segment_files(), 2);
        let acks = fs::read_dir(dir.path())
            .unwrap()
            .filter(|e| {
                e.as_ref()
                    .unwrap()
                    .path()
                    .extension()
                    .and_then(|s| s.to_str())
                    == Some(ACK_EXT)
            })
            .count();
        assert_eq!(acks, 0, "ack files go with their segments");
    }
}
