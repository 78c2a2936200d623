//! Compliance-controlled exports of audiences to recipients.
//!
//! A job streams the audience's members (the index's policy-allowed people), decides each one
//! for the export (purpose, recipient: provision to a controller, cross-border, separate
//! consents; suppression list), and writes the included ones with their fields transformed:
//! a keyed pseudonym per recipient, ad-platform hashes (Google, Meta), clear values only where
//! the policy allows that purpose to a processor, bands and computed tiers. Below the
//! policies' minimum audience size the export is refused. The file is encrypted at rest under
//! its own data key (chunks of 1 MiB, each bound to its position) and decrypted only for a
//! download; the manifest (counts by reason, fields and transforms, file SHA-256, policy
//! version) is signed with Ed25519. A later export of the same audience to the same recipient
//! also lists the pseudonyms to remove.

//!
//! Rooms: `job` (lifecycle: start, run, refuse, finish), `plan` (what a running job works
//! from), `deciding` (the members decided on both cores, rows written in member order), `fields` (the field vocabulary and
//! what each field depends on in the policies), `rows` (one member decided and formatted),
//! `format` (CSV/JSONL), `hashes` (ad-platform hashes), `sealed_file` (the encrypted file,
//! writer and reader), `members` (who a finished export included, for deltas and requests),
//! `revise` (erasure rewrites the files that hold the person; expired files are deleted).

mod batch_profile;
mod deciding;
mod download;
mod fields;
mod format;
pub mod hashes;
mod job;
mod keys;
mod lease;
mod members;
mod plan;
pub(crate) mod revise;
mod rows;
pub mod schedules;
mod sealed_file;

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

pub use fields::DERIVED_FIELDS;
pub use hashes::{email_sha256_google, email_sha256_meta, phone_sha256_google, phone_sha256_meta};
pub(crate) use keys::campaign_arms_key;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ExportFormat {
    Csv,
    Jsonl,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ExportStatus {
    Running,
    Done,
    Refused,
    Failed,
    /// Its file was deleted (expired, or erased from where it could not be rewritten).
    Withdrawn,
}

impl ExportStatus {
    /// The name the API uses.
    pub fn name(self) -> &'static str {
        match self {
            Self::Running => "running",
            Self::Done => "done",
            Self::Refused => "refused",
            Self::Failed => "failed",
            Self::Withdrawn => "withdrawn",
        }
    }
}

/// What to export.
#[derive(Debug, Clone)]
pub struct ExportRequest {
    pub audience: String,
    pub purpose: String,
    pub recipient: String,
    pub fields: Vec<String>,
    pub format: ExportFormat,
    /// A destination of the recipient that receives the file once it is done.
    pub destination: Option<String>,
    /// The schedule a run belongs to: the file then holds only the changes since the
    /// schedule's previous run (adds and removals).
    pub schedule: Option<String>,
    /// The campaign a send belongs to: its holdout is kept out, each row names its arm.
    pub campaign: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExportProgress {
    pub considered: u64,
    pub total: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FieldTransform {
    pub field: String,
    pub transform: String,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExportCounts {
    /// Everyone the audience's condition matched (people the policies filter out included).
    pub considered: u64,
    pub included: u64,
    /// Reason (the rule that denied, `suppressed`, `gone`, `erased`) -> people.
    pub excluded: BTreeMap<String, u64>,
    /// One line per reason and explanation, with its citations: why each excluded person
    /// was left out.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub exclusions: Vec<Exclusion>,
    /// Pseudonyms of an earlier export to this recipient that must be removed.
    pub removals: u64,
    /// A scheduled run's file: the included people who were not in the previous run (the
    /// others are unchanged and not repeated).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub added: Option<u64>,
}

/// People left out of an export for one reason.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Exclusion {
    /// The rule that decided (`pipl.consent`, `gdpr.cross_border`...), `suppressed`, `gone`.
    pub reason: String,
    pub people: u64,
    /// What the rule says, in words.
    pub why: String,
    /// The articles it applies.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub cite: Vec<String>,
}

/// The signed description of an export file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    pub export_id: String,
    pub audience_id: String,
    /// SHA-256 of the audience definition (its condition, as JSON).
    pub audience_definition_sha256: String,
    pub purpose: String,
    pub recipient: RecipientSummary,
    pub policy_version: String,
    pub counts: ExportCounts,
    pub fields: Vec<FieldTransform>,
    pub format: ExportFormat,
    /// Pseudonymous data is still personal data (GDPR Art 4(5), PIPL Art 73).
    pub classification: String,
    pub file_sha256: String,
    pub file_bytes: u64,
    /// The export this one is a delta of, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub previous_export: Option<String>,
    /// The campaign this file is a send of.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub campaign: Option<String>,
    /// When an erasure last rewrote the file without the erased person (the counts, the
    /// SHA-256 and the length describe the file as it is now).
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        with = "time::serde::rfc3339::option"
    )]
    pub revised_at: Option<OffsetDateTime>,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    pub expires_at: OffsetDateTime,
    pub signing_key: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signature: Option<String>,
}

impl Manifest {
    /// The bytes the signature covers: the manifest without its signature, as JSON.
    pub fn signed_bytes(&self) -> Vec<u8> {
        let mut unsigned = self.clone();
        unsigned.signature = None;
        serde_json::to_vec(&unsigned).unwrap_or_default()
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecipientSummary {
    pub id: String,
    pub name: String,
    pub role: cdp_policy::RecipientRole,
    pub region: String,
    pub transfer_mechanism: String,
}

/// An export job (Keyspace::Exports, `job/<id>`, sealed with the system key).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ExportRecord {
    pub id: String,
    pub audience: String,
    pub purpose: String,
    pub recipient: String,
    pub fields: Vec<String>,
    pub format: ExportFormat,
    pub status: ExportStatus,
    pub progress: ExportProgress,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// The counts of a refused job (a finished one has them in its manifest).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub counts: Option<ExportCounts>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub manifest: Option<Manifest>,
    pub created_by: String,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    /// The roles and purposes of the token that started it: a node that takes the job over
    /// decides the members as they would have been decided for that caller.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub caller: Option<cdp_policy::CallerFacts>,
    /// The node running it, until when without renewal (`jobs.rs`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lease: Option<crate::jobs::JobLease>,
    /// Where the file is delivered once done (`GET /v1/exports/{id}/delivery`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub destination: Option<String>,
    /// The schedule this run belongs to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schedule: Option<String>,
    /// The campaign this send belongs to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub campaign: Option<String>,
}

impl ExportRecord {
    /// What the job came to: a finished job's manifest counts, or a refused job's.
    pub fn counts_now(&self) -> Option<ExportCounts> {
        self.manifest
            .as_ref()
            .map(|m| m.counts.clone())
            .or_else(|| self.counts.clone())
    }
}

/// Tuning of export jobs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ExportSettings {
    /// Pseudonyms per stored chunk of a finished export's member list (16 bytes each; the
    /// default makes 2 MiB chunks). Tests make it small so that lists span several chunks.
    pub member_chunk: usize,
    /// How long a finished export's file can be downloaded; the retention sweep deletes it
    /// (and its key) afterwards. Default 7 days.
    pub file_lifetime: time::Duration,
}

impl Default for ExportSettings {
    fn default() -> Self {
        Self {
            member_chunk: 131_072,
            file_lifetime: time::Duration::days(7),
        }
    }
}
