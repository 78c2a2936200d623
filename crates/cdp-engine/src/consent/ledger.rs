//! The consent ledger: append-only, per person, sealed with the person's data key.
//!
//! Records arrive from the consent API and with ingestion (Segment
//! `context.consent.categoryPreferences`, and `context.gpc` / `Sec-GPC: 1`, recorded as an
//! objection to marketing). Each record keeps its origin (the whole person, or the identifier
//! it came with) so that the policy engine can resolve conflicts after merges (most
//! restrictive across origins; see `cdp_policy::consent`). Records move with their person on
//! merges and follow their identifier on splits.

use std::collections::BTreeMap;

use cdp_core::segment::Message;
use cdp_core::{Channel, IdentifierType, ProfileId};
use cdp_policy::{ConsentFact, ConsentState, ConsentStatus, LegalBasis, PolicySet};
use cdp_store::{CommitTicket, Keyspace, WriteBatch};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use time::OffsetDateTime;

use crate::write::apply::Changes;
use crate::audit::AuditRecord;
use crate::write::graph_store::StoreGraph;
use crate::write::ingest::MessageIdentifier;
use crate::records::{NodeKey, SourceRecord, hex};
use crate::{Engine, EngineError};

/// Where a consent record came from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum ConsentOrigin {
    /// A decision about the whole person (the consent API, addressed by profile id).
    Profile,
    /// Given with this identifier (the consent API addressed by identifier, or an event).
    Identifier {
        #[serde(rename = "type")]
        kind: IdentifierType,
        node: NodeKey,
    },
}

impl ConsentOrigin {
    /// The origin as the policy engine sees it (no identifier value).
    pub fn label(&self) -> String {
        match self {
            Self::Profile => cdp_policy::consent::PROFILE_ORIGIN.into(),
            Self::Identifier { kind, node } => {
                format!("{kind}:{}", &hex::encode(node.0.as_bytes())[..16])
            }
        }
    }
}

/// One ledger record (Keyspace::Consents, key = profile id + time + random).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ConsentRecord {
    pub id: String,
    pub purpose: String,
    pub status: ConsentStatus,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub legal_basis: Option<LegalBasis>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub notice_version: Option<String>,
    /// Where the consent was collected (a form, a source name, an app screen).
    pub source: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub channel: Option<Channel>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub recipient: Option<String>,
    #[serde(default)]
    pub separate: bool,
    #[serde(default)]
    pub guardian: bool,
    /// Proof of the consent (notice shown, checkbox, signature reference...).
    pub evidence: Value,
    pub origin: ConsentOrigin,
    /// `api`, `ingest:consent_preferences` or `ingest:gpc`.
    pub via: String,
    /// When the person gave it.
    #[serde(with = "time::serde::rfc3339")]
    pub at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    pub recorded_at: OffsetDateTime,
    /// Token subject, or `ingest:<source id>`.
    pub recorded_by: String,
    /// The origin identifier was split off this person and belongs to nobody: the record
    /// stays as evidence, a grant in it no longer counts, a refusal still does.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub detached: bool,
}

impl ConsentRecord {
    /// The record as the policy engine counts it (`None`: it does not count).
    pub fn fact(&self) -> Option<ConsentFact> {
        if self.detached && self.status == ConsentStatus::Granted {
            return None;
        }
        Some(ConsentFact {
            purpose: self.purpose.clone(),
            status: self.status,
            recipient: self.recipient.clone(),
            separate: self.separate,
            guardian: self.guardian,
            notice_version: self.notice_version.clone(),
            origin: self.origin.label(),
            at: self.at,
        })
    }
}

/// Who a consent is about.
#[derive(Debug, Clone)]
pub enum ConsentSubject {
    Profile(ProfileId),
    Identifier {
        kind: IdentifierType,
        value: String,
        region: Option<String>,
    },
}

