//! Unkeyed digests, for values that are not secret or are high-entropy secrets.

use ring::digest::{Context, SHA256};

/// SHA-256 over the length-prefixed parts (so `("ab","c")` and `("a","bc")` differ).
pub fn sha256_parts(parts: &[&[u8]]) -> [u8; 32] {
    let mut context = Context::new(&SHA256);
    for part in parts {
        context.update(&(part.len() as u64).to_be_bytes());
        context.update(part);
    }
    let mut out = [0u8; 32];
    out.copy_from_slice(context.finish().as_ref());
    out
}

/// The first 16 bytes of [`sha256_parts`]: ids derived from content (message ids, evidence).
pub fn digest16(parts: &[&[u8]]) -> [u8; 16] {
    let full = sha256_parts(parts);
    let mut out = [0u8; 16];
    out.copy_from_slice(&full[..16]);
    out
}

/// Hash of a high-entropy secret (a write key) for storage. A fast hash is right here: the
/// secret has 256 random bits, so there is nothing to brute-force.
pub fn secret_hash(secret: &str) -> [u8; 32] {
    sha256_parts(&[b"cdp/secret/v1", secret.as_bytes()])
}

/// SHA-256 over data arriving in pieces (export files).
pub struct Sha256Stream(ring::digest::Context);

impl std::fmt::Debug for Sha256Stream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Sha256Stream")
    }
}

impl Default for Sha256Stream {
    fn default() -> Self {
        Self(ring::digest::Context::new(&ring::digest::SHA256))
    }
}

impl Sha256Stream {
    pub fn update(&mut self, bytes: &[u8]) {
        self.0.update(bytes);
    }

    /// The digest as 64 lowercase hex digits.
    pub fn finish_hex(self) -> String {
        cdp_core::hex::encode(self.0.finish().as_ref())
    }
}

/// HMAC-SHA256 of `message` under `key`, in lower-case hex: the signature of a webhook
/// delivery (the receiver recomputes it with the destination's secret).
pub fn hmac_sha256_hex(key: &[u8], message: &[u8]) -> String {
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, key);
    let tag = ring::hmac::sign(&key, message);
    tag.as_ref().iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod hmac_tests {
    #[test]
    fn hmac_matches_rfc_4231_case_2() {
        assert_eq!(
            super::hmac_sha256_hex(b"Jefe", b"what do ya want for nothing?"),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }
}
