//! `cdp serve`.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use anyhow::Context;
use cdp_server::{HttpMetrics, ServerConfig};
use cdp_store::{DataDir, StoreOptions};
use clap::Args;

use crate::config::{ConfigFile, Overrides, Settings};
use crate::keys::{keyring_for_serve, token_key_for_serve};
use crate::logging::{self, LogFormat};

#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Address to listen on, IP:PORT (port 0 picks a free one). Default 127.0.0.1:8080.
    #[arg(long, env = "CDP_LISTEN")]
    listen: Option<String>,
    /// The data directory (store, dev key). Default ./data.
    #[arg(long, env = "CDP_DATA_DIR")]
    data_dir: Option<PathBuf>,
    /// Master key file (see `cdp keys init`). Alternatively set CDP_MASTER_KEY.
    #[arg(long, env = "CDP_KEY_FILE")]
    key_file: Option<PathBuf>,
    /// Policy directory (see docs/policies.md). Default: the built-in policies.
    #[arg(long, env = "CDP_POLICIES")]
    policies: Option<PathBuf>,
    /// Storage engine of a new data directory: fjall (default) or sled. An existing directory
    /// keeps its engine; naming the other one is refused.
    #[arg(long, env = "CDP_STORE_ENGINE")]
    store_engine: Option<String>,
    /// When every block of the store is read to check it: background (default), at-start or
    /// off (`[store] verify`).
    #[arg(long, env = "CDP_STORE_VERIFY")]
    store_verify: Option<String>,
    /// The store in PostgreSQL (`postgres://user@host:port/db`; `[store] url`); the password
    /// from `[store] password_file` or CDP_STORE_PASSWORD_FILE. The data directory then keeps
    /// the keys, the search index and export files.
    #[arg(long = "store", env = "CDP_STORE")]
    store_url: Option<String>,
    /// Several nodes share the PostgreSQL store and take turns at writing (`[store] cluster`);
    /// every node of the database must set it.
    #[arg(long = "cluster", env = "CDP_STORE_CLUSTER", num_args = 0..=1, default_missing_value = "true")]
    store_cluster: Option<bool>,
    /// This node's name among the nodes of the database (`[store] node`; default: made once
    /// and kept in DATA_DIR/node.id). On Kubernetes, the pod's name.
    #[arg(long = "node", env = "CDP_NODE_NAME")]
    store_node: Option<String>,
    /// TOML config file for everything else (see deploy/cdp.toml).
    #[arg(long, env = "CDP_CONFIG")]
    config: Option<PathBuf>,
}

/// The PostgreSQL options with this node's name when several nodes share the database.
fn cluster_options(
    settings: &Settings,
    data_dir: &DataDir,
) -> anyhow::Result<Option<cdp_store::PostgresStoreOptions>> {
    let Some(mut options) = settings.postgres.clone() else {
        anyhow::ensure!(
            !settings.store_cluster,
            "[store] cluster needs the store in PostgreSQL ([store] url or --store postgres://...): an embedded store has one node"
        );
        return Ok(None);
    };
    if settings.store_cluster {
        let name = match &settings.store_node {
            Some(name) => {
                anyhow::ensure!(
                    !name.is_empty()
                        && name.len() <= 64
                        && name
                            .chars()
                            .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c)),
                    "[store] node must be 1 to 64 letters, digits, '-', '_' or '.'"
                );
                name.clone()
            }
            None => data_dir
                .node_name()
                .context("cannot name this node (DATA_DIR/node.id)")?,
        };
        tracing::info!(node = %name, "one node of several on the PostgreSQL store");
        options.cluster_node = Some(name);
    }
    Ok(Some(options))
}

