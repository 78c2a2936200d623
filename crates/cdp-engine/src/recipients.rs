//! Recipients of exports (PIPL Art 21/23 processors and controllers, with region and transfer
//! mechanism) and the suppression list (identifiers no export may include).

use cdp_core::IdentifierType;
use cdp_identity::normalise::normalise;
use cdp_policy::{RecipientFacts, RecipientRole, RopaRecipient};
use cdp_store::{CommitTicket, Keyspace, WriteBatch};
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use crate::audit::AuditRecord;
use crate::records::hex;
use crate::{Engine, EngineError};

pub const TRANSFER_MECHANISMS: &[&str] = &[
    "none",
    "standard_contract",
    "assessment",
    "certification",
    "adequacy",
    "scc",
];

/// A registered recipient (Keyspace::Recipients, sealed with the system key).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecipientRecord {
    pub id: String,
    pub name: String,
    pub contact: String,
    pub role: RecipientRole,
    pub region: String,
    pub transfer_mechanism: String,
    pub allowed_purposes: Vec<String>,
    pub created_by: String,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
}

impl RecipientRecord {
    pub fn facts(&self) -> RecipientFacts {
        RecipientFacts {
            id: self.id.clone(),
            role: self.role,
            region: self.region.clone(),
            transfer_mechanism: self.transfer_mechanism.clone(),
            allowed_purposes: self.allowed_purposes.clone(),
        }
    }

    pub fn ropa(&self) -> RopaRecipient {
        RopaRecipient {
            name: self.name.clone(),
            contact: self.contact.clone(),
            role: self.role,
            region: self.region.clone(),
            transfer_mechanism: self.transfer_mechanism.clone(),
            allowed_purposes: self.allowed_purposes.clone(),
        }
    }
}

/// What `POST /v1/recipients` gives.
#[derive(Debug, Clone)]
pub struct RecipientInput {
    pub name: String,
    pub contact: String,
    pub role: RecipientRole,
    pub region: String,
    pub transfer_mechanism: String,
    pub allowed_purposes: Vec<String>,
}

fn text(field: &str, value: &str) -> Result<String, EngineError> {
    let value = value.trim();
    if value.is_empty() || value.len() > 200 || value.chars().any(char::is_control) {
        return Err(EngineError::InvalidRequest(format!(
            "{field} must be 1 to 200 bytes without control characters"
        )));
    }
    Ok(value.to_string())
}

impl Engine {
    /// Registers a recipient.
    pub fn create_recipient(
        &self,
        input: RecipientInput,
        actor: &str,
    ) -> Result<(RecipientRecord, CommitTicket), EngineError> {
        let region = input.region.trim().to_ascii_uppercase();
        if !(region.len() == 2 && region.chars().all(|c| c.is_ascii_alphabetic())) {
            return Err(EngineError::InvalidRequest(
                "region is a two-letter code (CN, DE, US...) or EU".into(),
            ));
        }
        if !TRANSFER_MECHANISMS.contains(&input.transfer_mechanism.as_str()) {
            return Err(EngineError::InvalidRequest(format!(
                "transfer_mechanism is one of {}",
                TRANSFER_MECHANISMS.join(", ")
            )));
        }
        if input.allowed_purposes.is_empty() {
            return Err(EngineError::InvalidRequest(
                "allowed_purposes needs at least one purpose".into(),
            ));
        }
        for purpose in &input.allowed_purposes {
            if !self.policies().taxonomy.purposes.contains_key(purpose) {
                return Err(EngineError::InvalidRequest(format!(
                    "allowed_purposes: {purpose:?} is not a purpose of the taxonomy"
                )));
            }
        }
        let record = RecipientRecord {
            id: format!("rcp_{}", hex::encode(&cdp_crypto::random_bytes::<8>()?)),
            name: text("name", &input.name)?,
            contact: text("contact", &input.contact)?,
            role: input.role,
            region,
            transfer_mechanism: input.transfer_mechanism,
            allowed_purposes: input.allowed_purposes,
            created_by: actor.to_string(),
            created_at: OffsetDateTime::now_utc(),
        };
        let sealed = self.seal_system(Keyspace::Recipients, record.id.as_bytes(), &record)?;
        let mut batch = WriteBatch::default();
        batch.put(Keyspace::Recipients, record.id.as_bytes().to_vec(), sealed);
        let ticket = self.commit_audited(
            batch,
            &[AuditRecord {
                actor: actor.to_string(),
                action: "recipient.create".into(),
                purpose: None,
                person: None,
                decision: "done".into(),
                rules: vec![record.id.clone()],
            }],
        )?;
        Ok((record, ticket))
    }

    pub fn recipient(&self, id: &str) -> Result<Option<RecipientRecord>, EngineError> {
        if !(id.len() == 20 && id.starts_with("rcp_")) {
            return Err(EngineError::InvalidRequest(
                "a recipient id is rcp_ followed by 16 hex digits".into(),
            ));
        }
        self.get_system(Keyspace::Recipients, id.as_bytes())
    }

    pub fn recipients(&self) -> Result<Vec<RecipientRecord>, EngineError> {
        let mut out = Vec::new();
        for item in self.store().scan_prefix(Keyspace::Recipients, &[]) {
            let (key, sealed) = item?;
            out.push(self.open_system(Keyspace::Recipients, &key, &sealed)?);
        }
        Ok(out)
    }

    /// Adds an identifier to the suppression list (stored as its blind index only).
    pub fn suppress(
        &self,
        kind: &IdentifierType,
        value: &str,
        region: Option<&str>,
        actor: &str,
    ) -> Result<CommitTicket, EngineError> {
        let normalised = normalise(kind, value, region, &self.config.identity)
            .map_err(|_| EngineError::InvalidRequest(format!("the value is not a valid {kind}")))?;
        let index = self.vault().blind_index(kind, &normalised);
        let note = serde_json::json!({ "type": kind.as_str(), "at": OffsetDateTime::now_utc().unix_timestamp() });
        let sealed = self.seal_system(Keyspace::Suppressions, index.as_bytes(), &note)?;
        let mut batch = WriteBatch::default();
        batch.put(Keyspace::Suppressions, index.as_bytes().to_vec(), sealed);
        self.commit_audited(
            batch,
            &[AuditRecord {
                actor: actor.to_string(),
                action: "suppression.add".into(),
                purpose: None,
                person: None,
                decision: "done".into(),
                rules: vec![kind.as_str().to_string()],
            }],
        )
    }

    /// Whether the suppression list has any entry (most stores: none, and no lookups needed).
    pub(crate) fn any_suppressed(&self) -> Result<bool, EngineError> {
        Ok(self
            .store()
            .scan_prefix(Keyspace::Suppressions, &[])
            .next()
            .transpose()?
            .is_some())
    }

    /// Whether any identifier of the profile is suppressed.
    pub(crate) fn is_suppressed(
        &self,
        record: &crate::records::ProfileRecord,
    ) -> Result<bool, EngineError> {
        for identifier in &record.identifiers {
            if self
                .store()
                .get(Keyspace::Suppressions, identifier.node.0.as_bytes())?
                .is_some()
            {
                return Ok(true);
            }
        }
        Ok(false)
    }
}
