//! `cdp bench ingest`: the demo generator's events sent over HTTP to a real router by
//! concurrent clients, durable acknowledgement, the indexer following the change feed; then
//! the identity resolution is scored against the generator's truth.

use std::collections::{BTreeMap, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use base64::Engine as _;
use cdp_core::Channel;
use cdp_engine::{Engine, Indexer};

use super::*;

/// One batch to send: its source's channel and the planned events it holds (rendered by the
/// client that sends it: 10M rendered messages would not fit in memory beside the server).
type Batch = (Channel, Vec<u32>);

/// The engine with its indexer running, as in `serve`: the indexer's work competes for the
/// cores.
struct Platform {
    engine: Arc<Engine>,
    indexer: Arc<Indexer>,
    stop_indexer: Arc<AtomicBool>,
    indexer_thread: std::thread::JoinHandle<()>,
    /// `Authorization` header of each channel's source.
    write_keys: BTreeMap<Channel, String>,
}

impl Platform {
    /// A node: the engine over `root`, its indexer running; sources are made by the first
    /// node (`write_keys: None`) and shared by the others.
    fn start(
        bench: &BenchDir,
        root: &std::path::Path,
        (engine, cache_capacity): (StoreEngine, u64),
        postgres: Option<cdp_store::PostgresStoreOptions>,
        write_keys: Option<&BTreeMap<Channel, String>>,
    ) -> anyhow::Result<Self> {
        let engine = bench.open_node(root, engine, cache_capacity, postgres)?;
        let indexer = Arc::new(Indexer::new(engine.clone(), Default::default())?);
        indexer.start()?;
        let stop_indexer = Arc::new(AtomicBool::new(false));
        let indexer_thread = {
            let (indexer, stop) = (indexer.clone(), stop_indexer.clone());
            // Named as in `serve`, so that a profile of the benchmark tells its CPU apart.
            std::thread::Builder::new()
                .name("cdp-indexer".into())
                .spawn(move || indexer.run(&stop))?
        };
        if let Some(write_keys) = write_keys {
            return Ok(Self {
                engine,
                indexer,
                stop_indexer,
                indexer_thread,
                write_keys: write_keys.clone(),
            });
        }
        let mut write_keys = BTreeMap::new();
        for channel in Channel::ALL {
            let (_, key, ticket) = engine.create_source(channel.as_str(), channel, Some("CN"))?;
            ticket.wait_durable()?;
            let header = format!(
                "Basic {}",
                base64::engine::general_purpose::STANDARD.encode(format!("{key}:"))
            );
            write_keys.insert(channel, header);
        }
        Ok(Self {
            engine,
            indexer,
            stop_indexer,
            indexer_thread,
            write_keys,
        })
    }

    /// Waits until the index holds every durable write (at most `limit`), then stops the
    /// indexer.
    fn drain_index(self, limit: Duration) -> anyhow::Result<Arc<Engine>> {
        let started = Instant::now();
        let last_seq = self.engine.durable_seq();
        while self.indexer.current().seq < last_seq {
            anyhow::ensure!(
                started.elapsed() < limit,
                "the index did not catch up within {} s",
                limit.as_secs()
            );
            std::thread::sleep(Duration::from_millis(5));
        }
        self.stop_indexer.store(true, Ordering::Relaxed);
        let _ = self.indexer_thread.join();
        Ok(self.engine)
    }
}

/// How `cdp bench ingest` puts the planned events into batches.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum BatchOrder {
    /// A channel's events in event-time order, many people per batch.
    Time,
    /// One person's events on one channel per batch (a device's queue).
    Device,
}

