//! Consent ledger records: append-only, per person, sealed with the person's data key.
//!
//! Records arrive from the consent API and with ingestion (Segment
//! `context.consent.categoryPreferences`, and `context.gpc` / `Sec-GPC: 1`, recorded as an
//! objection to marketing). Each record keeps its origin (the whole person, or the identifier
//! it came with) so that the policy engine can resolve conflicts after merges (most
//! restrictive across origins; see `cdp_policy::consent`). Records move with their person on
//! merges and follow their identifier on splits.

use cdp_core::{Channel, IdentifierType, ProfileId};
use cdp_policy::{ConsentFact, ConsentScope, ConsentState, ConsentStatus, LegalBasis};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use time::OffsetDateTime;

use crate::EngineError;
use crate::records::{NodeKey, hex};

/// Where a consent record came from. Written internally tagged (`{"kind": "identifier",
/// "type": ..., "node": ...}`); read by [`ConsentOrigin`]'s own `Deserialize`, which takes the
/// keys in any order without serde's buffering of internally tagged enums (an export reads
/// every consent of every member: the buffering was a few per cent of its time).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
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

impl<'de> Deserialize<'de> for ConsentOrigin {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct OriginVisitor;

        impl<'de> serde::de::Visitor<'de> for OriginVisitor {
            type Value = ConsentOrigin;

            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a consent origin: {kind: profile} or {kind: identifier, type, node}")
            }

            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                mut map: A,
            ) -> Result<ConsentOrigin, A::Error> {
                use serde::de::Error;
                let (mut tag, mut kind, mut node) = (None, None, None);
                while let Some(key) = map.next_key::<Word>()? {
                    match key {
                        Word::Kind => tag = Some(map.next_value::<Word>()?),
                        Word::Type => kind = Some(map.next_value::<IdentifierType>()?),
                        Word::Node => node = Some(map.next_value::<NodeKey>()?),
                        _ => {
                            map.next_value::<serde::de::IgnoredAny>()?;
                        }
                    }
                }
                match tag {
                    Some(Word::Profile) => Ok(ConsentOrigin::Profile),
                    Some(Word::Identifier) => Ok(ConsentOrigin::Identifier {
                        kind: kind.ok_or_else(|| A::Error::missing_field("type"))?,
                        node: node.ok_or_else(|| A::Error::missing_field("node"))?,
                    }),
                    Some(_) => Err(A::Error::custom(
                        "a consent origin's kind is profile or identifier",
                    )),
                    None => Err(A::Error::missing_field("kind")),
                }
            }
        }

        deserializer.deserialize_map(OriginVisitor)
    }
}

/// The keys and tags of a consent origin, read without allocating.
enum Word {
    Kind,
    Type,
    Node,
    Profile,
    Identifier,
    Other,
}

impl<'de> Deserialize<'de> for Word {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct WordVisitor;

        impl serde::de::Visitor<'_> for WordVisitor {
            type Value = Word;

            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a string")
            }

            fn visit_str<E: serde::de::Error>(self, text: &str) -> Result<Word, E> {
                Ok(match text {
                    "kind" => Word::Kind,
                    "type" => Word::Type,
                    "node" => Word::Node,
                    "profile" => Word::Profile,
                    "identifier" => Word::Identifier,
                    _ => Word::Other,
                })
            }

            fn visit_bytes<E: serde::de::Error>(self, bytes: &[u8]) -> Result<Word, E> {
                self.visit_str(std::str::from_utf8(bytes).unwrap_or(""))
            }
        }

        deserializer.deserialize_identifier(WordVisitor)
    }
}

