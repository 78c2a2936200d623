//! The LSM backend (fjall): one fjall keyspace, the store's keyspaces as one-byte key
//! prefixes (the layout of `encoding.rs`, as in the sled backend).
//!
//! Commit path: as in the sled backend, `commit` numbers and queues a batch (`in_flight.rs`:
//! readers see it at once) and an applier thread takes all queued batches as one group. Here
//! the group becomes **one fjall write batch** (atomic across keys), followed by one sync of
//! fjall's journal (`persist(SyncAll)`): fjall does no group commit of its own, so the group
//! is what shares the sync. fjall's journal gives atomicity and durability, so this backend
//! keeps no journal of its own. The commit mark outside fjall records the last durable
//! sequence number: fjall recovers a journal whose damaged batch it cannot read by cutting it
//! there (fjall issue #311), and the mark turns that into a refusal naming the lost writes
//! instead of a store that silently misses acknowledged data.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use fjall::{Database, Keyspace as FjallKeyspace, KeyspaceCreateOptions, PersistMode};

use crate::absent::{AbsentFilters, FILTERED, FilterBuilder};
use crate::commit_mark::CommitMark;
use crate::commit_queue::CommitQueue;
use crate::damage::{self, Verification};
use crate::durability::Durability;
use crate::encoding::{decode_change_entry, prefix_end, prefixed, unprefixed};
use crate::in_flight::{InFlight, MergedRange, PendingBatch};
use crate::meta::{CREATED_KEY, LAST_SEQ_KEY, SCHEMA_KEY, SCHEMA_VERSION};
use crate::store::{Change, ScanIter, Store, StoreHealth, StoreStats};
use crate::{CommitTicket, DataDir, Keyspace, StoreError, WriteBatch};

/// Tuning of the fjall backend.
#[derive(Debug, Clone)]
pub struct FjallStoreOptions {
    /// fjall's block cache, in bytes.
    pub cache_capacity: u64,
    /// When every entry is read, so that fjall checks the checksum of every block.
    pub verification: Verification,
}

impl Default for FjallStoreOptions {
    fn default() -> Self {
        Self {
            cache_capacity: 256 * 1024 * 1024,
            verification: Verification::InBackground,
        }
    }
}

/// The fjall-backed [`Store`].
pub struct FjallStore {
    db: Database,
    data: FjallKeyspace,
    data_dir: DataDir,
    /// Numbering, queueing, durability and the background threads (`commit_queue.rs`).
    queue: Arc<CommitQueue>,
    /// The scan after open that fills the absent-key filters and verifies the rest.
    scanner: Mutex<Option<JoinHandle<()>>>,
    stop_scanner: Arc<AtomicBool>,
}

impl Drop for FjallStore {
    /// A store dropped without `close` still stops its scan, which holds the fjall files open.
    fn drop(&mut self) {
        self.stop_scanner();
    }
}

impl std::fmt::Debug for FjallStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FjallStore")
            .field("data_dir", &self.data_dir.root())
            .finish_non_exhaustive()
    }
}

/// The name of the fjall keyspace that holds everything.
const KEYSPACE: &str = "cdp";

fn backend(error: fjall::Error) -> StoreError {
    StoreError::Backend(error.to_string())
}

/// An error of opening or reading the store files, named by their directory.
fn open_error(data_dir: &DataDir, error: fjall::Error) -> StoreError {
    let dir = data_dir.lsm_dir();
    match error {
        fjall::Error::Locked => StoreError::InUse {
            path: data_dir.root().to_path_buf(),
        },
        fjall::Error::Io(io) => StoreError::io(format!("cannot open {}", dir.display()), io),
        other => StoreError::Corrupt {
            file: dir,
            problem: other.to_string(),
        },
    }
}

/// Journals kept before fjall flushes memtables to tables (its default is 512 MiB). Every
/// journal byte is replayed at open, so this bounds the restart time and the disk the store
/// takes beyond its tables; the memtable of the one keyspace is 64 MiB, so two of them fit.
const MAX_JOURNALS: u64 = 128 * 1024 * 1024;

