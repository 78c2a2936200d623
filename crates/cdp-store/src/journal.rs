//! The journal: committed batches, made durable before sled sees them.
//!
//! sled makes a multi-key batch atomic only through `apply_batch`, which takes a lock that
//! stops every reader of the process while it runs, so the engine could not resolve the next
//! request while the previous one was written. Instead the applier thread appends each batch
//! here, syncs the file, and then writes the batch into sled key by key, alongside readers.
//! A crash can leave a batch half in sled, never half in the journal: at open, every record is
//! replayed, in order, each as one atomic `apply_batch`, which completes whatever was cut.
//! Once sled has flushed, the records it holds are no longer needed and the file is emptied
//! (a checkpoint).
//!
//! The file starts with `"CDPJRNL1" | base: u64 BE | !base: u64 BE`: the sequence number sled
//! held (flushed) when the journal was emptied. A store file that holds less than that lost
//! writes the journal does not have, and is refused rather than patched with newer batches.
//!
//! Record: `len: u32 BE | crc32(seq | body): u32 BE | seq: u64 BE | body`, with body a list of
//! `key_len: u16 BE | key | 0 (delete) or 1 (put) | value_len: u32 BE | value` (keys are full
//! sled keys, keyspace tag included). The values are what sled holds: sealed records, ids,
//! blind indexes; nothing here is readable that the store file does not already show.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

use crate::StoreError;
use crate::in_flight::PendingBatch;

/// Journal size at which the applier flushes sled and empties the journal: bounds the replay
/// at open (about a second per 64 MiB) and the disk the journal takes.
pub(crate) const CHECKPOINT_BYTES: u64 = 64 * 1024 * 1024;

const HEADER: usize = 16;
const FILE_MAGIC: &[u8; 8] = b"CDPJRNL1";
const FILE_HEADER: usize = 24;

/// The file header for a journal that starts after sequence number `base`.
pub(crate) fn file_header(base: u64) -> [u8; FILE_HEADER] {
    let mut header = [0u8; FILE_HEADER];
    header[..8].copy_from_slice(FILE_MAGIC);
    header[8..16].copy_from_slice(&base.to_be_bytes());
    header[16..24].copy_from_slice(&(!base).to_be_bytes());
    header
}

fn parse_file_header(bytes: &[u8]) -> Option<u64> {
    if bytes.len() < FILE_HEADER || &bytes[..8] != FILE_MAGIC {
        return None;
    }
    let base = u64::from_be_bytes(bytes[8..16].try_into().ok()?);
    let complement = u64::from_be_bytes(bytes[16..24].try_into().ok()?);
    (base == !complement).then_some(base)
}

/// The open journal file, owned by the applier thread.
#[derive(Debug)]
pub(crate) struct Journal {
    file: File,
    path: PathBuf,
    /// Bytes appended since the last checkpoint.
    len: u64,
    buffer: Vec<u8>,
}

fn io_error(path: &Path, action: &str, error: std::io::Error) -> StoreError {
    StoreError::io(format!("cannot {action} {}", path.display()), error)
}

/// Appends one batch's record to `out`.
pub(crate) fn encode(batch: &PendingBatch, out: &mut Vec<u8>) {
    let start = out.len();
    out.extend_from_slice(&[0u8; HEADER]);
    out[start + 8..start + 16].copy_from_slice(&batch.seq.to_be_bytes());
    for (key, value) in &batch.writes {
        // Keys are at most MAX_KEY_LEN + 1 bytes and values at most MAX_VALUE_LEN (checked by
        // `WriteBatch::validate`), so both lengths fit their fields.
        out.extend_from_slice(&(key.len() as u16).to_be_bytes());
        out.extend_from_slice(key);
        match value {
            Some(value) => {
                out.push(1);
                out.extend_from_slice(&(value.len() as u32).to_be_bytes());
                out.extend_from_slice(value);
            }
            None => out.push(0),
        }
    }
    let len = (out.len() - start - HEADER) as u32;
    let crc = crc32fast::hash(&out[start + 8..]);
    out[start..start + 4].copy_from_slice(&len.to_be_bytes());
    out[start + 4..start + 8].copy_from_slice(&crc.to_be_bytes());
}

