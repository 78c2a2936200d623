//! `cdp sources add|list|show|origins|rotate|revoke`: clients of `POST/GET /v1/sources`,
//! `GET/PATCH/DELETE /v1/sources/{id}` and `POST /v1/sources/{id}/rotate`.

use clap::{Args, Subcommand};

use crate::client::ServerArgs;

#[derive(Debug, Subcommand)]
pub enum SourcesCommand {
    /// Create a source and print its write key (shown once).
    Add(AddArgs),
    /// List sources.
    List(ServerArgs),
    /// Show a source (never its write key).
    Show {
        /// src_... (`cdp sources list`).
        id: String,
        #[command(flatten)]
        server: ServerArgs,
    },
    /// Replace a source's write key: the old one is refused at once; the new one is printed once.
    Rotate {
        id: String,
        #[command(flatten)]
        server: ServerArgs,
    },
    /// Revoke a source for good: its write key is refused at once.
    Revoke {
        id: String,
        #[command(flatten)]
        server: ServerArgs,
    },
    /// Set the web origins whose pages may send with a source's write key (replaces the list;
    /// none: no web page may).
    Origins(OriginsArgs),
}

#[derive(Debug, Args)]
pub struct OriginsArgs {
    /// The source's id (`cdp sources list`).
    id: String,
    /// A web origin such as https://shop.example.cn (repeat for several).
    #[arg(long = "allow")]
    allow: Vec<String>,
    #[command(flatten)]
    server: ServerArgs,
}

#[derive(Debug, Args)]
pub struct AddArgs {
    #[arg(long)]
    name: String,
    /// web, ios, android, mini_program, crm, pos, customer_service, social, email, sms.
    #[arg(long)]
    channel: String,
    /// Region for phone numbers without a country code (CN, DE...).
    #[arg(long)]
    default_region: Option<String>,
    /// A web origin whose pages may send with the write key (repeat for several).
    #[arg(long = "allow-origin")]
    allow_origin: Vec<String>,
    #[command(flatten)]
    server: ServerArgs,
}

#[allow(clippy::print_stdout)]
pub fn run(command: SourcesCommand) -> anyhow::Result<()> {
    match command {
        SourcesCommand::Add(args) => {
            let answer = args.server.post(
                "/v1/sources",
                &serde_json::json!({
                    "name": args.name,
                    "channel": args.channel,
                    "default_region": args.default_region,
                    "allowed_origins": args.allow_origin,
                }),
            )?;
            println!("source    {}", answer["id"].as_str().unwrap_or_default());
            println!("name      {}", answer["name"].as_str().unwrap_or_default());
            println!(
                "channel   {}",
                answer["channel"].as_str().unwrap_or_default()
            );
            println!(
                "write key {}",
                answer["write_key"].as_str().unwrap_or_default()
            );
            println!("(the write key is shown only now; it is stored hashed)");
        }
        SourcesCommand::Show { id, server } => {
            let source = server.get(&format!("/v1/sources/{id}"))?;
            let field = |name: &str| source[name].as_str().unwrap_or("-").to_string();
            println!("source      {}", field("id"));
            println!("name        {}", field("name"));
            println!("channel     {}", field("channel"));
            println!("region      {}", field("default_region"));
            println!("created     {}", field("created_at"));
            if source["key_rotated_at"].is_string() {
                println!("key rotated {}", field("key_rotated_at"));
            }
            if source["revoked_at"].is_string() {
                println!("revoked     {}", field("revoked_at"));
            }
            let origins: Vec<&str> = source["allowed_origins"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|o| o.as_str())
                .collect();
            println!("origins     {}", origins.join(" "));
        }
        SourcesCommand::Rotate { id, server } => {
            let answer =
                server.post(&format!("/v1/sources/{id}/rotate"), &serde_json::json!({}))?;
            println!(
                "write key {}",
                answer["write_key"].as_str().unwrap_or_default()
            );
            println!("(the old key is refused from now on; this one is shown only now)");
        }
        SourcesCommand::Revoke { id, server } => {
            server.delete(&format!("/v1/sources/{id}"))?;
            println!("source {id} revoked: its write key is refused from now on");
        }
        SourcesCommand::Origins(args) => {
            let answer = args.server.patch(
                &format!("/v1/sources/{}", args.id),
                &serde_json::json!({ "allowed_origins": args.allow }),
            )?;
            let origins: Vec<&str> = answer["allowed_origins"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|o| o.as_str())
                .collect();
            if origins.is_empty() {
                println!("no web page may send with this source's write key");
            } else {
                println!("pages of these origins may send: {}", origins.join(" "));
            }
        }
        SourcesCommand::List(server) => {
            let answer = server.get("/v1/sources")?;
            for source in answer.as_array().into_iter().flatten() {
                println!(
                    "{}  {:<16} {:<18} {}",
                    source["id"].as_str().unwrap_or_default(),
                    source["channel"].as_str().unwrap_or_default(),
                    source["default_region"].as_str().unwrap_or("-"),
                    source["name"].as_str().unwrap_or_default(),
                );
            }
        }
    }
    Ok(())
}
