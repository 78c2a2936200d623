//! `cdp export create` (a client of the running server, with a progress bar) and
//! `cdp export verify MANIFEST FILE` (offline: the file's SHA-256 and the manifest's Ed25519
//! signature).

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, bail};
use clap::{Args, Subcommand};

use crate::client::ServerArgs;

#[derive(Debug, Subcommand)]
pub enum ExportCommand {
    /// Export a saved audience to a recipient; waits, then downloads the file and manifest.
    Create(CreateArgs),
    /// Check a file against its signed manifest.
    Verify(VerifyArgs),
    /// The 100 most recent export jobs.
    List {
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        server: ServerArgs,
    },
    /// An export job: status, counts, exclusions with their reasons.
    Show {
        /// exp_ and 16 hex digits.
        id: String,
        #[command(flatten)]
        server: ServerArgs,
    },
    /// Delete a finished export's file (its key is destroyed; the manifest stays).
    Delete {
        id: String,
        #[command(flatten)]
        server: ServerArgs,
    },
}

#[derive(Debug, Args)]
pub struct CreateArgs {
    #[command(flatten)]
    server: ServerArgs,
    #[arg(long)]
    audience: String,
    #[arg(long)]
    purpose: String,
    #[arg(long)]
    recipient: String,
    /// Field(s): pseudonym, email_sha256_google, phone_sha256_meta, identifiers.phone, ...
    #[arg(long = "field", required = true)]
    fields: Vec<String>,
    #[arg(long, default_value = "csv")]
    format: String,
    /// Where to write the file (the manifest goes to FILE.manifest.json).
    #[arg(long)]
    out: PathBuf,
    /// Also deliver the file to this destination of the recipient (`cdp destinations list`);
    /// the command then waits for the delivery and says how it went.
    #[arg(long)]
    destination: Option<String>,
}

#[derive(Debug, Args)]
pub struct VerifyArgs {
    /// The manifest (JSON, as `GET /v1/exports/{id}` answers it or `cdp export create` saved it).
    manifest: PathBuf,
    /// The export file.
    file: PathBuf,
    /// The expected signing key (base64), e.g. from `GET /v1/keys/export`.
    #[arg(long)]
    public_key: Option<String>,
    /// Fetch the expected key from this server's `/v1/keys/export`.
    #[arg(long, conflicts_with = "public_key")]
    server: Option<String>,
}

#[allow(clippy::print_stdout)]
pub fn run(command: ExportCommand) -> anyhow::Result<()> {
    match command {
        ExportCommand::Create(args) => create(args),
        ExportCommand::Verify(args) => verify(args),
        ExportCommand::List { json, server } => {
            let answer = server.get("/v1/exports")?;
            if json {
                println!("{}", serde_json::to_string_pretty(&answer)?);
                return Ok(());
            }
            for record in answer["exports"].as_array().into_iter().flatten() {
                println!(
                    "{}  {:<9} {}  {} -> {}  {}",
                    record["id"].as_str().unwrap_or_default(),
                    record["status"].as_str().unwrap_or_default(),
                    record["created_at"].as_str().unwrap_or_default(),
                    record["audience"].as_str().unwrap_or_default(),
                    record["recipient"].as_str().unwrap_or_default(),
                    record["purpose"].as_str().unwrap_or_default(),
                );
            }
            Ok(())
        }
        ExportCommand::Show { id, server } => {
            let record = server.get(&format!("/v1/exports/{id}"))?;
            print_record(&record);
            Ok(())
        }
        ExportCommand::Delete { id, server } => {
            let record = server.delete(&format!("/v1/exports/{id}"))?;
            println!(
                "export {id} {}: {}",
                record["status"].as_str().unwrap_or_default(),
                record["reason"].as_str().unwrap_or_default()
            );
            Ok(())
        }
    }
}

