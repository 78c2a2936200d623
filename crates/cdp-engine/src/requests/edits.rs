//! Requests that edit a person: rectification, restriction, objection, tags.

use std::collections::BTreeMap;

use cdp_core::{Channel, ProfileId};
use cdp_policy::ConsentStatus;
use cdp_store::{Keyspace, WriteBatch};
use serde_json::Value;
use time::OffsetDateTime;

use crate::consent::record::{ConsentInput, ConsentSubject};
use crate::derived::DerivedAttributes;
use crate::records::TraitValue;
use crate::write::graph_store::StoreGraph;
use crate::{Engine, EngineError};

impl Engine {
    /// Loads a profile with its key under the identity lock, lets `change` edit it, and
    /// writes it back (the write-through cache is reset: these edits bypass ingestion).
    fn edit_profile(
        &self,
        id: ProfileId,
        change: impl FnOnce(&mut crate::records::ProfileRecord) -> Result<Value, EngineError>,
    ) -> Result<Value, EngineError> {
        let mut cache = self.write_lock()?;
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
        cache.clear_records();
        self.written_profiles.clear();
        drop(cache);
        ticket.wait_durable()?;
        Ok(result)
    }

    pub(super) fn rectify(
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

    pub(super) fn set_restricted(
        &self,
        id: ProfileId,
        restricted: bool,
    ) -> Result<Value, EngineError> {
        self.edit_profile(id, |record| {
            record.restricted = restricted;
            Ok(serde_json::json!({ "restricted": restricted }))
        })
    }

    pub(super) fn object(
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
                    scopes: Vec::new(),
                    categories: Vec::new(),
                    evidence: serde_json::json!({ "request": request }),
                    at: None,
                },
                actor,
            )?;
            ticket.wait_durable()?;
        }
        Ok(serde_json::json!({ "objected_to": scope }))
    }

    pub(super) fn edit_tags(&self, id: ProfileId, delete: &[String]) -> Result<Value, EngineError> {
        self.edit_profile(id, |record| {
            for tag in delete {
                record.tags_removed.insert(tag.clone());
            }
            let tags: Vec<String> = DerivedAttributes::of(record, OffsetDateTime::now_utc()).tags();
            Ok(serde_json::json!({ "tags": tags, "deleted": delete }))
        })
    }
}
