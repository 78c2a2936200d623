//! One member of an export: read (through forward cursors), decided for the export
//! (purpose, recipient, separate consents, suppression), and turned into a row whose fields are
//! transformed as the decision's obligations say.

use std::collections::BTreeMap;

use cdp_core::ProfileId;
use cdp_policy::{DecisionRequest, SubjectFacts, Transform};
use cdp_store::{Cursor, Keyspace};
use serde_json::Value;
use time::OffsetDateTime;

use super::ExportFormat;
use super::batch_profile::{BatchShape, ProfileForBatch};
use super::format::format_row;
use super::hashes::{
    email_sha256_google, email_sha256_meta, phone_sha256_google, phone_sha256_meta,
};
use crate::computed::{ComputedTraits, Quintiles, compute};
use crate::derived::{DerivedAttributes, age_band, rfm_score};
use crate::records::ProfileRecord;
use crate::{Engine, EngineError};

/// Where an export worker reads its members' records: one forward cursor per keyspace, so
/// that members taken in profile-id order are read by walking the store rather than by a
/// lookup from the root for each (`cdp_store::Cursor`).
struct SubjectCursors<'a> {
    keys: Cursor<'a>,
    profiles: Cursor<'a>,
    consents: Cursor<'a>,
    /// A campaign send's contact ledgers (`contacts/<profile id>/...` in `Keyspace::Exports`).
    ledgers: Cursor<'a>,
}

/// What one worker made of its members.
#[derive(Default)]
pub(super) struct MemberResults {
    pub(super) considered: u64,
    pub(super) excluded: BTreeMap<String, u64>,
    /// (reason, why) -> (people, citations).
    pub(super) exclusions: BTreeMap<(String, String), (u64, Vec<String>)>,
    pub(super) strictest_k: u64,
    pub(super) transforms: BTreeMap<String, String>,
    /// (pseudonym's bytes, formatted line) of each included member, in order.
    pub(super) rows: Vec<([u8; 16], Vec<u8>)>,
    /// A campaign send: each eligible member's profile id and arm (0: the holdout).
    pub(super) assigned: Vec<([u8; 16], u8)>,
    /// A campaign send: the contacted members' new contact records and stale ones deleted.
    pub(super) contacts: Vec<crate::contact::ContactWrite>,
}

/// What every worker of one job needs to decide and format a member.
#[derive(Clone, Copy)]
pub(super) struct RowShape<'a> {
    pub(super) request: &'a DecisionRequest,
    pub(super) fields: &'a [String],
    /// `op` and then the fields.
    pub(super) columns: &'a [String],
    pub(super) format: ExportFormat,
    pub(super) pseudonyms: &'a cdp_crypto::PseudonymKey,
    /// The population's RFM cut points (as the index scores people).
    pub(super) quintiles: &'a Quintiles,
    pub(super) now: OffsetDateTime,
    /// A campaign send's arms.
    pub(super) arms: Option<&'a crate::campaigns::ArmAssigner>,
    /// A campaign send's frequency caps and quiet hours.
    pub(super) contact: Option<&'a crate::contact::ContactGate>,
    /// What the job reads of its members' profiles.
    pub(super) profile: &'a BatchShape,
}

/// One included member, as the row builder sees them. Age and residency come from the policy
/// facts (derived by `crate::derived` when the facts were made: computed once per member).
struct Member<'a> {
    record: &'a ProfileRecord,
    facts: &'a SubjectFacts,
    decision: &'a cdp_policy::Decision,
    pseudonym: &'a str,
    /// The campaign variant the member is in.
    arm: Option<&'a str>,
}

impl MemberResults {
    fn exclude(&mut self, reason: &str, why: &str, cite: &[String]) {
        *self.excluded.entry(reason.to_string()).or_default() += 1;
        self.exclusions
            .entry((reason.to_string(), why.to_string()))
            .or_insert_with(|| (0, cite.to_vec()))
            .0 += 1;
    }
}

