//! Scheduled exports: an export of an audience to a recipient repeated on a cron-like
//! schedule, each run sending only what changed since the schedule's previous run: the people
//! who joined (`op = add`, with their fields) and the pseudonyms of those who left
//! (`op = remove`): people who no longer match, and people the per-member decision now leaves
//! out (a consent withdrawn, a suppression, an erasure). Every run is an ordinary export job
//! (same gates, signed manifest, member list), so its file, manifest and delivery are read as
//! any export's; the schedule lists its runs.
//!
//! A node's job sweeper starts the due runs (`run_due_schedules`): the schedule's next run
//! time is advanced within a write turn before the run starts, so on several nodes a run
//! starts once. A run that was due while no node was up starts once when one comes back
//! (runs missed meanwhile are not repeated: the next delta covers them).

use std::sync::Arc;

use cdp_destinations::CronSchedule;
use cdp_store::{CommitTicket, Keyspace, WriteBatch};
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use super::{ExportFormat, ExportRecord, ExportRequest, ExportStatus};
use crate::audit::AuditRecord;
use crate::read::access::Access;
use crate::records::hex;
use crate::{Engine, EngineError};

/// Runs listed with a schedule (older runs stay among the exports).
const RUNS_KEPT: usize = 200;

/// A schedule as stored (`schedule/<id>`, sealed with the system key).
#[derive(Debug, Clone, Serialize, Deserialize)]
struct ScheduleRecord {
    id: String,
    name: String,
    audience: String,
    purpose: String,
    recipient: String,
    fields: Vec<String>,
    format: ExportFormat,
    #[serde(default)]
    destination: Option<String>,
    cron: String,
    utc_offset: String,
    paused: bool,
    #[serde(with = "time::serde::rfc3339")]
    next_run_at: OffsetDateTime,
    /// Export ids of its runs, oldest first.
    runs: Vec<String>,
    created_by: String,
    #[serde(with = "time::serde::rfc3339")]
    created_at: OffsetDateTime,
    /// The roles and purposes of the token that made it: each run is decided as it would be
    /// for that caller.
    caller: cdp_policy::CallerFacts,
}

/// One run as a schedule's history lists it.
#[derive(Debug, Clone, Serialize)]
pub struct RunSummary {
    pub export_id: String,
    pub status: ExportStatus,
    #[serde(with = "time::serde::rfc3339")]
    pub started_at: OffsetDateTime,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub included: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub added: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub removals: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// The delivery to the destination: pending, delivering, delivered, failed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub delivery: Option<crate::DeliveryState>,
}

/// A schedule as the API shows it.
#[derive(Debug, Clone, Serialize)]
pub struct ScheduleView {
    pub id: String,
    pub name: String,
    pub audience: String,
    pub purpose: String,
    pub recipient: String,
    pub fields: Vec<String>,
    pub format: ExportFormat,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub destination: Option<String>,
    pub cron: String,
    pub utc_offset: String,
    pub paused: bool,
    #[serde(with = "time::serde::rfc3339")]
    pub next_run_at: OffsetDateTime,
    pub created_by: String,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    /// Its runs, newest first.
    pub history: Vec<RunSummary>,
}

/// What `POST /v1/schedules` gives.
#[derive(Debug, Clone)]
pub struct ScheduleInput {
    pub name: String,
    pub audience: String,
    pub purpose: String,
    pub recipient: String,
    pub fields: Vec<String>,
    pub format: ExportFormat,
    pub destination: Option<String>,
    pub cron: String,
    pub utc_offset: Option<String>,
}

/// What `PATCH /v1/schedules/{id}` changes.
#[derive(Debug, Clone, Default)]
pub struct SchedulePatch {
    pub name: Option<String>,
    pub cron: Option<String>,
    pub utc_offset: Option<String>,
    pub paused: Option<bool>,
}

fn schedule_key(id: &str) -> Vec<u8> {
    [b"schedule/".as_slice(), id.as_bytes()].concat()
}

fn parse_cron(cron: &str, offset: &str) -> Result<CronSchedule, EngineError> {
    CronSchedule::parse(cron, offset).map_err(|e| EngineError::InvalidRequest(e.to_string()))
}

fn valid_name(name: &str) -> Result<String, EngineError> {
    let name = name.trim();
    if name.is_empty() || name.len() > 200 || name.chars().any(char::is_control) {
        return Err(EngineError::InvalidRequest(
            "name must be 1 to 200 bytes without control characters".into(),
        ));
    }
    Ok(name.to_string())
}

impl ScheduleRecord {
    fn request(&self) -> ExportRequest {
        ExportRequest {
            audience: self.audience.clone(),
            purpose: self.purpose.clone(),
            recipient: self.recipient.clone(),
            fields: self.fields.clone(),
            format: self.format,
            destination: self.destination.clone(),
            schedule: Some(self.id.clone()),
            campaign: None,
        }
    }