/// fjall's background threads: its default (one per core, at most 4), but at least 3. Its
/// worker 0 keeps itself free for memtable flushes: a compaction request it receives goes
/// back into the shared queue, and while every other worker is busy it receives that request
/// again at once. With two workers (fjall's default on two cores) worker 0 spun for as long as
/// worker 1 compacted (5.2 % of all CPU of an ingestion run at 200k people, `perf`;
/// fjall-rs/fjall#323 reworks the queue). With a third, the request finds a worker that
/// compacts other tables beside the first or finds nothing to do (0.8 %).
fn fjall_workers() -> usize {
    std::thread::available_parallelism()
        .map(usize::from)
        .unwrap_or(1)
        .clamp(3, 4)
}

/// How long a clean close waits for fjall to write its memtable out.
const MEMTABLE_FLUSH_WAIT: std::time::Duration = std::time::Duration::from_secs(60);

impl FjallStore {
    /// Writes the memtable out as a table at a clean close, so that fjall can delete its
    /// journals: otherwise up to [`MAX_JOURNALS`] of journal stays on disk beside the tables
    /// (after a 300k-event run, 55 of 344 MB, and the size varied by a third between runs
    /// with where the last rotation fell), and the next open replays it record by record.
    /// Best effort: the data is durable in the journal either way, so a flush that fails or
    /// takes too long is logged and the close goes on.
    fn flush_memtable(&self) {
        // `rotate_memtable` and `sealed_memtable_count` are public but hidden in fjall's
        // documentation (fjall's own tests use them); fjall 3 offers no other way to flush.
        match self.data.rotate_memtable() {
            Ok(false) => {}
            Ok(true) => {
                let started = std::time::Instant::now();
                while self.data.sealed_memtable_count() > 0 {
                    if started.elapsed() > MEMTABLE_FLUSH_WAIT {
                        tracing::warn!(
                            "the store's memtable was not written out within {} s; its journal is replayed at the next start",
                            MEMTABLE_FLUSH_WAIT.as_secs()
                        );
                        return;
                    }
                    std::thread::sleep(std::time::Duration::from_millis(10));
                }
            }
            Err(error) => {
                tracing::warn!(%error, "could not write the store's memtable out at close; its journal is replayed at the next start");
            }
        }
    }

