//! The PostgreSQL backend (issue 18, scale-out): the store's keyspaces in one table of a
//! PostgreSQL database, `cdp_store (k bytea PRIMARY KEY, v bytea)`, keys laid out as in the
//! embedded backends (`encoding.rs`: the keyspace's tag, then the key), so that scans are
//! `bytea` ranges (PostgreSQL compares `bytea` byte by byte, as the embedded engines do).
//! The database sees what the embedded files hold: sealed records, blind indexes and
//! random ids, never a clear personal value (the vault seals before anything reaches a store).
//!
//! Commit path: the embedded backends' queue (`commit_queue.rs`: numbering, the change-feed
//! entry, readers see a batch at once), with an applier that writes each group of queued
//! batches as **one transaction** (`synchronous_commit = on`: the commit returns once the WAL
//! is flushed, so a committed group is durable) and retries it across a lost connection or a
//! restarting server (re-applying a group is harmless: it holds final values, and the applier
//! is the only writer). There is no commit mark: PostgreSQL detects its own damage (WAL and
//! page checksums) and a committed transaction is never cut off silently.
//!
//! One process writes a database, as one process opens a data directory: a session advisory
//! lock taken at open refuses a second one. Being the only writer is also what lets the
//! absent-key filters (`absent.rs`) answer "absent" without asking the database: a thread
//! fills them from the identifier keyspaces after open. With `cluster` on, several processes
//! (nodes) share the database and take turns at writing (`cluster.rs`); the lock is then
//! taken shared, so that a node without `cluster` is refused beside them, and the filters
//! add the other nodes' keys from the change feed, answering "absent" only within a turn.
//!
//! The client is tokio-postgres: its connections run on a small runtime of the store's own,
//! and the store's synchronous interface waits on the client's futures with
//! `futures_executor::block_on`, which needs no runtime, so the store can be called from any
//! thread, async handlers' included, as the embedded ones are.

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_executor::block_on;
use tokio_postgres::Client;

use crate::absent::{AbsentFilters, FILTERED, FilterBuilder};
use crate::commit_queue::CommitQueue;
use crate::durability::Durability;
use crate::encoding::{decode_change_entry, prefix_end, prefixed, unprefixed};
use crate::in_flight::{InFlight, MergedRange, PendingBatch};
use crate::meta::{CREATED_KEY, LAST_SEQ_KEY, SCHEMA_KEY, SCHEMA_VERSION, SchemaState};
use crate::store::{Change, ScanIter, Store, StoreHealth, StoreStats};
use crate::{CommitTicket, Keyspace, StoreError, WriteBatch};

mod cluster;
mod connection;

use cluster::Turns;
use connection::{Failure, Pool, pg_error};
pub use connection::{PostgresStoreOptions, is_postgres_url};

/// The advisory lock that keeps a second process from writing the same database (taken
/// shared by the nodes of a cluster).
const WRITER_LOCK: i64 = 0x0cd9_5707_e000_0001;
/// Rows per page of a scan.
const PAGE_ROWS: i64 = 512;

const CREATE_TABLE: &str =
    "CREATE TABLE IF NOT EXISTS cdp_store (k bytea PRIMARY KEY, v bytea NOT NULL)";

/// The PostgreSQL-backed [`Store`].
pub struct PostgresStore {
    pool: Arc<Pool>,
    /// The session that holds the writer lock for as long as the store is open.
    lock: Mutex<Option<Client>>,
    queue: Arc<CommitQueue>,
    /// Ends the filter thread's scan at close.
    closing: Arc<std::sync::atomic::AtomicBool>,
    /// With `cluster` on: this node's write turn, and its name in the feed's followers.
    cluster: Option<(Arc<Turns>, String)>,
    threads: Mutex<Vec<std::thread::JoinHandle<()>>>,
}

impl std::fmt::Debug for PostgresStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PostgresStore")
            .field("location", &self.pool.location)
            .finish_non_exhaustive()
    }
}

