//! Deliveries: a finished export with a destination is handed over in batches (webhook) or as
//! one upload (SFTP), each batch tried until it is delivered or its tries are used up.
//!
//! The delivery record (`delivery/<export id>`) is written in the transaction that marks the
//! export done, so a delivery is never forgotten by a crash. A node's delivery worker
//! (`deliver_due`, every second) claims due deliveries with a lease (`jobs.rs`), as export
//! jobs are claimed, so one node works a delivery at a time and a delivery whose node died is
//! taken over. Every batch's state is saved after its try: a retry waits in the record
//! (`next_attempt_at`), not in a sleeping thread, and survives restarts.
//!
//! The rows are read from the export's sealed file at each pass, so an erasure that rewrote
//! the file before a batch went out keeps the erased person out of it. When the file was
//! rewritten while a delivery was unfinished, the delivery starts again from its first batch
//! (receivers see some rows twice; every row is an `add` or `remove` of a pseudonym, which
//! applies the same way twice).

use serde::{Deserialize, Serialize};
use serde_json::Value;
use time::OffsetDateTime;

use cdp_destinations::webhook::{self, PostOutcome};
use cdp_destinations::{DestinationError, sftp};
use cdp_store::{CommitTicket, Keyspace, WriteBatch};

use super::{DestinationKind, DestinationRecord};
use crate::audit::AuditRecord;
use crate::exports::{ExportFormat, ExportRecord, Manifest};
use crate::jobs::{JobLease, LEASE};
use crate::{Engine, EngineError};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DeliveryState {
    /// Not tried yet.
    Pending,
    /// Some batches are not delivered yet (being sent, or waiting for a retry).
    Delivering,
    Delivered,
    /// Every batch was tried to its end and at least one is a dead letter.
    Failed,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BatchStatus {
    Pending,
    Retrying,
    Delivered,
    /// Tried `max_attempts` times, or refused by the receiver: listed as a dead letter.
    Dead,
}

/// One batch of a delivery and what became of it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BatchState {
    pub batch: u32,
    /// Its first row among the file's rows (the CSV header not counted).
    pub first_row: u64,
    pub rows: u32,
    pub status: BatchStatus,
    pub attempts: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_status: Option<u16>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        with = "time::serde::rfc3339::option"
    )]
    pub next_attempt_at: Option<OffsetDateTime>,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        with = "time::serde::rfc3339::option"
    )]
    pub finished_at: Option<OffsetDateTime>,
}

/// The delivery of one export to its destination.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeliveryRecord {
    pub export_id: String,
    pub destination: String,
    pub kind: DestinationKind,
    pub state: DeliveryState,
    /// The revision of the export file the batches were cut from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revision: Option<u32>,
    pub batches: Vec<BatchState>,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    pub updated_at: OffsetDateTime,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        with = "time::serde::rfc3339::option"
    )]
    pub next_attempt_at: Option<OffsetDateTime>,
    /// Why the delivery stopped short, when it did (the file withdrawn, the destination retired).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lease: Option<JobLease>,
}

impl DeliveryRecord {
    fn open(&self) -> bool {
        matches!(
            self.state,
            DeliveryState::Pending | DeliveryState::Delivering
        )
    }

    fn due(&self, now: OffsetDateTime) -> bool {
        self.open()
            && self.next_attempt_at.is_none_or(|at| at <= now)
            && self.lease.as_ref().is_none_or(|lease| lease.expired(now))
    }

    /// The state and next attempt that its batches come to.
    fn settle(&mut self) {
        let waiting: Vec<&BatchState> = self
            .batches
            .iter()
            .filter(|b| matches!(b.status, BatchStatus::Pending | BatchStatus::Retrying))
            .collect();
        self.next_attempt_at = waiting.iter().filter_map(|b| b.next_attempt_at).min();
        self.state = if !waiting.is_empty() {
            DeliveryState::Delivering
        } else if self.batches.iter().any(|b| b.status == BatchStatus::Dead) {
            DeliveryState::Failed
        } else {
            DeliveryState::Delivered
        };
    }
}

