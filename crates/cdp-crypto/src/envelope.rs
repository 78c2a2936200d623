//! Envelope encryption: AES-256-GCM records and per-person data keys.
//!
//! Sealed record layout (all integers big-endian):
//! `[format = 1][key version: u32][nonce: 12][ciphertext][tag: 16]`.
//! The associated data is `"cdp-record-v1" | len(keyspace): u16 | keyspace | len(id): u32 | id |
//! key version: u32`, so a ciphertext opens only under the record it was sealed for.

use ring::aead::{AES_256_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use zeroize::Zeroizing;

use crate::keyring::KeyVersion;
use crate::random::random_nonce;
use crate::{CryptoError, random_bytes};

const FORMAT_V1: u8 = 1;
const HEADER_LEN: usize = 1 + 4 + NONCE_LEN;
const TAG_LEN: usize = 16;
/// Bytes a sealed record adds to its plaintext.
pub const SEALED_OVERHEAD: usize = HEADER_LEN + TAG_LEN;

/// Which record a ciphertext belongs to. Bound into the AEAD tag.
#[derive(Debug, Clone, Copy)]
pub struct RecordAad<'a> {
    pub keyspace: &'a str,
    pub record_id: &'a [u8],
}

impl<'a> RecordAad<'a> {
    pub const fn new(keyspace: &'a str, record_id: &'a [u8]) -> Self {
        Self {
            keyspace,
            record_id,
        }
    }

    fn encode(&self, version: KeyVersion) -> Vec<u8> {
        let mut aad = Vec::with_capacity(32 + self.keyspace.len() + self.record_id.len());
        aad.extend_from_slice(b"cdp-record-v1");
        // Keyspace names are short constants; ids are bounded by the store's key limit.
        aad.extend_from_slice(&(self.keyspace.len() as u16).to_be_bytes());
        aad.extend_from_slice(self.keyspace.as_bytes());
        aad.extend_from_slice(&(self.record_id.len() as u32).to_be_bytes());
        aad.extend_from_slice(self.record_id);
        aad.extend_from_slice(&version.get().to_be_bytes());
        aad
    }
}

/// An AES-256-GCM key with the version written into every record it seals.
pub struct RecordKey {
    version: KeyVersion,
    key: LessSafeKey,
}

impl std::fmt::Debug for RecordKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RecordKey")
            .field("version", &self.version)
            .finish_non_exhaustive()
    }
}

impl RecordKey {
    pub(crate) fn new(version: KeyVersion, material: &[u8; 32]) -> Result<Self, CryptoError> {
        // AES-256 accepts any 32 bytes; ring's error is still passed on, not assumed away.
        let unbound =
            UnboundKey::new(&AES_256_GCM, material).map_err(|_| CryptoError::KeyDerivation)?;
        Ok(Self {
            version,
            key: LessSafeKey::new(unbound),
        })
    }

    pub fn version(&self) -> KeyVersion {
        self.version
    }
}

/// Encrypts `plaintext` for the record named by `aad`.
pub fn seal(key: &RecordKey, aad: RecordAad<'_>, plaintext: &[u8]) -> Result<Vec<u8>, CryptoError> {
    // Random 96-bit nonces are safe well past 2^32 messages per key; per-person keys and
    // per-version system keys stay far below that.
    let nonce_bytes: [u8; NONCE_LEN] = random_nonce()?;
    let mut out = Vec::with_capacity(plaintext.len() + SEALED_OVERHEAD);
    out.push(FORMAT_V1);
    out.extend_from_slice(&key.version.get().to_be_bytes());
    out.extend_from_slice(&nonce_bytes);
    out.extend_from_slice(plaintext);
    let tag = key
        .key
        .seal_in_place_separate_tag(
            Nonce::assume_unique_for_key(nonce_bytes),
            Aad::from(aad.encode(key.version)),
            &mut out[HEADER_LEN..],
        )
        .map_err(|_| CryptoError::AuthenticationFailed)?;
    out.extend_from_slice(tag.as_ref());
    Ok(out)
}

