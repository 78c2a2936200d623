//! `cdp destinations list|show|add-webhook|add-sftp|test|rotate|retire|dead-letters|retry` and
//! `cdp schedules list|show|add|run|pause|resume|delete`: clients of `/v1/destinations` and
//! `/v1/schedules`.

use clap::{Args, Subcommand};
use serde_json::{Value, json};

use crate::client::ServerArgs;

#[derive(Debug, Subcommand)]
pub enum DestinationsCommand {
    /// List the destinations (never their secrets).
    List {
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        server: ServerArgs,
    },
    /// Show a destination.
    Show {
        /// dst_ and 16 hex digits.
        id: String,
        #[command(flatten)]
        server: ServerArgs,
    },
    /// Register an HTTPS webhook of a recipient; prints its signing secret, once.
    AddWebhook {
        #[arg(long)]
        name: String,
        /// rcp_... (`cdp recipients list`).
        #[arg(long)]
        recipient: String,
        /// https://...
        #[arg(long)]
        url: String,
        /// A PEM file of the private CA that signs the receiver's certificate.
        #[arg(long)]
        ca_file: Option<std::path::PathBuf>,
        /// Rows per request (default 500).
        #[arg(long)]
        batch_size: Option<u32>,
        #[command(flatten)]
        retries: RetryArgs,
        #[command(flatten)]
        server: ServerArgs,
    },
    /// Register an SFTP server of a recipient; prints the public key to install there.
    AddSftp {
        #[arg(long)]
        name: String,
        #[arg(long)]
        recipient: String,
        #[arg(long)]
        host: String,
        #[arg(long, default_value_t = 22)]
        port: u16,
        #[arg(long)]
        username: String,
        /// An absolute directory on the server.
        #[arg(long)]
        directory: String,
        /// The server's host key, as `ssh-keyscan HOST` prints it.
        #[arg(long)]
        host_key: String,
        #[command(flatten)]
        retries: RetryArgs,
        #[command(flatten)]
        server: ServerArgs,
    },
    /// A new signing secret for a webhook (printed once; the old one stops at once).
    Rotate {
        id: String,
        #[command(flatten)]
        server: ServerArgs,
    },
    /// Try a destination without delivering anything (a signed ping, or an SFTP log-in).
    Test {
        id: String,
        #[command(flatten)]
        server: ServerArgs,
    },
    /// Retire a destination: nothing more is delivered to it.
    Retire {
        id: String,
        #[command(flatten)]
        server: ServerArgs,
    },
    /// The batches a destination did not take.
    DeadLetters {
        id: String,
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        server: ServerArgs,
    },
    /// Give a destination's dead letters fresh tries.
    Retry {
        id: String,
        #[command(flatten)]
        server: ServerArgs,
    },
}

#[derive(Debug, Args)]
pub struct RetryArgs {
    /// Tries of a batch before it is a dead letter (default 8).
    #[arg(long)]
    max_attempts: Option<u32>,
    /// The first retry's delay in milliseconds, doubled each time (default 30000).
    #[arg(long)]
    retry_base_ms: Option<u64>,
}

#[derive(Debug, Subcommand)]
pub enum SchedulesCommand {
    /// List the scheduled exports with their last run.
    List {
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        server: ServerArgs,
    },
    /// Show a scheduled export and its runs.
    Show {
        /// sch_ and 16 hex digits.
        id: String,
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        server: ServerArgs,
    },
    /// Schedule an export: each run sends the adds and removals since the previous one.
    Add(ScheduleArgs),
    /// Start a run now.
    Run {
        id: String,
        #[command(flatten)]
        server: ServerArgs,
    },
    /// Pause a schedule (no runs until resumed).
    Pause {
        id: String,
        #[command(flatten)]
        server: ServerArgs,
    },
    /// Resume a paused schedule.
    Resume {
        id: String,
        #[command(flatten)]
        server: ServerArgs,
    },
    /// Delete a schedule (its runs stay among the exports).
    Delete {
        id: String,
        #[command(flatten)]
        server: ServerArgs,
    },
}

#[derive(Debug, Args)]
pub struct ScheduleArgs {
    #[arg(long)]
    name: String,
    #[arg(long)]
    audience: String,
    #[arg(long)]
    purpose: String,
    #[arg(long)]
    recipient: String,
    /// A field of each row (repeat; pseudonym is required).
    #[arg(long = "field", required = true)]
    fields: Vec<String>,
    /// csv or jsonl.
    #[arg(long, default_value = "csv")]
    format: String,
    /// A destination of the recipient (dst_...).
    #[arg(long)]
    destination: Option<String>,
    /// Five cron fields, e.g. "0 3 * * *", or @daily, @weekly...
    #[arg(long)]
    cron: String,
    /// The offset the schedule is read at, e.g. +08:00.
    #[arg(long, default_value = "+00:00")]
    utc_offset: String,
    #[command(flatten)]
    server: ServerArgs,
}

