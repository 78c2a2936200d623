//! Ingestion sources and their write keys.
//!
//! Keys in `Keyspace::Sources`: `src/<id>` -> sealed [`SourceRecord`]; `wk/<sha256 of write
//! key>` -> source id; `name/<name>` -> source id. The write key itself is shown once, at
//! creation, and never stored.

use cdp_core::Channel;
use cdp_store::{Keyspace, WriteBatch};
use time::OffsetDateTime;

use crate::records::{SourceRecord, hex};
use crate::{Engine, EngineError};

const MAX_NAME: usize = 128;

fn write_key_entry(write_key: &str) -> Vec<u8> {
    [b"wk/".as_slice(), &cdp_crypto::secret_hash(write_key)].concat()
}

impl Engine {
    /// Creates a source; returns it with its write key (shown once).
    pub fn create_source(
        &self,
        name: &str,
        channel: Channel,
        default_region: Option<&str>,
    ) -> Result<(SourceRecord, String, cdp_store::CommitTicket), EngineError> {
        let name = name.trim();
        if name.is_empty() || name.len() > MAX_NAME || name.chars().any(char::is_control) {
            return Err(EngineError::InvalidRequest(format!(
                "name must be 1 to {MAX_NAME} characters without control characters"
            )));
        }
        let default_region = match default_region {
            None => None,
            Some(region) => {
                let region = region.trim().to_ascii_uppercase();
                if region.len() != 2 || region.parse::<phonenumber::country::Id>().is_err() {
                    return Err(EngineError::InvalidRequest(
                        "default_region must be an ISO 3166 alpha-2 code such as CN or DE".into(),
                    ));
                }
                Some(region)
            }
        };
        let _guard = self.write_lock()?;
        let name_key = [b"name/".as_slice(), name.as_bytes()].concat();
        if self.store().get(Keyspace::Sources, &name_key)?.is_some() {
            return Err(EngineError::Conflict(format!(
                "a source named {name:?} already exists"
            )));
        }
        let id = format!("src_{}", hex::encode(&cdp_crypto::random_bytes::<8>()?));
        let write_key = format!("cdpwk_{}", hex::encode(&cdp_crypto::random_bytes::<24>()?));
        let source = SourceRecord {
            id: id.clone(),
            name: name.to_string(),
            channel,
            default_region,
            created_at: OffsetDateTime::now_utc(),
            key_rotated_at: None,
            revoked_at: None,
        };
        let record_key = [b"src/".as_slice(), id.as_bytes()].concat();
        let sealed = self.seal_system(Keyspace::Sources, &record_key, &source)?;
        let mut batch = WriteBatch::new();
        batch
            .put(Keyspace::Sources, record_key, sealed)
            .put(
                Keyspace::Sources,
                write_key_entry(&write_key),
                id.as_bytes().to_vec(),
            )
            .put(Keyspace::Sources, name_key, id.as_bytes().to_vec());
        let ticket = self.store().commit(batch)?;
        Ok((source, write_key, ticket))
    }

    /// Replaces a source's write key: the old one stops working at once, the new one is
    /// returned (shown once). Refused for a revoked source.
    pub fn rotate_source_key(
        &self,
        id: &str,
    ) -> Result<(SourceRecord, String, cdp_store::CommitTicket), EngineError> {
        self.replace_source_key(id, false)
    }

    /// Revokes a source: its write key stops working at once, for good (the record stays, so
    /// what it ingested keeps its provenance).
    pub fn revoke_source(
        &self,
        id: &str,
    ) -> Result<(SourceRecord, cdp_store::CommitTicket), EngineError> {
        let (source, _, ticket) = self.replace_source_key(id, true)?;
        Ok((source, ticket))
    }

    fn replace_source_key(
        &self,
        id: &str,
        revoke: bool,
    ) -> Result<(SourceRecord, String, cdp_store::CommitTicket), EngineError> {
        let _guard = self.write_lock()?;
        let record_key = [b"src/".as_slice(), id.as_bytes()].concat();
        let mut source: SourceRecord = self
            .get_system(Keyspace::Sources, &record_key)?
            .ok_or_else(|| EngineError::NotFound(format!("source {id}")))?;
        if source.revoked_at.is_some() {
            return Err(EngineError::Conflict(format!(
                "source {id} is revoked: create a new source"
            )));
        }
        let mut batch = WriteBatch::new();
        // The old key's entry: found by the id it points to (sources are few).
        for item in self.store().scan_prefix(Keyspace::Sources, b"wk/") {
            let (key, value) = item?;
            if value == id.as_bytes() {
                batch.delete(Keyspace::Sources, key);
            }
        }
        let now = OffsetDateTime::now_utc();
        let write_key = if revoke {
            source.revoked_at = Some(now);
            String::new()
        } else {
            let write_key = format!("cdpwk_{}", hex::encode(&cdp_crypto::random_bytes::<24>()?));
            batch.put(
                Keyspace::Sources,
                write_key_entry(&write_key),
                id.as_bytes().to_vec(),
            );
            source.key_rotated_at = Some(now);
            write_key
        };
        let sealed = self.seal_system(Keyspace::Sources, &record_key, &source)?;
        batch.put(Keyspace::Sources, record_key, sealed);
        let ticket = self.store().commit(batch)?;
        Ok((source, write_key, ticket))
    }

    /// The source a write key belongs to.
    pub fn source_for_write_key(&self, write_key: &str) -> Result<SourceRecord, EngineError> {
        let id = self
            .store()
            .get(Keyspace::Sources, &write_key_entry(write_key))?
            .ok_or(EngineError::UnknownWriteKey)?;
        let id = String::from_utf8(id).map_err(|_| EngineError::Corrupt("source index".into()))?;
        self.source(&id)?.ok_or(EngineError::UnknownWriteKey)
    }

    pub fn source(&self, id: &str) -> Result<Option<SourceRecord>, EngineError> {
        let key = [b"src/".as_slice(), id.as_bytes()].concat();
        self.get_system(Keyspace::Sources, &key)
    }

    pub fn source_by_name(&self, name: &str) -> Result<Option<SourceRecord>, EngineError> {
        let key = [b"name/".as_slice(), name.as_bytes()].concat();
        match self.store().get(Keyspace::Sources, &key)? {
            Some(id) => self.source(&String::from_utf8_lossy(&id)),
            None => Ok(None),
        }
    }

    pub fn sources(&self) -> Result<Vec<SourceRecord>, EngineError> {
        let mut sources = Vec::new();
        for item in self.store().scan_prefix(Keyspace::Sources, b"src/") {
            let (key, sealed) = item?;
            sources.push(self.open_system(Keyspace::Sources, &key, &sealed)?);
        }
        sources.sort_by(|a: &SourceRecord, b| a.name.cmp(&b.name));
        Ok(sources)
    }
}