impl Engine {
    /// Decides and transforms a slice of members (ascending ids).
    pub(super) fn export_members(
        &self,
        members: &[ProfileId],
        shape: &RowShape<'_>,
    ) -> Result<MemberResults, EngineError> {
        let mut out = MemberResults::default();
        let mut cursors = SubjectCursors {
            keys: Cursor::new(self.store().as_ref(), Keyspace::Keys),
            profiles: Cursor::new(self.store().as_ref(), Keyspace::Profiles),
            consents: Cursor::new(self.store().as_ref(), Keyspace::Consents),
            ledgers: Cursor::new(self.store().as_ref(), Keyspace::Exports),
        };
        // Asked once per slice, not per member (a range opened per person was 4 % of a
        // send): a suppression recorded meanwhile applies from the next slice on.
        let any_suppressed = self.any_suppressed()?;
        for member in members {
            out.considered += 1;
            let Some((record, facts, key)) =
                self.export_subject(&mut cursors, shape.profile, *member)?
            else {
                out.exclude(
                    "gone",
                    "erased or merged into another profile since the search index saw them",
                    &[],
                );
                continue;
            };
            let decision = self.policies().decide(shape.request, &facts);
            let k = match self.policies().min_audience_of(&decision) {
                Some(k) => k,
                None => (self.policies().jurisdictions_for(&facts).0.iter())
                    .map(|j| j.export.min_audience_size)
                    .max()
                    .unwrap_or(0),
            };
            out.strictest_k = out.strictest_k.max(k);
            if !decision.allowed() {
                match decision
                    .reasons
                    .iter()
                    .find(|r| r.effect == cdp_policy::ReasonKind::Deny)
                {
                    Some(reason) => out.exclude(&reason.rule, &reason.message, &reason.cite),
                    None => out.exclude("denied", "denied by the policies", &[]),
                }
                continue;
            }
            if any_suppressed && self.is_suppressed(&record)? {
                out.exclude(
                    "suppressed",
                    "on the suppression list: no export may include them (an objection to direct marketing)",
                    &["GDPR-21".to_string(), "PIPL-44".to_string()],
                );
                continue;
            }
            // Contact pressure is a gate like consent: decided before the arms are drawn.
            let mut contact = None;
            if let Some(gate) = shape.contact {
                let check = gate.check(
                    self,
                    &mut cursors.ledgers,
                    &key,
                    &record,
                    facts.residency.as_deref(),
                )?;
                if let Some(held) = check.held_back {
                    out.exclude(held.reason(), held.why(), &[]);
                    continue;
                }
                contact = Some(check);
            }
            // A campaign's arms are drawn from the people every gate allowed: the holdout
            // and the variants are then comparable.
            let mut arm = None;
            if let Some(arms) = shape.arms {
                // Whether they had ordered before the send: new customers and repeat buyers
                // among the converted are told apart by it.
                let before = if record
                    .activity
                    .first_order_at
                    .is_some_and(|t| t < shape.now.unix_timestamp())
                {
                    crate::campaigns::ORDERED_BEFORE
                } else {
                    0
                };
                match arms.assign(&record.id) {
                    None => {
                        out.assigned.push((*record.id.as_bytes(), before));
                        out.exclude(
                            "holdout",
                            "the campaign's control group: kept from contact so that its effect can be measured",
                            &[],
                        );
                        continue;
                    }
                    Some(variant) => {
                        out.assigned
                            .push((*record.id.as_bytes(), (variant as u8 + 1) | before));
                        arm = arms.names.get(variant).map(String::as_str);
                        if let (Some(gate), Some(check)) = (shape.contact, contact) {
                            gate.record_contact(self, &key, &record.id, check, &mut out.contacts)?;
                        }
                    }
                }
            }
            let tag = shape.pseudonyms.pseudonym_bytes(&record.id);
            let pseudonym = crate::records::hex::encode(&tag);
            let member = Member {
                record: &record,
                facts: &facts,
                decision: &decision,
                pseudonym: &pseudonym,
                arm,
            };
            let mut row = self.export_row(shape, &member, &mut out.transforms);
            row.insert("op".into(), Value::String("add".into()));
            let line = format_row(shape.format, shape.columns, &row);
            out.rows.push((tag, line));
        }
        Ok(out)
    }

    /// A member's profile and facts, read through the cursors (members ascend).
    fn export_subject(
        &self,
        cursors: &mut SubjectCursors<'_>,
        shape: &BatchShape,
        id: ProfileId,
    ) -> Result<Option<(ProfileForBatch, SubjectFacts, cdp_crypto::DataKey)>, EngineError> {
        // Members come from the index: current ids (one merged away since is simply gone, and
        // so is an erased person, whose key was destroyed).
        let Some(wrapped) = cursors.keys.get(id.as_bytes())? else {
            return Ok(None);
        };
        let Some(sealed) = cursors.profiles.get(id.as_bytes())? else {
            return Ok(None);
        };
        let key = self.vault().unwrap_person_key(&id, wrapped)?;
        let record: ProfileForBatch =
            self.open_person_with(&key, Keyspace::Profiles, id.as_bytes(), &sealed, |plain| {
                super::batch_profile::decode_profile(plain, shape)
            })?;
        let consents: Vec<crate::consent::record::ConsentForBatch> =
            self.open_consent_records(&key, cursors.consents.prefix(id.as_bytes())?)?;
        let facts = self.subject_facts_from(&record, record.sources(), &consents)?;
        Ok(Some((record, facts, key)))
    }

