//! Audiences, profiles, consents, requests, the audit log, policies and operations.

use std::collections::BTreeMap;

use serde::Serialize;
use utoipa::ToSchema;

use super::*;
/// A number of people: exact, or `"<20"` below the minimum audience size for a caller who may
/// not read profiles.
#[derive(Serialize, ToSchema)]
#[serde(untagged)]
pub(crate) enum People {
    Exact(u64),
    /// `<` and the minimum audience size.
    #[schema(example = "<20")]
    Withheld(String),
}

/// An audience count: the people the condition matched and those the policies allow for the
/// purpose.
#[derive(Serialize, ToSchema)]
pub(crate) struct AudienceCount {
    /// People the policies allow for the purpose.
    pub count: People,
    /// People the condition matched.
    pub matched: People,
    pub removed_by_policy: People,
    /// The minimum audience size, when numbers below it are withheld.
    pub suppressed_below: Option<u64>,
    pub purpose: String,
    pub evaluated_at: Time,
    /// When the computed traits (tiers, RFM) were last recomputed.
    pub traits_as_of: Option<Time>,
}

/// A saved audience.
#[derive(Serialize, ToSchema)]
pub(crate) struct Audience {
    #[schema(pattern = "^aud_[0-9a-f]{16}$")]
    pub id: String,
    pub name: String,
    pub purpose: String,
    /// The text query, when it was given as text.
    pub query: Option<String>,
    /// The condition as a JSON tree (docs/audiences.md).
    pub condition: serde_json::Value,
    pub created_by: String,
    pub created_at: Time,
    pub updated_by: Option<String>,
    pub updated_at: Option<Time>,
    /// Its size now (in the answers that count it).
    pub size: Option<AudienceCount>,
}

#[derive(Serialize, ToSchema)]
pub(crate) struct AudienceList {
    pub audiences: Vec<Audience>,
}

/// A consent recorded.
#[derive(Serialize, ToSchema)]
pub(crate) struct ConsentReceipt {
    #[schema(pattern = "^c_[0-9a-f]{32}$")]
    pub id: String,
    #[schema(pattern = "^p_[0-9a-f]{32}$")]
    pub profile_id: String,
    pub purpose: String,
    /// granted, denied or withdrawn, as recorded.
    pub status: String,
    /// The state for the purpose now (a newer notice version can make a grant stale).
    pub state: String,
    pub recorded_at: Time,
}

/// One identifier of a profile, masked as the policies say for the purpose.
#[derive(Serialize, ToSchema)]
pub(crate) struct ProfileIdentifier {
    #[serde(rename = "type")]
    pub kind: String,
    pub value: String,
    pub field: Option<String>,
    pub channel: Option<String>,
    pub source_id: Option<String>,
    pub first_seen: Option<Time>,
    pub last_seen: Option<Time>,
}

/// A trait's value and where it came from.
#[derive(Serialize, ToSchema)]
pub(crate) struct ProfileTrait {
    pub value: serde_json::Value,
    pub at: Option<Time>,
    pub first_seen: Option<Time>,
    pub channel: Option<String>,
    pub source_id: Option<String>,
}

/// How the policies shaped a read.
#[derive(Serialize, ToSchema)]
pub(crate) struct PolicyNote {
    pub purpose: String,
    pub jurisdictions: Vec<String>,
    pub policy_version: String,
    /// Field -> the transform applied (mask:email, generalise:...).
    pub obligations: BTreeMap<String, String>,
    /// Fields left out.
    pub withheld: Vec<String>,
}

/// A profile as the policies let the caller see it for the stated purpose.
#[derive(Serialize, ToSchema)]
pub(crate) struct Profile {
    #[schema(pattern = "^p_[0-9a-f]{32}$")]
    pub id: String,
    pub created_at: Time,
    pub event_count: u64,
    pub identifiers: Vec<ProfileIdentifier>,
    pub traits: BTreeMap<String, ProfileTrait>,
    /// Per channel: events, first and last seen.
    pub channels: BTreeMap<String, serde_json::Value>,
    /// Computed traits (RFM, tier, lifecycle, interests), each with its explanation.
    pub computed: Option<serde_json::Value>,
    pub merged_from: Vec<String>,
    pub policy: PolicyNote,
}

/// A value and how many people have it (`null`: withheld below the minimum audience size).
#[derive(Serialize, ToSchema)]
pub(crate) struct Bucket {
    pub value: String,
    pub people: Option<u64>,
}

/// A cell of the RFM grid.
#[derive(Serialize, ToSchema)]
pub(crate) struct RfmCell {
    pub r: u8,
    pub f: u8,
    pub people: Option<u64>,
}

