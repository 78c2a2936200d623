//! The review queue of fuzzy matching: pairs of people whose match probability falls between
//! the review and the link thresholds wait for an operator (`GET /v1/identity/suggestions`),
//! who accepts (the pair is linked as a fuzzy link, under merge protection) or rejects (the
//! pair is not suggested again). Records are `sug/<id>` in `Keyspace::Matching`, sealed with
//! the system key; they name people by profile id and fields by comparison level, never by
//! value. Every list and decision is audited.

use cdp_core::ProfileId;
use cdp_store::{Keyspace, WriteBatch};
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use crate::audit::AuditRecord;
use crate::read::access::Access;
use crate::records::{FieldContribution, FuzzyLinkNote, hex};
use crate::write::fuzzy_link::FuzzyLinkOutcome;
use crate::{Engine, EngineError};

const SUGGESTION_PREFIX: &[u8] = b"sug/";

/// Where a suggestion stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SuggestionStatus {
    Pending,
    Accepted,
    Rejected,
}

impl std::str::FromStr for SuggestionStatus {
    type Err = EngineError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        match text {
            "pending" => Ok(Self::Pending),
            "accepted" => Ok(Self::Accepted),
            "rejected" => Ok(Self::Rejected),
            other => Err(EngineError::InvalidRequest(format!(
                "status {} is not one of pending, accepted, rejected",
                other.chars().take(32).collect::<String>()
            ))),
        }
    }
}

/// What an operator decides about a suggestion.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SuggestionDecision {
    Accept,
    Reject,
}

/// One suggestion, as stored and as `GET /v1/identity/suggestions` shows it (the profiles as
/// they resolve now).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Suggestion {
    /// 32 hex digits.
    pub id: String,
    pub profiles: [ProfileId; 2],
    pub probability: f64,
    pub weight: f64,
    pub fields: Vec<FieldContribution>,
    pub status: SuggestionStatus,
    #[serde(with = "time::serde::rfc3339")]
    pub suggested_at: OffsetDateTime,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub decided_by: Option<String>,
    /// Why an accepted pair was not linked after all (merge protection), if it was not.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refused: Option<String>,
}

fn suggestion_key(id: &str) -> Result<Vec<u8>, EngineError> {
    let bytes = hex::decode::<16>(id)
        .ok_or_else(|| EngineError::InvalidRequest("a suggestion id is 32 hex digits".into()))?;
    Ok([SUGGESTION_PREFIX, bytes.as_slice()].concat())
}

/// The suggestion id of a pair: the same for the same two profiles in either order.
pub(crate) fn suggestion_id(a: &ProfileId, b: &ProfileId) -> String {
    let (x, y) = if a.as_bytes() <= b.as_bytes() {
        (a, b)
    } else {
        (b, a)
    };
    hex::encode(&cdp_crypto::digest16(&[
        b"suggestion",
        x.as_bytes(),
        y.as_bytes(),
    ]))
}

impl Engine {
    /// Every stored suggestion with its key.
    fn all_suggestions(&self) -> Result<Vec<(Vec<u8>, Suggestion)>, EngineError> {
        let mut out = Vec::new();
        for item in self
            .store()
            .scan_prefix(Keyspace::Matching, SUGGESTION_PREFIX)
        {
            let (key, sealed) = item?;
            out.push((
                key.clone(),
                self.open_system(Keyspace::Matching, &key, &sealed)?,
            ));
        }
        Ok(out)
    }

    /// Whether the pair was suggested before (pending, accepted or rejected): a rejected
    /// pair is not asked about again.
    pub(crate) fn suggested_before(&self, id: &str) -> Result<bool, EngineError> {
        Ok(self
            .store()
            .get(Keyspace::Matching, &suggestion_key(id)?)?
            .is_some())
    }

    /// Stages a new pending suggestion.
    pub(crate) fn stage_suggestion(
        &self,
        suggestion: &Suggestion,
        batch: &mut WriteBatch,
    ) -> Result<(), EngineError> {
        let key = suggestion_key(&suggestion.id)?;
        let sealed = self.seal_system(Keyspace::Matching, &key, suggestion)?;
        batch.put(Keyspace::Matching, key, sealed);
        Ok(())
    }

