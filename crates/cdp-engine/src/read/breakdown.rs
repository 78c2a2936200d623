//! An audience broken down for charts (`POST /v1/audiences/breakdown`): its members the
//! policies allow for the purpose, counted per tier, lifecycle stage, channel, city and
//! region, and on the RFM grid (recency score x frequency score). One audit entry for the
//! whole answer; every count below the minimum audience size is withheld, for every caller:
//! a chart cell of three people can single them out as well as a list.

use cdp_index::{Condition, Leaf, Op};
use cdp_policy::Action;
use serde::Serialize;

use crate::read::access::Access;
use crate::read::audiences::AudienceQuery;
use crate::{Engine, EngineError};

/// What a breakdown can split by.
pub const DIMENSIONS: &[&str] = &[
    "tier",
    "lifecycle",
    "channel",
    "city",
    "region",
    "rfm",
    "removed",
    "consent",
];
/// The purposes whose consent coverage the `consent` dimension counts.
pub(crate) const COVERAGE_PURPOSES: &[&str] = &[
    "analytics",
    "personalization",
    "marketing",
    "marketing.email",
    "marketing.sms",
    "marketing.push",
];
/// The consent states of the index, in the order removals are explained.
const CONSENT_STATES: &[&str] = &["denied", "withdrawn", "stale", "none", "granted"];
const TIERS: &[&str] = &["vip", "high_potential", "ordinary", "churn_warning"];
const LIFECYCLE: &[&str] = &["acquisition", "growth", "maturity", "decline", "churned"];
const CHANNELS: &[&str] = &[
    "web",
    "ios",
    "android",
    "mini_program",
    "crm",
    "pos",
    "customer_service",
    "social",
    "email",
    "sms",
];
/// Cities and regions: the most frequent ones.
const TOP_PLACES: usize = 12;

/// One bar of a chart: a value and its people, or `None` when fewer than the minimum.
#[derive(Debug, Clone, Serialize)]
pub struct Bucket {
    pub value: String,
    pub people: Option<u64>,
}

/// One cell of the RFM grid.
#[derive(Debug, Clone, Serialize)]
pub struct GridCell {
    pub r: i64,
    pub f: i64,
    pub people: Option<u64>,
}

#[derive(Debug, Clone, Serialize, Default)]
pub struct Breakdown {
    pub purpose: String,
    /// Everyone the condition matches, whatever the policies allow (the base of shares).
    pub matched: u64,
    /// Counts below this are withheld (`people: null`).
    pub suppressed_below: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tier: Option<Vec<Bucket>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub lifecycle: Option<Vec<Bucket>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub channel: Option<Vec<Bucket>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub city: Option<Vec<Bucket>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub region: Option<Vec<Bucket>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rfm: Option<Vec<GridCell>>,
    /// Matched people the policies removed for the purpose, by their consent state for it:
    /// `denied`, `withdrawn`, `stale` (given to an older notice or expired), `none`, and
    /// `granted` (removed by another rule: an objection, a restriction, age, jurisdiction,
    /// a sensitive selection).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub removed: Option<Vec<Bucket>>,
    /// Consent coverage: of the matched people, those who granted each purpose (whatever
    /// else the policies say about them), for the taxonomy's main purposes.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub consent: Option<Vec<Bucket>>,
}

/// `field` equals `value`.
pub(crate) fn equals(field: &str, value: &str) -> Condition {
    Condition::Leaf(Leaf {
        field: field.to_string(),
        op: Op::Eq,
        value: Some(serde_json::Value::String(value.to_string())),
        values: None,
        gte: None,
        gt: None,
        lte: None,
        lt: None,
    })
}

fn and_equals(condition: &Condition, field: &str, value: &str) -> Condition {
    Condition::All {
        all: vec![condition.clone(), equals(field, value)],
    }
}

