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

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use cdp_core::{IdentifierType, ProfileId};
use cdp_policy::{Action, DecisionRequest, Transform};
use cdp_store::{Cursor, Keyspace, WriteBatch};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use time::OffsetDateTime;

use crate::audit::AuditRecord;
use crate::computed::compute;
use crate::indexer::index_error;
use crate::read::access::Access;
use crate::records::{ProfileRecord, hex};
use crate::{Engine, EngineError};

const CHUNK: usize = 1 << 20;
const EXPIRY_DAYS: i64 = 7;

/// Derived fields an export may ask for (besides `identifiers.<type>` and `traits.<name>`).
pub const DERIVED_FIELDS: &[&str] = &[
    "pseudonym",
    "email_sha256_google",
    "email_sha256_meta",
    "phone_sha256_google",
    "phone_sha256_meta",
    "age_band",
    "region",
    "city",
    "tier",
    "lifecycle",
    "rfm_score",
];

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
}

/// What to export.
#[derive(Debug, Clone)]
pub struct ExportRequest {
    pub audience: String,
    pub purpose: String,
    pub recipient: String,
    pub fields: Vec<String>,
    pub format: ExportFormat,
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
    pub considered: u64,
    pub included: u64,
    /// Reason (the rule that denied, `suppressed`, `gone`) -> people.
    pub excluded: BTreeMap<String, u64>,
    /// Pseudonyms of an earlier export to this recipient that must be removed.
    pub removals: u64,
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
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub manifest: Option<Manifest>,
    pub created_by: String,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
}

/// Where an export worker reads its members' records: one forward cursor per keyspace, so
/// that members taken in profile-id order are read by walking the store rather than by a
/// lookup from the root for each (`cdp_store::Cursor`).
struct SubjectCursors<'a> {
    keys: Cursor<'a>,
    profiles: Cursor<'a>,
    consents: Cursor<'a>,
}

/// What one worker made of its members.
#[derive(Default)]
struct MemberResults {
    considered: u64,
    excluded: BTreeMap<String, u64>,
    strictest_k: u64,
    transforms: BTreeMap<String, String>,
    /// (pseudonym, formatted line) of each included member, in order.
    rows: Vec<(String, Vec<u8>)>,
}

/// What every worker of one job needs to decide and format a member.
#[derive(Clone, Copy)]
struct RowShape<'a> {
    request: &'a DecisionRequest,
    fields: &'a [String],
    /// `op` and then the fields.
    columns: &'a [String],
    format: ExportFormat,
    pseudonyms: &'a cdp_crypto::PseudonymKey,
    now: OffsetDateTime,
}

/// Stored beside a finished export: its file key and where the list of who was in it lies
/// (for the next delta, and for access and erasure requests).
#[derive(Debug, Clone, Serialize, Deserialize)]
struct ExportSecrets {
    wrapped_key: Vec<u8>,
    /// Sorted pseudonyms, in stores written before member chunks (kept readable).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pseudonyms: Vec<String>,
    /// The first pseudonym of each chunk of the sorted member list (`members/<id>/<n>`): a
    /// million pseudonyms do not fit one store value, and a lookup reads one chunk.
    #[serde(default)]
    chunk_starts: Vec<String>,
}

/// Tuning of export jobs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ExportSettings {
    /// Pseudonyms per stored chunk of a finished export's member list (16 bytes each; the
    /// default makes 2 MiB chunks). Tests make it small so that lists span several chunks.
    pub member_chunk: usize,
}

impl Default for ExportSettings {
    fn default() -> Self {
        Self {
            member_chunk: 131_072,
        }
    }
}

/// The bytes of a pseudonym (32 hex digits).
fn pseudonym_bytes(pseudonym: &str) -> Result<[u8; 16], EngineError> {
    hex::decode::<16>(pseudonym).ok_or_else(|| EngineError::Corrupt("export member list".into()))
}

fn member_chunk_key(id: &str, chunk: usize) -> Vec<u8> {
    let chunk = u32::try_from(chunk).unwrap_or(u32::MAX);
    [
        b"members/".as_slice(),
        id.as_bytes(),
        b"/",
        &chunk.to_be_bytes(),
    ]
    .concat()
}

fn job_key(id: &str) -> Vec<u8> {
    [b"job/".as_slice(), id.as_bytes()].concat()
}

fn secrets_key(id: &str) -> Vec<u8> {
    [b"secret/".as_slice(), id.as_bytes()].concat()
}

fn latest_key(audience: &str, recipient: &str) -> Vec<u8> {
    [
        b"latest/".as_slice(),
        audience.as_bytes(),
        b"/",
        recipient.as_bytes(),
    ]
    .concat()
}

/// Plain SHA-256 of the text, hex (what ad platforms match on; not the length-prefixed
/// `sha256_parts` used for internal ids).
fn sha256_hex(text: &str) -> String {
    let mut hash = cdp_crypto::Sha256Stream::default();
    hash.update(text.as_bytes());
    hash.finish_hex()
}

