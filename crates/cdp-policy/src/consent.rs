//! What a person's consent records mean for one purpose.
//!
//! The ledger is append-only; this module reduces it. Rules (docs/policies.md):
//! - A record applies to a purpose if its purpose is that purpose or an ancestor
//!   (`marketing` covers `marketing.sms`), and to a recipient if it names none or that one.
//! - Records come from an *origin*: the identifier or source they arrived with, or `profile`
//!   for a decision about the whole person (the consent API with a profile id). Per origin the
//!   latest applicable record counts; a `profile` record supersedes every earlier record.
//! - Across origins the most restrictive wins: a merge of two people's records never turns
//!   one's denial into a grant (any denial or withdrawal denies).
//! - A grant to a notice version other than the purpose's current one is stale (PIPL Art 14).
//! - Where a separate consent is needed (PIPL Art 23, 29, 39), only records marked `separate`
//!   (and naming the recipient, where there is one) grant; any denial still denies.
//! - A separate consent naming a recipient states what it covers (`scopes`): providing the
//!   data to that recipient (PIPL 23) and transferring it abroad (PIPL 39) are separate
//!   consents, and one never implies the other. A record that states no scope covers the
//!   provision only: a transfer abroad is consented to in so many words.
//! - A separate consent may name sensitive data `categories` (`user.health`): the person agrees
//!   that the purpose selects or uses what reveals them (PIPL Art 29, GDPR Art 9(2)(a)). Such a
//!   record speaks of those categories only: it counts for a question about a category it
//!   covers (a category or an ancestor of it), and for no other question.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

/// The status a consent record sets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ConsentStatus {
    Granted,
    Denied,
    Withdrawn,
}

impl ConsentStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Granted => "granted",
            Self::Denied => "denied",
            Self::Withdrawn => "withdrawn",
        }
    }
}

/// What a separate consent naming a recipient covers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ConsentScope {
    /// Providing the data to the recipient (PIPL Art 23).
    Provision,
    /// Transferring the data to the recipient abroad (PIPL Art 39).
    CrossBorder,
}

impl ConsentScope {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Provision => "provision",
            Self::CrossBorder => "cross_border",
        }
    }
}

/// The origin of records that decide for the whole person.
pub const PROFILE_ORIGIN: &str = "profile";

fn profile_origin() -> String {
    PROFILE_ORIGIN.into()
}

/// One consent record, as the policy engine sees it (no evidence, no personal data).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConsentFact {
    pub purpose: String,
    pub status: ConsentStatus,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub recipient: Option<String>,
    #[serde(default)]
    pub separate: bool,
    #[serde(default)]
    pub guardian: bool,
    /// What a separate consent naming a recipient covers (none stated: the provision only).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub scopes: Vec<ConsentScope>,
    /// Sensitive data categories a separate consent covers (see the module's rules).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub categories: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub notice_version: Option<String>,
    #[serde(default = "profile_origin")]
    pub origin: String,
    #[serde(with = "time::serde::rfc3339")]
    pub at: OffsetDateTime,
}

impl ConsentFact {
    /// Whether this record covers `scope` (see the module's rules).
    pub fn covers(&self, scope: ConsentScope) -> bool {
        if self.scopes.is_empty() {
            scope == ConsentScope::Provision
        } else {
            self.scopes.contains(&scope)
        }
    }
}

/// The reduced state for one purpose.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ConsentState {
    /// No record applies.
    None,
    Granted,
    /// Granted to an older notice version only.
    Stale,
    Denied,
    Withdrawn,
}

impl ConsentState {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::None => "none",
            Self::Granted => "granted",
            Self::Stale => "stale",
            Self::Denied => "denied",
            Self::Withdrawn => "withdrawn",
        }
    }

    pub fn is_refusal(self) -> bool {
        matches!(self, Self::Denied | Self::Withdrawn)
    }
}

/// The outcome for one purpose (and recipient).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConsentOutcome {
    pub state: ConsentState,
    /// A counted, current grant was given by a guardian.
    pub guardian: bool,
}