impl PostgresStore {
    /// Connects, takes the writer lock, creates the table in a new database and checks the
    /// schema of an existing one, refusing a database that holds something else.
    pub fn open(options: &PostgresStoreOptions) -> Result<Arc<Self>, StoreError> {
        let pool = Arc::new(Pool::new(options)?);
        let location = pool.location.clone();
        let fail = |failure: Failure| failure.into_error(&location);
        let lock = pool.connect().map_err(fail)?;
        let take = if options.cluster_node.is_some() {
            "SELECT pg_try_advisory_lock_shared($1)"
        } else {
            "SELECT pg_try_advisory_lock($1)"
        };
        let locked: bool = block_on(lock.query_one(take, &[&WRITER_LOCK]))
            .map_err(|e| pg_error(&location, &e))?
            .get(0);
        if !locked {
            return Err(StoreError::Database {
                location: location.clone(),
                problem: if options.cluster_node.is_some() {
                    "a process without `cluster = true` writes this database; stop it, or start it with `[store] cluster = true` too".into()
                } else {
                    "another process writes this database (is `cdp serve` running?); to run several nodes on it, start every one with `[store] cluster = true`".into()
                },
            });
        }
        let fsync: String = block_on(lock.query_one("SHOW fsync", &[]))
            .map_err(|e| pg_error(&location, &e))?
            .get(0);
        if fsync != "on" {
            tracing::warn!(%location, "the PostgreSQL server runs with fsync = off: a crash of its machine can lose acknowledged writes");
        }
        block_on(lock.batch_execute(CREATE_TABLE)).map_err(|e| pg_error(&location, &e))?;
        block_on(lock.batch_execute(cluster::CREATE_TABLES))
            .map_err(|e| pg_error(&location, &e))?;
        let last_seq = Self::check_schema(&pool)?;
        // "Maybe" to every probe until the thread below has read the stored keys.
        let absent = AbsentFilters::pending();
        let scan = absent.builder();
        let closing = Arc::new(std::sync::atomic::AtomicBool::new(false));
        // The applier reports outages to the queue, which exists only once started.
        let outage: Arc<Mutex<Option<Arc<CommitQueue>>>> = Arc::new(Mutex::new(None));
        let queue = Arc::new(CommitQueue::start(last_seq, absent, None, {
            let (pool, closing, outage) = (pool.clone(), closing.clone(), outage.clone());
            move |durability, in_flight, batches| {
                let report = |problem: Option<String>| {
                    if let Some(queue) = outage.lock().unwrap_or_else(|p| p.into_inner()).as_ref() {
                        queue.set_outage(problem);
                    }
                };
                run_applier(&pool, durability, in_flight, batches, &closing, &report);
            }
        })?);
        *outage.lock().unwrap_or_else(|p| p.into_inner()) = Some(queue.clone());
        queue.mark_verified();
        let mut threads = Vec::new();
        let spawn = |name: &str, work: Box<dyn FnOnce() + Send>| {
            std::thread::Builder::new()
                .name(name.into())
                .spawn(work)
                .map_err(|e| StoreError::io("cannot start a thread of the store", e))
        };
        let cluster = match &options.cluster_node {
            // Another node's keys would be missing from the filters: they stay "maybe".
            // The filters: the stored keys of a scan, then the other nodes' keys from the
            // change feed (`cluster.rs`); they answer "absent" only within a write turn.
            Some(node) => {
                queue.feed_for_nodes();
                let turns = Turns::new(pool.clone(), queue.clone(), last_seq);
                let keeper = turns.clone();
                threads.push(spawn("cdp-store-turn", Box::new(move || keeper.keep()))?);
                let (follower, closing_follow) = (turns.clone(), closing.clone());
                let follow_pool = pool.clone();
                threads.push(spawn(
                    "cdp-store-follow",
                    Box::new(move || cluster::follow(&follow_pool, &follower, &closing_follow)),
                )?);
                let (pool, queue, closing) = (pool.clone(), queue.clone(), closing.clone());
                spawn(
                    "cdp-store-filters",
                    Box::new(move || fill_filters(&pool, &queue, scan, &closing)),
                )?;
                Some((turns, node.clone()))
            }
            None => {
                let (pool, queue, closing) = (pool.clone(), queue.clone(), closing.clone());
                spawn(
                    "cdp-store-filters",
                    Box::new(move || fill_filters(&pool, &queue, scan, &closing)),
                )?;
                None
            }
        };
        tracing::info!(%location, last_seq, node = options.cluster_node.as_deref().unwrap_or("(the only writer)"), "PostgreSQL store open");
        Ok(Arc::new(Self {
            pool,
            lock: Mutex::new(Some(lock)),
            queue,
            closing,
            cluster,
            threads: Mutex::new(threads),
        }))
    }