#[allow(clippy::print_stdout)]
fn print_destination(d: &Value) {
    let text = |name: &str| d[name].as_str().unwrap_or("-").to_string();
    println!("destination {}", text("id"));
    println!("name        {}", text("name"));
    println!("recipient   {}", text("recipient"));
    println!("kind        {}", text("kind"));
    match d["kind"].as_str() {
        Some("webhook") => println!("url         {}", text("url")),
        _ => {
            println!(
                "server      {}@{}:{}{}",
                text("username"),
                text("host"),
                d["port"],
                text("directory")
            );
            println!("host key    {}", text("host_key"));
            println!("public key  {}", text("public_key"));
        }
    }
    if let Some(at) = d["retired_at"].as_str() {
        println!("retired     {at}");
    }
    if let Some(secret) = d["secret"].as_str() {
        println!("secret      {secret}");
        println!("(shown once: the receiver checks X-CDP-Signature with it)");
    }
}

#[allow(clippy::print_stdout)]
pub fn run_destinations(command: DestinationsCommand) -> anyhow::Result<()> {
    match command {
        DestinationsCommand::List { json, server } => {
            let answer = server.get("/v1/destinations")?;
            if json {
                println!("{}", serde_json::to_string_pretty(&answer)?);
                return Ok(());
            }
            for d in answer["destinations"].as_array().into_iter().flatten() {
                println!(
                    "{}  {:<7} {}  {:<8} {}",
                    d["id"].as_str().unwrap_or_default(),
                    d["kind"].as_str().unwrap_or_default(),
                    d["recipient"].as_str().unwrap_or_default(),
                    if d["retired_at"].is_string() {
                        "retired"
                    } else {
                        "active"
                    },
                    d["name"].as_str().unwrap_or_default(),
                );
            }
        }
        DestinationsCommand::Show { id, server } => {
            print_destination(&server.get(&format!("/v1/destinations/{id}"))?);
        }
        DestinationsCommand::AddWebhook {
            name,
            recipient,
            url,
            ca_file,
            batch_size,
            retries,
            server,
        } => {
            let ca = match ca_file {
                Some(path) => Some(
                    std::fs::read_to_string(&path)
                        .map_err(|e| anyhow::anyhow!("cannot read {}: {e}", path.display()))?,
                ),
                None => None,
            };
            let answer = server.post(
                "/v1/destinations",
                &json!({"name": name, "recipient": recipient, "kind": "webhook", "url": url,
                    "ca_certificate": ca, "batch_size": batch_size,
                    "max_attempts": retries.max_attempts, "retry_base_ms": retries.retry_base_ms}),
            )?;
            print_destination(&answer);
        }
        DestinationsCommand::AddSftp {
            name,
            recipient,
            host,
            port,
            username,
            directory,
            host_key,
            retries,
            server,
        } => {
            let answer = server.post(
                "/v1/destinations",
                &json!({"name": name, "recipient": recipient, "kind": "sftp", "host": host,
                    "port": port, "username": username, "directory": directory, "host_key": host_key,
                    "max_attempts": retries.max_attempts, "retry_base_ms": retries.retry_base_ms}),
            )?;
            print_destination(&answer);
            println!("(add the public key to {username}'s authorized_keys on {host})");
        }
        DestinationsCommand::Rotate { id, server } => {
            print_destination(&server.post(&format!("/v1/destinations/{id}/rotate"), &json!({}))?);
        }
        DestinationsCommand::Test { id, server } => {
            let answer = server.post(&format!("/v1/destinations/{id}/test"), &json!({}))?;
            if answer["ok"] == true {
                println!("destination {id} works");
            } else {
                anyhow::bail!(
                    "destination {id} does not work: {}",
                    answer["error"].as_str().unwrap_or("no answer")
                );
            }
        }
        DestinationsCommand::Retire { id, server } => {
            let answer = server.delete(&format!("/v1/destinations/{id}"))?;
            println!(
                "destination {id} retired at {}: nothing more is delivered to it",
                answer["retired_at"].as_str().unwrap_or_default()
            );
        }
        DestinationsCommand::DeadLetters { id, json, server } => {
            let answer = server.get(&format!("/v1/destinations/{id}/dead-letters"))?;
            if json {
                println!("{}", serde_json::to_string_pretty(&answer)?);
                return Ok(());
            }
            let letters = answer["dead_letters"]
                .as_array()
                .cloned()
                .unwrap_or_default();
            for letter in &letters {
                println!(
                    "{} batch {:<4} {:>5} rows  {} tries  {}",
                    letter["export_id"].as_str().unwrap_or_default(),
                    letter["batch"],
                    letter["rows"],
                    letter["attempts"],
                    letter["last_error"].as_str().unwrap_or("-"),
                );
            }
            println!("{} dead letters", letters.len());
        }
        DestinationsCommand::Retry { id, server } => {
            let answer = server.post(
                &format!("/v1/destinations/{id}/dead-letters/retry"),
                &json!({}),
            )?;
            println!("{} batches queued again", answer["requeued_batches"]);
        }
    }
    Ok(())
}