/// A batch that will not be delivered without an operator's retry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DeadLetter {
    pub export_id: String,
    pub batch: u32,
    pub rows: u32,
    pub attempts: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_status: Option<u16>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
    #[serde(with = "time::serde::rfc3339::option")]
    pub failed_at: Option<OffsetDateTime>,
}

pub(crate) fn delivery_key(export_id: &str) -> Vec<u8> {
    [b"delivery/".as_slice(), export_id.as_bytes()].concat()
}

/// Present while a delivery is open: the worker scans these, not every delivery ever made.
fn open_marker_key(export_id: &str) -> Vec<u8> {
    [b"delivery-open/".as_slice(), export_id.as_bytes()].concat()
}

/// What one export's file holds for a delivery.
pub(crate) struct ExportContent {
    pub(crate) record: ExportRecord,
    pub(crate) manifest: Manifest,
    pub(crate) revision: u32,
    /// The CSV header line, when the file has one.
    pub(crate) header: Option<Vec<u8>>,
    /// Every row's line (newline included), in file order.
    pub(crate) rows: Vec<Vec<u8>>,
}

/// Another node took the delivery over.
struct LeaseLost;

impl Engine {
    /// Puts the delivery of a just-finished export into `batch` (the one that marks it done).
    pub(crate) fn queue_delivery(
        &self,
        batch: &mut WriteBatch,
        export: &ExportRecord,
        destination: &str,
    ) -> Result<(), EngineError> {
        let kind = self
            .destination_record(destination)?
            .map(|d| d.kind)
            .unwrap_or(DestinationKind::Webhook);
        let now = OffsetDateTime::now_utc();
        let record = DeliveryRecord {
            export_id: export.id.clone(),
            destination: destination.to_string(),
            kind,
            state: DeliveryState::Pending,
            revision: None,
            batches: Vec::new(),
            created_at: now,
            updated_at: now,
            next_attempt_at: None,
            note: None,
            lease: None,
        };
        self.put_delivery_in(batch, &record)
    }

    /// Puts `record` and its open marker (or the marker's removal) into `batch`.
    fn put_delivery_in(
        &self,
        batch: &mut WriteBatch,
        record: &DeliveryRecord,
    ) -> Result<(), EngineError> {
        let key = delivery_key(&record.export_id);
        batch.put(
            Keyspace::Exports,
            key.clone(),
            self.seal_system(Keyspace::Exports, &key, record)?,
        );
        let marker = open_marker_key(&record.export_id);
        if record.open() {
            batch.put(Keyspace::Exports, marker, Vec::new());
        } else {
            batch.delete(Keyspace::Exports, marker);
        }
        Ok(())
    }

    /// The delivery of export `id`, if it has a destination.
    pub fn delivery(&self, export_id: &str) -> Result<Option<DeliveryRecord>, EngineError> {
        self.export(export_id)?;
        self.get_system(Keyspace::Exports, &delivery_key(export_id))
    }

    fn deliveries(&self) -> Result<Vec<DeliveryRecord>, EngineError> {
        let mut out = Vec::new();
        for item in self.store().scan_prefix(Keyspace::Exports, b"delivery/") {
            let (key, sealed) = item?;
            out.push(self.open_system(Keyspace::Exports, &key, &sealed)?);
        }
        Ok(out)
    }