    /// Opens (or creates) the store of a data directory, refusing damaged or foreign data.
    pub fn open(data_dir: &DataDir, options: &FjallStoreOptions) -> Result<Arc<Self>, StoreError> {
        data_dir.create()?;
        damage::refuse_if_reported(data_dir)?;
        let dir = data_dir.lsm_dir();
        let fresh = !dir.exists();
        let (mark, acknowledged) = CommitMark::open(&data_dir.commit_mark())?;
        // fjall's recovery panics on some damage to its journal (an entry whose length field
        // is garbage fails an assertion) instead of returning an error: that is damage too.
        let (db, data) = guard_panics(&dir, || {
            let db = Database::builder(&dir)
                .cache_size(options.cache_capacity)
                .max_journaling_size(MAX_JOURNALS)
                .worker_threads(fjall_workers())
                .open()
                .map_err(|e| open_error(data_dir, e))?;
            let data = db
                .keyspace(KEYSPACE, KeyspaceCreateOptions::default)
                .map_err(|e| open_error(data_dir, e))?;
            Ok((db, data))
        })?;
        let schema = data
            .get(prefixed(Keyspace::Meta, SCHEMA_KEY))
            .map_err(|e| open_error(data_dir, e))?;
        let last_seq = match schema {
            None => {
                // A commit mark means this directory held a cdp store: losing the schema
                // record is damage, not a new store.
                if let Some(acknowledged) = acknowledged.filter(|seq| *seq > 0) {
                    return Err(StoreError::LostWrites {
                        file: dir,
                        mark: data_dir.commit_mark(),
                        acknowledged,
                        found: 0,
                    });
                }
                if data.iter().next().is_some() {
                    return Err(StoreError::NotACdpStore { path: dir });
                }
                if !fresh {
                    tracing::warn!(path = %dir.display(), "store directory existed but was empty; initialising it");
                }
                initialise(&db, &data).map_err(|e| open_error(data_dir, e))?;
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
                if found < SCHEMA_VERSION {
                    // Versions 1 and 2 -> 3 rewrite nothing (see `SCHEMA_VERSION`).
                    data.insert(
                        prefixed(Keyspace::Meta, SCHEMA_KEY),
                        SCHEMA_VERSION.to_be_bytes(),
                    )
                    .map_err(|e| open_error(data_dir, e))?;
                    tracing::info!(from = found, to = SCHEMA_VERSION, "store schema migrated");
                }
                let last_seq = stored_seq(data_dir, &data)?;
                match acknowledged {
                    Some(acknowledged) if acknowledged > last_seq => {
                        return Err(StoreError::LostWrites {
                            file: dir,
                            mark: data_dir.commit_mark(),
                            acknowledged,
                            found: last_seq,
                        });
                    }
                    None if last_seq > 0 => tracing::warn!(
                        mark = %data_dir.commit_mark().display(),
                        "commit mark missing: lost writes cannot be detected for writes made before this start"
                    ),
                    _ => {}
                }
                last_seq
            }
        };
        db.persist(PersistMode::SyncAll)
            .map_err(|e| open_error(data_dir, e))?;
        // The filters answer "maybe" until the scan below has put the stored keys in; keys
        // committed from now on go in as they are committed.
        let absent = AbsentFilters::pending();
        let scan = absent.builder();
        let queue = Arc::new(CommitQueue::start(last_seq, absent, Some(mark), {
            let (db, data) = (db.clone(), data.clone());
            move |durability, in_flight, batches| {
                run_applier(&db, &data, durability, in_flight, batches);
            }
        })?);
        let stop_scanner = Arc::new(AtomicBool::new(false));
        let scanner = Scanner {
            data: data.clone(),
            queue: queue.clone(),
            data_dir: data_dir.clone(),
            verify: options.verification != Verification::Off,
            stop: stop_scanner.clone(),
        };
        let scanner = if options.verification == Verification::AtOpen {
            // Before anything is served: damage refuses the open.
            if let Err(error) = scanner.run(scan) {
                queue.close(|| Ok(()))?;
                return Err(error);
            }
            None
        } else {
            Some(
                std::thread::Builder::new()
                    .name("cdp-store-verifier".into())
                    .spawn(move || scanner.run_in_background(scan))
                    .map_err(|e| StoreError::io("cannot start the store verifier thread", e))?,
            )
        };
        let store = Arc::new(Self {
            db,
            data,
            data_dir: data_dir.clone(),
            queue,
            scanner: Mutex::new(scanner),
            stop_scanner,
        });
        Ok(store)
    }

    /// Stops the scan after open, if it still runs, and waits for it.
    fn stop_scanner(&self) {
        self.stop_scanner.store(true, Ordering::Relaxed);
        let handle = self
            .scanner
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take();
        if let Some(handle) = handle
            && handle.join().is_err()
        {
            tracing::error!("the store verifier thread panicked");
        }
    }
}

/// The scan after open: the keys of the filtered keyspaces into the absent-key filters, then
/// (verifying) every other entry, so that fjall checks the checksum of every block.
struct Scanner {
    data: FjallKeyspace,
    queue: Arc<CommitQueue>,
    data_dir: DataDir,
    verify: bool,
    stop: Arc<AtomicBool>,
}

/// Entries read between looks at the stop flag.
const STOP_CHECK_EVERY: u64 = 4096;

impl Scanner {
    /// The whole scan; the first damage found ends it, and so does closing the store (then
    /// the filters are left answering "maybe").
    fn run(&self, mut filters: FilterBuilder) -> Result<(), StoreError> {
        let started = std::time::Instant::now();
        let mut entries = 0u64;
        for keyspace in FILTERED {
            let iter = self.data.prefix([keyspace.tag()]);
            match self.read(iter, |key| filters.add_stored(key))? {
                Some(read) => entries += read,
                None => return Ok(()),
            }
        }
        self.queue.absent.absorb(filters);
        tracing::debug!(
            entries,
            ms = started.elapsed().as_millis() as u64,
            "absent-key filters filled"
        );
        if !self.verify {
            return Ok(());
        }
        // Every other keyspace: the runs of tags around the filtered ones (read above).
        let mut filtered: Vec<u8> = FILTERED.iter().map(|k| k.tag()).collect();
        filtered.sort_unstable();
        let mut ranges = Vec::new();
        let mut from = 0u8;
        for tag in filtered {
            if tag > from {
                ranges.push(self.data.range(vec![from]..vec![tag]));
            }
            from = tag.saturating_add(1);
        }
        ranges.push(self.data.range(vec![from]..));
        for range in ranges {
            match self.read(range, |_| {})? {
                Some(read) => entries += read,
                None => return Ok(()),
            }
        }
        self.queue.mark_verified();
        tracing::info!(
            entries,
            seconds = started.elapsed().as_secs_f64(),
            "store verified: every block read and its checksum checked"
        );
        Ok(())
    }

