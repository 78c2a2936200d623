//! `cdp import`: CRM/POS files into the running server, through the same validation and identity
//! path as live events (`POST /v1/import`).
//!
//! Each row becomes a Segment message (identify by default). Its messageId is derived from the
//! source, the file name and the row number, so importing the same file again changes nothing.
//! Rows that cannot become a message, or that the server refuses, go to a report file; the rest
//! is imported.

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use clap::Args;
use serde_json::{Map, Value, json};

use crate::client::ServerArgs;

#[derive(Debug, Args)]
pub struct ImportArgs {
    /// The source (by name) the rows are recorded as coming from (`cdp sources add` first).
    #[arg(long)]
    source: String,
    /// A .csv file (header row) or a .jsonl file (one JSON object per line).
    file: PathBuf,
    /// Column mapping COLUMN=TARGET; TARGET is userId, anonymousId, messageId, timestamp, event,
    /// traits.NAME, properties.NAME, externalId.TYPE (e.g. externalId.crm_id) or skip. Unmapped
    /// columns follow the defaults (see docs/import.md).
    #[arg(long = "map", value_name = "COLUMN=TARGET")]
    maps: Vec<String>,
    /// Message type of the rows: identify (traits) or track (properties; needs --event or an
    /// event column).
    #[arg(long = "type", default_value = "identify")]
    kind: String,
    /// Event name for --type track.
    #[arg(long)]
    event: Option<String>,
    /// Rows per request (at most 2,000; requests also stay under 400 KB).
    #[arg(long, default_value_t = 500)]
    batch_size: usize,
    /// Where to write rows that were not imported (default FILE.errors.txt).
    #[arg(long)]
    report: Option<PathBuf>,
    #[command(flatten)]
    server: ServerArgs,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Target {
    UserId,
    AnonymousId,
    MessageId,
    Timestamp,
    Event,
    Trait(String),
    Property(String),
    ExternalId(String),
    Skip,
}

fn parse_target(text: &str) -> anyhow::Result<Target> {
    Ok(match text {
        "userId" => Target::UserId,
        "anonymousId" => Target::AnonymousId,
        "messageId" => Target::MessageId,
        "timestamp" => Target::Timestamp,
        "event" => Target::Event,
        "skip" => Target::Skip,
        other => {
            if let Some(name) = other.strip_prefix("traits.") {
                Target::Trait(name.to_string())
            } else if let Some(name) = other.strip_prefix("properties.") {
                Target::Property(name.to_string())
            } else if let Some(kind) = other.strip_prefix("externalId.") {
                kind.parse::<cdp_core::IdentifierType>()
                    .map_err(|_| anyhow::anyhow!("externalId.{kind}: not an identifier type"))?;
                Target::ExternalId(kind.to_string())
            } else {
                bail!(
                    "unknown target {other:?}: use userId, anonymousId, messageId, timestamp, event, traits.NAME, properties.NAME, externalId.TYPE or skip"
                )
            }
        }
    })
}

/// The target of a column nobody mapped.
fn default_target(column: &str, track: bool) -> Target {
    match column
        .trim()
        .to_ascii_lowercase()
        .replace(['-', ' '], "_")
        .as_str()
    {
        "userid" | "user_id" => Target::UserId,
        "anonymousid" | "anonymous_id" => Target::AnonymousId,
        "messageid" | "message_id" => Target::MessageId,
        "timestamp" | "time" | "created_at" => Target::Timestamp,
        "event" => Target::Event,
        "email" | "e_mail" => Target::Trait("email".into()),
        "phone" | "mobile" | "phone_number" => Target::Trait("phone".into()),
        "crm_id" | "member_id" | "wechat_unionid" | "alipay_user_id" => {
            Target::ExternalId(column.trim().to_ascii_lowercase())
        }
        _ if track => Target::Property(column.trim().to_string()),
        _ => Target::Trait(column.trim().to_string()),
    }
}

struct Mapper {
    explicit: Vec<(String, Target)>,
    track: bool,
    event: Option<String>,
    source: String,
    file_name: String,
}

impl Mapper {
    /// The messageId of a row without one: the same row of the same file imported again is the
    /// same message, so re-imports are de-duplicated.
    fn message_id(&self, row: usize) -> String {
        let digest = cdp_crypto::digest16(&[
            self.source.as_bytes(),
            self.file_name.as_bytes(),
            &(row as u64).to_be_bytes(),
        ]);
        format!("import-{}", cdp_core::hex::encode(&digest))
    }

