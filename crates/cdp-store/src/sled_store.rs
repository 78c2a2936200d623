//! The embedded backend: one sled tree, keyspaces as one-byte key prefixes.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::Path;
use std::sync::Arc;

use crate::absent::{AbsentFilters, FILTERED, FilterBuilder};
use crate::commit_mark::CommitMark;
use crate::commit_queue::CommitQueue;
use crate::durability::Durability;
use crate::encoding::{decode_change_entry, prefix_end, prefixed};
use crate::in_flight::{InFlight, MergedRange, PendingBatch};
use crate::journal::{CHECKPOINT_BYTES, Journal};
use crate::meta::{CREATED_KEY, LAST_SEQ_KEY, SCHEMA_KEY, SCHEMA_VERSION};
use crate::store::{Change, ScanIter, Store, StoreHealth, StoreStats};
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
    /// Numbering, queueing, durability and the background threads (`commit_queue.rs`).
    queue: CommitQueue,
}

impl std::fmt::Debug for SledStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SledStore")
            .field("data_dir", &self.data_dir.root())
            .finish_non_exhaustive()
    }
}

fn backend(error: sled::Error) -> StoreError {
    StoreError::Backend(error.to_string())
}

pub(crate) fn describe_panic(payload: &(dyn std::any::Any + Send)) -> String {
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

        let schema = db
            .get(prefixed(Keyspace::Meta, SCHEMA_KEY))
            .map_err(|e| open_error(data_dir, e))?;
        // Batches that were in the journal but maybe not (wholly) in sled at a crash. A store
        // without its schema record is new or damaged: the checks below decide.
        if schema.is_some() {
            let stored = stored_seq(data_dir, &db)?;
            crate::journal::replay(&data_dir.journal(), &db, stored, &data_dir.store_file())?;
        }
        let (last_seq, older) =
            checked_position(data_dir, &db, schema.as_deref(), acknowledged, fresh)?;
        let absent = absent_filters(data_dir, &db, options)?;

        // Migrations, once every check has passed. 1 or 2 -> 3: nothing to rewrite (see
        // `SCHEMA_VERSION`); the flush below makes the new number durable.
        if let Some(found) = older {
            db.insert(
                prefixed(Keyspace::Meta, SCHEMA_KEY),
                &SCHEMA_VERSION.to_be_bytes(),
            )
            .map_err(|e| open_error(data_dir, e))?;
            tracing::info!(from = found, to = SCHEMA_VERSION, "store schema migrated");
        }

        // Everything replayed or migrated is flushed before the journal starts empty.
        db.flush().map_err(backend)?;
        let journal = Journal::create(&data_dir.journal(), last_seq)?;
        let queue = CommitQueue::start(last_seq, absent, Some(mark), {
            let db = db.clone();
            move |durability, in_flight, batches| {
                run_applier(&db, durability, in_flight, batches, journal, last_seq);
            }
        })?;
        if options.verify_on_open {
            // Every page was read above.
            queue.mark_verified();
        }
        let store = Arc::new(Self {
            db,
            data_dir: data_dir.clone(),
            queue,
        });
        Ok(store)
    }

    pub fn data_dir(&self) -> &DataDir {
        &self.data_dir
    }
}

/// The last sequence number sled holds.
fn stored_seq(data_dir: &DataDir, db: &sled::Db) -> Result<u64, StoreError> {
    match db
        .get(prefixed(Keyspace::Meta, LAST_SEQ_KEY))
        .map_err(|e| open_error(data_dir, e))?
    {
        None => Ok(0),
        Some(bytes) => <[u8; 8]>::try_from(bytes.as_ref())
            .map(u64::from_be_bytes)
            .map_err(|_| StoreError::Corrupt {
                file: data_dir.store_file(),
                problem: "the sequence-number record is malformed".into(),
            }),
    }
}

