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
//! One process writes a database at a time, as one process opens a data directory: a session
//! advisory lock taken at open refuses a second one (the multi-node design replaces this with
//! database-assigned sequence numbers and per-identifier locks; docs/operations.md). Being the
//! only writer is also what lets the absent-key filters (`absent.rs`) answer "absent" without
//! asking the database: a thread fills them from the identifier keyspaces after open.
//!
//! The client is tokio-postgres: its connections run on a small runtime of the store's own,
//! and the store's synchronous interface waits on the client's futures with
//! `futures_executor::block_on`, which needs no runtime, so the store can be called from any
//! thread, async handlers' included, as the embedded ones are.

use std::collections::{BTreeMap, VecDeque};
use std::str::FromStr;
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use futures_executor::block_on;
use tokio_postgres::error::SqlState;
use tokio_postgres::{Client, Config, NoTls, Statement};

use crate::absent::{AbsentFilters, FILTERED, FilterBuilder};
use crate::commit_queue::CommitQueue;
use crate::durability::Durability;
use crate::encoding::{decode_change_entry, prefix_end, prefixed};
use crate::in_flight::{InFlight, MergedRange, PendingBatch};
use crate::meta::{CREATED_KEY, LAST_SEQ_KEY, SCHEMA_KEY, SCHEMA_VERSION, SchemaState};
use crate::store::{Change, ScanIter, Store, StoreHealth, StoreStats};
use crate::{CommitTicket, Keyspace, StoreError, WriteBatch};

/// How to reach the database.
#[derive(Clone)]
pub struct PostgresStoreOptions {
    /// `postgres://user:password@host:port/database?...` (libpq's URL and key=value forms).
    pub url: String,
    /// Connections kept open for reads (the applier and the lock have their own).
    pub pool_size: usize,
    /// How long a connection attempt may take.
    pub connect_timeout: Duration,
    /// After how long an outage the applier's retries are logged as errors (it retries until
    /// the database is back or the store closes).
    pub retry_for: Duration,
    /// The password, when it is kept out of the URL (a file's content).
    pub password: Option<String>,
    /// PEM certificates of the authorities the server's certificate must chain to, with
    /// `sslmode=require`/`verify-full` (default: the system's roots).
    pub ca_file: Option<std::path::PathBuf>,
}

impl std::fmt::Debug for PostgresStoreOptions {
    /// Never the URL: it may carry the password.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PostgresStoreOptions")
            .field("pool_size", &self.pool_size)
            .finish_non_exhaustive()
    }
}

impl PostgresStoreOptions {
    pub fn new(url: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            pool_size: 8,
            connect_timeout: Duration::from_secs(10),
            retry_for: Duration::from_secs(30),
            password: None,
            ca_file: None,
        }
    }
}

/// Whether a store location is a PostgreSQL URL rather than a data directory.
pub fn is_postgres_url(location: &str) -> bool {
    location.starts_with("postgres://") || location.starts_with("postgresql://")
}

/// The advisory lock that keeps a second process from writing the same database.
const WRITER_LOCK: i64 = 0x0cd9_5707_e000_0001;
/// Rows per page of a scan.
const PAGE_ROWS: i64 = 512;

const CREATE_TABLE: &str =
    "CREATE TABLE IF NOT EXISTS cdp_store (k bytea PRIMARY KEY, v bytea NOT NULL)";

/// `user@host:port/database` of a configuration, for messages and logs: never the password.
fn location_of(config: &Config) -> String {
    let host = config
        .get_hosts()
        .first()
        .map(|host| match host {
            tokio_postgres::config::Host::Tcp(name) => name.clone(),
            tokio_postgres::config::Host::Unix(path) => path.display().to_string(),
        })
        .unwrap_or_else(|| "localhost".into());
    let port = config.get_ports().first().copied().unwrap_or(5432);
    format!(
        "postgres://{}@{host}:{port}/{}",
        config.get_user().unwrap_or("?"),
        config.get_dbname().unwrap_or("?")
    )
}

/// A client error as the store reports it. tokio-postgres's messages name the server's
/// error or the socket's, never the connection string.
fn pg_error(location: &str, error: &tokio_postgres::Error) -> StoreError {
    StoreError::Database {
        location: location.to_string(),
        problem: describe(error),
    }
}

