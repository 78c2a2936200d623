//! The embedded backend: one sled tree, keyspaces as one-byte key prefixes.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use crate::batch::BatchOp;
use crate::commit_mark::CommitMark;
use crate::durability::Durability;
use crate::meta::{CREATED_KEY, LAST_SEQ_KEY, SCHEMA_KEY, SCHEMA_VERSION};
use crate::store::{Change, ChangeOp, ScanIter, Store, StoreHealth, StoreStats};
use crate::{CommitTicket, DataDir, Keyspace, StoreError, WriteBatch};

/// Tuning of the sled backend.
#[derive(Debug, Clone)]
pub struct SledStoreOptions {
    /// sled's page cache, in bytes (it bounds cached on-disk bytes, not resident memory).
    pub cache_capacity: u64,
    /// Read every entry at open, so that sled checks the checksum of every live page: damage
    /// anywhere is found before the first request instead of by some later read.
    pub verify_on_open: bool,
}

impl Default for SledStoreOptions {
    fn default() -> Self {
        Self {
            cache_capacity: 256 * 1024 * 1024,
            verify_on_open: true,
        }
    }
}

/// The sled-backed [`Store`].
pub struct SledStore {
    db: sled::Db,
    data_dir: DataDir,
    durability: Arc<Durability>,
    /// Serialises sequence-number assignment with `apply_batch`, so that sequence order is
    /// apply order (the flusher relies on it).
    writer: Mutex<u64>,
    commits: AtomicU64,
    flusher: Mutex<Option<JoinHandle<()>>>,
}

impl std::fmt::Debug for SledStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SledStore")
            .field("data_dir", &self.data_dir.root())
            .finish_non_exhaustive()
    }
}

fn prefixed(keyspace: Keyspace, key: &[u8]) -> Vec<u8> {
    let mut full = Vec::with_capacity(key.len() + 1);
    full.push(keyspace.tag());
    full.extend_from_slice(key);
    full
}

fn backend(error: sled::Error) -> StoreError {
    StoreError::Backend(error.to_string())
}

fn describe_panic(payload: &(dyn std::any::Any + Send)) -> String {
    payload
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "the storage engine failed while reading it".to_string())
}

