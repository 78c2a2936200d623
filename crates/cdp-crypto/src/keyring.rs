//! The keyring: versioned master keys and the subkeys derived from them.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use zeroize::Zeroizing;

use crate::blind_index::BlindIndexKey;
use crate::envelope::{DataKey, RecordAad, RecordKey, WrappedDataKey, open, seal};
use crate::hkdf_subkey::{
    AUDIT_LABEL, BLIND_INDEX_LABEL, DEK_WRAP_LABEL, FUZZY_BLOCK_LABEL, FUZZY_FILTER_LABEL,
    FUZZY_TOKEN_LABEL, KEY_CHECK_LABEL, PSEUDONYM_LABEL, RECORD_LABEL, SIGNING_LABEL, derive,
};
use crate::pseudonym::{AuditKey, PseudonymKey};
use crate::{CryptoError, KeyringError, keyfile, random_bytes, sealed_key_version};

/// The environment variable that may hold the master keyring (base64; see [`Keyring::from_environment_value`]).
pub const MASTER_KEY_ENV: &str = "CDP_MASTER_KEY";

/// A master key version (1, 2, ...). New writes use the newest; old versions stay for reading.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct KeyVersion(u32);

impl KeyVersion {
    pub const FIRST: Self = Self(1);

    /// `None` for 0, which is never a valid version.
    pub const fn new(version: u32) -> Option<Self> {
        if version == 0 {
            None
        } else {
            Some(Self(version))
        }
    }

    pub const fn get(self) -> u32 {
        self.0
    }
}

impl std::fmt::Display for KeyVersion {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// A value derived from one master key version that identifies it without revealing it. The
/// store records it so that opening data with a different key of the same version number is
/// refused instead of failing record by record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KeyCheck(pub [u8; 16]);

/// Where a keyring came from; shown in messages (never the key itself).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeySource {
    File(PathBuf),
    Environment,
    Generated,
}

impl std::fmt::Display for KeySource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::File(path) => write!(f, "key file {}", path.display()),
            Self::Environment => write!(f, "environment variable {MASTER_KEY_ENV}"),
            Self::Generated => f.write_str("a newly generated key"),
        }
    }
}

/// Public facts about one master key version.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MasterKeyInfo {
    pub version: KeyVersion,
    pub created_at: Option<String>,
}

pub(crate) struct MasterKey {
    pub(crate) created_at: Option<String>,
    pub(crate) material: Zeroizing<[u8; 32]>,
}

/// Subkeys used on every request, derived once per version.
struct VersionKeys {
    record: RecordKey,
    dek_wrap: RecordKey,
}

impl VersionKeys {
    fn derive(version: KeyVersion, master: &MasterKey) -> Result<Self, CryptoError> {
        Ok(Self {
            record: RecordKey::new(version, &*derive(&master.material, &[RECORD_LABEL])?)?,
            dek_wrap: RecordKey::new(version, &*derive(&master.material, &[DEK_WRAP_LABEL])?)?,
        })
    }
}

/// Versioned master keys (KEKs). Raw material is zeroised when the keyring is dropped.
pub struct Keyring {
    masters: BTreeMap<KeyVersion, MasterKey>,
    derived: BTreeMap<KeyVersion, VersionKeys>,
    source: KeySource,
}

impl std::fmt::Debug for Keyring {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Keyring")
            .field("versions", &self.masters.keys().collect::<Vec<_>>())
            .field("source", &self.source)
            .finish_non_exhaustive()
    }
}

impl Keyring {
    pub(crate) fn from_masters(
        masters: BTreeMap<KeyVersion, MasterKey>,
        source: KeySource,
    ) -> Result<Self, CryptoError> {
        if masters.is_empty() {
            return Err(CryptoError::Malformed("a keyring needs at least one key"));
        }
        let derived = masters
            .iter()
            .map(|(version, master)| Ok((*version, VersionKeys::derive(*version, master)?)))
            .collect::<Result<_, CryptoError>>()?;
        Ok(Self {
            masters,
            derived,
            source,
        })
    }