/// Google Customer Match: trimmed, lower case; for gmail.com and googlemail.com the dots of the
/// local part are removed. Then SHA-256, hex.
pub fn email_sha256_google(email: &str) -> String {
    let email = email.trim().to_lowercase();
    let normalised = match email.split_once('@') {
        Some((local, domain)) if domain == "gmail.com" || domain == "googlemail.com" => {
            format!("{}@{domain}", local.replace('.', ""))
        }
        _ => email,
    };
    sha256_hex(&normalised)
}

/// Meta custom audiences: trimmed, lower case, then SHA-256, hex.
pub fn email_sha256_meta(email: &str) -> String {
    sha256_hex(&email.trim().to_lowercase())
}

/// Google: E.164 with the `+` (`+8613800138000`), then SHA-256.
pub fn phone_sha256_google(e164: &str) -> String {
    let digits: String = e164.chars().filter(char::is_ascii_digit).collect();
    sha256_hex(&format!("+{digits}"))
}

/// Meta: digits only with the country code, no `+` or leading zeros, then SHA-256.
pub fn phone_sha256_meta(e164: &str) -> String {
    let digits: String = e164.chars().filter(char::is_ascii_digit).collect();
    sha256_hex(digits.trim_start_matches('0'))
}

/// The policy field a requested export field depends on.
fn policy_field(field: &str) -> Option<String> {
    match field {
        "email_sha256_google" | "email_sha256_meta" => Some("identifiers.email".into()),
        "phone_sha256_google" | "phone_sha256_meta" => Some("identifiers.phone".into()),
        "city" | "region" => Some("traits.city".into()),
        "age_band" => Some("traits.age".into()),
        f if f.starts_with("identifiers.") || f.starts_with("traits.") => Some(f.to_string()),
        _ => None,
    }
}

impl Engine {
    fn validate_export_fields(&self, fields: &[String]) -> Result<(), EngineError> {
        if fields.is_empty() || fields.len() > 50 {
            return Err(EngineError::InvalidRequest(
                "fields needs 1 to 50 fields".into(),
            ));
        }
        for field in fields {
            let known = DERIVED_FIELDS.contains(&field.as_str())
                || field
                    .strip_prefix("identifiers.")
                    .is_some_and(|t| t.parse::<IdentifierType>().is_ok())
                || field.strip_prefix("traits.").is_some_and(|t| {
                    !t.is_empty()
                        && t.len() <= 64
                        && t.chars().all(|c| c.is_alphanumeric() || c == '_')
                });
            if !known {
                return Err(EngineError::InvalidRequest(format!(
                    "unknown export field {field:?}; fields are identifiers.<type>, traits.<name>, {}",
                    DERIVED_FIELDS.join(", ")
                )));
            }
        }
        Ok(())
    }

    /// `POST /v1/exports`: checks the request and starts the job in the background.
    pub fn start_export(
        self: &Arc<Self>,
        request: ExportRequest,
        access: &Access,
    ) -> Result<ExportRecord, EngineError> {
        self.validate_export_fields(&request.fields)?;
        let audience = self.load_audience(&request.audience)?;
        let recipient = self
            .recipient(&request.recipient)?
            .ok_or_else(|| EngineError::NotFound(format!("recipient {}", request.recipient)))?;
        if !self
            .policies()
            .taxonomy
            .purposes
            .contains_key(&request.purpose)
        {
            return Err(EngineError::InvalidRequest(format!(
                "purpose {:?} is not a purpose of the taxonomy",
                request.purpose
            )));
        }
        if !self
            .policies()
            .caller_may_use(&access.caller, &request.purpose)
        {
            return Err(EngineError::Denied(Box::new(self.policies().decide(
                &DecisionRequest {
                    action: Action::Export,
                    purpose: request.purpose.clone(),
                    caller: Some(access.caller.clone()),
                    recipient: Some(recipient.facts()),
                    fields: Vec::new(),
                },
                &cdp_policy::SubjectFacts::default(),
            ))));
        }
        let record = ExportRecord {
            id: format!("exp_{}", hex::encode(&cdp_crypto::random_bytes::<8>()?)),
            audience: audience.id.clone(),
            purpose: request.purpose,
            recipient: recipient.id.clone(),
            fields: request.fields,
            format: request.format,
            status: ExportStatus::Running,
            progress: ExportProgress::default(),
            reason: None,
            manifest: None,
            created_by: access.actor.clone(),
            created_at: OffsetDateTime::now_utc(),
        };
        self.save_export(
            &record,
            None,
            &[AuditRecord {
                actor: access.actor.clone(),
                action: "export.create".into(),
                purpose: Some(record.purpose.clone()),
                person: None,
                decision: "done".into(),
                rules: vec![record.id.clone(), recipient.id.clone(), audience.id.clone()],
            }],
        )?
        .wait_durable()?;
        let engine = self.clone();
        let job = record.clone();
        let caller = access.clone();
        std::thread::Builder::new()
            .name("cdp-export".into())
            .spawn(move || {
                let id = job.id.clone();
                if let Err(error) = engine.run_export(job, &caller) {
                    tracing::error!(export = %id, error = %error, "export failed");
                    // A partial file: its key was never saved, remove it.
                    if let Ok(path) = engine.export_file_path(&id) {
                        let _ = std::fs::remove_file(path);
                    }
                    if let Ok(Some(mut failed)) = engine.export(&id) {
                        failed.status = ExportStatus::Failed;
                        failed.reason = Some("the export failed; see the server log".into());
                        let _ = engine.save_export(&failed, None, &[]);
                    }
                }
            })
            .map_err(|_| EngineError::Index("cannot start the export job".into()))?;
        Ok(record)
    }