#[allow(clippy::print_stdout)]
fn print_record(record: &serde_json::Value) {
    let field = |name: &str| record[name].as_str().unwrap_or("-").to_string();
    println!("export    {}", field("id"));
    println!("status    {}", field("status"));
    if let Some(reason) = record["reason"].as_str() {
        println!("reason    {reason}");
    }
    println!("audience  {}", field("audience"));
    println!("recipient {}", field("recipient"));
    println!("purpose   {}", field("purpose"));
    println!(
        "created   {} by {}",
        field("created_at"),
        field("created_by")
    );
    let counts = &record["manifest"]["counts"];
    if counts.is_object() {
        println!(
            "included  {}   removals {}",
            counts["included"], counts["removals"]
        );
        for line in counts["exclusions"].as_array().into_iter().flatten() {
            println!(
                "excluded  {:>6}  {} ({})",
                line["people"],
                line["reason"].as_str().unwrap_or_default(),
                line["cite"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(|c| c.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            );
        }
    }
}

#[allow(clippy::print_stdout)]
fn create(args: CreateArgs) -> anyhow::Result<()> {
    let started = args.server.post(
        "/v1/exports",
        &serde_json::json!({
            "audience": args.audience, "purpose": args.purpose, "recipient": args.recipient,
            "fields": args.fields, "format": args.format, "destination": args.destination,
        }),
    )?;
    let id = started["id"]
        .as_str()
        .context("the server's answer has no export id")?
        .to_string();
    let bar = indicatif::ProgressBar::new(0);
    bar.set_style(
        indicatif::ProgressStyle::with_template("{msg} [{bar:40}] {pos}/{len} people ({eta})")
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    bar.set_message(format!("export {id}"));
    let record = loop {
        let record = args.server.get(&format!("/v1/exports/{id}"))?;
        bar.set_length(record["progress"]["total"].as_u64().unwrap_or(0));
        bar.set_position(record["progress"]["considered"].as_u64().unwrap_or(0));
        if record["status"] != "running" {
            break record;
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    bar.finish_and_clear();
    match record["status"].as_str() {
        Some("done") => {}
        Some(status) => bail!(
            "export {id} {status}: {}",
            record["reason"].as_str().unwrap_or("no reason given")
        ),
        None => bail!("export {id}: the server's answer has no status"),
    }
    let bytes = args.server.get_bytes(&format!("/v1/exports/{id}/file"))?;
    write_private(&args.out, &bytes)?;
    let manifest_path = PathBuf::from(format!("{}.manifest.json", args.out.display()));
    write_private(
        &manifest_path,
        &serde_json::to_vec_pretty(&record["manifest"])?,
    )?;
    let counts = &record["manifest"]["counts"];
    println!(
        "export {id}: {} included, {} excluded, {} removals; {} and {}",
        counts["included"],
        counts["excluded"]
            .as_object()
            .map(|m| m
                .values()
                .filter_map(serde_json::Value::as_u64)
                .sum::<u64>())
            .unwrap_or(0),
        counts["removals"],
        args.out.display(),
        manifest_path.display()
    );
    if args.destination.is_some() {
        // Retries can take hours: the command waits a minute, then leaves them to the server.
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        let delivery = loop {
            let delivery = args.server.get(&format!("/v1/exports/{id}/delivery"))?;
            if delivery["state"] == "delivered" || delivery["state"] == "failed" {
                break delivery;
            }
            if std::time::Instant::now() > deadline {
                println!(
                    "export {id}: delivery still under way (retries pending); follow it with GET /v1/exports/{id}/delivery"
                );
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(300));
        };
        let batches = delivery["batches"].as_array().cloned().unwrap_or_default();
        let dead = batches.iter().filter(|b| b["status"] == "dead").count();
        if dead > 0 {
            bail!(
                "export {id}: {dead} of {} batches not delivered (cdp destinations dead-letters {})",
                batches.len(),
                delivery["destination"].as_str().unwrap_or_default()
            );
        }
        println!("export {id}: delivered in {} batches", batches.len());
    }
    Ok(())
}

#[allow(clippy::print_stdout)]
fn verify(args: VerifyArgs) -> anyhow::Result<()> {
    let text = std::fs::read(&args.manifest)
        .with_context(|| format!("cannot read {}", args.manifest.display()))?;
    let manifest: cdp_engine::Manifest = serde_json::from_slice(&text)
        .with_context(|| format!("{} is not an export manifest", args.manifest.display()))?;
    let file = std::fs::read(&args.file)
        .with_context(|| format!("cannot read {}", args.file.display()))?;
    let mut hash = cdp_crypto::Sha256Stream::default();
    hash.update(&file);
    let digest = hash.finish_hex();
    if digest != manifest.file_sha256 {
        bail!(
            "{} does not match the manifest: SHA-256 {digest}, manifest says {}",
            args.file.display(),
            manifest.file_sha256
        );
    }
    let signature = manifest
        .signature
        .as_deref()
        .context("the manifest is not signed")?;
    if !cdp_crypto::verify_signature(&manifest.signing_key, &manifest.signed_bytes(), signature) {
        bail!("the manifest's signature is invalid: it was changed after signing");
    }
    let expected = match (args.public_key, args.server) {
        (Some(key), _) => Some(key),
        (None, Some(server)) => {
            let client = ServerArgs {
                server,
                token: None,
            };
            let answer = client.get_public("/v1/keys/export")?;
            Some(
                answer["public_key"]
                    .as_str()
                    .context("the server's answer has no public_key")?
                    .to_string(),
            )
        }
        (None, None) => None,
    };
    if let Some(expected) = &expected
        && expected.trim() != manifest.signing_key
    {
        bail!("the manifest is signed by another key than the expected one");
    }
    println!(
        "valid: export {} of {} to {} ({} included, {} removals), SHA-256 {digest}{}",
        manifest.export_id,
        manifest.audience_id,
        manifest.recipient.name,
        manifest.counts.included,
        manifest.counts.removals,
        if expected.is_some() {
            ", signed by the expected key"
        } else {
            ", signature valid (pass --public-key or --server to pin the key)"
        }
    );
    Ok(())
}

/// Writes an export file readable by its owner only (mode 0600 on Unix): it holds personal
/// data, and the umask would leave it readable by every user of the machine (0644). An
/// existing file is replaced, its mode set anew.
fn write_private(path: &std::path::Path, bytes: &[u8]) -> anyhow::Result<()> {
    use std::io::Write;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options
        .open(path)
        .with_context(|| format!("cannot write {}", path.display()))?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        // `mode` applies only when the file is created.
        file.set_permissions(std::fs::Permissions::from_mode(0o600))
            .with_context(|| format!("cannot restrict {}", path.display()))?;
    }
    file.write_all(bytes)
        .and_then(|()| file.sync_all())
        .with_context(|| format!("cannot write {}", path.display()))
}
