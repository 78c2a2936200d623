//! Reopening the store after a failed write (issue 17 item 11), without a restart.
//!
//! After a failed flush the store refuses every write: acknowledging after a failed fsync
//! could lose data silently, and what is on disk is the only truth (PostgreSQL restarts its
//! storage from the WAL after a failed fsync for the same reason). Once the data directory
//! takes writes again (a space probe succeeds), the server answers 503 `store_unavailable`
//! with `Retry-After` for a moment, stops the background threads, waits for the requests and
//! jobs still using the failed engine, closes it and opens the data directory again (the
//! journal replayed, the search index caught up), then serves the new engine. The listener
//! never closes. Every acknowledged write was durable before the failure; the writes refused
//! since were never acknowledged.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::Context;

use crate::serve::{AppMaker, Background, Running, Schedule};

/// What the supervisor needs to reopen the store.
pub(crate) struct RecoveryPlan {
    pub(crate) running: Arc<Mutex<Option<Running>>>,
    pub(crate) app: cdp_server::SwappableApp,
    pub(crate) config: cdp_engine::EngineConfig,
    pub(crate) make_app: AppMaker,
    pub(crate) schedule: Schedule,
    pub(crate) data_dir: PathBuf,
}

/// The supervisor thread.
pub(crate) struct Recovery {
    stop: Arc<AtomicBool>,
    thread: JoinHandle<()>,
}

/// Bytes the space probe writes: room for a journal segment and a table to be written.
const PROBE_BYTES: usize = 8 * 1024 * 1024;
/// How long requests and jobs still using the failed engine are waited for.
const DRAIN: Duration = Duration::from_secs(60);

impl Recovery {
    pub(crate) fn start(plan: RecoveryPlan) -> anyhow::Result<Self> {
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let stop = stop.clone();
            std::thread::Builder::new()
                .name("cdp-store-recovery".into())
                .spawn(move || supervise(&plan, &stop))
                .context("cannot start the store recovery thread")?
        };
        Ok(Self { stop, thread })
    }

    pub(crate) fn stop(self) {
        self.stop.store(true, Ordering::Relaxed);
        if self.thread.join().is_err() {
            tracing::error!("the store recovery thread panicked");
        }
    }
}

/// Sleeps `duration` in short steps; false once `stop` is set.
fn pause(duration: Duration, stop: &AtomicBool) -> bool {
    let until = Instant::now() + duration;
    while Instant::now() < until {
        if stop.load(Ordering::Relaxed) {
            return false;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    !stop.load(Ordering::Relaxed)
}

/// Whether the data directory takes a write of [`PROBE_BYTES`] again.
fn space_is_back(dir: &Path) -> bool {
    let probe = dir.join(".space-probe");
    let written = std::fs::File::create(&probe).and_then(|mut file| {
        file.write_all(&vec![0u8; PROBE_BYTES])?;
        file.sync_all()
    });
    let _ = std::fs::remove_file(&probe);
    written.is_ok()
}

fn supervise(plan: &RecoveryPlan, stop: &AtomicBool) {
    let mut reported = false;
    while pause(Duration::from_secs(1), stop) {
        let failure = {
            let running = plan.running.lock().unwrap_or_else(|p| p.into_inner());
            match running.as_ref().map(|r| r.engine.store_health()) {
                Some(cdp_store::StoreHealth::Failed(failure)) => failure,
                _ => continue,
            }
        };
        if !space_is_back(&plan.data_dir) {
            if !reported {
                tracing::error!(failure = %failure, data_dir = %plan.data_dir.display(), "the store refuses writes after a failed flush; it is reopened by itself once the data directory takes writes again");
                reported = true;
            }
            continue;
        }
        reported = false;
        tracing::warn!(failure = %failure, "the data directory takes writes again: reopening the store");
        reopen(plan, stop);
    }
}

/// Closes the failed engine and opens the data directory again, until it works or the server
/// stops.
fn reopen(plan: &RecoveryPlan, stop: &AtomicBool) {
    plan.app.replace(cdp_server::recovering_app());
    let taken = plan
        .running
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .take();
    let Some(Running { engine, background }) = taken else {
        return;
    };
    background.stop();
    let drained = Instant::now() + DRAIN;
    while Arc::strong_count(&engine) > 1 && Instant::now() < drained {
        std::thread::sleep(Duration::from_millis(50));
    }
    if Arc::strong_count(&engine) > 1 {
        tracing::warn!(
            "requests or jobs still hold the failed store; reopening is retried until they end"
        );
    }
    if let Err(error) = engine.close() {
        tracing::info!(error = %error, "the failed store closed without its final flush (nothing acknowledged depends on it)");
    }
    drop(engine);
    loop {
        if stop.load(Ordering::Relaxed) {
            return;
        }
        match cdp_engine::Engine::open(plan.config.clone()) {
            Ok(engine) => {
                let engine = Arc::new(engine);
                match Background::start(&engine, plan.schedule) {
                    Ok(background) => {
                        plan.app.replace((plan.make_app)(&engine));
                        *plan.running.lock().unwrap_or_else(|p| p.into_inner()) =
                            Some(Running { engine, background });
                        tracing::info!("store recovered: writes are accepted again");
                        return;
                    }
                    Err(error) => {
                        tracing::warn!(error = %format!("{error:#}"), "the reopened store's search index cannot catch up yet; retrying");
                        let _ = engine.close();
                    }
                }
            }
            Err(error) => {
                tracing::warn!(error = %error, "cannot reopen the store yet; retrying");
            }
        }
        if !pause(Duration::from_secs(2), stop) {
            return;
        }
    }
}
