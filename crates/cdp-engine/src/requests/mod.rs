//! Data-subject requests: access (a portable bundle), erasure by crypto-shredding,
//! rectification, restriction, objection and tags (PIPL Art 44-47, 24; GDPR Art 15-21).
//!
//! A request is recorded (`received`, with a due date from the strictest jurisdiction of the
//! person), carried out at once (`in_progress` -> `done`, or `refused` with a reason), and every
//! step is audited. The record holds no personal data: the person appears as the audit
//! pseudonym, and an access bundle is assembled when it is downloaded, never stored.
//!
//! Rooms: this file (the record and its steps), `edits` (rectification, restriction,
//! objection, tags), `bundle` (access), `erase` (crypto-shredding), `retention` (the sweeper).

mod bundle;
mod edits;
mod erase;
pub mod retention;

use std::collections::BTreeMap;

use cdp_core::ProfileId;
use cdp_store::{CommitTicket, Keyspace, WriteBatch};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use time::OffsetDateTime;

use crate::audit::AuditRecord;
use crate::consent::record::ConsentSubject;
use crate::records::hex;
use crate::{Engine, EngineError};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RequestType {
    Access,
    Erasure,
    Rectification,
    Restriction,
    Objection,
    Tags,
}

impl RequestType {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Access => "access",
            Self::Erasure => "erasure",
            Self::Rectification => "rectification",
            Self::Restriction => "restriction",
            Self::Objection => "objection",
            Self::Tags => "tags",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RequestStatus {
    Received,
    InProgress,
    Done,
    Refused,
}

/// What the requester asks beyond the type.
#[derive(Debug, Clone, Default)]
pub struct RequestOptions {
    /// Rectification: trait name -> corrected value.
    pub traits: BTreeMap<String, Value>,
    /// Restriction: lift an earlier restriction instead.
    pub lift: bool,
    /// Objection: `marketing` and/or `personalization` (default both).
    pub scope: Vec<String>,
    /// Tags: tags to delete (none: just list).
    pub delete_tags: Vec<String>,
}

/// A request (Keyspace::Requests, sealed with the system key). No personal data.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RequestRecord {
    pub id: String,
    #[serde(rename = "type")]
    pub kind: RequestType,
    pub status: RequestStatus,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// The person, as the audit log names them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub person: Option<String>,
    /// The profile, until an erasure removes it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub profile_id: Option<ProfileId>,
    /// How the requester's identity was verified (free text from the operator).
    pub verification: Value,
    #[serde(with = "time::serde::rfc3339")]
    pub received_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    pub due_at: OffsetDateTime,
    #[serde(
        default,
        with = "time::serde::rfc3339::option",
        skip_serializing_if = "Option::is_none"
    )]
    pub completed_at: Option<OffsetDateTime>,
    /// What was done (counts, tags, the signed erasure receipt).
    #[serde(default, skip_serializing_if = "Value::is_null")]
    pub result: Value,
    pub created_by: String,
}

impl RequestRecord {
    /// The record without how the requester's identity was verified: that is the operator's
    /// free text and can hold personal data (an ID number, a call-back number), so only those
    /// who handle requests see it; the auditor sees that it was recorded.
    pub fn without_verification(mut self) -> Self {
        if !self.verification.is_null() {
            self.verification = serde_json::json!({ "withheld": "shown to those who handle requests (admin, dpo)" });
        }
        self
    }
}

/// Who the request is about: the same as a consent's subject.
pub type RequestSubject = ConsentSubject;

const DEFAULT_DUE_DAYS: i64 = 30;

impl Engine {
    fn save_request(
        &self,
        record: &RequestRecord,
        batch: &mut WriteBatch,
    ) -> Result<(), EngineError> {
        let sealed = self.seal_system(Keyspace::Requests, record.id.as_bytes(), record)?;
        batch.put(Keyspace::Requests, record.id.as_bytes().to_vec(), sealed);
        Ok(())
    }

    fn request_step(
        &self,
        record: &RequestRecord,
        batch: WriteBatch,
        actor: &str,
        step: &str,
    ) -> Result<CommitTicket, EngineError> {
        let mut batch = batch;
        self.save_request(record, &mut batch)?;
        self.commit_audited(
            batch,
            &[AuditRecord {
                actor: actor.to_string(),
                action: format!("request.{}.{step}", record.kind.as_str()),
                purpose: None,
                person: record.profile_id,
                decision: "done".into(),
                rules: vec![record.id.clone()],
            }],
        )
    }

