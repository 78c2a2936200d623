//! A finished export's file read back: whole for a download (audited), or as its header and
//! rows for a delivery to a destination.

use cdp_store::Keyspace;
use time::OffsetDateTime;

use super::keys::secrets_key;
use super::members::ExportSecrets;
use super::sealed_file::{NO_MEMBER, framed_rows, read_sealed_file};
use super::{ExportRecord, ExportStatus};
use crate::audit::AuditRecord;
use crate::destinations::ExportContent;
use crate::read::access::Access;
use crate::{Engine, EngineError};

impl Engine {
    /// The decrypted file of a finished export (audited as a download).
    pub fn export_file(
        &self,
        id: &str,
        access: &Access,
    ) -> Result<(ExportRecord, Vec<u8>), EngineError> {
        let content = self.export_content(id)?;
        let mut out = content.header.unwrap_or_default();
        for row in &content.rows {
            out.extend_from_slice(row);
        }
        self.audit(&[AuditRecord {
            actor: access.actor.clone(),
            action: "export.download".into(),
            purpose: Some(content.record.purpose.clone()),
            person: None,
            decision: "done".into(),
            rules: vec![id.to_string()],
        }])?
        .wait_durable()?;
        Ok((content.record, out))
    }

    /// A finished, unexpired export's file as it is now (after any erasure's rewrite): its
    /// CSV header and its rows. `NotFound` or `Conflict` (not finished, expired, withdrawn)
    /// say why there is no file. Not audited: the caller audits what it does with it.
    pub(crate) fn export_content(&self, id: &str) -> Result<ExportContent, EngineError> {
        let record = self
            .export(id)?
            .ok_or_else(|| EngineError::NotFound(format!("export {id}")))?;
        let Some(manifest) = record
            .manifest
            .clone()
            .filter(|_| record.status == ExportStatus::Done)
        else {
            return Err(EngineError::Conflict(format!(
                "export {id} has no file: it is {}",
                record.status.name()
            )));
        };
        if OffsetDateTime::now_utc() > manifest.expires_at {
            return Err(EngineError::Conflict(format!("export {id} has expired")));
        }
        let secrets: ExportSecrets = self
            .get_system(Keyspace::Exports, &secrets_key(id))?
            .ok_or_else(|| EngineError::NotFound(format!("the file of export {id}")))?;
        if secrets.wrapped_key.is_empty() {
            return Err(EngineError::Conflict(format!(
                "export {id} was withdrawn: {}",
                record.reason.as_deref().unwrap_or("its file was deleted")
            )));
        }
        let key = self
            .vault()
            .open_file_key(id.as_bytes(), secrets.wrapped_key)?;
        let path = self.export_file_path(id, secrets.revision);
        let (mut header, mut rows) = (None, Vec::new());
        if secrets.framed {
            let framed = read_sealed_file(self.vault(), &key, id, &path, secrets.plain_bytes)?;
            for (n, (tag, line)) in framed_rows(&framed)?.into_iter().enumerate() {
                // The CSV header is the first row and belongs to nobody.
                if n == 0 && tag == NO_MEMBER && record.format == super::ExportFormat::Csv {
                    header = Some(line.to_vec());
                } else {
                    rows.push(line.to_vec());
                }
            }
        } else {
            // Files written before rows were framed: plain lines.
            let plain = read_sealed_file(self.vault(), &key, id, &path, manifest.file_bytes)?;
            let mut lines = plain.split_inclusive(|b| *b == b'\n').map(<[u8]>::to_vec);
            if record.format == super::ExportFormat::Csv {
                header = lines.next();
            }
            rows.extend(lines);
        }
        Ok(ExportContent {
            record,
            manifest,
            revision: secrets.revision,
            header,
            rows,
        })
    }
}
