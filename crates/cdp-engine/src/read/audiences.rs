//! Audiences: counts, saved definitions and policy-filtered members.
//!
//! A count answers how many people match and how many of them the policies allow for the
//! purpose (`removed_by_policy` is the difference: no consent, withdrawn, objections,
//! minors without a guardian's consent, restriction). Members are read from the index and
//! each is decided again against the store before it is listed, so a consent withdrawn a
//! moment ago never slips through while the index catches up.

use cdp_core::ProfileId;
use cdp_index::{Condition, IndexView, PersonIndex};
use cdp_policy::{Action, DecisionRequest};
use cdp_store::{CommitTicket, Keyspace, WriteBatch};
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use crate::audit::AuditRecord;
use crate::indexer::index_error;
use crate::read::access::Access;
use crate::records::hex;
use crate::{Engine, EngineError};

/// How an audience is written: the text form or a JSON tree.
#[derive(Debug, Clone)]
pub enum AudienceQuery {
    Text(String),
    Tree(Condition),
}

/// A saved audience (Keyspace::Audiences, sealed with the system key).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AudienceRecord {
    pub id: String,
    pub name: String,
    pub purpose: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub query: Option<String>,
    pub condition: Condition,
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
}

/// What `PATCH /v1/audiences/{id}` changes.
#[derive(Debug, Clone, Default)]
pub struct AudiencePatch {
    pub name: Option<String>,
    pub purpose: Option<String>,
    pub query: Option<AudienceQuery>,
}

fn audience_name(name: &str) -> Result<String, EngineError> {
    let name = name.trim();
    if name.is_empty() || name.len() > MAX_NAME || name.chars().any(char::is_control) {
        return Err(EngineError::InvalidRequest(format!(
            "name must be 1 to {MAX_NAME} bytes without control characters"
        )));
    }
    Ok(name.to_string())
}

/// A count.
#[derive(Debug, Clone, Serialize)]
pub struct AudienceCount {
    /// People who match and whom the policies allow for the purpose.
    pub count: u64,
    /// People who match.
    pub matched: u64,
    /// Matched but excluded by the policies.
    pub removed_by_policy: u64,
    /// What the selection reveals that is sensitive: members need a separate consent naming
    /// each category (the others are among `removed_by_policy`).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub sensitive: Vec<crate::read::selection::SensitiveSelector>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub purpose: Option<String>,
    #[serde(with = "time::serde::rfc3339")]
    pub evaluated_at: OffsetDateTime,
    /// When tiers and RFM scores were last cut against the population's quintiles (a full
    /// index refresh: daily, and after a bulk load); absent before the first.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        with = "time::serde::rfc3339::option"
    )]
    pub traits_as_of: Option<OffsetDateTime>,
}

/// A saved audience with its current size.
#[derive(Debug, Clone, Serialize)]
pub struct AudienceView {
    #[serde(flatten)]
    pub audience: AudienceRecord,
    pub size: AudienceCount,
}

/// One page of members.
#[derive(Debug, Clone, Serialize)]
pub struct MembersPage {
    pub purpose: String,
    /// Pseudonymous ids (profile ids: random, derived from nothing personal).
    pub members: Vec<ProfileId>,
    /// Pass as `after` for the next page; absent on the last.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_after: Option<String>,
    /// Listed by the index but refused when decided again just now (their change is still on
    /// its way to the index).
    pub removed_on_recheck: u64,
}

const MAX_NAME: usize = 200;

impl Engine {
    pub(crate) fn search_index(&self) -> Result<&PersonIndex, EngineError> {
        self.index
            .as_deref()
            .ok_or_else(|| EngineError::Index("the search index is not open".into()))
    }

    /// Every member of an audience the index allows for `purpose` (current ids, in no
    /// particular order).
    pub(crate) fn audience_member_ids(
        &self,
        audience: &AudienceRecord,
        purpose: &str,
    ) -> Result<Vec<ProfileId>, EngineError> {
        let index = self.search_index()?;
        // With the consents its sensitive selectors need; an audience saved before a value it
        // selects by was refused keeps its plain condition here (this lists, it does not use).
        let condition = match self.sensitive_selection(&audience.condition, purpose) {
            Ok(sensitive) => {
                Self::with_sensitive_consents(&audience.condition, purpose, &sensitive)
            }
            Err(_) => audience.condition.clone(),
        };
        Ok(index
            .member_keys(&condition, &self.purposes(), purpose)
            .map_err(index_error)?
            .into_iter()
            .map(|(key, low)| crate::indexer::profile_of_keys(key, low))
            .collect())
    }

