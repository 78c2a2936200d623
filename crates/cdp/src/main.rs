//! `cdp`: the one binary of the customer data platform.
//!
//! Offline commands (`keys`, `bench`) work on files directly; `serve` runs the platform. Errors
//! are reported with `anyhow` here and only here.

#![allow(clippy::print_stdout)] // A CLI prints its answers.

mod audiences;
mod audit;
mod bench;
mod campaigns;
mod client;
mod config;
mod consents;
mod demo;
mod demo_campaign;
mod demo_noisy;
mod export;
mod import;
mod keys;
mod logging;
mod policy;
mod probe;
mod recipients;
mod recovery;
mod reindex;
mod requests;
mod schedules;
mod serve;
mod sources;
mod store;
mod token;
mod users;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// mimalloc instead of glibc malloc: export and ingestion threads allocate and free many small
/// records, and glibc spent about a third of an export's time in its free lists
/// (`cdp bench export`, see docs/performance.md).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Debug, Parser)]
#[command(name = "cdp", version, about = "Privacy-first customer data platform")]
struct Cli {
    /// Log format on stderr.
    #[arg(long, global = true, env = "CDP_LOG_FORMAT", value_enum)]
    log_format: Option<logging::LogFormat>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the platform: HTTP API on the embedded store.
    Serve(serve::ServeArgs),
    /// Manage the master keyring (offline).
    #[command(subcommand)]
    Keys(keys::KeysCommand),
    /// Issue management-API tokens (offline; works while `serve` runs).
    #[command(subcommand)]
    Token(token::TokenCommand),
    /// Named operator accounts of the console (client of a running server).
    #[command(subcommand)]
    Users(users::UsersCommand),
    /// Manage ingestion sources (client of a running server).
    #[command(subcommand)]
    Sources(sources::SourcesCommand),
    /// Saved audiences: list, show, count, create, update, delete (client of a running server).
    #[command(subcommand)]
    Audiences(audiences::AudiencesCommand),
    /// Recipients of exports: list, show, add, update, retire (client of a running server).
    #[command(subcommand)]
    Recipients(recipients::RecipientsCommand),
    /// The suppression list: list, add, remove (client of a running server).
    #[command(subcommand)]
    Suppressions(recipients::SuppressionsCommand),
    /// Where exports are delivered: HTTPS webhooks and SFTP servers of recipients, their dead
    /// letters (client of a running server).
    #[command(subcommand)]
    Destinations(schedules::DestinationsCommand),
    /// Scheduled exports that send what changed since their previous run (client of a
    /// running server).
    #[command(subcommand)]
    Schedules(schedules::SchedulesCommand),
    /// Campaigns with holdouts and A/B variants, their sends and measured results (client of
    /// a running server).
    #[command(subcommand)]
    Campaigns(campaigns::CampaignsCommand),
    /// Import a CRM/POS file (CSV or JSONL) into the running server.
    Import(import::ImportArgs),
    /// Consents: bulk import with evidence per row (client of a running server).
    #[command(subcommand)]
    Consents(consents::ConsentsCommand),
    /// Validate policies, run their golden cases, print the record of processing (offline).
    #[command(subcommand)]
    Policy(policy::PolicyCommand),
    /// Export audiences to recipients (client of a running server); verify export files.
    #[command(subcommand)]
    Export(export::ExportCommand),
    /// Data-subject requests (client of a running server).
    #[command(subcommand)]
    Requests(requests::RequestsCommand),
    /// Retention: run the sweeper now (client of a running server).
    #[command(subcommand)]
    Retention(requests::RetentionCommand),
    /// Exit 0 when a running server is ready (container health checks, exec probes).
    Probe(probe::ProbeArgs),
    /// Rebuild the search index from the store (offline, server stopped).
    Reindex(reindex::ReindexArgs),
    /// Move a store to another engine (offline, server stopped).
    #[command(subcommand)]
    Store(store::StoreCommand),
    /// Verify the audit log's hash chain (offline, server stopped).
    #[command(subcommand)]
    Audit(audit::AuditCommand),
    /// Synthetic cross-channel data with ground truth.
    #[command(subcommand)]
    Demo(DemoCommand),
    /// Measure this machine against the budgets of docs/performance.md.
    #[command(subcommand)]
    Bench(bench::BenchCommand),
}

#[derive(Debug, Subcommand)]
enum DemoCommand {
    /// Write one JSONL file per channel (import each with `cdp import`) and truth.csv.
    Generate {
        #[arg(long, default_value_t = 1000)]
        people: u64,
        #[arg(long, default_value_t = 42)]
        seed: u64,
        /// Output directory.
        #[arg(long, default_value = "demo-data")]
        out: std::path::PathBuf,
        /// The day the generated history ends before (YYYY-MM-DD, UTC); today by default, so
        /// recency, churn risk and tiers look like a live shop's. The same seed and date always
        /// give the same files.
        #[arg(long, value_parser = parse_date)]
        as_of: Option<time::Date>,
        #[command(flatten)]
        response: demo_campaign::ResponseArgs,
        /// Write instead people in a CRM, a POS and an online shop with nothing deterministic
        /// in common and Chinese and English variants of names, birth dates and addresses
        /// (crm.jsonl, pos.jsonl, online.jsonl, truth.csv): what fuzzy matching links.
        #[arg(long, conflicts_with = "respond_to")]
        noisy: bool,
    },
}