#[allow(clippy::print_stdout)]
fn print_runs(schedule: &Value, limit: usize) {
    for run in schedule["history"]
        .as_array()
        .into_iter()
        .flatten()
        .take(limit)
    {
        println!(
            "  {}  {}  {:<8} included {:<6} added {:<6} removed {:<6} delivery {}",
            run["started_at"].as_str().unwrap_or_default(),
            run["export_id"].as_str().unwrap_or_default(),
            run["status"].as_str().unwrap_or_default(),
            run["included"],
            run["added"],
            run["removals"],
            run["delivery"].as_str().unwrap_or("-"),
        );
    }
}

#[allow(clippy::print_stdout)]
fn print_schedule(s: &Value, runs: usize) {
    println!(
        "{}  {:<16} {}  next {}{}  {}",
        s["id"].as_str().unwrap_or_default(),
        format!(
            "{} {}",
            s["cron"].as_str().unwrap_or_default(),
            s["utc_offset"].as_str().unwrap_or_default()
        ),
        s["audience"].as_str().unwrap_or_default(),
        s["next_run_at"].as_str().unwrap_or_default(),
        if s["paused"] == true { " (paused)" } else { "" },
        s["name"].as_str().unwrap_or_default(),
    );
    print_runs(s, runs);
}

#[allow(clippy::print_stdout)]
pub fn run_schedules(command: SchedulesCommand) -> anyhow::Result<()> {
    match command {
        SchedulesCommand::List { json, server } => {
            let answer = server.get("/v1/schedules")?;
            if json {
                println!("{}", serde_json::to_string_pretty(&answer)?);
                return Ok(());
            }
            for s in answer["schedules"].as_array().into_iter().flatten() {
                print_schedule(s, 1);
            }
        }
        SchedulesCommand::Show { id, json, server } => {
            let answer = server.get(&format!("/v1/schedules/{id}"))?;
            if json {
                println!("{}", serde_json::to_string_pretty(&answer)?);
                return Ok(());
            }
            print_schedule(&answer, usize::MAX);
        }
        SchedulesCommand::Add(args) => {
            let answer = args.server.post(
                "/v1/schedules",
                &json!({"name": args.name, "audience": args.audience, "purpose": args.purpose,
                    "recipient": args.recipient, "fields": args.fields, "format": args.format,
                    "destination": args.destination, "cron": args.cron, "utc_offset": args.utc_offset}),
            )?;
            print_schedule(&answer, 0);
        }
        SchedulesCommand::Run { id, server } => {
            let run = server.post(&format!("/v1/schedules/{id}/run"), &json!({}))?;
            println!(
                "run {} started (cdp export show {} for its progress)",
                run["id"].as_str().unwrap_or_default(),
                run["id"].as_str().unwrap_or_default()
            );
        }
        SchedulesCommand::Pause { id, server } => {
            server.patch(&format!("/v1/schedules/{id}"), &json!({"paused": true}))?;
            println!("schedule {id} paused");
        }
        SchedulesCommand::Resume { id, server } => {
            let answer = server.patch(&format!("/v1/schedules/{id}"), &json!({"paused": false}))?;
            println!(
                "schedule {id} resumed: next run {}",
                answer["next_run_at"].as_str().unwrap_or_default()
            );
        }
        SchedulesCommand::Delete { id, server } => {
            server.delete(&format!("/v1/schedules/{id}"))?;
            println!("schedule {id} deleted: no more runs");
        }
    }
    Ok(())
}