    /// A new keyring with one random key, version 1.
    pub fn generate() -> Result<Self, CryptoError> {
        let mut masters = BTreeMap::new();
        masters.insert(
            KeyVersion::FIRST,
            MasterKey {
                created_at: Some(keyfile::now_rfc3339()),
                material: Zeroizing::new(random_bytes()?),
            },
        );
        Self::from_masters(masters, KeySource::Generated)
    }

    /// Loads a key file (see `docs/operations.md` for its format). Refuses files that other
    /// users can read.
    pub fn load_file(path: &Path) -> Result<Self, KeyringError> {
        keyfile::load(path)
    }

    /// Parses `CDP_MASTER_KEY`: either one base64 key (version 1) or `1:BASE64,2:BASE64,...`.
    pub fn from_environment_value(value: &str) -> Result<Self, KeyringError> {
        keyfile::parse_environment(value)
    }

    /// Writes this keyring to a new file with mode 0600; refuses to overwrite.
    pub fn create_file(&self, path: &Path) -> Result<(), KeyringError> {
        keyfile::create(self, path)
    }

    /// Replaces an existing key file atomically (write, fsync, rename), mode 0600.
    pub fn replace_file(&self, path: &Path) -> Result<(), KeyringError> {
        keyfile::replace(self, path)
    }

    /// Adds a new random version and makes it current. Older versions stay for reading.
    pub fn rotate(&mut self) -> Result<KeyVersion, CryptoError> {
        let next = KeyVersion(self.current_version().0 + 1);
        let master = MasterKey {
            created_at: Some(keyfile::now_rfc3339()),
            material: Zeroizing::new(random_bytes()?),
        };
        self.derived
            .insert(next, VersionKeys::derive(next, &master)?);
        self.masters.insert(next, master);
        Ok(next)
    }

    /// Drops `version` from the keyring (`cdp keys retire`, once nothing the store holds is
    /// sealed under it). The current version cannot be retired.
    pub fn retire(&mut self, version: KeyVersion) -> Result<(), CryptoError> {
        if version == self.current_version() {
            return Err(CryptoError::Malformed(
                "the current key version cannot be retired",
            ));
        }
        if self.masters.remove(&version).is_none() {
            return Err(CryptoError::MissingKeyVersion(version.get()));
        }
        self.derived.remove(&version);
        Ok(())
    }

    pub(crate) fn masters(&self) -> &BTreeMap<KeyVersion, MasterKey> {
        &self.masters
    }

    pub fn source(&self) -> &KeySource {
        &self.source
    }

    /// The newest version: every new seal and wrap uses it.
    pub fn current_version(&self) -> KeyVersion {
        // `from_masters` guarantees at least one key.
        self.masters
            .keys()
            .next_back()
            .copied()
            .unwrap_or(KeyVersion::FIRST)
    }

    pub fn contains(&self, version: KeyVersion) -> bool {
        self.masters.contains_key(&version)
    }

    pub fn versions(&self) -> Vec<MasterKeyInfo> {
        self.masters
            .iter()
            .map(|(version, master)| MasterKeyInfo {
                version: *version,
                created_at: master.created_at.clone(),
            })
            .collect()
    }

    fn master(&self, version: KeyVersion) -> Result<&MasterKey, CryptoError> {
        self.masters
            .get(&version)
            .ok_or(CryptoError::MissingKeyVersion(version.get()))
    }

    fn version_keys(&self, version: KeyVersion) -> Result<&VersionKeys, CryptoError> {
        self.derived
            .get(&version)
            .ok_or(CryptoError::MissingKeyVersion(version.get()))
    }

    pub fn key_check(&self, version: KeyVersion) -> Result<KeyCheck, CryptoError> {
        let derived = derive(&self.master(version)?.material, &[KEY_CHECK_LABEL])?;
        let mut check = [0u8; 16];
        check.copy_from_slice(&derived[..16]);
        Ok(KeyCheck(check))
    }

    /// Seals a record that belongs to no person (sources, jobs, settings) under the current
    /// version's record subkey.
    pub fn seal_system(
        &self,
        aad: RecordAad<'_>,
        plaintext: &[u8],
    ) -> Result<Vec<u8>, CryptoError> {
        seal(
            &self.version_keys(self.current_version())?.record,
            aad,
            plaintext,
        )
    }

