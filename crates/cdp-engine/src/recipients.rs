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
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub updated_by: Option<String>,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        with = "time::serde::rfc3339::option"
    )]
    pub updated_at: Option<OffsetDateTime>,
    /// From then on no export goes to it. A recipient is retired, not deleted: the record of
    /// processing and the manifests of what it already received keep naming it.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        with = "time::serde::rfc3339::option"
    )]
    pub retired_at: Option<OffsetDateTime>,
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
            retired_on: self.retired_at.map(|at| at.date().to_string()),
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

/// What `PATCH /v1/recipients/{id}` gives: the fields to change.
#[derive(Debug, Clone, Default)]
pub struct RecipientPatch {
    pub name: Option<String>,
    pub contact: Option<String>,
    pub region: Option<String>,
    pub transfer_mechanism: Option<String>,
    pub allowed_purposes: Option<Vec<String>>,
}

/// A suppression list entry as listed: its type and when and by whom it was added, never the
/// value (only its blind index is stored).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SuppressionEntry {
    /// `sup_` and 16 hex digits, derived from the stored blind index.
    pub id: String,
    #[serde(rename = "type")]
    pub kind: String,
    #[serde(with = "time::serde::rfc3339::option")]
    pub added_at: Option<OffsetDateTime>,
    pub added_by: Option<String>,
}

/// The sealed note stored under a suppressed identifier's blind index.
#[derive(Debug, Serialize, Deserialize)]
struct SuppressionNote {
    #[serde(rename = "type")]
    kind: String,
    /// Unix seconds.
    at: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    by: Option<String>,
}

/// The listed id of the entry stored under `key`: a hash of the blind index, so that the list
/// does not hand out the index the identity graph is keyed by.
fn suppression_id(key: &[u8]) -> String {
    let digest = cdp_crypto::sha256_parts(&[b"suppression", key]);
    format!("sup_{}", hex::encode(&digest[..8]))
}

fn valid_region(region: &str) -> Result<String, EngineError> {
    let region = region.trim().to_ascii_uppercase();
    if region.len() == 2 && region.chars().all(|c| c.is_ascii_alphabetic()) {
        Ok(region)
    } else {
        Err(EngineError::InvalidRequest(
            "region is a two-letter code (CN, DE, US...) or EU".into(),
        ))
    }
}

