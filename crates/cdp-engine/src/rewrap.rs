//! Retiring a master key version. `cdp keys rotate` adds a version that new writes use;
//! what was sealed before stays under the older ones. `cdp keys rewrap` moves all of it to the
//! current version: every person's wrapped data key, every record that belongs to no person
//! (sources, audiences, recipients, exports and their file keys, requests, the audit log,
//! accounts, the identity graph), and `cdp keys retire` then drops a version nothing needs
//! any more. Person records are sealed under the person's data key and are not touched: a
//! rewrap of a million people rewraps a million 60-byte keys, not their histories.
//!
//! The version pinned when the store was created names things (blind indexes, pseudonyms,
//! the audit chain, manifest signatures): rotating those would orphan every blind index, so
//! that version stays in the keyring for naming even when nothing is sealed under it.

use cdp_crypto::KeyVersion;
use cdp_store::{Keyspace, WriteBatch};

use crate::audit::AuditRecord;
use crate::{Engine, EngineError};

/// Keyspaces whose records are sealed with the master key's record subkey, bound to
/// (keyspace, key). They also keep bookkeeping in clear (sequence numbers, check values,
/// pointers, write-key hashes): a value that is not a sealed record is left alone, and so is
/// one that does not open under the version it names (it is unreadable with or without that
/// version, so retiring the version loses nothing).
const SYSTEM_KEYSPACES: [Keyspace; 14] = [
    Keyspace::Meta,
    Keyspace::Identifiers,
    Keyspace::IdentityEdges,
    Keyspace::MergeLog,
    Keyspace::Audiences,
    Keyspace::Recipients,
    Keyspace::Exports,
    Keyspace::Requests,
    Keyspace::Audit,
    Keyspace::Sources,
    Keyspace::Suppressions,
    Keyspace::Suspects,
    Keyspace::Accounts,
    Keyspace::Matching,
];

/// Values rewritten per atomic batch: a crash leaves a mix of versions, all still readable,
/// and running the command again finishes the work.
const BATCH_VALUES: usize = 1_000;

/// What `cdp keys rewrap` did, or what `cdp keys retire` found still under a version.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct KeyUse {
    /// Wrapped data keys of people.
    pub data_keys: u64,
    /// Records that belong to no person.
    pub records: u64,
    /// File keys of exports.
    pub file_keys: u64,
}

impl KeyUse {
    pub fn total(&self) -> u64 {
        self.data_keys + self.records + self.file_keys
    }
}

impl Engine {
    /// Re-seals everything sealed or wrapped under an older master version with the current
    /// one, in atomic batches; then records it in the audit log. Offline: the server stopped.
    pub fn rewrap_master_keys(&self, actor: &str) -> Result<KeyUse, EngineError> {
        let current = self.vault().keyring().current_version();
        let done = self.visit_sealed(|_| true, true)?;
        self.commit_audited(
            WriteBatch::new(),
            &[AuditRecord {
                actor: actor.to_string(),
                action: "keys.rewrap".into(),
                purpose: None,
                person: None,
                decision: format!(
                    "rewrapped {} data keys, {} records and {} export file keys under master key version {current}",
                    done.data_keys, done.records, done.file_keys
                ),
                rules: Vec::new(),
            }],
        )?
        .wait_durable()?;
        Ok(done)
    }

    /// What the store still holds under master key `version`.
    pub fn key_version_use(&self, version: KeyVersion) -> Result<KeyUse, EngineError> {
        self.visit_sealed(|found| found == version, false)
    }