impl SledStore {
    /// Opens (or creates) the store of a data directory, refusing damaged or foreign data.
    pub fn open(data_dir: &DataDir, options: &SledStoreOptions) -> Result<Arc<Self>, StoreError> {
        data_dir.create()?;
        let store_dir = data_dir.store_dir();
        let fresh = !store_dir.exists();
        let (mark, acknowledged) = CommitMark::open(&data_dir.commit_mark())?;
        let db = open_sled(data_dir, &store_dir, options)?;

        // The version of a store that opens fine but is older than this build's.
        let mut older = None;
        let schema = db
            .get(prefixed(Keyspace::Meta, SCHEMA_KEY))
            .map_err(|e| open_error(data_dir, e))?;
        let last_seq = match schema {
            None => {
                // A commit mark means this directory held a cdp store: losing the schema
                // record is damage, not a foreign directory.
                if let Some(acknowledged) = acknowledged.filter(|seq| *seq > 0) {
                    return Err(StoreError::LostWrites {
                        file: data_dir.store_file(),
                        mark: data_dir.commit_mark(),
                        acknowledged,
                        found: 0,
                    });
                }
                if !db.is_empty() {
                    return Err(StoreError::NotACdpStore { path: store_dir });
                }
                if !fresh {
                    tracing::warn!(path = %store_dir.display(), "store directory existed but was empty; initialising it");
                }
                initialise(&db)?;
                0
            }
            Some(bytes) => {
                let found = <[u8; 4]>::try_from(bytes.as_ref())
                    .map(u32::from_be_bytes)
                    .map_err(|_| StoreError::UnknownSchema {
                        path: data_dir.root().to_path_buf(),
                    })?;
                if found > SCHEMA_VERSION {
                    return Err(StoreError::NewerSchema {
                        path: data_dir.root().to_path_buf(),
                        found,
                        supported: SCHEMA_VERSION,
                    });
                }
                if found == 0 {
                    return Err(StoreError::UnknownSchema {
                        path: data_dir.root().to_path_buf(),
                    });
                }
                older = (found < SCHEMA_VERSION).then_some(found);
                let last_seq = match db
                    .get(prefixed(Keyspace::Meta, LAST_SEQ_KEY))
                    .map_err(|e| open_error(data_dir, e))?
                {
                    None => 0,
                    Some(bytes) => <[u8; 8]>::try_from(bytes.as_ref())
                        .map(u64::from_be_bytes)
                        .map_err(|_| StoreError::Corrupt {
                            file: data_dir.store_file(),
                            problem: "the sequence-number record is malformed".into(),
                        })?,
                };
                match acknowledged {
                    Some(acknowledged) if acknowledged > last_seq => {
                        return Err(StoreError::LostWrites {
                            file: data_dir.store_file(),
                            mark: data_dir.commit_mark(),
                            acknowledged,
                            found: last_seq,
                        });
                    }
                    None if last_seq > 0 => tracing::warn!(
                        mark = %data_dir.commit_mark().display(),
                        "commit mark missing: truncation of the store file cannot be detected for writes made before this start"
                    ),
                    _ => {}
                }
                last_seq
            }
        };

        if options.verify_on_open {
            let entries = verify_all(data_dir, &db)?;
            tracing::debug!(entries, "store verified");
        }

        // Migrations, once every check has passed. 1 -> 2: nothing to rewrite (see
        // `SCHEMA_VERSION`); the flush below makes the new number durable.
        if let Some(found) = older {
            db.insert(
                prefixed(Keyspace::Meta, SCHEMA_KEY),
                &SCHEMA_VERSION.to_be_bytes(),
            )
            .map_err(|e| open_error(data_dir, e))?;
            tracing::info!(from = found, to = SCHEMA_VERSION, "store schema migrated");
        }

        let durability = Durability::new(last_seq);
        let store = Arc::new(Self {
            db,
            data_dir: data_dir.clone(),
            durability: durability.clone(),
            writer: Mutex::new(last_seq),
            commits: AtomicU64::new(0),
            flusher: Mutex::new(None),
        });
        // The mark must reflect the store as opened (initialisation wrote to it).
        store.db.flush().map_err(backend)?;
        mark.write(last_seq)?;

        let flush_db = store.db.clone();
        let handle = std::thread::Builder::new()
            .name("cdp-store-flusher".into())
            .spawn(move || {
                durability.run_flusher(|target| {
                    flush_db.flush().map_err(backend)?;
                    mark.write(target)
                });
            })
            .map_err(|e| StoreError::io("cannot start the flusher thread", e))?;
        *store.flusher.lock().unwrap_or_else(|p| p.into_inner()) = Some(handle);
        Ok(store)
    }

    pub fn data_dir(&self) -> &DataDir {
        &self.data_dir
    }

    /// Flushes, stops the flusher, and makes every later commit fail. Idempotent.
    pub fn close(&self) -> Result<(), StoreError> {
        let result = self.flush();
        self.durability.shutdown();
        if let Some(handle) = self
            .flusher
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take()
        {
            let _ = handle.join();
        }
        result
    }

    fn check_writable(&self) -> Result<(), StoreError> {
        if let Some(failure) = self.durability.failure() {
            return Err(StoreError::Unavailable(failure));
        }
        Ok(())
    }
}

fn open_sled(
    data_dir: &DataDir,
    store_dir: &Path,
    options: &SledStoreOptions,
) -> Result<sled::Db, StoreError> {
    let config = sled::Config::new()
        .path(store_dir)
        .cache_capacity(options.cache_capacity);
    guard_damage(data_dir, || config.open())
}

/// Reads every entry. sled checks each page's CRC as it reads it from disk.
fn verify_all(data_dir: &DataDir, db: &sled::Db) -> Result<u64, StoreError> {
    guard_damage(data_dir, || {
        let mut entries = 0u64;
        for item in db.iter() {
            item?;
            entries += 1;
        }
        Ok(entries)
    })
}