/// The planned events as batches per channel (`Time`: in event-time order, as a source sends
/// its events roughly in order) or per person and channel (`Device`: up to `batch_size` of a
/// device's events, the batches sent in the order of their first event).
fn batches_of(plan: &crate::demo::Plan, batch_size: usize, order: BatchOrder) -> Vec<Batch> {
    let mut pending: BTreeMap<(u32, Channel), Vec<u32>> = BTreeMap::new();
    let mut batches = Vec::new();
    for (index, event) in plan.events.iter().enumerate() {
        let queue = match order {
            BatchOrder::Time => 0,
            BatchOrder::Device => event.person,
        };
        let list = pending.entry((queue, event.channel)).or_default();
        list.push(u32::try_from(index).unwrap_or(u32::MAX));
        if list.len() >= batch_size {
            batches.push((event.channel, std::mem::take(list)));
        }
    }
    batches.extend(
        pending
            .into_iter()
            .filter(|(_, list)| !list.is_empty())
            .map(|((_, channel), list)| (channel, list)),
    );
    if order == BatchOrder::Device {
        batches.sort_by_key(|(_, list)| list[0]);
    }
    batches
}

/// The identifiers the sent events carried, as hashes of (type, canonical value): the truth is
/// scored over those.
#[derive(Default)]
struct Carried(std::sync::Mutex<std::collections::HashSet<u64>>);

impl Carried {
    fn hash(kind: &str, value: &str) -> u64 {
        use std::hash::{Hash, Hasher};
        let mut hasher = std::hash::DefaultHasher::new();
        (kind, value).hash(&mut hasher);
        hasher.finish()
    }

    fn add(&self, identifiers: impl IntoIterator<Item = (String, String)>) {
        let hashes: Vec<u64> = identifiers
            .into_iter()
            .map(|(kind, value)| Self::hash(&kind, &value))
            .collect();
        if let Ok(mut set) = self.0.lock() {
            set.extend(hashes);
        }
    }

    fn contains(&self, kind: &str, value: &str) -> bool {
        self.0
            .lock()
            .is_ok_and(|set| set.contains(&Self::hash(kind, value)))
    }
}

/// What the clients and the freshness monitor measured.
struct Run {
    latencies: Vec<Duration>,
    elapsed: Duration,
    /// Durable write -> searchable, sampled every 50 ms.
    freshness: Vec<Duration>,
    /// (seconds since the start, events acknowledged).
    progress: Vec<(f64, usize)>,
    failures: usize,
    /// CPU seconds the process used while sending (server, indexer and clients).
    cpu: Option<f64>,
    /// How long the first node's write lock was held while sending: ingestion's serial part.
    writer_busy: Duration,
}

/// Sends the batches from `clients` concurrent clients while a monitor samples the index's
/// freshness.
fn drive(
    platform: &Platform,
    addrs: &[std::net::SocketAddr],
    (plan, batches, carried): (&crate::demo::Plan, &[Batch], &Carried),
    clients: usize,
) -> anyhow::Result<Run> {
    let next = AtomicUsize::new(0);
    let failures = AtomicUsize::new(0);
    let sending = AtomicBool::new(true);
    let acknowledged = AtomicUsize::new(0);
    let cpu_before = super::process_cpu_seconds();
    let busy_before = platform.engine.writer_busy();
    let started = Instant::now();
    let (latencies, elapsed, (freshness, progress)) = std::thread::scope(|scope| {
        // Named threads, so that a profile of the benchmark tells its CPU from the server's.
        let monitor = std::thread::Builder::new()
            .name("bench-monitor".into())
            .spawn_scoped(scope, || {
                monitor_freshness(platform, &sending, &acknowledged, started)
            })?;
        let counters = (&next, &acknowledged, &failures);
        let workers = (0..clients)
            .map(|client| {
                // Clients spread over the nodes, as behind a load balancer.
                let addr = addrs[client % addrs.len()];
                std::thread::Builder::new()
                    .name("bench-client".into())
                    .spawn_scoped(scope, move || {
                        send_batches(
                            addr,
                            (plan, batches, carried),
                            &platform.write_keys,
                            counters,
                        )
                    })
            })
            .collect::<Vec<_>>();
        let mut latencies = Vec::new();
        let mut unstarted = None;
        for worker in workers {
            match worker {
                Ok(worker) => latencies.extend(worker.join().unwrap_or_default()),
                Err(error) => unstarted = Some(error),
            }
        }
        let elapsed = started.elapsed();
        sending.store(false, Ordering::Relaxed);
        let sampled = monitor.join().unwrap_or_default();
        match unstarted {
            Some(error) => Err(anyhow::Error::from(error).context("starting a bench client")),
            None => Ok((latencies, elapsed, sampled)),
        }
    })?;
    Ok(Run {
        latencies,
        elapsed,
        freshness,
        progress,
        failures: failures.load(Ordering::Relaxed),
        cpu: cpu_before
            .zip(super::process_cpu_seconds())
            .map(|(a, b)| b - a),
        writer_busy: platform.engine.writer_busy().saturating_sub(busy_before),
    })
}