    /// The schema record of an existing store (checked, migrated) or a new store's first
    /// records; the last sequence number.
    fn check_schema(pool: &Arc<Pool>) -> Result<u64, StoreError> {
        let location = pool.location.clone();
        let path = std::path::PathBuf::from(&location);
        let read = |key: &[u8]| -> Result<Option<Vec<u8>>, StoreError> {
            pool.with(|conn| {
                block_on(
                    conn.client
                        .query_opt(&conn.get, &[&prefixed(Keyspace::Meta, key)]),
                )
                .map(|row| row.map(|row| row.get::<_, Vec<u8>>(0)))
            })
        };
        match read(SCHEMA_KEY)? {
            None => {
                let any = pool.with(|conn| {
                    block_on(
                        conn.client
                            .query_opt("SELECT k FROM cdp_store LIMIT 1", &[]),
                    )
                })?;
                if any.is_some() {
                    return Err(StoreError::NotACdpStore { path });
                }
                let now = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map(|d| d.as_secs())
                    .unwrap_or(0);
                let writes = [
                    (SCHEMA_KEY, SCHEMA_VERSION.to_be_bytes().to_vec()),
                    (LAST_SEQ_KEY, 0u64.to_be_bytes().to_vec()),
                    (CREATED_KEY, now.to_be_bytes().to_vec()),
                ];
                let keys: Vec<Vec<u8>> = writes
                    .iter()
                    .map(|(key, _)| prefixed(Keyspace::Meta, key))
                    .collect();
                let values: Vec<Vec<u8>> = writes.iter().map(|(_, value)| value.clone()).collect();
                pool.with(|conn| block_on(conn.client.execute(&conn.upsert, &[&keys, &values])))?;
                tracing::info!(%location, "new PostgreSQL store initialised");
                Ok(0)
            }
            Some(bytes) => {
                if let SchemaState::Older(found) = crate::meta::check_schema(&bytes, &path)? {
                    let keys = vec![prefixed(Keyspace::Meta, SCHEMA_KEY)];
                    let values = vec![SCHEMA_VERSION.to_be_bytes().to_vec()];
                    pool.with(|conn| {
                        block_on(conn.client.execute(&conn.upsert, &[&keys, &values]))
                    })?;
                    tracing::info!(from = found, to = SCHEMA_VERSION, "store schema migrated");
                }
                match read(LAST_SEQ_KEY)? {
                    None => Ok(0),
                    Some(bytes) => <[u8; 8]>::try_from(bytes.as_slice())
                        .map(u64::from_be_bytes)
                        .map_err(|_| StoreError::Corrupt {
                            file: path,
                            problem: "the sequence-number record is malformed".into(),
                        }),
                }
            }
        }
    }

    /// Entries of `[start, end)` merged with the queued writes there.
    fn range(&self, start: Vec<u8>, end: Vec<u8>) -> ScanIter<'_> {
        let queued = self.queue.in_flight.range(&start, &end);
        let base = PgRange::new(self.pool.clone(), start, end);
        match queued {
            None => Box::new(base.map(unprefixed)),
            Some(queued) => Box::new(MergedRange::new(base, queued).map(unprefixed)),
        }
    }
}

/// Change-feed entries after `after` in the database, at most `limit`.
fn read_changes(pool: &Arc<Pool>, after: u64, limit: usize) -> Result<Vec<Change>, StoreError> {
    let start = prefixed(Keyspace::Changes, &(after.saturating_add(1)).to_be_bytes());
    let end = vec![Keyspace::Changes.tag() + 1];
    let base = PgRange::new(pool.clone(), start, end);
    let mut changes = Vec::new();
    for item in base.take(limit) {
        let (key, value) = item?;
        changes.push(decode_change_entry(&key, &value)?);
    }
    crate::encoding::contiguous(after, changes)
}

/// Reads the keys of the filtered keyspaces into the absent-key filters (a failure leaves
/// them answering "maybe", which costs lookups, never answers).
fn fill_filters(
    pool: &Arc<Pool>,
    queue: &CommitQueue,
    mut scan: FilterBuilder,
    closing: &std::sync::atomic::AtomicBool,
) {
    let started = Instant::now();
    let mut keys = 0u64;
    for keyspace in FILTERED {
        let start = vec![keyspace.tag()];
        let end = prefix_end(&start);
        let range = PgRange::new(pool.clone(), start, end);
        for item in range {
            match item {
                Ok((key, _)) => {
                    scan.add_stored(&key);
                    keys += 1;
                    if closing.load(std::sync::atomic::Ordering::Relaxed) {
                        return;
                    }
                }
                Err(error) => {
                    tracing::warn!(%error, "cannot read the identifier keys for the absent-key filters; lookups ask the database");
                    return;
                }
            }
        }
    }
    queue.absent.absorb(scan);
    tracing::debug!(
        keys,
        ms = started.elapsed().as_millis() as u64,
        "absent-key filters filled"
    );
}