    fn save_export(
        &self,
        record: &ExportRecord,
        extra: Option<(&ExportSecrets, Vec<u8>, &[String])>,
        audit: &[AuditRecord],
    ) -> Result<cdp_store::CommitTicket, EngineError> {
        let key = job_key(&record.id);
        let mut batch = WriteBatch::default();
        batch.put(
            Keyspace::Exports,
            key.clone(),
            self.seal_system(Keyspace::Exports, &key, record)?,
        );
        if let Some((secrets, latest, members)) = extra {
            for (n, chunk) in members
                .chunks(self.config.exports.member_chunk.max(1))
                .enumerate()
            {
                let key = member_chunk_key(&record.id, n);
                let mut plain = Vec::with_capacity(chunk.len() * 16);
                for pseudonym in chunk {
                    plain.extend_from_slice(&pseudonym_bytes(pseudonym)?);
                }
                let sealed = self.vault().seal_system(Keyspace::Exports, &key, &plain)?;
                batch.put(Keyspace::Exports, key, sealed);
            }
            let key = secrets_key(&record.id);
            batch.put(
                Keyspace::Exports,
                key.clone(),
                self.seal_system(Keyspace::Exports, &key, secrets)?,
            );
            batch.put(Keyspace::Exports, latest, record.id.as_bytes().to_vec());
        }
        if audit.is_empty() {
            Ok(self.store().commit(batch)?)
        } else {
            self.commit_audited(batch, audit)
        }
    }

    /// An export job.
    pub fn export(&self, id: &str) -> Result<Option<ExportRecord>, EngineError> {
        if !(id.len() == 20 && id.starts_with("exp_")) {
            return Err(EngineError::InvalidRequest(
                "an export id is exp_ followed by 16 hex digits".into(),
            ));
        }
        self.get_system(Keyspace::Exports, &job_key(id))
    }

    /// The members of an audience the index allows for `purpose`, all pages.
    pub(crate) fn all_members(
        &self,
        audience: &crate::AudienceRecord,
        purpose: &str,
    ) -> Result<Vec<ProfileId>, EngineError> {
        let index = self.search_index()?;
        let purposes: Vec<String> = self.policies().taxonomy.purposes.keys().cloned().collect();
        let mut out = Vec::new();
        let mut after = None;
        loop {
            let page = index
                .members(&audience.condition, &purposes, purpose, after, 10_000)
                .map_err(index_error)?;
            let Some(last) = page.last().map(|(key, _)| *key) else {
                break;
            };
            after = Some(last);
            out.extend(
                page.into_iter()
                    .filter_map(|(_, id)| id.parse::<ProfileId>().ok()),
            );
        }
        Ok(out)
    }