    /// Works every due delivery (a pass of the delivery worker); returns how many it worked.
    pub fn deliver_due(&self) -> Result<usize, EngineError> {
        let now = OffsetDateTime::now_utc();
        let mut due = Vec::new();
        for item in self
            .store()
            .scan_prefix(Keyspace::Exports, b"delivery-open/")
        {
            let (key, _) = item?;
            let id = String::from_utf8_lossy(&key[b"delivery-open/".len()..]).into_owned();
            if let Some(record) =
                self.get_system::<DeliveryRecord>(Keyspace::Exports, &delivery_key(&id))?
                && record.due(now)
            {
                due.push(id);
            }
        }
        let mut worked = 0;
        for id in due {
            let Some(record) = self.claim_delivery(&id)? else {
                continue;
            };
            worked += 1;
            if let Err(error) = self.work_delivery(record) {
                tracing::warn!(export = %id, %error, "delivery pass failed; tried again later");
                let _ = self.release_delivery(&id);
            }
        }
        Ok(worked)
    }

    /// Takes the lease of a due delivery within a write turn.
    fn claim_delivery(&self, id: &str) -> Result<Option<DeliveryRecord>, EngineError> {
        let _turn = self.store().write_turn()?;
        let Some(mut record) =
            self.get_system::<DeliveryRecord>(Keyspace::Exports, &delivery_key(id))?
        else {
            return Ok(None);
        };
        let now = OffsetDateTime::now_utc();
        if !record.due(now) {
            return Ok(None);
        }
        record.lease = Some(self.lease_until(now + LEASE));
        self.put_delivery(&record)?.wait_durable()?;
        Ok(Some(record))
    }

    fn release_delivery(&self, id: &str) -> Result<(), EngineError> {
        let _turn = self.store().write_turn()?;
        if let Some(mut record) =
            self.get_system::<DeliveryRecord>(Keyspace::Exports, &delivery_key(id))?
            && record
                .lease
                .as_ref()
                .is_some_and(|l| l.held_by(self.node_name()))
        {
            record.lease = None;
            // Not at once again: a pass that failed for a reason of this node's waits.
            record.next_attempt_at = Some(OffsetDateTime::now_utc() + time::Duration::seconds(5));
            let _released = self.put_delivery(&record)?;
        }
        Ok(())
    }

    fn put_delivery(&self, record: &DeliveryRecord) -> Result<CommitTicket, EngineError> {
        let mut batch = WriteBatch::default();
        self.put_delivery_in(&mut batch, record)?;
        Ok(self.store().commit(batch)?)
    }

    /// Saves `record` if its lease is still this node's (renewing it while it runs).
    fn save_delivery_if_ours(
        &self,
        record: &mut DeliveryRecord,
        audit: &[AuditRecord],
    ) -> Result<Result<CommitTicket, LeaseLost>, EngineError> {
        let _turn = self.store().write_turn()?;
        let stored: Option<DeliveryRecord> =
            self.get_system(Keyspace::Exports, &delivery_key(&record.export_id))?;
        let ours = stored
            .and_then(|s| s.lease)
            .is_some_and(|lease| lease.held_by(self.node_name()));
        if !ours {
            return Ok(Err(LeaseLost));
        }
        let now = OffsetDateTime::now_utc();
        record.updated_at = now;
        record.lease = if record.open() && audit.is_empty() {
            Some(self.lease_until(now + LEASE))
        } else {
            None
        };
        let mut batch = WriteBatch::default();
        self.put_delivery_in(&mut batch, record)?;
        Ok(Ok(if audit.is_empty() {
            self.store().commit(batch)?
        } else {
            self.commit_audited(batch, audit)?
        }))
    }