/// A key range read in pages of [`PAGE_ROWS`] (keyset paging: no transaction or cursor stays
/// open between pages, so a long export holds no connection).
struct PgRange {
    pool: Arc<Pool>,
    next: Vec<u8>,
    inclusive: bool,
    end: Vec<u8>,
    buffer: VecDeque<(Vec<u8>, Vec<u8>)>,
    done: bool,
}

impl PgRange {
    /// The entries of `[start, end)`.
    fn new(pool: Arc<Pool>, start: Vec<u8>, end: Vec<u8>) -> Self {
        Self {
            pool,
            next: start,
            inclusive: true,
            end,
            buffer: VecDeque::new(),
            done: false,
        }
    }
}

impl Iterator for PgRange {
    type Item = Result<(Vec<u8>, sled::IVec), StoreError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.buffer.is_empty() && !self.done {
            let page = self.pool.with(|conn| {
                let statement = if self.inclusive {
                    &conn.page_from
                } else {
                    &conn.page_after
                };
                block_on(
                    conn.client
                        .query(statement, &[&self.next, &self.end, &PAGE_ROWS]),
                )
            });
            match page {
                Ok(rows) => {
                    self.done = (rows.len() as i64) < PAGE_ROWS;
                    for row in rows {
                        self.buffer.push_back((row.get(0), row.get(1)));
                    }
                    if let Some((last, _)) = self.buffer.back() {
                        self.next = last.clone();
                        self.inclusive = false;
                    }
                }
                Err(error) => {
                    self.done = true;
                    return Some(Err(error));
                }
            }
        }
        self.buffer
            .pop_front()
            .map(|(key, value)| Ok((key, sled::IVec::from(value))))
    }
}

/// The applier thread: takes committed batches in order (all queued at once, as one group),
/// writes the group as one transaction, marks it applied (the commit made it durable) and
/// drops it from the queue. A transaction that fails for a reason that may pass (a lost
/// connection, a restarting server, a serialization failure) is retried until it succeeds,
/// with the outage reported (`report`: new writes are refused meanwhile, `/readyz` says so),
/// or until the store closes; any other failure stops the applier and the store refuses
/// writes.
fn run_applier(
    pool: &Arc<Pool>,
    durability: &Durability,
    in_flight: &InFlight,
    batches: &std::sync::mpsc::Receiver<Arc<PendingBatch>>,
    closing: &std::sync::atomic::AtomicBool,
    report: &dyn Fn(Option<String>),
) {
    let mut group = Vec::new();
    while let Ok(first) = batches.recv() {
        group.clear();
        group.push(first);
        group.extend(batches.try_iter());
        if durability.failure().is_some() {
            continue;
        }
        if let Err(failure) = apply_group(pool, &group, closing, report) {
            durability.fail(failure);
            in_flight.stop();
            continue;
        }
        if let Some(last) = group.last() {
            durability.mark_durable(last.seq);
        }
        for pending in &group {
            in_flight.pop(pending.seq);
        }
    }
}

/// What a group's transaction found at the fence.
enum Fence {
    Committed,
    /// An earlier try committed it (its acknowledgement was lost with the connection).
    AlreadyCommitted,
    /// Another node wrote through this sequence number meanwhile.
    Overtaken(u64),
}