fn valid_mechanism(mechanism: String) -> Result<String, EngineError> {
    if TRANSFER_MECHANISMS.contains(&mechanism.as_str()) {
        Ok(mechanism)
    } else {
        Err(EngineError::InvalidRequest(format!(
            "transfer_mechanism is one of {}",
            TRANSFER_MECHANISMS.join(", ")
        )))
    }
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
        let region = valid_region(&input.region)?;
        let transfer_mechanism = valid_mechanism(input.transfer_mechanism)?;
        self.valid_purposes(&input.allowed_purposes)?;
        let record = RecipientRecord {
            id: format!("rcp_{}", hex::encode(&cdp_crypto::random_bytes::<8>()?)),
            name: text("name", &input.name)?,
            contact: text("contact", &input.contact)?,
            role: input.role,
            region,
            transfer_mechanism,
            allowed_purposes: input.allowed_purposes,
            created_by: actor.to_string(),
            created_at: OffsetDateTime::now_utc(),
            updated_by: None,
            updated_at: None,
            retired_at: None,
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

    fn valid_purposes(&self, purposes: &[String]) -> Result<(), EngineError> {
        if purposes.is_empty() {
            return Err(EngineError::InvalidRequest(
                "allowed_purposes needs at least one purpose".into(),
            ));
        }
        for purpose in purposes {
            if !self.policies().taxonomy.purposes.contains_key(purpose) {
                return Err(EngineError::InvalidRequest(format!(
                    "allowed_purposes: {purpose:?} is not a purpose of the taxonomy"
                )));
            }
        }
        Ok(())
    }

    /// Changes a recipient's details (audited, naming the fields changed). A retired
    /// recipient cannot be changed: its record says what it was when it was retired.
    pub fn update_recipient(
        &self,
        id: &str,
        patch: RecipientPatch,
        actor: &str,
    ) -> Result<(RecipientRecord, CommitTicket), EngineError> {
        let mut record = self
            .recipient(id)?
            .ok_or_else(|| EngineError::NotFound(format!("recipient {id}")))?;
        if record.retired_at.is_some() {
            return Err(EngineError::Conflict(format!(
                "recipient {id} is retired and cannot be changed"
            )));
        }
        let mut changed = Vec::new();
        if let Some(name) = patch.name {
            record.name = text("name", &name)?;
            changed.push("name");
        }
        if let Some(contact) = patch.contact {
            record.contact = text("contact", &contact)?;
            changed.push("contact");
        }
        if let Some(region) = patch.region {
            record.region = valid_region(&region)?;
            changed.push("region");
        }
        if let Some(mechanism) = patch.transfer_mechanism {
            record.transfer_mechanism = valid_mechanism(mechanism)?;
            changed.push("transfer_mechanism");
        }
        if let Some(purposes) = patch.allowed_purposes {
            self.valid_purposes(&purposes)?;
            record.allowed_purposes = purposes;
            changed.push("allowed_purposes");
        }
        if changed.is_empty() {
            return Err(EngineError::InvalidRequest(
                "nothing to change: give name, contact, region, transfer_mechanism or allowed_purposes"
                    .into(),
            ));
        }
        record.updated_by = Some(actor.to_string());
        record.updated_at = Some(OffsetDateTime::now_utc());
        let mut rules = vec![record.id.clone()];
        rules.extend(changed.iter().map(|field| (*field).to_string()));
        let ticket = self.put_recipient(&record, actor, "recipient.update", rules)?;
        Ok((record, ticket))
    }

    /// Retires a recipient: every later export to it is refused. Its record stays, for the
    /// record of processing and for the manifests of what it received.
    pub fn retire_recipient(
        &self,
        id: &str,
        actor: &str,
    ) -> Result<(RecipientRecord, CommitTicket), EngineError> {
        let mut record = self
            .recipient(id)?
            .ok_or_else(|| EngineError::NotFound(format!("recipient {id}")))?;
        if record.retired_at.is_some() {
            return Err(EngineError::Conflict(format!(
                "recipient {id} is already retired"
            )));
        }
        record.retired_at = Some(OffsetDateTime::now_utc());
        let ticket =
            self.put_recipient(&record, actor, "recipient.retire", vec![record.id.clone()])?;
        Ok((record, ticket))
    }

    fn put_recipient(
        &self,
        record: &RecipientRecord,
        actor: &str,
        action: &str,
        rules: Vec<String>,
    ) -> Result<CommitTicket, EngineError> {
        let sealed = self.seal_system(Keyspace::Recipients, record.id.as_bytes(), record)?;
        let mut batch = WriteBatch::default();
        batch.put(Keyspace::Recipients, record.id.as_bytes().to_vec(), sealed);
        self.commit_audited(
            batch,
            &[AuditRecord {
                actor: actor.to_string(),
                action: action.into(),
                purpose: None,
                person: None,
                decision: "done".into(),
                rules,
            }],
        )
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
        let note = SuppressionNote {
            kind: kind.as_str().to_string(),
            at: OffsetDateTime::now_utc().unix_timestamp(),
            by: Some(actor.to_string()),
        };
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

    /// Takes an identifier off the suppression list, given its value as it was added.
    pub fn unsuppress(
        &self,
        kind: &IdentifierType,
        value: &str,
        region: Option<&str>,
        actor: &str,
    ) -> Result<CommitTicket, EngineError> {
        let normalised = normalise(kind, value, region, &self.config.identity)
            .map_err(|_| EngineError::InvalidRequest(format!("the value is not a valid {kind}")))?;
        let index = self.vault().blind_index(kind, &normalised);
        self.remove_suppression(index.as_bytes().to_vec(), actor)
    }

    /// Takes the entry listed as `id` (`GET /v1/suppressions`) off the suppression list.
    pub fn unsuppress_by_id(&self, id: &str, actor: &str) -> Result<CommitTicket, EngineError> {
        if !(id.len() == 20 && id.starts_with("sup_")) {
            return Err(EngineError::InvalidRequest(
                "a suppression id is sup_ followed by 16 hex digits".into(),
            ));
        }
        // Only keys are hashed, nothing is opened: a list of a million entries is scanned in
        // well under a second, and removals are rare.
        for item in self.store().scan_prefix(Keyspace::Suppressions, &[]) {
            let (key, _) = item?;
            if suppression_id(&key) == id {
                return self.remove_suppression(key.to_vec(), actor);
            }
        }
        Err(EngineError::NotFound(format!("suppression {id}")))
    }

    fn remove_suppression(&self, key: Vec<u8>, actor: &str) -> Result<CommitTicket, EngineError> {
        let Some(sealed) = self.store().get(Keyspace::Suppressions, &key)? else {
            return Err(EngineError::NotFound(
                "that identifier is not on the suppression list".into(),
            ));
        };
        let note: SuppressionNote = self.open_system(Keyspace::Suppressions, &key, &sealed)?;
        let mut batch = WriteBatch::default();
        batch.delete(Keyspace::Suppressions, key.clone());
        self.commit_audited(
            batch,
            &[AuditRecord {
                actor: actor.to_string(),
                action: "suppression.remove".into(),
                purpose: None,
                person: None,
                decision: "done".into(),
                rules: vec![note.kind, suppression_id(&key)],
            }],
        )
    }

    /// A page of the suppression list in key order (which is random with respect to the
    /// values and the order they were added), after the entry listed as `after`.
    pub fn suppressions(
        &self,
        after: Option<&str>,
        limit: usize,
    ) -> Result<(Vec<SuppressionEntry>, Option<String>), EngineError> {
        let limit = limit.clamp(1, 1000);
        let mut skipping = after.is_some();
        let mut out = Vec::new();
        for item in self.store().scan_prefix(Keyspace::Suppressions, &[]) {
            let (key, sealed) = item?;
            let id = suppression_id(&key);
            if skipping {
                skipping = after != Some(id.as_str());
                continue;
            }
            if out.len() == limit {
                let next = out.last().map(|entry: &SuppressionEntry| entry.id.clone());
                return Ok((out, next));
            }
            let note: SuppressionNote = self.open_system(Keyspace::Suppressions, &key, &sealed)?;
            out.push(SuppressionEntry {
                id,
                kind: note.kind,
                added_at: OffsetDateTime::from_unix_timestamp(note.at).ok(),
                added_by: note.by,
            });
        }
        if skipping {
            return Err(EngineError::InvalidRequest(format!(
                "after: no suppression {} (removed since?)",
                after.unwrap_or_default()
            )));
        }
        Ok((out, None))
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
