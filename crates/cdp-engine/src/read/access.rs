//! Purpose-bound reads of personal data.
//!
//! Every read states a purpose, is decided by the policies against the person's facts
//! (residency, sources, age, consents), is audited (durably, before any data leaves), and is
//! projected: each field shown, masked, generalised or withheld as the decision's obligations
//! say. A denial is audited too and becomes [`EngineError::Denied`] with its reasons.

use std::collections::{BTreeMap, BTreeSet};

use cdp_core::{IdentifierType, ProfileId};
use cdp_policy::{
    Action, CallerFacts, Decision, DecisionRequest, SubjectFacts, Transform, transform,
};
use cdp_store::CommitTicket;
use serde::Serialize;
use serde_json::Value;
use time::OffsetDateTime;

use crate::audit::AuditRecord;
use crate::consent::record::{ConsentRecord, ConsentsView};
use crate::derived::DerivedAttributes;
use crate::read::profiles::IdentifierView;
use crate::records::{ChannelSummary, ProfileRecord, StoredEvent, TraitValue};
use crate::{Engine, EngineError, IdentityView};

/// Who reads, and why.
#[derive(Debug, Clone)]
pub struct Access {
    /// The token subject (recorded in the audit log).
    pub actor: String,
    pub caller: CallerFacts,
    pub purpose: Option<String>,
}

/// How the policies shaped an answer.
#[derive(Debug, Clone, Serialize)]
pub struct PolicyNote {
    pub purpose: String,
    pub policy_version: String,
    pub jurisdictions: Vec<String>,
    /// Field -> transform applied (`mask:phone`...), for fields not shown as stored.
    pub obligations: BTreeMap<String, String>,
    /// Fields left out of the answer.
    pub withheld: Vec<String>,
}

/// A profile as a purpose-bound read shows it.
#[derive(Debug, Clone, Serialize)]
pub struct ProfileRead {
    pub id: ProfileId,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub resolved_from: Option<ProfileId>,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    pub identifiers: Vec<IdentifierView>,
    pub traits: BTreeMap<String, TraitValue>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub channels: Option<BTreeMap<cdp_core::Channel, ChannelSummary>>,
    pub event_count: u64,
    pub merged_from: Vec<ProfileId>,
    pub policy: PolicyNote,
}

/// An answer whose audit entry is committed, released only once that entry is durable: a
/// personal read is durably audited before it is answered. The value is reachable only
/// through [`Audited::wait`] or [`Audited::durable`], so no caller can skip the wait; async
/// callers await the flush without holding a thread, and concurrent reads share flushes.
#[must_use = "an audited answer is released by waiting for its audit entry"]
#[derive(Debug)]
pub struct Audited<T> {
    value: T,
    ticket: CommitTicket,
}

impl<T> Audited<T> {
    /// Blocks until the audit entry is durable, then gives the answer.
    pub fn wait(self) -> Result<T, EngineError> {
        self.ticket.wait_durable()?;
        Ok(self.value)
    }

    /// Resolves with the answer once the audit entry is durable.
    pub async fn durable(self) -> Result<T, EngineError> {
        self.ticket.durable().await?;
        Ok(self.value)
    }

    fn map<U>(self, f: impl FnOnce(T) -> U) -> Audited<U> {
        Audited {
            value: f(self.value),
            ticket: self.ticket,
        }
    }
}

/// What a dry run is about.
#[derive(Debug, Clone)]
pub enum EvaluateSubject {
    /// Facts given by the caller (a hypothetical person).
    Facts(SubjectFacts),
    /// A real person: their facts are read (and the evaluation audited).
    Profile(ProfileId),
}

/// A person as a read sees them.
struct Subject {
    id: ProfileId,
    record: ProfileRecord,
    consents: Vec<ConsentRecord>,
    facts: SubjectFacts,
}

fn shown(transform: Transform, value: &Value) -> Option<Value> {
    transform::apply(transform, value)
}

impl Engine {
    /// What the policies need to know about a person.
    pub(crate) fn subject_facts(
        &self,
        record: &ProfileRecord,
        consents: &[impl std::borrow::Borrow<ConsentRecord>],
    ) -> Result<SubjectFacts, EngineError> {
        let sources = record
            .identifiers
            .iter()
            .map(|i| i.source_id.as_str())
            .chain(record.traits.values().map(|t| t.source_id.as_str()));
        self.subject_facts_from(record, sources, consents)
    }