    fn run_export(&self, mut job: ExportRecord, access: &Access) -> Result<(), EngineError> {
        let audience = self.load_audience(&job.audience)?;
        let recipient = self
            .recipient(&job.recipient)?
            .ok_or_else(|| EngineError::NotFound(format!("recipient {}", job.recipient)))?;
        let index = self.search_index()?;
        let purposes: Vec<String> = self.policies().taxonomy.purposes.keys().cloned().collect();
        let mut members: Vec<ProfileId> = index
            .member_keys(&audience.condition, &purposes, &job.purpose)
            .map_err(index_error)?
            .into_iter()
            .map(|(key, low)| crate::indexer::profile_of_keys(key, low))
            .collect();
        // In profile-id order, the order of the store: the workers read by walking it. (The
        // file's row order carries nothing: profile ids are random.)
        members.sort_unstable();
        job.progress.total = members.len() as u64;
        let pseudonyms = self.vault().pseudonym_key(&recipient.id)?;
        let policy_fields: Vec<String> = job
            .fields
            .iter()
            .filter_map(|f| policy_field(f))
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect();
        let request = DecisionRequest {
            action: Action::Export,
            purpose: job.purpose.clone(),
            caller: Some(access.caller.clone()),
            recipient: Some(recipient.facts()),
            fields: policy_fields,
        };
        let now = OffsetDateTime::now_utc();
        let mut counts = ExportCounts::default();
        let mut transforms: BTreeMap<String, String> = BTreeMap::new();
        let mut columns: Vec<String> = vec!["op".into()];
        columns.extend(job.fields.iter().cloned());
        let shape = RowShape {
            request: &request,
            fields: &job.fields,
            columns: &columns,
            format: job.format,
            pseudonyms: &pseudonyms,
            now,
        };
        // The file is written as the rows come (removed again if the export is refused or
        // fails: its key is never saved then, so what was written is unreadable anyway).
        let (file_key, wrapped_key) = self.vault().new_file_key(job.id.as_bytes())?;
        let mut writer = SealedFileWriter::new(self, &file_key, &job.id)?;
        if job.format == ExportFormat::Csv {
            writer.write(&csv_line(&columns))?;
        }
        // Formatted rows of the last block, not yet in the file.
        let mut pending: Vec<Vec<u8>> = Vec::new();
        let mut included = Vec::new();
        let mut strictest_k = 0u64;
        // Members are decided and formatted on both cores, a block at a time (progress is
        // saved between blocks); meanwhile this thread seals the previous block into the file.
        for block in members.chunks(4096) {
            let halves: Vec<&[ProfileId]> = block.chunks(block.len().div_ceil(2).max(1)).collect();
            let (results, written) = std::thread::scope(|scope| {
                let workers: Vec<_> = halves
                    .iter()
                    .map(|half| {
                        let shape = &shape;
                        scope.spawn(move || self.export_members(half, shape))
                    })
                    .collect();
                let written = pending.drain(..).try_for_each(|line| writer.write(&line));
                let results: Vec<Result<MemberResults, EngineError>> = workers
                    .into_iter()
                    .map(|worker| {
                        worker.join().unwrap_or_else(|_| {
                            Err(EngineError::Index("an export worker panicked".into()))
                        })
                    })
                    .collect();
                (results, written)
            });
            written?;
            for result in results {
                let part = result?;
                counts.considered += part.considered;
                counts.included += part.rows.len() as u64;
                for (reason, n) in part.excluded {
                    *counts.excluded.entry(reason).or_default() += n;
                }
                strictest_k = strictest_k.max(part.strictest_k);
                for (field, transform) in part.transforms {
                    transforms.entry(field).or_insert(transform);
                }
                for (pseudonym, line) in part.rows {
                    included.push(pseudonym);
                    pending.push(line);
                }
            }
            job.progress.considered = counts.considered;
            let _ = self.save_export(&job, None, &[]);
        }
        job.progress.considered = counts.considered;
        if strictest_k == 0 {
            strictest_k = self
                .policies()
                .jurisdictions
                .iter()
                .map(|j| j.export.min_audience_size)
                .max()
                .unwrap_or(1);
        }
        if counts.included < strictest_k {
            writer.discard();
            job.status = ExportStatus::Refused;
            job.reason = Some(format!(
                "{} people remain after the policies, fewer than the minimum audience size {strictest_k}: a smaller file could single people out",
                counts.included
            ));
            self.save_export(
                &job,
                None,
                &[AuditRecord {
                    actor: access.actor.clone(),
                    action: "export.refused".into(),
                    purpose: Some(job.purpose.clone()),
                    person: None,
                    decision: "deny".into(),
                    rules: vec![
                        job.id.clone(),
                        format!("included={}", counts.included),
                        format!("k={strictest_k}"),
                    ],
                }],
            )?
            .wait_durable()?;
            return Ok(());
        }
        // The delta: pseudonyms of the last export of this audience to this recipient that are
        // not in this one.
        let latest = latest_key(&audience.id, &recipient.id);
        let previous = self
            .store()
            .get(Keyspace::Exports, &latest)?
            .map(|id| String::from_utf8_lossy(&id).into_owned());
        for line in pending.drain(..) {
            writer.write(&line)?;
        }
        // Sorted: the delta below, and erasure and access requests look a person up in every
        // past export.
        included.sort_unstable();
        let mut removals = Vec::new();
        if let Some(previous) = &previous {
            let key = secrets_key(previous);
            if let Some(secrets) = self.get_system::<ExportSecrets>(Keyspace::Exports, &key)? {
                removals = sorted_difference(self.past_members(previous, secrets)?, &included);
            }
        }
        counts.removals = removals.len() as u64;
        for pseudonym in &removals {
            let mut row = BTreeMap::new();
            row.insert("op".into(), Value::String("remove".into()));
            if job.fields.iter().any(|f| f == "pseudonym") {
                row.insert("pseudonym".into(), Value::String(pseudonym.clone()));
            }
            writer.write(&format_row(job.format, &columns, &row))?;
        }
        let (file_sha256, file_bytes) = writer.finish()?;
        let signing = self.vault().signing_key()?;
        let mut manifest = Manifest {
            export_id: job.id.clone(),
            audience_id: audience.id.clone(),
            audience_definition_sha256: hex::encode(&cdp_crypto::sha256_parts(&[
                &serde_json::to_vec(&audience.condition).unwrap_or_default(),
            ])),
            purpose: job.purpose.clone(),
            recipient: RecipientSummary {
                id: recipient.id.clone(),
                name: recipient.name.clone(),
                role: recipient.role,
                region: recipient.region.clone(),
                transfer_mechanism: recipient.transfer_mechanism.clone(),
            },
            policy_version: self.policies().version.clone(),
            counts,
            fields: job
                .fields
                .iter()
                .map(|field| FieldTransform {
                    field: field.clone(),
                    transform: transforms
                        .get(field)
                        .cloned()
                        .unwrap_or_else(|| "none".into()),
                })
                .collect(),
            format: job.format,
            classification: "pseudonymous".into(),
            file_sha256,
            file_bytes,
            previous_export: previous,
            created_at: job.created_at,
            expires_at: job.created_at + time::Duration::days(EXPIRY_DAYS),
            signing_key: signing.public_key_base64(),
            signature: None,
        };
        manifest.signature = Some(signing.sign_base64(&manifest.signed_bytes()));
        job.status = ExportStatus::Done;
        let summary = vec![
            job.id.clone(),
            format!("included={}", manifest.counts.included),
            format!(
                "excluded={}",
                manifest.counts.excluded.values().sum::<u64>()
            ),
            format!("removals={}", manifest.counts.removals),
        ];
        job.manifest = Some(manifest);
        let secrets = ExportSecrets {
            wrapped_key,
            pseudonyms: Vec::new(),
            chunk_starts: included
                .chunks(self.config.exports.member_chunk.max(1))
                .filter_map(|chunk| chunk.first().cloned())
                .collect(),
        };
        self.save_export(
            &job,
            Some((&secrets, latest, &included)),
            &[AuditRecord {
                actor: access.actor.clone(),
                action: "export.done".into(),
                purpose: Some(job.purpose.clone()),
                person: None,
                decision: "allow".into(),
                rules: summary,
            }],
        )?
        .wait_durable()?;
        Ok(())
    }