fn apply_group(
    pool: &Arc<Pool>,
    group: &[Arc<PendingBatch>],
    closing: &std::sync::atomic::AtomicBool,
    report: &dyn Fn(Option<String>),
) -> Result<(), String> {
    // Later writes to a key win, as in one engine batch (and one INSERT may not update a
    // row twice).
    let mut finals: BTreeMap<&[u8], Option<&[u8]>> = BTreeMap::new();
    for pending in group {
        for (key, value) in &pending.writes {
            finals.insert(key.as_slice(), value.as_ref().map(|v| v.as_ref()));
        }
    }
    let (mut put_keys, mut put_values, mut deletes) = (Vec::new(), Vec::new(), Vec::new());
    for (key, value) in finals {
        match value {
            Some(value) => {
                put_keys.push(key);
                put_values.push(value);
            }
            None => deletes.push(key),
        }
    }
    let (Some(first), Some(last)) = (group.first(), group.last()) else {
        return Ok(());
    };
    let (before, through) = (first.seq - 1, last.seq);
    let seq_key = prefixed(Keyspace::Meta, LAST_SEQ_KEY);
    let started = Instant::now();
    let mut attempt = 0u32;
    loop {
        let result = pool.get().and_then(|conn| {
            block_on(async {
                conn.client.batch_execute("BEGIN").await?;
                // The fence: the group follows the last change committed, or an earlier try
                // of it committed already; anything else means another node wrote meanwhile
                // (this node lost its turn with its session).
                let found = conn
                    .client
                    .query_opt(&conn.lock_seq, &[&seq_key])
                    .await?
                    .and_then(|row| <[u8; 8]>::try_from(row.get::<_, Vec<u8>>(0).as_slice()).ok())
                    .map_or(0, u64::from_be_bytes);
                if found == through && attempt > 0 {
                    conn.client.batch_execute("ROLLBACK").await?;
                    return Ok(Fence::AlreadyCommitted);
                }
                if found != before {
                    conn.client.batch_execute("ROLLBACK").await?;
                    return Ok(Fence::Overtaken(found));
                }
                if !put_keys.is_empty() {
                    conn.client
                        .execute(&conn.upsert, &[&put_keys, &put_values])
                        .await?;
                }
                if !deletes.is_empty() {
                    conn.client.execute(&conn.delete, &[&deletes]).await?;
                }
                conn.client.batch_execute("COMMIT").await?;
                Ok::<_, tokio_postgres::Error>(Fence::Committed)
            })
            .map_err(|error| {
                // Whatever state the session is in, it is not reused mid-transaction.
                if !error.is_closed() {
                    let _ = block_on(conn.client.batch_execute("ROLLBACK"));
                }
                Failure::from_client(&error)
            })
        });
        match result {
            Ok(Fence::Overtaken(found)) => {
                return Err(format!(
                    "another node wrote change #{found} of {} while this node's changes #{}-#{through} waited (its write turn was lost with its session); they were not acknowledged and are dropped",
                    pool.location,
                    before + 1
                ));
            }
            Ok(Fence::Committed | Fence::AlreadyCommitted) => {
                if attempt > 0 {
                    report(None);
                    tracing::info!(attempts = attempt + 1, seconds = started.elapsed().as_secs_f64(), location = %pool.location, "PostgreSQL reachable again: writes resumed");
                }
                return Ok(());
            }
            Err(failure) if failure.transient => {
                if closing.load(std::sync::atomic::Ordering::Relaxed) {
                    return Err(format!(
                        "closing while {} cannot be reached: {} (these writes were never acknowledged)",
                        pool.location, failure.problem
                    ));
                }
                if attempt == 0 {
                    report(Some(failure.problem.clone()));
                    tracing::warn!(problem = %failure.problem, location = %pool.location, "cannot write to PostgreSQL; refusing new writes and retrying");
                } else if started.elapsed() > pool.options.retry_for && attempt.is_multiple_of(50) {
                    tracing::error!(problem = %failure.problem, location = %pool.location, seconds = started.elapsed().as_secs_f64(), "PostgreSQL still cannot be reached; retrying");
                }
                attempt += 1;
                std::thread::sleep(Duration::from_millis(100 * u64::from(attempt.min(10))));
            }
            Err(failure) => {
                return Err(format!(
                    "cannot write to {}: {}",
                    pool.location, failure.problem
                ));
            }
        }
    }
}

impl Store for PostgresStore {
    fn get(&self, keyspace: Keyspace, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        let full = prefixed(keyspace, key);
        if let Some(queued) = self.queue.in_flight.get(&full) {
            return Ok(queued.map(|value| value.to_vec()));
        }
        // With several nodes the filters hold another node's keys only as of this node's
        // turn: outside one, ask the database.
        let filtered = self
            .cluster
            .as_ref()
            .is_none_or(|(turns, _)| turns.held_by_this_thread());
        if filtered && !self.queue.absent.may_contain(keyspace, key) {
            return Ok(None);
        }
        self.pool.with(|conn| {
            block_on(conn.client.query_opt(&conn.get, &[&full]))
                .map(|row| row.map(|row| row.get::<_, Vec<u8>>(0)))
        })
    }

