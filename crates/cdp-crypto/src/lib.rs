//! Cryptography of the CDP, on `ring`.
//!
//! - [`Keyring`]: versioned master keys (KEKs) from a key file or the environment; HKDF derives
//!   one subkey per use from each version, so a leak of one subkey exposes nothing else.
//! - [`DataKey`] / [`WrappedDataKey`]: one random data key per person, wrapped by the newest
//!   master key. Destroying the wrapped key erases the person (crypto-shredding).
//! - [`seal`] / [`open`]: AES-256-GCM records whose associated data binds keyspace, record id
//!   and key version, so a ciphertext cannot be moved to another record.
//! - [`BlindIndexKey`]: HMAC-SHA256 of (identifier type, normalised value): how identifiers are
//!   found without being stored in clear.
//! - [`PseudonymKey`]: per-recipient keyed pseudonyms of profile ids.
//! - [`FuzzyKey`]: keyed Bloom filters, tokens and blocking keys for fuzzy matching.
//! - [`hash_password`] / [`totp_match`]: operator passwords (argon2id) and second factors.
//!
//! Raw key bytes live in [`zeroize::Zeroizing`] buffers and are wiped on drop. `ring`'s own key
//! schedules cannot be wiped (ring offers no hook); they live only as long as the keyring.

mod blind_index;
mod digest;
mod envelope;
mod error;
mod fuzzy;
mod hkdf_subkey;
mod keyfile;
mod keyring;
mod password;
mod pseudonym;
mod random;
mod signing;
mod tokens;

pub use blind_index::{BlindIndex, BlindIndexKey};
pub use digest::{Sha256Stream, digest16, hmac_sha256_hex, secret_hash, sha256_parts};
pub use envelope::{
    DataKey, RecordAad, RecordKey, SEALED_OVERHEAD, WrappedDataKey, open, seal, sealed_key_version,
};
pub use error::{CryptoError, KeyringError};
pub use fuzzy::{FuzzyKey, MAX_POSITIONS as FUZZY_MAX_POSITIONS};
pub use keyring::{KeyCheck, KeySource, KeyVersion, Keyring, MASTER_KEY_ENV, MasterKeyInfo};
pub use password::{
    MAX_PASSWORD_BYTES, MIN_PASSWORD_CHARS, PasswordRule, TOTP_STEP_SECONDS, base32,
    check_new_password, decoy_password_hash, hash_password, new_totp_secret, totp_code, totp_match,
    verify_password,
};
pub use pseudonym::{AuditKey, PseudonymKey};
pub use random::{public_random, random_bytes, random_profile_id};
pub use signing::{SigningKey, verify_signature};
pub use tokens::{
    DEFAULT_AUDIENCE, DEFAULT_ISSUER, TokenAlgorithm, TokenClaims, TokenError, TokenKey,
};