impl ConsentOrigin {
    /// The origin as the policy engine sees it (no identifier value).
    pub fn label(&self) -> String {
        match self {
            Self::Profile => cdp_policy::consent::PROFILE_ORIGIN.into(),
            Self::Identifier { kind, node } => {
                // The first 8 bytes' hex: the label every reader knows (16 digits), without
                // encoding the other 24 bytes per consent of every member an export reads.
                format!("{kind}:{}", hex::encode(&node.0.as_bytes()[..8]))
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
    /// What a separate consent naming a recipient covers: the provision (PIPL 23), the
    /// transfer abroad (PIPL 39), or both. None stated: the provision only.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub scopes: Vec<ConsentScope>,
    /// Sensitive data categories a separate consent covers (`user.health`): the purpose may
    /// select the person by what reveals them (PIPL Art 29, GDPR Art 9(2)(a)).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub categories: Vec<String>,
    /// Proof of the consent (notice shown, checkbox, signature reference...).
    pub evidence: Value,
    pub origin: ConsentOrigin,
    /// `api`, `ingest:consent_preferences` or `ingest:gpc`.
    pub via: String,
    /// When the person gave it.
    #[serde(with = "crate::records::instant")]
    pub at: OffsetDateTime,
    #[serde(with = "crate::records::instant")]
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
            scopes: self.scopes.clone(),
            categories: self.categories.clone(),
            notice_version: self.notice_version.clone(),
            origin: self.origin.label(),
            at: self.at,
        })
    }
}

/// A consent record as a batch reader counts it (an export decides a million members): the
/// fields of its [`ConsentFact`] and of the ledger's order, without the evidence, source and
/// recorder only the consent history shows (skipped by the decoder). It lends a
/// [`ConsentRecord`] whose skipped fields are empty, and offers no way to get that record
/// out: it can never be written back.
#[derive(Debug)]
pub(crate) struct ConsentForBatch(ConsentRecord);

impl std::borrow::Borrow<ConsentRecord> for ConsentForBatch {
    fn borrow(&self) -> &ConsentRecord {
        &self.0
    }
}

impl<'de> Deserialize<'de> for ConsentForBatch {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        /// The fields read; the others are skipped as unknown ones are.
        #[derive(Deserialize)]
        struct Read {
            id: String,
            purpose: String,
            status: ConsentStatus,
            #[serde(default)]
            notice_version: Option<String>,
            #[serde(default)]
            recipient: Option<String>,
            #[serde(default)]
            separate: bool,
            #[serde(default)]
            guardian: bool,
            #[serde(default)]
            scopes: Vec<ConsentScope>,
            #[serde(default)]
            categories: Vec<String>,
            origin: ConsentOrigin,
            #[serde(with = "crate::records::instant")]
            at: OffsetDateTime,
            #[serde(with = "crate::records::instant")]
            recorded_at: OffsetDateTime,
            #[serde(default)]
            detached: bool,
        }
        let read = Read::deserialize(deserializer)?;
        Ok(Self(ConsentRecord {
            id: read.id,
            purpose: read.purpose,
            status: read.status,
            legal_basis: None,
            notice_version: read.notice_version,
            source: String::new(),
            channel: None,
            recipient: read.recipient,
            separate: read.separate,
            guardian: read.guardian,
            scopes: read.scopes,
            categories: read.categories,
            evidence: Value::Null,
            origin: read.origin,
            via: String::new(),
            at: read.at,
            recorded_at: read.recorded_at,
            recorded_by: String::new(),
            detached: read.detached,
        }))
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
    /// See [`ConsentRecord::scopes`].
    pub scopes: Vec<ConsentScope>,
    /// See [`ConsentRecord::categories`].
    pub categories: Vec<String>,
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn origins_read_back_in_every_form_and_key_order() {
        let node = NodeKey(cdp_crypto::BlindIndex::from_bytes([7; 32]));
        let origins = [
            ConsentOrigin::Profile,
            ConsentOrigin::Identifier {
                kind: IdentifierType::Email,
                node,
            },
        ];
        for origin in &origins {
            let stored = crate::codec::encode(origin).unwrap();
            assert_eq!(
                &crate::codec::decode::<ConsentOrigin>(&stored).unwrap(),
                origin
            );
            let json = serde_json::to_string(origin).unwrap();
            assert_eq!(
                &serde_json::from_str::<ConsentOrigin>(&json).unwrap(),
                origin
            );
        }
        // The tag need not come first, and unknown keys are ignored.
        let hex = "07".repeat(32);
        let reordered: ConsentOrigin = serde_json::from_str(&format!(
            r#"{{"node": "{hex}", "extra": 1, "type": "email", "kind": "identifier"}}"#
        ))
        .unwrap();
        assert_eq!(reordered, origins[1]);
        for bad in [
            r#"{"kind": "maybe"}"#,
            r#"{"type": "email"}"#,
            r#"{"kind": "identifier"}"#,
        ] {
            assert!(serde_json::from_str::<ConsentOrigin>(bad).is_err(), "{bad}");
        }
    }
}