impl Engine {
    /// `POST /v1/audiences/breakdown`.
    pub fn audience_breakdown(
        &self,
        query: &AudienceQuery,
        purpose: &str,
        dimensions: &[String],
        access: &Access,
    ) -> Result<Breakdown, EngineError> {
        for dimension in dimensions {
            if !DIMENSIONS.contains(&dimension.as_str()) {
                return Err(EngineError::InvalidRequest(format!(
                    "{dimension:?} is not a dimension; dimensions are {}",
                    DIMENSIONS.join(", ")
                )));
            }
        }
        let condition = self.audience_condition(query)?;
        self.check_purpose(Action::Audience, access, purpose)?;
        let k = self.min_audience_size();
        let shown = |people: u64| (people >= k || people == 0).then_some(people);
        // One view for every count: the buckets add up to `matched` while the indexer commits.
        let index = self.search_index()?.view();
        let buckets = |field: &str, values: Vec<String>| -> Result<Vec<Bucket>, EngineError> {
            values
                .into_iter()
                .map(|value| {
                    let count = self.count_condition_in(
                        &index,
                        &and_equals(&condition, field, &value),
                        purpose,
                    )?;
                    Ok(Bucket {
                        value,
                        people: shown(count.count),
                    })
                })
                .collect()
        };
        let fixed = |values: &[&str]| values.iter().map(|v| v.to_string()).collect::<Vec<_>>();
        let mut out = Breakdown {
            purpose: purpose.to_string(),
            matched: self
                .count_condition_in(&index, &condition, purpose)?
                .matched,
            suppressed_below: k,
            ..Breakdown::default()
        };
        for dimension in dimensions {
            match dimension.as_str() {
                "tier" => out.tier = Some(buckets("tier", fixed(TIERS))?),
                "lifecycle" => out.lifecycle = Some(buckets("lifecycle", fixed(LIFECYCLE))?),
                "channel" => {
                    let mut channels = buckets("channel", fixed(CHANNELS))?;
                    channels.retain(|bucket| bucket.people != Some(0));
                    out.channel = Some(channels);
                }
                field @ ("city" | "region") => {
                    let top = index
                        .top_terms(field, TOP_PLACES)
                        .map_err(crate::indexer::index_error)?;
                    let mut places = buckets(field, top)?;
                    places.retain(|bucket| bucket.people != Some(0));
                    if field == "city" {
                        out.city = Some(places);
                    } else {
                        out.region = Some(places);
                    }
                }
                "consent" => {
                    let known = self.purposes();
                    let mut granted = Vec::new();
                    for coverage in COVERAGE_PURPOSES
                        .iter()
                        .filter(|p| known.iter().any(|k| k == *p))
                    {
                        let field = format!("consent.{}", coverage.replace('.', "_"));
                        let count = self.count_condition_in(
                            &index,
                            &and_equals(&condition, &field, "granted"),
                            purpose,
                        )?;
                        granted.push(Bucket {
                            value: (*coverage).to_string(),
                            people: shown(count.matched),
                        });
                    }
                    out.consent = Some(granted);
                }
                "removed" => {
                    let field = format!("consent.{}", purpose.replace('.', "_"));
                    let mut removed = Vec::new();
                    for state in CONSENT_STATES {
                        let count = self.count_condition_in(
                            &index,
                            &and_equals(&condition, &field, state),
                            purpose,
                        )?;
                        removed.push(Bucket {
                            value: (*state).to_string(),
                            people: shown(count.removed_by_policy),
                        });
                    }
                    removed.retain(|bucket| bucket.people != Some(0));
                    out.removed = Some(removed);
                }
                "rfm" => {
                    let sensitive = self.sensitive_selection(&condition, purpose)?;
                    let counted = if sensitive.is_empty() {
                        condition.clone()
                    } else {
                        Self::with_sensitive_consents(&condition, purpose, &sensitive)
                    };
                    let cells = index
                        .grid(&counted, &self.purposes(), purpose, "rfm_r", "rfm_f")
                        .map_err(crate::indexer::index_error)?;
                    out.rfm = Some(
                        cells
                            .into_iter()
                            .map(|((r, f), people)| GridCell {
                                r,
                                f,
                                people: shown(people),
                            })
                            .collect(),
                    );
                }
                _ => {}
            }
        }
        self.audit_audience(
            access,
            "audience.breakdown",
            Some(purpose),
            dimensions.to_vec(),
        )?
        .wait_durable()?;
        Ok(out)
    }
}
