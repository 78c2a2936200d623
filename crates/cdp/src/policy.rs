//! `cdp policy check|ropa`: validate a policy directory and run its golden cases; print the
//! record of processing activities.

use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use cdp_policy::PolicySet;
use clap::Subcommand;

use crate::client::ServerArgs;

#[derive(Debug, Subcommand)]
pub enum PolicyCommand {
    /// Validate a policy directory (file, line and rule of every error) and run the golden
    /// cases of its tests/ folder.
    Check {
        /// The policy directory (default: ./policies).
        #[arg(long, default_value = "policies")]
        dir: PathBuf,
    },
    /// Print the record of processing activities (GDPR Art 30, PIPL) in markdown. With
    /// --server, from the running server (its policies and registered recipients).
    Ropa {
        /// A policy directory; default the built-in policies.
        #[arg(long, conflicts_with = "server")]
        dir: Option<PathBuf>,
        /// Ask this running server instead (needs --token / CDP_TOKEN).
        #[arg(long)]
        server: Option<String>,
        #[arg(long, env = "CDP_TOKEN")]
        token: Option<String>,
    },
}

/// The policies of a directory, or the built-in ones.
pub fn load(dir: Option<&Path>) -> anyhow::Result<PolicySet> {
    match dir {
        Some(dir) => PolicySet::load_dir(dir)
            .with_context(|| format!("the policies in {} are invalid", dir.display())),
        None => PolicySet::builtin().context("the built-in policies are invalid"),
    }
}

#[allow(clippy::print_stdout)]
pub fn run(command: PolicyCommand) -> anyhow::Result<()> {
    match command {
        PolicyCommand::Check { dir } => {
            let policies = PolicySet::load_dir(&dir).map_err(|error| match error {
                // The directory itself: say which flag names it.
                cdp_policy::PolicyError::Io { .. } => anyhow::anyhow!(
                    "{error} (pass --dir with a policy directory: a copy of the repository's policies/)"
                ),
                invalid => anyhow::anyhow!("{}/{invalid}", dir.display()),
            })?;
            println!(
                "{}: valid ({} jurisdictions: {}; {} purposes, {} data categories; version {})",
                dir.display(),
                policies.jurisdictions.len(),
                policies
                    .jurisdictions
                    .iter()
                    .map(|j| j.jurisdiction.as_str())
                    .collect::<Vec<_>>()
                    .join(", "),
                policies.taxonomy.purposes.len(),
                policies.taxonomy.data_categories.len(),
                policies.version
            );
            let tests = dir.join("tests");
            if tests.is_dir() {
                let files = cdp_policy::golden::load_cases(&tests)
                    .map_err(|error| anyhow::anyhow!("{}/{error}", dir.display()))?;
                let report = cdp_policy::golden::run(&policies, &files);
                for failure in &report.failures {
                    println!("FAIL {failure}");
                }
                println!(
                    "golden cases: {} passed, {} failed",
                    report.passed,
                    report.failures.len()
                );
                if !report.failures.is_empty() {
                    bail!("{} golden case(s) failed", report.failures.len());
                }
            }
            Ok(())
        }
        PolicyCommand::Ropa { dir, server, token } => {
            if let Some(server) = server {
                let client = ServerArgs { server, token };
                let answer = client.get("/v1/policies/ropa")?;
                let markdown = answer["markdown"]
                    .as_str()
                    .context("the server's answer has no markdown")?;
                print!("{markdown}");
                return Ok(());
            }
            let policies = load(dir.as_deref())?;
            let now = time::OffsetDateTime::now_utc()
                .format(&time::format_description::well_known::Rfc3339)
                .unwrap_or_default();
            print!("{}", policies.ropa(&[], &now));
            Ok(())
        }
    }
}
