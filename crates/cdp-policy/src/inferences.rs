//! What the values audiences select by reveal (PIPL Art 28, GDPR Art 9): product categories and
//! interests, tags and event names are mapped to data categories by `inferences.yaml`.
//!
//! A value is normalised (lower case, `-` and spaces as `_`) and matched term by term: an
//! ASCII term matches a whole word of the value (words split at anything that is not a letter
//! or digit), a term with other characters (Chinese) matches any part of it. A value that
//! matches a sensitive category's term is that category whatever else it matches (the most
//! revealing reading wins); else the first ordinary category that matches; else it is
//! unclassified.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// `inferences.yaml`.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct InferencesFile {
    pub version: u32,
    /// Data category -> the terms that reveal it.
    pub categories: BTreeMap<String, InferenceTerms>,
}

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct InferenceTerms {
    pub terms: Vec<String>,
}

/// What a selector value reveals.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Inference {
    /// A sensitive category (PIPL Art 28, GDPR Art 9).
    Sensitive(String),
    /// An ordinary category.
    Ordinary(String),
    /// No term matches.
    Unclassified,
}

/// Lower case, `-` and spaces as `_`.
pub fn normalise_value(value: &str) -> String {
    value
        .trim()
        .to_lowercase()
        .chars()
        .map(|c| {
            if c == '-' || c.is_whitespace() {
                '_'
            } else {
                c
            }
        })
        .collect()
}

fn matches(value: &str, term: &str) -> bool {
    if term.is_ascii() {
        value
            .split(|c: char| !c.is_alphanumeric())
            .filter(|word| !word.is_empty())
            .any(|word| word == term)
            || value == term
            || (term.contains('_') && value.contains(term))
    } else {
        value.contains(term)
    }
}

/// Classifies `value` with the file's terms; `is_sensitive` says which categories are.
pub(crate) fn classify(
    file: &InferencesFile,
    value: &str,
    is_sensitive: impl Fn(&str) -> bool,
) -> Inference {
    let value = normalise_value(value);
    let mut ordinary = None;
    for (category, terms) in &file.categories {
        if !terms.terms.iter().any(|term| matches(&value, term)) {
            continue;
        }
        if is_sensitive(category) {
            return Inference::Sensitive(category.clone());
        }
        ordinary.get_or_insert_with(|| category.clone());
    }
    ordinary.map_or(Inference::Unclassified, Inference::Ordinary)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn words_and_parts_match_and_the_sensitive_reading_wins() {
        let mut file = InferencesFile::default();
        for (category, terms) in [
            ("user.health", vec!["pharmacy", "药"]),
            (
                "user.behavior.purchase",
                vec!["shoes", "food", "health_food"],
            ),
        ] {
            file.categories.insert(
                category.into(),
                InferenceTerms {
                    terms: terms.into_iter().map(str::to_string).collect(),
                },
            );
        }
        let sensitive = |c: &str| c.starts_with("user.health");
        let health = Inference::Sensitive("user.health".into());
        assert_eq!(classify(&file, "Pharmacy", sensitive), health);
        assert_eq!(classify(&file, "online-pharmacy", sensitive), health);
        assert_eq!(classify(&file, "中药 保健", sensitive), health);
        assert_eq!(
            classify(&file, "Running Shoes", sensitive),
            Inference::Ordinary("user.behavior.purchase".into())
        );
        // A word inside another word is not that word.
        assert_eq!(
            classify(&file, "pharmacyst", sensitive),
            Inference::Unclassified
        );
        assert_eq!(
            classify(&file, "gardening", sensitive),
            Inference::Unclassified
        );
    }
}