    /// One pass over a claimed delivery: every due batch tried once.
    fn work_delivery(&self, mut record: DeliveryRecord) -> Result<(), EngineError> {
        let Some(destination) = self
            .destination_record(&record.destination)?
            .filter(|d| d.retired_at.is_none())
        else {
            return self.give_up(record, "the destination was retired");
        };
        let content = match self.export_content(&record.export_id) {
            Ok(content) => content,
            Err(EngineError::Conflict(why) | EngineError::NotFound(why)) => {
                return self.give_up(record, &format!("the export's file cannot be sent: {why}"));
            }
            Err(other) => return Err(other),
        };
        let batch_size = match destination.kind {
            DestinationKind::Webhook => destination.batch_size.max(1) as usize,
            // One upload: the whole file and its manifest.
            DestinationKind::Sftp => content.rows.len().max(1),
        };
        if record.revision != Some(content.revision) {
            if record.revision.is_some() {
                tracing::info!(export = %record.export_id, "the export file was revised by an erasure: its delivery starts again");
            }
            record.revision = Some(content.revision);
            record.batches = plan_batches(content.rows.len(), batch_size);
        }
        let now = OffsetDateTime::now_utc();
        let total = record.batches.len() as u32;
        for at in 0..record.batches.len() {
            let state = &record.batches[at];
            let due = matches!(state.status, BatchStatus::Pending | BatchStatus::Retrying)
                && state.next_attempt_at.is_none_or(|t| t <= now);
            if !due {
                continue;
            }
            let outcome = self.send_batch(&destination, &content, &record.batches[at], total);
            let state = &mut record.batches[at];
            state.attempts += 1;
            let finished = OffsetDateTime::now_utc();
            match outcome {
                PostOutcome::Delivered { status } => {
                    state.status = BatchStatus::Delivered;
                    state.last_status = Some(status);
                    state.last_error = None;
                    state.next_attempt_at = None;
                    state.finished_at = Some(finished);
                }
                PostOutcome::Retry { status, error }
                    if state.attempts < destination.max_attempts =>
                {
                    state.status = BatchStatus::Retrying;
                    state.last_status = status;
                    state.last_error = Some(error);
                    let wait = webhook::backoff(
                        std::time::Duration::from_millis(destination.retry_base_ms),
                        state.attempts,
                    );
                    state.next_attempt_at =
                        Some(finished + time::Duration::try_from(wait).unwrap_or(LEASE));
                }
                PostOutcome::Retry { status, error } | PostOutcome::Refused { status, error } => {
                    state.status = BatchStatus::Dead;
                    state.last_status = status;
                    state.last_error = Some(error);
                    state.next_attempt_at = None;
                    state.finished_at = Some(finished);
                }
            }
            record.settle();
            if let Err(LeaseLost) = self.save_delivery_if_ours(&mut record, &[])? {
                return Ok(());
            }
        }
        record.settle();
        let count = |status| record.batches.iter().filter(|b| b.status == status).count();
        let audit = [AuditRecord {
            actor: format!("node:{}", self.node_name()),
            action: "export.deliver".into(),
            purpose: Some(content.record.purpose.clone()),
            person: None,
            decision: match record.state {
                DeliveryState::Delivered => "done",
                DeliveryState::Failed => "failed",
                _ => "retrying",
            }
            .into(),
            rules: vec![
                record.export_id.clone(),
                record.destination.clone(),
                format!("delivered={}", count(BatchStatus::Delivered)),
                format!("retrying={}", count(BatchStatus::Retrying)),
                format!("dead={}", count(BatchStatus::Dead)),
            ],
        }];
        if let Ok(ticket) = self.save_delivery_if_ours(&mut record, &audit)? {
            ticket.wait_durable()?;
        }
        Ok(())
    }

    /// The file cannot be delivered any more: every batch not delivered is a dead letter.
    fn give_up(&self, mut record: DeliveryRecord, why: &str) -> Result<(), EngineError> {
        let now = OffsetDateTime::now_utc();
        if record.batches.is_empty() {
            record.batches = plan_batches(0, 1);
        }
        for batch in &mut record.batches {
            if batch.status != BatchStatus::Delivered {
                batch.status = BatchStatus::Dead;
                batch.last_error = Some(why.to_string());
                batch.next_attempt_at = None;
                batch.finished_at = Some(now);
            }
        }
        record.note = Some(why.to_string());
        record.settle();
        let audit = [AuditRecord {
            actor: format!("node:{}", self.node_name()),
            action: "export.deliver".into(),
            purpose: None,
            person: None,
            decision: "failed".into(),
            rules: vec![
                record.export_id.clone(),
                record.destination.clone(),
                why.to_string(),
            ],
        }];
        if let Ok(ticket) = self.save_delivery_if_ours(&mut record, &audit)? {
            ticket.wait_durable()?;
        }
        Ok(())
    }