/// The applier thread: takes committed batches in order (all that are queued at once, as one
/// group), appends them to the journal and syncs it, then writes them into sled key by key
/// (no global lock: readers go on meanwhile) and marks them applied. When the journal has grown
/// past [`CHECKPOINT_BYTES`] sled is flushed and the journal emptied. After a failure nothing
/// more is applied: the store refuses writes (as after a failed flush), every ticket still
/// waiting fails, and reads keep seeing the queued batches (see [`InFlight::stop`]); a restart
/// replays what the journal holds. When the queue closes (the store is closing) a last
/// checkpoint leaves the journal empty.
fn run_applier(
    db: &sled::Db,
    durability: &Durability,
    in_flight: &InFlight,
    batches: &std::sync::mpsc::Receiver<Arc<PendingBatch>>,
    mut journal: Journal,
    mut applied: u64,
) {
    let mut group = Vec::new();
    while let Ok(first) = batches.recv() {
        group.clear();
        group.push(first);
        group.extend(batches.try_iter());
        if durability.failure().is_some() {
            continue;
        }
        let mut result = apply_group(db, &mut journal, &group, durability, in_flight);
        if result.is_ok() {
            applied = group.last().map_or(applied, |batch| batch.seq);
            if journal.len() >= CHECKPOINT_BYTES {
                result = checkpoint(db, &mut journal, applied);
            }
        }
        if let Err(failure) = result {
            durability.fail(failure);
            in_flight.stop();
        }
    }
    if durability.failure().is_none()
        && let Err(failure) = checkpoint(db, &mut journal, applied)
    {
        durability.fail(failure);
        in_flight.stop();
    }
}

fn apply_group(
    db: &sled::Db,
    journal: &mut Journal,
    group: &[Arc<PendingBatch>],
    durability: &Durability,
    in_flight: &InFlight,
) -> Result<(), String> {
    journal
        .append(group)
        .map_err(|error| format!("cannot write the journal: {error}"))?;
    for batch in group {
        // sled panics on some kinds of damage; a panic here must fail the store, not leave
        // every committer waiting for an applier that is gone.
        let result = catch_unwind(AssertUnwindSafe(|| -> Result<(), sled::Error> {
            for (key, value) in &batch.writes {
                match value {
                    Some(value) => {
                        db.insert(key.as_slice(), value.clone())?;
                    }
                    None => {
                        db.remove(key.as_slice())?;
                    }
                }
            }
            Ok(())
        }));
        match result {
            Ok(Ok(())) => {}
            Ok(Err(error)) => return Err(format!("cannot write to the store: {error}")),
            Err(payload) => {
                return Err(format!(
                    "cannot write to the store: {}",
                    describe_panic(payload.as_ref())
                ));
            }
        }
    }
    // One commit mark for the group: it covers every batch in it. Published durable before
    // the batches leave the queue, so that a flush that waited for the queue finds them so.
    if let Some(last) = group.last() {
        durability.mark_durable(last.seq);
    }
    for batch in group {
        in_flight.pop(batch.seq);
    }
    Ok(())
}

/// sled holds everything the journal does (up to `applied`) once it has flushed: empty the
/// journal.
fn checkpoint(db: &sled::Db, journal: &mut Journal, applied: u64) -> Result<(), String> {
    db.flush()
        .map_err(|error| format!("cannot flush the store: {error}"))?;
    journal
        .truncate(applied)
        .map_err(|error| format!("cannot empty the journal: {error}"))
}

/// A scanned entry as the `Store` interface gives it: key without the keyspace tag.
fn unprefixed<K: AsRef<[u8]>>(
    item: Result<(K, sled::IVec), sled::Error>,
) -> Result<(Vec<u8>, Vec<u8>), StoreError> {
    item.map(|(key, value)| (key.as_ref()[1..].to_vec(), value.to_vec()))
        .map_err(backend)
}