    /// Lets the store open without `version`: refused for the current and the pinned version
    /// and while anything is still sealed under it. The caller then removes the version from
    /// the key file.
    pub fn retire_key_version(&self, version: KeyVersion, actor: &str) -> Result<(), EngineError> {
        let keyring = self.vault().keyring();
        if version == keyring.current_version() {
            return Err(EngineError::InvalidRequest(format!(
                "version {version} is the current key version: new writes use it (rotate first)"
            )));
        }
        if version == self.vault().pinned_version() {
            return Err(EngineError::InvalidRequest(format!(
                "version {version} names this store's blind indexes, pseudonyms and audit chain: it stays in the key file (nothing new is sealed under it once a newer version exists)"
            )));
        }
        if !keyring.contains(version) {
            return Err(EngineError::InvalidRequest(format!(
                "the key file holds no version {version}"
            )));
        }
        let left = self.key_version_use(version)?;
        if left.total() > 0 {
            return Err(EngineError::Conflict(format!(
                "{} data keys, {} records and {} export file keys are still sealed under version {version}: run `cdp keys rewrap` first",
                left.data_keys, left.records, left.file_keys
            )));
        }
        let mut batch = WriteBatch::new();
        self.vault().forget_key_version(version, &mut batch);
        self.commit_audited(
            batch,
            &[AuditRecord {
                actor: actor.to_string(),
                action: "keys.retire".into(),
                purpose: None,
                person: None,
                decision: format!(
                    "master key version {version} retired: nothing is sealed under it"
                ),
                rules: Vec::new(),
            }],
        )?
        .wait_durable()?;
        Ok(())
    }

    /// Visits every wrapped data key, system record and export file key sealed under a
    /// version other than the current one for which `wanted` holds; counts them and, when
    /// `rewrite`, re-seals them under the current version.
    fn visit_sealed(
        &self,
        wanted: impl Fn(KeyVersion) -> bool,
        rewrite: bool,
    ) -> Result<KeyUse, EngineError> {
        let vault = self.vault();
        let current = vault.keyring().current_version();
        let store = self.store();
        let mut found = KeyUse::default();
        let mut batch = WriteBatch::new();
        let mut pending = 0;
        let flush = |batch: &mut WriteBatch, pending: &mut usize| -> Result<(), EngineError> {
            if *pending > 0 {
                store.commit(std::mem::take(batch))?.wait_durable()?;
                *pending = 0;
            }
            Ok(())
        };

        for item in store.scan_from(Keyspace::Keys, &[]) {
            let (owner, wrapped) = item?;
            let version = cdp_crypto::sealed_key_version(&wrapped)?;
            if version == current || !wanted(version) {
                continue;
            }
            found.data_keys += 1;
            if rewrite
                && let Some(rewrapped) = vault.rewrap_data_key(&owner, Keyspace::Keys, &wrapped)?
            {
                batch.put(Keyspace::Keys, owner, rewrapped);
                pending += 1;
            }
            if pending >= BATCH_VALUES {
                flush(&mut batch, &mut pending)?;
            }
        }

        for keyspace in SYSTEM_KEYSPACES {
            for item in store.scan_from(keyspace, &[]) {
                let (key, value) = item?;
                if keyspace == Keyspace::Exports && key.starts_with(b"secret/") {
                    // The file key inside is wrapped on its own, maybe under another version.
                    let Ok(opened) = self.rewrap_export_file_key(&key, &value) else {
                        continue;
                    };
                    if let (Some(version), _) = opened
                        && version != current
                        && wanted(version)
                    {
                        found.file_keys += 1;
                        if rewrite && let (_, Some(resealed)) = opened {
                            // Now under the current version: the outer seal is handled.
                            batch.put(keyspace, key.clone(), resealed);
                            pending += 1;
                            if pending >= BATCH_VALUES {
                                flush(&mut batch, &mut pending)?;
                            }
                            continue;
                        }
                    }
                }
                let Ok(version) = cdp_crypto::sealed_key_version(&value) else {
                    continue;
                };
                if version == current || !wanted(version) {
                    continue;
                }
                let Ok(plain) = vault.open_system(keyspace, &key, &value) else {
                    continue;
                };
                found.records += 1;
                if rewrite {
                    batch.put(
                        keyspace,
                        key.clone(),
                        vault.seal_system(keyspace, &key, &plain)?,
                    );
                    pending += 1;
                }
                if pending >= BATCH_VALUES {
                    flush(&mut batch, &mut pending)?;
                }
            }
        }
        flush(&mut batch, &mut pending)?;
        Ok(found)
    }
}