/// The error and its causes ("db error" alone says nothing: the server's message is its
/// source).
fn describe(error: &tokio_postgres::Error) -> String {
    let mut text = error.to_string();
    let mut source = std::error::Error::source(error);
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// Errors after which the same work may succeed on a new connection or a moment later.
fn is_transient(error: &tokio_postgres::Error) -> bool {
    if error.is_closed() {
        return true;
    }
    match error.code() {
        Some(code) => {
            *code == SqlState::T_R_SERIALIZATION_FAILURE
                || *code == SqlState::T_R_DEADLOCK_DETECTED
                || *code == SqlState::ADMIN_SHUTDOWN
                || *code == SqlState::CRASH_SHUTDOWN
                || *code == SqlState::CANNOT_CONNECT_NOW
                || code.code().starts_with("08")
        }
        // No server code: the socket failed (connection refused, reset, timed out).
        None => true,
    }
}

/// One connection and the statements the store runs on it.
struct Conn {
    client: Client,
    get: Statement,
    page_from: Statement,
    page_after: Statement,
    upsert: Statement,
    delete: Statement,
}

impl Conn {
    async fn prepare(client: Client) -> Result<Self, tokio_postgres::Error> {
        // Durable at commit whatever the server's or the role's default says.
        client.batch_execute("SET synchronous_commit = on").await?;
        let get = client
            .prepare("SELECT v FROM cdp_store WHERE k = $1")
            .await?;
        let page_from = client
            .prepare("SELECT k, v FROM cdp_store WHERE k >= $1 AND k < $2 ORDER BY k LIMIT $3")
            .await?;
        let page_after = client
            .prepare("SELECT k, v FROM cdp_store WHERE k > $1 AND k < $2 ORDER BY k LIMIT $3")
            .await?;
        let upsert = client
            .prepare(
                "INSERT INTO cdp_store (k, v) SELECT * FROM unnest($1::bytea[], $2::bytea[]) \
                 ON CONFLICT (k) DO UPDATE SET v = EXCLUDED.v",
            )
            .await?;
        let delete = client
            .prepare("DELETE FROM cdp_store WHERE k = ANY($1::bytea[])")
            .await?;
        Ok(Self {
            client,
            get,
            page_from,
            page_after,
            upsert,
            delete,
        })
    }
}

/// Connections to one database, on the store's runtime.
struct Pool {
    config: Config,
    tls: Tls,
    location: String,
    options: PostgresStoreOptions,
    /// Drives the connections; shut down without blocking when the pool goes (a runtime
    /// dropped inside an async context would panic).
    runtime: Mutex<Option<tokio::runtime::Runtime>>,
    handle: tokio::runtime::Handle,
    idle: Mutex<PoolState>,
    returned: Condvar,
    /// Why the last connection attempt failed, until one succeeds (`/readyz` reports it).
    unreachable: Mutex<Option<String>>,
}

#[derive(Default)]
struct PoolState {
    idle: Vec<Conn>,
    /// Connections handed out or idle.
    open: usize,
}

impl Drop for Pool {
    fn drop(&mut self) {
        if let Some(runtime) = self
            .runtime
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take()
        {
            runtime.shutdown_background();
        }
    }
}

impl Pool {
    fn new(options: &PostgresStoreOptions) -> Result<Self, StoreError> {
        // libpq's verifying modes: this store verifies whenever it encrypts, so they are
        // `require` to the client library.
        let url = options
            .url
            .replace("sslmode=verify-full", "sslmode=require")
            .replace("sslmode=verify-ca", "sslmode=require");
        let mut config = Config::from_str(&url).map_err(|error| StoreError::Database {
            location: "the PostgreSQL URL".into(),
            problem: format!("cannot parse it: {error}"),
        })?;
        let tls = if config.get_ssl_mode() == tokio_postgres::config::SslMode::Require {
            Tls::Verified(tls_connector(options.ca_file.as_deref())?)
        } else {
            // No unverified encryption (libpq's `prefer`): plain, or verified with `require`.
            config.ssl_mode(tokio_postgres::config::SslMode::Disable);
            Tls::Off
        };
        config.connect_timeout(options.connect_timeout);
        if let Some(password) = &options.password {
            config.password(password.as_bytes());
        }
        config.application_name("cdp");
        let location = location_of(&config);
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("cdp-postgres")
            .enable_all()
            .build()
            .map_err(|e| StoreError::io("cannot start the PostgreSQL client's runtime", e))?;
        let handle = runtime.handle().clone();
        Ok(Self {
            config,
            tls,
            location,
            options: options.clone(),
            runtime: Mutex::new(Some(runtime)),
            handle,
            idle: Mutex::new(PoolState::default()),
            returned: Condvar::new(),
            unreachable: Mutex::new(None),
        })
    }

    /// A new connection, its connection task running on the store's runtime.
    fn connect(&self) -> Result<Client, Failure> {
        let (sender, receiver) = std::sync::mpsc::sync_channel(1);
        let config = self.config.clone();
        let location = self.location.clone();
        let tls = self.tls.clone();
        self.handle.spawn(async move {
            let connected = match tls {
                Tls::Off => config.connect(NoTls).await.map(|(client, connection)| {
                    tokio::spawn(drive(connection, location));
                    client
                }),
                Tls::Verified(connector) => {
                    config.connect(connector).await.map(|(client, connection)| {
                        tokio::spawn(drive(connection, location));
                        client
                    })
                }
            };
            let _ = sender.send(connected);
        });
        // The connect timeout bounds the attempt; a runtime shut down drops the sender.
        let result = match receiver.recv() {
            Ok(Ok(client)) => Ok(client),
            Ok(Err(error)) => Err(Failure::from_client(&error)),
            Err(_) => Err(Failure {
                problem: "the store is closed".into(),
                transient: false,
            }),
        };
        *self.unreachable.lock().unwrap_or_else(|p| p.into_inner()) = match &result {
            Err(failure) if failure.transient => Some(failure.problem.clone()),
            _ => None,
        };
        result
    }

    /// Why the database could not be reached at the last attempt, if it could not.
    fn unreachable(&self) -> Option<String> {
        self.unreachable
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// A pooled connection: an idle one, a new one while under the pool's size, else the
    /// first one returned.
    fn get(self: &Arc<Self>) -> Result<Pooled, Failure> {
        let mut state = self.idle.lock().unwrap_or_else(|p| p.into_inner());
        loop {
            while let Some(conn) = state.idle.pop() {
                if !conn.client.is_closed() {
                    return Ok(Pooled {
                        pool: self.clone(),
                        conn: Some(conn),
                    });
                }
                state.open -= 1;
            }
            if state.open < self.options.pool_size {
                state.open += 1;
                drop(state);
                let conn = self.connect().and_then(|client| {
                    block_on(Conn::prepare(client)).map_err(|e| Failure::from_client(&e))
                });
                return match conn {
                    Ok(conn) => Ok(Pooled {
                        pool: self.clone(),
                        conn: Some(conn),
                    }),
                    Err(failure) => {
                        self.idle.lock().unwrap_or_else(|p| p.into_inner()).open -= 1;
                        self.returned.notify_one();
                        Err(failure)
                    }
                };
            }
            state = self.returned.wait(state).unwrap_or_else(|p| p.into_inner());
        }
    }

    /// Runs `work` on a pooled connection, as the store's error.
    fn with<T>(
        self: &Arc<Self>,
        work: impl FnOnce(&Conn) -> Result<T, tokio_postgres::Error>,
    ) -> Result<T, StoreError> {
        let conn = self.get().map_err(|f| f.into_error(&self.location))?;
        work(&conn).map_err(|e| pg_error(&self.location, &e))
    }
}

/// Runs a connection until it ends.
async fn drive<S, T>(connection: tokio_postgres::Connection<S, T>, location: String)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
    T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    if let Err(error) = connection.await {
        tracing::debug!(error = %describe(&error), %location, "a PostgreSQL connection ended");
    }
}

/// How connections are made: plain, or TLS with the server's certificate verified.
#[derive(Clone)]
enum Tls {
    Off,
    Verified(tokio_postgres_rustls::MakeRustlsConnect),
}

/// A TLS connector that verifies the server's certificate chain and name against `ca_file`'s
/// authorities or the system's roots.
fn tls_connector(
    ca_file: Option<&std::path::Path>,
) -> Result<tokio_postgres_rustls::MakeRustlsConnect, StoreError> {
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject as _;
    let tls_error = |problem: String| StoreError::Database {
        location: "TLS".into(),
        problem,
    };
    let mut roots = rustls::RootCertStore::empty();
    match ca_file {
        Some(path) => {
            let certificates: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(path)
                .and_then(|certs| certs.collect())
                .map_err(|error| {
                    tls_error(format!(
                        "cannot read the CA certificates in {}: {error}",
                        path.display()
                    ))
                })?;
            let (added, _) = roots.add_parsable_certificates(certificates);
            if added == 0 {
                return Err(tls_error(format!(
                    "{} holds no usable CA certificate",
                    path.display()
                )));
            }
        }
        None => {
            let found = rustls_native_certs::load_native_certs();
            roots.add_parsable_certificates(found.certs);
        }
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|error| tls_error(error.to_string()))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(tokio_postgres_rustls::MakeRustlsConnect::new(config))
}

/// A failed database operation: what went wrong (the server's or the socket's words, never
/// the connection string) and whether trying again may help.
#[derive(Debug)]
struct Failure {
    problem: String,
    transient: bool,
}

impl Failure {
    fn from_client(error: &tokio_postgres::Error) -> Self {
        Self {
            problem: describe(error),
            transient: is_transient(error),
        }
    }

    fn into_error(self, location: &str) -> StoreError {
        StoreError::Database {
            location: location.to_string(),
            problem: self.problem,
        }
    }
}

/// A connection lent by the pool; returned when dropped (unless it broke).
struct Pooled {
    pool: Arc<Pool>,
    conn: Option<Conn>,
}

impl std::ops::Deref for Pooled {
    type Target = Conn;

    fn deref(&self) -> &Conn {
        self.conn
            .as_ref()
            .unwrap_or_else(|| unreachable!("taken only in drop"))
    }
}

impl Drop for Pooled {
    fn drop(&mut self) {
        let Some(conn) = self.conn.take() else {
            return;
        };
        let mut state = self.pool.idle.lock().unwrap_or_else(|p| p.into_inner());
        if conn.client.is_closed() {
            state.open -= 1;
        } else {
            state.idle.push(conn);
        }
        drop(state);
        self.pool.returned.notify_one();
    }
}

/// The PostgreSQL-backed [`Store`].
pub struct PostgresStore {
    pool: Arc<Pool>,
    /// The session that holds the writer lock for as long as the store is open.
    lock: Mutex<Option<Client>>,
    queue: Arc<CommitQueue>,
    /// Ends the filter thread's scan at close.
    closing: Arc<std::sync::atomic::AtomicBool>,
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
        let locked: bool =
            block_on(lock.query_one("SELECT pg_try_advisory_lock($1)", &[&WRITER_LOCK]))
                .map_err(|e| pg_error(&location, &e))?
                .get(0);
        if !locked {
            return Err(StoreError::InUse {
                path: location.clone().into(),
            });
        }
        let fsync: String = block_on(lock.query_one("SHOW fsync", &[]))
            .map_err(|e| pg_error(&location, &e))?
            .get(0);
        if fsync != "on" {
            tracing::warn!(%location, "the PostgreSQL server runs with fsync = off: a crash of its machine can lose acknowledged writes");
        }
        block_on(lock.batch_execute(CREATE_TABLE)).map_err(|e| pg_error(&location, &e))?;
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
        {
            let (pool, queue, closing) = (pool.clone(), queue.clone(), closing.clone());
            std::thread::Builder::new()
                .name("cdp-store-filters".into())
                .spawn(move || fill_filters(&pool, &queue, scan, &closing))
                .map_err(|e| StoreError::io("cannot start the store's filter thread", e))?;
        }
        tracing::info!(%location, last_seq, "PostgreSQL store open");
        Ok(Arc::new(Self {
            pool,
            lock: Mutex::new(Some(lock)),
            queue,
            closing,
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

/// A scanned entry as the `Store` interface gives it: key without the keyspace tag.
fn unprefixed(
    item: Result<(Vec<u8>, sled::IVec), StoreError>,
) -> Result<(Vec<u8>, Vec<u8>), StoreError> {
    item.map(|(key, value)| (key[1..].to_vec(), value.to_vec()))
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
            durability.mark_applied(last.seq);
        }
        for pending in &group {
            in_flight.pop(pending.seq);
        }
    }
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
    let started = Instant::now();
    let mut attempt = 0u32;
    loop {
        let result = pool.get().and_then(|conn| {
            block_on(async {
                conn.client.batch_execute("BEGIN").await?;
                if !put_keys.is_empty() {
                    conn.client
                        .execute(&conn.upsert, &[&put_keys, &put_values])
                        .await?;
                }
                if !deletes.is_empty() {
                    conn.client.execute(&conn.delete, &[&deletes]).await?;
                }
                conn.client.batch_execute("COMMIT").await
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
            Ok(()) => {
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
        if !self.queue.absent.may_contain(keyspace, key) {
            return Ok(None);
        }
        self.pool.with(|conn| {
            block_on(conn.client.query_opt(&conn.get, &[&full]))
                .map(|row| row.map(|row| row.get::<_, Vec<u8>>(0)))
        })
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
        self.queue.commit(batch)
    }

    fn flush(&self) -> Result<(), StoreError> {
        self.queue.wait_durable()
    }

    fn changes_after(&self, after: u64, limit: usize) -> Result<Vec<Change>, StoreError> {
        let start = prefixed(Keyspace::Changes, &(after.saturating_add(1)).to_be_bytes());
        let end = vec![Keyspace::Changes.tag() + 1];
        let base = PgRange::new(self.pool.clone(), start, end);
        let mut changes = Vec::new();
        for item in base.take(limit) {
            let (key, value) = item?;
            changes.push(decode_change_entry(&key, &value)?);
        }
        Ok(changes)
    }

    fn trim_changes(&self, upto: u64) -> Result<(), StoreError> {
        let start = prefixed(Keyspace::Changes, &0u64.to_be_bytes());
        let end = prefixed(Keyspace::Changes, &upto.to_be_bytes());
        self.pool.with(|conn| {
            block_on(conn.client.execute(
                "DELETE FROM cdp_store WHERE k >= $1 AND k <= $2",
                &[&start, &end],
            ))
            .map(|_| ())
        })
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