/// A consent to record through the API.
#[derive(Debug, Clone)]
pub struct ConsentInput {
    pub subject: ConsentSubject,
    pub purpose: String,
    pub status: ConsentStatus,
    pub legal_basis: Option<LegalBasis>,
    pub notice_version: Option<String>,
    pub source: String,
    pub channel: Option<Channel>,
    pub recipient: Option<String>,
    pub separate: bool,
    pub guardian: bool,
    pub evidence: Value,
    pub at: Option<OffsetDateTime>,
}

/// What recording a consent answers.
#[derive(Debug, Clone, Serialize)]
pub struct ConsentReceipt {
    pub id: String,
    pub profile_id: ProfileId,
    pub purpose: String,
    pub status: ConsentStatus,
    /// The person's state for the purpose once this record is counted.
    pub state: ConsentState,
    #[serde(with = "time::serde::rfc3339")]
    pub recorded_at: OffsetDateTime,
}

/// The current state for one purpose, for the consents view.
#[derive(Debug, Clone, Serialize)]
pub struct PurposeState {
    pub purpose: String,
    pub state: ConsentState,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub notice_version: Option<String>,
}

/// A person's consent history and current state.
#[derive(Debug, Clone, Serialize)]
pub struct ConsentsView {
    pub profile_id: ProfileId,
    pub current: Vec<PurposeState>,
    /// The records, oldest first; `origin` is shown as a label (`email:3fa2...`), not the
    /// stored blind index.
    pub history: Vec<Value>,
}

const MAX_EVIDENCE_BYTES: usize = 4096;
const MAX_TEXT: usize = 128;

/// The ledger key of a record: profile, time (sortable), random.
pub(crate) fn consent_key(profile: &ProfileId, suffix: &[u8; 16]) -> Vec<u8> {
    [profile.as_bytes().as_slice(), suffix].concat()
}

pub(crate) fn new_suffix(at: OffsetDateTime) -> Result<[u8; 16], EngineError> {
    let micros = i64::try_from(at.unix_timestamp_nanos() / 1_000).unwrap_or(i64::MAX);
    let mut suffix = [0u8; 16];
    suffix[..8].copy_from_slice(&((micros as u64) ^ (1 << 63)).to_be_bytes());
    suffix[8..].copy_from_slice(&cdp_crypto::random_bytes::<8>()?);
    Ok(suffix)
}

/// The suffix of a ledger key (after the profile id).
pub(crate) fn key_suffix(key: &[u8]) -> Option<[u8; 16]> {
    key.get(16..32)?.try_into().ok()
}

/// Consent signals carried by a message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ConsentSignal {
    pub(crate) via: &'static str,
    pub(crate) purposes: Vec<(String, ConsentStatus)>,
    pub(crate) evidence: Value,
}

impl ConsentSignal {
    /// A digest of what the signal says, to skip repeating it on every event.
    pub(crate) fn mark(&self) -> String {
        let mut parts: Vec<Vec<u8>> = self
            .purposes
            .iter()
            .map(|(purpose, status)| format!("{purpose}={}", status.as_str()).into_bytes())
            .collect();
        parts.sort();
        let refs: Vec<&[u8]> = parts.iter().map(Vec::as_slice).collect();
        hex::encode(&cdp_crypto::digest16(&refs)[..8])
    }
}

