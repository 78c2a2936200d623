//! HKDF-SHA256 subkeys of a master key, one per use.
//!
//! The `info` labels are persisted implicitly (data sealed under a subkey needs the same label
//! to be read back): never change one, add a new label instead.

use ring::hkdf;
use zeroize::Zeroizing;

use crate::CryptoError;

const SALT: &[u8] = b"cdp hkdf salt v1";

pub(crate) const RECORD_LABEL: &[u8] = b"cdp/record/v1";
pub(crate) const DEK_WRAP_LABEL: &[u8] = b"cdp/dek-wrap/v1";
pub(crate) const BLIND_INDEX_LABEL: &[u8] = b"cdp/blind-index/v1";
pub(crate) const PSEUDONYM_LABEL: &[u8] = b"cdp/pseudonym/v1/";
pub(crate) const AUDIT_LABEL: &[u8] = b"cdp/audit/v1";
pub(crate) const KEY_CHECK_LABEL: &[u8] = b"cdp/key-check/v1";
pub(crate) const SIGNING_LABEL: &[u8] = b"cdp/export-signing/v1";
pub(crate) const FUZZY_FILTER_LABEL: &[u8] = b"cdp/fuzzy-filter/v1";
pub(crate) const FUZZY_TOKEN_LABEL: &[u8] = b"cdp/fuzzy-token/v1";
pub(crate) const FUZZY_BLOCK_LABEL: &[u8] = b"cdp/fuzzy-block/v1";

struct Len32;

impl hkdf::KeyType for Len32 {
    fn len(&self) -> usize {
        32
    }
}

/// Derives a 32-byte subkey of `master` for the use named by `info` (its parts concatenated).
/// HKDF-SHA256 only refuses outputs longer than 255 * 32 bytes, so this does not fail in
/// practice; the error is still reported rather than assumed away.
pub(crate) fn derive(
    master: &[u8; 32],
    info: &[&[u8]],
) -> Result<Zeroizing<[u8; 32]>, CryptoError> {
    let prk = hkdf::Salt::new(hkdf::HKDF_SHA256, SALT).extract(master);
    let mut out = Zeroizing::new([0u8; 32]);
    prk.expand(info, Len32)
        .and_then(|okm| okm.fill(out.as_mut()))
        .map_err(|_| CryptoError::KeyDerivation)?;
    Ok(out)
}
