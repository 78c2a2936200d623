//! The index document of a person: pseudonymous attributes only (computed traits, bands,
//! tags, non-identifying traits, event counts) and what the policies allow for them, decided
//! once per distinct set of policy facts in a pass.

use std::collections::BTreeMap;

use cdp_core::ProfileId;
use cdp_index::{EVENT_WINDOWS, IndexDoc};
use cdp_policy::DecisionRequest;
use serde_json::Value;
use time::OffsetDateTime;

use crate::computed::{ComputedTraits, Quintiles, compute};
use crate::consent::record::ConsentRecord;
use crate::derived::{DerivedAttributes, age_band, rfm_score};
use crate::records::ProfileRecord;
use crate::{Engine, EngineError};

/// Data categories whose trait values may be indexed (and queried as `traits.<name>`).
const INDEXABLE_CATEGORIES: &[&str] = &[
    "user.demographic.gender",
    "user.behavior",
    "user.location.region",
];

/// Whether traits of `category` are indexed (and may be selected by).
pub(crate) fn is_indexable(category: &str) -> bool {
    INDEXABLE_CATEGORIES
        .iter()
        .any(|prefix| cdp_policy::consent::covers(prefix, category))
}

/// The profile id whose index keys are `(key, key_low)` (see [`cdp_index::key_of`]).
pub(crate) fn profile_of_keys(key: u64, key_low: u64) -> ProfileId {
    ProfileId::from_bytes(cdp_index::id_of_keys(key, key_low))
}

/// What the policies say about a person for the index: computed from their
/// [`cdp_policy::SubjectFacts`] alone, so people with equal facts (most people: no consent on
/// record, the same residency) share one computation. A decision with its explanation is
/// several microseconds per purpose; an index pass re-decides every changed person.
#[derive(Debug)]
pub(crate) struct PolicyPart {
    minor: bool,
    age: Option<u32>,
    residency: Option<String>,
    jurisdictions: Vec<String>,
    /// (purpose, consent state).
    consent: Vec<(String, String)>,
    /// Purposes whose audience decision allows the person.
    allowed: Vec<String>,
    /// `purpose|category` of each current separate consent naming a sensitive category: an
    /// audience that selects by what reveals the category needs it (`sensitive_consent`).
    sensitive_consents: Vec<String>,
}

/// Decisions of one index pass (or one thread of it), by facts. Kept for one pass only: a new
/// policy version rebuilds the index, and no decision outlives the moment it was made.
#[derive(Debug, Default)]
pub(crate) struct DecisionMemo {
    by_facts: std::collections::HashMap<cdp_policy::SubjectFacts, std::sync::Arc<PolicyPart>>,
}

/// Distinct facts kept per pass at most (people with consents on record mostly differ).
const DECISION_MEMO_LIMIT: usize = 4096;

impl DecisionMemo {
    fn decide(
        &mut self,
        engine: &Engine,
        facts: cdp_policy::SubjectFacts,
    ) -> std::sync::Arc<PolicyPart> {
        if let Some(part) = self.by_facts.get(&facts) {
            return part.clone();
        }
        let part = std::sync::Arc::new(Self::compute(engine, &facts));
        if self.by_facts.len() < DECISION_MEMO_LIMIT {
            self.by_facts.insert(facts, part.clone());
        }
        part
    }

    fn compute(engine: &Engine, facts: &cdp_policy::SubjectFacts) -> PolicyPart {
        let policies = engine.policies();
        let mut consent = Vec::new();
        let mut allowed = Vec::new();
        for purpose in policies.taxonomy.purposes.keys() {
            let outcome = cdp_policy::consent::resolve(
                &facts.consents,
                cdp_policy::ConsentQuery {
                    purpose,
                    recipient: None,
                    separate: false,
                    scope: None,
                    notice_version: policies.notice_version(purpose),
                    category: None,
                },
            );
            consent.push((purpose.clone(), outcome.state.as_str().to_string()));
            if policies
                .decide(&DecisionRequest::audience(purpose.clone()), facts)
                .allowed()
            {
                allowed.push(purpose.clone());
            }
        }
        let mut sensitive_consents = std::collections::BTreeSet::new();
        for fact in &facts.consents {
            if fact.status != cdp_policy::ConsentStatus::Granted || !fact.separate {
                continue;
            }
            for category in &fact.categories {
                let outcome = cdp_policy::consent::resolve(
                    &facts.consents,
                    cdp_policy::ConsentQuery {
                        purpose: &fact.purpose,
                        recipient: None,
                        separate: true,
                        scope: None,
                        notice_version: policies.notice_version(&fact.purpose),
                        category: Some(category),
                    },
                );
                if outcome.state == cdp_policy::ConsentState::Granted {
                    sensitive_consents.insert(format!("{}|{category}", fact.purpose));
                }
            }
        }
        let (jurisdictions, _) = policies.jurisdictions_for(facts);
        PolicyPart {
            sensitive_consents: sensitive_consents.into_iter().collect(),
            minor: policies.is_minor(facts),
            age: facts.age,
            residency: facts.residency.clone(),
            jurisdictions: jurisdictions
                .iter()
                .map(|j| j.jurisdiction.clone())
                .collect(),
            consent,
            allowed,
        }
    }
}

