//! `cdp recipients list|show|add|update|retire` and `cdp suppressions list|add|remove`:
//! clients of `/v1/recipients` and `/v1/suppressions`.

use anyhow::bail;
use clap::{Args, Subcommand};

use crate::client::ServerArgs;

#[derive(Debug, Subcommand)]
pub enum RecipientsCommand {
    /// List the registered recipients (retired ones marked).
    List {
        /// Print the server's JSON answer.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        server: ServerArgs,
    },
    /// Show a recipient.
    Show {
        /// rcp_ and 16 hex digits (`cdp recipients list`).
        id: String,
        #[command(flatten)]
        server: ServerArgs,
    },
    /// Register a recipient of exports.
    Add(AddArgs),
    /// Change a recipient's details.
    Update(UpdateArgs),
    /// Retire a recipient: nothing more is exported to it; it stays in the record of processing.
    Retire {
        id: String,
        #[command(flatten)]
        server: ServerArgs,
    },
}

#[derive(Debug, Args)]
pub struct AddArgs {
    #[arg(long)]
    name: String,
    /// Who answers for it (e-mail of the DPO or account manager).
    #[arg(long)]
    contact: String,
    /// processor or controller.
    #[arg(long, default_value = "processor")]
    role: String,
    /// Where it processes the data (CN, EU, DE, US...).
    #[arg(long)]
    region: String,
    /// none, standard_contract, assessment, certification, adequacy, scc.
    #[arg(long, default_value = "none")]
    transfer_mechanism: String,
    /// A purpose it may receive data for (repeat for several).
    #[arg(long = "purpose", required = true)]
    purposes: Vec<String>,
    #[command(flatten)]
    server: ServerArgs,
}

#[derive(Debug, Args)]
pub struct UpdateArgs {
    id: String,
    #[arg(long)]
    name: Option<String>,
    #[arg(long)]
    contact: Option<String>,
    #[arg(long)]
    region: Option<String>,
    #[arg(long)]
    transfer_mechanism: Option<String>,
    /// Replaces the allowed purposes (repeat for several).
    #[arg(long = "purpose")]
    purposes: Vec<String>,
    #[command(flatten)]
    server: ServerArgs,
}

#[derive(Debug, Subcommand)]
pub enum SuppressionsCommand {
    /// List the suppression list: types and dates (the values are not stored, only their
    /// blind indexes).
    List {
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        server: ServerArgs,
    },
    /// Suppress an identifier: no export includes its person.
    Add(SuppressionArgs),
    /// Take an identifier off the list: by its value, or by the id `list` shows.
    Remove {
        /// sup_ and 16 hex digits (`cdp suppressions list`).
        #[arg(long, conflicts_with_all = ["kind", "value"])]
        id: Option<String>,
        /// email, phone, user_id...
        #[arg(long = "type")]
        kind: Option<String>,
        #[arg(long)]
        value: Option<String>,
        /// Region of a phone number without a country code.
        #[arg(long)]
        region: Option<String>,
        #[command(flatten)]
        server: ServerArgs,
    },
}

#[derive(Debug, Args)]
pub struct SuppressionArgs {
    /// email, phone, user_id...
    #[arg(long = "type")]
    kind: String,
    #[arg(long)]
    value: String,
    /// Region of a phone number without a country code.
    #[arg(long)]
    region: Option<String>,
    #[command(flatten)]
    server: ServerArgs,
}

#[allow(clippy::print_stdout)]
fn print_recipient(r: &serde_json::Value) {
    let field = |name: &str| r[name].as_str().unwrap_or_default().to_string();
    println!("recipient          {}", field("id"));
    println!("name               {}", field("name"));
    println!("contact            {}", field("contact"));
    println!("role               {}", field("role"));
    println!("region             {}", field("region"));
    println!("transfer mechanism {}", field("transfer_mechanism"));
    println!("purposes           {}", purposes(r));
    if let Some(at) = r["retired_at"].as_str() {
        println!("retired            {at}");
    }
}

fn purposes(r: &serde_json::Value) -> String {
    r["allowed_purposes"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|p| p.as_str())
        .collect::<Vec<_>>()
        .join(",")
}