/// Runs a sled call that reads possibly damaged files. sled panics on some kinds of damage
/// instead of returning an error; report that as damage, never as a crash with a backtrace.
fn guard_damage<T>(
    data_dir: &DataDir,
    call: impl FnOnce() -> Result<T, sled::Error>,
) -> Result<T, StoreError> {
    let previous_hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(|_| {}));
    let result = catch_unwind(AssertUnwindSafe(call));
    std::panic::set_hook(previous_hook);
    match result {
        Ok(Ok(value)) => Ok(value),
        Ok(Err(error)) => Err(open_error(data_dir, error)),
        Err(payload) => Err(StoreError::Corrupt {
            file: data_dir.store_file(),
            problem: describe_panic(payload.as_ref()),
        }),
    }
}

fn open_error(data_dir: &DataDir, error: sled::Error) -> StoreError {
    match error {
        sled::Error::Io(io)
            if io.kind() == std::io::ErrorKind::WouldBlock || io.to_string().contains("lock") =>
        {
            StoreError::InUse {
                path: data_dir.root().to_path_buf(),
            }
        }
        sled::Error::Io(io) if io.kind() == std::io::ErrorKind::UnexpectedEof => {
            StoreError::Corrupt {
                file: data_dir.store_file(),
                problem: "unexpected end of file".into(),
            }
        }
        sled::Error::Io(io) => StoreError::io(
            format!("cannot open {}", data_dir.store_dir().display()),
            io,
        ),
        sled::Error::Corruption { at, .. } => StoreError::Corrupt {
            file: data_dir.store_file(),
            problem: match at {
                Some(pointer) => format!("checksum mismatch at {pointer}"),
                None => "checksum mismatch".into(),
            },
        },
        other => StoreError::Corrupt {
            file: data_dir.store_file(),
            problem: other.to_string(),
        },
    }
}

fn initialise(db: &sled::Db) -> Result<(), StoreError> {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let mut batch = sled::Batch::default();
    batch.insert(
        prefixed(Keyspace::Meta, SCHEMA_KEY),
        &SCHEMA_VERSION.to_be_bytes(),
    );
    batch.insert(prefixed(Keyspace::Meta, LAST_SEQ_KEY), &0u64.to_be_bytes());
    batch.insert(prefixed(Keyspace::Meta, CREATED_KEY), &now.to_be_bytes());
    db.apply_batch(batch).map_err(backend)
}

fn encode_change(ops: &[BatchOp]) -> Vec<u8> {
    let mut out = Vec::with_capacity(ops.len() * 40);
    for op in ops.iter().filter(|op| op.keyspace.followed()) {
        out.push(op.keyspace.tag());
        out.push(u8::from(op.value.is_some()));
        // Keys are at most MAX_KEY_LEN (< 2^16).
        out.extend_from_slice(&(op.key.len() as u16).to_be_bytes());
        out.extend_from_slice(&op.key);
    }
    out
}

fn decode_change(seq: u64, bytes: &[u8]) -> Result<Change, StoreError> {
    let malformed = || StoreError::Backend(format!("change-feed entry #{seq} is malformed"));
    let mut keys = Vec::new();
    let mut rest = bytes;
    while !rest.is_empty() {
        if rest.len() < 4 {
            return Err(malformed());
        }
        let keyspace = Keyspace::from_tag(rest[0]).ok_or_else(malformed)?;
        let op = if rest[1] == 1 {
            ChangeOp::Put
        } else {
            ChangeOp::Delete
        };
        let len = u16::from_be_bytes([rest[2], rest[3]]) as usize;
        let key = rest.get(4..4 + len).ok_or_else(malformed)?.to_vec();
        keys.push((keyspace, op, key));
        rest = &rest[4 + len..];
    }
    Ok(Change { seq, keys })
}