/// The consent signals of a Segment message.
pub(crate) fn signals_of(policies: &PolicySet, message: &Message) -> Vec<ConsentSignal> {
    let mut signals = Vec::new();
    // Global Privacy Control: an objection to marketing (GDPR Art 21). The server sets
    // `context.gpc` for requests with `Sec-GPC: 1`.
    if message.context.get("gpc") == Some(&Value::Bool(true)) {
        signals.push(ConsentSignal {
            via: "ingest:gpc",
            purposes: vec![("marketing".into(), ConsentStatus::Denied)],
            evidence: serde_json::json!({ "signal": "Global Privacy Control" }),
        });
    }
    let preferences = message
        .context
        .get("consent")
        .and_then(|consent| consent.get("categoryPreferences"))
        .and_then(Value::as_object);
    if let Some(preferences) = preferences {
        let mut purposes = Vec::new();
        let mut seen = serde_json::Map::new();
        for (category, value) in preferences {
            let Some(granted) = value.as_bool() else {
                continue;
            };
            let Some(mapped) = policies
                .taxonomy
                .consent_categories
                .iter()
                .find(|(name, _)| name.eq_ignore_ascii_case(category))
            else {
                continue;
            };
            seen.insert(mapped.0.clone(), Value::Bool(granted));
            for purpose in mapped.1 {
                let status = if granted {
                    ConsentStatus::Granted
                } else {
                    ConsentStatus::Denied
                };
                purposes.push((purpose.clone(), status));
            }
        }
        if !purposes.is_empty() {
            signals.push(ConsentSignal {
                via: "ingest:consent_preferences",
                purposes,
                evidence: serde_json::json!({ "categoryPreferences": seen }),
            });
        }
    }
    signals
}

fn check_text(field: &str, value: &str) -> Result<(), EngineError> {
    if value.is_empty() || value.len() > MAX_TEXT || value.chars().any(char::is_control) {
        return Err(EngineError::InvalidRequest(format!(
            "{field} must be 1 to {MAX_TEXT} bytes without control characters"
        )));
    }
    Ok(())
}

