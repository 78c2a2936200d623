//! Which value of a trait survives when several sources disagree.

use std::collections::BTreeMap;

use serde::Deserialize;

use crate::records::TraitValue;

/// A survivorship rule for one trait.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case", tag = "rule")]
pub enum Survivorship {
    /// The value with the newest event time wins (the default).
    MostRecent,
    /// The first value ever seen stays.
    FirstSeen,
    /// The newest value wins unless it is empty (null, "", [] or {}).
    MostRecentNonEmpty,
    /// A value from a source earlier in the list beats later ones; ties go to the newest.
    /// Sources are named by source id; unlisted sources rank last.
    SourcePriority { sources: Vec<String> },
}

/// Survivorship per trait name, with a default.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SurvivorshipRules {
    #[serde(default)]
    pub default: Option<Survivorship>,
    #[serde(default)]
    pub traits: BTreeMap<String, Survivorship>,
}

fn is_empty(value: &serde_json::Value) -> bool {
    match value {
        serde_json::Value::Null => true,
        serde_json::Value::String(text) => text.is_empty(),
        serde_json::Value::Array(items) => items.is_empty(),
        serde_json::Value::Object(map) => map.is_empty(),
        _ => false,
    }
}

impl SurvivorshipRules {
    pub fn rule(&self, name: &str) -> &Survivorship {
        self.traits
            .get(name)
            .or(self.default.as_ref())
            .unwrap_or(&Survivorship::MostRecent)
    }

    /// The value of trait `name` that survives between `current` and `incoming`. Symmetric in
    /// time: the result does not depend on which one arrived first.
    pub fn choose(&self, name: &str, current: &TraitValue, incoming: &TraitValue) -> TraitValue {
        let first_seen = current.first_seen.min(incoming.first_seen);
        let newer = |a: &TraitValue, b: &TraitValue| (a.at, &a.source_id) >= (b.at, &b.source_id);
        let mut winner = match self.rule(name) {
            Survivorship::MostRecent => {
                if newer(incoming, current) {
                    incoming
                } else {
                    current
                }
            }
            Survivorship::FirstSeen => {
                if (incoming.first_seen, &incoming.source_id)
                    < (current.first_seen, &current.source_id)
                {
                    incoming
                } else {
                    current
                }
            }
            Survivorship::MostRecentNonEmpty => {
                match (is_empty(&current.value), is_empty(&incoming.value)) {
                    (false, true) => current,
                    (true, false) => incoming,
                    _ => {
                        if newer(incoming, current) {
                            incoming
                        } else {
                            current
                        }
                    }
                }
            }
            Survivorship::SourcePriority { sources } => {
                let rank = |value: &TraitValue| {
                    sources
                        .iter()
                        .position(|source| *source == value.source_id)
                        .unwrap_or(usize::MAX)
                };
                match rank(incoming).cmp(&rank(current)) {
                    std::cmp::Ordering::Less => incoming,
                    std::cmp::Ordering::Greater => current,
                    std::cmp::Ordering::Equal => {
                        if newer(incoming, current) {
                            incoming
                        } else {
                            current
                        }
                    }
                }
            }
        }
        .clone();
        winner.first_seen = first_seen;
        winner
    }
}
