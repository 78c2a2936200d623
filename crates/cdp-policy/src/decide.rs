//! decide(action, purpose, caller, recipient, fields, subject facts) -> allow/deny, obligations
//! per field, reasons with citations.
//!
//! Order of checks within one jurisdiction (each adds a reason; any denial denies):
//! restriction, lawful basis of the purpose (with the consent it needs, or the objection it
//! allows), objection to personalisation, minors, recipient (purpose, provision to another
//! controller, cross-border), publication, then fields (unclassified, sensitive, display
//! masking). A person under several jurisdictions gets every jurisdiction's checks: any
//! denial denies, and per field the most restrictive obligation wins.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use crate::consent::{
    ConsentFact, ConsentOutcome, ConsentQuery, ConsentScope, ConsentState, covers, resolve,
};
use crate::load::{PolicySet, ancestors};
use crate::model::{JurisdictionFile, LegalBasis, PurposeRule, Transform};

/// What is being done with the person's data.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    /// Showing a profile to a user of the API.
    Read,
    /// Including the person in an audience.
    Audience,
    /// Handing the person's data to a recipient.
    Export,
    /// Making the data public.
    Publish,
}

impl Action {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Read => "read",
            Self::Audience => "audience",
            Self::Export => "export",
            Self::Publish => "publish",
        }
    }
}

/// Who asks: the roles and purposes of their token.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CallerFacts {
    pub roles: Vec<String>,
    /// The token's `purposes` claim; empty means "whatever the roles allow".
    #[serde(default)]
    pub purposes: Vec<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RecipientRole {
    /// Processes on our behalf under a contract (PIPL Art 21, GDPR Art 28).
    Processor,
    /// Another handler deciding its own purposes (PIPL Art 23).
    Controller,
}

/// A recipient of an export.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RecipientFacts {
    pub id: String,
    pub role: RecipientRole,
    /// Where the recipient processes the data (CN, EU, DE, US...).
    pub region: String,
    /// none, standard_contract, assessment, certification, adequacy, scc.
    pub transfer_mechanism: String,
    pub allowed_purposes: Vec<String>,
}

/// What the engine knows about the person, reduced to what the rules need. Two people with
/// equal facts get equal decisions (the search indexer relies on it to decide once for both).
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SubjectFacts {
    /// Country of residence (ISO 3166 alpha-2), if known.
    #[serde(default)]
    pub residency: Option<String>,
    /// Regions of the sources that collected the person's data.
    #[serde(default)]
    pub regions: Vec<String>,
    #[serde(default)]
    pub age: Option<u32>,
    /// Processing restricted to storage (PIPL Art 44/47, GDPR Art 18).
    #[serde(default)]
    pub restricted: bool,
    #[serde(default)]
    pub consents: Vec<ConsentFact>,
}

/// A request to decide.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DecisionRequest {
    pub action: Action,
    pub purpose: String,
    /// `None`: the caller is not checked (a dry run about the person alone).
    #[serde(default)]
    pub caller: Option<CallerFacts>,
    #[serde(default)]
    pub recipient: Option<RecipientFacts>,
    /// Fields to project (`identifiers.phone`, `traits.firstName`, `events`...).
    #[serde(default)]
    pub fields: Vec<String>,
    /// Sensitive data categories the selection of people reveals (an audience of insulin
    /// buyers reveals `user.health`): each needs the person's separate consent naming it.
    #[serde(default)]
    pub inferred: Vec<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Effect {
    Allow,
    Deny,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ReasonKind {
    Allow,
    Deny,
    Obligation,
    Note,
}

/// One step of the decision, with the articles behind it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Reason {
    /// The rule that spoke: `pipl.purposes.marketing`, `gdpr.minors`, `roles`...
    pub rule: String,
    pub effect: ReasonKind,
    pub message: String,
    pub cite: Vec<String>,
}