/// A record's writes: full key and value (`None` deletes).
pub(crate) type RecordWrites = Vec<(Vec<u8>, Option<Vec<u8>>)>;

/// One replayed record: its sequence number and writes.
pub(crate) type Record = (u64, RecordWrites);

/// What a journal file holds.
#[derive(Debug, Default)]
pub(crate) struct Decoded {
    /// The sequence number the journal starts after; `None` for an empty file or one whose
    /// header is unreadable (a crash while it was emptied: sled had flushed everything).
    pub(crate) base: Option<u64>,
    pub(crate) records: Vec<Record>,
    /// Bytes the header and the complete records cover.
    pub(crate) used: usize,
}

/// The complete records of a journal file, in order. Reading stops at the first record that
/// is cut short, fails its checksum or does not continue the sequence: a crash while
/// appending leaves such a tail, and a record not after the one before it (or the base) can
/// only be left over from before a checkpoint.
pub(crate) fn decode(bytes: &[u8]) -> Decoded {
    let Some(base) = parse_file_header(bytes) else {
        return Decoded::default();
    };
    let mut records = Vec::new();
    let mut at = FILE_HEADER;
    let mut last_seq = base;
    while bytes.len() - at >= HEADER {
        let header = &bytes[at..at + HEADER];
        let len = u32::from_be_bytes([header[0], header[1], header[2], header[3]]) as usize;
        let crc = u32::from_be_bytes([header[4], header[5], header[6], header[7]]);
        let Some(end) = (at + HEADER)
            .checked_add(len)
            .filter(|end| *end <= bytes.len())
        else {
            break;
        };
        if crc32fast::hash(&bytes[at + 8..end]) != crc {
            break;
        }
        let mut seq_bytes = [0u8; 8];
        seq_bytes.copy_from_slice(&header[8..16]);
        let seq = u64::from_be_bytes(seq_bytes);
        if seq <= last_seq {
            break;
        }
        let Some(writes) = decode_body(&bytes[at + HEADER..end]) else {
            break;
        };
        records.push((seq, writes));
        last_seq = seq;
        at = end;
    }
    Decoded {
        base: Some(base),
        records,
        used: at,
    }
}

fn decode_body(mut body: &[u8]) -> Option<RecordWrites> {
    let mut writes = Vec::new();
    let take = |body: &mut &[u8], n: usize| -> Option<Vec<u8>> {
        let (head, rest) = body.split_at_checked(n)?;
        *body = rest;
        Some(head.to_vec())
    };
    while !body.is_empty() {
        let key_len = take(&mut body, 2)?;
        let key = take(
            &mut body,
            usize::from(u16::from_be_bytes([key_len[0], key_len[1]])),
        )?;
        let flag = take(&mut body, 1)?;
        let value = match flag[0] {
            0 => None,
            1 => {
                let value_len = take(&mut body, 4)?;
                let len =
                    u32::from_be_bytes([value_len[0], value_len[1], value_len[2], value_len[3]]);
                Some(take(&mut body, len as usize)?)
            }
            _ => return None,
        };
        writes.push((key, value));
    }
    Some(writes)
}

impl Journal {
    /// Opens the journal for appending, empty after the header for `base` (call after
    /// [`replay`], with the store flushed up to `base`).
    pub(crate) fn create(path: &Path, base: u64) -> Result<Self, StoreError> {
        let mut options = OpenOptions::new();
        options.read(true).write(true).create(true).truncate(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            options.mode(0o600);
        }
        let file = options.open(path).map_err(|e| io_error(path, "open", e))?;
        let mut journal = Self {
            file,
            path: path.to_path_buf(),
            len: 0,
            buffer: Vec::new(),
        };
        journal.truncate(base)?;
        sync_parent(path)?;
        Ok(journal)
    }

