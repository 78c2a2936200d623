//! `cdp audiences list|show|count|create|update|delete`: clients of `/v1/audiences`.

use anyhow::bail;
use clap::{Args, Subcommand};

use crate::client::ServerArgs;

#[derive(Debug, Subcommand)]
pub enum AudiencesCommand {
    /// List the saved audiences (definitions only).
    List {
        /// Print the server's JSON answer.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        server: ServerArgs,
    },
    /// Show an audience with its size now (audited as an evaluation).
    Show {
        /// aud_ and 16 hex digits (`cdp audiences list`).
        id: String,
        #[command(flatten)]
        server: ServerArgs,
    },
    /// Count who matches a query, and how many the policies allow for the purpose.
    Count {
        /// Text form: `tier:vip AND consent.marketing_sms:granted`.
        query: String,
        #[arg(long)]
        purpose: String,
        #[command(flatten)]
        server: ServerArgs,
    },
    /// Save an audience.
    Create {
        #[arg(long)]
        name: String,
        #[arg(long)]
        purpose: String,
        /// Text form of the definition.
        #[arg(long)]
        query: String,
        #[command(flatten)]
        server: ServerArgs,
    },
    /// Rename an audience, or change its definition or purpose.
    Update(UpdateArgs),
    /// Delete a saved audience (exports made from it keep their manifests).
    Delete {
        id: String,
        #[command(flatten)]
        server: ServerArgs,
    },
}

#[derive(Debug, Args)]
pub struct UpdateArgs {
    id: String,
    #[arg(long)]
    name: Option<String>,
    #[arg(long)]
    purpose: Option<String>,
    /// A new definition (text form).
    #[arg(long)]
    query: Option<String>,
    #[command(flatten)]
    server: ServerArgs,
}

/// One line of an audience's size: allowed, matched, removed.
fn size_line(size: &serde_json::Value) -> String {
    format!(
        "{} allowed of {} matching ({} removed by policy)",
        size["count"], size["matched"], size["removed_by_policy"]
    )
}

#[allow(clippy::print_stdout)]
fn print_view(view: &serde_json::Value) {
    // The definition's fields and `size`, side by side.
    let audience = view;
    println!("audience  {}", audience["id"].as_str().unwrap_or_default());
    println!(
        "name      {}",
        audience["name"].as_str().unwrap_or_default()
    );
    println!(
        "purpose   {}",
        audience["purpose"].as_str().unwrap_or_default()
    );
    match audience["query"].as_str() {
        Some(query) => println!("query     {query}"),
        None => println!("condition {}", audience["condition"]),
    }
    println!("size      {}", size_line(&view["size"]));
}

#[allow(clippy::print_stdout)]
pub fn run(command: AudiencesCommand) -> anyhow::Result<()> {
    match command {
        AudiencesCommand::List { json, server } => {
            let answer = server.get("/v1/audiences")?;
            if json {
                println!("{}", serde_json::to_string_pretty(&answer)?);
                return Ok(());
            }
            for audience in answer["audiences"].as_array().into_iter().flatten() {
                println!(
                    "{}  {:<20} {}  {}",
                    audience["id"].as_str().unwrap_or_default(),
                    audience["purpose"].as_str().unwrap_or_default(),
                    audience["name"].as_str().unwrap_or_default(),
                    audience["query"].as_str().unwrap_or("(condition tree)"),
                );
            }
        }
        AudiencesCommand::Show { id, server } => {
            print_view(&server.get(&format!("/v1/audiences/{id}"))?);
        }
        AudiencesCommand::Count {
            query,
            purpose,
            server,
        } => {
            let answer = server.post(
                "/v1/audiences/count",
                &serde_json::json!({ "query": query, "purpose": purpose }),
            )?;
            println!("{}", size_line(&answer));
        }
        AudiencesCommand::Create {
            name,
            purpose,
            query,
            server,
        } => {
            let view = server.post(
                "/v1/audiences",
                &serde_json::json!({ "name": name, "purpose": purpose, "query": query }),
            )?;
            print_view(&view);
        }
        AudiencesCommand::Update(args) => {
            if args.name.is_none() && args.purpose.is_none() && args.query.is_none() {
                bail!("nothing to change: give --name, --purpose or --query");
            }
            let view = args.server.patch(
                &format!("/v1/audiences/{}", args.id),
                &serde_json::json!({
                    "name": args.name, "purpose": args.purpose, "query": args.query,
                }),
            )?;
            print_view(&view);
        }
        AudiencesCommand::Delete { id, server } => {
            server.delete(&format!("/v1/audiences/{id}"))?;
            println!("audience {id} deleted");
        }
    }
    Ok(())
}