    /// Reads every entry of `iter` (fjall checks each block as it loads it), giving `key` each
    /// key, and counts them; `None` once the store is closing.
    fn read(
        &self,
        iter: fjall::Iter,
        mut key: impl FnMut(&[u8]),
    ) -> Result<Option<u64>, StoreError> {
        let mut entries = 0u64;
        for guard in iter {
            let (stored, _) = guard
                .into_inner()
                .map_err(|e| open_error(&self.data_dir, e))?;
            key(&stored);
            entries += 1;
            if entries.is_multiple_of(STOP_CHECK_EVERY) && self.stop.load(Ordering::Relaxed) {
                return Ok(None);
            }
        }
        Ok(Some(entries))
    }

    /// The scan beside serving: damage found refuses writes from then on (health `Damaged`)
    /// and is recorded for the next start.
    fn run_in_background(&self, filters: FilterBuilder) {
        if let Err(error) = self.run(filters) {
            if self.stop.load(Ordering::Relaxed) {
                return;
            }
            let problem = error.to_string();
            tracing::error!(error = %problem, "store verification found damage; refusing writes");
            damage::write_report(&self.data_dir, &problem);
            self.queue.mark_damaged(problem);
        }
    }
}

/// Runs a call into fjall that reads possibly damaged files, reporting a panic inside it as
/// damage to `dir` (never a crash with a backtrace). The panic hook is silenced meanwhile.
fn guard_panics<T>(
    dir: &std::path::Path,
    call: impl FnOnce() -> Result<T, StoreError>,
) -> Result<T, StoreError> {
    let previous_hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(|_| {}));
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(call));
    std::panic::set_hook(previous_hook);
    match result {
        Ok(outcome) => outcome,
        Err(payload) => Err(StoreError::Corrupt {
            file: dir.to_path_buf(),
            problem: format!(
                "the storage engine failed while recovering it: {}",
                crate::sled_store::describe_panic(payload.as_ref())
            ),
        }),
    }
}

fn initialise(db: &Database, data: &FjallKeyspace) -> Result<(), fjall::Error> {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let mut batch = db.batch();
    batch.insert(
        data,
        prefixed(Keyspace::Meta, SCHEMA_KEY),
        SCHEMA_VERSION.to_be_bytes(),
    );
    batch.insert(
        data,
        prefixed(Keyspace::Meta, LAST_SEQ_KEY),
        0u64.to_be_bytes(),
    );
    batch.insert(
        data,
        prefixed(Keyspace::Meta, CREATED_KEY),
        now.to_be_bytes(),
    );
    batch.commit()?;
    db.persist(PersistMode::SyncAll)
}

/// The last sequence number fjall holds.
fn stored_seq(data_dir: &DataDir, data: &FjallKeyspace) -> Result<u64, StoreError> {
    match data
        .get(prefixed(Keyspace::Meta, LAST_SEQ_KEY))
        .map_err(|e| open_error(data_dir, e))?
    {
        None => Ok(0),
        Some(bytes) => <[u8; 8]>::try_from(bytes.as_ref())
            .map(u64::from_be_bytes)
            .map_err(|_| StoreError::Corrupt {
                file: data_dir.lsm_dir(),
                problem: "the sequence-number record is malformed".into(),
            }),
    }
}

/// The applier thread: takes committed batches in order (all that are queued at once, as one
/// group), writes the group as one fjall batch, syncs fjall's journal, publishes the group durable
/// and drops it from the queue. After a failure nothing more is applied: the store refuses
/// writes, every ticket still waiting fails, and reads keep seeing the queued batches.
fn run_applier(
    db: &Database,
    data: &FjallKeyspace,
    durability: &Durability,
    in_flight: &InFlight,
    batches: &std::sync::mpsc::Receiver<Arc<PendingBatch>>,
) {
    let mut group = Vec::new();
    while let Ok(first) = batches.recv() {
        group.clear();
        group.push(first);
        group.extend(batches.try_iter());
        if durability.failure().is_some() {
            continue;
        }
        if let Err(failure) = apply_group(db, data, &group, durability, in_flight) {
            durability.fail(failure);
            in_flight.stop();
        }
    }
}