pub fn run(args: ServeArgs, log_format: Option<LogFormat>) -> anyhow::Result<()> {
    let file = match &args.config {
        Some(path) => ConfigFile::load(path)?,
        None => ConfigFile::default(),
    };
    let settings = Settings::resolve(
        file,
        Overrides {
            listen: args.listen,
            data_dir: args.data_dir,
            key_file: args.key_file,
            policies: args.policies,
            store_engine: args.store_engine,
            store_verify: args.store_verify,
            store_url: args.store_url,
            store_cluster: args.store_cluster,
            store_node: args.store_node,
            log_format,
        },
    )?;
    logging::init(settings.log_format, &settings.log_level);

    let data_dir = DataDir::new(&settings.data_dir);
    let keyring = Arc::new(keyring_for_serve(settings.key_file.as_deref(), &data_dir)?);
    let mut token_key = token_key_for_serve(settings.token_key_file.as_deref(), &data_dir)?;
    token_key.set_max_lifetime(settings.max_token_lifetime_seconds);
    let token_key = Arc::new(token_key);
    let policies = Arc::new(crate::policy::load(settings.policies.as_deref())?);
    tracing::info!(policies = %policies.origin, version = %policies.version, "policies loaded");
    for name in &settings.matching.jurisdictions {
        anyhow::ensure!(
            name == "*"
                || policies
                    .jurisdictions
                    .iter()
                    .any(|j| &j.jurisdiction == name),
            "[matching] jurisdictions names {name:?}, which is none of the policies' jurisdictions ({})",
            policies
                .jurisdictions
                .iter()
                .map(|j| j.jurisdiction.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
    if settings.matching.enabled() {
        tracing::info!(jurisdictions = ?settings.matching.jurisdictions, "fuzzy identity matching is on");
    }
    let postgres = cluster_options(&settings, &data_dir)?;
    let engine_config = cdp_engine::EngineConfig::new(data_dir.root(), keyring.clone(), policies)
        .with_rules(cdp_engine::EngineRules {
            identity: settings.identity,
            computed: settings.computed,
            survivorship: settings.survivorship,
            limits: Default::default(),
            exports: cdp_engine::exports::ExportSettings {
                file_lifetime: settings.export_file_lifetime,
                ..Default::default()
            },
            dedup: settings.dedup,
            contact: settings.contact,
            matching: settings.matching.clone(),
        })
        .with_store(StoreOptions {
            engine: settings.store_engine,
            cache_capacity: settings.cache_capacity_bytes,
            verification: settings.verification,
            postgres,
        })
        .with_exports_dir(settings.exports_dir.clone());
    let engine = Arc::new(
        cdp_engine::Engine::open(engine_config.clone())
            .context("cannot open the data directory")?,
    );
    if cdp_store::engine_of(&data_dir) == Some(cdp_store::StoreEngine::Sled) {
        tracing::warn!(
            data_dir = %data_dir.root().display(),
            "this data directory uses the sled engine; to move it to fjall (the default: faster, a quarter of the size), stop the server and run `cdp store copy --from {} --to NEW_DIR`, then serve NEW_DIR",
            data_dir.root().display()
        );
    }
    let schedule = Schedule {
        index_refresh: settings.index_refresh,
        retention_interval: settings.retention_interval,
        consent_tally_every: settings.consent_tally_every,
        matching_interval: settings.matching.interval,
    };
    let background = Background::start(&engine, schedule)?;
    tracing::info!(
        data_dir = %data_dir.root().display(),
        key_source = %keyring.source(),
        key_version = keyring.current_version().get(),
        "store open"
    );

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("cdp-worker")
        .build()
        .context("cannot start the async runtime")?;
    let server_config = ServerConfig {
        max_body_bytes: settings.max_body_bytes,
        request_timeout: settings.request_timeout,
        body_timeout: settings.body_timeout,
    };
    let metrics = Arc::new(HttpMetrics::new());
    let make_app: AppMaker = Arc::new(move |engine: &Arc<cdp_engine::Engine>| {
        cdp_server::router(
            engine.clone(),
            token_key.clone(),
            metrics.clone(),
            &server_config,
        )
    });
    let app = cdp_server::SwappableApp::new(make_app(&engine));
    let running = Arc::new(Mutex::new(Some(Running { engine, background })));
    let recovery = crate::recovery::Recovery::start(crate::recovery::RecoveryPlan {
        running: running.clone(),
        app: app.clone(),
        config: engine_config,
        make_app,
        schedule,
        data_dir: data_dir.root().to_path_buf(),
    })?;
    let damage_found = Arc::new(Mutex::new(None::<String>));
    let served: anyhow::Result<()> = runtime.block_on(async {
        let signal = shutdown_signal()?;
        let damage = damage_watch(running.clone());
        let found = damage_found.clone();
        let shutdown = async move {
            tokio::select! {
                () = signal => {}
                problem = damage => {
                    tracing::error!(error = %problem, "the store's verification found damage: stopping");
                    *found.lock().unwrap_or_else(|p| p.into_inner()) = Some(problem);
                }
            }
        };
        let listener = tokio::net::TcpListener::bind(settings.listen)
            .await
            .with_context(|| format!("cannot listen on {}", settings.listen))?;
        let addr = listener
            .local_addr()
            .context("cannot read the listening address")?;
        tracing::info!(%addr, version = env!("CARGO_PKG_VERSION"), "listening");
        cdp_server::serve(listener, app.router(), shutdown, settings.shutdown_grace)
            .await
            .context("HTTP server failed")
    });
    runtime.shutdown_timeout(std::time::Duration::from_secs(5));
    recovery.stop();
    let Some(Running { engine, background }) =
        running.lock().unwrap_or_else(|p| p.into_inner()).take()
    else {
        // Stopped while the store was being reopened: it is closed already.
        served?;
        tracing::info!("shutdown complete (the store was closed for reopening)");
        return Ok(());
    };
    background.stop();
    let failed_before = matches!(
        engine.store_health(),
        cdp_store::StoreHealth::Failed(_)
            | cdp_store::StoreHealth::Damaged(_)
            | cdp_store::StoreHealth::Unreachable(_)
    );
    let closed = engine.close();
    served?;
    if let Some(problem) = damage_found
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .take()
    {
        anyhow::bail!(
            "{problem}. The server stopped; every later start refuses until the data directory \
             is restored (the damage is recorded in {})",
            data_dir.damage_report().display()
        );
    }
    match closed {
        Ok(()) => {}
        // The store had refused writes since a failed flush: every acknowledged write is on
        // disk, and what it refused was never acknowledged. Nothing is lost by stopping.
        Err(error) if failed_before => tracing::error!(
            error = %error,
            "the store had failed earlier and could not be flushed on shutdown; every acknowledged write is on disk"
        ),
        Err(error) => return Err(error).context("flushing the store on shutdown failed"),
    }
    tracing::info!("shutdown complete");
    Ok(())
}

/// Builds the HTTP application over an engine (again, after the store was reopened).
pub(crate) type AppMaker = Arc<dyn Fn(&Arc<cdp_engine::Engine>) -> cdp_server::App + Send + Sync>;

/// The engine being served and its background threads.
pub(crate) struct Running {
    pub(crate) engine: Arc<cdp_engine::Engine>,
    pub(crate) background: Background,
}

/// When the background threads work.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Schedule {
    index_refresh: std::time::Duration,
    retention_interval: std::time::Duration,
    consent_tally_every: std::time::Duration,
    /// Fuzzy matching runs (`[matching] interval_minutes`; `None`: on demand only).
    matching_interval: Option<std::time::Duration>,
}

/// The threads beside the HTTP server: the indexer following the change feed, the retention
/// sweeper (every `[retention] interval_hours`, first after one interval; once across the
/// nodes of a shared database), fuzzy matching (every `[matching] interval_minutes` when set,
/// the same way) and the job sweeper (export jobs whose node stopped; the consent tally of
/// each `[consent] trend_every_secs`, once across the nodes).
pub(crate) struct Background {
    stop: Arc<std::sync::atomic::AtomicBool>,
    indexer: std::thread::JoinHandle<()>,
    retention: std::thread::JoinHandle<()>,
    matching: Option<std::thread::JoinHandle<()>>,
    jobs: std::thread::JoinHandle<()>,
    deliveries: std::thread::JoinHandle<()>,
}

/// How often a node looks for deliveries to destinations that are due (new, or a retry's time).
const DELIVERY_SWEEP: std::time::Duration = std::time::Duration::from_millis(500);

/// How often a node looks for export jobs whose lease expired.
const JOB_SWEEP: std::time::Duration = std::time::Duration::from_secs(5);

impl Background {
    pub(crate) fn start(
        engine: &Arc<cdp_engine::Engine>,
        schedule: Schedule,
    ) -> anyhow::Result<Self> {
        let Schedule {
            index_refresh,
            retention_interval,
            consent_tally_every,
            matching_interval,
        } = schedule;
        let indexer = Arc::new(cdp_engine::Indexer::new(
            engine.clone(),
            cdp_engine::IndexerOptions {
                refresh_every: index_refresh,
                ..Default::default()
            },
        )?);
        indexer
            .start()
            .context("cannot bring the search index up to date")?;
        let stop_indexer = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let indexer_thread = {
            let indexer = indexer.clone();
            let stop = stop_indexer.clone();
            std::thread::Builder::new()
                .name("cdp-indexer".into())
                .spawn(move || indexer.run(&stop))
                .context("cannot start the indexer")?
        };
        let retention = periodic(
            engine,
            &stop_indexer,
            "retention",
            retention_interval,
            |engine| match engine.run_retention(false, "retention-sweeper") {
                Ok(report) => tracing::info!(
                    events_deleted = report.events_deleted,
                    people_erased = report.people_erased,
                    export_files_deleted = report.export_files_deleted,
                    "retention run"
                ),
                Err(error) => tracing::error!(error = %error, "retention run failed"),
            },
        )?;
        let matching = match matching_interval {
            Some(interval) => Some(periodic(
                engine,
                &stop_indexer,
                "matching",
                interval,
                |engine| {
                    if let Err(error) = engine.run_matching("fuzzy-matching-scheduler", false) {
                        tracing::error!(error = %error, "fuzzy matching run failed");
                    }
                },
            )?),
            None => None,
        };
        // Export jobs whose node stopped (another node of the database, or this one before
        // a restart) are taken over once their lease expires.
        let jobs = {
            let engine = engine.clone();
            let stop = stop_indexer.clone();
            std::thread::Builder::new()
                .name("cdp-jobs".into())
                .spawn(move || {
                    let mut waited = JOB_SWEEP;
                    let mut tally_due = time::OffsetDateTime::UNIX_EPOCH;
                    let mut schedules_checked = std::time::Instant::now();
                    while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                        if waited >= JOB_SWEEP {
                            waited = std::time::Duration::ZERO;
                            if let Err(error) = engine.resume_orphaned_exports() {
                                tracing::warn!(error = %error, "cannot look for export jobs to take over");
                            }
                        }
                        // Scheduled exports whose time has come (a schedule is to the
                        // minute: once a second is soon enough, and one scan on a shared
                        // database per node and second is cheap).
                        if schedules_checked.elapsed() >= std::time::Duration::from_secs(1) {
                            schedules_checked = std::time::Instant::now();
                            if let Err(error) = engine.run_due_schedules() {
                                tracing::warn!(error = %error, "cannot start the scheduled exports");
                            }
                            // Campaigns due to send (once across the nodes); conversion
                            // events of campaigns made on other nodes of a shared database
                            // are indexed from now on here too.
                            if let Err(error) = engine.run_due_campaigns() {
                                tracing::warn!(error = %error, "cannot send the scheduled campaigns");
                            }
                        }
                        if time::OffsetDateTime::now_utc() >= tally_due {
                            match engine.tally_consents_if_due(consent_tally_every) {
                                Ok((_, next)) => tally_due = next,
                                Err(error) => {
                                    tracing::warn!(error = %error, "cannot take the consent tally");
                                    tally_due = time::OffsetDateTime::now_utc() + JOB_SWEEP;
                                }
                            }
                        }
                        std::thread::sleep(std::time::Duration::from_millis(200));
                        waited += std::time::Duration::from_millis(200);
                    }
                })
                .context("cannot start the job sweeper")?
        };
        // Deliveries of finished exports to their destinations, and their retries: on a
        // thread of their own, since a receiver may take its time to answer.
        let deliveries = {
            let engine = engine.clone();
            let stop = stop_indexer.clone();
            std::thread::Builder::new()
                .name("cdp-deliveries".into())
                .spawn(move || {
                    while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                        if let Err(error) = engine.deliver_due() {
                            tracing::warn!(error = %error, "cannot look for deliveries to make");
                        }
                        std::thread::sleep(DELIVERY_SWEEP);
                    }
                })
                .context("cannot start the delivery worker")?
        };
        Ok(Self {
            stop: stop_indexer,
            indexer: indexer_thread,
            retention,
            matching,
            jobs,
            deliveries,
        })
    }

    /// Stops both threads and waits for them (the indexer finishes its pass).
    pub(crate) fn stop(self) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        if self.indexer.join().is_err() {
            tracing::error!("the indexer thread panicked");
        }
        if self.retention.join().is_err() {
            tracing::error!("the retention thread panicked");
        }
        if self.matching.is_some_and(|thread| thread.join().is_err()) {
            tracing::error!("the fuzzy matching thread panicked");
        }
        if self.jobs.join().is_err() {
            tracing::error!("the job sweeper panicked");
        }
        if self.deliveries.join().is_err() {
            tracing::error!("the delivery worker panicked");
        }
    }
}

