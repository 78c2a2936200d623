//! The vault: the store plus the keyring. Per-person data keys, sealed records, blind indexes,
//! and the record of which master key versions the data needs.

use std::sync::Arc;

use cdp_core::{IdentifierType, ProfileId};
use cdp_crypto::{
    AuditKey, BlindIndex, BlindIndexKey, DataKey, KeyVersion, Keyring, PseudonymKey, RecordAad,
    WrappedDataKey,
};

use crate::{DataDir, Keyspace, Store, StoreError, WriteBatch};

/// Master key version whose subkeys name things (blind indexes, pseudonyms, audit chain). Fixed
/// when the store is created: rotating it would orphan every blind index.
const PINNED_VERSION_KEY: &[u8] = b"keys/pinned_version";
/// `keys/check/<version u32 BE>` -> the key check value of every version ever used to write.
const KEY_CHECK_PREFIX: &[u8] = b"keys/check/";

/// Encrypted access to the store. Cheap to share (`Arc`).
pub struct Vault {
    store: Arc<dyn Store>,
    keyring: Arc<Keyring>,
    pinned: KeyVersion,
    blind_index: BlindIndexKey,
}

impl std::fmt::Debug for Vault {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Vault")
            .field("store", &self.store)
            .field("pinned", &self.pinned)
            .finish_non_exhaustive()
    }
}

fn record_label(id: &[u8]) -> String {
    cdp_core::hex::encode(&id[..id.len().min(16)])
}

impl Vault {
    /// Checks that `keyring` holds every master key version the data was written with (and that
    /// each is the same key), then records the current version as in use.
    pub fn open(
        store: Arc<dyn Store>,
        keyring: Arc<Keyring>,
        data_dir: &DataDir,
    ) -> Result<Self, StoreError> {
        let source_name = keyring.source().to_string();
        let mut batch = WriteBatch::new();
        let mut recorded_current = false;
        for item in store.scan_prefix(Keyspace::Meta, KEY_CHECK_PREFIX) {
            let (key, value) = item?;
            let version = key[KEY_CHECK_PREFIX.len()..]
                .try_into()
                .ok()
                .map(u32::from_be_bytes)
                .and_then(KeyVersion::new)
                .ok_or_else(|| StoreError::Corrupt {
                    file: data_dir.store_location(),
                    problem: "a key-version record is malformed".into(),
                })?;
            if !keyring.contains(version) {
                return Err(StoreError::MissingKeyVersion {
                    data_dir: data_dir.root().to_path_buf(),
                    version: version.get(),
                    source_name,
                });
            }
            if keyring.key_check(version)?.0.as_slice() != value.as_slice() {
                return Err(StoreError::WrongKey {
                    data_dir: data_dir.root().to_path_buf(),
                    version: version.get(),
                    source_name,
                });
            }
            recorded_current |= version == keyring.current_version();
        }
        let current = keyring.current_version();
        if !recorded_current {
            let mut key = KEY_CHECK_PREFIX.to_vec();
            key.extend_from_slice(&current.get().to_be_bytes());
            batch.put(Keyspace::Meta, key, keyring.key_check(current)?.0.to_vec());
        }
        let pinned = match store.get(Keyspace::Meta, PINNED_VERSION_KEY)? {
            Some(bytes) => <[u8; 4]>::try_from(bytes.as_slice())
                .ok()
                .map(u32::from_be_bytes)
                .and_then(KeyVersion::new)
                .ok_or_else(|| StoreError::Corrupt {
                    file: data_dir.store_location(),
                    problem: "the pinned key-version record is malformed".into(),
                })?,
            None => {
                batch.put(
                    Keyspace::Meta,
                    PINNED_VERSION_KEY,
                    current.get().to_be_bytes().to_vec(),
                );
                current
            }
        };
        if !batch.is_empty() {
            store.commit(batch)?.wait_durable()?;
        }
        let blind_index = keyring.blind_index_key(pinned)?;
        Ok(Self {
            store,
            keyring,
            pinned,
            blind_index,
        })
    }

    /// The version whose subkeys name things in this store (blind indexes, pseudonyms, the
    /// audit chain, manifest signatures): it can never leave the keyring.
    pub fn pinned_version(&self) -> KeyVersion {
        self.pinned
    }

    /// Adds to `batch` the removal of `version`'s check record, so that opening the store no
    /// longer demands that version (`cdp keys retire`, once nothing is sealed under it).
    pub fn forget_key_version(&self, version: KeyVersion, batch: &mut WriteBatch) {
        let mut key = KEY_CHECK_PREFIX.to_vec();
        key.extend_from_slice(&version.get().to_be_bytes());
        batch.delete(Keyspace::Meta, key);
    }

    /// The wrapped data key `wrapped` of `owner` under the current master version, or `None`
    /// when it already is (`cdp keys rewrap`).
    pub fn rewrap_data_key(
        &self,
        owner: &[u8],
        keyspace: Keyspace,
        wrapped: &[u8],
    ) -> Result<Option<Vec<u8>>, StoreError> {
        let seal_error = |source| StoreError::Seal {
            keyspace: keyspace.name(),
            record: record_label(owner),
            source,
        };
        let wrapped = WrappedDataKey::from_bytes(wrapped.to_vec()).map_err(seal_error)?;
        if wrapped.master_version().map_err(seal_error)? == self.keyring.current_version() {
            return Ok(None);
        }
        let key = self
            .keyring
            .unwrap_data_key(&wrapped, owner)
            .map_err(seal_error)?;
        let rewrapped = self
            .keyring
            .wrap_data_key(&key, owner)
            .map_err(seal_error)?;
        Ok(Some(rewrapped.as_bytes().to_vec()))
    }

