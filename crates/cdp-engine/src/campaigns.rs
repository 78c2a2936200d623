//! Campaigns: an audience sent to a recipient (or its destination) for a purpose on a channel,
//! with a holdout group kept from contact and optional A/B variants, so that what the campaign
//! did can be measured against people it did not touch.
//!
//! Assignment is deterministic and pseudonymous: a keyed hash of the person's profile id under
//! the campaign's own key (`pseudonym_key("campaign:<id>")`) places them in [0, 1); below the
//! holdout share they are in the holdout, above it in a variant by the variants' weights. The
//! same person lands in the same arm at every send of the campaign, and nobody can tell a
//! person's arm without the master key. People are assigned only once every gate of the export
//! has allowed them (purpose, consent, recipient, suppression): holdout and variants are drawn
//! from the same eligible population, which is what makes them comparable.
//!
//! A send is an ordinary export job with `campaign` set: the same per-member gates, minimum
//! audience size and signed manifest; the holdout is counted under `holdout` among the
//! exclusions and never written; the `arm` field names each row's variant. Who was assigned
//! where at each send is kept sealed beside the job (`campaign-arms/<export>/<chunk>`: profile
//! id and arm), for the measurement of results.

use std::sync::Arc;

use cdp_core::ProfileId;
use cdp_store::{CommitTicket, Keyspace};
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use crate::audit::AuditRecord;
use crate::campaign_schedule::{CampaignSchedule, CampaignScheduleInput};
use crate::exports::{ExportFormat, ExportRecord, ExportRequest};
use crate::read::access::Access;
use crate::records::hex;
use crate::{Engine, EngineError};

pub use crate::contact::CampaignChannel;

/// The arm byte of a send's assignment: the arm (0 the holdout) in the low bits...
pub(crate) const ARM_MASK: u8 = 0x7f;
/// ...and whether the member had ordered before the send.
pub(crate) const ORDERED_BEFORE: u8 = 0x80;

/// A variant and its share of the treated people.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Variant {
    pub name: String,
    pub weight: f64,
}

/// What the campaign costs.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct CampaignCost {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub total: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub per_contact: Option<f64>,
    #[serde(default = "cny")]
    pub currency: String,
}

fn cny() -> String {
    "CNY".into()
}

/// What counts as a conversion of a member: an event within a number of days of the send.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Conversion {
    pub event: String,
    pub within_days: u32,
}

/// A campaign (`campaign/<id>` in `Keyspace::Exports`, sealed with the system key).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CampaignRecord {
    pub id: String,
    pub name: String,
    pub audience: String,
    pub purpose: String,
    pub channel: CampaignChannel,
    pub recipient: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub destination: Option<String>,
    pub fields: Vec<String>,
    pub format: ExportFormat,
    /// The share of eligible people kept from contact (0 to 0.5).
    pub holdout: f64,
    pub variants: Vec<Variant>,
    pub cost: CampaignCost,
    pub conversion: Conversion,
    /// Its own frequency caps and quiet hours, on top of the configured ones.
    #[serde(default)]
    pub contact: crate::contact::CampaignContact,
    /// How conversions are attributed to campaigns that touched the member.
    #[serde(default)]
    pub attribution: Attribution,
    /// When it sends by itself (once or recurring); `None`: only when asked.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schedule: Option<CampaignSchedule>,
    /// Export ids of its sends, oldest first (the latest [`SENDS_KEPT`]).
    pub sends: Vec<String>,
    pub created_by: String,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    /// The roles and purposes of the caller who made it: each send is decided as it would be
    /// for them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub caller: Option<cdp_policy::CallerFacts>,
}

