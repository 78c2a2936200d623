//! `cdp reindex`: rebuild the search index from the store (offline: the server must be
//! stopped). The index is derived; deleting DATA_DIR/index and running this loses nothing.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{Context, bail};
use cdp_store::DataDir;
use clap::Args;

use crate::keys::keyring_for_serve;

#[derive(Debug, Args)]
pub struct ReindexArgs {
    /// The data directory (default ./data). The server must be stopped.
    #[arg(long, env = "CDP_DATA_DIR")]
    data_dir: Option<PathBuf>,
    /// Master key file, as for `serve` (or CDP_MASTER_KEY, or the dev key).
    #[arg(long, env = "CDP_KEY_FILE")]
    key_file: Option<PathBuf>,
    /// Policy directory the server runs with (default built-in): the index records which
    /// purposes the policies allow for each person.
    #[arg(long, env = "CDP_POLICIES")]
    policies: Option<PathBuf>,
}

#[allow(clippy::print_stdout)]
pub fn run(args: ReindexArgs) -> anyhow::Result<()> {
    let data_dir = DataDir::new(
        args.data_dir
            .unwrap_or_else(|| PathBuf::from(crate::config::DEFAULT_DATA_DIR)),
    );
    if !data_dir.holds_store() {
        bail!("{} holds no store", data_dir.root().display());
    }
    let keyring = Arc::new(keyring_for_serve(args.key_file.as_deref(), &data_dir)?);
    let policies = Arc::new(crate::policy::load(args.policies.as_deref())?);
    let engine = Arc::new(
        cdp_engine::Engine::open(
            cdp_engine::EngineConfig::new(data_dir.root(), keyring, policies)
                .with_index(cdp_engine::IndexMode::Fresh),
        )
        .context("cannot open the data directory")?,
    );
    let index_dir = data_dir.index_dir();
    let indexer = cdp_engine::Indexer::new(engine.clone(), Default::default())?;
    let started = std::time::Instant::now();
    let count = indexer.rebuild()?;
    engine.close().context("flushing the store failed")?;
    println!(
        "indexed {count} profiles in {:.1} s into {}",
        started.elapsed().as_secs_f64(),
        index_dir.display()
    );
    Ok(())
}