impl DecisionRequest {
    /// May the person be in an audience for `purpose`, whoever asks (the index's `allowed`
    /// purposes and the re-decision of each listed member).
    pub fn audience(purpose: impl Into<String>) -> Self {
        Self {
            action: Action::Audience,
            purpose: purpose.into(),
            caller: None,
            recipient: None,
            fields: Vec::new(),
            inferred: Vec::new(),
        }
    }
}

/// The answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Decision {
    pub decision: Effect,
    pub action: Action,
    pub purpose: String,
    /// The jurisdictions whose rules applied.
    pub jurisdictions: Vec<String>,
    /// Per requested field, how it may be shown or handed over (only when allowed).
    pub obligations: BTreeMap<String, Transform>,
    pub reasons: Vec<Reason>,
    pub policy_version: String,
}

impl Decision {
    pub fn allowed(&self) -> bool {
        self.decision == Effect::Allow
    }

    /// How `field` may be shown or handed over: a field the decision does not list is dropped.
    pub fn obligation(&self, field: &str) -> Transform {
        self.obligations
            .get(field)
            .copied()
            .unwrap_or(Transform::Drop)
    }

    /// Every article cited by the reasons, sorted.
    pub fn citations(&self) -> BTreeSet<&str> {
        self.reasons
            .iter()
            .flat_map(|reason| reason.cite.iter().map(String::as_str))
            .collect()
    }

    /// The denying reasons' messages, joined: what a 403 says.
    pub fn denial_summary(&self) -> String {
        let denials: Vec<String> = self
            .reasons
            .iter()
            .filter(|reason| reason.effect == ReasonKind::Deny)
            .map(|reason| {
                if reason.cite.is_empty() {
                    reason.message.clone()
                } else {
                    format!("{} ({})", reason.message, reason.cite.join(", "))
                }
            })
            .collect();
        denials.join("; ")
    }
}

/// The nearest entry for `key` or one of its ancestors.
fn nearest<'m, V>(map: &'m BTreeMap<String, V>, key: &str) -> Option<(&'m str, &'m V)> {
    ancestors(key).find_map(|candidate| {
        map.get_key_value(candidate)
            .map(|(found, value)| (found.as_str(), value))
    })
}

struct Outcome {
    denied: bool,
    reasons: Vec<Reason>,
    obligations: BTreeMap<String, Transform>,
}

impl Outcome {
    fn deny(&mut self, rule: String, message: String, cite: &[String]) {
        self.denied = true;
        self.reasons.push(Reason {
            rule,
            effect: ReasonKind::Deny,
            message,
            cite: cite.to_vec(),
        });
    }

    fn allow(&mut self, rule: String, message: String, cite: &[String]) {
        self.reasons.push(Reason {
            rule,
            effect: ReasonKind::Allow,
            message,
            cite: cite.to_vec(),
        });
    }

    fn oblige(&mut self, field: &str, transform: Transform, rule: String, cite: &[String]) {
        let slot = self
            .obligations
            .entry(field.to_string())
            .or_insert(Transform::Keep);
        if transform.strictness() > slot.strictness() {
            *slot = transform;
        }
        if transform != Transform::Keep {
            self.reasons.push(Reason {
                rule,
                effect: ReasonKind::Obligation,
                message: format!("{field}: {}", transform.label()),
                cite: cite.to_vec(),
            });
        }
    }
}

fn concat(a: &[String], b: &[String]) -> Vec<String> {
    let mut out = a.to_vec();
    for cite in b {
        if !out.contains(cite) {
            out.push(cite.clone());
        }
    }
    out
}