    /// `GET /v1/identity/suggestions`: the suggestions in `status` (default: pending), most
    /// probable first, their profiles as they resolve now. A pending pair that has become
    /// one person since, or whose person is gone, is no question any more and is left out.
    pub fn suggestions(
        &self,
        status: Option<SuggestionStatus>,
        access: &Access,
    ) -> Result<Vec<Suggestion>, EngineError> {
        let status = status.unwrap_or(SuggestionStatus::Pending);
        let mut out = Vec::new();
        for (_, mut suggestion) in self.all_suggestions()? {
            if suggestion.status != status {
                continue;
            }
            let [a, b] = suggestion.profiles;
            let (a, b) = (self.resolve_id(a)?, self.resolve_id(b)?);
            if status == SuggestionStatus::Pending
                && (a == b
                    || self.vault().person_key(&a)?.is_none()
                    || self.vault().person_key(&b)?.is_none())
            {
                continue;
            }
            suggestion.profiles = [a, b];
            out.push(suggestion);
        }
        out.sort_by(|x, y| y.probability.total_cmp(&x.probability));
        self.audit(&[AuditRecord {
            actor: access.actor.clone(),
            action: "identity.suggestions".into(),
            purpose: Some(crate::audit::IDENTITY_PURPOSE.into()),
            person: None,
            decision: "done".into(),
            rules: vec![
                format!(
                    "status={}",
                    serde_json::to_value(status).unwrap_or_default()
                ),
                format!("listed={}", out.len()),
            ],
        }])?
        .wait_durable()?;
        Ok(out)
    }

    /// `POST /v1/identity/suggestions/{id}`: accepts (links the pair, as a fuzzy link under
    /// merge protection) or rejects a pending suggestion. A link merge protection refuses is a
    /// conflict, and the suggestion stays pending.
    pub fn decide_suggestion(
        &self,
        id: &str,
        decision: SuggestionDecision,
        access: &Access,
    ) -> Result<Suggestion, EngineError> {
        let _run = self.matching_lock();
        let key = suggestion_key(id)?;
        let mut suggestion: Suggestion = self
            .get_system(Keyspace::Matching, &key)?
            .ok_or_else(|| EngineError::NotFound(format!("suggestion {id}")))?;
        if suggestion.status != SuggestionStatus::Pending {
            return Err(EngineError::Conflict(format!(
                "suggestion {id} was decided already ({})",
                suggestion.decided_by.as_deref().unwrap_or("")
            )));
        }
        let mut rules = vec![id.to_string()];
        if decision == SuggestionDecision::Accept {
            let [a, b] = suggestion.profiles;
            let note = FuzzyLinkNote {
                probability: suggestion.probability,
                weight: suggestion.weight,
                fields: suggestion.fields.clone(),
                decided_by: access.actor.clone(),
            };
            match self.link_fuzzy(a, b, note)? {
                (FuzzyLinkOutcome::Linked(survivor), ticket) => {
                    if let Some(ticket) = ticket {
                        ticket.wait_durable()?;
                    }
                    rules.push(format!("profile={survivor}"));
                }
                (FuzzyLinkOutcome::AlreadyOne, _) => rules.push("already one".into()),
                (FuzzyLinkOutcome::Refused(reason), _) => {
                    return Err(EngineError::Conflict(format!(
                        "suggestion {id} cannot be accepted: {reason}"
                    )));
                }
            }
        }
        suggestion.status = match decision {
            SuggestionDecision::Accept => SuggestionStatus::Accepted,
            SuggestionDecision::Reject => SuggestionStatus::Rejected,
        };
        suggestion.decided_by = Some(access.actor.clone());
        let mut batch = WriteBatch::default();
        let sealed = self.seal_system(Keyspace::Matching, &key, &suggestion)?;
        batch.put(Keyspace::Matching, key, sealed);
        self.commit_audited(
            batch,
            &[AuditRecord {
                actor: access.actor.clone(),
                action: match decision {
                    SuggestionDecision::Accept => "identity.suggestion_accepted",
                    SuggestionDecision::Reject => "identity.suggestion_rejected",
                }
                .into(),
                purpose: Some(crate::audit::IDENTITY_PURPOSE.into()),
                person: None,
                decision: "done".into(),
                rules,
            }],
        )?
        .wait_durable()?;
        Ok(suggestion)
    }

    /// Erasure: suggestions naming the person (by their id or one merged into it) go,
    /// whatever their status.
    pub(crate) fn stage_suggestion_erasure(
        &self,
        ids: &[ProfileId],
        batch: &mut WriteBatch,
    ) -> Result<u64, EngineError> {
        let mut removed = 0;
        for (key, suggestion) in self.all_suggestions()? {
            if suggestion.profiles.iter().any(|p| ids.contains(p)) {
                batch.delete(Keyspace::Matching, key);
                removed += 1;
            }
        }
        Ok(removed)
    }
}
