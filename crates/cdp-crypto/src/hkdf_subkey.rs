//! HKDF-SHA256 subkeys of a master key, one per use.
//!
//! The `info` labels are persisted implicitly (data sealed under a subkey needs the same label
//! to be read back): never change one, add a new label instead.

use ring::hkdf;
use zeroize::Zeroizing;

const SALT: &[u8] = b"cdp hkdf salt v1";

pub(crate) const RECORD_LABEL: &[u8] = b"cdp/record/v1";
pub(crate) const DEK_WRAP_LABEL: &[u8] = b"cdp/dek-wrap/v1";
pub(crate) const BLIND_INDEX_LABEL: &[u8] = b"cdp/blind-index/v1";
pub(crate) const PSEUDONYM_LABEL: &[u8] = b"cdp/pseudonym/v1/";
pub(crate) const AUDIT_LABEL: &[u8] = b"cdp/audit/v1";
pub(crate) const KEY_CHECK_LABEL: &[u8] = b"cdp/key-check/v1";

struct Len32;

impl hkdf::KeyType for Len32 {
    fn len(&self) -> usize {
        32
    }
}

/// Derives a 32-byte subkey of `master` for the use named by `info` (its parts concatenated).
pub(crate) fn derive(master: &[u8; 32], info: &[&[u8]]) -> Zeroizing<[u8; 32]> {
    let prk = hkdf::Salt::new(hkdf::HKDF_SHA256, SALT).extract(master);
    let mut out = Zeroizing::new([0u8; 32]);
    // `expand` fails only when the requested length exceeds 255 * 32 bytes; 32 never does.
    #[allow(clippy::expect_used)]
    prk.expand(info, Len32)
        .and_then(|okm| okm.fill(out.as_mut()))
        .expect("HKDF-SHA256 expand to 32 bytes cannot fail");
    out
}