/// What `POST /v1/campaigns` gives.
#[derive(Debug, Clone)]
pub struct CampaignInput {
    pub name: String,
    pub audience: String,
    pub purpose: String,
    pub channel: CampaignChannel,
    pub recipient: String,
    pub destination: Option<String>,
    pub fields: Vec<String>,
    pub format: ExportFormat,
    pub holdout: Option<f64>,
    pub variants: Vec<Variant>,
    pub cost: CampaignCost,
    pub conversion: Conversion,
    pub contact: crate::contact::CampaignContact,
    pub attribution: Option<Attribution>,
    pub schedule: Option<CampaignScheduleInput>,
}

/// What `PATCH /v1/campaigns/{id}` changes.
#[derive(Debug, Clone, Default)]
pub struct CampaignPatch {
    pub name: Option<String>,
    /// `Some(None)` removes the schedule.
    pub schedule: Option<Option<CampaignScheduleInput>>,
    /// Pauses or resumes the schedule.
    pub paused: Option<bool>,
}

/// Sends a campaign's record lists (a daily campaign keeps about three years of them; older
/// sends stay among the exports).
const SENDS_KEPT: usize = 1000;

/// Which campaign a conversion is credited to when several touched the member within the
/// attribution window: the first or the last contact before the conversion.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TouchModel {
    FirstTouch,
    #[default]
    LastTouch,
}

/// Attribution of conversions across campaigns.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Attribution {
    #[serde(default)]
    pub model: TouchModel,
    /// Contacts older than this before the conversion do not count.
    pub window_days: u32,
}

impl Default for Attribution {
    fn default() -> Self {
        Self {
            model: TouchModel::LastTouch,
            window_days: 7,
        }
    }
}

/// Places people in a campaign's arms: `None` is the holdout, `Some(i)` variant `i`.
pub(crate) struct ArmAssigner {
    key: cdp_crypto::PseudonymKey,
    holdout: f64,
    /// The variants' cumulative shares of the treated, ending at 1.
    cumulative: Vec<f64>,
    pub(crate) names: Vec<String>,
}

impl std::fmt::Debug for ArmAssigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ArmAssigner")
            .field("holdout", &self.holdout)
            .field("names", &self.names)
            .finish_non_exhaustive()
    }
}

impl ArmAssigner {
    /// The person's arm.
    pub(crate) fn assign(&self, id: &ProfileId) -> Option<usize> {
        let tag = self.key.pseudonym(id);
        // The first 16 hex digits as a fraction of 2^64: uniform for a keyed hash.
        let draw =
            u64::from_str_radix(&tag[..16], 16).unwrap_or(0) as f64 / 18_446_744_073_709_551_616.0;
        if draw < self.holdout {
            return None;
        }
        let within = (draw - self.holdout) / (1.0 - self.holdout);
        Some(
            self.cumulative
                .iter()
                .position(|edge| within < *edge)
                .unwrap_or(self.cumulative.len().saturating_sub(1)),
        )
    }
}

fn campaign_key(id: &str) -> Vec<u8> {
    [b"campaign/".as_slice(), id.as_bytes()].concat()
}

fn valid_name(what: &str, name: &str) -> Result<String, EngineError> {
    let name = name.trim();
    if name.is_empty() || name.len() > 200 || name.chars().any(char::is_control) {
        return Err(EngineError::InvalidRequest(format!(
            "{what} must be 1 to 200 bytes without control characters"
        )));
    }
    Ok(name.to_string())
}

