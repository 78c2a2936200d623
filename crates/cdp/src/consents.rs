//! `cdp consents import FILE`: consents collected elsewhere (a CRM's opt-in flags, a store's
//! paper forms, a consent-management platform's export), with the evidence of each row, into
//! the running server (`POST /v1/consents/batch`, 200 rows a request). Rows that cannot be
//! recorded are listed in an errors file by line number and reason (never their values); the
//! others are recorded. Exits non-zero when any row was refused.
//!
//! CSV columns (a header row; unknown columns are refused): `profile_id`, or `type`, `value`
//! and `region`; `purpose`, `status` (granted, denied, withdrawn), `source`, `evidence` (a JSON
//! object, or text that becomes `{"note": ...}`), and optionally `notice_version`,
//! `legal_basis`, `channel`, `at` (RFC 3339), `recipient`, `separate`, `guardian`. JSONL: one
//! object per line, either the body of `POST /v1/consents` (with `subject`) or the CSV's
//! fields.

use std::io::{BufRead as _, BufReader, Write as _};
use std::path::{Path, PathBuf};

use anyhow::{Context as _, bail};
use clap::{Args, Subcommand};
use serde_json::{Map, Value, json};

use crate::client::ServerArgs;

#[derive(Debug, Subcommand)]
pub enum ConsentsCommand {
    /// Record consents from a CSV or JSONL file, with the evidence of each row.
    Import(ImportArgs),
}

#[derive(Debug, Args)]
pub struct ImportArgs {
    /// A .csv or .jsonl file.
    file: PathBuf,
    /// Where refused rows are listed (line number and reason). Default: FILE.errors.jsonl.
    #[arg(long)]
    errors: Option<PathBuf>,
    #[command(flatten)]
    server: ServerArgs,
}

/// Rows per request (the server takes at most 500).
const BATCH: usize = 200;
const COLUMNS: &[&str] = &[
    "profile_id",
    "type",
    "value",
    "region",
    "purpose",
    "status",
    "source",
    "evidence",
    "notice_version",
    "legal_basis",
    "channel",
    "at",
    "recipient",
    "separate",
    "guardian",
];

/// A row of flat fields as the body of `POST /v1/consents`.
fn body_of(fields: &Map<String, Value>) -> Result<Value, String> {
    if fields.contains_key("subject") {
        return Ok(Value::Object(fields.clone()));
    }
    let text = |name: &str| match fields.get(name) {
        Some(Value::String(text)) if !text.trim().is_empty() => Some(text.trim().to_string()),
        Some(Value::Number(number)) => Some(number.to_string()),
        _ => None,
    };
    if let Some(unknown) = fields.keys().find(|k| !COLUMNS.contains(&k.as_str())) {
        return Err(format!(
            "unknown column {unknown:?}; columns are {}",
            COLUMNS.join(", ")
        ));
    }
    let subject = match (text("profile_id"), text("type"), text("value")) {
        (Some(id), None, None) => json!({ "profile_id": id }),
        (None, Some(kind), Some(value)) => {
            let mut subject = json!({ "type": kind, "value": value });
            if let Some(region) = text("region") {
                subject["region"] = json!(region);
            }
            subject
        }
        _ => return Err("name the person by profile_id, or by type and value".into()),
    };
    let mut body = Map::new();
    body.insert("subject".into(), subject);
    for name in [
        "purpose",
        "status",
        "source",
        "notice_version",
        "legal_basis",
        "channel",
        "at",
        "recipient",
    ] {
        if let Some(value) = text(name) {
            body.insert(name.into(), json!(value));
        }
    }
    for name in ["separate", "guardian"] {
        match fields.get(name) {
            None | Some(Value::Null) => {}
            Some(Value::Bool(flag)) => {
                body.insert(name.into(), json!(flag));
            }
            Some(Value::String(text)) if text.trim().is_empty() => {}
            Some(Value::String(text)) => match text.trim().to_ascii_lowercase().as_str() {
                "true" | "yes" | "1" => {
                    body.insert(name.into(), json!(true));
                }
                "false" | "no" | "0" => {
                    body.insert(name.into(), json!(false));
                }
                _ => return Err(format!("{name} must be true or false")),
            },
            Some(_) => return Err(format!("{name} must be true or false")),
        }
    }
    let evidence = match fields.get("evidence") {
        Some(Value::Object(object)) => Value::Object(object.clone()),
        Some(Value::String(text)) if text.trim_start().starts_with('{') => {
            serde_json::from_str::<Value>(text)
                .ok()
                .filter(Value::is_object)
                .ok_or("evidence starts like a JSON object but is not one")?
        }
        Some(Value::String(text)) if !text.trim().is_empty() => json!({ "note": text.trim() }),
        _ => return Err("evidence is required: how the person agreed (text or JSON)".into()),
    };
    body.insert("evidence".into(), evidence);
    Ok(Value::Object(body))
}

/// (line number, the request body or why the row is not one).
type Row = (usize, Result<Value, String>);

