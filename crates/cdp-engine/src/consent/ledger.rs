//! Recording consents through the API and reading a person's ledger.

use cdp_core::ProfileId;
use cdp_policy::{ConsentFact, ConsentStatus, LegalBasis};
use cdp_store::{CommitTicket, Keyspace, WriteBatch};
use serde_json::Value;
use time::OffsetDateTime;

use crate::audit::AuditRecord;
use crate::consent::record::{
    ConsentInput, ConsentOrigin, ConsentReceipt, ConsentRecord, ConsentSubject, ConsentsView,
    PurposeState, consent_key, new_suffix,
};
use crate::records::hex;
use crate::{Engine, EngineError};

const MAX_EVIDENCE_BYTES: usize = 4096;
const MAX_TEXT: usize = 128;

fn check_text(field: &str, value: &str) -> Result<(), EngineError> {
    if value.is_empty() || value.len() > MAX_TEXT || value.chars().any(char::is_control) {
        return Err(EngineError::InvalidRequest(format!(
            "{field} must be 1 to {MAX_TEXT} bytes without control characters"
        )));
    }
    Ok(())
}

/// How far ahead of the server's clock a consent's `at` may lie (the client's clock drift).
const MAX_CONSENT_CLOCK_DRIFT: time::Duration = time::Duration::minutes(5);

impl Engine {
    /// Checks a consent input against the taxonomy and the limits.
    fn validate_consent(&self, input: &ConsentInput) -> Result<(), EngineError> {
        self.known_purpose(&input.purpose)?;
        check_text("source", &input.source)?;
        if let Some(version) = &input.notice_version {
            check_text("notice_version", version)?;
        }
        if let Some(recipient) = &input.recipient {
            check_text("recipient", recipient)?;
            // A consent to provide data to a recipient names one the platform knows: a typo
            // would record a consent no export could ever match (PIPL 23 names the recipient).
            if self.recipient(recipient)?.is_none() {
                return Err(EngineError::InvalidRequest(format!(
                    "recipient {recipient} is not registered (POST /v1/recipients)"
                )));
            }
        }
        let names_a_recipient_separately = input.separate && input.recipient.is_some();
        if !input.scopes.is_empty() && !names_a_recipient_separately {
            return Err(EngineError::InvalidRequest(
                "scopes belong to a separate consent naming a recipient (separate: true, recipient)"
                    .into(),
            ));
        }
        // Categories name sensitive data the person agrees the purpose may use: explicit,
        // hence a separate consent (PIPL Art 29, GDPR Art 9(2)(a)).
        if !input.categories.is_empty() && !input.separate {
            return Err(EngineError::InvalidRequest(
                "categories belong to a separate consent (separate: true)".into(),
            ));
        }
        if input.categories.len() > 16 {
            return Err(EngineError::InvalidRequest(
                "categories lists at most 16 data categories".into(),
            ));
        }
        for category in &input.categories {
            let sensitive = self
                .policies()
                .taxonomy
                .data_categories
                .contains_key(category)
                && self.policies().is_sensitive(category);
            if !sensitive {
                return Err(EngineError::InvalidRequest(format!(
                    "categories: {} is not a sensitive data category of the taxonomy",
                    category.chars().take(64).collect::<String>()
                )));
            }
        }
        if let Some(at) = input.at {
            // When the person gave it: a time ahead of the server's clock (beyond drift) is a
            // mistake, and recording it as "now" would misdate the evidence (GDPR 7(1)).
            let latest = OffsetDateTime::now_utc() + MAX_CONSENT_CLOCK_DRIFT;
            if at > latest {
                return Err(EngineError::InvalidRequest(format!(
                    "at lies in the future; a consent is dated when it was given (at most {} minutes ahead of the server's clock)",
                    MAX_CONSENT_CLOCK_DRIFT.whole_minutes()
                )));
            }
            if at < cdp_core::segment::EARLIEST_EVENT_TIME {
                return Err(EngineError::InvalidRequest(
                    "at lies before 1970-01-01".into(),
                ));
            }
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
        let _graph = self.write_lock()?;
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
            scopes: input.scopes,
            categories: input.categories,
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
                scope: record.scopes.first().copied(),
                notice_version: self.policies().notice_version(&record.purpose),
                category: None,
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
    /// `R`: the whole record, or what a batch reader counts of it (`ConsentForBatch`).
    pub(crate) fn open_consent_records<R>(
        &self,
        key: &cdp_crypto::DataKey,
        sealed: Vec<(Vec<u8>, Vec<u8>)>,
    ) -> Result<Vec<R>, EngineError>
    where
        R: serde::de::DeserializeOwned + std::borrow::Borrow<ConsentRecord>,
    {
        let mut records = sealed
            .iter()
            .map(|(ledger_key, value)| {
                self.open_person::<R>(key, Keyspace::Consents, ledger_key, value)
            })
            .collect::<Result<Vec<_>, _>>()?;
        records.sort_by(|a, b| {
            let (a, b): (&ConsentRecord, &ConsentRecord) = (
                std::borrow::Borrow::borrow(a),
                std::borrow::Borrow::borrow(b),
            );
            (a.recorded_at, &a.id).cmp(&(b.recorded_at, &b.id))
        });
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
                        scope: None,
                        notice_version: notice,
                        category: None,
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