/// The members the policies allow, counted per dimension (each count below the minimum
/// audience size withheld as `null`).
#[derive(Serialize, ToSchema)]
pub(crate) struct Breakdown {
    pub purpose: String,
    pub matched: People,
    pub suppressed_below: u64,
    pub tier: Option<Vec<Bucket>>,
    pub lifecycle: Option<Vec<Bucket>>,
    pub channel: Option<Vec<Bucket>>,
    pub city: Option<Vec<Bucket>>,
    pub region: Option<Vec<Bucket>>,
    pub rfm: Option<Vec<RfmCell>>,
    /// Matched people the policies removed, by consent state for the purpose.
    pub removed: Option<Vec<Bucket>>,
    /// Matched people who granted each main purpose.
    pub consent: Option<Vec<Bucket>>,
}

/// A page of an audience's members: pseudonymous profile ids.
#[derive(Serialize, ToSchema)]
pub(crate) struct MembersPage {
    pub purpose: String,
    pub members: Vec<String>,
    /// Pass as `after` for the next page; `null` at the end.
    pub next_after: Option<String>,
    /// Members the index listed whom the store's re-check left out.
    pub removed_on_recheck: u64,
}

/// An entry of the audit log's hash chain.
#[derive(Serialize, ToSchema)]
pub(crate) struct AuditEntry {
    pub seq: u64,
    pub at: Time,
    pub actor: String,
    pub action: String,
    pub purpose: Option<String>,
    /// The person, as a keyed pseudonym of the audit log (`ps_...`).
    pub person: Option<String>,
    pub decision: String,
    pub policy_version: String,
    pub rules: Vec<String>,
    /// The previous entry's hash.
    pub prev: String,
    pub hash: String,
}

#[derive(Serialize, ToSchema)]
pub(crate) struct AuditPage {
    pub entries: Vec<AuditEntry>,
    pub next_after: Option<u64>,
    /// With `latest=true`: the chain's length.
    pub entries_total: Option<u64>,
}

#[derive(Serialize, ToSchema)]
pub(crate) struct AuditVerification {
    pub ok: bool,
    pub entries: u64,
    pub head_hash: Option<String>,
    /// The first problem found: `{seq, kind, message}`.
    pub problem: Option<serde_json::Value>,
}

/// A person's consent state for one purpose now.
#[derive(Serialize, ToSchema)]
pub(crate) struct ConsentState {
    pub purpose: String,
    /// granted, denied, withdrawn, stale or none.
    pub state: String,
    pub notice_version: Option<String>,
}

/// A person's consents: the state per purpose and every record, oldest first.
#[derive(Serialize, ToSchema)]
pub(crate) struct ConsentsView {
    pub current: Vec<ConsentState>,
    /// The records, each with its evidence, who recorded it, when and how.
    pub history: Vec<serde_json::Value>,
}

/// One row of a bulk consent import.
#[derive(Serialize, ToSchema)]
pub(crate) struct ConsentRowResult {
    pub index: u64,
    pub id: Option<String>,
    pub state: Option<String>,
    pub error: Option<crate::ErrorDetail>,
}

#[derive(Serialize, ToSchema)]
pub(crate) struct ConsentBatchAnswer {
    pub recorded: u64,
    pub failed: u64,
    pub results: Vec<ConsentRowResult>,
}

/// Tallies of consent states per purpose over time.
#[derive(Serialize, ToSchema)]
pub(crate) struct ConsentTrend {
    pub days: u32,
    /// `{at, people, purposes: {purpose: {granted, denied, withdrawn, stale, none}}, live?}`.
    pub points: Vec<serde_json::Value>,
}

#[derive(Serialize, ToSchema)]
pub(crate) struct SuppressionEntry {
    #[schema(pattern = "^sup_[0-9a-f]{16}$")]
    pub id: String,
    #[serde(rename = "type")]
    pub kind: String,
    pub added_at: Option<Time>,
    pub added_by: Option<String>,
}

#[derive(Serialize, ToSchema)]
pub(crate) struct SuppressionPage {
    pub suppressions: Vec<SuppressionEntry>,
    pub next_after: Option<String>,
}

#[derive(Serialize, ToSchema)]
pub(crate) struct ExportKey {
    /// `Ed25519`.
    pub algorithm: String,
    /// Base64.
    pub public_key: String,
}

/// An identifier merge protection keeps refusing to link, and what was decided about it.
#[derive(Serialize, ToSchema)]
pub(crate) struct Suspect {
    pub id: String,
    #[serde(rename = "type")]
    pub kind: String,
    pub value: String,
    pub status: String,
    pub distinct_conflicts: u64,
    pub conflicts: u64,
    pub profile: Option<String>,
    pub first_seen: Option<Time>,
    pub last_seen: Option<Time>,
    pub decided_by: Option<String>,
}

#[derive(Serialize, ToSchema)]
pub(crate) struct SuspectList {
    pub suspects: Vec<Suspect>,
}

/// The policies in force: version, jurisdictions, purposes, roles, the field classification.
#[derive(Serialize, ToSchema)]
pub(crate) struct PoliciesView {
    pub version: String,
    /// Field -> data category.
    pub fields: BTreeMap<String, String>,
    #[serde(flatten)]
    pub rest: BTreeMap<String, serde_json::Value>,
}

