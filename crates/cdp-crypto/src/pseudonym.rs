//! Keyed pseudonyms and the audit-chain MAC key.

use cdp_core::ProfileId;
use ring::hmac;

/// Per-recipient pseudonyms of profile ids: HMAC-SHA256 under a key derived for that
/// recipient, so two recipients get different tokens for the same person and cannot join
/// their files (GDPR Art 4(5), Recital 26).
pub struct PseudonymKey(hmac::Key);

impl std::fmt::Debug for PseudonymKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PseudonymKey(..)")
    }
}

impl PseudonymKey {
    pub(crate) fn new(material: &[u8; 32]) -> Self {
        Self(hmac::Key::new(hmac::HMAC_SHA256, material))
    }

    /// 128 bits of the HMAC as 32 lowercase hex digits.
    pub fn pseudonym(&self, profile: &ProfileId) -> String {
        cdp_core::hex::encode(&self.pseudonym_bytes(profile))
    }

    /// The pseudonym's 16 bytes (what export member lists keep and compare: a million of
    /// them sort and diff without a string each).
    pub fn pseudonym_bytes(&self, profile: &ProfileId) -> [u8; 16] {
        let tag = hmac::sign(&self.0, profile.as_bytes());
        let mut bytes = [0u8; 16];
        bytes.copy_from_slice(&tag.as_ref()[..16]);
        bytes
    }
}

impl PseudonymKey {
    /// A keyed pseudonym of a field's value (an identifier the policy will not hand over in
    /// clear): the same value gives the same token for this recipient only.
    pub fn pseudonym_of_value(&self, field: &str, value: &str) -> String {
        let message = [
            b"value\0".as_slice(),
            field.as_bytes(),
            b"\0",
            value.as_bytes(),
        ]
        .concat();
        let tag = hmac::sign(&self.0, &message);
        cdp_core::hex::encode(&tag.as_ref()[..16])
    }
}

/// The key that chains audit-log entries (HMAC-SHA256), so that an attacker who can write the
/// store still cannot forge a valid chain.
pub struct AuditKey(hmac::Key);

impl std::fmt::Debug for AuditKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AuditKey(..)")
    }
}

impl AuditKey {
    pub(crate) fn new(material: &[u8; 32]) -> Self {
        Self(hmac::Key::new(hmac::HMAC_SHA256, material))
    }

    pub fn mac(&self, message: &[u8]) -> [u8; 32] {
        let mut out = [0u8; 32];
        out.copy_from_slice(hmac::sign(&self.0, message).as_ref());
        out
    }
}
