//! Who a finished export included: its sorted pseudonyms, stored sealed in chunks beside the
//! job (`members/<id>/<n>`), found again for the next delta to the same recipient and for
//! access and erasure requests (GDPR Art 17(2), 19).

use cdp_core::ProfileId;
use cdp_store::Keyspace;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::keys::{member_chunk_key, secrets_key};
use super::{ExportRecord, ExportStatus};
use crate::records::hex;
use crate::{Engine, EngineError};

/// Stored beside a finished export: its file key and where the list of who was in it lies
/// (for the next delta, and for access and erasure requests).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(super) struct ExportSecrets {
    /// The file key, wrapped; empty once the file was withdrawn (expired, or erased from
    /// where it could not be rewritten).
    pub(super) wrapped_key: Vec<u8>,
    /// Whether the file's rows are framed with their member's pseudonym (files written since
    /// erasure rewrites files; older ones are withdrawn instead).
    #[serde(default)]
    pub(super) framed: bool,
    /// The length of the file's (framed) plaintext; 0 in older files, whose manifest says it.
    #[serde(default)]
    pub(super) plain_bytes: u64,
    /// How often an erasure rewrote the file (its name: `<id>.sealed`, then `<id>.r<n>.sealed`).
    #[serde(default)]
    pub(super) revision: u32,
    /// Sorted pseudonyms, in stores written before member chunks (kept readable).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub(super) pseudonyms: Vec<String>,
    /// The first pseudonym of each chunk of the sorted member list (`members/<id>/<n>`): a
    /// million pseudonyms do not fit one store value, and a lookup reads one chunk.
    #[serde(default)]
    pub(super) chunk_starts: Vec<String>,
}

/// What the save that finishes a job writes beside it.
pub(super) struct Finished<'a> {
    pub(super) secrets: &'a ExportSecrets,
    /// The key naming the latest export of its audience and recipient (or schedule, campaign).
    pub(super) latest: Vec<u8>,
    /// Everyone it included, sorted pseudonyms' bytes.
    pub(super) members: &'a [[u8; 16]],
    /// A campaign send: each eligible person's profile id and arm (0: the holdout, 1 + the
    /// variant's index otherwise).
    pub(super) arms: &'a [([u8; 16], u8)],
    /// A campaign send: the contact records of the people it contacted, sealed, and stale
    /// ones to delete; moved into the batch, not copied (900,000 at 1M members).
    pub(super) contacts: Vec<crate::contact::ContactWrite>,
}

/// The bytes of a pseudonym (32 hex digits).
pub(super) fn pseudonym_bytes(pseudonym: &str) -> Result<[u8; 16], EngineError> {
    hex::decode::<16>(pseudonym).ok_or_else(|| EngineError::Corrupt("export member list".into()))
}

/// The items of sorted `old` that are not in sorted `new`.
pub(super) fn sorted_difference<T: Ord + Copy>(old: &[T], new: &[T]) -> Vec<T> {
    let mut rest = new.iter().peekable();
    old.iter()
        .filter(|item| {
            while rest.next_if(|candidate| candidate < item).is_some() {}
            rest.peek() != Some(item)
        })
        .copied()
        .collect()
}

impl Engine {
    /// The master version the file key in the export secrets `plain` (decoded from the
    /// record at `key`) is wrapped under (`None` once the file was withdrawn), and the record
    /// with the file key wrapped under the current version when it was not (`cdp keys rewrap`).
    pub(crate) fn rewrap_export_file_key(
        &self,
        key: &[u8],
        sealed: &[u8],
    ) -> Result<(Option<cdp_crypto::KeyVersion>, Option<Vec<u8>>), EngineError> {
        let Some(id) = key.strip_prefix(b"secret/") else {
            return Ok((None, None));
        };
        let mut secrets: ExportSecrets = self.open_system(Keyspace::Exports, key, sealed)?;
        if secrets.wrapped_key.is_empty() {
            return Ok((None, None));
        }
        let version = cdp_crypto::sealed_key_version(&secrets.wrapped_key)?;
        let Some(rewrapped) =
            self.vault()
                .rewrap_data_key(id, Keyspace::Exports, &secrets.wrapped_key)?
        else {
            return Ok((Some(version), None));
        };
        secrets.wrapped_key = rewrapped;
        Ok((
            Some(version),
            Some(self.seal_system(Keyspace::Exports, key, &secrets)?),
        ))
    }

