//! Data-subject requests: access (a portable bundle), erasure by crypto-shredding,
//! rectification, restriction, objection and tags (PIPL Art 44-47, 24; GDPR Art 15-21).
//!
//! A request is recorded (`received`, with a due date from the strictest jurisdiction of the
//! person), carried out at once (`in_progress` -> `done`, or `refused` with a reason), and every
//! step is audited. The record holds no personal data: the person appears as the audit
//! pseudonym, and an access bundle is assembled when it is downloaded, never stored.

use std::collections::{BTreeMap, BTreeSet};

use cdp_core::{Channel, ProfileId};
use cdp_policy::ConsentStatus;
use cdp_store::{CommitTicket, Keyspace, WriteBatch};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use time::OffsetDateTime;

use crate::audit::AuditRecord;
use crate::consent::record::{ConsentInput, ConsentSubject};
use crate::write::graph_store::StoreGraph;
pub mod retention;

use crate::derived::DerivedAttributes;
use crate::records::{StoredEvent, TraitValue, hex};
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
        let due_days = match profile {
            Some(id) => match self.subject_facts_of(id)? {
                Some(facts) => self
                    .policies()
                    .jurisdictions_for(&facts)
                    .0
                    .iter()
                    .map(|j| i64::from(j.requests.response_days))
                    .min()
                    .unwrap_or(DEFAULT_DUE_DAYS),
                None => DEFAULT_DUE_DAYS,
            },
            None => DEFAULT_DUE_DAYS,
        };
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

    /// Loads a profile with its key under the identity lock, lets `change` edit it, and
    /// writes it back (the write-through cache is reset: these edits bypass ingestion).
    fn edit_profile(
        &self,
        id: ProfileId,
        change: impl FnOnce(&mut crate::records::ProfileRecord) -> Result<Value, EngineError>,
    ) -> Result<Value, EngineError> {
        let mut cache = self.write_lock();
        let view = cdp_store::Overlay::new(self.store().as_ref());
        let mut graph = StoreGraph::new(self, &view);
        let (mut record, key) = graph
            .profile(id)?
            .ok_or_else(|| EngineError::NotFound(format!("profile {id}")))?;
        drop(graph);
        let result = change(&mut record)?;
        let sealed = self.seal_person(&key, Keyspace::Profiles, id.as_bytes(), &record)?;
        let mut batch = WriteBatch::default();
        batch.put(Keyspace::Profiles, id.as_bytes().to_vec(), sealed);
        let ticket = self.store().commit(batch)?;
        *cache = crate::write::cache::RecordCache::default();
        drop(cache);
        ticket.wait_durable()?;
        Ok(result)
    }

    fn rectify(
        &self,
        id: ProfileId,
        traits: &BTreeMap<String, Value>,
        request: &str,
    ) -> Result<Value, EngineError> {
        if traits.is_empty() || traits.len() > 50 {
            return Err(EngineError::InvalidRequest(
                "rectification needs 1 to 50 traits to correct".into(),
            ));
        }
        let now = OffsetDateTime::now_utc();
        self.edit_profile(id, |record| {
            for (name, value) in traits {
                let first_seen = record.traits.get(name).map_or(now, |t| t.first_seen);
                record.traits.insert(
                    name.clone(),
                    TraitValue {
                        value: value.clone(),
                        source_id: format!("dsr:{request}"),
                        channel: Channel::CustomerService,
                        at: now,
                        first_seen,
                    },
                );
            }
            Ok(serde_json::json!({ "corrected": traits.keys().collect::<Vec<_>>() }))
        })
    }

    fn set_restricted(&self, id: ProfileId, restricted: bool) -> Result<Value, EngineError> {
        self.edit_profile(id, |record| {
            record.restricted = restricted;
            Ok(serde_json::json!({ "restricted": restricted }))
        })
    }

    fn object(
        &self,
        id: ProfileId,
        scope: &[String],
        actor: &str,
        request: &str,
    ) -> Result<Value, EngineError> {
        let scope: Vec<String> = if scope.is_empty() {
            vec!["marketing".into(), "personalization".into()]
        } else {
            scope.to_vec()
        };
        for purpose in &scope {
            if purpose != "marketing" && purpose != "personalization" {
                return Err(EngineError::InvalidRequest(format!(
                    "an objection covers marketing and/or personalization, not {purpose:?}"
                )));
            }
        }
        for purpose in &scope {
            let (_, ticket) = self.record_consent(
                ConsentInput {
                    subject: ConsentSubject::Profile(id),
                    purpose: purpose.clone(),
                    status: ConsentStatus::Denied,
                    legal_basis: None,
                    notice_version: None,
                    source: format!("data-subject request {request}"),
                    channel: None,
                    recipient: None,
                    separate: false,
                    guardian: false,
                    evidence: serde_json::json!({ "request": request }),
                    at: None,
                },
                actor,
            )?;
            ticket.wait_durable()?;
        }
        Ok(serde_json::json!({ "objected_to": scope }))
    }

    fn edit_tags(&self, id: ProfileId, delete: &[String]) -> Result<Value, EngineError> {
        self.edit_profile(id, |record| {
            for tag in delete {
                record.tags_removed.insert(tag.clone());
            }
            let tags: Vec<String> = DerivedAttributes::of(record, OffsetDateTime::now_utc()).tags;
            Ok(serde_json::json!({ "tags": tags, "deleted": delete }))
        })
    }

    /// The access bundle (GDPR Art 15, 20; PIPL Art 45): everything held about the person.
    pub fn access_bundle(&self, request_id: &str, actor: &str) -> Result<Value, EngineError> {
        let request = self
            .request(request_id)?
            .ok_or_else(|| EngineError::NotFound(format!("request {request_id}")))?;
        if request.kind != RequestType::Access || request.status != RequestStatus::Done {
            return Err(EngineError::Conflict(format!(
                "request {request_id} is not a completed access request"
            )));
        }
        let id = request
            .profile_id
            .ok_or_else(|| EngineError::NotFound("the person of this request".into()))?;
        let id = self.resolve_id(id)?;
        let record = self
            .load_profile(id)?
            .ok_or_else(|| EngineError::NotFound(format!("profile {id}")))?;
        let events = self.events(id, usize::MAX)?;
        let consents = self.consent_records(&id)?;
        let identity = self.identity(id)?;
        let traits = crate::computed::compute(
            &record.activity,
            OffsetDateTime::now_utc(),
            &self.config.computed,
            &Default::default(),
        );
        let mut audiences = Vec::new();
        if self.search_index().is_ok() {
            for audience in self.saved_audiences()? {
                let members = self.audience_member_ids(&audience, &audience.purpose)?;
                if members.contains(&id) {
                    audiences.push(serde_json::json!({ "id": audience.id, "name": audience.name, "purpose": audience.purpose }));
                }
            }
        }
        let exports = self.exports_of(&id)?;
        self.audit(&[AuditRecord {
            actor: actor.to_string(),
            action: "request.access.bundle".into(),
            purpose: None,
            person: Some(id),
            decision: "done".into(),
            rules: vec![request_id.to_string()],
        }])?
        .wait_durable()?;
        Ok(serde_json::json!({
            "format": "cdp-access-bundle/1",
            "generated_at": OffsetDateTime::now_utc().format(&time::format_description::well_known::Rfc3339).unwrap_or_default(),
            "profile_id": id,
            "identifiers": record.identifiers.iter().map(|i| serde_json::json!({
                "type": i.kind, "value": i.value, "source_id": i.source_id, "channel": i.channel,
                "field": i.field,
            })).collect::<Vec<_>>(),
            "traits": record.traits,
            "computed_traits": traits,
            "tags": DerivedAttributes::of(&record, OffsetDateTime::now_utc()).tags,
            "channels": record.channels,
            "restricted": record.restricted,
            "events": events.iter().map(|e: &StoredEvent| &e.message).collect::<Vec<_>>(),
            "consents": consents,
            "audiences": audiences,
            "exports": exports,
            "merge_history": identity.map(|v| v.merge_log).unwrap_or_default(),
        }))
    }

    /// Crypto-shredding: the person's data key is destroyed, their graph records, identifiers,
    /// events, consents, de-duplication keys and aliases are deleted; the index drops them
    /// from the change feed. Answers a signed receipt.
    pub(crate) fn erase(
        &self,
        id: ProfileId,
        cause: &str,
        actor: &str,
    ) -> Result<Value, EngineError> {
        let exports = self.exports_of(&id)?;
        let mut cache = self.write_lock();
        let view = cdp_store::Overlay::new(self.store().as_ref());
        let mut graph = StoreGraph::new(self, &view);
        let (record, key) = graph
            .profile(id)?
            .ok_or_else(|| EngineError::NotFound(format!("profile {id}")))?;
        let mut batch = WriteBatch::default();
        let mut counts: BTreeMap<&str, u64> = BTreeMap::new();
        // Events: their de-duplication keys go too, so re-sent events make a new person.
        for item in self.store().scan_prefix(Keyspace::Events, id.as_bytes()) {
            let (event_key, sealed) = item?;
            if let Ok(event) =
                self.open_person::<StoredEvent>(&key, Keyspace::Events, &event_key, &sealed)
            {
                let digest = cdp_crypto::digest16(&[
                    event.source_id.as_bytes(),
                    event.message.message_id.as_bytes(),
                ]);
                batch.delete(Keyspace::Messages, digest.to_vec());
            }
            batch.delete(Keyspace::Events, event_key);
            *counts.entry("events").or_default() += 1;
        }
        for item in self.store().scan_prefix(Keyspace::Consents, id.as_bytes()) {
            let (consent_key, _) = item?;
            batch.delete(Keyspace::Consents, consent_key);
            *counts.entry("consents").or_default() += 1;
        }
        let mut nodes = BTreeSet::new();
        for identifier in &record.identifiers {
            nodes.insert(identifier.node);
        }
        for evidence in &record.evidence {
            if let Some(edge) = graph.evidence(evidence)? {
                for (_, node) in edge.nodes.iter().chain(edge.severed.iter()) {
                    // Only this person's identifiers: another person's stays theirs.
                    if let Some(n) = graph.node(node)?
                        && n.profile.is_none_or(|p| p == id)
                    {
                        nodes.insert(*node);
                    }
                }
            }
            batch.delete(Keyspace::IdentityEdges, evidence.0.to_vec());
            *counts.entry("evidence").or_default() += 1;
        }
        for node in &nodes {
            batch.delete(Keyspace::Identifiers, node.0.as_bytes().to_vec());
            for item in self
                .store()
                .scan_prefix(Keyspace::Mentions, node.0.as_bytes())
            {
                let (mention, _) = item?;
                batch.delete(Keyspace::Mentions, mention);
            }
            *counts.entry("identifiers").or_default() += 1;
        }
        for item in self.store().scan_prefix(Keyspace::MergeLog, id.as_bytes()) {
            let (entry, _) = item?;
            batch.delete(Keyspace::MergeLog, entry);
        }
        for absorbed in &record.merged_from {
            batch.delete(Keyspace::Aliases, absorbed.as_bytes().to_vec());
        }
        batch.delete(Keyspace::Profiles, id.as_bytes().to_vec());
        // The data key last in meaning, same batch in fact: nothing sealed under it can be
        // opened once this commits.
        self.vault().destroy_person_key(&id, &mut batch);
        drop(graph);
        let ticket = self.store().commit(batch)?;
        *cache = crate::write::cache::RecordCache::default();
        drop(cache);
        ticket.wait_durable()?;
        let erased_at = OffsetDateTime::now_utc();
        let mut receipt = serde_json::json!({
            "cause": cause,
            "person": self.audit_pseudonym(&id)?,
            "erased_at": erased_at.format(&time::format_description::well_known::Rfc3339).unwrap_or_default(),
            "deleted": counts,
            "data_key_destroyed": true,
            "recipients_to_notify": exports,
            "policy_version": self.policies().version,
        });
        let signing = self.vault().signing_key()?;
        let signature = signing.sign_base64(&serde_json::to_vec(&receipt).unwrap_or_default());
        receipt["signing_key"] = Value::String(signing.public_key_base64());
        receipt["signature"] = Value::String(signature);
        self.audit(&[AuditRecord {
            actor: actor.to_string(),
            action: "person.erased".into(),
            purpose: None,
            person: Some(id),
            decision: "done".into(),
            rules: vec![cause.to_string()],
        }])?
        .wait_durable()?;
        Ok(serde_json::json!({ "receipt": receipt }))
    }
}