/// What consent to look for.
#[derive(Debug, Clone, Copy)]
pub struct ConsentQuery<'a> {
    pub purpose: &'a str,
    pub recipient: Option<&'a str>,
    /// Only separate consents grant (and, with a recipient, only ones naming it).
    pub separate: bool,
    /// With `separate` and a recipient: what the consent must cover.
    pub scope: Option<ConsentScope>,
    /// The notice version a grant must be for, if the purpose has one.
    pub notice_version: Option<&'a str>,
    /// A sensitive data category: only separate records naming it (or an ancestor) count.
    pub category: Option<&'a str>,
}

/// `granted` covers `requested`: equal, or an ancestor in the dotted taxonomy.
pub fn covers(granted: &str, requested: &str) -> bool {
    granted == requested
        || (requested.len() > granted.len()
            && requested.starts_with(granted)
            && requested.as_bytes()[granted.len()] == b'.')
}

/// Reduces `facts` (in ledger order) for `query`.
pub fn resolve(facts: &[ConsentFact], query: ConsentQuery<'_>) -> ConsentOutcome {
    let counted: Vec<(usize, &ConsentFact)> = facts
        .iter()
        .enumerate()
        .filter(|(_, fact)| covers(&fact.purpose, query.purpose))
        .filter(|(_, fact)| {
            fact.recipient.is_none() || fact.recipient.as_deref() == query.recipient
        })
        .filter(|(_, fact)| {
            fact.status != ConsentStatus::Granted
                || !query.separate
                || (fact.separate
                    && (query.recipient.is_none() || fact.recipient.as_deref() == query.recipient)
                    && query.scope.is_none_or(|scope| fact.covers(scope)))
        })
        // A record that states its scopes speaks of those only: withdrawing the transfer
        // abroad leaves the provision standing. A question that names no scope is about the
        // provision, what a recipient-naming record means by default.
        .filter(|(_, fact)| {
            fact.scopes.is_empty()
                || fact
                    .scopes
                    .contains(&query.scope.unwrap_or(ConsentScope::Provision))
        })
        // A record about categories speaks of those only; a category is consented to by a
        // separate record that names it.
        .filter(|(_, fact)| match query.category {
            None => fact.categories.is_empty(),
            Some(category) => {
                fact.categories.iter().any(|named| covers(named, category))
                    && (fact.status != ConsentStatus::Granted || fact.separate)
            }
        })
        .collect();
    let newest = |a: &(usize, &ConsentFact)| (a.1.at, a.0);
    // A decision about the whole person supersedes everything before it.
    let cutoff = counted
        .iter()
        .filter(|(_, fact)| fact.origin == PROFILE_ORIGIN)
        .map(newest)
        .max();
    let mut latest: BTreeMap<&str, (usize, &ConsentFact)> = BTreeMap::new();
    for entry in counted {
        if cutoff.is_some_and(|cut| newest(&entry) < cut) {
            continue;
        }
        let slot = latest.entry(entry.1.origin.as_str()).or_insert(entry);
        if newest(&entry) > newest(slot) {
            *slot = entry;
        }
    }
    let mut state = ConsentState::None;
    let mut guardian = false;
    let mut refused = None;
    for (_, fact) in latest.values() {
        match fact.status {
            ConsentStatus::Withdrawn => refused = Some(ConsentState::Withdrawn),
            ConsentStatus::Denied => {
                refused.get_or_insert(ConsentState::Denied);
            }
            ConsentStatus::Granted => {
                let fresh = query
                    .notice_version
                    .is_none_or(|wanted| fact.notice_version.as_deref() == Some(wanted));
                if fresh {
                    state = ConsentState::Granted;
                    guardian |= fact.guardian;
                } else if state == ConsentState::None {
                    state = ConsentState::Stale;
                }
            }
        }
    }
    match refused {
        Some(refusal) => ConsentOutcome {
            state: refusal,
            guardian: false,
        },
        None => ConsentOutcome { state, guardian },
    }
}