    /// Decides and transforms a slice of members.
    fn export_members(
        &self,
        members: &[ProfileId],
        shape: &RowShape<'_>,
    ) -> Result<MemberResults, EngineError> {
        let RowShape {
            request,
            fields,
            pseudonyms,
            now,
            ..
        } = *shape;
        let mut out = MemberResults::default();
        let mut cursors = SubjectCursors {
            keys: Cursor::new(self.store().as_ref(), Keyspace::Keys),
            profiles: Cursor::new(self.store().as_ref(), Keyspace::Profiles),
            consents: Cursor::new(self.store().as_ref(), Keyspace::Consents),
        };
        for member in members {
            out.considered += 1;
            let Some((record, facts)) = self.export_subject(&mut cursors, *member)? else {
                *out.excluded.entry("gone".into()).or_default() += 1;
                continue;
            };
            for j in self.policies().jurisdictions_for(&facts).0 {
                out.strictest_k = out.strictest_k.max(j.export.min_audience_size);
            }
            let decision = self.policies().decide(request, &facts);
            if !decision.allowed() {
                let rule = decision
                    .reasons
                    .iter()
                    .find(|r| r.effect == cdp_policy::ReasonKind::Deny)
                    .map_or_else(|| "denied".to_string(), |r| r.rule.clone());
                *out.excluded.entry(rule).or_default() += 1;
                continue;
            }
            if self.any_suppressed()? && self.is_suppressed(&record)? {
                *out.excluded.entry("suppressed".into()).or_default() += 1;
                continue;
            }
            let pseudonym = pseudonyms.pseudonym(&record.id);
            let row = self.export_row(
                fields,
                &record,
                &facts,
                &decision,
                &pseudonym,
                pseudonyms,
                now,
                &mut out.transforms,
            );
            let mut row = row;
            row.insert("op".into(), Value::String("add".into()));
            let line = format_row(shape.format, shape.columns, &row);
            out.rows.push((pseudonym, line));
        }
        Ok(out)
    }

    /// A member's profile and facts, read through the cursors (members ascend).
    fn export_subject(
        &self,
        cursors: &mut SubjectCursors<'_>,
        id: ProfileId,
    ) -> Result<Option<(ProfileRecord, cdp_policy::SubjectFacts)>, EngineError> {
        // Members come from the index: current ids (one merged away since is simply gone, and
        // so is an erased person, whose key was destroyed).
        let Some(wrapped) = cursors.keys.get(id.as_bytes())? else {
            return Ok(None);
        };
        let Some(sealed) = cursors.profiles.get(id.as_bytes())? else {
            return Ok(None);
        };
        let key = self.vault().unwrap_person_key(&id, wrapped)?;
        let record: ProfileRecord =
            self.open_person(&key, Keyspace::Profiles, id.as_bytes(), &sealed)?;
        let consents = self.open_consent_records(&key, cursors.consents.prefix(id.as_bytes())?)?;
        let facts = self.subject_facts(&record, &consents)?;
        Ok(Some((record, facts)))
    }