    /// Sends one batch and says what came of it.
    fn send_batch(
        &self,
        destination: &DestinationRecord,
        content: &ExportContent,
        batch: &BatchState,
        batches: u32,
    ) -> PostOutcome {
        let start = usize::try_from(batch.first_row).unwrap_or(usize::MAX);
        let end = start
            .saturating_add(batch.rows as usize)
            .min(content.rows.len());
        let rows = content.rows.get(start..end).unwrap_or(&[]);
        match destination.kind {
            DestinationKind::Webhook => {
                let Some(target) = destination.webhook_target() else {
                    return refused("the destination has no address");
                };
                let body = match webhook_body(content, rows, batch.batch, batches) {
                    Ok(body) => body,
                    Err(e) => return refused(&e.to_string()),
                };
                let delivery = format!(
                    "{}/r{}/{}",
                    content.record.id, content.revision, batch.batch
                );
                webhook::post(&target, &delivery, &body)
            }
            DestinationKind::Sftp => {
                let Some(target) = destination.sftp_target() else {
                    return refused("the destination is incomplete");
                };
                let extension = match content.record.format {
                    ExportFormat::Csv => "csv",
                    ExportFormat::Jsonl => "jsonl",
                };
                let mut file = content.header.clone().unwrap_or_default();
                for row in rows {
                    file.extend_from_slice(row);
                }
                let manifest = serde_json::to_vec_pretty(&content.manifest).unwrap_or_default();
                let files = vec![
                    (format!("{}.{extension}", content.record.id), file),
                    (format!("{}.manifest.json", content.record.id), manifest),
                ];
                match sftp::upload(&target, &files) {
                    Ok(()) => PostOutcome::Delivered { status: 0 },
                    Err(error) if error.retryable() => PostOutcome::Retry {
                        status: None,
                        error: error.to_string(),
                    },
                    Err(error) => refused(&error.to_string()),
                }
            }
        }
    }

    /// The dead letters of a destination, newest first.
    pub fn dead_letters(&self, destination: &str) -> Result<Vec<DeadLetter>, EngineError> {
        self.destination_record(destination)?
            .ok_or_else(|| EngineError::NotFound(format!("destination {destination}")))?;
        let mut out = Vec::new();
        for delivery in self.deliveries()? {
            if delivery.destination != destination {
                continue;
            }
            for batch in delivery
                .batches
                .iter()
                .filter(|b| b.status == BatchStatus::Dead)
            {
                out.push(DeadLetter {
                    export_id: delivery.export_id.clone(),
                    batch: batch.batch,
                    rows: batch.rows,
                    attempts: batch.attempts,
                    last_status: batch.last_status,
                    last_error: batch.last_error.clone(),
                    failed_at: batch.finished_at,
                });
            }
        }
        out.sort_by(|a, b| b.failed_at.cmp(&a.failed_at).then(a.batch.cmp(&b.batch)));
        Ok(out)
    }