/// The key version a sealed record names, so the caller can pick the key to open it with.
pub fn sealed_key_version(sealed: &[u8]) -> Result<KeyVersion, CryptoError> {
    if sealed.len() < SEALED_OVERHEAD {
        return Err(CryptoError::Malformed("shorter than the header and tag"));
    }
    if sealed[0] != FORMAT_V1 {
        return Err(CryptoError::Malformed("unknown format byte"));
    }
    let version = u32::from_be_bytes([sealed[1], sealed[2], sealed[3], sealed[4]]);
    KeyVersion::new(version).ok_or(CryptoError::Malformed("key version 0"))
}

/// Decrypts a record sealed by [`seal`] for the same `aad`, under `key`.
pub fn open(key: &RecordKey, aad: RecordAad<'_>, sealed: &[u8]) -> Result<Vec<u8>, CryptoError> {
    let version = sealed_key_version(sealed)?;
    if version != key.version {
        return Err(CryptoError::KeyVersionMismatch {
            found: version.get(),
            expected: key.version.get(),
        });
    }
    let mut nonce = [0u8; NONCE_LEN];
    nonce.copy_from_slice(&sealed[5..HEADER_LEN]);
    let mut body = sealed[HEADER_LEN..].to_vec();
    let plaintext_len = key
        .key
        .open_in_place(
            Nonce::assume_unique_for_key(nonce),
            Aad::from(aad.encode(version)),
            &mut body,
        )
        .map_err(|_| CryptoError::AuthenticationFailed)?
        .len();
    body.truncate(plaintext_len);
    Ok(body)
}

/// One person's data key (DEK). Records of that person are sealed with it; it is stored only
/// wrapped by a master key ([`WrappedDataKey`]). Clones are zeroised on drop like the original.
pub struct DataKey {
    generation: KeyVersion,
    material: Zeroizing<[u8; 32]>,
    /// The AES key schedule, made on first use: a person's records are usually opened
    /// several at a time (profile, consents, ledgers), and expanding the key for each was
    /// 3 % of an export. It lives exactly as long as the material it comes from.
    schedule: std::sync::OnceLock<RecordKey>,
}

impl Clone for DataKey {
    fn clone(&self) -> Self {
        Self::from_parts(self.generation, self.material.clone())
    }
}

impl std::fmt::Debug for DataKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DataKey")
            .field("generation", &self.generation)
            .finish_non_exhaustive()
    }
}

impl DataKey {
    /// A fresh random data key, generation 1.
    pub fn generate() -> Result<Self, CryptoError> {
        Ok(Self::from_parts(
            KeyVersion::FIRST,
            Zeroizing::new(random_bytes()?),
        ))
    }

    pub(crate) fn from_parts(generation: KeyVersion, material: Zeroizing<[u8; 32]>) -> Self {
        Self {
            generation,
            material,
            schedule: std::sync::OnceLock::new(),
        }
    }

    pub(crate) fn material(&self) -> &[u8; 32] {
        &self.material
    }

    pub fn generation(&self) -> KeyVersion {
        self.generation
    }

    /// The AEAD key for this person's records.
    pub fn record_key(&self) -> Result<RecordKey, CryptoError> {
        RecordKey::new(self.generation, &self.material)
    }

    /// The AEAD key for this person's records, expanded once per `DataKey`.
    pub fn sealing_key(&self) -> Result<&RecordKey, CryptoError> {
        if let Some(key) = self.schedule.get() {
            return Ok(key);
        }
        let key = self.record_key()?;
        Ok(self.schedule.get_or_init(|| key))
    }
}

/// A data key sealed under a master key version: `[sealed record of (generation | key)]`,
/// bound to its owner's id. Safe to store; useless without the keyring.
#[derive(Clone, PartialEq, Eq)]
pub struct WrappedDataKey(Vec<u8>);

impl std::fmt::Debug for WrappedDataKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WrappedDataKey")
            .field("master_version", &self.master_version().ok())
            .finish_non_exhaustive()
    }
}

impl WrappedDataKey {
    pub(crate) fn from_sealed(sealed: Vec<u8>) -> Self {
        Self(sealed)
    }

    /// Parses stored bytes; the content is checked when unwrapped.
    pub fn from_bytes(bytes: Vec<u8>) -> Result<Self, CryptoError> {
        sealed_key_version(&bytes)?;
        Ok(Self(bytes))
    }

    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }

    /// The master key version this data key is wrapped under.
    pub fn master_version(&self) -> Result<KeyVersion, CryptoError> {
        sealed_key_version(&self.0)
    }
}
