//! `cdp audit verify`: check the audit log's hash chain on a stopped server's data directory
//! (a running server answers the same at `GET /v1/audit/verify`).

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{Context, bail};
use cdp_store::DataDir;
use clap::Subcommand;

use crate::keys::keyring_for_serve;

#[derive(Debug, Subcommand)]
pub enum AuditCommand {
    /// Verify the hash chain; exit status 1 names the first broken entry.
    Verify {
        /// The data directory (default ./data). The server must be stopped.
        #[arg(long, env = "CDP_DATA_DIR")]
        data_dir: Option<PathBuf>,
        /// Master key file, as for `serve` (or CDP_MASTER_KEY, or the dev key).
        #[arg(long, env = "CDP_KEY_FILE")]
        key_file: Option<PathBuf>,
    },
}

#[allow(clippy::print_stdout)]
pub fn run(command: AuditCommand) -> anyhow::Result<()> {
    let AuditCommand::Verify { data_dir, key_file } = command;
    let data_dir =
        DataDir::new(data_dir.unwrap_or_else(|| PathBuf::from(crate::config::DEFAULT_DATA_DIR)));
    if !data_dir.holds_store() {
        bail!("{} holds no store", data_dir.root().display());
    }
    let keyring = Arc::new(keyring_for_serve(key_file.as_deref(), &data_dir)?);
    let engine = cdp_engine::Engine::open(
        cdp_engine::EngineConfig::new(
            data_dir.root(),
            keyring,
            Arc::new(crate::policy::load(None)?),
        )
        .with_index(cdp_engine::IndexMode::Absent),
    )
    .context("cannot open the data directory")?;
    let verification = engine.verify_audit();
    engine.close().context("closing the store failed")?;
    let verification = verification?;
    println!("{}", serde_json::to_string_pretty(&verification)?);
    match verification.problem {
        None => Ok(()),
        Some(problem) => bail!(
            "the audit log is broken at entry {} ({}): {}",
            problem.seq,
            problem.kind,
            problem.message
        ),
    }
}
