//! Ed25519 signatures of export manifests (and, later, erasure receipts).
//!
//! The key pair is derived from the master key (HKDF, its own label) under the store's pinned
//! key version, so it survives restarts and master key rotation without a file of its own, and
//! its public half can be published (`GET /v1/keys/export`).

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use ring::signature::{ED25519, Ed25519KeyPair, KeyPair, UnparsedPublicKey};

use crate::CryptoError;

/// A signing key pair.
pub struct SigningKey(Ed25519KeyPair);

impl std::fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SigningKey(public {})", self.public_key_base64())
    }
}

impl SigningKey {
    pub(crate) fn from_seed(seed: &[u8; 32]) -> Result<Self, CryptoError> {
        Ed25519KeyPair::from_seed_unchecked(seed)
            .map(Self)
            .map_err(|_| CryptoError::KeyDerivation)
    }

    /// The signature of `message`, base64.
    pub fn sign_base64(&self, message: &[u8]) -> String {
        BASE64.encode(self.0.sign(message).as_ref())
    }

    /// The public key, base64 (32 bytes).
    pub fn public_key_base64(&self) -> String {
        BASE64.encode(self.0.public_key().as_ref())
    }
}

/// Whether `signature` (base64) is `public_key`'s (base64) signature of `message`.
pub fn verify_signature(public_key: &str, message: &[u8], signature: &str) -> bool {
    let (Ok(key), Ok(signature)) = (
        BASE64.decode(public_key.trim()),
        BASE64.decode(signature.trim()),
    ) else {
        return false;
    };
    UnparsedPublicKey::new(&ED25519, key)
        .verify(message, &signature)
        .is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signs_and_verifies() {
        let key = SigningKey::from_seed(&[7u8; 32]).unwrap();
        let signature = key.sign_base64(b"manifest");
        assert!(verify_signature(
            &key.public_key_base64(),
            b"manifest",
            &signature
        ));
        assert!(!verify_signature(
            &key.public_key_base64(),
            b"manifest!",
            &signature
        ));
        let other = SigningKey::from_seed(&[8u8; 32]).unwrap();
        assert!(!verify_signature(
            &other.public_key_base64(),
            b"manifest",
            &signature
        ));
        assert!(!verify_signature("not base64", b"manifest", &signature));
    }
}
