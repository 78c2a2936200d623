//! What an erasure does to the export files that hold the person (GDPR Art 17(2), 19; PIPL
//! Art 47), and what retention does to expired ones (PIPL Art 19, GDPR Art 5(1)(e)).
//!
//! A finished file that can still be downloaded is rewritten without the person's row, under
//! a new file key: the manifest counts them under `erased`, describes the new file and is
//! signed again. A file that cannot be rewritten (expired, or written before rows were framed
//! with their member) is withdrawn: its key is destroyed and the file deleted. Either way the
//! old file becomes unreadable the moment the erasure commits (its wrapped key is replaced in
//! the same batch), and is deleted right after. The pseudonym stays in the export's member
//! list, so the next export of the audience to that recipient lists it among the removals.

use std::path::PathBuf;

use cdp_core::ProfileId;
use cdp_store::{Keyspace, WriteBatch};
use serde_json::Value;
use time::OffsetDateTime;

use super::keys::{job_key, secrets_key};
use super::members::{ExportSecrets, pseudonym_bytes};
use super::sealed_file::{SealedFileWriter, framed_rows, read_sealed_file};
use super::{ExportRecord, ExportStatus};
use crate::{Engine, EngineError};

/// The export-file side of one erasure, staged before its batch commits.
#[derive(Default)]
pub(crate) struct ExportRevisions {
    /// The changed jobs and secrets, for the erasure's batch.
    pub(crate) batch: WriteBatch,
    /// One line per export that held the person, for the receipt.
    pub(crate) report: Vec<Value>,
    /// Files whose keys the batch destroys: deleted once it committed.
    superseded: Vec<PathBuf>,
    /// Files written for the batch: deleted if it does not commit.
    written: Vec<PathBuf>,
}

impl ExportRevisions {
    /// The batch committed: the superseded files (unreadable already) are deleted.
    pub(crate) fn committed(self) {
        for path in self.superseded {
            if let Err(error) = std::fs::remove_file(&path)
                && error.kind() != std::io::ErrorKind::NotFound
            {
                tracing::warn!(file = %path.display(), error = %error, "cannot delete a superseded export file (its key is destroyed)");
            }
        }
    }

    /// The batch did not commit: the files written for it are deleted (their keys were never
    /// saved).
    pub(crate) fn abandoned(self) {
        for path in self.written {
            let _ = std::fs::remove_file(path);
        }
    }
}

impl Engine {
    /// Stages the rewrite or withdrawal of every finished export that included the person.
    /// The caller holds the export-files lock (`Engine::export_files_lock`) until the batch
    /// committed or was abandoned: two erasures must not rewrite one file from the same
    /// revision.
    pub(crate) fn stage_export_erasure(
        &self,
        id: &ProfileId,
    ) -> Result<ExportRevisions, EngineError> {
        let mut out = ExportRevisions::default();
        let now = OffsetDateTime::now_utc();
        for (mut record, mut secrets) in self.exports_holding(id)? {
            let recipient = self.recipient(&record.recipient)?;
            let mut line = serde_json::json!({
                "export_id": record.id,
                "recipient_id": record.recipient,
                "recipient": recipient.map(|r| r.name),
                "purpose": record.purpose,
                "created_at": record.created_at.format(&time::format_description::well_known::Rfc3339).unwrap_or_default(),
            });
            let expired = record.manifest.as_ref().is_none_or(|m| now > m.expires_at);
            let file = if secrets.wrapped_key.is_empty() {
                line["file"] = Value::String("already withdrawn".into());
                out.report.push(line);
                continue;
            } else if expired || !secrets.framed {
                let reason = if expired {
                    "the file had expired and was deleted when a person in it was erased"
                } else {
                    "the file was deleted when a person in it was erased: it was written before files could be rewritten without one person; export the audience again"
                };
                out.superseded
                    .push(self.export_file_path(&record.id, secrets.revision));
                withdraw(&mut record, &mut secrets, reason);
                "withdrawn"
            } else {
                let pseudonym = self.vault().pseudonym_key(&record.recipient)?.pseudonym(id);
                self.rewrite_without(&mut record, &mut secrets, &pseudonym, now, &mut out)?;
                "rewritten without the person"
            };
            line["file"] = Value::String(file.into());
            out.report.push(line);
            self.stage_export_record(&mut out.batch, &record, &secrets)?;
        }
        Ok(out)
    }

    /// Retention of export files: every finished export past its expiry loses its file and
    /// key. Answers how many files were (or, dry, would be) deleted.
    pub(crate) fn withdraw_expired_exports(&self, dry_run: bool) -> Result<u64, EngineError> {
        let _files = self.export_files_lock();
        let now = OffsetDateTime::now_utc();
        let mut batch = WriteBatch::default();
        let mut superseded = Vec::new();
        for item in self.store().scan_prefix(Keyspace::Exports, b"job/") {
            let (key, sealed) = item?;
            let mut record: ExportRecord = self.open_system(Keyspace::Exports, &key, &sealed)?;
            let expired = record.manifest.as_ref().is_some_and(|m| now > m.expires_at);
            if record.status != ExportStatus::Done || !expired {
                continue;
            }
            let Some(mut secrets) =
                self.get_system::<ExportSecrets>(Keyspace::Exports, &secrets_key(&record.id))?
            else {
                continue;
            };
            superseded.push(self.export_file_path(&record.id, secrets.revision));
            withdraw(
                &mut record,
                &mut secrets,
                "the file expired and was deleted (storage limitation: PIPL Art 19, GDPR Art 5(1)(e))",
            );
            self.stage_export_record(&mut batch, &record, &secrets)?;
        }
        let deleted = superseded.len() as u64;
        if !dry_run && !batch.is_empty() {
            self.store().commit(batch)?.wait_durable()?;
            ExportRevisions {
                superseded,
                ..ExportRevisions::default()
            }
            .committed();
        }
        Ok(deleted)
    }

