//! The access bundle (PIPL Art 45, GDPR Art 15 and 20): assembled when downloaded, never
//! stored.

use serde_json::Value;
use time::OffsetDateTime;

use super::{RequestStatus, RequestType};
use crate::audit::AuditRecord;
use crate::derived::DerivedAttributes;
use crate::records::StoredEvent;
use crate::{Engine, EngineError};

impl Engine {
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
            "tags": DerivedAttributes::of(&record, OffsetDateTime::now_utc()).tags(),
            "channels": record.channels,
            "restricted": record.restricted,
            "events": events.iter().map(|e: &StoredEvent| &e.message).collect::<Vec<_>>(),
            "consents": consents,
            "audiences": audiences,
            "exports": exports,
            "merge_history": identity.map(|v| v.merge_log).unwrap_or_default(),
        }))
    }
}