    /// Everyone the audience's condition matches, whatever the policies allow.
    pub(crate) fn audience_matched_ids(
        &self,
        audience: &AudienceRecord,
    ) -> Result<Vec<ProfileId>, EngineError> {
        let index = self.search_index()?;
        Ok(index
            .matched_keys(&audience.condition, &self.purposes())
            .map_err(index_error)?
            .into_iter()
            .map(|(key, low)| crate::indexer::profile_of_keys(key, low))
            .collect())
    }

    pub(crate) fn purposes(&self) -> Vec<String> {
        self.policies().taxonomy.purposes.keys().cloned().collect()
    }

    /// Parses and validates a query.
    pub fn audience_condition(&self, query: &AudienceQuery) -> Result<Condition, EngineError> {
        let purposes = self.purposes();
        match query {
            AudienceQuery::Text(text) => {
                cdp_index::query::parse_text(text, &purposes).map_err(EngineError::InvalidQuery)
            }
            AudienceQuery::Tree(tree) => {
                cdp_index::query::validate(tree, &purposes).map_err(EngineError::InvalidQuery)?;
                Ok(tree.clone())
            }
        }
    }

    /// How many match `condition`, and how many of them the policies allow for `purpose`
    /// (including a separate consent to each sensitive category the selection reveals).
    pub(crate) fn count_condition(
        &self,
        condition: &Condition,
        purpose: &str,
    ) -> Result<AudienceCount, EngineError> {
        self.count_condition_in(&self.search_index()?.view(), condition, purpose)
    }

    /// [`Self::count_condition`] in one view of the index (the counts of one breakdown).
    pub(crate) fn count_condition_in(
        &self,
        index: &IndexView<'_>,
        condition: &Condition,
        purpose: &str,
    ) -> Result<AudienceCount, EngineError> {
        let sensitive = self.sensitive_selection(condition, purpose)?;
        let purposes = self.purposes();
        let (matched, allowed) = if sensitive.is_empty() {
            index
                .count(condition, &purposes, Some(purpose))
                .map_err(index_error)?
        } else {
            let (matched, _) = index
                .count(condition, &purposes, None)
                .map_err(index_error)?;
            let narrowed = Self::with_sensitive_consents(condition, purpose, &sensitive);
            let (_, allowed) = index
                .count(&narrowed, &purposes, Some(purpose))
                .map_err(index_error)?;
            (matched, allowed)
        };
        Ok(AudienceCount {
            count: allowed,
            matched,
            removed_by_policy: matched - allowed.min(matched),
            sensitive,
            purpose: Some(purpose.to_string()),
            evaluated_at: OffsetDateTime::now_utc(),
            traits_as_of: self.traits_as_of(),
        })
    }

    /// The sensitive categories an audience's selection reveals, for `purpose`.
    pub(crate) fn inferred_categories(
        &self,
        audience: &AudienceRecord,
        purpose: &str,
    ) -> Result<Vec<String>, EngineError> {
        let mut categories: Vec<String> = self
            .sensitive_selection(&audience.condition, purpose)?
            .into_iter()
            .map(|s| s.category)
            .collect();
        categories.sort();
        categories.dedup();
        Ok(categories)
    }

    pub(crate) fn audit_audience(
        &self,
        access: &Access,
        action: &str,
        purpose: Option<&str>,
        rules: Vec<String>,
    ) -> Result<CommitTicket, EngineError> {
        self.audit(&[AuditRecord {
            actor: access.actor.clone(),
            action: action.into(),
            purpose: purpose.map(str::to_string),
            person: None,
            decision: "done".into(),
            rules,
        }])
    }

    /// `POST /v1/audiences/count`.
    pub fn count_audience(
        &self,
        query: &AudienceQuery,
        purpose: &str,
        access: &Access,
    ) -> Result<AudienceCount, EngineError> {
        let condition = self.audience_condition(query)?;
        self.check_purpose(Action::Audience, access, purpose)?;
        let count = self.count_condition(&condition, purpose)?;
        self.audit_audience(access, "audience.count", Some(purpose), Vec::new())?
            .wait_durable()?;
        Ok(count)
    }

