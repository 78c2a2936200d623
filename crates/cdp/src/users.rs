//! `cdp users add|list|disable|unlock`: named console accounts, clients of `/v1/accounts`
//! (an admin token: `cdp token issue --role admin`).

use std::io::BufRead as _;
use std::path::PathBuf;

use anyhow::Context;
use clap::{Args, Subcommand};

use crate::client::{ServerArgs, encode_query};

#[derive(Debug, Subcommand)]
pub enum UsersCommand {
    /// Create an account; the password is read from --password-file or the first line of
    /// standard input (never from the command line, where `ps` and shell histories see it).
    Add(AddArgs),
    /// List accounts.
    List(ServerArgs),
    /// Disable an account and end its sessions (it stays named in the audit log).
    Disable(NameArgs),
    /// Lift a lock-out after repeated failed sign-ins.
    Unlock(NameArgs),
}

#[derive(Debug, Args)]
pub struct AddArgs {
    /// The operator's name, recorded with everything the account does.
    #[arg(long)]
    name: String,
    /// Role(s): admin, dpo, marketer, analyst, customer_service, auditor.
    #[arg(long = "role", required = true)]
    roles: Vec<String>,
    /// Purpose(s) the operator may state (narrows what the roles allow).
    #[arg(long = "purpose")]
    purposes: Vec<String>,
    /// A file whose first line is the password (at least 12 characters).
    #[arg(long)]
    password_file: Option<PathBuf>,
    /// Give the account a one-time-code second factor; prints the secret to enter into an
    /// authenticator app (shown once).
    #[arg(long)]
    totp: bool,
    #[command(flatten)]
    server: ServerArgs,
}

#[derive(Debug, Args)]
pub struct NameArgs {
    #[arg(long)]
    name: String,
    #[command(flatten)]
    server: ServerArgs,
}

fn read_password(file: Option<&PathBuf>) -> anyhow::Result<String> {
    let line = match file {
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("cannot read the password file {}", path.display()))?;
            text.lines().next().unwrap_or_default().to_string()
        }
        None => {
            let mut line = String::new();
            std::io::stdin()
                .lock()
                .read_line(&mut line)
                .context("cannot read the password from standard input")?;
            line.trim_end_matches(['\r', '\n']).to_string()
        }
    };
    anyhow::ensure!(
        !line.is_empty(),
        "no password given: pass --password-file or write it on standard input"
    );
    Ok(line)
}

#[allow(clippy::print_stdout)]
pub fn run(command: UsersCommand) -> anyhow::Result<()> {
    match command {
        UsersCommand::Add(args) => {
            let password = read_password(args.password_file.as_ref())?;
            let answer = args.server.post(
                "/v1/accounts",
                &serde_json::json!({
                    "name": args.name,
                    "roles": args.roles,
                    "purposes": args.purposes,
                    "password": password,
                    "totp": args.totp,
                }),
            )?;
            println!("account  {}", answer["name"].as_str().unwrap_or_default());
            println!("roles    {}", join(&answer["roles"]));
            if let Some(secret) = answer["totp_secret"].as_str() {
                println!("totp     {secret}");
                println!(
                    "uri      {}",
                    answer["totp_uri"].as_str().unwrap_or_default()
                );
                println!("(enter the secret into an authenticator app now: it is not shown again)");
            }
        }
        UsersCommand::List(server) => {
            let answer = server.get("/v1/accounts")?;
            for account in answer.as_array().into_iter().flatten() {
                let mut state = Vec::new();
                if account["disabled"].as_bool() == Some(true) {
                    state.push("disabled".to_string());
                }
                if let Some(until) = account["locked_until"].as_str() {
                    state.push(format!("locked until {until}"));
                }
                if account["totp"].as_bool() == Some(true) {
                    state.push("totp".into());
                }
                println!(
                    "{:<24} {:<32} {}",
                    account["name"].as_str().unwrap_or_default(),
                    join(&account["roles"]),
                    state.join(", ")
                );
            }
        }
        UsersCommand::Disable(args) => {
            args.server
                .delete(&format!("/v1/accounts/{}", encode_query(&args.name)))?;
            println!("disabled {} (its sessions ended)", args.name);
        }
        UsersCommand::Unlock(args) => {
            args.server.post(
                &format!("/v1/accounts/{}/unlock", encode_query(&args.name)),
                &serde_json::json!({}),
            )?;
            println!("unlocked {}", args.name);
        }
    }
    Ok(())
}

fn join(values: &serde_json::Value) -> String {
    values
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|v| v.as_str())
        .collect::<Vec<_>>()
        .join(", ")
}