    fn target(&self, column: &str) -> Target {
        self.explicit
            .iter()
            .find(|(name, _)| name == column)
            .map(|(_, target)| target.clone())
            .unwrap_or_else(|| default_target(column, self.track))
    }

    /// A message from one flat row. Empty cells are left out.
    fn message(&self, row: usize, fields: &[(String, Value)]) -> Result<Value, String> {
        let mut message = Map::new();
        let mut traits = Map::new();
        let mut properties = Map::new();
        let mut external = Vec::new();
        for (column, value) in fields {
            if value.is_null() || value.as_str().is_some_and(|s| s.trim().is_empty()) {
                continue;
            }
            let text = || match value {
                Value::String(text) => text.trim().to_string(),
                other => other.to_string(),
            };
            match self.target(column) {
                Target::UserId => drop(message.insert("userId".into(), text().into())),
                Target::AnonymousId => drop(message.insert("anonymousId".into(), text().into())),
                Target::MessageId => drop(message.insert("messageId".into(), text().into())),
                Target::Timestamp => drop(message.insert("timestamp".into(), text().into())),
                Target::Event => drop(message.insert("event".into(), text().into())),
                Target::Trait(name) => drop(traits.insert(name, value.clone())),
                Target::Property(name) => drop(properties.insert(name, value.clone())),
                Target::ExternalId(kind) => external.push(json!({"id": text(), "type": kind})),
                Target::Skip => {}
            }
        }
        if !message.contains_key("userId") && !message.contains_key("anonymousId") {
            if external.is_empty() {
                return Err("no userId, anonymousId or external id column has a value".into());
            }
            // An external id alone identifies the row; Segment needs one of the two ids.
            let first = external[0]["id"].as_str().unwrap_or_default().to_string();
            message.insert("anonymousId".into(), format!("import:{first}").into());
        }
        message.insert(
            "type".into(),
            if self.track { "track" } else { "identify" }.into(),
        );
        if self.track {
            if let Some(event) = &self.event {
                message
                    .entry("event")
                    .or_insert_with(|| event.clone().into());
            }
            if !message.contains_key("event") {
                return Err("track rows need --event or an event column".into());
            }
        }
        message
            .entry("messageId")
            .or_insert_with(|| self.message_id(row).into());
        if !traits.is_empty() {
            message.insert("traits".into(), Value::Object(traits));
        }
        if !properties.is_empty() {
            message.insert("properties".into(), Value::Object(properties));
        }
        if !external.is_empty() {
            message.insert("context".into(), json!({ "externalIds": external }));
        }
        Ok(Value::Object(message))
    }
}

/// Rows of the file as (row number, flat fields or a ready message).
enum Row {
    Fields(Vec<(String, Value)>),
    Message(Value),
}

/// A row number and the row, or why it is not one.
type NumberedRow = (usize, Result<Row, String>);

fn read_rows(path: &Path) -> anyhow::Result<(Vec<NumberedRow>, usize)> {
    let extension = path
        .extension()
        .and_then(|e| e.to_str())
        .unwrap_or_default()
        .to_ascii_lowercase();
    let mut rows = Vec::new();
    match extension.as_str() {
        "csv" => {
            let mut reader = csv::ReaderBuilder::new()
                .flexible(false)
                .from_path(path)
                .with_context(|| format!("cannot read {}", path.display()))?;
            let headers: Vec<String> = reader
                .headers()
                .with_context(|| format!("{}: no header row", path.display()))?
                .iter()
                .map(|h| h.trim_start_matches('\u{feff}').to_string())
                .collect();
            for (index, record) in reader.records().enumerate() {
                let row = index + 2; // 1-based, after the header
                rows.push((
                    row,
                    record
                        .map(|record| {
                            Row::Fields(
                                headers
                                    .iter()
                                    .cloned()
                                    .zip(record.iter().map(|v| Value::String(v.to_string())))
                                    .collect(),
                            )
                        })
                        .map_err(|e| {
                            format!("not a CSV record with {} fields ({e})", headers.len())
                                .replace(|c: char| c.is_control(), " ")
                        }),
                ));
            }
        }
        "jsonl" | "ndjson" => {
            let file = std::fs::File::open(path)
                .with_context(|| format!("cannot read {}", path.display()))?;
            for (index, line) in BufReader::new(file).lines().enumerate() {
                let row = index + 1;
                let line =
                    line.with_context(|| format!("{}: line {row} is not UTF-8", path.display()))?;
                if line.trim().is_empty() {
                    continue;
                }
                let parsed = match serde_json::from_str::<Value>(&line) {
                    Ok(Value::Object(object)) => {
                        if ["type", "userId", "anonymousId"]
                            .iter()
                            .any(|k| object.contains_key(*k))
                        {
                            Ok(Row::Message(Value::Object(object)))
                        } else {
                            Ok(Row::Fields(object.into_iter().collect()))
                        }
                    }
                    Ok(_) => Err("not a JSON object".to_string()),
                    Err(e) => Err(format!("not valid JSON (column {})", e.column())),
                };
                rows.push((row, parsed));
            }
        }
        _ => bail!("{}: use a .csv or .jsonl file", path.display()),
    }
    let total = rows.len();
    Ok((rows, total))
}

// Long by design: the command's script (read and validate the files, send batches from
// parallel clients with retries, report progress, summarise), read top to bottom.
#[allow(clippy::print_stdout)]
pub fn run(args: ImportArgs) -> anyhow::Result<()> {
    anyhow::ensure!(
        (1..=2_000).contains(&args.batch_size),
        "--batch-size must be between 1 and 2000"
    );
    let track = match args.kind.as_str() {
        "identify" => false,
        "track" => true,
        other => bail!("--type {other}: use identify or track"),
    };
    let mut explicit = Vec::new();
    for map in &args.maps {
        let (column, target) = map
            .split_once('=')
            .with_context(|| format!("--map {map}: use COLUMN=TARGET"))?;
        explicit.push((column.to_string(), parse_target(target)?));
    }
    let mapper = Mapper {
        explicit,
        track,
        event: args.event.clone(),
        source: args.source.clone(),
        file_name: args
            .file
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or_default()
            .to_string(),
    };
    let (rows, total) = read_rows(&args.file)?;
    let progress = indicatif::ProgressBar::new(total as u64);
    progress.set_style(
        indicatif::ProgressStyle::with_template("{bar:40} {pos}/{len} rows  {per_sec}  eta {eta}")
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    let mut errors: Vec<(usize, String)> = Vec::new();
    let mut warnings: Vec<(usize, String)> = Vec::new();
    let (mut accepted, mut duplicates, mut unattributed) = (0u64, 0u64, 0u64);
    let mut pending: Vec<(usize, Value)> = Vec::new();
    let mut pending_bytes = 0usize;
    let path = format!(
        "/v1/import?source={}",
        crate::client::encode_query(&args.source)
    );
    let mut flush = |pending: &mut Vec<(usize, Value)>,
                     errors: &mut Vec<(usize, String)>|
     -> anyhow::Result<()> {
        while !pending.is_empty() {
            let batch: Vec<&Value> = pending.iter().map(|(_, m)| m).collect();
            let (status, answer) = args.server.post_raw(&path, &json!({ "batch": batch }))?;
            match status {
                200 => {
                    // Identifiers left out as invalid, rows not stored for want of one.
                    for warning in answer["warnings"].as_array().into_iter().flatten() {
                        let Some(row) = warning["index"]
                            .as_u64()
                            .and_then(|index| pending.get(index as usize))
                            .map(|(row, _)| *row)
                        else {
                            continue;
                        };
                        let problem = warning["problem"].as_str().unwrap_or("not used");
                        let note = match warning["field"].as_str() {
                            Some(field) => format!("{field}: {problem} (the row was imported)"),
                            None => problem.to_string(),
                        };
                        warnings.push((row, note));
                    }
                    accepted += answer["accepted"].as_u64().unwrap_or(0);
                    duplicates += answer["duplicates"].as_u64().unwrap_or(0);
                    unattributed += answer["unattributed"].as_u64().unwrap_or(0);
                    progress.inc(pending.len() as u64);
                    pending.clear();
                }
                400 if answer["error"]["details"]["index"].is_u64() => {
                    // One bad row refuses the request: report it and send the others again.
                    let index = answer["error"]["details"]["index"].as_u64().unwrap_or(0) as usize;
                    if index >= pending.len() {
                        bail!("the server refused a row it could not point at: {answer}");
                    }
                    let (row, _) = pending.remove(index);
                    let field = answer["error"]["details"]["field"].as_str().unwrap_or("");
                    let field = field.split_once('.').map_or(field, |(_, rest)| rest);
                    let problem = answer["error"]["details"]["problem"]
                        .as_str()
                        .unwrap_or("invalid");
                    errors.push((row, format!("{field}: {problem}")));
                    progress.inc(1);
                }
                404 if args.source.starts_with("src_") => bail!(
                    "--source takes the source's name, not its id: `cdp sources list` shows both"
                ),
                _ => {
                    let message = answer["error"]["message"].as_str().unwrap_or("no message");
                    bail!("the server answered {status}: {message}");
                }
            }
        }
        Ok(())
    };
    for (row, parsed) in rows {
        let message = match parsed.and_then(|row_content| match row_content {
            Row::Fields(fields) => mapper.message(row, &fields),
            Row::Message(mut message) => {
                if let Value::Object(object) = &mut message {
                    object.entry("type").or_insert_with(|| "identify".into());
                    object
                        .entry("messageId")
                        .or_insert_with(|| mapper.message_id(row).into());
                }
                Ok(message)
            }
        }) {
            Ok(message) => message,
            Err(problem) => {
                errors.push((row, problem));
                progress.inc(1);
                continue;
            }
        };
        let size = message.to_string().len();
        if !pending.is_empty()
            && (pending.len() >= args.batch_size || pending_bytes + size > 400 * 1024)
        {
            flush(&mut pending, &mut errors)?;
            pending_bytes = 0;
        }
        pending_bytes += size;
        pending.push((row, message));
    }
    flush(&mut pending, &mut errors)?;
    progress.finish_and_clear();
    println!(
        "{total} rows: {accepted} imported, {duplicates} already imported, {unattributed} without a usable identifier, {} refused",
        errors.len()
    );
    let left_out = warnings
        .iter()
        .filter(|(_, note)| note.ends_with("(the row was imported)"))
        .count();
    if left_out > 0 {
        println!(
            "{left_out} identifiers left out as invalid (a phone that does not parse, an e-mail without a domain)"
        );
    }
    // One report: refused rows, rows not stored, and identifiers left out, by row.
    errors.append(&mut warnings);
    if !errors.is_empty() {
        let report = args.report.clone().unwrap_or_else(|| {
            let mut name = args.file.as_os_str().to_owned();
            name.push(".errors.txt");
            PathBuf::from(name)
        });
        errors.sort();
        let mut file = std::fs::File::create(&report)
            .with_context(|| format!("cannot write {}", report.display()))?;
        for (row, problem) in &errors {
            writeln!(file, "row {row}: {problem}")
                .with_context(|| format!("cannot write {}", report.display()))?;
        }
        println!(
            "refused rows, rows not stored and identifiers left out are listed by row in {}",
            report.display()
        );
    }
    Ok(())
}
