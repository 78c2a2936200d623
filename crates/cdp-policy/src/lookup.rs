//! What the policies say about a caller, a purpose, a field, a category or a person: the
//! lookups decisions are made of, shared with the engine (the index, exports, reads). The
//! decision itself is `decide.rs`.

use crate::consent::covers;
use crate::decide::{CallerFacts, Decision, SubjectFacts};
use crate::load::{PolicySet, ancestors, parent};
use crate::model::JurisdictionFile;

impl PolicySet {
    /// Whether `caller` may state `purpose` (roles.yaml, narrowed by the token's purposes).
    pub fn caller_may_use(&self, caller: &CallerFacts, purpose: &str) -> bool {
        let by_role = caller.roles.iter().any(|role| {
            let role = role.parse::<crate::Role>().ok();
            role.and_then(|role| self.roles.roles.get(&role))
                .is_some_and(|def| {
                    def.purposes
                        .iter()
                        .any(|pattern| pattern == "*" || covers(pattern, purpose))
                })
        });
        let by_token = caller.purposes.is_empty()
            || caller
                .purposes
                .iter()
                .any(|pattern| pattern == "*" || covers(pattern, purpose));
        by_role && by_token
    }

    /// Whether `purpose` is a marketing purpose (advertising included).
    pub fn is_marketing(&self, purpose: &str) -> bool {
        self.purpose_flag(purpose, |p| p.marketing)
    }

    /// Whether `purpose` (or an ancestor) carries a flag.
    pub(crate) fn purpose_flag(
        &self,
        purpose: &str,
        flag: impl Fn(&crate::model::PurposeDef) -> bool,
    ) -> bool {
        ancestors(purpose).any(|candidate| self.taxonomy.purposes.get(candidate).is_some_and(&flag))
    }

    /// The notice version consents to `purpose` must be for.
    pub fn notice_version(&self, purpose: &str) -> Option<&str> {
        ancestors(purpose).find_map(|candidate| {
            self.taxonomy
                .purposes
                .get(candidate)
                .and_then(|def| def.notice_version.as_deref())
        })
    }

    /// Whether a data category (or an ancestor) is sensitive.
    pub fn is_sensitive(&self, category: &str) -> bool {
        ancestors(category).any(|candidate| {
            self.taxonomy
                .data_categories
                .get(candidate)
                .is_some_and(|def| def.sensitive)
        })
    }

    /// What a value audiences select by (an interest, a tag, an event name) reveals.
    pub fn infer(&self, value: &str) -> crate::inferences::Inference {
        crate::inferences::classify(&self.inferences, value, |c| self.is_sensitive(c))
    }

    /// The category of a profile field (`traits.x.y` falls back to `traits.x`).
    pub fn category_of(&self, field: &str) -> Option<&str> {
        let mut current = Some(field);
        while let Some(candidate) = current {
            if let Some(category) = self.fields.fields.get(candidate) {
                return Some(category);
            }
            current = parent(candidate).filter(|p| p.contains('.'));
        }
        None
    }

    /// Whether the person is a minor under any jurisdiction that applies to them.
    pub fn is_minor(&self, subject: &SubjectFacts) -> bool {
        let Some(age) = subject.age else {
            return false;
        };
        self.jurisdictions_for(subject).0.iter().any(|j| {
            let threshold = subject
                .residency
                .as_ref()
                .and_then(|country| j.minors.by_country.get(country))
                .copied()
                .unwrap_or(j.minors.age_under);
            age < threshold
        })
    }

    /// The largest minimum audience size among the jurisdictions `decision` applied, found by
    /// their names (an export asks it per member: finding the person's jurisdictions a second
    /// time was 4 % of a send). `None` when the decision ended before any applied (an unknown
    /// purpose, a caller's roles).
    pub fn min_audience_of(&self, decision: &Decision) -> Option<u64> {
        if decision.jurisdictions.is_empty() {
            return None;
        }
        Some(
            self.jurisdictions
                .iter()
                .filter(|j| decision.jurisdictions.contains(&j.jurisdiction))
                .map(|j| j.export.min_audience_size)
                .max()
                .unwrap_or(0),
        )
    }

    /// The jurisdictions that apply to a person; all of them when none can be told.
    pub fn jurisdictions_for(&self, subject: &SubjectFacts) -> (Vec<&JurisdictionFile>, bool) {
        let mut matched: Vec<usize> = subject
            .residency
            .iter()
            .chain(subject.regions.iter())
            .filter_map(|place| self.by_region.get(place))
            .flatten()
            .copied()
            .collect();
        if matched.is_empty() {
            return (self.jurisdictions.iter().collect(), true);
        }
        // In file order, each once (as a filter over the files gave them).
        matched.sort_unstable();
        matched.dedup();
        (
            matched
                .into_iter()
                .filter_map(|n| self.jurisdictions.get(n))
                .collect(),
            false,
        )
    }
}