/// One client: takes the next batch until none is left, renders and sends it; returns the
/// latencies of the acknowledged ones. `counters`: (next batch, events acknowledged, failed
/// batches).
fn send_batches(
    addr: std::net::SocketAddr,
    (plan, batches, carried): (&crate::demo::Plan, &[Batch], &Carried),
    write_keys: &BTreeMap<Channel, String>,
    (next, acknowledged, failures): (&AtomicUsize, &AtomicUsize, &AtomicUsize),
) -> Vec<Duration> {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .build()
        .into();
    let url = format!("http://{addr}/v1/batch");
    let mut latencies = Vec::new();
    let mut renderer = plan.renderer();
    while let Some((channel, events)) = batches.get(next.fetch_add(1, Ordering::Relaxed)) {
        let mut messages = Vec::with_capacity(events.len());
        for index in events {
            let (event, identifiers) = renderer.render(*index as usize);
            messages.push(event.message);
            carried.add(identifiers);
        }
        let body = serde_json::json!({ "batch": messages }).to_string();
        let count = events.len();
        let begun = Instant::now();
        let result = agent
            .post(&url)
            .header("Authorization", &write_keys[channel])
            .header("Content-Type", "application/json")
            .send(body.as_bytes());
        match result {
            Ok(response) if response.status().as_u16() == 200 => {
                latencies.push(begun.elapsed());
                acknowledged.fetch_add(count, Ordering::Relaxed);
            }
            _ => {
                failures.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
    latencies
}

/// Freshness under load: every 50 ms, the newest durable (acknowledgeable) sequence number;
/// its lag is the time until the index has taken it in. Also samples the events acknowledged
/// so far (the rate late in the run, when the store is largest).
fn monitor_freshness(
    platform: &Platform,
    sending: &AtomicBool,
    acknowledged: &AtomicUsize,
    started: Instant,
) -> (Vec<Duration>, Vec<(f64, usize)>) {
    let mut waiting: VecDeque<(u64, Instant)> = VecDeque::new();
    let mut lags = Vec::new();
    let mut progress: Vec<(f64, usize)> = Vec::new();
    let mut last_sample = Instant::now();
    while sending.load(Ordering::Relaxed) || !waiting.is_empty() {
        let indexed = platform.indexer.current().seq;
        while waiting.front().is_some_and(|(seq, _)| *seq <= indexed) {
            if let Some((_, at)) = waiting.pop_front() {
                lags.push(at.elapsed());
            }
        }
        if sending.load(Ordering::Relaxed) && last_sample.elapsed() >= Duration::from_millis(50) {
            let seq = platform.engine.durable_seq();
            if seq > indexed {
                waiting.push_back((seq, Instant::now()));
            }
            progress.push((
                started.elapsed().as_secs_f64(),
                acknowledged.load(Ordering::Relaxed),
            ));
            last_sample = Instant::now();
        }
        if waiting
            .front()
            .is_some_and(|(_, at)| at.elapsed() > Duration::from_secs(600))
        {
            break;
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    (lags, progress)
}

/// Events per second over the last fifth of the run.
fn last_fifth_rate(run: &Run, total_events: usize) -> f64 {
    let from = run.elapsed.as_secs_f64() * 0.8;
    match run.progress.iter().find(|(at, _)| *at >= from) {
        Some((at, acked)) if run.elapsed.as_secs_f64() > *at => {
            (total_events - acked) as f64 / (run.elapsed.as_secs_f64() - at)
        }
        _ => total_events as f64 / run.elapsed.as_secs_f64(),
    }
}

pub(super) fn run(args: IngestArgs) -> anyhow::Result<()> {
    anyhow::ensure!(
        args.people > 0 && args.batch_size > 0 && args.clients > 0,
        "--people, --batch-size and --clients must be at least 1"
    );
    anyhow::ensure!(
        (1..=8).contains(&args.nodes)
            && ((args.nodes == 1 && !args.cluster) || args.store_url.is_some()),
        "--nodes must be 1 to 8, and several nodes (or --cluster) need --store postgres://..."
    );
    let bench = BenchDir::create(args.dir.as_deref(), "bench-ingest")?;
    // The password and CA from CDP_STORE_PASSWORD_FILE / CDP_STORE_CA_FILE, as `serve` takes them.
    let postgres = crate::config::postgres_options(args.store_url.clone(), None, None, None)?;
    let node_options = |node: usize| {
        postgres.clone().map(|mut options| {
            if args.nodes > 1 || args.cluster {
                options.cluster_node = Some(format!("bench-node-{node}"));
            }
            options
        })
    };
    let settings = (args.engine, args.cache_mb.max(16) * 1024 * 1024);
    let platform = Platform::start(
        &bench,
        bench.data_dir.root(),
        settings,
        node_options(0),
        None,
    )?;
    // The other nodes: data directories of their own beside the first one's.
    let mut others = Vec::new();
    for node in 1..args.nodes {
        let root = bench
            .data_dir
            .root()
            .with_file_name(format!("bench-ingest-node-{node}"));
        let other = Platform::start(
            &bench,
            &root,
            settings,
            node_options(node),
            Some(&platform.write_keys),
        )?;
        let server = Server::start(other.engine.clone())?;
        others.push((other, server));
    }
    let generated_at = Instant::now();
    let plan = crate::demo::plan(
        args.people,
        args.seed,
        args.events_per_person,
        crate::demo::window_start_today(),
    );
    let generation = generated_at.elapsed();
    let total_events = plan.events.len();
    let batches = batches_of(&plan, args.batch_size, args.order);
    let carried = Carried::default();
    let server = Server::start(platform.engine.clone())?;
    let addrs: Vec<std::net::SocketAddr> = std::iter::once(server.addr)
        .chain(others.iter().map(|(_, server)| server.addr))
        .collect();
    let mut run = drive(&platform, &addrs, (&plan, &batches, &carried), args.clients)?;
    run.freshness.sort();
    run.latencies.sort();
    let last_fifth = last_fifth_rate(&run, total_events);
    server.stop();
    for (other, server) in others {
        server.stop();
        let engine = other.drain_index(Duration::from_secs(600))?;
        engine.close()?;
    }
    // How long after the last acknowledgement the index holds everything.
    let drained_at = Instant::now();
    let index = platform.indexer.index().clone();
    let engine = platform.drain_index(Duration::from_secs(600))?;
    let index_lag = drained_at.elapsed();
    let failures = run.failures;
    anyhow::ensure!(failures == 0, "{failures} batches were not acknowledged");

    let evaluated_at = Instant::now();
    let mut assignments = Vec::new();
    for person in 0..plan.people() {
        for (kind, value, person) in plan.truth_of(person) {
            if !carried.contains(&kind, &value) {
                continue;
            }
            let kind: cdp_core::IdentifierType = kind
                .parse()
                .map_err(|_| anyhow::anyhow!("bad truth type"))?;
            let profile = engine.profile_of_identifier(&kind, &value, Some("CN"))?;
            assignments.push((person, profile));
        }
    }
    let evaluation = evaluated_at.elapsed();
    let stats = engine.store_stats();
    engine.close()?;
    // After close, and after the last handle is gone: the engine has flushed, sled's journal
    // is emptied, and fjall has deleted the tables its compactions replaced (it does so when
    // the database is dropped; measured before, a store looked 35% larger than it is).
    anyhow::ensure!(
        Arc::strong_count(&engine) == 1,
        "the engine is still shared: its store files would be measured while open"
    );
    drop(engine);
    let data_dir = &bench.data_dir;
    let store_bytes = match &postgres {
        Some(options) => cdp_store::postgres_database_bytes(options)?,
        None => {
            disk_usage(&data_dir.lsm_dir())
                + disk_usage(&data_dir.store_dir())
                + std::fs::metadata(data_dir.journal()).map_or(0, |m| m.len())
        }
    };
    let report = Report {
        store_name: if postgres.is_some() {
            "PostgreSQL"
        } else {
            args.engine.as_str()
        },
        store_bytes,
        lsm_journal_bytes: lsm_journal_bytes(&data_dir.lsm_dir()),
        peak_rss: process_memory("VmHWM"),
        people: args.people,
        nodes: args.nodes,
        events: total_events,
        batches: batches.len(),
        batch_size: args.batch_size,
        order: args.order,
        clients: args.clients,
        generation,
        evaluation,
        last_fifth,
        indexed: index.len(),
        index_lag,
        stats,
        quality: crate::demo::quality(&assignments),
        run,
    };
    report.print(args.json);
    Ok(())
}

/// Bytes of fjall's journal files (`N.jnl`) in its directory.
fn lsm_journal_bytes(lsm_dir: &std::path::Path) -> u64 {
    std::fs::read_dir(lsm_dir).map_or(0, |entries| {
        entries
            .flatten()
            .filter(|entry| entry.path().extension().is_some_and(|ext| ext == "jnl"))
            .filter_map(|entry| entry.metadata().ok())
            .map(|meta| meta.len())
            .sum()
    })
}

/// The figures of one run.
struct Report {
    /// The engine, or PostgreSQL.
    store_name: &'static str,
    /// Bytes of the store's files (PostgreSQL: the database's size) (its engine's directory, and sled's journal) after close.
    store_bytes: u64,
    /// Of those, fjall's journal files: after a clean close only its active journal, which
    /// grows to 64 MiB whatever the store's size (a fixed cost that weighs on small runs).
    lsm_journal_bytes: u64,
    /// The whole bench process's peak resident memory (it also holds the generated events).
    peak_rss: Option<u64>,
    people: u64,
    /// Nodes sharing the PostgreSQL store.
    nodes: usize,
    events: usize,
    batches: usize,
    batch_size: usize,
    order: BatchOrder,
    clients: usize,
    generation: Duration,
    evaluation: Duration,
    last_fifth: f64,
    indexed: u64,
    index_lag: Duration,
    stats: cdp_store::StoreStats,
    quality: crate::demo::Quality,
    /// Latencies and freshness sorted.
    run: Run,
}

impl Report {
    fn print(&self, json: bool) {
        let ms = |d: Duration| d.as_secs_f64() * 1e3;
        let run = &self.run;
        let per_second = self.events as f64 / run.elapsed.as_secs_f64();
        let (p50, p99) = (
            percentile(&run.latencies, 0.5),
            percentile(&run.latencies, 0.99),
        );
        let (fresh_p50, fresh_p99, fresh_max) = (
            percentile(&run.freshness, 0.5),
            percentile(&run.freshness, 0.99),
            run.freshness.last().copied().unwrap_or_default(),
        );
        let quality = &self.quality;
        if json {
            let report = serde_json::json!({
                "engine": self.store_name,
                "store_bytes": self.store_bytes,
                "store_bytes_per_event": self.store_bytes / (self.events as u64).max(1),
                "lsm_journal_bytes": self.lsm_journal_bytes,
                "peak_rss_bytes": self.peak_rss,
                "people": self.people,
                "nodes": self.nodes,
                "events": self.events,
                "batches": self.batches,
                "order": format!("{:?}", self.order).to_lowercase(),
                "seconds": run.elapsed.as_secs_f64(),
                "events_per_second": per_second.round(),
                "last_fifth_events_per_second": self.last_fifth.round(),
                "p50_ms": ms(p50),
                "p99_ms": ms(p99),
                "cores_busy": run.cpu.map(|cpu| cpu / run.elapsed.as_secs_f64()),
                "writer_busy_share": run.writer_busy.as_secs_f64() / run.elapsed.as_secs_f64(),
                "commits": self.stats.commits,
                "flushes": self.stats.flushes,
                "precision": quality.precision,
                "recall": quality.recall,
                "f1": quality.f1,
                "profiles": quality.predicted_profiles,
                "true_people": quality.true_people,
                "largest_profile": quality.largest_profile,
                "unresolved": quality.unresolved,
                "indexed": self.indexed,
                "index_lag_ms": ms(self.index_lag).round(),
                "freshness_p50_ms": ms(fresh_p50).round(),
                "freshness_p99_ms": ms(fresh_p99).round(),
                "freshness_max_ms": ms(fresh_max).round(),
            });
            println!("{report}");
            return;
        }
        println!(
            "cdp bench ingest: {} people, {} events, {} batches of <= {} ({}) over HTTP, {} clients, {} store{}",
            self.people,
            self.events,
            self.batches,
            self.batch_size,
            match self.order {
                BatchOrder::Time => "many people each, in event-time order",
                BatchOrder::Device => "one person and channel each",
            },
            self.clients,
            self.store_name,
            if self.nodes > 1 {
                format!(
                    ", {} nodes sharing it (clients spread over them)",
                    self.nodes
                )
            } else {
                String::new()
            }
        );
        println!(
            "  generated in {:.2} s; ingested in {:.2} s",
            self.generation.as_secs_f64(),
            run.elapsed.as_secs_f64()
        );
        println!(
            "  {per_second:.0} events/s with identity resolution, encryption and durable acknowledgement (budget >= 20,000); {:.0} events/s over the last fifth of the run (largest store)",
            self.last_fifth
        );
        println!(
            "  search index (following the change feed meanwhile): {} people, complete {:.0} ms after the last acknowledgement",
            self.indexed,
            ms(self.index_lag)
        );
        println!(
            "  index freshness under load (durable write -> searchable, {} samples): p50 {:.0} ms, p99 {:.0} ms, max {:.0} ms (budget <= 1,000)",
            run.freshness.len(),
            ms(fresh_p50),
            ms(fresh_p99),
            ms(fresh_max)
        );
        println!(
            "  batch latency p50 {:.1} ms, p99 {:.1} ms; {} commits, {} flushes",
            ms(p50),
            ms(p99),
            self.stats.commits,
            self.stats.flushes
        );
        println!(
            "  while sending: {} cores busy (of the process: server, indexer, clients); the write lock held {:.0} % of the time{}",
            run.cpu.map_or_else(
                || "unknown".to_string(),
                |cpu| format!("{:.2}", cpu / run.elapsed.as_secs_f64())
            ),
            100.0 * run.writer_busy.as_secs_f64() / run.elapsed.as_secs_f64(),
            if self.nodes > 1 { " (first node)" } else { "" }
        );
        let peak = self.peak_rss.map_or_else(
            || "unknown".to_string(),
            |b| format!("{:.0} MB", b as f64 / 1e6),
        );
        if self.store_name == "PostgreSQL" {
            println!(
                "  store in PostgreSQL: {:.1} MB (pg_database_size, with its indexes and free space), {} bytes per event; bench process peak RSS {peak}",
                self.store_bytes as f64 / 1e6,
                self.store_bytes / (self.events as u64).max(1),
            );
        } else {
            println!(
                "  store on disk: {:.1} MB, {} bytes per event (budget <= 1,000), of which fjall's journal {:.1} MB (at most 64 MiB after a clean close, at any store size); bench process peak RSS {peak}",
                self.store_bytes as f64 / 1e6,
                self.store_bytes / (self.events as u64).max(1),
                self.lsm_journal_bytes as f64 / 1e6,
            );
        }
        println!(
            "  same-person pairs: precision {:.4}, recall {:.4}, F1 {:.4} ({} profiles for {} people; largest profile {} identifiers; {} identifiers unresolved; evaluated in {:.1} s)",
            quality.precision,
            quality.recall,
            quality.f1,
            quality.predicted_profiles,
            quality.true_people,
            quality.largest_profile,
            quality.unresolved,
            self.evaluation.as_secs_f64()
        );
    }
}
