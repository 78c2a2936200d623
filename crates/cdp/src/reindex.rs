//! `cdp reindex`: rebuild the search index from the store (offline: the server must be
//! stopped). The index is derived; deleting DATA_DIR/index and running this loses nothing.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{Context, bail};
use cdp_store::{DataDir, SledStore, SledStoreOptions, Store, Vault};
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
    if !data_dir.store_dir().exists() {
        bail!("{} holds no store", data_dir.root().display());
    }
    let keyring = Arc::new(keyring_for_serve(args.key_file.as_deref(), &data_dir)?);
    let sled = SledStore::open(&data_dir, &SledStoreOptions::default())
        .context("cannot open the store")?;
    let store: Arc<dyn Store> = sled.clone();
    let vault = Arc::new(Vault::open(store, keyring, &data_dir).context("cannot open the store")?);
    let engine = Arc::new(cdp_engine::Engine::new(
        vault,
        cdp_engine::EngineConfig::default(),
        Arc::new(crate::policy::load(args.policies.as_deref())?),
    ));
    let index_dir = data_dir.index_dir();
    if index_dir.exists() {
        // A fresh directory also recovers from a damaged or foreign index.
        std::fs::remove_dir_all(&index_dir)
            .with_context(|| format!("cannot remove {}", index_dir.display()))?;
    }
    let index = Arc::new(
        cdp_index::PersonIndex::open(&index_dir).context("cannot create the search index")?,
    );
    let indexer = cdp_engine::Indexer::new(engine, index, Default::default());
    let started = std::time::Instant::now();
    let count = indexer.rebuild()?;
    sled.close().context("flushing the store failed")?;
    println!(
        "indexed {count} profiles in {:.1} s into {}",
        started.elapsed().as_secs_f64(),
        index_dir.display()
    );
    Ok(())
}