    /// The row of an included member: each field's value (absent when the obligations drop
    /// it), and the transform applied per field (the manifest lists it).
    fn export_row(
        &self,
        shape: &RowShape<'_>,
        member: &Member<'_>,
        transforms: &mut BTreeMap<String, String>,
    ) -> BTreeMap<String, Value> {
        let mut row = BTreeMap::new();
        // Computed at most once per member, and only when a field needs it.
        let mut computed: Option<ComputedTraits> = None;
        for field in shape.fields {
            let (value, transform) = match field.as_str() {
                "pseudonym" => (
                    Some(Value::String(member.pseudonym.to_string())),
                    "hmac-sha256 per recipient".to_string(),
                ),
                "email_sha256_google"
                | "email_sha256_meta"
                | "phone_sha256_google"
                | "phone_sha256_meta" => ad_hash(field, member),
                "age_band" => (
                    member.facts.age.map(|age| Value::String(age_band(age))),
                    "generalise:band10".to_string(),
                ),
                "region" => (
                    member.facts.residency.clone().map(Value::String),
                    "keep".to_string(),
                ),
                "arm" => (
                    member.arm.map(|arm| Value::String(arm.to_string())),
                    "campaign variant".to_string(),
                ),
                "city" => (
                    DerivedAttributes::of(member.record, shape.now)
                        .city()
                        .map(Value::String),
                    "keep".to_string(),
                ),
                "tier" | "lifecycle" | "rfm_score" => {
                    let traits = computed.get_or_insert_with(|| {
                        compute(
                            &member.record.activity,
                            shape.now,
                            &self.config.computed,
                            shape.quintiles,
                        )
                    });
                    let value = match field.as_str() {
                        "tier" => Value::String(traits.tier.clone()),
                        "lifecycle" => Value::String(traits.lifecycle.clone()),
                        _ => Value::from(rfm_score(traits)),
                    };
                    (Some(value), "computed".to_string())
                }
                other => stored_field(other, shape.pseudonyms, member),
            };
            transforms.entry(field.clone()).or_insert(transform);
            if let Some(value) = value {
                row.insert(field.clone(), value);
            }
        }
        row
    }
}

/// The member's first identifier of a type.
fn identifier(record: &ProfileRecord, kind: &str) -> Option<String> {
    record
        .identifiers
        .iter()
        .find(|i| i.kind.as_str() == kind)
        .map(|i| i.value.clone())
}

/// An ad-platform hash of the e-mail or phone (none where the policy drops the field).
fn ad_hash(field: &str, member: &Member<'_>) -> (Option<Value>, String) {
    let (source, kind) = if field.starts_with("email") {
        ("identifiers.email", "email")
    } else {
        ("identifiers.phone", "phone")
    };
    let value = (member.decision.obligation(source) != Transform::Drop)
        .then(|| identifier(member.record, kind))
        .flatten()
        .map(|v| {
            Value::String(match field {
                "email_sha256_google" => email_sha256_google(&v),
                "email_sha256_meta" => email_sha256_meta(&v),
                "phone_sha256_google" => phone_sha256_google(&v),
                _ => phone_sha256_meta(&v),
            })
        });
    (
        value,
        format!("{field} (normalised as the platform documents, SHA-256)"),
    )
}

/// `identifiers.<type>` or `traits.<name>`, transformed as the decision's obligation says.
fn stored_field(
    field: &str,
    pseudonyms: &cdp_crypto::PseudonymKey,
    member: &Member<'_>,
) -> (Option<Value>, String) {
    let raw = if let Some(kind) = field.strip_prefix("identifiers.") {
        identifier(member.record, kind).map(Value::String)
    } else {
        field
            .strip_prefix("traits.")
            .and_then(|name| member.record.traits.get(name))
            .map(|t| t.value.clone())
    };
    let transform = member.decision.obligation(field);
    let value = raw.and_then(|raw| match transform {
        Transform::Pseudonymise => {
            let text = raw.as_str().map_or_else(|| raw.to_string(), str::to_string);
            Some(Value::String(pseudonyms.pseudonym_of_value(field, &text)))
        }
        t => cdp_policy::transform::apply(t, &raw),
    });
    (value, transform.label())
}