    fn access(&self) -> Access {
        Access {
            actor: self.created_by.clone(),
            caller: self.caller.clone(),
            purpose: Some(self.purpose.clone()),
        }
    }
}

impl Engine {
    /// Makes a schedule (checked as an export would be now); its first run is at the next
    /// time the expression gives.
    pub fn create_schedule(
        &self,
        input: ScheduleInput,
        access: &Access,
    ) -> Result<(ScheduleView, CommitTicket), EngineError> {
        let name = valid_name(&input.name)?;
        let offset = input.utc_offset.unwrap_or_else(|| "+00:00".into());
        let cron = parse_cron(&input.cron, &offset)?;
        // A delta names the people to remove by their pseudonym for this recipient.
        if !input.fields.iter().any(|f| f == "pseudonym") {
            return Err(EngineError::InvalidRequest(
                "a scheduled export needs the field pseudonym: its removals name people by it"
                    .into(),
            ));
        }
        let request = ExportRequest {
            audience: input.audience,
            purpose: input.purpose,
            recipient: input.recipient,
            fields: input.fields,
            format: input.format,
            destination: input.destination,
            schedule: None,
            campaign: None,
        };
        let (audience, recipient) = self.check_export_request(&request, access)?;
        let now = OffsetDateTime::now_utc();
        let record = ScheduleRecord {
            id: format!("sch_{}", hex::encode(&cdp_crypto::random_bytes::<8>()?)),
            name,
            audience: audience.id,
            purpose: request.purpose,
            recipient: recipient.id,
            fields: request.fields,
            format: request.format,
            destination: request.destination,
            cron: cron.text().to_string(),
            utc_offset: cron.offset_text(),
            paused: false,
            next_run_at: cron.next_after(now).ok_or_else(|| {
                EngineError::InvalidRequest("the schedule never runs again".into())
            })?,
            runs: Vec::new(),
            created_by: access.actor.clone(),
            created_at: now,
            caller: access.caller.clone(),
        };
        let ticket = self.save_schedule(&record, &access.actor, "schedule.create")?;
        Ok((self.schedule_view(record)?, ticket))
    }

    fn save_schedule(
        &self,
        record: &ScheduleRecord,
        actor: &str,
        action: &str,
    ) -> Result<CommitTicket, EngineError> {
        if action.is_empty() {
            let key = schedule_key(&record.id);
            let mut batch = WriteBatch::default();
            batch.put(
                Keyspace::Exports,
                key.clone(),
                self.seal_system(Keyspace::Exports, &key, record)?,
            );
            return Ok(self.store().commit(batch)?);
        }
        self.put_system_audited(
            Keyspace::Exports,
            schedule_key(&record.id),
            record,
            AuditRecord {
                actor: actor.to_string(),
                action: action.into(),
                purpose: Some(record.purpose.clone()),
                person: None,
                decision: "done".into(),
                rules: vec![
                    record.id.clone(),
                    record.audience.clone(),
                    record.recipient.clone(),
                ],
            },
        )
    }

    fn schedule_record(&self, id: &str) -> Result<ScheduleRecord, EngineError> {
        if !(id.len() == 20 && id.starts_with("sch_")) {
            return Err(EngineError::InvalidRequest(
                "a schedule id is sch_ followed by 16 hex digits".into(),
            ));
        }
        self.get_system(Keyspace::Exports, &schedule_key(id))?
            .ok_or_else(|| EngineError::NotFound(format!("schedule {id}")))
    }

    fn schedule_view(&self, record: ScheduleRecord) -> Result<ScheduleView, EngineError> {
        let mut history = Vec::new();
        for id in record.runs.iter().rev() {
            let Some(run) = self.export(id)? else {
                continue;
            };
            let counts = run.counts_now();
            history.push(RunSummary {
                export_id: run.id.clone(),
                status: run.status,
                started_at: run.created_at,
                included: counts.as_ref().map(|c| c.included),
                added: counts.as_ref().and_then(|c| c.added),
                removals: counts.as_ref().map(|c| c.removals),
                reason: run.reason.clone(),
                delivery: match &run.destination {
                    Some(_) => self.delivery(&run.id)?.map(|d| d.state),
                    None => None,
                },
            });
        }
        Ok(ScheduleView {
            id: record.id,
            name: record.name,
            audience: record.audience,
            purpose: record.purpose,
            recipient: record.recipient,
            fields: record.fields,
            format: record.format,
            destination: record.destination,
            cron: record.cron,
            utc_offset: record.utc_offset,
            paused: record.paused,
            next_run_at: record.next_run_at,
            created_by: record.created_by,
            created_at: record.created_at,
            history,
        })
    }

    /// A schedule with its history.
    pub fn schedule(&self, id: &str) -> Result<ScheduleView, EngineError> {
        let record = self.schedule_record(id)?;
        self.schedule_view(record)
    }