fn read_rows(path: &Path) -> anyhow::Result<Vec<Row>> {
    let extension = path
        .extension()
        .and_then(|e| e.to_str())
        .unwrap_or_default()
        .to_ascii_lowercase();
    let mut rows = Vec::new();
    match extension.as_str() {
        "csv" => {
            let mut reader = csv::ReaderBuilder::new()
                .from_path(path)
                .with_context(|| format!("cannot read {}", path.display()))?;
            let headers: Vec<String> = reader
                .headers()
                .with_context(|| format!("{}: no header row", path.display()))?
                .iter()
                .map(|h| h.trim_start_matches('\u{feff}').trim().to_string())
                .collect();
            for (index, record) in reader.records().enumerate() {
                let line = index + 2;
                let row = match record {
                    Ok(record) => {
                        let fields: Map<String, Value> = headers
                            .iter()
                            .cloned()
                            .zip(record.iter().map(|v| Value::String(v.to_string())))
                            .collect();
                        body_of(&fields)
                    }
                    Err(_) => Err(format!("not a CSV record with {} fields", headers.len())),
                };
                rows.push((line, row));
            }
        }
        "jsonl" | "ndjson" => {
            let file = std::fs::File::open(path)
                .with_context(|| format!("cannot read {}", path.display()))?;
            for (index, line) in BufReader::new(file).lines().enumerate() {
                let number = index + 1;
                let line = line
                    .with_context(|| format!("{}: line {number} is not UTF-8", path.display()))?;
                if line.trim().is_empty() {
                    continue;
                }
                let row = match serde_json::from_str::<Value>(&line) {
                    Ok(Value::Object(fields)) => body_of(&fields),
                    Ok(_) => Err("not a JSON object".to_string()),
                    Err(error) => Err(format!("not valid JSON (column {})", error.column())),
                };
                rows.push((number, row));
            }
        }
        _ => bail!("{}: use a .csv or .jsonl file", path.display()),
    }
    Ok(rows)
}

#[allow(clippy::print_stdout)]
pub fn run(command: ConsentsCommand) -> anyhow::Result<()> {
    let ConsentsCommand::Import(args) = command;
    let rows = read_rows(&args.file)?;
    anyhow::ensure!(!rows.is_empty(), "{}: no rows", args.file.display());
    let progress = indicatif::ProgressBar::new(rows.len() as u64);
    progress.set_style(
        indicatif::ProgressStyle::with_template("{bar:40} {pos}/{len} rows  {per_sec}  eta {eta}")
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    let mut refused: Vec<(usize, String)> = Vec::new();
    let mut recorded = 0u64;
    let mut ready: Vec<(usize, Value)> = Vec::new();
    for (line, row) in rows {
        match row {
            Ok(body) => ready.push((line, body)),
            Err(reason) => {
                refused.push((line, reason));
                progress.inc(1);
            }
        }
    }
    for chunk in ready.chunks(BATCH) {
        let consents: Vec<&Value> = chunk.iter().map(|(_, body)| body).collect();
        let (status, answer) = args
            .server
            .post_raw("/v1/consents/batch", &json!({ "consents": consents }))?;
        if status != 200 {
            let message = answer["error"]["message"].as_str().unwrap_or("no answer");
            bail!("the server refused the batch ({status}): {message}; nothing more was sent");
        }
        for result in answer["results"].as_array().into_iter().flatten() {
            let index = result["index"].as_u64().unwrap_or(0) as usize;
            let line = chunk.get(index).map_or(0, |(line, _)| *line);
            match result.get("error") {
                Some(error) => refused.push((
                    line,
                    format!(
                        "{}: {}",
                        error["code"].as_str().unwrap_or("error"),
                        error["message"].as_str().unwrap_or_default()
                    ),
                )),
                None => recorded += 1,
            }
        }
        progress.inc(chunk.len() as u64);
    }
    progress.finish_and_clear();
    println!("recorded {recorded} consent records");
    if refused.is_empty() {
        return Ok(());
    }
    refused.sort();
    let errors = args.errors.clone().unwrap_or_else(|| {
        let mut name = args.file.clone().into_os_string();
        name.push(".errors.jsonl");
        PathBuf::from(name)
    });
    let mut file = std::fs::File::create(&errors)
        .with_context(|| format!("cannot write {}", errors.display()))?;
    for (line, reason) in &refused {
        writeln!(file, "{}", json!({ "line": line, "error": reason }))?;
    }
    bail!(
        "{} rows were refused: {} lists them by line",
        refused.len(),
        errors.display()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fields(value: Value) -> Map<String, Value> {
        value.as_object().unwrap().clone()
    }

    #[test]
    fn a_flat_row_becomes_a_consent_body() {
        let body = body_of(&fields(json!({
            "type": "phone", "value": "13800138000", "region": "CN", "purpose": "marketing.sms",
            "status": "granted", "source": "store 12", "evidence": "paper form 2026-11-30",
            "separate": "no", "notice_version": ""
        })))
        .unwrap();
        assert_eq!(
            body,
            json!({"subject": {"type": "phone", "value": "13800138000", "region": "CN"},
                   "purpose": "marketing.sms", "status": "granted", "source": "store 12",
                   "separate": false, "evidence": {"note": "paper form 2026-11-30"}})
        );
        let body = body_of(&fields(json!({"profile_id": "p_1", "purpose": "analytics",
            "status": "denied", "source": "cmp", "evidence": "{\"banner\": \"v3\"}"})))
        .unwrap();
        assert_eq!(body["evidence"], json!({"banner": "v3"}));
    }

    #[test]
    fn rows_that_are_not_consents_say_why_without_their_values() {
        let missing = body_of(&fields(
            json!({"type": "email", "value": "a@b.cn", "purpose": "analytics", "status": "granted", "source": "x"}),
        ));
        assert!(missing.unwrap_err().contains("evidence"));
        let unknown = body_of(&fields(json!({"mail": "a@b.cn"})));
        assert!(unknown.unwrap_err().contains("unknown column \"mail\""));
        let both = body_of(&fields(
            json!({"profile_id": "p", "type": "email", "value": "a@b.cn", "evidence": "x"}),
        ));
        assert!(!both.unwrap_err().contains("a@b.cn"));
    }
}