impl PolicySet {
    /// Decides a request about one person.
    pub fn decide(&self, request: &DecisionRequest, subject: &SubjectFacts) -> Decision {
        let mut decision = Decision {
            decision: Effect::Deny,
            action: request.action,
            purpose: request.purpose.clone(),
            jurisdictions: Vec::new(),
            obligations: BTreeMap::new(),
            reasons: Vec::new(),
            policy_version: self.version.clone(),
        };
        let purpose = request.purpose.as_str();
        if !self.taxonomy.purposes.contains_key(purpose) {
            decision.reasons.push(Reason {
                rule: "taxonomy.purposes".into(),
                effect: ReasonKind::Deny,
                message: format!("{purpose:?} is not a purpose of the taxonomy"),
                cite: Vec::new(),
            });
            return decision;
        }
        if let Some(caller) = &request.caller
            && !self.caller_may_use(caller, purpose)
        {
            decision.reasons.push(Reason {
                rule: "roles".into(),
                effect: ReasonKind::Deny,
                message: format!(
                    "the token (roles {}) may not state the purpose {purpose}",
                    caller.roles.join(", ")
                ),
                cite: Vec::new(),
            });
            return decision;
        }
        let (jurisdictions, all) = self.jurisdictions_for(subject);
        if all {
            decision.reasons.push(Reason {
                rule: "jurisdictions".into(),
                effect: ReasonKind::Note,
                message: "no jurisdiction covers the person's residency or sources: all apply, the most restrictive wins".into(),
                cite: Vec::new(),
            });
        }
        let mut denied = false;
        let mut obligations: BTreeMap<String, Transform> = BTreeMap::new();
        for jurisdiction in jurisdictions {
            decision
                .jurisdictions
                .push(jurisdiction.jurisdiction.clone());
            let outcome = self.decide_in(jurisdiction, request, subject);
            denied |= outcome.denied;
            decision.reasons.extend(outcome.reasons);
            for (field, transform) in outcome.obligations {
                let slot = obligations.entry(field).or_insert(Transform::Keep);
                if transform.strictness() > slot.strictness() {
                    *slot = transform;
                }
            }
        }
        if !denied {
            decision.decision = Effect::Allow;
            decision.obligations = obligations;
        }
        decision
    }

    /// The decision of one jurisdiction: a restriction or the lack of a lawful basis ends it;
    /// otherwise every check below adds its reasons and obligations.
    fn decide_in(
        &self,
        j: &JurisdictionFile,
        request: &DecisionRequest,
        subject: &SubjectFacts,
    ) -> Outcome {
        let id = j.jurisdiction.as_str();
        let purpose = request.purpose.as_str();
        let mut out = Outcome {
            denied: false,
            reasons: Vec::new(),
            obligations: BTreeMap::new(),
        };
        if subject.restricted {
            out.deny(
                format!("{id}.restriction"),
                "processing of this person is restricted to storage".into(),
                &j.restriction.cite,
            );
            return out;
        }
        let Some((rule_key, rule)) = nearest(&j.purposes, purpose) else {
            out.deny(
                format!("{id}.default"),
                format!("{} gives the purpose {purpose} no lawful basis", j.name),
                &j.default.cite,
            );
            return out;
        };
        let check = JurisdictionCheck {
            set: self,
            j,
            request,
            subject,
            id,
            purpose,
            notice: self.notice_version(purpose),
            marketing: self.purpose_flag(purpose, |p| p.marketing),
            personalised: self.purpose_flag(purpose, |p| p.personalised),
        };
        let general = check.consent(request.recipient.as_ref().map(|r| r.id.as_str()), false);
        check.lawful_basis(
            &mut out,
            &format!("{id}.purposes.{rule_key}"),
            rule,
            &general,
        );
        check.personalisation_objection(&mut out);
        check.minors(&mut out, rule, &general);
        if let Some(recipient) = &request.recipient {
            check.recipient(&mut out, recipient);
        }
        check.inferences(&mut out);
        if request.action == Action::Publish
            && check.consent(None, true).state != ConsentState::Granted
        {
            out.deny(
                format!("{id}.publish"),
                "publishing personal information needs the person's separate consent".into(),
                &j.publish.cite,
            );
        }
        for field in &request.fields {
            check.field(&mut out, field);
        }
        out
    }
}

/// One jurisdiction's file applied to one request about one person.
struct JurisdictionCheck<'a> {
    set: &'a PolicySet,
    j: &'a JurisdictionFile,
    request: &'a DecisionRequest,
    subject: &'a SubjectFacts,
    /// The jurisdiction's id: the prefix of every rule it reports.
    id: &'a str,
    purpose: &'a str,
    /// The current notice version of the purpose (consent to an older one is stale).
    notice: Option<&'a str>,
    marketing: bool,
    personalised: bool,
}