/// A decision of the policies, with its reasons and articles.
#[derive(Serialize, ToSchema)]
pub(crate) struct Decision {
    pub action: String,
    /// allow, allow_with_obligations or deny.
    pub decision: String,
    pub purpose: String,
    pub jurisdictions: Vec<String>,
    pub policy_version: String,
    pub obligations: BTreeMap<String, String>,
    /// `{rule, effect, message, cite}`.
    pub reasons: Vec<serde_json::Value>,
}

#[derive(Serialize, ToSchema)]
pub(crate) struct Evaluation {
    pub decision: Decision,
    /// The facts of the subject the decision was made on.
    pub subject: serde_json::Value,
}

#[derive(Serialize, ToSchema)]
pub(crate) struct Ropa {
    /// The record of processing activities (GDPR Art 30, PIPL Art 55-56), Markdown.
    pub markdown: String,
}

#[derive(Serialize, ToSchema)]
pub(crate) struct GoldenRun {
    pub files: u64,
    pub cases: u64,
    pub passed: u64,
    /// `{file, case, expected, got}` per failing case.
    pub failures: Vec<serde_json::Value>,
}

/// A profile's identity graph: its identifiers and the links (edges) that join them, each
/// with its evidence, masked for the purpose.
#[derive(Serialize, ToSchema)]
pub(crate) struct IdentityView {
    #[schema(pattern = "^p_[0-9a-f]{32}$")]
    pub id: String,
    pub identifiers: Vec<serde_json::Value>,
    pub edges: Vec<serde_json::Value>,
    pub merge_log: Vec<serde_json::Value>,
    pub policy: PolicyNote,
}

#[derive(Serialize, ToSchema)]
pub(crate) struct EventsView {
    /// `{source_id, channel, evidence, message}`, newest first, masked for the purpose.
    pub events: Vec<serde_json::Value>,
    pub policy: PolicyNote,
}

/// A data-subject request and what was done.
#[derive(Serialize, ToSchema)]
pub(crate) struct DataSubjectRequest {
    #[schema(pattern = "^req_[0-9a-f]{16}$")]
    pub id: String,
    /// access, erasure, rectification, restriction, objection, portability.
    #[serde(rename = "type")]
    pub kind: String,
    /// received, done or refused.
    pub status: String,
    pub profile_id: Option<String>,
    /// The person as the audit log names them (`ps_...`).
    pub person: Option<String>,
    pub received_at: Time,
    pub due_at: Time,
    pub completed_at: Option<Time>,
    pub created_by: String,
    /// How the requester's identity was checked (withheld from auditors).
    pub verification: Option<serde_json::Value>,
    /// What was done: the bundle's address, the erasure receipt, the reason of a refusal.
    pub result: Option<serde_json::Value>,
    pub reason: Option<String>,
}

#[derive(Serialize, ToSchema)]
pub(crate) struct RequestList {
    pub requests: Vec<DataSubjectRequest>,
}

/// An access request's bundle: everything held about the person (GDPR Art 15, PIPL Art 45).
#[derive(Serialize, ToSchema)]
pub(crate) struct AccessBundle {
    #[serde(flatten)]
    pub sections: BTreeMap<String, serde_json::Value>,
}

#[derive(Serialize, ToSchema)]
pub(crate) struct RetentionReport {
    pub dry_run: bool,
    pub people_checked: u64,
    pub events_deleted: u64,
    pub people_erased: u64,
    pub export_files_deleted: u64,
    pub ran_at: Time,
}

/// What a source sent lately: message types and names, never values (this node's share).
#[derive(Serialize, ToSchema)]
pub(crate) struct SourceActivity {
    pub events_per_second: f64,
    pub per_minute: Vec<serde_json::Value>,
    pub recent: Vec<serde_json::Value>,
}

/// Counts for the console's overview.
#[derive(Serialize, ToSchema)]
pub(crate) struct Overview {
    pub people: u64,
    pub durable_seq: u64,
    pub indexed_seq: u64,
    pub refreshed_at: Option<Time>,
    pub sources: Vec<serde_json::Value>,
    #[serde(flatten)]
    pub rest: BTreeMap<String, serde_json::Value>,
}

/// The profiles a component became after a split.
#[derive(Serialize, ToSchema)]
pub(crate) struct SplitAnswer {
    pub profiles: Vec<String>,
}

/// What the Sensors Analytics endpoint did with a request's records.
#[derive(Serialize, ToSchema)]
pub(crate) struct SensorsAnswer {
    pub success: bool,
    pub accepted: u64,
    pub duplicates: u64,
    pub unattributed: u64,
    /// Records of types that carry nothing for a profile (item_set...).
    pub ignored: u64,
    pub warnings: Option<Vec<serde_json::Value>>,
}