    /// Puts every dead letter of a destination back in the queue with fresh tries (audited);
    /// returns how many batches. Letters whose export file is gone stay dead.
    pub fn retry_dead_letters(
        &self,
        destination: &str,
        actor: &str,
    ) -> Result<(usize, CommitTicket), EngineError> {
        let _turn = self.store().write_turn()?;
        let record = self
            .destination_record(destination)?
            .ok_or_else(|| EngineError::NotFound(format!("destination {destination}")))?;
        if record.retired_at.is_some() {
            return Err(EngineError::Conflict(format!(
                "destination {destination} is retired: nothing more is delivered to it"
            )));
        }
        let mut batch = WriteBatch::default();
        let mut requeued = 0;
        for mut delivery in self.deliveries()? {
            if delivery.destination != destination
                || delivery
                    .batches
                    .iter()
                    .all(|b| b.status != BatchStatus::Dead)
                || self.export_content(&delivery.export_id).is_err()
            {
                continue;
            }
            for state in &mut delivery.batches {
                if state.status == BatchStatus::Dead {
                    state.status = BatchStatus::Pending;
                    state.attempts = 0;
                    state.next_attempt_at = None;
                    state.finished_at = None;
                    requeued += 1;
                }
            }
            delivery.note = None;
            delivery.lease = None;
            delivery.settle();
            self.put_delivery_in(&mut batch, &delivery)?;
        }
        let ticket = self.commit_audited(
            batch,
            &[AuditRecord {
                actor: actor.to_string(),
                action: "destination.retry".into(),
                purpose: None,
                person: None,
                decision: "done".into(),
                rules: vec![destination.to_string(), format!("batches={requeued}")],
            }],
        )?;
        Ok((requeued, ticket))
    }
}

fn refused(error: &str) -> PostOutcome {
    PostOutcome::Refused {
        status: None,
        error: error.to_string(),
    }
}

/// Batches of `size` rows over `rows` rows (one empty batch for an empty file: the manifest
/// still goes out, saying there is nobody to add or remove).
fn plan_batches(rows: usize, size: usize) -> Vec<BatchState> {
    let size = size.max(1);
    let count = rows.div_ceil(size).max(1);
    (0..count)
        .map(|n| BatchState {
            batch: n as u32,
            first_row: (n * size) as u64,
            rows: (rows.saturating_sub(n * size)).min(size) as u32,
            status: BatchStatus::Pending,
            attempts: 0,
            last_status: None,
            last_error: None,
            next_attempt_at: None,
            finished_at: None,
        })
        .collect()
}

/// The JSON body of one webhook batch: the rows as objects (CSV rows read back by their
/// header), with the signed manifest they come from.
fn webhook_body(
    content: &ExportContent,
    rows: &[Vec<u8>],
    batch: u32,
    batches: u32,
) -> Result<Vec<u8>, DestinationError> {
    let malformed = || DestinationError::Internal("an export row does not read back".into());
    let objects: Vec<Value> = match (&content.header, content.record.format) {
        (Some(header), ExportFormat::Csv) => {
            let columns: Vec<String> = csv::ReaderBuilder::new()
                .has_headers(false)
                .from_reader(header.as_slice())
                .records()
                .next()
                .and_then(Result::ok)
                .map(|r| r.iter().map(str::to_string).collect())
                .ok_or_else(malformed)?;
            let mut out = Vec::with_capacity(rows.len());
            let mut joined = Vec::new();
            for row in rows {
                joined.extend_from_slice(row);
            }
            for record in csv::ReaderBuilder::new()
                .has_headers(false)
                .from_reader(joined.as_slice())
                .records()
            {
                let record = record.map_err(|_| malformed())?;
                let object: serde_json::Map<String, Value> = columns
                    .iter()
                    .zip(record.iter())
                    .filter(|(_, value)| !value.is_empty())
                    .map(|(column, value)| (column.clone(), Value::String(value.to_string())))
                    .collect();
                out.push(Value::Object(object));
            }
            out
        }
        _ => rows
            .iter()
            .map(|line| serde_json::from_slice(line).map_err(|_| malformed()))
            .collect::<Result<_, _>>()?,
    };
    let body = serde_json::json!({
        "export_id": content.record.id,
        "schedule": content.record.schedule,
        "revision": content.revision,
        "batch": batch,
        "batches": batches,
        "rows": objects,
        "manifest": content.manifest,
    });
    serde_json::to_vec(&body).map_err(|_| malformed())
}