    #[allow(clippy::too_many_arguments)]
    fn export_row(
        &self,
        fields: &[String],
        record: &ProfileRecord,
        facts: &cdp_policy::SubjectFacts,
        decision: &cdp_policy::Decision,
        pseudonym: &str,
        pseudonyms: &cdp_crypto::PseudonymKey,
        now: OffsetDateTime,
        transforms: &mut BTreeMap<String, String>,
    ) -> BTreeMap<String, Value> {
        let mut row = BTreeMap::new();
        let obligation = |field: &str| decision.obligation(field);
        let identifier = |kind: &str| {
            record
                .identifiers
                .iter()
                .find(|i| i.kind.as_str() == kind)
                .map(|i| i.value.clone())
        };
        let traits = || {
            compute(
                &record.activity,
                now,
                &self.config.computed,
                &Default::default(),
            )
        };
        for field in fields {
            let (value, transform) = match field.as_str() {
                "pseudonym" => (
                    Some(Value::String(pseudonym.to_string())),
                    "hmac-sha256 per recipient".to_string(),
                ),
                "email_sha256_google"
                | "email_sha256_meta"
                | "phone_sha256_google"
                | "phone_sha256_meta" => {
                    let source = if field.starts_with("email") {
                        "identifiers.email"
                    } else {
                        "identifiers.phone"
                    };
                    let kind = if field.starts_with("email") {
                        "email"
                    } else {
                        "phone"
                    };
                    let value = (obligation(source) != Transform::Drop)
                        .then(|| identifier(kind))
                        .flatten()
                        .map(|v| {
                            Value::String(match field.as_str() {
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
                "age_band" => (
                    facts
                        .age
                        .map(|a| Value::String(format!("{}-{}", a / 10 * 10, a / 10 * 10 + 9))),
                    "generalise:band10".to_string(),
                ),
                "region" => (
                    facts.residency.clone().map(Value::String),
                    "keep".to_string(),
                ),
                "city" => (
                    record
                        .traits
                        .get("address")
                        .and_then(|a| a.value.get("city").cloned())
                        .or_else(|| record.traits.get("city").map(|t| t.value.clone())),
                    "keep".to_string(),
                ),
                "tier" => (Some(Value::String(traits().tier)), "computed".to_string()),
                "lifecycle" => (
                    Some(Value::String(traits().lifecycle)),
                    "computed".to_string(),
                ),
                "rfm_score" => {
                    let t = traits();
                    (
                        Some(Value::from(t.rfm_r + t.rfm_f + t.rfm_m)),
                        "computed".to_string(),
                    )
                }
                other => {
                    let raw = if let Some(kind) = other.strip_prefix("identifiers.") {
                        identifier(kind).map(Value::String)
                    } else {
                        other
                            .strip_prefix("traits.")
                            .and_then(|name| record.traits.get(name))
                            .map(|t| t.value.clone())
                    };
                    let transform = obligation(other);
                    let value = raw.and_then(|raw| match transform {
                        Transform::Pseudonymise => {
                            let text = raw.as_str().map_or_else(|| raw.to_string(), str::to_string);
                            Some(Value::String(pseudonyms.pseudonym_of_value(other, &text)))
                        }
                        t => cdp_policy::transform::apply(t, &raw),
                    });
                    (value, transform.label())
                }
            };
            transforms.entry(field.clone()).or_insert(transform);
            if let Some(value) = value {
                row.insert(field.clone(), value);
            }
        }
        row
    }
}

fn csv_cell(text: &str) -> String {
    if text.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", text.replace('"', "\"\""))
    } else {
        text.to_string()
    }
}

fn csv_line(cells: &[String]) -> Vec<u8> {
    let mut line = cells
        .iter()
        .map(|c| csv_cell(c))
        .collect::<Vec<_>>()
        .join(",");
    line.push('\n');
    line.into_bytes()
}

/// The items of sorted `old` that are not in sorted `new`.
fn sorted_difference(old: Vec<String>, new: &[String]) -> Vec<String> {
    let mut rest = new.iter().peekable();
    old.into_iter()
        .filter(|item| {
            while rest.next_if(|candidate| *candidate < item).is_some() {}
            rest.peek() != Some(&item)
        })
        .collect()
}

fn format_row(format: ExportFormat, columns: &[String], row: &BTreeMap<String, Value>) -> Vec<u8> {
    match format {
        ExportFormat::Csv => csv_line(
            &columns
                .iter()
                .map(|c| match row.get(c) {
                    Some(Value::String(s)) => s.clone(),
                    Some(Value::Null) | None => String::new(),
                    Some(other) => other.to_string(),
                })
                .collect::<Vec<_>>(),
        ),
        ExportFormat::Jsonl => {
            let mut line = serde_json::to_vec(row).unwrap_or_default();
            line.push(b'\n');
            line
        }
    }
}

/// Writes an export file sealed in chunks: `[u32 length][sealed chunk]`..., chunk `i` bound to
/// (export id, i). Hashes the plaintext on the way.
struct SealedFileWriter<'e> {
    engine: &'e Engine,
    key: &'e cdp_crypto::DataKey,
    id: String,
    file: std::io::BufWriter<std::fs::File>,
    buffer: Vec<u8>,
    chunk: u32,
    hash: cdp_crypto::Sha256Stream,
    bytes: u64,
}

impl<'e> SealedFileWriter<'e> {
    fn new(
        engine: &'e Engine,
        key: &'e cdp_crypto::DataKey,
        id: &str,
    ) -> Result<Self, EngineError> {
        let path = engine.export_file_path(id)?;
        let file = std::fs::File::create(&path)
            .map_err(|e| EngineError::Index(format!("cannot create the export file: {e}")))?;
        Ok(Self {
            engine,
            key,
            id: id.to_string(),
            file: std::io::BufWriter::new(file),
            buffer: Vec::with_capacity(CHUNK),
            chunk: 0,
            hash: cdp_crypto::Sha256Stream::default(),
            bytes: 0,
        })
    }

    fn write(&mut self, bytes: &[u8]) -> Result<(), EngineError> {
        self.hash.update(bytes);
        self.bytes += bytes.len() as u64;
        self.buffer.extend_from_slice(bytes);
        if self.buffer.len() >= CHUNK {
            self.flush_chunk()?;
        }
        Ok(())
    }

    fn flush_chunk(&mut self) -> Result<(), EngineError> {
        use std::io::Write as _;
        let aad = [self.id.as_bytes(), &self.chunk.to_be_bytes()].concat();
        let sealed =
            self.engine
                .vault()
                .seal_person(self.key, Keyspace::Exports, &aad, &self.buffer)?;
        let length =
            u32::try_from(sealed.len()).map_err(|_| EngineError::Corrupt("export chunk".into()))?;
        self.file
            .write_all(&length.to_be_bytes())
            .and_then(|()| self.file.write_all(&sealed))
            .map_err(|e| EngineError::Index(format!("cannot write the export file: {e}")))?;
        self.buffer.clear();
        self.chunk += 1;
        Ok(())
    }

    /// Removes the file (an export refused after rows were written).
    fn discard(self) {
        let path = self.engine.export_file_path(&self.id);
        drop(self.file);
        if let Ok(path) = path {
            let _ = std::fs::remove_file(path);
        }
    }

    fn finish(mut self) -> Result<(String, u64), EngineError> {
        use std::io::Write as _;
        if !self.buffer.is_empty() || self.chunk == 0 {
            self.flush_chunk()?;
        }
        self.file
            .flush()
            .and_then(|()| self.file.get_ref().sync_all())
            .map_err(|e| EngineError::Index(format!("cannot write the export file: {e}")))?;
        Ok((self.hash.finish_hex(), self.bytes))
    }
}

impl Engine {
    /// One chunk of a finished export's sorted member list.
    fn member_chunk(&self, id: &str, chunk: usize) -> Result<Vec<String>, EngineError> {
        let key = member_chunk_key(id, chunk);
        let sealed = self
            .store()
            .get(Keyspace::Exports, &key)?
            .ok_or_else(|| EngineError::Corrupt(format!("member list of export {id}")))?;
        let plain = self.vault().open_system(Keyspace::Exports, &key, &sealed)?;
        if plain.len() % 16 != 0 {
            return Err(EngineError::Corrupt(format!("member list of export {id}")));
        }
        Ok(plain.chunks_exact(16).map(hex::encode).collect())
    }

    /// Everyone a finished export included, sorted.
    fn past_members(&self, id: &str, secrets: ExportSecrets) -> Result<Vec<String>, EngineError> {
        let mut members = secrets.pseudonyms;
        for chunk in 0..secrets.chunk_starts.len() {
            members.extend(self.member_chunk(id, chunk)?);
        }
        Ok(members)
    }

    /// Whether a finished export included the pseudonym (reads one chunk at most).
    fn was_member(
        &self,
        id: &str,
        secrets: &ExportSecrets,
        pseudonym: &String,
    ) -> Result<bool, EngineError> {
        if secrets.pseudonyms.binary_search(pseudonym).is_ok() {
            return Ok(true);
        }
        // The last chunk starting at or before the pseudonym.
        let Some(chunk) = secrets
            .chunk_starts
            .partition_point(|start| start <= pseudonym)
            .checked_sub(1)
        else {
            return Ok(false);
        };
        Ok(self
            .member_chunk(id, chunk)?
            .binary_search(pseudonym)
            .is_ok())
    }

    /// The exports that included the person, and their recipients (GDPR Art 17(2), 19).
    pub(crate) fn exports_of(&self, id: &ProfileId) -> Result<Vec<Value>, EngineError> {
        let mut out = Vec::new();
        for item in self.store().scan_prefix(Keyspace::Exports, b"job/") {
            let (key, sealed) = item?;
            let record: ExportRecord = self.open_system(Keyspace::Exports, &key, &sealed)?;
            if record.status != ExportStatus::Done {
                continue;
            }
            let Some(secrets) =
                self.get_system::<ExportSecrets>(Keyspace::Exports, &secrets_key(&record.id))?
            else {
                continue;
            };
            let pseudonym = self.vault().pseudonym_key(&record.recipient)?.pseudonym(id);
            if self.was_member(&record.id, &secrets, &pseudonym)? {
                let recipient = self.recipient(&record.recipient)?;
                out.push(serde_json::json!({
                    "export_id": record.id,
                    "recipient_id": record.recipient,
                    "recipient": recipient.map(|r| r.name),
                    "purpose": record.purpose,
                    "created_at": record.created_at.format(&time::format_description::well_known::Rfc3339).unwrap_or_default(),
                }));
            }
        }
        Ok(out)
    }

    /// Where export files live: `<data dir>/exports/<id>.sealed`.
    fn export_file_path(&self, id: &str) -> Result<std::path::PathBuf, EngineError> {
        let dir = self
            .exports_dir
            .get()
            .ok_or_else(|| EngineError::Index("no export directory is configured".into()))?;
        std::fs::create_dir_all(dir)
            .map_err(|e| EngineError::Index(format!("cannot create {}: {e}", dir.display())))?;
        Ok(dir.join(format!("{id}.sealed")))
    }

    /// Sets the directory export files are written to.
    pub fn set_exports_dir(&self, dir: std::path::PathBuf) {
        let _ = self.exports_dir.set(dir);
    }

    /// The decrypted file of a finished export (audited as a download).
    pub fn export_file(
        &self,
        id: &str,
        access: &Access,
    ) -> Result<(ExportRecord, Vec<u8>), EngineError> {
        let record = self
            .export(id)?
            .ok_or_else(|| EngineError::NotFound(format!("export {id}")))?;
        let Some(manifest) = record
            .manifest
            .clone()
            .filter(|_| record.status == ExportStatus::Done)
        else {
            return Err(EngineError::Conflict(format!(
                "export {id} has no file (status {:?})",
                record.status
            )));
        };
        if OffsetDateTime::now_utc() > manifest.expires_at {
            return Err(EngineError::Conflict(format!("export {id} has expired")));
        }
        let secrets: ExportSecrets = self
            .get_system(Keyspace::Exports, &secrets_key(id))?
            .ok_or_else(|| EngineError::NotFound(format!("the file of export {id}")))?;
        let key = self
            .vault()
            .open_file_key(id.as_bytes(), secrets.wrapped_key)?;
        let sealed = std::fs::read(self.export_file_path(id)?)
            .map_err(|_| EngineError::NotFound(format!("the file of export {id}")))?;
        let mut out = Vec::with_capacity(manifest.file_bytes as usize);
        let mut rest = sealed.as_slice();
        let mut chunk = 0u32;
        while !rest.is_empty() {
            let length = rest
                .get(..4)
                .and_then(|b| <[u8; 4]>::try_from(b).ok())
                .map(u32::from_be_bytes)
                .ok_or_else(|| EngineError::Corrupt(format!("export file {id}")))?
                as usize;
            let body = rest
                .get(4..4 + length)
                .ok_or_else(|| EngineError::Corrupt(format!("export file {id}")))?;
            let aad = [id.as_bytes(), &chunk.to_be_bytes()].concat();
            out.extend(
                self.vault()
                    .open_person(&key, Keyspace::Exports, &aad, body)?,
            );
            rest = &rest[4 + length..];
            chunk += 1;
        }
        self.audit(&[AuditRecord {
            actor: access.actor.clone(),
            action: "export.download".into(),
            purpose: Some(record.purpose.clone()),
            person: None,
            decision: "done".into(),
            rules: vec![id.to_string()],
        }])?
        .wait_durable()?;
        Ok((record, out))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sorted_difference_keeps_what_left() {
        let strings = |items: &[&str]| items.iter().map(|s| (*s).to_string()).collect::<Vec<_>>();
        assert_eq!(
            sorted_difference(
                strings(&["a", "c", "d", "f"]),
                &strings(&["b", "c", "e", "f", "g"])
            ),
            strings(&["a", "d"])
        );
        assert_eq!(sorted_difference(strings(&["a"]), &[]), strings(&["a"]));
        assert!(sorted_difference(Vec::new(), &strings(&["a"])).is_empty());
    }

    #[test]
    fn ad_platform_hashes_match_the_documented_normalisation() {
        // Digests from Python's hashlib of the normalised strings.
        assert_eq!(
            email_sha256_google(" Buyer.0@Gmail.com "),
            "ef8c4a9fb342af2c405bd6f442ee3393f0286d154dd3152e78635855309f13c8"
        );
        assert_eq!(
            email_sha256_google("John.Doe@example.com"),
            "836f82db99121b3481011f16b49dfa5fbc714a0d1b1b9f784a1ebbbf5b39577f"
        );
        assert_eq!(
            email_sha256_meta(" John.Doe@Example.com"),
            "836f82db99121b3481011f16b49dfa5fbc714a0d1b1b9f784a1ebbbf5b39577f"
        );
        assert_eq!(
            phone_sha256_google("+8613900000000"),
            "99f43c0f4b02d29c595f7308f1c7727c912612e10707cf423c0826d889fbe1db"
        );
        assert_eq!(
            phone_sha256_meta("+8613900000000"),
            "2995d216d7630ebb4d15fcbaa9f80a354d1a47bc6331a5d6ab4e49b20a064199"
        );
    }
}