#[allow(clippy::print_stdout)]
pub fn run(command: RecipientsCommand) -> anyhow::Result<()> {
    match command {
        RecipientsCommand::List { json, server } => {
            let answer = server.get("/v1/recipients")?;
            if json {
                println!("{}", serde_json::to_string_pretty(&answer)?);
                return Ok(());
            }
            for r in answer["recipients"].as_array().into_iter().flatten() {
                println!(
                    "{}  {:<10} {:<3} {:<18} {:<8} {}  {}",
                    r["id"].as_str().unwrap_or_default(),
                    r["role"].as_str().unwrap_or_default(),
                    r["region"].as_str().unwrap_or_default(),
                    r["transfer_mechanism"].as_str().unwrap_or_default(),
                    if r["retired_at"].is_string() {
                        "retired"
                    } else {
                        "active"
                    },
                    r["name"].as_str().unwrap_or_default(),
                    purposes(r),
                );
            }
        }
        RecipientsCommand::Show { id, server } => {
            print_recipient(&server.get(&format!("/v1/recipients/{id}"))?);
        }
        RecipientsCommand::Add(args) => {
            let answer = args.server.post(
                "/v1/recipients",
                &serde_json::json!({
                    "name": args.name, "contact": args.contact, "role": args.role,
                    "region": args.region, "transfer_mechanism": args.transfer_mechanism,
                    "allowed_purposes": args.purposes,
                }),
            )?;
            print_recipient(&answer);
        }
        RecipientsCommand::Update(args) => {
            let mut body = serde_json::Map::new();
            for (key, value) in [
                ("name", args.name),
                ("contact", args.contact),
                ("region", args.region),
                ("transfer_mechanism", args.transfer_mechanism),
            ] {
                if let Some(value) = value {
                    body.insert(key.into(), value.into());
                }
            }
            if !args.purposes.is_empty() {
                body.insert("allowed_purposes".into(), args.purposes.into());
            }
            if body.is_empty() {
                bail!(
                    "nothing to change: give --name, --contact, --region, --transfer-mechanism or --purpose"
                );
            }
            let answer = args
                .server
                .patch(&format!("/v1/recipients/{}", args.id), &body.into())?;
            print_recipient(&answer);
        }
        RecipientsCommand::Retire { id, server } => {
            let answer = server.delete(&format!("/v1/recipients/{id}"))?;
            println!(
                "recipient {id} retired at {}: exports to it are refused from now on",
                answer["retired_at"].as_str().unwrap_or_default()
            );
        }
    }
    Ok(())
}

#[allow(clippy::print_stdout)]
pub fn run_suppressions(command: SuppressionsCommand) -> anyhow::Result<()> {
    match command {
        SuppressionsCommand::List { json, server } => {
            let mut after: Option<String> = None;
            let mut all = Vec::new();
            loop {
                let path = match &after {
                    Some(after) => format!("/v1/suppressions?limit=1000&after={after}"),
                    None => "/v1/suppressions?limit=1000".to_string(),
                };
                let page = server.get(&path)?;
                all.extend(page["suppressions"].as_array().cloned().unwrap_or_default());
                match page["next_after"].as_str() {
                    Some(next) => after = Some(next.to_string()),
                    None => break,
                }
            }
            if json {
                println!("{}", serde_json::to_string_pretty(&all)?);
                return Ok(());
            }
            for entry in &all {
                println!(
                    "{}  {:<10} {}  {}",
                    entry["id"].as_str().unwrap_or_default(),
                    entry["type"].as_str().unwrap_or_default(),
                    entry["added_at"].as_str().unwrap_or("-"),
                    entry["added_by"].as_str().unwrap_or("-"),
                );
            }
            println!("{} on the suppression list", all.len());
        }
        SuppressionsCommand::Add(args) => {
            args.server.post(
                "/v1/suppressions",
                &serde_json::json!({ "type": args.kind, "value": args.value, "region": args.region }),
            )?;
            println!("suppressed: no export will include this {}", args.kind);
        }
        SuppressionsCommand::Remove {
            id,
            kind,
            value,
            region,
            server,
        } => match (id, kind, value) {
            (Some(id), None, None) => {
                server.delete(&format!("/v1/suppressions/{id}"))?;
                println!("{id} removed from the suppression list");
            }
            (None, Some(kind), Some(value)) => {
                server.post(
                    "/v1/suppressions/remove",
                    &serde_json::json!({ "type": kind, "value": value, "region": region }),
                )?;
                println!("that {kind} is no longer suppressed");
            }
            _ => bail!("give --id, or both --type and --value"),
        },
    }
    Ok(())
}