impl Store for SledStore {
    fn get(&self, keyspace: Keyspace, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self
            .db
            .get(prefixed(keyspace, key))
            .map_err(backend)?
            .map(|value| value.to_vec()))
    }

    fn scan_prefix(&self, keyspace: Keyspace, prefix: &[u8]) -> ScanIter<'_> {
        Box::new(self.db.scan_prefix(prefixed(keyspace, prefix)).map(|item| {
            item.map(|(key, value)| (key[1..].to_vec(), value.to_vec()))
                .map_err(backend)
        }))
    }

    fn scan_from(&self, keyspace: Keyspace, start: &[u8]) -> ScanIter<'_> {
        let end = [keyspace.tag() + 1];
        let range = self.db.range(prefixed(keyspace, start)..end.to_vec());
        Box::new(range.map(|item| {
            item.map(|(key, value)| (key[1..].to_vec(), value.to_vec()))
                .map_err(backend)
        }))
    }

    fn commit(&self, batch: WriteBatch) -> Result<CommitTicket, StoreError> {
        batch.validate()?;
        self.check_writable()?;
        let change = encode_change(&batch.ops);
        let mut sled_batch = sled::Batch::default();
        for op in batch.ops {
            let key = prefixed(op.keyspace, &op.key);
            match op.value {
                Some(value) => sled_batch.insert(key, value),
                None => sled_batch.remove(key),
            }
        }
        let mut last_seq = self.writer.lock().unwrap_or_else(|p| p.into_inner());
        let seq = *last_seq + 1;
        sled_batch.insert(prefixed(Keyspace::Meta, LAST_SEQ_KEY), &seq.to_be_bytes());
        sled_batch.insert(prefixed(Keyspace::Changes, &seq.to_be_bytes()), change);
        self.db.apply_batch(sled_batch).map_err(backend)?;
        *last_seq = seq;
        self.durability.applied.store(seq, Ordering::Release);
        drop(last_seq);
        self.commits.fetch_add(1, Ordering::Relaxed);
        // The flush is requested when the ticket is awaited, not here: a caller that commits many
        // batches in a row (one per message of a request) waits once, and gets one flush.
        Ok(CommitTicket::new(seq, self.durability.clone()))
    }

    fn flush(&self) -> Result<(), StoreError> {
        let seq = self.durability.applied.load(Ordering::Acquire);
        if seq > self.durability.durable() {
            self.durability.request(seq);
            CommitTicket::new(seq, self.durability.clone()).wait_durable()?;
        }
        self.db.flush().map_err(backend)?;
        Ok(())
    }

    fn changes_after(&self, after: u64, limit: usize) -> Result<Vec<Change>, StoreError> {
        let start = prefixed(Keyspace::Changes, &(after.saturating_add(1)).to_be_bytes());
        let end = prefixed(Keyspace::Changes, &u64::MAX.to_be_bytes());
        let mut changes = Vec::new();
        for item in self.db.range(start..=end).take(limit) {
            let (key, value) = item.map_err(backend)?;
            let seq = <[u8; 8]>::try_from(&key[1..])
                .map(u64::from_be_bytes)
                .map_err(|_| StoreError::Backend("change-feed key is malformed".into()))?;
            changes.push(decode_change(seq, &value)?);
        }
        Ok(changes)
    }

    fn trim_changes(&self, upto: u64) -> Result<(), StoreError> {
        let start = prefixed(Keyspace::Changes, &0u64.to_be_bytes());
        let end = prefixed(Keyspace::Changes, &upto.to_be_bytes());
        let mut batch = sled::Batch::default();
        for item in self.db.range(start..=end) {
            let (key, _) = item.map_err(backend)?;
            batch.remove(key);
        }
        self.db.apply_batch(batch).map_err(backend)
    }

    fn subscribe_durable(&self) -> tokio::sync::watch::Receiver<u64> {
        self.durability.subscribe()
    }

    fn health(&self) -> StoreHealth {
        if let Some(failure) = self.durability.failure() {
            return StoreHealth::Failed(failure);
        }
        if self
            .flusher
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .is_none()
        {
            return StoreHealth::Closed;
        }
        StoreHealth::Ready
    }

    fn stats(&self) -> StoreStats {
        StoreStats {
            commits: self.commits.load(Ordering::Relaxed),
            flushes: self.durability.flushes(),
            last_seq: self.durability.applied.load(Ordering::Acquire),
            durable_seq: self.durability.durable(),
        }
    }
}

impl Drop for SledStore {
    fn drop(&mut self) {
        if let Err(error) = self.close() {
            tracing::error!(%error, "flushing the store on close failed");
        }
    }
}