impl Engine {
    /// The index document of a person, as of `now`.
    pub(crate) fn index_doc(
        &self,
        record: &ProfileRecord,
        consents: &[ConsentRecord],
        quintiles: &Quintiles,
        now: OffsetDateTime,
        decisions: &mut DecisionMemo,
    ) -> Result<IndexDoc, EngineError> {
        let facts = self.subject_facts(record, consents)?;
        let decided = decisions.decide(self, facts);
        let traits = compute(&record.activity, now, &self.config.computed, quintiles);
        let keywords = keywords_of(
            record,
            &traits,
            &decided,
            DerivedAttributes::of(record, now),
        );
        let numbers = numbers_of(record, &traits);
        let indexed_traits = self.indexed_traits(record);
        let events = event_windows(record, now);
        Ok(IndexDoc {
            id: *record.id.as_bytes(),
            keywords,
            numbers,
            consent: decided.consent.clone(),
            traits: indexed_traits,
            allowed: decided.allowed.clone(),
            events,
        })
    }

    /// A profile and its consent records, read together.
    pub(super) fn profile_with_consents(
        &self,
        id: ProfileId,
    ) -> Result<Option<(ProfileRecord, Vec<ConsentRecord>)>, EngineError> {
        let Some((record, key)) = self.load_profile_with_key(id)? else {
            return Ok(None);
        };
        let consents = self.consent_records_with(&id, &key)?;
        Ok(Some((record, consents)))
    }
}

impl Engine {
    /// Traits of non-identifying categories only (gender, plan, member level...): never
    /// contact data, names, identifiers, precise location or anything sensitive.
    fn indexed_traits(&self, record: &ProfileRecord) -> Vec<(String, String)> {
        let policies = self.policies();
        let mut indexed_traits = Vec::new();
        for (name, value) in &record.traits {
            let Some(category) = policies.category_of(&format!("traits.{name}")) else {
                continue;
            };
            let indexable = is_indexable(category) && !policies.is_sensitive(category);
            let text = match &value.value {
                Value::String(s) => Some(s.clone()),
                Value::Number(n) => Some(n.to_string()),
                Value::Bool(b) => Some(b.to_string()),
                _ => None,
            };
            if let Some(text) = text.filter(|t| indexable && !t.is_empty() && t.len() <= 64) {
                indexed_traits.push((name.clone(), text));
            }
        }
        indexed_traits
    }
}

/// The keyword fields of a document: computed tiers and flags, interests, age band, region,
/// city, channels, tags and jurisdictions.
fn keywords_of(
    record: &ProfileRecord,
    traits: &ComputedTraits,
    decided: &PolicyPart,
    derived: DerivedAttributes<'_>,
) -> Vec<(&'static str, String)> {
    let mut keywords: Vec<(&'static str, String)> = vec![
        ("tier", traits.tier.clone()),
        ("lifecycle", traits.lifecycle.clone()),
        ("hesitating", traits.hesitating.to_string()),
        ("repurchase", traits.repurchase.to_string()),
        ("minor", decided.minor.to_string()),
    ];
    for interest in &traits.interests {
        keywords.push(("interest", interest.clone()));
    }
    if let Some(age) = decided.age {
        keywords.push(("age_band", age_band(age)));
    }
    if let Some(country) = &decided.residency {
        keywords.push(("region", country.clone()));
    }
    if let Some(city) = derived.city() {
        keywords.push(("city", city));
    }
    for channel in record.channels.keys() {
        keywords.push(("channel", channel.as_str().to_string()));
    }
    for consent in &decided.sensitive_consents {
        keywords.push(("sensitive_consent", consent.clone()));
    }
    for tag in derived.tags() {
        keywords.push(("tag", tag));
    }
    for jurisdiction in &decided.jurisdictions {
        keywords.push(("jurisdiction", jurisdiction.clone()));
    }
    keywords
}

/// The numeric fields of a document (fast fields: ranges read the columns).
fn numbers_of(record: &ProfileRecord, traits: &ComputedTraits) -> Vec<(&'static str, f64)> {
    #[allow(clippy::cast_precision_loss)]
    let mut numbers: Vec<(&'static str, f64)> = vec![
        ("frequency_30d", traits.frequency_30d as f64),
        ("frequency_90d", traits.frequency_90d as f64),
        ("frequency_365d", traits.frequency_365d as f64),
        ("monetary_30d", traits.monetary_30d),
        ("monetary_90d", traits.monetary_90d),
        ("monetary_365d", traits.monetary_365d),
        ("average_order_value", traits.average_order_value),
        ("orders_total", traits.orders_total as f64),
        ("return_rate", traits.return_rate),
        ("rfm_r", f64::from(traits.rfm_r)),
        ("rfm_f", f64::from(traits.rfm_f)),
        ("rfm_m", f64::from(traits.rfm_m)),
        ("rfm_score", f64::from(rfm_score(traits))),
        ("clv_historical", traits.clv_historical),
        ("clv_predicted", traits.clv_predicted),
        ("churn_risk", traits.churn_risk),
        ("event_count", record.event_count as f64),
    ];
    if let Some(recency) = traits.recency_days {
        numbers.push(("recency_days", f64::from(recency)));
    }
    numbers
}

/// Event counts per event key and window, as of `now` (windows without events left out).
fn event_windows(
    record: &ProfileRecord,
    now: OffsetDateTime,
) -> BTreeMap<String, BTreeMap<u32, u64>> {
    let mut events = BTreeMap::new();
    for key in record.activity.daily.keys() {
        let windows: BTreeMap<u32, u64> = EVENT_WINDOWS
            .iter()
            .map(|days| {
                (
                    *days,
                    record.activity.count_within(key, i64::from(*days), now),
                )
            })
            .filter(|(_, count)| *count > 0)
            .collect();
        if !windows.is_empty() {
            events.insert(key.clone(), windows);
        }
    }
    events
}