impl JurisdictionCheck<'_> {
    /// What the ledger says of the purpose (for `recipient`, or generally; `separate`: only
    /// separate consents count).
    fn consent(&self, recipient: Option<&str>, separate: bool) -> ConsentOutcome {
        self.consent_for(recipient, separate, None)
    }

    /// [`Self::consent`] counting only separate consents that cover `scope`.
    fn consent_for(
        &self,
        recipient: Option<&str>,
        separate: bool,
        scope: Option<ConsentScope>,
    ) -> ConsentOutcome {
        resolve(
            &self.subject.consents,
            ConsentQuery {
                purpose: self.purpose,
                recipient,
                separate,
                scope,
                notice_version: self.notice,
                category: None,
            },
        )
    }

    /// The articles a refusal cites (a withdrawal its own; marketing adds the objection).
    fn refusal_cite(&self, state: ConsentState) -> Vec<String> {
        let j = self.j;
        let base = if state == ConsentState::Withdrawn {
            &j.consent.withdrawal_cite
        } else {
            &j.consent.cite
        };
        if self.marketing {
            concat(base, &j.objection.marketing_cite)
        } else {
            base.clone()
        }
    }

    /// The purpose's lawful basis: consent on record, legitimate interest without an
    /// objection, or another basis.
    fn lawful_basis(
        &self,
        out: &mut Outcome,
        rule_id: &str,
        rule: &PurposeRule,
        general: &ConsentOutcome,
    ) {
        let (j, purpose) = (self.j, self.purpose);
        let rule_id = rule_id.to_string();
        match rule.legal_basis {
            LegalBasis::Consent => match general.state {
                ConsentState::Granted => out.allow(
                    rule_id,
                    format!("consent to {purpose} is on record"),
                    &concat(&rule.cite, &j.consent.cite),
                ),
                ConsentState::Stale => out.deny(
                    rule_id,
                    format!(
                        "consent to {purpose} was given to an older notice (current: {})",
                        self.notice.unwrap_or("-")
                    ),
                    &concat(&rule.cite, &j.consent.stale_notice_cite),
                ),
                ConsentState::None => out.deny(
                    rule_id,
                    format!("{purpose} needs consent and none is on record"),
                    &concat(&rule.cite, &j.consent.cite),
                ),
                state => out.deny(
                    rule_id,
                    format!("consent to {purpose} was {}", state.as_str()),
                    &concat(&rule.cite, &self.refusal_cite(state)),
                ),
            },
            LegalBasis::LegitimateInterest => {
                if general.state.is_refusal() {
                    out.deny(
                        rule_id,
                        format!("the person objected to {purpose}"),
                        &concat(&rule.cite, &self.refusal_cite(general.state)),
                    );
                } else {
                    out.allow(
                        rule_id,
                        format!("legitimate interest; the person may object to {purpose}"),
                        &rule.cite,
                    );
                }
            }
            basis => out.allow(
                rule_id,
                format!("lawful basis: {}", basis.as_str()),
                &rule.cite,
            ),
        }
    }

    /// A personalised purpose is refused to a person who refused personalisation.
    fn personalisation_objection(&self, out: &mut Outcome) {
        if !self.personalised || covers("personalization", self.purpose) {
            return;
        }
        let objection = resolve(
            &self.subject.consents,
            ConsentQuery {
                purpose: "personalization",
                recipient: None,
                separate: false,
                scope: None,
                notice_version: None,
                category: None,
            },
        );
        if objection.state.is_refusal() {
            out.deny(
                format!("{}.objection.personalization", self.id),
                format!(
                    "the person refused personalisation, and {} is personalised",
                    self.purpose
                ),
                &self.j.objection.personalization_cite,
            );
        }
    }

    /// Selecting people by what reveals a sensitive category (PIPL Art 28, 29; GDPR Art 9):
    /// the person's separate consent to the purpose naming that category (or an ancestor).
    fn inferences(&self, out: &mut Outcome) {
        let (j, id, purpose) = (self.j, self.id, self.purpose);
        for category in &self.request.inferred {
            let consent = resolve(
                &self.subject.consents,
                ConsentQuery {
                    purpose,
                    recipient: None,
                    separate: true,
                    scope: None,
                    notice_version: self.notice,
                    category: Some(category),
                },
            );
            if consent.state != ConsentState::Granted {
                let what = self
                    .set
                    .taxonomy
                    .data_categories
                    .get(category.as_str())
                    .map(|def| def.description.trim_end_matches('.').to_lowercase())
                    .unwrap_or_else(|| category.clone());
                out.deny(
                    format!("{id}.sensitive_inference"),
                    format!(
                        "the selection reveals {category} ({what}): {purpose} needs the person's separate consent naming it"
                    ),
                    &j.sensitive.cite,
                );
            }
        }
    }

    /// Whether the person is a child whose every field is sensitive under this jurisdiction.
    fn child_all_sensitive(&self) -> bool {
        let j = self.j;
        j.minors.all_sensitive
            && self
                .subject
                .age
                .is_some_and(|age| age < self.minors_threshold())
    }

    /// The age below which the person needs a guardian (their country's, or the file's).
    fn minors_threshold(&self) -> u32 {
        self.subject
            .residency
            .as_ref()
            .and_then(|country| self.j.minors.by_country.get(country))
            .copied()
            .unwrap_or(self.j.minors.age_under)
    }

    /// Minors: no profiling-based advertising below the ban's age; below the threshold of
    /// their country, consent-based, marketing and personalised purposes need a guardian.
    fn minors(&self, out: &mut Outcome, rule: &PurposeRule, general: &ConsentOutcome) {
        let (j, id, purpose) = (self.j, self.id, self.purpose);
        let Some(age) = self.subject.age else {
            return;
        };
        let threshold = self.minors_threshold();
        if let Some(ban) = &j.minors.advertising_profiling_ban
            && age < ban.age_under
            && self.marketing
            && self.personalised
        {
            out.deny(
                format!("{id}.minors.advertising_profiling_ban"),
                format!(
                    "no profiling-based advertising to a person under {}",
                    ban.age_under
                ),
                &ban.cite,
            );
        }
        if age < threshold && j.minors.all_sensitive {
            // All of a child's information is sensitive: whatever the purpose and its basis,
            // the guardian's separate consent to it (PIPL Art 28, 29, 31).
            let separate = self.consent(None, true);
            if !(separate.state == ConsentState::Granted && separate.guardian) {
                out.deny(
                    format!("{id}.minors"),
                    format!(
                        "all personal information of a child under {threshold} is sensitive: {purpose} needs a guardian's separate consent"
                    ),
                    &concat(&j.minors.cite, &j.sensitive.cite),
                );
            }
            return;
        }
        let needs_consent =
            rule.legal_basis == LegalBasis::Consent || self.marketing || self.personalised;
        if age < threshold && needs_consent && !general.guardian {
            out.deny(
                format!("{id}.minors"),
                format!("a person under {threshold} needs a guardian's consent to {purpose}"),
                &j.minors.cite,
            );
        }
    }

    /// A recipient: registered for the purpose; a controller needs the person's separate
    /// consent naming it; outside the home regions, a transfer mechanism of the file and (where
    /// the file says so) separate consent.
    fn recipient(&self, out: &mut Outcome, recipient: &RecipientFacts) {
        let (j, id, purpose) = (self.j, self.id, self.purpose);
        if !recipient
            .allowed_purposes
            .iter()
            .any(|allowed| covers(allowed, purpose))
        {
            out.deny(
                format!("{id}.recipient"),
                format!(
                    "recipient {} is not registered for the purpose {purpose}",
                    recipient.id
                ),
                &j.default.cite,
            );
        }
        // Provision (PIPL 23) and the transfer abroad (PIPL 39) are separate consents, each
        // stated as such (`scopes`): one never stands in for the other.
        let separate_granted = |scope| {
            self.consent_for(Some(&recipient.id), true, Some(scope))
                .state
                == ConsentState::Granted
        };
        if let Some(provision) = &j.provision
            && provision.separate_consent
            && recipient.role == RecipientRole::Controller
            && !separate_granted(ConsentScope::Provision)
        {
            out.deny(
                format!("{id}.provision"),
                format!(
                    "giving data to controller {} needs the person's separate consent naming it",
                    recipient.id
                ),
                &provision.cite,
            );
        }
        if j.home_regions.contains(&recipient.region) {
            return;
        }
        if !j
            .cross_border
            .mechanisms
            .contains(&recipient.transfer_mechanism)
        {
            out.deny(
                format!("{id}.cross_border"),
                format!(
                    "recipient {} is in {} and its transfer mechanism {:?} is not one of {}",
                    recipient.id,
                    recipient.region,
                    recipient.transfer_mechanism,
                    j.cross_border.mechanisms.join(", ")
                ),
                &j.cross_border.cite,
            );
        }
        if j.cross_border.separate_consent && !separate_granted(ConsentScope::CrossBorder) {
            out.deny(
                format!("{id}.cross_border.separate_consent"),
                format!(
                    "a transfer to {} in {} needs the person's separate consent to the transfer abroad (scope cross_border), apart from any consent to the provision",
                    recipient.id, recipient.region
                ),
                &j.cross_border.cite,
            );
        }
    }

    /// The obligation on one requested field: dropped when unclassified or sensitive without
    /// separate consent; for exports clear or pseudonymised; for reads masked as the file says.
    fn field(&self, out: &mut Outcome, field: &str) {
        let (j, id, purpose, request) = (self.j, self.id, self.purpose, self.request);
        let Some(category) = self.set.category_of(field) else {
            out.oblige(
                field,
                Transform::Drop,
                format!("{id}.unclassified_fields"),
                &j.unclassified_fields.cite,
            );
            return;
        };
        let recipient_id = request.recipient.as_ref().map(|r| r.id.as_str());
        if self.child_all_sensitive() {
            // A child's every field is sensitive: shown or handed over only under the
            // guardian's separate consent to the purpose (and then as the rules below say).
            let separate = self.consent(None, true);
            if !(separate.state == ConsentState::Granted && separate.guardian) {
                out.oblige(
                    field,
                    Transform::Drop,
                    format!("{id}.minors"),
                    &concat(&j.minors.cite, &j.sensitive.cite),
                );
                return;
            }
        } else if self.set.is_sensitive(category)
            && self.consent(recipient_id, true).state != ConsentState::Granted
        {
            out.oblige(
                field,
                Transform::Drop,
                format!("{id}.sensitive"),
                &j.sensitive.cite,
            );
            return;
        }
        if request.action == Action::Export {
            // Clear values only where the file allows this category for this purpose to a
            // processor; otherwise the value leaves as a keyed pseudonym.
            let clear = request
                .recipient
                .as_ref()
                .is_some_and(|r| r.role == RecipientRole::Processor)
                && nearest(&j.export.clear, category).is_some_and(|(_, purposes)| {
                    purposes.iter().any(|allowed| covers(allowed, purpose))
                });
            if clear {
                out.oblige(field, Transform::Keep, String::new(), &[]);
            } else {
                out.oblige(
                    field,
                    Transform::Pseudonymise,
                    format!("{id}.export"),
                    &j.export.cite,
                );
            }
            return;
        }
        let masking = (request.action == Action::Read)
            .then(|| nearest(&j.display_masking.categories, category))
            .flatten();
        match masking {
            Some((_, transform)) => out.oblige(
                field,
                *transform,
                format!("{id}.display_masking"),
                &j.display_masking.cite,
            ),
            None => out.oblige(field, Transform::Keep, String::new(), &[]),
        }
    }
}