impl Engine {
    /// Makes a campaign, checked as its sends' export would be now.
    pub fn create_campaign(
        &self,
        input: CampaignInput,
        access: &Access,
    ) -> Result<(CampaignRecord, CommitTicket), EngineError> {
        let name = valid_name("name", &input.name)?;
        let holdout = input.holdout.unwrap_or(0.1);
        if !(0.0..=0.5).contains(&holdout) || holdout.is_nan() {
            return Err(EngineError::InvalidRequest(
                "holdout is a share from 0 to 0.5 (0.1: a tenth of the eligible people are kept from contact)".into(),
            ));
        }
        let mut variants = input.variants;
        if variants.is_empty() {
            variants.push(Variant {
                name: "treatment".into(),
                weight: 1.0,
            });
        }
        if variants.len() > 10 {
            return Err(EngineError::InvalidRequest("at most 10 variants".into()));
        }
        let mut names = std::collections::BTreeSet::new();
        for variant in &mut variants {
            variant.name = valid_name("a variant's name", &variant.name)?;
            if !(variant.weight > 0.0 && variant.weight.is_finite()) {
                return Err(EngineError::InvalidRequest(format!(
                    "variant {}: weight must be above 0",
                    variant.name
                )));
            }
            if variant.name == "holdout" || !names.insert(variant.name.clone()) {
                return Err(EngineError::InvalidRequest(format!(
                    "variant names must differ from each other and from holdout: {}",
                    variant.name
                )));
            }
        }
        for value in [input.cost.total, input.cost.per_contact]
            .into_iter()
            .flatten()
        {
            if !(value >= 0.0 && value.is_finite()) {
                return Err(EngineError::InvalidRequest(
                    "cost figures are amounts of 0 or more".into(),
                ));
            }
        }
        let conversion = Conversion {
            event: valid_name("conversion.event", &input.conversion.event)?,
            within_days: input.conversion.within_days,
        };
        if !(1..=365).contains(&conversion.within_days) {
            return Err(EngineError::InvalidRequest(
                "conversion.within_days is 1 to 365".into(),
            ));
        }
        input.contact.validate()?;
        let attribution = input.attribution.unwrap_or_default();
        if !(1..=365).contains(&attribution.window_days) {
            return Err(EngineError::InvalidRequest(
                "attribution.window_days is 1 to 365".into(),
            ));
        }
        let mut fields = input.fields;
        if !fields.iter().any(|f| f == "pseudonym") {
            return Err(EngineError::InvalidRequest(
                "a campaign's fields include pseudonym: its results and deliveries name people by it".into(),
            ));
        }
        if !fields.iter().any(|f| f == "arm") {
            fields.push("arm".into());
        }
        let schedule = input
            .schedule
            .map(|s| CampaignSchedule::new(s, OffsetDateTime::now_utc()))
            .transpose()?;
        let id = format!("cmp_{}", hex::encode(&cdp_crypto::random_bytes::<8>()?));
        let request = ExportRequest {
            audience: input.audience,
            purpose: input.purpose,
            recipient: input.recipient,
            fields,
            format: input.format,
            destination: input.destination,
            schedule: None,
            campaign: Some(id.clone()),
        };
        let (audience, recipient) = self.check_export_request(&request, access)?;
        let record = CampaignRecord {
            id,
            name,
            audience: audience.id,
            purpose: request.purpose,
            channel: input.channel,
            recipient: recipient.id,
            destination: request.destination,
            fields: request.fields,
            format: request.format,
            holdout,
            variants,
            cost: input.cost,
            conversion,
            contact: input.contact,
            attribution,
            schedule,
            sends: Vec::new(),
            created_by: access.actor.clone(),
            created_at: OffsetDateTime::now_utc(),
            caller: Some(access.caller.clone()),
        };
        let ticket = self.save_campaign(&record, &access.actor, "campaign.create")?;
        self.facts.watch(&record.conversion.event);
        Ok((record, ticket))
    }

