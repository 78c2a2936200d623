//! The PostgreSQL store's connections: the options, a pool of tokio-postgres clients driven on
//! a runtime of the store's own (waited on with `futures_executor::block_on`, so any thread may
//! call the store), verified TLS, and errors that name the server, never the password.

use std::str::FromStr;
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use futures_executor::block_on;
use tokio_postgres::error::SqlState;
use tokio_postgres::{Client, Config, NoTls, Statement};

use crate::StoreError;

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
    /// Several nodes write this database (`[store] cluster = true`): the name this node
    /// goes by (its position in the change feed is kept under it). `None`: this process is
    /// the only writer, and a second one is refused.
    pub cluster_node: Option<String>,
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
            cluster_node: None,
        }
    }
}

/// Whether a store location is a PostgreSQL URL rather than a data directory.
pub fn is_postgres_url(location: &str) -> bool {
    location.starts_with("postgres://") || location.starts_with("postgresql://")
}

/// `user@host:port/database` of a configuration, for messages and logs: never the password.
pub(super) fn location_of(config: &Config) -> String {
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
pub(super) fn pg_error(location: &str, error: &tokio_postgres::Error) -> StoreError {
    StoreError::Database {
        location: location.to_string(),
        problem: describe(error),
    }
}

/// The error and its causes ("db error" alone says nothing: the server's message is its
/// source).
pub(super) fn describe(error: &tokio_postgres::Error) -> String {
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
pub(super) fn is_transient(error: &tokio_postgres::Error) -> bool {
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
pub(super) struct Conn {
    pub(super) client: Client,
    pub(super) get: Statement,
    pub(super) page_from: Statement,
    pub(super) page_after: Statement,
    pub(super) upsert: Statement,
    pub(super) delete: Statement,
    /// The sequence-number row, locked for the transaction (the applier's fence).
    pub(super) lock_seq: Statement,
    pub(super) get_many: Statement,
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
        let lock_seq = client
            .prepare("SELECT v FROM cdp_store WHERE k = $1 FOR UPDATE")
            .await?;
        let get_many = client
            .prepare("SELECT k, v FROM cdp_store WHERE k = ANY($1::bytea[])")
            .await?;
        Ok(Self {
            client,
            get,
            page_from,
            page_after,
            upsert,
            delete,
            lock_seq,
            get_many,
        })
    }
}

/// Connections to one database, on the store's runtime.
pub(super) struct Pool {
    config: Config,
    tls: Tls,
    pub(super) location: String,
    pub(super) options: PostgresStoreOptions,
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
    pub(super) fn new(options: &PostgresStoreOptions) -> Result<Self, StoreError> {
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
    pub(super) fn connect(&self) -> Result<Client, Failure> {
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
    pub(super) fn unreachable(&self) -> Option<String> {
        self.unreachable
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// A pooled connection: an idle one, a new one while under the pool's size, else the
    /// first one returned.
    pub(super) fn get(self: &Arc<Self>) -> Result<Pooled, Failure> {
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
    pub(super) fn with<T>(
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
pub(super) enum Tls {
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
pub(super) struct Failure {
    pub(super) problem: String,
    pub(super) transient: bool,
}

impl Failure {
    pub(super) fn from_client(error: &tokio_postgres::Error) -> Self {
        Self {
            problem: describe(error),
            transient: is_transient(error),
        }
    }

    pub(super) fn into_error(self, location: &str) -> StoreError {
        StoreError::Database {
            location: location.to_string(),
            problem: self.problem,
        }
    }
}

/// A connection lent by the pool; returned when dropped (unless it broke).
pub(super) struct Pooled {
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