    /// Appends the batches' records and syncs them to disk.
    pub(crate) fn append(
        &mut self,
        batches: &[std::sync::Arc<PendingBatch>],
    ) -> Result<(), StoreError> {
        self.buffer.clear();
        for batch in batches {
            encode(batch, &mut self.buffer);
        }
        self.file
            .write_all(&self.buffer)
            .map_err(|e| io_error(&self.path, "append to", e))?;
        self.file
            .sync_data()
            .map_err(|e| io_error(&self.path, "sync", e))?;
        self.len += self.buffer.len() as u64;
        // A large batch should not keep its buffer for the life of the process.
        if self.buffer.capacity() > 16 * 1024 * 1024 {
            self.buffer = Vec::new();
        }
        Ok(())
    }

    pub(crate) fn len(&self) -> u64 {
        self.len
    }

    /// Empties the journal: every record in it is in sled, which has flushed up to `base`.
    pub(crate) fn truncate(&mut self, base: u64) -> Result<(), StoreError> {
        use std::io::Seek;
        self.file
            .set_len(0)
            .and_then(|()| self.file.rewind())
            .and_then(|()| self.file.write_all(&file_header(base)))
            .and_then(|()| self.file.sync_all())
            .map_err(|e| io_error(&self.path, "empty", e))?;
        self.len = 0;
        Ok(())
    }
}

/// Reads the journal at `path` (missing: nothing to replay) and applies each complete record
/// to `db` as one atomic batch, in order; then flushes sled. `stored` is the sequence number
/// sled holds: below the journal's base, sled lost writes (`store_file` names it in the
/// error). Returns how many records were replayed. The caller empties the journal afterwards
/// ([`Journal::create`]).
pub(crate) fn replay(
    path: &Path,
    db: &sled::Db,
    stored: u64,
    store_file: &Path,
) -> Result<usize, StoreError> {
    let bytes = match std::fs::read(path) {
        Ok(bytes) => bytes,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(0),
        Err(error) => return Err(io_error(path, "read", error)),
    };
    let Decoded {
        base,
        records,
        used,
    } = decode(&bytes);
    match base {
        None if !bytes.is_empty() => tracing::warn!(
            journal = %path.display(),
            "the journal's header is unreadable (a crash while it was emptied); nothing to replay"
        ),
        Some(base) if base > stored => {
            return Err(StoreError::LostWrites {
                file: store_file.to_path_buf(),
                mark: path.to_path_buf(),
                acknowledged: base,
                found: stored,
            });
        }
        _ => {}
    }
    if base.is_some() && used < bytes.len() {
        tracing::warn!(
            journal = %path.display(),
            discarded_bytes = bytes.len() - used,
            "the journal ends in an incomplete record (a crash while it was written); that batch was never acknowledged and is dropped"
        );
    }
    let count = records.len();
    for (_, writes) in records {
        let mut batch = sled::Batch::default();
        for (key, value) in writes {
            match value {
                Some(value) => batch.insert(key, value),
                None => batch.remove(key),
            }
        }
        db.apply_batch(batch)
            .map_err(|e| StoreError::Backend(e.to_string()))?;
    }
    if count > 0 {
        db.flush().map_err(|e| StoreError::Backend(e.to_string()))?;
        tracing::info!(records = count, "journal replayed into the store");
    }
    Ok(count)
}