    /// Every schedule, oldest first, each with its history.
    pub fn schedules(&self) -> Result<Vec<ScheduleView>, EngineError> {
        let mut records: Vec<ScheduleRecord> = Vec::new();
        for item in self.store().scan_prefix(Keyspace::Exports, b"schedule/") {
            let (key, sealed) = item?;
            records.push(self.open_system(Keyspace::Exports, &key, &sealed)?);
        }
        records.sort_by_key(|r| r.created_at);
        records.into_iter().map(|r| self.schedule_view(r)).collect()
    }

    /// Changes a schedule's name, expression or offset, or pauses and resumes it (audited).
    pub fn update_schedule(
        &self,
        id: &str,
        patch: SchedulePatch,
        actor: &str,
    ) -> Result<(ScheduleView, CommitTicket), EngineError> {
        let _turn = self.store().write_turn()?;
        let mut record = self.schedule_record(id)?;
        if let Some(name) = patch.name {
            record.name = valid_name(&name)?;
        }
        let cron_text = patch.cron.unwrap_or_else(|| record.cron.clone());
        let offset = patch
            .utc_offset
            .unwrap_or_else(|| record.utc_offset.clone());
        let cron = parse_cron(&cron_text, &offset)?;
        record.cron = cron.text().to_string();
        record.utc_offset = cron.offset_text();
        if let Some(paused) = patch.paused {
            record.paused = paused;
        }
        record.next_run_at = cron
            .next_after(OffsetDateTime::now_utc())
            .ok_or_else(|| EngineError::InvalidRequest("the schedule never runs again".into()))?;
        let ticket = self.save_schedule(&record, actor, "schedule.update")?;
        Ok((self.schedule_view(record)?, ticket))
    }

    /// Deletes a schedule (audited): no more runs. Its runs stay among the exports.
    pub fn delete_schedule(&self, id: &str, actor: &str) -> Result<CommitTicket, EngineError> {
        let _turn = self.store().write_turn()?;
        let record = self.schedule_record(id)?;
        let mut batch = WriteBatch::default();
        batch.delete(Keyspace::Exports, schedule_key(id));
        self.commit_audited(
            batch,
            &[AuditRecord {
                actor: actor.to_string(),
                action: "schedule.delete".into(),
                purpose: Some(record.purpose),
                person: None,
                decision: "done".into(),
                rules: vec![id.to_string()],
            }],
        )
    }

    /// Starts a run of a schedule now (its next scheduled run stays as it was).
    pub fn run_schedule_now(self: &Arc<Self>, id: &str) -> Result<ExportRecord, EngineError> {
        let _turn = self.store().write_turn()?;
        let record = self.schedule_record(id)?;
        self.start_run(record)
    }

    /// Starts the run of `record` and lists it (the caller holds the write turn).
    fn start_run(
        self: &Arc<Self>,
        mut record: ScheduleRecord,
    ) -> Result<ExportRecord, EngineError> {
        let run = self.start_export(record.request(), &record.access())?;
        record.runs.push(run.id.clone());
        if record.runs.len() > RUNS_KEPT {
            let extra = record.runs.len() - RUNS_KEPT;
            record.runs.drain(..extra);
        }
        self.save_schedule(&record, "", "")?.wait_durable()?;
        Ok(run)
    }

    /// Starts every schedule whose time has come (once across the nodes); returns how many.
    /// A run that cannot start (its audience deleted, its recipient retired...) is logged,
    /// audited as refused, and the schedule waits for its next time.
    pub fn run_due_schedules(self: &Arc<Self>) -> Result<usize, EngineError> {
        let now = OffsetDateTime::now_utc();
        let mut due = Vec::new();
        for item in self.store().scan_prefix(Keyspace::Exports, b"schedule/") {
            let (key, sealed) = item?;
            let record: ScheduleRecord = self.open_system(Keyspace::Exports, &key, &sealed)?;
            if !record.paused && record.next_run_at <= now {
                due.push(record.id);
            }
        }
        let mut started = 0;
        for id in due {
            let _turn = self.store().write_turn()?;
            let Ok(mut record) = self.schedule_record(&id) else {
                continue;
            };
            let now = OffsetDateTime::now_utc();
            // Another node started it meanwhile.
            if record.paused || record.next_run_at > now {
                continue;
            }
            let cron = parse_cron(&record.cron, &record.utc_offset)?;
            record.next_run_at = cron
                .next_after(now)
                .unwrap_or(now + time::Duration::days(365 * 100));
            self.save_schedule(&record, "", "")?.wait_durable()?;
            match self.start_run(record) {
                Ok(run) => {
                    started += 1;
                    tracing::info!(schedule = %id, export = %run.id, "scheduled export started");
                }
                Err(error) => {
                    tracing::warn!(schedule = %id, %error, "scheduled export could not start");
                    self.audit(&[AuditRecord {
                        actor: format!("schedule:{id}"),
                        action: "schedule.run".into(),
                        purpose: None,
                        person: None,
                        decision: "deny".into(),
                        rules: vec![id.clone(), error.to_string()],
                    }])?
                    .wait_durable()?;
                }
            }
        }
        Ok(started)
    }
}