    pub fn store(&self) -> &Arc<dyn Store> {
        &self.store
    }

    pub fn keyring(&self) -> &Arc<Keyring> {
        &self.keyring
    }

    /// The blind index of a normalised identifier (a store key; never the value itself).
    pub fn blind_index(&self, kind: &IdentifierType, normalised: &str) -> BlindIndex {
        self.blind_index.index(kind, normalised)
    }

    /// The pseudonym key of one recipient; stable across master key rotation.
    pub fn pseudonym_key(&self, recipient: &str) -> Result<PseudonymKey, StoreError> {
        Ok(self.keyring.pseudonym_key(self.pinned, recipient)?)
    }

    /// A new data key for something that is not a person (an export file), and its wrapped
    /// form bound to `owner`.
    pub fn new_file_key(&self, owner: &[u8]) -> Result<(DataKey, Vec<u8>), StoreError> {
        let key = DataKey::generate()?;
        let wrapped = self.keyring.wrap_data_key(&key, owner)?;
        Ok((key, wrapped.as_bytes().to_vec()))
    }

    /// Unwraps a key made by [`Vault::new_file_key`] for `owner`.
    pub fn open_file_key(&self, owner: &[u8], wrapped: Vec<u8>) -> Result<DataKey, StoreError> {
        let seal_error = |source| StoreError::Seal {
            keyspace: Keyspace::Exports.name(),
            record: String::from_utf8_lossy(owner).into_owned(),
            source,
        };
        let wrapped = WrappedDataKey::from_bytes(wrapped).map_err(seal_error)?;
        self.keyring
            .unwrap_data_key(&wrapped, owner)
            .map_err(seal_error)
    }

    /// The export-manifest signing key; stable across master key rotation.
    pub fn signing_key(&self) -> Result<cdp_crypto::SigningKey, StoreError> {
        Ok(self.keyring.signing_key(self.pinned)?)
    }

    /// The audit-chain key; stable across master key rotation.
    pub fn audit_key(&self) -> Result<AuditKey, StoreError> {
        Ok(self.keyring.audit_key(self.pinned)?)
    }

    /// Creates a person's data key and adds its wrapped form to `batch`.
    pub fn create_person_key(
        &self,
        profile: &ProfileId,
        batch: &mut WriteBatch,
    ) -> Result<DataKey, StoreError> {
        let key = DataKey::generate()?;
        let wrapped = self.keyring.wrap_data_key(&key, profile.as_bytes())?;
        batch.put(
            Keyspace::Keys,
            profile.as_bytes().to_vec(),
            wrapped.as_bytes().to_vec(),
        );
        Ok(key)
    }

    /// A person's data key, or `None` if the person has none (never existed, or erased).
    pub fn person_key(&self, profile: &ProfileId) -> Result<Option<DataKey>, StoreError> {
        match self.store.get(Keyspace::Keys, profile.as_bytes())? {
            Some(bytes) => self.unwrap_person_key(profile, bytes).map(Some),
            None => Ok(None),
        }
    }

    /// Unwraps a person's stored data key (read from the store or an overlay).
    pub fn unwrap_person_key(
        &self,
        profile: &ProfileId,
        bytes: Vec<u8>,
    ) -> Result<DataKey, StoreError> {
        let seal_error = |source| StoreError::Seal {
            keyspace: Keyspace::Keys.name(),
            record: profile.to_string(),
            source,
        };
        let wrapped = WrappedDataKey::from_bytes(bytes).map_err(seal_error)?;
        self.keyring
            .unwrap_data_key(&wrapped, profile.as_bytes())
            .map_err(seal_error)
    }

    /// Adds the deletion of a person's wrapped data key to `batch`: once committed, every
    /// record sealed with it is unreadable (crypto-shredding).
    pub fn destroy_person_key(&self, profile: &ProfileId, batch: &mut WriteBatch) {
        batch.delete(Keyspace::Keys, profile.as_bytes().to_vec());
    }

    pub fn seal_person(
        &self,
        key: &DataKey,
        keyspace: Keyspace,
        record_id: &[u8],
        plaintext: &[u8],
    ) -> Result<Vec<u8>, StoreError> {
        Ok(cdp_crypto::seal(
            key.sealing_key()?,
            RecordAad::new(keyspace.name(), record_id),
            plaintext,
        )?)
    }

    pub fn open_person(
        &self,
        key: &DataKey,
        keyspace: Keyspace,
        record_id: &[u8],
        sealed: &[u8],
    ) -> Result<Vec<u8>, StoreError> {
        cdp_crypto::open(
            key.sealing_key()?,
            RecordAad::new(keyspace.name(), record_id),
            sealed,
        )
        .map_err(|source| StoreError::Seal {
            keyspace: keyspace.name(),
            record: record_label(record_id),
            source,
        })
    }

    /// Seals a record that belongs to no person, under the current master key version.
    pub fn seal_system(
        &self,
        keyspace: Keyspace,
        record_id: &[u8],
        plaintext: &[u8],
    ) -> Result<Vec<u8>, StoreError> {
        Ok(self
            .keyring
            .seal_system(RecordAad::new(keyspace.name(), record_id), plaintext)?)
    }

    pub fn open_system(
        &self,
        keyspace: Keyspace,
        record_id: &[u8],
        sealed: &[u8],
    ) -> Result<Vec<u8>, StoreError> {
        self.keyring
            .open_system(RecordAad::new(keyspace.name(), record_id), sealed)
            .map_err(|source| StoreError::Seal {
                keyspace: keyspace.name(),
                record: record_label(record_id),
                source,
            })
    }
}