    /// The policy facts of a person whose sources (of all their identifiers and traits) are
    /// `sources`: an export's member is decoded without them (`exports::batch_profile`).
    pub(crate) fn subject_facts_from<'s>(
        &self,
        record: &ProfileRecord,
        sources: impl Iterator<Item = &'s str>,
        consents: &[impl std::borrow::Borrow<ConsentRecord>],
    ) -> Result<SubjectFacts, EngineError> {
        let derived = DerivedAttributes::of(record, OffsetDateTime::now_utc());
        let sources: BTreeSet<&str> = sources.collect();
        let mut regions = BTreeSet::new();
        for source in sources {
            if let Some(region) = self.source_region(source)? {
                regions.insert(region);
            }
        }
        Ok(SubjectFacts {
            residency: derived.residency(),
            regions: regions.into_iter().collect(),
            age: derived.age(),
            restricted: record.restricted,
            consents: consents
                .iter()
                .filter_map(|c| std::borrow::Borrow::<ConsentRecord>::borrow(c).fact())
                .collect(),
        })
    }

    /// Everything the policies need about the person `id` resolves to.
    fn subject(&self, id: ProfileId) -> Result<Option<Subject>, EngineError> {
        let resolved = self.resolve_id(id)?;
        let Some((record, key)) = self.load_profile_with_key(resolved)? else {
            return Ok(None);
        };
        let consents = self.consent_records_with(&resolved, &key)?;
        let facts = self.subject_facts(&record, &consents)?;
        Ok(Some(Subject {
            id: resolved,
            record,
            consents,
            facts,
        }))
    }

    /// The policy facts of the person `id` resolves to, if they exist.
    pub(crate) fn subject_facts_of(
        &self,
        id: ProfileId,
    ) -> Result<Option<SubjectFacts>, EngineError> {
        Ok(self.subject(id)?.map(|subject| subject.facts))
    }

    /// Resolves the person, decides a read of the `fields` it names for `access`, and audits it
    /// as `action` (a denial is audited and returned as [`EngineError::Denied`]).
    fn read_decision(
        &self,
        id: ProfileId,
        access: &Access,
        action: &str,
        fields: impl FnOnce(&ProfileRecord) -> Vec<String>,
    ) -> Result<Option<(Subject, Audited<Decision>)>, EngineError> {
        let purpose = self.purpose_of(access)?;
        let Some(subject) = self.subject(id)? else {
            return Ok(None);
        };
        let request = DecisionRequest {
            action: Action::Read,
            purpose,
            caller: Some(access.caller.clone()),
            recipient: None,
            fields: fields(&subject.record),
            inferred: Vec::new(),
        };
        let decision = self.decide_audited(access, action, subject.id, request, &subject.facts)?;
        Ok(Some((subject, decision)))
    }

    /// Decides, audits and refuses a denial (once its audit entry is durable). An allowed
    /// decision comes back with its audit entry committed, not yet waited for.
    fn decide_audited(
        &self,
        access: &Access,
        action: &str,
        profile: ProfileId,
        request: DecisionRequest,
        facts: &SubjectFacts,
    ) -> Result<Audited<Decision>, EngineError> {
        let decision = self.policies().decide(&request, facts);
        let mut rules: Vec<String> = Vec::new();
        for reason in &decision.reasons {
            if !reason.rule.is_empty() && !rules.contains(&reason.rule) {
                rules.push(reason.rule.clone());
            }
        }
        let ticket = self.audit(&[AuditRecord {
            actor: access.actor.clone(),
            action: action.into(),
            purpose: Some(request.purpose.clone()),
            person: Some(profile),
            decision: if decision.allowed() { "allow" } else { "deny" }.into(),
            rules,
        }])?;
        if decision.allowed() {
            Ok(Audited {
                value: decision,
                ticket,
            })
        } else {
            ticket.wait_durable()?;
            Err(EngineError::Denied(Box::new(decision)))
        }
    }

    fn purpose_of(&self, access: &Access) -> Result<String, EngineError> {
        let purpose = access
            .purpose
            .clone()
            .filter(|p| !p.is_empty())
            .ok_or(EngineError::PurposeRequired)?;
        self.known_purpose(&purpose)?;
        Ok(purpose)
    }

    /// The caller must be allowed to state `purpose` (a known one) at all: decided before any
    /// person is looked at, so the answer says nothing about anybody.
    pub(crate) fn check_purpose(
        &self,
        action: Action,
        access: &Access,
        purpose: &str,
    ) -> Result<(), EngineError> {
        self.known_purpose(purpose)?;
        if !self.policies().caller_may_use(&access.caller, purpose) {
            let decision = self.policies().decide(
                &DecisionRequest {
                    action,
                    purpose: purpose.into(),
                    caller: Some(access.caller.clone()),
                    recipient: None,
                    fields: Vec::new(),
                    inferred: Vec::new(),
                },
                &SubjectFacts::default(),
            );
            return Err(EngineError::Denied(Box::new(decision)));
        }
        Ok(())
    }

    /// `purpose` must be a purpose of the taxonomy: otherwise the request is malformed (400
    /// naming the purposes there are), not denied by the policies.
    pub(crate) fn known_purpose(&self, purpose: &str) -> Result<(), EngineError> {
        let purposes = &self.policies().taxonomy.purposes;
        if purposes.contains_key(purpose) {
            return Ok(());
        }
        Err(EngineError::UnknownPurpose {
            // The caller's own text, cut short: it is echoed in the error.
            purpose: purpose.chars().take(64).collect(),
            allowed: purposes.keys().cloned().collect(),
        })
    }

    fn note(decision: &Decision, withheld: Vec<String>) -> PolicyNote {
        PolicyNote {
            purpose: decision.purpose.clone(),
            policy_version: decision.policy_version.clone(),
            jurisdictions: decision.jurisdictions.clone(),
            obligations: decision
                .obligations
                .iter()
                .filter(|(_, t)| **t != Transform::Keep)
                .map(|(field, t)| (field.clone(), t.label()))
                .collect(),
            withheld,
        }
    }

    /// A profile, for `access.purpose` (blocks until the read is durably audited).
    pub fn read_profile(
        &self,
        id: ProfileId,
        access: &Access,
    ) -> Result<Option<ProfileRead>, EngineError> {
        self.read_profile_audited(id, access)?
            .map(Audited::wait)
            .transpose()
    }

    /// A profile, for `access.purpose`, released once the read is durably audited.
    pub fn read_profile_audited(
        &self,
        id: ProfileId,
        access: &Access,
    ) -> Result<Option<Audited<ProfileRead>>, EngineError> {
        let Some((
            Subject {
                id: resolved,
                record,
                ..
            },
            audited,
        )) = self.read_decision(id, access, "profile.read", |record| {
            let mut fields: BTreeSet<String> = record
                .identifiers
                .iter()
                .map(|i| format!("identifiers.{}", i.kind))
                .collect();
            fields.extend(record.traits.keys().map(|name| format!("traits.{name}")));
            fields.insert("channels".into());
            fields.into_iter().collect()
        })?
        else {
            return Ok(None);
        };
        Ok(Some(audited.map(|decision| {
            Self::profile_read(id, resolved, &record, &decision)
        })))
    }

    /// The profile as `decision` lets it be shown.
    fn profile_read(
        id: ProfileId,
        resolved: ProfileId,
        record: &ProfileRecord,
        decision: &Decision,
    ) -> ProfileRead {
        let obligation = |field: &str| decision.obligation(field);
        let mut withheld = BTreeSet::new();
        let mut identifiers = Vec::new();
        for entry in &record.identifiers {
            let field = format!("identifiers.{}", entry.kind);
            match shown(obligation(&field), &Value::String(entry.value.clone())) {
                Some(value) => identifiers.push(IdentifierView {
                    kind: entry.kind.clone(),
                    value: value
                        .as_str()
                        .map_or_else(|| value.to_string(), str::to_string),
                    source_id: entry.source_id.clone(),
                    channel: entry.channel,
                    field: entry.field.clone(),
                    first_seen: entry.first_seen,
                    last_seen: entry.last_seen,
                }),
                None => {
                    withheld.insert(field);
                }
            }
        }
        let mut traits = BTreeMap::new();
        for (name, value) in &record.traits {
            let field = format!("traits.{name}");
            match shown(obligation(&field), &value.value) {
                Some(shown_value) => {
                    let mut shown_trait = value.clone();
                    shown_trait.value = shown_value;
                    traits.insert(name.clone(), shown_trait);
                }
                None => {
                    withheld.insert(field);
                }
            }
        }
        let channels = if obligation("channels") == Transform::Keep {
            Some(record.channels.clone())
        } else {
            withheld.insert("channels".into());
            None
        };
        ProfileRead {
            id: resolved,
            resolved_from: (resolved != id).then_some(id),
            created_at: record.created_at,
            identifiers,
            traits,
            channels,
            event_count: record.event_count,
            merged_from: record.merged_from.clone(),
            policy: Self::note(decision, withheld.into_iter().collect()),
        }
    }

    /// The profile an identifier belongs to, for `access.purpose` (blocks until the read is
    /// durably audited).
    pub fn read_lookup(
        &self,
        kind: &IdentifierType,
        value: &str,
        region: Option<&str>,
        access: &Access,
    ) -> Result<Option<ProfileRead>, EngineError> {
        self.read_lookup_audited(kind, value, region, access)?
            .map(Audited::wait)
            .transpose()
    }

    /// The profile an identifier belongs to, for `access.purpose`, released once the read is
    /// durably audited.
    pub fn read_lookup_audited(
        &self,
        kind: &IdentifierType,
        value: &str,
        region: Option<&str>,
        access: &Access,
    ) -> Result<Option<Audited<ProfileRead>>, EngineError> {
        // Authorised before looking up: a lookup must not tell a caller who may not read a
        // person whether that person is a customer (issue 17 item 5).
        let purpose = self.purpose_of(access)?;
        self.check_purpose(Action::Read, access, &purpose)?;
        let Some(profile) = self.profile_of_identifier(kind, value, region)? else {
            return Ok(None);
        };
        match self.read_profile_audited(profile, access) {
            // Denied for this person (no consent, an objection, a restriction...): audited
            // as the denial it is, answered as an unknown identifier, so that the answer does
            // not reveal that the identifier belongs to someone. docs/policies.md.
            Err(EngineError::Denied(_)) => Ok(None),
            other => other,
        }
    }

    /// A person's events, for `access.purpose`, projected as the profile read is: the values
    /// in them that are personal fields of their own (user and anonymous ids, traits, contact
    /// details among the properties, IP address, location, device ids) are shown, masked or
    /// withheld as the decision says for that field; the rest of an event is behaviour, shown
    /// only when `events` is shown in full.
    pub fn read_events(
        &self,
        id: ProfileId,
        access: &Access,
        limit: usize,
    ) -> Result<Option<(Vec<StoredEvent>, PolicyNote)>, EngineError> {
        let purpose = self.purpose_of(access)?;
        let Some(subject) = self.subject(id)? else {
            return Ok(None);
        };
        let mut events = self.events(subject.id, limit)?;
        let mut fields = BTreeSet::from(["events".to_string()]);
        for event in &mut events {
            self.visit_event_fields(&mut event.message, &mut |field, value| {
                fields.insert(field.to_string());
                Some(value)
            });
        }
        let request = DecisionRequest {
            action: Action::Read,
            purpose,
            caller: Some(access.caller.clone()),
            recipient: None,
            fields: fields.iter().cloned().collect(),
            inferred: Vec::new(),
        };
        let mut decision = self
            .decide_audited(
                access,
                "profile.events",
                subject.id,
                request,
                &subject.facts,
            )?
            .wait()?;
        if decision.obligations.get("events") != Some(&Transform::Keep) {
            // What people did is the content of the answer: shown in full or not at all.
            decision.decision = cdp_policy::Effect::Deny;
            return Err(EngineError::Denied(Box::new(decision)));
        }
        let mut withheld = BTreeSet::new();
        for event in &mut events {
            self.visit_event_fields(&mut event.message, &mut |field, value| {
                let value = shown(decision.obligation(field), &value);
                if value.is_none() {
                    withheld.insert(field.to_string());
                }
                value
            });
        }
        let mut note = Self::note(&decision, withheld.into_iter().collect());
        note.obligations.retain(|field, _| fields.contains(field));
        Ok(Some((events, note)))
    }

    /// Calls `shape` with each personal value of an event and the field it is classified as
    /// (fields.yaml), replacing the value with what `shape` answers (`None` removes it).
    fn visit_event_fields(
        &self,
        message: &mut cdp_core::segment::Message,
        shape: &mut dyn FnMut(&str, Value) -> Option<Value>,
    ) {
        let mut id_field = |slot: &mut Option<String>, field: &str| {
            if let Some(value) = slot.take() {
                *slot = shape(field, Value::String(value))
                    .map(|v| v.as_str().map_or_else(|| v.to_string(), str::to_string));
            }
        };
        id_field(&mut message.user_id, "identifiers.user_id");
        id_field(&mut message.anonymous_id, "identifiers.anonymous_id");
        // An alias's previous id is a user id or an anonymous id: shown as the stricter.
        id_field(&mut message.previous_id, "identifiers.user_id");
        let mut in_map = |map: &mut serde_json::Map<String, Value>,
                          field_of: &dyn Fn(&str) -> Option<String>| {
            let keys: Vec<String> = map.keys().cloned().collect();
            for key in keys {
                let Some(field) = field_of(&key) else {
                    continue;
                };
                if let Some(value) = map.remove(&key)
                    && let Some(value) = shape(&field, value)
                {
                    map.insert(key, value);
                }
            }
        };
        let policies = self.policies();
        // Every trait is a field of its own (an unclassified one is withheld).
        in_map(&mut message.traits, &|key| Some(format!("traits.{key}")));
        // Properties are behaviour, but one named like a classified trait (email, phone,
        // address, health_conditions...) is that trait.
        in_map(&mut message.properties, &|key| {
            let field = format!("traits.{key}");
            policies.category_of(&field).is_some().then_some(field)
        });
        in_map(&mut message.context, &|key| match key {
            "ip" | "location" => Some(format!("context.{key}")),
            _ => None,
        });
        // Inside the context: its copy of the traits, and the device's ids.
        if let Some(Value::Object(traits)) = message.context.get_mut("traits") {
            in_map(traits, &|key| Some(format!("traits.{key}")));
        }
        if let Some(Value::Object(device)) = message.context.get_mut("device") {
            in_map(device, &|key| match key {
                "id" => Some("identifiers.device_id".into()),
                "advertisingId" => Some("identifiers.advertising_id".into()),
                _ => None,
            });
        }
    }

    /// The identity graph, for `access.purpose`, identifier values shaped like a read.
    pub fn read_identity(
        &self,
        id: ProfileId,
        access: &Access,
    ) -> Result<Option<(IdentityView, PolicyNote)>, EngineError> {
        let Some((Subject { id: resolved, .. }, audited)) =
            self.read_decision(id, access, "profile.identity", |record| {
                let fields: BTreeSet<String> = record
                    .identifiers
                    .iter()
                    .map(|i| format!("identifiers.{}", i.kind))
                    .collect();
                fields.into_iter().collect()
            })?
        else {
            return Ok(None);
        };
        let decision = audited.wait()?;
        let Some(mut view) = self.identity(resolved)? else {
            return Ok(None);
        };
        let shape = |kind: &IdentifierType, value: &str| -> Option<String> {
            let transform = decision.obligation(&format!("identifiers.{kind}"));
            shown(transform, &Value::String(value.to_string()))
                .map(|v| v.as_str().map_or_else(|| v.to_string(), str::to_string))
        };
        let mut withheld = BTreeSet::new();
        view.identifiers.retain_mut(|identifier| {
            match shape(&identifier.kind, &identifier.value) {
                Some(value) => {
                    identifier.value = value;
                    true
                }
                None => {
                    withheld.insert(format!("identifiers.{}", identifier.kind));
                    false
                }
            }
        });
        for edge in &mut view.edges {
            for node in &mut edge.identifiers {
                node.value = node.value.as_deref().and_then(|v| shape(&node.kind, v));
            }
        }
        let note = Self::note(&decision, withheld.into_iter().collect());
        Ok(Some((view, note)))
    }

    /// Consent history and current state, for `access.purpose`.
    pub fn read_consents(
        &self,
        id: ProfileId,
        access: &Access,
    ) -> Result<Option<ConsentsView>, EngineError> {
        let Some((
            Subject {
                id: resolved,
                consents,
                ..
            },
            audited,
        )) = self.read_decision(id, access, "profile.consents", |_| Vec::new())?
        else {
            return Ok(None);
        };
        audited.wait()?;
        Ok(Some(self.consents_view(resolved, consents)))
    }

    /// A dry run: the decision for a hypothetical request. About a real person, their facts
    /// are read and the evaluation is audited; nothing else is returned about them.
    pub fn evaluate(
        &self,
        request: &DecisionRequest,
        subject: EvaluateSubject,
        actor: &str,
    ) -> Result<(Decision, SubjectFacts), EngineError> {
        match subject {
            EvaluateSubject::Facts(facts) => Ok((self.policies().decide(request, &facts), facts)),
            EvaluateSubject::Profile(id) => {
                let Subject {
                    id: resolved,
                    facts,
                    ..
                } = self
                    .subject(id)?
                    .ok_or_else(|| EngineError::NotFound(format!("profile {id}")))?;
                let decision = self.policies().decide(request, &facts);
                self.audit(&[AuditRecord {
                    actor: actor.to_string(),
                    action: "policy.evaluate".into(),
                    purpose: Some(request.purpose.clone()),
                    person: Some(resolved),
                    decision: if decision.allowed() { "allow" } else { "deny" }.into(),
                    rules: Vec::new(),
                }])?
                .wait_durable()?;
                Ok((decision, facts))
            }
        }
    }
}