impl Engine {
    /// Records the consent signals of an ingested message in the ledger of the person its event
    /// went to, with the message's strongest identifier (of that person) as origin. A signal
    /// equal to the last one recorded from that origin is skipped.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn stage_signals(
        &self,
        graph: &mut StoreGraph<'_>,
        changes: &mut Changes,
        source: &SourceRecord,
        message_id: &str,
        at: OffsetDateTime,
        identifiers: &BTreeMap<NodeKey, MessageIdentifier>,
        signals: Vec<ConsentSignal>,
    ) -> Result<(), EngineError> {
        if signals.is_empty() {
            return Ok(());
        }
        let Some(owner) = changes
            .events
            .values()
            .find(|(_, event)| {
                event.message.message_id == message_id && event.source_id == source.id
            })
            .map(|(profile, _)| *profile)
        else {
            return Ok(());
        };
        let mut candidates = Vec::new();
        for (key, identifier) in identifiers {
            let profile = match changes.nodes.get(key) {
                Some(node) => node.profile,
                None => graph.node(key)?.and_then(|node| node.profile),
            };
            if profile == Some(owner) {
                let priority = self.config.identity.rule(&identifier.kind).priority;
                candidates.push((priority, *key, identifier.kind.clone()));
            }
        }
        candidates.sort_by_key(|c| (c.0, c.1));
        let Some((_, node, kind)) = candidates.into_iter().next() else {
            // None of the message's identifiers is the person's (merge protection dropped
            // them all): the signal cannot be attributed to anyone's consent.
            return Ok(());
        };
        let origin = ConsentOrigin::Identifier { kind, node };
        let label = origin.label();
        let now = OffsetDateTime::now_utc();
        let (record, _) = changes
            .profiles
            .get_mut(&owner)
            .ok_or_else(|| EngineError::Corrupt(format!("profile {owner} not loaded")))?;
        let mut new_records = Vec::new();
        for signal in signals {
            let mark_key = format!("{label}|{}", signal.via);
            let mark = signal.mark();
            if record.consent_marks.get(&mark_key) == Some(&mark) {
                continue;
            }
            record.consent_marks.insert(mark_key, mark);
            for (purpose, status) in &signal.purposes {
                let suffix = new_suffix(now)?;
                let mut evidence = signal.evidence.clone();
                evidence["message_id"] = Value::String(message_id.to_string());
                new_records.push((
                    consent_key(&owner, &suffix),
                    ConsentRecord {
                        id: format!("c_{}", hex::encode(&suffix)),
                        purpose: purpose.clone(),
                        status: *status,
                        legal_basis: None,
                        notice_version: None,
                        source: source.name.clone(),
                        channel: Some(source.channel),
                        recipient: None,
                        separate: false,
                        guardian: false,
                        evidence,
                        origin: origin.clone(),
                        via: signal.via.into(),
                        at,
                        recorded_at: now,
                        recorded_by: format!("ingest:{}", source.id),
                        detached: false,
                    },
                ));
            }
        }
        for (key, consent) in new_records {
            changes.consents.insert(key, (owner, consent));
        }
        Ok(())
    }

    /// Checks a consent input against the taxonomy and the limits.
    fn validate_consent(&self, input: &ConsentInput) -> Result<(), EngineError> {
        if !self
            .policies()
            .taxonomy
            .purposes
            .contains_key(&input.purpose)
        {
            return Err(EngineError::InvalidRequest(format!(
                "purpose {:?} is not a purpose of the taxonomy",
                input.purpose
            )));
        }
        check_text("source", &input.source)?;
        if let Some(version) = &input.notice_version {
            check_text("notice_version", version)?;
        }
        if let Some(recipient) = &input.recipient {
            check_text("recipient", recipient)?;
        }
        if input.separate
            && input.status == ConsentStatus::Granted
            && input.legal_basis.is_some_and(|b| b != LegalBasis::Consent)
        {
            return Err(EngineError::InvalidRequest(
                "a separate consent has legal_basis consent".into(),
            ));
        }
        let evidence_size = serde_json::to_vec(&input.evidence)
            .map(|bytes| bytes.len())
            .unwrap_or(usize::MAX);
        if input.evidence.is_null() || evidence_size > MAX_EVIDENCE_BYTES {
            return Err(EngineError::InvalidRequest(format!(
                "evidence is required and at most {MAX_EVIDENCE_BYTES} bytes of JSON"
            )));
        }
        Ok(())
    }

    /// Appends a consent record (through the API) and audits it. Durable when the ticket is.
    pub fn record_consent(
        &self,
        input: ConsentInput,
        actor: &str,
    ) -> Result<(ConsentReceipt, CommitTicket), EngineError> {
        self.validate_consent(&input)?;
        // Under the identity lock: a merge must not move the person's records between
        // finding the profile and writing to it.
        let _graph = self.write_lock();
        let (profile, origin) = match &input.subject {
            ConsentSubject::Profile(id) => {
                let resolved = self.resolve_id(*id)?;
                if self.load_profile(resolved)?.is_none() {
                    return Err(EngineError::NotFound(format!("profile {id}")));
                }
                (resolved, ConsentOrigin::Profile)
            }
            ConsentSubject::Identifier {
                kind,
                value,
                region,
            } => {
                let (profile, node) = self
                    .node_of_identifier(kind, value, region.as_deref())?
                    .ok_or_else(|| EngineError::NotFound(format!("a profile with that {kind}")))?;
                (
                    profile,
                    ConsentOrigin::Identifier {
                        kind: kind.clone(),
                        node,
                    },
                )
            }
        };
        let key = self
            .vault()
            .person_key(&profile)?
            .ok_or_else(|| EngineError::NotFound(format!("profile {profile}")))?;
        let now = OffsetDateTime::now_utc();
        let suffix = new_suffix(now)?;
        let record = ConsentRecord {
            id: format!("c_{}", hex::encode(&suffix)),
            purpose: input.purpose.clone(),
            status: input.status,
            legal_basis: input.legal_basis,
            notice_version: input.notice_version,
            source: input.source,
            channel: input.channel,
            recipient: input.recipient,
            separate: input.separate,
            guardian: input.guardian,
            evidence: input.evidence,
            origin,
            via: "api".into(),
            at: input.at.unwrap_or(now).min(now),
            recorded_at: now,
            recorded_by: actor.to_string(),
            detached: false,
        };
        let mut history = self.consent_records(&profile)?;
        history.push(record.clone());
        let facts: Vec<ConsentFact> = history.iter().filter_map(ConsentRecord::fact).collect();
        let state = cdp_policy::consent::resolve(
            &facts,
            cdp_policy::ConsentQuery {
                purpose: &record.purpose,
                recipient: record.recipient.as_deref(),
                separate: record.separate,
                notice_version: self.policies().notice_version(&record.purpose),
            },
        )
        .state;
        let ledger_key = consent_key(&profile, &suffix);
        let sealed = self.seal_person(&key, Keyspace::Consents, &ledger_key, &record)?;
        let mut batch = WriteBatch::default();
        batch.put(Keyspace::Consents, ledger_key, sealed);
        let ticket = self.commit_audited(
            batch,
            &[AuditRecord {
                actor: actor.to_string(),
                action: format!("consent.{}", record.status.as_str()),
                purpose: Some(record.purpose.clone()),
                person: Some(profile),
                decision: "done".into(),
                rules: Vec::new(),
            }],
        )?;
        Ok((
            ConsentReceipt {
                id: record.id,
                profile_id: profile,
                purpose: record.purpose,
                status: record.status,
                state,
                recorded_at: now,
            },
            ticket,
        ))
    }

    /// A person's ledger, oldest first (no policy check: callers decide).
    pub(crate) fn consent_records(
        &self,
        profile: &ProfileId,
    ) -> Result<Vec<ConsentRecord>, EngineError> {
        // The data key alone (not the profile record): readers that already decoded the
        // profile must not pay for it twice.
        let Some(key) = self.vault().person_key(profile)? else {
            return Ok(Vec::new());
        };
        self.consent_records_with(profile, &key)
    }

    /// A person's ledger with their data key already in hand.
    pub(crate) fn consent_records_with(
        &self,
        profile: &ProfileId,
        key: &cdp_crypto::DataKey,
    ) -> Result<Vec<ConsentRecord>, EngineError> {
        let sealed = self
            .store()
            .scan_prefix(Keyspace::Consents, profile.as_bytes())
            .collect::<Result<Vec<_>, _>>()?;
        self.open_consent_records(key, sealed)
    }

    /// A person's ledger from its sealed entries (as scanned: key, sealed value), in the order
    /// they were recorded.
    pub(crate) fn open_consent_records(
        &self,
        key: &cdp_crypto::DataKey,
        sealed: Vec<(Vec<u8>, Vec<u8>)>,
    ) -> Result<Vec<ConsentRecord>, EngineError> {
        let mut records = sealed
            .iter()
            .map(|(ledger_key, value)| {
                self.open_person::<ConsentRecord>(key, Keyspace::Consents, ledger_key, value)
            })
            .collect::<Result<Vec<_>, _>>()?;
        records.sort_by(|a, b| (a.recorded_at, &a.id).cmp(&(b.recorded_at, &b.id)));
        Ok(records)
    }

    /// History and the current state for every purpose of the taxonomy.
    pub(crate) fn consents_view(
        &self,
        profile: ProfileId,
        history: Vec<ConsentRecord>,
    ) -> ConsentsView {
        let facts: Vec<ConsentFact> = history.iter().filter_map(ConsentRecord::fact).collect();
        let current = self
            .policies()
            .taxonomy
            .purposes
            .keys()
            .map(|purpose| {
                let notice = self.policies().notice_version(purpose);
                let outcome = cdp_policy::consent::resolve(
                    &facts,
                    cdp_policy::ConsentQuery {
                        purpose,
                        recipient: None,
                        separate: false,
                        notice_version: notice,
                    },
                );
                PurposeState {
                    purpose: purpose.clone(),
                    state: outcome.state,
                    notice_version: notice.map(str::to_string),
                }
            })
            .collect();
        let history = history
            .into_iter()
            .filter_map(|record| {
                let label = record.origin.label();
                let mut value = serde_json::to_value(record).ok()?;
                value["origin"] = Value::String(label);
                Some(value)
            })
            .collect();
        ConsentsView {
            profile_id: profile,
            current,
            history,
        }
    }
}