    fn save_campaign(
        &self,
        record: &CampaignRecord,
        actor: &str,
        action: &str,
    ) -> Result<CommitTicket, EngineError> {
        self.put_system_audited(
            Keyspace::Exports,
            campaign_key(&record.id),
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

    /// A campaign.
    pub fn campaign(&self, id: &str) -> Result<CampaignRecord, EngineError> {
        if !(id.len() == 20 && id.starts_with("cmp_")) {
            return Err(EngineError::InvalidRequest(
                "a campaign id is cmp_ followed by 16 hex digits".into(),
            ));
        }
        self.get_system::<CampaignRecord>(Keyspace::Exports, &campaign_key(id))?
            .ok_or_else(|| EngineError::NotFound(format!("campaign {id}")))
    }

    /// Every campaign, newest first.
    pub fn campaigns(&self) -> Result<Vec<CampaignRecord>, EngineError> {
        let mut out: Vec<CampaignRecord> = Vec::new();
        for item in self.store().scan_prefix(Keyspace::Exports, b"campaign/") {
            let (key, sealed) = item?;
            out.push(self.open_system(Keyspace::Exports, &key, &sealed)?);
        }
        out.sort_by_key(|c| std::cmp::Reverse(c.created_at));
        Ok(out)
    }

    /// Sends the campaign now: an export job of its audience with the holdout kept out and
    /// each row's arm named (audited as the export and as `campaign.send`).
    pub fn send_campaign(self: &Arc<Self>, id: &str) -> Result<ExportRecord, EngineError> {
        let _turn = self.store().write_turn()?;
        let record = self.campaign(id)?;
        self.send_in_turn(record, "campaign.send")
    }

    /// Starts a send of `record` and lists it (the caller holds the write turn).
    fn send_in_turn(
        self: &Arc<Self>,
        mut record: CampaignRecord,
        action: &str,
    ) -> Result<ExportRecord, EngineError> {
        let access = Access {
            actor: record.created_by.clone(),
            caller: record.caller.clone().unwrap_or_default(),
            purpose: Some(record.purpose.clone()),
        };
        let job = self.start_export(
            ExportRequest {
                audience: record.audience.clone(),
                purpose: record.purpose.clone(),
                recipient: record.recipient.clone(),
                fields: record.fields.clone(),
                format: record.format,
                destination: record.destination.clone(),
                schedule: None,
                campaign: Some(record.id.clone()),
            },
            &access,
        )?;
        record.sends.push(job.id.clone());
        if record.sends.len() > SENDS_KEPT {
            let extra = record.sends.len() - SENDS_KEPT;
            record.sends.drain(..extra);
        }
        self.save_campaign(&record, &access.actor, action)?
            .wait_durable()?;
        Ok(job)
    }

    /// Renames a campaign, sets, replaces or removes its schedule, or pauses and resumes it
    /// (audited as `campaign.update`).
    pub fn update_campaign(
        &self,
        id: &str,
        patch: CampaignPatch,
        actor: &str,
    ) -> Result<(CampaignRecord, CommitTicket), EngineError> {
        let _turn = self.store().write_turn()?;
        let mut record = self.campaign(id)?;
        if let Some(name) = patch.name {
            record.name = valid_name("name", &name)?;
        }
        let now = OffsetDateTime::now_utc();
        if let Some(schedule) = patch.schedule {
            record.schedule = schedule
                .map(|s| CampaignSchedule::new(s, now))
                .transpose()?;
        }
        if let Some(paused) = patch.paused {
            let schedule = record.schedule.as_mut().ok_or_else(|| {
                EngineError::Conflict(format!("campaign {id} has no schedule to pause or resume"))
            })?;
            // Resumed: the next time from now on, not the times missed while paused.
            if schedule.paused && !paused && schedule.cron.is_some() {
                schedule.next_send_at = schedule.next_after(now)?;
            }
            schedule.paused = paused;
        }
        let ticket = self.save_campaign(&record, actor, "campaign.update")?;
        Ok((record, ticket))
    }

    /// Starts the sends of every campaign whose scheduled time has come (once across the
    /// nodes: the next time is advanced in the write turn that starts the send), and watches
    /// every campaign's conversion event (campaigns made on other nodes of a shared database
    /// included); returns how many sends started. A send that cannot start (audience
    /// deleted, recipient retired...) is logged and audited as refused, and the schedule goes
    /// on to its next time.
    pub fn run_due_campaigns(self: &Arc<Self>) -> Result<usize, EngineError> {
        let now = OffsetDateTime::now_utc();
        let mut due = Vec::new();
        for campaign in self.campaigns()? {
            self.facts.watch(&campaign.conversion.event);
            if campaign.schedule.as_ref().is_some_and(|s| s.due(now)) {
                due.push(campaign.id);
            }
        }
        let mut started = 0;
        for id in due {
            let _turn = self.store().write_turn()?;
            let Ok(mut record) = self.campaign(&id) else {
                continue;
            };
            let now = OffsetDateTime::now_utc();
            let Some(schedule) = record.schedule.as_mut() else {
                continue;
            };
            // Another node sent it meanwhile, or it was paused.
            if !schedule.due(now) {
                continue;
            }
            schedule.next_send_at = schedule.next_after(now)?;
            match self.send_in_turn(record.clone(), "campaign.scheduled_send") {
                Ok(job) => {
                    started += 1;
                    tracing::info!(campaign = %id, export = %job.id, "scheduled campaign send started");
                }
                Err(error) => {
                    tracing::warn!(campaign = %id, %error, "scheduled campaign send could not start");
                    // The schedule moves on to its next time with the refusal, at once.
                    self.put_system_audited(
                        Keyspace::Exports,
                        campaign_key(&id),
                        &record,
                        AuditRecord {
                            actor: format!("campaign:{id}"),
                            action: "campaign.scheduled_send".into(),
                            purpose: Some(record.purpose.clone()),
                            person: None,
                            decision: "deny".into(),
                            rules: vec![id.clone(), error.to_string()],
                        },
                    )?
                    .wait_durable()?;
                }
            }
        }
        Ok(started)
    }

    /// The assigner of campaign `id`'s arms.
    pub(crate) fn arm_assigner(&self, id: &str) -> Result<ArmAssigner, EngineError> {
        let record = self.campaign(id)?;
        let total: f64 = record.variants.iter().map(|v| v.weight).sum();
        let mut edge = 0.0;
        let cumulative = record
            .variants
            .iter()
            .map(|v| {
                edge += v.weight / total;
                edge
            })
            .collect();
        Ok(ArmAssigner {
            key: self.vault().pseudonym_key(&format!("campaign:{id}"))?,
            holdout: record.holdout,
            cumulative,
            names: record.variants.iter().map(|v| v.name.clone()).collect(),
        })
    }
}

/// One send of a campaign as its record lists it.
#[derive(Debug, Clone, Serialize)]
pub struct CampaignSend {
    pub export_id: String,
    pub status: crate::ExportStatus,
    #[serde(with = "time::serde::rfc3339")]
    pub started_at: OffsetDateTime,
    /// People the send contacted (in the file).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub contacted: Option<u64>,
    /// Eligible people kept from contact.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub holdout: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// A campaign with its sends, newest first.
#[derive(Debug, Clone, Serialize)]
pub struct CampaignView {
    #[serde(flatten)]
    pub campaign: CampaignRecord,
    pub send_history: Vec<CampaignSend>,
}

impl Engine {
    /// A campaign and what each of its sends came to.
    pub fn campaign_view(&self, id: &str) -> Result<CampaignView, EngineError> {
        let campaign = self.campaign(id)?;
        let mut send_history = Vec::new();
        for export in campaign.sends.iter().rev() {
            let Some(job) = self.export(export)? else {
                continue;
            };
            let counts = job.counts_now();
            send_history.push(CampaignSend {
                export_id: job.id.clone(),
                status: job.status,
                started_at: job.created_at,
                contacted: counts.as_ref().map(|c| c.included),
                holdout: counts
                    .as_ref()
                    .map(|c| c.excluded.get("holdout").copied().unwrap_or(0)),
                reason: job.reason.clone(),
            });
        }
        Ok(CampaignView {
            campaign,
            send_history,
        })
    }
}