    /// A request by id.
    pub fn request(&self, id: &str) -> Result<Option<RequestRecord>, EngineError> {
        if !(id.len() == 20 && id.starts_with("req_")) {
            return Err(EngineError::InvalidRequest(
                "a request id is req_ followed by 16 hex digits".into(),
            ));
        }
        self.get_system(Keyspace::Requests, id.as_bytes())
    }

    /// All requests, oldest first.
    pub fn requests(&self) -> Result<Vec<RequestRecord>, EngineError> {
        let mut out: Vec<RequestRecord> = Vec::new();
        for item in self.store().scan_prefix(Keyspace::Requests, &[]) {
            let (key, sealed) = item?;
            out.push(self.open_system(Keyspace::Requests, &key, &sealed)?);
        }
        out.sort_by_key(|r| r.received_at);
        Ok(out)
    }

    /// `POST /v1/requests`: records the request, carries it out, answers its final state.
    pub fn submit_request(
        &self,
        kind: RequestType,
        subject: RequestSubject,
        verification: Value,
        options: RequestOptions,
        actor: &str,
    ) -> Result<RequestRecord, EngineError> {
        if verification.is_null() || serde_json::to_vec(&verification).map_or(0, |v| v.len()) > 4096
        {
            return Err(EngineError::InvalidRequest(
                "verification (how the requester's identity was checked) is required, at most 4 KB of JSON".into(),
            ));
        }
        let profile = match &subject {
            RequestSubject::Profile(id) => {
                let resolved = self.resolve_id(*id)?;
                self.load_profile(resolved)?.map(|_| resolved)
            }
            RequestSubject::Identifier {
                kind,
                value,
                region,
            } => self.profile_of_identifier(kind, value, region.as_deref())?,
        };
        let now = OffsetDateTime::now_utc();
        let due_days = self.due_days(profile)?;
        let mut record = RequestRecord {
            id: format!("req_{}", hex::encode(&cdp_crypto::random_bytes::<8>()?)),
            kind,
            status: RequestStatus::Received,
            reason: None,
            person: profile.map(|p| self.audit_pseudonym(&p)).transpose()?,
            profile_id: profile,
            verification,
            received_at: now,
            due_at: now + time::Duration::days(due_days),
            completed_at: None,
            result: Value::Null,
            created_by: actor.to_string(),
        };
        self.request_step(&record, WriteBatch::default(), actor, "received")?
            .wait_durable()?;
        let Some(profile) = profile else {
            record.status = RequestStatus::Refused;
            record.reason = Some("no person is known by that identifier or id".into());
            record.completed_at = Some(OffsetDateTime::now_utc());
            self.request_step(&record, WriteBatch::default(), actor, "refused")?
                .wait_durable()?;
            return Ok(record);
        };
        record.status = RequestStatus::InProgress;
        self.request_step(&record, WriteBatch::default(), actor, "in_progress")?
            .wait_durable()?;
        let outcome = match kind {
            RequestType::Access => Ok(serde_json::json!({
                "bundle": format!("/v1/requests/{}/bundle", record.id)
            })),
            RequestType::Erasure => self.erase(profile, &record.id, actor),
            RequestType::Rectification => self.rectify(profile, &options.traits, &record.id),
            RequestType::Restriction => self.set_restricted(profile, !options.lift),
            RequestType::Objection => self.object(profile, &options.scope, actor, &record.id),
            RequestType::Tags => self.edit_tags(profile, &options.delete_tags),
        };
        match outcome {
            Ok(result) => {
                record.status = RequestStatus::Done;
                record.result = result;
                if kind == RequestType::Erasure {
                    record.profile_id = None;
                }
            }
            Err(EngineError::InvalidRequest(reason)) => {
                record.status = RequestStatus::Refused;
                record.reason = Some(reason);
            }
            Err(other) => return Err(other),
        }
        record.completed_at = Some(OffsetDateTime::now_utc());
        let step = if record.status == RequestStatus::Done {
            "done"
        } else {
            "refused"
        };
        self.request_step(&record, WriteBatch::default(), actor, step)?
            .wait_durable()?;
        Ok(record)
    }

    /// Days to answer: the shortest of the person's jurisdictions (the default for nobody).
    fn due_days(&self, profile: Option<ProfileId>) -> Result<i64, EngineError> {
        let facts = match profile {
            Some(id) => self.subject_facts_of(id)?,
            None => None,
        };
        Ok(facts
            .and_then(|facts| {
                self.policies()
                    .jurisdictions_for(&facts)
                    .0
                    .iter()
                    .map(|j| i64::from(j.requests.response_days))
                    .min()
            })
            .unwrap_or(DEFAULT_DUE_DAYS))
    }
}
