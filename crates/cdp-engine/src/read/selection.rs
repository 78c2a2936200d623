//! What an audience's selection reveals (issue 17 item 1; PIPL Art 28, 29, GDPR Art 9).
//!
//! The values a condition selects by (interests, tags, event names) are classified with the
//! policies' `inferences.yaml`. Selecting by one that reveals a sensitive category makes the
//! audience need, from each member, a separate consent to the purpose naming that category:
//! the engine adds the test to the condition (`sensitive_consent`, indexed per person) for
//! counts and member lists, and states the categories in the decision of every export row
//! (`DecisionRequest::inferred`). For marketing purposes a value nothing classifies is refused:
//! it may reveal anything. Traits the index does not hold (sensitive, unclassified, or of
//! categories it never indexes) cannot be selected by: asking for one is an error, not a
//! silent zero.

use std::collections::BTreeSet;

use cdp_index::query::{Condition, FieldKind, Leaf, Op, resolve_field};
use cdp_policy::Inference;
use serde::Serialize;

use crate::{Engine, EngineError};

/// A value of the condition that reveals a sensitive category.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SensitiveSelector {
    /// `interest:pharmacy`, `events.insulin_refill.30d`...
    pub selector: String,
    pub category: String,
}

/// The values a leaf selects by, with the selector text.
fn selected_values(leaf: &Leaf, kind: &FieldKind) -> Vec<(String, String)> {
    let mut values = Vec::new();
    match kind {
        FieldKind::Keyword(field @ ("interest" | "tag")) if leaf.op != Op::Exists => {
            for value in leaf.value.iter().chain(leaf.values.iter().flatten()) {
                if let Some(text) = value.as_str() {
                    values.push((format!("{field}:{text}"), text.to_string()));
                }
            }
        }
        FieldKind::EventCount { event, .. } => {
            values.push((leaf.field.clone(), event.clone()));
        }
        _ => {}
    }
    values
}

fn leaves(condition: &Condition, out: &mut Vec<Leaf>) {
    match condition {
        Condition::All { all: items } | Condition::Any { any: items } => {
            for item in items {
                leaves(item, out);
            }
        }
        Condition::Not { not } => leaves(not, out),
        Condition::Leaf(leaf) => out.push(leaf.clone()),
    }
}

/// `a.b.c`, `a.b`, `a`.
fn ancestors(key: &str) -> Vec<&str> {
    std::iter::successors(Some(key), |k| k.rsplit_once('.').map(|(parent, _)| parent)).collect()
}

impl Engine {
    /// The sensitive categories `condition` selects by, for `purpose`; refuses unindexed traits
    /// and, for marketing purposes, unclassified values.
    pub(crate) fn sensitive_selection(
        &self,
        condition: &Condition,
        purpose: &str,
    ) -> Result<Vec<SensitiveSelector>, EngineError> {
        let policies = self.policies();
        let purposes: Vec<String> = policies.taxonomy.purposes.keys().cloned().collect();
        let mut all = Vec::new();
        leaves(condition, &mut all);
        let mut out = Vec::new();
        for leaf in &all {
            let Ok(kind) = resolve_field(&leaf.field, &purposes) else {
                continue;
            };
            if let FieldKind::Trait(name) = &kind {
                self.indexed_trait(name)?;
                continue;
            }
            for (selector, value) in selected_values(leaf, &kind) {
                match policies.infer(&value) {
                    Inference::Sensitive(category) => {
                        let found = SensitiveSelector { selector, category };
                        if !out.contains(&found) {
                            out.push(found);
                        }
                    }
                    Inference::Ordinary(_) => {}
                    Inference::Unclassified if policies.is_marketing(purpose) => {
                        return Err(EngineError::InvalidRequest(format!(
                            "{} is not classified in the policies' inferences.yaml: for a marketing purpose a value nothing classifies may reveal sensitive information (PIPL Art 28, GDPR Art 9); classify it there first",
                            selector.chars().take(96).collect::<String>()
                        )));
                    }
                    Inference::Unclassified => {}
                }
            }
        }
        Ok(out)
    }

    /// `traits.<name>` can be selected by only if the index holds it.
    fn indexed_trait(&self, name: &str) -> Result<(), EngineError> {
        let policies = self.policies();
        let field = format!("traits.{name}");
        let Some(category) = policies.category_of(&field) else {
            return Err(EngineError::InvalidRequest(format!(
                "{field} is not classified in fields.yaml: unclassified traits are not indexed, so no audience can select by it"
            )));
        };
        if policies.is_sensitive(category) {
            return Err(EngineError::InvalidRequest(format!(
                "{field} is sensitive ({category}): it is never indexed, so no audience can select by it (PIPL Art 28, GDPR Art 9)"
            )));
        }
        if !crate::indexer::is_indexable(category) {
            return Err(EngineError::InvalidRequest(format!(
                "{field} ({category}) is not indexed: audiences select by traits of gender, behaviour and region categories only"
            )));
        }
        Ok(())
    }

    /// `condition`, and for each sensitive category it selects by, the test that the person
    /// gave a separate consent naming it (or an ancestor) to `purpose` (or an ancestor).
    pub(crate) fn with_sensitive_consents(
        condition: &Condition,
        purpose: &str,
        sensitive: &[SensitiveSelector],
    ) -> Condition {
        if sensitive.is_empty() {
            return condition.clone();
        }
        let categories: BTreeSet<&str> = sensitive.iter().map(|s| s.category.as_str()).collect();
        let mut all = vec![condition.clone()];
        for category in categories {
            let mut values = Vec::new();
            for granted_purpose in ancestors(purpose) {
                for named in ancestors(category) {
                    values.push(serde_json::Value::String(format!(
                        "{granted_purpose}|{named}"
                    )));
                }
            }
            all.push(Condition::Leaf(Leaf {
                field: "sensitive_consent".into(),
                op: Op::In,
                value: None,
                values: Some(values),
                gte: None,
                gt: None,
                lte: None,
                lt: None,
            }));
        }
        Condition::All { all }
    }
}
