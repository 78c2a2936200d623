//! `cdp requests` and `cdp retention run`: clients of the running server.

use anyhow::Context;
use clap::{Args, Subcommand};

use crate::client::{ServerArgs, encode_query};

#[derive(Debug, Subcommand)]
pub enum RequestsCommand {
    /// List data-subject requests with status and due date.
    List(ServerOnly),
    /// Show one request (with its erasure receipt or bundle location).
    Show {
        #[command(flatten)]
        server: ServerArgs,
        id: String,
    },
    /// Submit a request: access, erasure, rectification, restriction, objection or tags.
    Submit(SubmitArgs),
    /// Download the bundle of a completed access request (JSON) to stdout.
    Bundle {
        #[command(flatten)]
        server: ServerArgs,
        id: String,
    },
}

#[derive(Debug, Args)]
pub struct ServerOnly {
    #[command(flatten)]
    server: ServerArgs,
}

#[derive(Debug, Args)]
pub struct SubmitArgs {
    #[command(flatten)]
    server: ServerArgs,
    /// access, erasure, rectification, restriction, objection, tags.
    #[arg(long = "type")]
    kind: String,
    /// The person's identifier type (email, phone, user_id...) ...
    #[arg(long, requires = "value", conflicts_with = "profile")]
    identifier: Option<String>,
    /// ... and value.
    #[arg(long)]
    value: Option<String>,
    /// Or the profile id.
    #[arg(long)]
    profile: Option<String>,
    /// How the requester's identity was verified.
    #[arg(long)]
    verification: String,
    /// Tags to delete (type tags).
    #[arg(long = "delete-tag")]
    delete_tags: Vec<String>,
    /// Lift a restriction (type restriction).
    #[arg(long)]
    lift: bool,
}

#[derive(Debug, Subcommand)]
pub enum RetentionCommand {
    /// Run the retention sweeper now on the running server.
    Run {
        #[command(flatten)]
        server: ServerArgs,
        /// Report without deleting.
        #[arg(long)]
        dry_run: bool,
    },
}

#[allow(clippy::print_stdout)]
pub fn run(command: RequestsCommand) -> anyhow::Result<()> {
    match command {
        RequestsCommand::List(ServerOnly { server }) => {
            let answer = server.get("/v1/requests")?;
            let requests = answer["requests"].as_array().cloned().unwrap_or_default();
            println!(
                "{:<22} {:<14} {:<12} {:<22} reason",
                "id", "type", "status", "due"
            );
            for request in requests {
                println!(
                    "{:<22} {:<14} {:<12} {:<22} {}",
                    request["id"].as_str().unwrap_or("-"),
                    request["type"].as_str().unwrap_or("-"),
                    request["status"].as_str().unwrap_or("-"),
                    request["due_at"].as_str().unwrap_or("-"),
                    request["reason"].as_str().unwrap_or("")
                );
            }
            Ok(())
        }
        RequestsCommand::Show { server, id } => {
            let answer = server.get(&format!("/v1/requests/{}", encode_query(&id)))?;
            println!("{}", serde_json::to_string_pretty(&answer)?);
            Ok(())
        }
        RequestsCommand::Bundle { server, id } => {
            let answer = server.get(&format!("/v1/requests/{}/bundle", encode_query(&id)))?;
            println!("{}", serde_json::to_string_pretty(&answer)?);
            Ok(())
        }
        RequestsCommand::Submit(args) => {
            let subject = match (args.identifier, args.value, args.profile) {
                (Some(kind), Some(value), None) => {
                    serde_json::json!({"type": kind, "value": value})
                }
                (None, None, Some(profile)) => serde_json::json!({"profile_id": profile}),
                _ => anyhow::bail!("give --identifier TYPE --value VALUE, or --profile ID"),
            };
            let answer = args.server.post(
                "/v1/requests",
                &serde_json::json!({
                    "type": args.kind, "subject": subject,
                    "verification": {"note": args.verification},
                    "delete_tags": args.delete_tags, "lift": args.lift,
                }),
            )?;
            let id = answer["id"]
                .as_str()
                .context("no request id in the answer")?;
            let status = answer["status"].as_str().unwrap_or("-");
            let reason = answer["reason"]
                .as_str()
                .map(|r| format!(" ({r})"))
                .unwrap_or_default();
            println!("request {id}: {status}{reason}");
            // A refused request is recorded (and answered to the person), but the command did
            // not do what was asked: scripts see it in the exit status.
            if status == "refused" {
                anyhow::bail!("request {id} was refused{reason}");
            }
            Ok(())
        }
    }
}

#[allow(clippy::print_stdout)]
pub fn retention(command: RetentionCommand) -> anyhow::Result<()> {
    let RetentionCommand::Run { server, dry_run } = command;
    let answer = server.post(
        "/v1/retention/run",
        &serde_json::json!({ "dry_run": dry_run }),
    )?;
    println!(
        "{}checked {} people: {} events past retention, {} people inactive past retention, {} expired export files{}",
        if dry_run { "dry run: " } else { "" },
        answer["people_checked"],
        answer["events_deleted"],
        answer["people_erased"],
        answer["export_files_deleted"],
        if dry_run {
            " (nothing deleted)"
        } else {
            " (deleted and erased)"
        }
    );
    Ok(())
}