/// A thread that runs `work` every `interval` (first after one interval), once across the
/// nodes of a shared database: the node that claims the lease `name` for the interval runs it.
fn periodic(
    engine: &Arc<cdp_engine::Engine>,
    stop: &Arc<std::sync::atomic::AtomicBool>,
    name: &'static str,
    interval: std::time::Duration,
    work: impl Fn(&cdp_engine::Engine) + Send + 'static,
) -> anyhow::Result<std::thread::JoinHandle<()>> {
    let engine = engine.clone();
    let stop = stop.clone();
    std::thread::Builder::new()
        .name(format!("cdp-{name}"))
        .spawn(move || {
            let tick = std::time::Duration::from_millis(200);
            let mut waited = std::time::Duration::ZERO;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                std::thread::sleep(tick);
                waited += tick;
                if waited < interval {
                    continue;
                }
                waited = std::time::Duration::ZERO;
                let hold = time::Duration::try_from(interval).unwrap_or(time::Duration::DAY);
                match engine.claim_singleton(name, hold) {
                    Ok(true) => work(&engine),
                    Ok(false) => tracing::debug!(work = name, "another node runs this"),
                    Err(error) => {
                        tracing::error!(error = %error, work = name, "cannot claim the work")
                    }
                }
            }
        })
        .with_context(|| format!("cannot start the {name} thread"))
}