/// Where the store stands after replay: the last sequence number it holds, checked against
/// the commit mark (a store behind it lost acknowledged writes), and the schema version when
/// it is older than this build's (to migrate once every check has passed). A new directory is
/// initialised.
fn checked_position(
    data_dir: &DataDir,
    db: &sled::Db,
    schema: Option<&[u8]>,
    acknowledged: Option<u64>,
    fresh: bool,
) -> Result<(u64, Option<u32>), StoreError> {
    let store_dir = data_dir.store_dir();
    let mut older = None;
    let position = match schema {
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
            initialise(db)?;
            0
        }
        Some(bytes) => {
            let found = <[u8; 4]>::try_from(bytes)
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
            let last_seq = stored_seq(data_dir, db)?;
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
    Ok((position, older))
}

/// The absent-key filters, filled from every key of the filtered keyspaces. With verification
/// on, reading every entry (so that sled checks every page's checksum) fills them on the way.
fn absent_filters(
    data_dir: &DataDir,
    db: &sled::Db,
    options: &SledStoreOptions,
) -> Result<AbsentFilters, StoreError> {
    // The verification reads every key anyway; without it only the filtered keyspaces.
    let mut filters = FilterBuilder::new();
    if options.verify_on_open {
        let entries = verify_all(data_dir, db, &mut filters)?;
        tracing::debug!(entries, "store verified");
    } else {
        for keyspace in FILTERED {
            guard_damage(data_dir, || {
                for item in db.scan_prefix([keyspace.tag()]) {
                    filters.add_stored(&item?.0);
                }
                Ok(())
            })?;
        }
    }
    Ok(filters.finish())
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

/// Reads every entry (sled checks each page's CRC as it reads it from disk), and gives the
/// filters the keys they cover.
fn verify_all(
    data_dir: &DataDir,
    db: &sled::Db,
    filters: &mut FilterBuilder,
) -> Result<u64, StoreError> {
    guard_damage(data_dir, || {
        let mut entries = 0u64;
        for item in db.iter() {
            filters.add_stored(&item?.0);
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

impl Store for SledStore {
    fn get(&self, keyspace: Keyspace, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        let full = prefixed(keyspace, key);
        if let Some(queued) = self.queue.in_flight.get(&full) {
            return Ok(queued.map(|value| value.to_vec()));
        }
        // After the queue: a committed key is in the filter before its batch is queued (see
        // `commit`), so one that is in neither place is not in sled either.
        if !self.queue.absent.may_contain(keyspace, key) {
            return Ok(None);
        }
        Ok(self
            .db
            .get(full)
            .map_err(backend)?
            .map(|value| value.to_vec()))
    }

    fn scan_prefix(&self, keyspace: Keyspace, prefix: &[u8]) -> ScanIter<'_> {
        let full = prefixed(keyspace, prefix);
        // Queued writes first (a batch leaves the queue only once sled has it), then sled.
        let queued = self.queue.in_flight.range(&full, &prefix_end(&full));
        let base = self.db.scan_prefix(full);
        match queued {
            None => Box::new(base.map(unprefixed)),
            Some(queued) => Box::new(MergedRange::new(base, queued).map(unprefixed)),
        }
    }

    fn scan_from(&self, keyspace: Keyspace, start: &[u8]) -> ScanIter<'_> {
        let start = prefixed(keyspace, start);
        let end = vec![keyspace.tag() + 1];
        let queued = self.queue.in_flight.range(&start, &end);
        let base = self.db.range(start..end);
        match queued {
            None => Box::new(base.map(unprefixed)),
            Some(queued) => Box::new(MergedRange::new(base, queued).map(unprefixed)),
        }
    }

    fn commit(&self, batch: WriteBatch) -> Result<CommitTicket, StoreError> {
        self.queue.commit(batch)
    }

    fn flush(&self) -> Result<(), StoreError> {
        // Everything committed so far applied and durable first.
        self.queue.wait_durable()?;
        self.db.flush().map_err(backend)?;
        Ok(())
    }

    fn changes_after(&self, after: u64, limit: usize) -> Result<Vec<Change>, StoreError> {
        let start = prefixed(Keyspace::Changes, &(after.saturating_add(1)).to_be_bytes());
        let end = prefixed(Keyspace::Changes, &u64::MAX.to_be_bytes());
        let mut changes = Vec::new();
        for item in self.db.range(start..=end).take(limit) {
            let (key, value) = item.map_err(backend)?;
            changes.push(decode_change_entry(&key, &value)?);
        }
        crate::encoding::contiguous(after, changes)
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
        self.queue.durability.subscribe()
    }

    fn health(&self) -> StoreHealth {
        self.queue.health()
    }

    fn stats(&self) -> StoreStats {
        self.queue.stats()
    }

    /// Flushes, stops the applier, and makes every later commit fail.
    /// Idempotent.
    fn close(&self) -> Result<(), StoreError> {
        self.queue.close(|| self.flush())
    }
}

impl Drop for SledStore {
    fn drop(&mut self) {
        if let Err(error) = self.close() {
            tracing::error!(%error, "flushing the store on close failed");
        }
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use super::*;
    use crate::batch::BatchOp;
    use crate::encoding::encode_change;
    use crate::in_flight::Writes;

    fn open(dir: &Path) -> Arc<SledStore> {
        SledStore::open(&DataDir::new(dir), &SledStoreOptions::default()).unwrap()
    }

    /// What a crash leaves behind when a batch reached the journal but not sled: a journal
    /// record for a sequence number the store file does not have.
    fn journal_record(seq: u64, key: &[u8], value: &[u8]) -> Vec<u8> {
        let mut writes = Writes::new();
        writes.insert(
            prefixed(Keyspace::Profiles, key),
            Some(sled::IVec::from(value)),
        );
        writes.insert(
            prefixed(Keyspace::Meta, LAST_SEQ_KEY),
            Some(sled::IVec::from(&seq.to_be_bytes())),
        );
        writes.insert(
            prefixed(Keyspace::Changes, &seq.to_be_bytes()),
            Some(sled::IVec::from(encode_change(&[BatchOp {
                keyspace: Keyspace::Profiles,
                key: key.to_vec(),
                value: Some(value.to_vec()),
            }]))),
        );
        let mut bytes = Vec::new();
        crate::journal::encode(&PendingBatch { seq, writes }, &mut bytes);
        bytes
    }

    /// A store in `dir` that committed one batch (sequence number 1) and closed cleanly.
    fn store_with_one_batch(dir: &Path) -> DataDir {
        let store = open(dir);
        let mut batch = WriteBatch::new();
        batch.put(Keyspace::Profiles, b"p1".to_vec(), b"one".to_vec());
        store.commit(batch).unwrap().wait_durable().unwrap();
        store.close().unwrap();
        DataDir::new(dir)
    }

    #[test]
    fn a_batch_only_the_journal_holds_is_replayed_at_open_and_a_cut_record_is_not() {
        let dir = tempfile::tempdir().unwrap();
        let data_dir = store_with_one_batch(dir.path());
        // A clean close leaves an empty journal: its header only (base 1).
        assert_eq!(
            std::fs::read(data_dir.journal()).unwrap(),
            crate::journal::file_header(1)
        );
        let mut journal = std::fs::OpenOptions::new()
            .append(true)
            .open(data_dir.journal())
            .unwrap();
        journal
            .write_all(&journal_record(2, b"p2", b"two"))
            .unwrap();
        let cut = journal_record(3, b"p3", b"three");
        journal.write_all(&cut[..cut.len() - 5]).unwrap();
        drop(journal);

        let store = open(dir.path());
        assert_eq!(
            store.get(Keyspace::Profiles, b"p2").unwrap().as_deref(),
            Some(&b"two"[..])
        );
        assert_eq!(store.get(Keyspace::Profiles, b"p3").unwrap(), None);
        assert_eq!(store.stats().last_seq, 2);
        let changes: Vec<u64> = store
            .changes_after(0, 10)
            .unwrap()
            .iter()
            .map(|c| c.seq)
            .collect();
        assert_eq!(changes, vec![1, 2]);
        // The next commit continues the sequence after the replayed batch.
        let mut batch = WriteBatch::new();
        batch.put(Keyspace::Profiles, b"p4".to_vec(), b"four".to_vec());
        assert_eq!(store.commit(batch).unwrap().seq(), 3);
        store.close().unwrap();
        assert_eq!(
            std::fs::read(data_dir.journal()).unwrap(),
            crate::journal::file_header(3)
        );
    }

    #[test]
    fn a_store_file_behind_the_journal_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let data_dir = store_with_one_batch(dir.path());
        // As if store/ came from an older backup than the journal beside it.
        std::fs::write(data_dir.journal(), crate::journal::file_header(7)).unwrap();
        let error = SledStore::open(&data_dir, &SledStoreOptions::default()).unwrap_err();
        assert!(
            matches!(
                error,
                StoreError::LostWrites {
                    acknowledged: 7,
                    found: 1,
                    ..
                }
            ),
            "{error}"
        );
    }

    #[test]
    fn reads_see_a_committed_batch_before_and_after_the_applier_has_it() {
        let dir = tempfile::tempdir().unwrap();
        let store = open(dir.path());
        for round in 0..200u32 {
            let mut batch = WriteBatch::new();
            let key = round.to_be_bytes();
            batch.put(Keyspace::Events, key.to_vec(), b"v".to_vec());
            if round > 0 {
                batch.delete(Keyspace::Events, (round - 1).to_be_bytes().to_vec());
            }
            let ticket = store.commit(batch).unwrap();
            // Whether or not the applier got to it yet, the batch is what readers see.
            assert_eq!(
                store.get(Keyspace::Events, &key).unwrap().as_deref(),
                Some(&b"v"[..])
            );
            let all: Vec<Vec<u8>> = store
                .scan_prefix(Keyspace::Events, &[])
                .map(|item| item.unwrap().0)
                .collect();
            assert_eq!(all, vec![key.to_vec()], "round {round}");
            let from: Vec<Vec<u8>> = store
                .scan_from(Keyspace::Events, &[0])
                .map(|item| item.unwrap().0)
                .collect();
            assert_eq!(from, vec![key.to_vec()], "round {round}");
            if round % 50 == 0 {
                ticket.wait_durable().unwrap();
            }
        }
        store.flush().unwrap();
        assert_eq!(store.stats().durable_seq, 200);
    }

    /// The absent-key filters must know every key sled holds or is about to: keys found at
    /// open (with and without verification), replayed from the journal, committed since, and
    /// put again after a delete.
    #[test]
    fn filtered_keyspaces_find_every_key_that_exists() {
        let dir = tempfile::tempdir().unwrap();
        let data_dir = DataDir::new(dir.path());
        let key = |n: u32| n.to_be_bytes().to_vec();
        {
            let store = open(dir.path());
            for n in 0..300u32 {
                let mut batch = WriteBatch::new();
                batch.put(Keyspace::IdentityEdges, key(n), Vec::new());
                batch.put(Keyspace::IdentityEdges, key(n), b"e".to_vec());
                let _ = store.commit(batch).unwrap();
            }
            store.close().unwrap();
        }
        // A batch only the journal holds (a crash after the journal's sync), in a filtered
        // keyspace: replayed at open, before the filters are built.
        let mut writes = Writes::new();
        writes.insert(
            prefixed(Keyspace::Identifiers, b"replayed"),
            Some(sled::IVec::from(&b"n"[..])),
        );
        writes.insert(
            prefixed(Keyspace::Meta, LAST_SEQ_KEY),
            Some(sled::IVec::from(&301u64.to_be_bytes())),
        );
        let mut record = Vec::new();
        crate::journal::encode(&PendingBatch { seq: 301, writes }, &mut record);
        std::fs::OpenOptions::new()
            .append(true)
            .open(data_dir.journal())
            .unwrap()
            .write_all(&record)
            .unwrap();
        for verify_on_open in [false, true] {
            let options = SledStoreOptions {
                verify_on_open,
                ..SledStoreOptions::default()
            };
            let store = SledStore::open(&data_dir, &options).unwrap();
            for n in 0..300u32 {
                assert!(
                    store
                        .get(Keyspace::IdentityEdges, &key(n))
                        .unwrap()
                        .is_some()
                );
                assert!(
                    store
                        .get(Keyspace::IdentityEdges, &key(n))
                        .unwrap()
                        .is_some()
                );
            }
            assert!(
                store
                    .get(Keyspace::Identifiers, b"replayed")
                    .unwrap()
                    .is_some()
            );
            assert_eq!(
                store.get(Keyspace::IdentityEdges, &key(1_000)).unwrap(),
                None
            );
            // Committed now, deleted, put again: each read sees the latest.
            let fresh = key(5_000 + u32::from(verify_on_open));
            let mut batch = WriteBatch::new();
            batch.put(Keyspace::IdentityEdges, fresh.clone(), b"1".to_vec());
            store.commit(batch).unwrap().wait_durable().unwrap();
            assert!(
                store
                    .get(Keyspace::IdentityEdges, &fresh)
                    .unwrap()
                    .is_some()
            );
            let mut batch = WriteBatch::new();
            batch.delete(Keyspace::IdentityEdges, fresh.clone());
            store.commit(batch).unwrap().wait_durable().unwrap();
            assert_eq!(store.get(Keyspace::IdentityEdges, &fresh).unwrap(), None);
            let mut batch = WriteBatch::new();
            batch.put(Keyspace::IdentityEdges, fresh.clone(), b"2".to_vec());
            let _ = store.commit(batch).unwrap();
            store.flush().unwrap();
            assert_eq!(
                store
                    .get(Keyspace::IdentityEdges, &fresh)
                    .unwrap()
                    .as_deref(),
                Some(&b"2"[..])
            );
            store.close().unwrap();
        }
    }
}