fn apply_group(
    db: &Database,
    data: &FjallKeyspace,
    group: &[Arc<PendingBatch>],
    durability: &Durability,
    in_flight: &InFlight,
) -> Result<(), String> {
    let mut batch = db.batch();
    for pending in group {
        for (key, value) in &pending.writes {
            match value {
                Some(value) => batch.insert(data, key.as_slice(), value.as_ref()),
                None => batch.remove(data, key.as_slice()),
            }
        }
    }
    batch
        .commit()
        .and_then(|()| db.persist(PersistMode::SyncAll))
        .map_err(|error| format!("cannot write to the store: {error}"))?;
    if let Some(last) = group.last() {
        durability.mark_durable(last.seq);
    }
    for pending in group {
        in_flight.pop(pending.seq);
    }
    Ok(())
}

/// Entries of a fjall iterator as the merge over queued writes takes them.
fn entries(iter: fjall::Iter) -> impl Iterator<Item = Result<(Vec<u8>, sled::IVec), StoreError>> {
    iter.map(|guard| {
        guard
            .into_inner()
            .map(|(key, value)| (key.to_vec(), sled::IVec::from(value.as_ref())))
            .map_err(backend)
    })
}

impl Store for FjallStore {
    fn get(&self, keyspace: Keyspace, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        let full = prefixed(keyspace, key);
        if let Some(queued) = self.queue.in_flight.get(&full) {
            return Ok(queued.map(|value| value.to_vec()));
        }
        if !self.queue.absent.may_contain(keyspace, key) {
            return Ok(None);
        }
        Ok(self
            .data
            .get(full)
            .map_err(backend)?
            .map(|value| value.to_vec()))
    }

    fn scan_prefix(&self, keyspace: Keyspace, prefix: &[u8]) -> ScanIter<'_> {
        let full = prefixed(keyspace, prefix);
        let end = prefix_end(&full);
        let queued = self.queue.in_flight.range(&full, &end);
        let base = entries(self.data.prefix(&full));
        match queued {
            None => Box::new(base.map(unprefixed)),
            Some(queued) => Box::new(MergedRange::new(base, queued).map(unprefixed)),
        }
    }

    fn scan_from(&self, keyspace: Keyspace, start: &[u8]) -> ScanIter<'_> {
        let start = prefixed(keyspace, start);
        let end = vec![keyspace.tag() + 1];
        let queued = self.queue.in_flight.range(&start, &end);
        let base = entries(self.data.range(start..end));
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
        self.db.persist(PersistMode::SyncAll).map_err(backend)
    }

    fn changes_after(&self, after: u64, limit: usize) -> Result<Vec<Change>, StoreError> {
        let start = prefixed(Keyspace::Changes, &(after.saturating_add(1)).to_be_bytes());
        let end = prefixed(Keyspace::Changes, &u64::MAX.to_be_bytes());
        let mut changes = Vec::new();
        for guard in self.data.range(start..=end).take(limit) {
            let (key, value) = guard.into_inner().map_err(backend)?;
            changes.push(decode_change_entry(&key, &value)?);
        }
        crate::encoding::contiguous(after, changes)
    }

    fn trim_changes(&self, upto: u64) -> Result<(), StoreError> {
        let start = prefixed(Keyspace::Changes, &0u64.to_be_bytes());
        let end = prefixed(Keyspace::Changes, &upto.to_be_bytes());
        let mut batch = self.db.batch();
        for guard in self.data.range(start..=end) {
            let key = guard.key().map_err(backend)?;
            batch.remove(&self.data, key);
        }
        batch.commit().map_err(backend)
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

    /// Flushes, stops the applier, makes every later commit fail, and writes
    /// the memtable out as a table. Idempotent.
    fn close(&self) -> Result<(), StoreError> {
        self.stop_scanner();
        self.queue.close(|| self.flush())?;
        self.flush_memtable();
        Ok(())
    }
}