    /// The refusal of an audience that selects by sensitive categories nobody matched has
    /// consented to: the decision for someone without that consent, its reasons about them.
    fn sensitive_refusal(
        &self,
        access: &Access,
        purpose: &str,
        size: &AudienceCount,
    ) -> EngineError {
        let mut categories: Vec<String> =
            size.sensitive.iter().map(|s| s.category.clone()).collect();
        categories.dedup();
        let mut decision = self.policies().decide(
            &DecisionRequest {
                action: Action::Audience,
                purpose: purpose.to_string(),
                caller: Some(access.caller.clone()),
                recipient: None,
                fields: Vec::new(),
                inferred: categories,
            },
            &cdp_policy::SubjectFacts::default(),
        );
        decision
            .reasons
            .retain(|reason| reason.rule.ends_with(".sensitive_inference"));
        decision.decision = cdp_policy::Effect::Deny;
        EngineError::Denied(Box::new(decision))
    }

    /// The largest minimum audience size of the jurisdictions (20 under the built-in
    /// policies): below it, an export is refused and a count shown to a caller without
    /// individual access is suppressed.
    pub fn min_audience_size(&self) -> u64 {
        self.policies()
            .jurisdictions
            .iter()
            .map(|j| j.export.min_audience_size)
            .max()
            .unwrap_or(1)
    }

    /// `POST /v1/audiences`: saves a definition.
    pub fn create_audience(
        &self,
        name: &str,
        purpose: &str,
        query: &AudienceQuery,
        access: &Access,
    ) -> Result<(AudienceView, CommitTicket), EngineError> {
        let name = audience_name(name)?;
        let condition = self.audience_condition(query)?;
        self.check_purpose(Action::Audience, access, purpose)?;
        let id = format!("aud_{}", hex::encode(&cdp_crypto::random_bytes::<8>()?));
        let record = AudienceRecord {
            id: id.clone(),
            name,
            purpose: purpose.to_string(),
            query: match query {
                AudienceQuery::Text(text) => Some(text.clone()),
                AudienceQuery::Tree(_) => None,
            },
            condition,
            created_by: access.actor.clone(),
            created_at: OffsetDateTime::now_utc(),
            updated_by: None,
            updated_at: None,
        };
        let size = self.count_condition(&record.condition, purpose)?;
        if !size.sensitive.is_empty() && size.count == 0 && size.matched > 0 {
            // Nobody could be in it: refused, with the reason and its articles.
            return Err(self.sensitive_refusal(access, purpose, &size));
        }
        let sealed = self.seal_system(Keyspace::Audiences, id.as_bytes(), &record)?;
        let mut batch = WriteBatch::default();
        batch.put(Keyspace::Audiences, id.as_bytes().to_vec(), sealed);
        let ticket = self.commit_audited(
            batch,
            &[AuditRecord {
                actor: access.actor.clone(),
                action: "audience.create".into(),
                purpose: Some(purpose.to_string()),
                person: None,
                decision: "done".into(),
                rules: vec![id],
            }],
        )?;
        Ok((
            AudienceView {
                audience: record,
                size,
            },
            ticket,
        ))
    }

    /// `PATCH /v1/audiences/{id}`: renames it, or changes its definition or purpose (checked
    /// as at creation). Exports made before keep the hash of the definition they used.
    pub fn update_audience(
        &self,
        id: &str,
        patch: AudiencePatch,
        access: &Access,
    ) -> Result<(AudienceView, CommitTicket), EngineError> {
        let mut record = self.load_audience(id)?;
        let mut changed = Vec::new();
        if let Some(name) = patch.name {
            record.name = audience_name(&name)?;
            changed.push("name");
        }
        if let Some(query) = &patch.query {
            record.condition = self.audience_condition(query)?;
            record.query = match query {
                AudienceQuery::Text(text) => Some(text.clone()),
                AudienceQuery::Tree(_) => None,
            };
            changed.push("condition");
        }
        if let Some(purpose) = patch.purpose {
            record.purpose = purpose;
            changed.push("purpose");
        }
        if changed.is_empty() {
            return Err(EngineError::InvalidRequest(
                "nothing to change: give name, purpose, or query or condition".into(),
            ));
        }
        // The caller must be allowed the purpose it is saved under, new or not.
        self.check_purpose(Action::Audience, access, &record.purpose)?;
        let size = self.count_condition(&record.condition, &record.purpose)?;
        if !size.sensitive.is_empty() && size.count == 0 && size.matched > 0 {
            return Err(self.sensitive_refusal(access, &record.purpose, &size));
        }
        record.updated_by = Some(access.actor.clone());
        record.updated_at = Some(OffsetDateTime::now_utc());
        let sealed = self.seal_system(Keyspace::Audiences, id.as_bytes(), &record)?;
        let mut batch = WriteBatch::default();
        batch.put(Keyspace::Audiences, id.as_bytes().to_vec(), sealed);
        let mut rules = vec![record.id.clone()];
        rules.extend(changed.iter().map(|field| (*field).to_string()));
        let ticket = self.commit_audited(
            batch,
            &[AuditRecord {
                actor: access.actor.clone(),
                action: "audience.update".into(),
                purpose: Some(record.purpose.clone()),
                person: None,
                decision: "done".into(),
                rules,
            }],
        )?;
        Ok((
            AudienceView {
                audience: record,
                size,
            },
            ticket,
        ))
    }

