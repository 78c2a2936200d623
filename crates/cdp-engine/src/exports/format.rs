//! The rows of an export file: CSV (RFC 4180 quoting) or JSON lines.

use std::collections::BTreeMap;

use serde_json::Value;

use super::ExportFormat;

fn csv_cell(text: &str) -> String {
    if text.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", text.replace('"', "\"\""))
    } else {
        text.to_string()
    }
}

pub(super) fn csv_line(cells: &[String]) -> Vec<u8> {
    let mut line = cells
        .iter()
        .map(|c| csv_cell(c))
        .collect::<Vec<_>>()
        .join(",");
    line.push('\n');
    line.into_bytes()
}

pub(super) fn format_row(
    format: ExportFormat,
    columns: &[String],
    row: &BTreeMap<String, Value>,
) -> Vec<u8> {
    match format {
        ExportFormat::Csv => csv_line(
            &columns
                .iter()
                .map(|c| match row.get(c) {
                    Some(Value::String(s)) => s.clone(),
                    Some(Value::Null) | None => String::new(),
                    Some(other) => other.to_string(),
                })
                .collect::<Vec<_>>(),
        ),
        ExportFormat::Jsonl => {
            let mut line = serde_json::to_vec(row).unwrap_or_default();
            line.push(b'\n');
            line
        }
    }
}