/// A calendar date as `YYYY-MM-DD`.
fn parse_date(text: &str) -> Result<time::Date, String> {
    let format = time::macros::format_description!("[year]-[month]-[day]");
    time::Date::parse(text, &format).map_err(|_| format!("{text:?} is not a date (YYYY-MM-DD)"))
}

/// `cdp policy ropa | head -1`: once the reader is gone, `println!` panics ("failed printing to
/// stdout: Broken pipe"), since Rust ignores SIGPIPE and `unsafe` (to restore it) is denied
/// here. The command then ends as a Unix tool killed by SIGPIPE does: no message, status 141
/// (128 + SIGPIPE), so that `set -o pipefail` still sees it did not finish. Not for `serve`,
/// whose output is logs.
fn end_quietly_on_closed_stdout() {
    let default = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let message = info
            .payload()
            .downcast_ref::<String>()
            .map(String::as_str)
            .or_else(|| info.payload().downcast_ref::<&str>().copied())
            .unwrap_or_default();
        if message.starts_with("failed printing to stdout") && message.contains("Broken pipe") {
            std::process::exit(141);
        }
        default(info);
    }));
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let serving = matches!(cli.command, Command::Serve(_));
    if !serving {
        end_quietly_on_closed_stdout();
    }
    let result = match cli.command {
        Command::Serve(args) => serve::run(args, cli.log_format),
        Command::Keys(command) => {
            logging::init(cli.log_format.unwrap_or_default(), "warn");
            keys::run(command)
        }
        Command::Token(command) => {
            logging::init(cli.log_format.unwrap_or_default(), "warn");
            token::run(command)
        }
        Command::Users(command) => {
            logging::init(cli.log_format.unwrap_or_default(), "warn");
            users::run(command)
        }
        Command::Sources(command) => {
            logging::init(cli.log_format.unwrap_or_default(), "warn");
            sources::run(command)
        }
        Command::Audiences(command) => {
            logging::init(cli.log_format.unwrap_or_default(), "warn");
            audiences::run(command)
        }
        Command::Recipients(command) => {
            logging::init(cli.log_format.unwrap_or_default(), "warn");
            recipients::run(command)
        }
        Command::Suppressions(command) => {
            logging::init(cli.log_format.unwrap_or_default(), "warn");
            recipients::run_suppressions(command)
        }
        Command::Destinations(command) => {
            logging::init(cli.log_format.unwrap_or_default(), "warn");
            schedules::run_destinations(command)
        }
        Command::Schedules(command) => {
            logging::init(cli.log_format.unwrap_or_default(), "warn");
            schedules::run_schedules(command)
        }
        Command::Campaigns(command) => {
            logging::init(cli.log_format.unwrap_or_default(), "warn");
            campaigns::run(command)
        }
        Command::Import(args) => {
            logging::init(cli.log_format.unwrap_or_default(), "warn");
            import::run(args)
        }
        Command::Consents(command) => {
            logging::init(cli.log_format.unwrap_or_default(), "warn");
            consents::run(command)
        }
        Command::Policy(command) => {
            logging::init(cli.log_format.unwrap_or_default(), "warn");
            policy::run(command)
        }
        Command::Export(command) => {
            logging::init(cli.log_format.unwrap_or_default(), "warn");
            export::run(command)
        }
        Command::Requests(command) => {
            logging::init(cli.log_format.unwrap_or_default(), "warn");
            requests::run(command)
        }
        Command::Retention(command) => {
            logging::init(cli.log_format.unwrap_or_default(), "warn");
            requests::retention(command)
        }
        Command::Probe(args) => {
            logging::init(cli.log_format.unwrap_or_default(), "warn");
            probe::run(args)
        }
        Command::Reindex(args) => {
            logging::init(cli.log_format.unwrap_or_default(), "warn");
            reindex::run(args)
        }
        Command::Store(command) => {
            logging::init(cli.log_format.unwrap_or_default(), "warn");
            store::run(command)
        }
        Command::Audit(command) => {
            logging::init(cli.log_format.unwrap_or_default(), "warn");
            audit::run(command)
        }
        Command::Demo(DemoCommand::Generate {
            people,
            seed,
            out,
            as_of,
            response,
            noisy,
        }) => {
            logging::init(cli.log_format.unwrap_or_default(), "warn");
            let as_of = as_of.unwrap_or_else(|| time::OffsetDateTime::now_utc().date());
            if noisy {
                demo_noisy::write(people, seed, &out)
            } else if response.respond_to.is_some() {
                demo_campaign::write_response(people, seed, as_of, &out, &response)
            } else {
                demo::write(people, seed, as_of, &out)
            }
        }
        Command::Bench(command) => {
            logging::init(cli.log_format.unwrap_or_default(), "warn");
            bench::run(command)
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            let text = describe(&error);
            // Once: `serve` writes its logs (JSON for collectors), so the error is a log line
            // there; every other command is a person at a terminal, who gets one `error:` line.
            if serving && logging::is_initialized() {
                tracing::error!(error = text, "cdp stopped");
            } else {
                eprintln!("error: {text}");
            }
            ExitCode::FAILURE
        }
    }
}

/// An error and its causes, each said once (an I/O error wrapped by a message that already
/// quotes it is not repeated).
fn describe(error: &anyhow::Error) -> String {
    let mut out = String::new();
    for cause in error.chain() {
        let text = cause.to_string();
        if out.contains(&text) {
            continue;
        }
        if !out.is_empty() {
            out.push_str(": ");
        }
        out.push_str(&text);
    }
    out
}