    pub(crate) fn load_audience(&self, id: &str) -> Result<AudienceRecord, EngineError> {
        let valid = id.len() == 20 && id.starts_with("aud_");
        if !valid {
            return Err(EngineError::InvalidRequest(
                "an audience id is aud_ followed by 16 hex digits".into(),
            ));
        }
        self.get_system(Keyspace::Audiences, id.as_bytes())?
            .ok_or_else(|| EngineError::NotFound(format!("audience {id}")))
    }

    /// Deletes a saved audience (audited). Exports made from it keep their files and
    /// manifests, which hold the definition's hash.
    pub fn delete_audience(&self, id: &str, access: &Access) -> Result<CommitTicket, EngineError> {
        let record = self.load_audience(id)?;
        let mut batch = cdp_store::WriteBatch::new();
        batch.delete(Keyspace::Audiences, id.as_bytes().to_vec());
        self.commit_audited(
            batch,
            &[AuditRecord {
                actor: access.actor.clone(),
                action: "audience.delete".into(),
                purpose: Some(record.purpose),
                person: None,
                decision: "done".into(),
                rules: vec![record.id],
            }],
        )
    }

    /// Every saved audience.
    pub fn saved_audiences(&self) -> Result<Vec<AudienceRecord>, EngineError> {
        let mut out = Vec::new();
        for item in self.store().scan_prefix(Keyspace::Audiences, &[]) {
            let (key, sealed) = item?;
            out.push(self.open_system(Keyspace::Audiences, &key, &sealed)?);
        }
        Ok(out)
    }

    /// `GET /v1/audiences/{id}`: the definition and its size now.
    pub fn audience(&self, id: &str, access: &Access) -> Result<AudienceView, EngineError> {
        let record = self.load_audience(id)?;
        let size = self.count_condition(&record.condition, &record.purpose)?;
        self.audit_audience(
            access,
            "audience.evaluate",
            Some(&record.purpose),
            vec![record.id.clone()],
        )?
        .wait_durable()?;
        Ok(AudienceView {
            audience: record,
            size,
        })
    }

    /// `GET /v1/audiences/{id}/members`: a page of members for `purpose` (default the
    /// audience's), each decided again against the store.
    pub fn audience_members(
        &self,
        id: &str,
        purpose: Option<&str>,
        after: Option<&str>,
        limit: usize,
        access: &Access,
    ) -> Result<MembersPage, EngineError> {
        let record = self.load_audience(id)?;
        let purpose = purpose.unwrap_or(&record.purpose).to_string();
        self.check_purpose(Action::Audience, access, &purpose)?;
        let after = after
            .map(|a| {
                a.parse::<u64>()
                    .map_err(|_| EngineError::InvalidRequest("after must be a number".into()))
            })
            .transpose()?;
        let limit = limit.clamp(1, 1000);
        let sensitive = self.sensitive_selection(&record.condition, &purpose)?;
        let condition = Self::with_sensitive_consents(&record.condition, &purpose, &sensitive);
        let page = self
            .search_index()?
            .members(&condition, &self.purposes(), &purpose, after, limit)
            .map_err(index_error)?;
        let next_after = (page.len() == limit)
            .then(|| page.last().map(|(key, _)| key.to_string()))
            .flatten();
        let mut members = Vec::with_capacity(page.len());
        let mut removed = 0;
        let mut request = DecisionRequest::audience(purpose.clone());
        request.inferred = self.inferred_categories(&record, &purpose)?;
        for (_, id) in page {
            let profile = ProfileId::from_bytes(id);
            let allowed = match self.subject_facts_of(profile)? {
                Some(facts) => self.policies().decide(&request, &facts).allowed(),
                None => false,
            };
            if allowed {
                members.push(profile);
            } else {
                removed += 1;
            }
        }
        self.audit_audience(
            access,
            "audience.members",
            Some(&purpose),
            vec![record.id.clone()],
        )?
        .wait_durable()?;
        Ok(MembersPage {
            purpose,
            members,
            next_after,
            removed_on_recheck: removed,
        })
    }
}