/// Registers SIGINT and SIGTERM handlers now (before the server says it is listening, so that
/// a signal sent right after that line is never met by the default action, which would kill the
/// process without a flush) and returns the future that resolves on the first of them.
/// Resolves with the problem once the store's background verification finds damage (see
/// cdp-store `damage.rs`): the server then stops instead of serving a store it cannot trust.
async fn damage_watch(running: Arc<Mutex<Option<Running>>>) -> String {
    loop {
        tokio::time::sleep(std::time::Duration::from_millis(250)).await;
        let health = running
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .as_ref()
            .map(|running| running.engine.store_health());
        if let Some(cdp_store::StoreHealth::Damaged(problem)) = health {
            return problem;
        }
    }
}

fn shutdown_signal() -> anyhow::Result<impl std::future::Future<Output = ()> + Send + 'static> {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let mut interrupt = signal(SignalKind::interrupt()).context("cannot handle SIGINT")?;
        let mut terminate = signal(SignalKind::terminate()).context("cannot handle SIGTERM")?;
        Ok(async move {
            tokio::select! {
                _ = interrupt.recv() => tracing::info!(signal = "SIGINT", "signal received"),
                _ = terminate.recv() => tracing::info!(signal = "SIGTERM", "signal received"),
            }
        })
    }
    #[cfg(not(unix))]
    {
        Ok(async {
            let _ = tokio::signal::ctrl_c().await;
            tracing::info!(signal = "ctrl-c", "signal received");
        })
    }
}