    fn get_many(
        &self,
        keyspace: Keyspace,
        keys: &[&[u8]],
    ) -> Result<Vec<Option<Vec<u8>>>, StoreError> {
        let filtered = self
            .cluster
            .as_ref()
            .is_none_or(|(turns, _)| turns.held_by_this_thread());
        let mut values: Vec<Option<Vec<u8>>> = vec![None; keys.len()];
        let mut asked: Vec<Vec<u8>> = Vec::new();
        let mut at: std::collections::HashMap<Vec<u8>, Vec<usize>> = Default::default();
        for (n, key) in keys.iter().enumerate() {
            let full = prefixed(keyspace, key);
            if let Some(queued) = self.queue.in_flight.get(&full) {
                values[n] = queued.map(|value| value.to_vec());
                continue;
            }
            if filtered && !self.queue.absent.may_contain(keyspace, key) {
                continue;
            }
            let slots = at.entry(full.clone()).or_default();
            if slots.is_empty() {
                asked.push(full);
            }
            slots.push(n);
        }
        if asked.is_empty() {
            return Ok(values);
        }
        let rows = self
            .pool
            .with(|conn| block_on(conn.client.query(&conn.get_many, &[&asked])))?;
        for row in rows {
            let key: Vec<u8> = row.get(0);
            let value: Vec<u8> = row.get(1);
            if let Some(slots) = at.get(&key) {
                for slot in slots {
                    values[*slot] = Some(value.clone());
                }
            }
        }
        Ok(values)
    }

    fn reads_are_remote(&self) -> bool {
        true
    }

    fn scan_prefix(&self, keyspace: Keyspace, prefix: &[u8]) -> ScanIter<'_> {
        let start = prefixed(keyspace, prefix);
        let end = prefix_end(&start);
        self.range(start, end)
    }

    fn scan_from(&self, keyspace: Keyspace, start: &[u8]) -> ScanIter<'_> {
        self.range(prefixed(keyspace, start), vec![keyspace.tag() + 1])
    }

    fn commit(&self, batch: WriteBatch) -> Result<CommitTicket, StoreError> {
        // A node numbers and queues a batch only within a turn (nested in the caller's).
        let _turn = self.write_turn()?;
        self.queue.commit(batch)
    }

    fn write_turn(&self) -> Result<crate::WriteTurn, StoreError> {
        match &self.cluster {
            Some((turns, _)) => turns.enter(),
            None => Ok(crate::WriteTurn::solo()),
        }
    }

    fn flush(&self) -> Result<(), StoreError> {
        self.queue.wait_durable()
    }

    fn changes_after(&self, after: u64, limit: usize) -> Result<Vec<Change>, StoreError> {
        read_changes(&self.pool, after, limit)
    }

    fn trim_changes(&self, upto: u64) -> Result<(), StoreError> {
        match &self.cluster {
            // Through the lowest position of the nodes' indexers.
            Some((turns, node)) => cluster::trim(&self.pool, node, turns, upto),
            None => self
                .pool
                .with(|conn| block_on(cluster::trim_through(&conn.client, upto))),
        }
    }

    fn subscribe_durable(&self) -> tokio::sync::watch::Receiver<u64> {
        self.queue.durability.subscribe()
    }

    fn health(&self) -> StoreHealth {
        match self.queue.health() {
            StoreHealth::Ready => match self.pool.unreachable() {
                Some(problem) => StoreHealth::Unreachable(problem),
                None => StoreHealth::Ready,
            },
            other => other,
        }
    }

    fn stats(&self) -> StoreStats {
        self.queue.stats()
    }

    /// Waits for everything committed to be durable, stops the applier, and ends the session
    /// that holds the writer lock (PostgreSQL releases it). Idempotent.
    fn close(&self) -> Result<(), StoreError> {
        self.closing
            .store(true, std::sync::atomic::Ordering::Relaxed);
        let result = self.queue.close(|| self.flush());
        // Nothing is queued any more: the keeper may let go of the turn.
        if let Some((turns, _)) = &self.cluster {
            turns.stop();
        }
        for thread in std::mem::take(&mut *self.threads.lock().unwrap_or_else(|p| p.into_inner())) {
            let _ = thread.join();
        }
        self.lock.lock().unwrap_or_else(|p| p.into_inner()).take();
        result
    }
}

impl Drop for PostgresStore {
    fn drop(&mut self) {
        let _ = self.close();
    }
}

/// The size of the database a store lives in (`pg_database_size`), for benchmarks and sizing.
pub fn postgres_database_bytes(options: &PostgresStoreOptions) -> Result<u64, StoreError> {
    let pool = Arc::new(Pool::new(options)?);
    let bytes: i64 = pool.with(|conn| {
        block_on(
            conn.client
                .query_one("SELECT pg_database_size(current_database())", &[]),
        )
        .map(|row| row.get(0))
    })?;
    Ok(u64::try_from(bytes).unwrap_or(0))
}