    /// One chunk of a finished export's sorted member list.
    fn member_chunk(&self, id: &str, chunk: usize) -> Result<Vec<[u8; 16]>, EngineError> {
        let key = member_chunk_key(id, chunk);
        let sealed = self
            .store()
            .get(Keyspace::Exports, &key)?
            .ok_or_else(|| EngineError::Corrupt(format!("member list of export {id}")))?;
        let plain = self.vault().open_system(Keyspace::Exports, &key, &sealed)?;
        if plain.len() % 16 != 0 {
            return Err(EngineError::Corrupt(format!("member list of export {id}")));
        }
        Ok(plain
            .chunks_exact(16)
            .filter_map(|bytes| bytes.try_into().ok())
            .collect())
    }

    /// Everyone a finished export included, sorted pseudonyms' bytes.
    pub(super) fn past_members(
        &self,
        id: &str,
        secrets: ExportSecrets,
    ) -> Result<Vec<[u8; 16]>, EngineError> {
        // Exports of earlier stores listed them in the secrets, as hex.
        let mut members = (secrets.pseudonyms.iter())
            .map(|pseudonym| pseudonym_bytes(pseudonym))
            .collect::<Result<Vec<_>, _>>()?;
        for chunk in 0..secrets.chunk_starts.len() {
            members.extend(self.member_chunk(id, chunk)?);
        }
        members.sort_unstable();
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
            .binary_search(&pseudonym_bytes(pseudonym)?)
            .is_ok())
    }

    /// The finished (or since withdrawn) exports that included the person, with their secrets.
    pub(super) fn exports_holding(
        &self,
        id: &ProfileId,
    ) -> Result<Vec<(ExportRecord, ExportSecrets)>, EngineError> {
        let mut out = Vec::new();
        for item in self.store().scan_prefix(Keyspace::Exports, b"job/") {
            let (key, sealed) = item?;
            let record: ExportRecord = self.open_system(Keyspace::Exports, &key, &sealed)?;
            if !matches!(record.status, ExportStatus::Done | ExportStatus::Withdrawn) {
                continue;
            }
            let Some(secrets) =
                self.get_system::<ExportSecrets>(Keyspace::Exports, &secrets_key(&record.id))?
            else {
                continue;
            };
            let pseudonym = self.vault().pseudonym_key(&record.recipient)?.pseudonym(id);
            if self.was_member(&record.id, &secrets, &pseudonym)? {
                out.push((record, secrets));
            }
        }
        Ok(out)
    }

    /// The exports that included the person, and their recipients (GDPR Art 15(1)(c), 19).
    pub(crate) fn exports_of(&self, id: &ProfileId) -> Result<Vec<Value>, EngineError> {
        let mut out = Vec::new();
        for (record, _) in self.exports_holding(id)? {
            let recipient = self.recipient(&record.recipient)?;
            out.push(serde_json::json!({
                "export_id": record.id,
                "recipient_id": record.recipient,
                "recipient": recipient.map(|r| r.name),
                "purpose": record.purpose,
                "status": record.status.name(),
                "created_at": record.created_at.format(&time::format_description::well_known::Rfc3339).unwrap_or_default(),
            }));
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sorted_difference_keeps_what_left() {
        assert_eq!(
            sorted_difference(&[1, 3, 4, 6], &[2, 3, 5, 6, 7]),
            vec![1, 4]
        );
        assert_eq!(sorted_difference(&[1], &[]), vec![1]);
        assert!(sorted_difference(&[], &[1]).is_empty());
    }
}