/// Makes a file's creation durable (its directory entry).
fn sync_parent(path: &Path) -> Result<(), StoreError> {
    #[cfg(unix)]
    if let Some(parent) = path.parent() {
        File::open(parent)
            .and_then(|dir| dir.sync_all())
            .map_err(|e| io_error(parent, "sync", e))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::in_flight::Writes;

    fn batch(seq: u64, entries: &[(&[u8], Option<&[u8]>)]) -> PendingBatch {
        let writes: Writes = entries
            .iter()
            .map(|(k, v)| (k.to_vec(), v.map(sled::IVec::from)))
            .collect();
        PendingBatch { seq, writes }
    }

    #[test]
    fn records_round_trip_and_a_cut_tail_is_left_out() {
        let mut bytes = file_header(0).to_vec();
        encode(
            &batch(1, &[(b"\x01a", Some(b"one")), (b"\x01b", None)]),
            &mut bytes,
        );
        encode(&batch(2, &[(b"\x02c", Some(&[7u8; 300]))]), &mut bytes);
        let whole = bytes.len();
        encode(&batch(3, &[(b"\x01a", Some(b"three"))]), &mut bytes);
        let Decoded {
            base,
            records,
            used,
        } = decode(&bytes);
        assert_eq!((base, used), (Some(0), bytes.len()));
        assert_eq!(records.len(), 3);
        assert_eq!(records[0].0, 1);
        assert_eq!(
            records[0].1,
            vec![
                (b"\x01a".to_vec(), Some(b"one".to_vec())),
                (b"\x01b".to_vec(), None)
            ]
        );
        assert_eq!(records[1].1[0].1.as_deref(), Some(&[7u8; 300][..]));
        // Every cut inside the last record leaves the first two.
        for cut in whole..bytes.len() {
            let decoded = decode(&bytes[..cut]);
            assert_eq!(
                (decoded.records.len(), decoded.used),
                (2, whole),
                "cut at {cut}"
            );
        }
        // A flipped bit in the last record: its checksum fails.
        let mut damaged = bytes.clone();
        let last = damaged.len() - 1;
        damaged[last] ^= 1;
        assert_eq!(decode(&damaged).records.len(), 2);
        // A damaged or cut file header: nothing to replay.
        damaged[3] ^= 1;
        assert!(decode(&damaged).base.is_none() && decode(&damaged).records.is_empty());
        assert!(decode(&bytes[..10]).base.is_none());
    }

    #[test]
    fn a_record_that_does_not_continue_the_sequence_ends_the_journal() {
        let mut bytes = file_header(4).to_vec();
        encode(&batch(5, &[(b"\x01a", Some(b"new"))]), &mut bytes);
        let first = bytes.len();
        encode(&batch(3, &[(b"\x01a", Some(b"old"))]), &mut bytes);
        let decoded = decode(&bytes);
        assert_eq!((decoded.records.len(), decoded.used), (1, first));
        // Nor may a record come at or before the base.
        let mut bytes = file_header(5).to_vec();
        encode(&batch(5, &[(b"\x01a", Some(b"new"))]), &mut bytes);
        assert!(decode(&bytes).records.is_empty());
    }

    #[test]
    fn replay_applies_records_in_order_and_the_journal_starts_empty() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("journal");
        let db = sled::Config::new().temporary(true).open().unwrap();
        db.insert(b"\x01a", b"stale".as_slice()).unwrap();
        db.insert(b"\x01b", b"gone".as_slice()).unwrap();
        let mut journal = Journal::create(&path, 0).unwrap();
        journal
            .append(&[Arc::new(batch(
                1,
                &[(b"\x01a", Some(b"first")), (b"\x01b", None)],
            ))])
            .unwrap();
        journal
            .append(&[Arc::new(batch(2, &[(b"\x01a", Some(b"second"))]))])
            .unwrap();
        assert!(journal.len() > 0);
        drop(journal);
        // A store that holds less than the journal's base lost writes: refused.
        let rebase = |base: u64| {
            let records = std::fs::read(&path).unwrap()[FILE_HEADER..].to_vec();
            std::fs::write(&path, [file_header(base).as_slice(), &records].concat()).unwrap();
        };
        rebase(9);
        assert!(matches!(
            replay(&path, &db, 3, &path),
            Err(StoreError::LostWrites {
                acknowledged: 9,
                found: 3,
                ..
            })
        ));
        rebase(0);
        assert_eq!(replay(&path, &db, 0, &path).unwrap(), 2);
        assert_eq!(db.get(b"\x01a").unwrap().as_deref(), Some(&b"second"[..]));
        assert_eq!(db.get(b"\x01b").unwrap(), None);
        let journal = Journal::create(&path, 2).unwrap();
        assert_eq!(journal.len(), 0);
        assert_eq!(std::fs::metadata(&path).unwrap().len(), 24);
        assert_eq!(replay(&path, &db, 2, &path).unwrap(), 0);
    }
}