    /// `DELETE /v1/exports/{id}`: the file of a finished export is deleted and its key
    /// destroyed (audited, naming the caller); the job and its signed manifest stay, as the
    /// record of what was shared with whom. A running export cannot be deleted (it would
    /// write its file after); one without a file (refused, failed, withdrawn) has nothing to
    /// delete.
    pub fn delete_export(
        &self,
        id: &str,
        access: &crate::Access,
    ) -> Result<ExportRecord, EngineError> {
        let _files = self.export_files_lock();
        let mut record = self.finished_export(id, "export", "has a file to delete")?;
        let mut secrets = self
            .get_system::<ExportSecrets>(Keyspace::Exports, &secrets_key(id))?
            .ok_or_else(|| EngineError::Corrupt(format!("export {id} has no secrets")))?;
        let file = self.export_file_path(id, secrets.revision);
        withdraw(
            &mut record,
            &mut secrets,
            &format!("the file was deleted by {}", access.actor),
        );
        let mut batch = WriteBatch::default();
        self.stage_export_record(&mut batch, &record, &secrets)?;
        self.commit_audited(
            batch,
            &[crate::AuditRecord {
                actor: access.actor.clone(),
                action: "export.delete".into(),
                purpose: Some(record.purpose.clone()),
                person: None,
                decision: "done".into(),
                rules: vec![record.id.clone()],
            }],
        )?
        .wait_durable()?;
        ExportRevisions {
            superseded: vec![file],
            ..ExportRevisions::default()
        }
        .committed();
        Ok(record)
    }

    /// Writes the next revision of the file without the rows tagged with `pseudonym`, and
    /// updates the record and secrets to describe it.
    fn rewrite_without(
        &self,
        record: &mut ExportRecord,
        secrets: &mut ExportSecrets,
        pseudonym: &str,
        now: OffsetDateTime,
        out: &mut ExportRevisions,
    ) -> Result<(), EngineError> {
        let tag = pseudonym_bytes(pseudonym)?;
        let id = record.id.clone();
        let old_key = self
            .vault()
            .open_file_key(id.as_bytes(), secrets.wrapped_key.clone())?;
        let old_path = self.export_file_path(&id, secrets.revision);
        let framed = read_sealed_file(self.vault(), &old_key, &id, &old_path, secrets.plain_bytes)?;
        let (new_key, new_wrapped) = self.vault().new_file_key(id.as_bytes())?;
        let revision = secrets.revision + 1;
        let new_path = self.export_file_path(&id, revision);
        out.written.push(new_path.clone());
        let mut writer = SealedFileWriter::create(self.vault(), &new_key, &id, new_path)?;
        let mut dropped = 0u64;
        for (row_tag, line) in framed_rows(&framed)? {
            if row_tag == tag {
                dropped += 1;
            } else {
                writer.write_row(&row_tag, line)?;
            }
        }
        let written = writer.finish()?;
        out.superseded.push(old_path);
        secrets.wrapped_key = new_wrapped;
        secrets.plain_bytes = written.framed_bytes;
        secrets.revision = revision;
        if let Some(manifest) = record.manifest.as_mut() {
            manifest.counts.included = manifest.counts.included.saturating_sub(dropped);
            *manifest.counts.excluded.entry("erased".into()).or_default() += dropped;
            let counts = &mut manifest.counts;
            match counts
                .exclusions
                .iter_mut()
                .find(|line| line.reason == "erased")
            {
                Some(line) => line.people += dropped,
                None => counts.exclusions.push(super::Exclusion {
                    reason: "erased".into(),
                    people: dropped,
                    why: "erased after the export; the file was rewritten without them".into(),
                    cite: vec!["GDPR-17".into(), "PIPL-47".into()],
                }),
            }
            manifest.file_sha256 = written.sha256;
            manifest.file_bytes = written.delivered_bytes;
            manifest.revised_at = Some(now);
            let signing = self.vault().signing_key()?;
            manifest.signing_key = signing.public_key_base64();
            manifest.signature = None;
            manifest.signature = Some(signing.sign_base64(&manifest.signed_bytes()));
        }
        Ok(())
    }

    /// Puts an export's job and secrets into `batch`.
    fn stage_export_record(
        &self,
        batch: &mut WriteBatch,
        record: &ExportRecord,
        secrets: &ExportSecrets,
    ) -> Result<(), EngineError> {
        let key = job_key(&record.id);
        batch.put(
            Keyspace::Exports,
            key.clone(),
            self.seal_system(Keyspace::Exports, &key, record)?,
        );
        let key = secrets_key(&record.id);
        batch.put(
            Keyspace::Exports,
            key.clone(),
            self.seal_system(Keyspace::Exports, &key, secrets)?,
        );
        Ok(())
    }
}

/// The file of an export is gone: its key is forgotten, its status says so and why (the
/// manifest stays: it records what was shared with whom).
fn withdraw(record: &mut ExportRecord, secrets: &mut ExportSecrets, reason: &str) {
    secrets.wrapped_key.clear();
    record.status = ExportStatus::Withdrawn;
    record.reason = Some(reason.to_string());
}