    /// Opens a record sealed by [`Keyring::seal_system`] under any version still in the keyring.
    pub fn open_system(&self, aad: RecordAad<'_>, sealed: &[u8]) -> Result<Vec<u8>, CryptoError> {
        let version = sealed_key_version(sealed)?;
        open(&self.version_keys(version)?.record, aad, sealed)
    }

    /// Wraps a person's data key under the current master version, bound to `owner` (the
    /// profile id bytes) so that a wrapped key cannot be moved to another person.
    pub fn wrap_data_key(
        &self,
        key: &DataKey,
        owner: &[u8],
    ) -> Result<WrappedDataKey, CryptoError> {
        let mut plaintext = Zeroizing::new([0u8; 36]);
        plaintext[..4].copy_from_slice(&key.generation().get().to_be_bytes());
        plaintext[4..].copy_from_slice(key.material());
        let sealed = seal(
            &self.version_keys(self.current_version())?.dek_wrap,
            RecordAad::new("dek", owner),
            plaintext.as_ref(),
        )?;
        Ok(WrappedDataKey::from_sealed(sealed))
    }

    /// Unwraps a data key wrapped under any master version still in the keyring.
    pub fn unwrap_data_key(
        &self,
        wrapped: &WrappedDataKey,
        owner: &[u8],
    ) -> Result<DataKey, CryptoError> {
        let version = wrapped.master_version()?;
        let plaintext = Zeroizing::new(open(
            &self.version_keys(version)?.dek_wrap,
            RecordAad::new("dek", owner),
            wrapped.as_bytes(),
        )?);
        if plaintext.len() != 36 {
            return Err(CryptoError::Malformed(
                "wrapped data key has the wrong length",
            ));
        }
        let generation = KeyVersion::new(u32::from_be_bytes([
            plaintext[0],
            plaintext[1],
            plaintext[2],
            plaintext[3],
        ]))
        .ok_or(CryptoError::Malformed("data key generation 0"))?;
        let mut material = Zeroizing::new([0u8; 32]);
        material.copy_from_slice(&plaintext[4..]);
        Ok(DataKey::from_parts(generation, material))
    }

    /// The blind-index key of `version`. Blind indexes are store keys, so the version in use is
    /// fixed when the store is created and recorded in it; rotation does not change it.
    pub fn blind_index_key(&self, version: KeyVersion) -> Result<BlindIndexKey, CryptoError> {
        Ok(BlindIndexKey::new(&*derive(
            &self.master(version)?.material,
            &[BLIND_INDEX_LABEL],
        )?))
    }

    /// The pseudonym key for one recipient (its stable id), under `version`.
    pub fn pseudonym_key(
        &self,
        version: KeyVersion,
        recipient: &str,
    ) -> Result<PseudonymKey, CryptoError> {
        Ok(PseudonymKey::new(&*derive(
            &self.master(version)?.material,
            &[PSEUDONYM_LABEL, recipient.as_bytes()],
        )?))
    }

    /// The Ed25519 key pair that signs export manifests, under `version`.
    pub fn signing_key(&self, version: KeyVersion) -> Result<crate::SigningKey, CryptoError> {
        crate::SigningKey::from_seed(&*derive(&self.master(version)?.material, &[SIGNING_LABEL])?)
    }

    /// The keys of fuzzy-matching encodings under `version`. Like blind indexes, encodings are
    /// compared across people, so the version in use is the store's, fixed at its creation.
    pub fn fuzzy_key(&self, version: KeyVersion) -> Result<crate::FuzzyKey, CryptoError> {
        let material = &self.master(version)?.material;
        Ok(crate::FuzzyKey::new(
            &*derive(material, &[FUZZY_FILTER_LABEL])?,
            &*derive(material, &[FUZZY_TOKEN_LABEL])?,
            &*derive(material, &[FUZZY_BLOCK_LABEL])?,
        ))
    }

    /// The audit-chain MAC key under `version`.
    pub fn audit_key(&self, version: KeyVersion) -> Result<AuditKey, CryptoError> {
        Ok(AuditKey::new(&*derive(
            &self.master(version)?.material,
            &[AUDIT_LABEL],
        )?))
    }
}
