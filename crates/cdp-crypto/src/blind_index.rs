//! Blind indexes: keyed hashes of identifiers, used as store keys.

use cdp_core::IdentifierType;
use ring::hmac;

/// The blind index of one identifier: HMAC-SHA256 under the blind-index subkey of
/// `len(type) | type | normalised value`. Without the key it reveals nothing and cannot be
/// brute-forced even for low-entropy values such as phone numbers.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct BlindIndex([u8; 32]);

impl BlindIndex {
    pub const fn from_bytes(bytes: [u8; 32]) -> Self {
        Self(bytes)
    }

    pub const fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }
}

impl std::fmt::Debug for BlindIndex {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // A prefix is enough to correlate log lines; the full value is a store key.
        write!(
            f,
            "BlindIndex({:02x}{:02x}{:02x}{:02x}..)",
            self.0[0], self.0[1], self.0[2], self.0[3]
        )
    }
}

/// The key that computes [`BlindIndex`]es.
pub struct BlindIndexKey(hmac::Key);

impl std::fmt::Debug for BlindIndexKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("BlindIndexKey(..)")
    }
}

impl BlindIndexKey {
    pub(crate) fn new(material: &[u8; 32]) -> Self {
        Self(hmac::Key::new(hmac::HMAC_SHA256, material))
    }

    /// The blind index of an identifier. `normalised` must already be normalised
    /// (identity.md): the index is exact-match.
    pub fn index(&self, kind: &IdentifierType, normalised: &str) -> BlindIndex {
        let kind = kind.as_str().as_bytes();
        let mut context = hmac::Context::with_key(&self.0);
        // Identifier types are at most 64 bytes (IdentifierType::from_str).
        context.update(&[kind.len() as u8]);
        context.update(kind);
        context.update(normalised.as_bytes());
        let tag = context.sign();
        let mut bytes = [0u8; 32];
        bytes.copy_from_slice(tag.as_ref());
        BlindIndex(bytes)
    }
}
