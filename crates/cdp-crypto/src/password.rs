//! Operator passwords (console accounts): argon2id hashes in the PHC string format, and
//! time-based one-time passwords (RFC 6238) as the optional second factor.
//!
//! The parameters are OWASP's first recommendation for argon2id (19 MiB, 2 passes, 1 lane):
//! about 30-60 ms per attempt on this project's machine, so a stolen store gives an attacker
//! tens of guesses per second per core instead of billions. The parameters are part of each
//! hash, so raising them later leaves existing hashes verifiable.

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::{Algorithm, Argon2, Params, Version};
use ring::hmac;

use crate::{CryptoError, random_bytes};

/// Shortest password accepted (NIST SP 800-63B: at least 8; 12 for operators of personal data).
pub const MIN_PASSWORD_CHARS: usize = 12;
/// Longest password accepted: argon2 takes any length, but a megabyte password is an attack on
/// the server's time, not a password.
pub const MAX_PASSWORD_BYTES: usize = 1024;

fn argon2id() -> Argon2<'static> {
    // 19 MiB, t = 2, p = 1: within argon2's documented bounds, so `new` cannot fail.
    let params = Params::new(19 * 1024, 2, 1, None).unwrap_or_default();
    Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
}

/// Why a password is not acceptable (said to the operator who chose it).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PasswordRule {
    #[error("the password must have at least {MIN_PASSWORD_CHARS} characters")]
    TooShort,
    #[error("the password must have at most {MAX_PASSWORD_BYTES} bytes")]
    TooLong,
}

/// Checks the rules a new password must meet.
pub fn check_new_password(password: &str) -> Result<(), PasswordRule> {
    if password.len() > MAX_PASSWORD_BYTES {
        return Err(PasswordRule::TooLong);
    }
    if password.chars().count() < MIN_PASSWORD_CHARS {
        return Err(PasswordRule::TooShort);
    }
    Ok(())
}

/// The argon2id hash of `password` with a fresh random salt, as a PHC string
/// (`$argon2id$v=19$m=19456,t=2,p=1$salt$hash`).
pub fn hash_password(password: &str) -> Result<String, CryptoError> {
    let salt_bytes = random_bytes::<16>()?;
    let salt = SaltString::encode_b64(&salt_bytes).map_err(|_| CryptoError::RandomFailed)?;
    argon2id()
        .hash_password(password.as_bytes(), &salt)
        .map(|hash| hash.to_string())
        .map_err(|_| CryptoError::RandomFailed)
}

/// Whether `password` matches the PHC string `stored` (constant time in the comparison; an
/// unparsable hash never matches).
pub fn verify_password(password: &str, stored: &str) -> bool {
    if password.len() > MAX_PASSWORD_BYTES {
        return false;
    }
    match PasswordHash::new(stored) {
        Ok(parsed) => argon2id()
            .verify_password(password.as_bytes(), &parsed)
            .is_ok(),
        Err(_) => false,
    }
}

/// A hash of no password, verified against when a sign-in names an unknown account, so that
/// the answer takes as long as for a known one (no account enumeration by timing).
pub fn decoy_password_hash() -> &'static str {
    static DECOY: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    DECOY.get_or_init(|| {
        hash_password("cdp decoy: this hash matches no password anyone is given")
            .unwrap_or_default()
    })
}

/// Seconds per TOTP step (RFC 6238's default, what authenticator apps use).
pub const TOTP_STEP_SECONDS: i64 = 30;

/// A fresh TOTP secret (160 bits, RFC 4226's recommended length for HMAC-SHA1).
pub fn new_totp_secret() -> Result<[u8; 20], CryptoError> {
    random_bytes::<20>()
}

/// The 6-digit code of `secret` for time step `step` (RFC 4226 dynamic truncation over
/// HMAC-SHA1, as every authenticator app computes it).
pub fn totp_code(secret: &[u8], step: i64) -> u32 {
    let key = hmac::Key::new(hmac::HMAC_SHA1_FOR_LEGACY_USE_ONLY, secret);
    let tag = hmac::sign(&key, &step.to_be_bytes());
    let digest = tag.as_ref();
    let offset = usize::from(digest[digest.len() - 1] & 0x0f);
    let binary = (u32::from(digest[offset]) & 0x7f) << 24
        | u32::from(digest[offset + 1]) << 16
        | u32::from(digest[offset + 2]) << 8
        | u32::from(digest[offset + 3]);
    binary % 1_000_000
}

/// The time step a code given at `unix_seconds` matches, allowing one step of clock drift
/// either way, or `None`. Steps at or before `last_used` are refused: a code is used once.
pub fn totp_match(secret: &[u8], code: &str, unix_seconds: i64, last_used: i64) -> Option<i64> {
    let code = code.trim();
    if code.len() != 6 || !code.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let given: u32 = code.parse().ok()?;
    let now = unix_seconds.div_euclid(TOTP_STEP_SECONDS);
    let mut matched = None;
    // Every candidate is computed, so the time taken does not say which one matched.
    for step in [now - 1, now, now + 1] {
        // One integer comparison: no early exit on the first differing digit.
        if totp_code(secret, step) == given && step > last_used {
            matched = Some(step);
        }
    }
    matched
}

/// RFC 4648 base32 without padding: how authenticator apps take a secret (`otpauth://` URIs).
pub fn base32(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 32] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
    let mut out = String::with_capacity(bytes.len().div_ceil(5) * 8);
    let (mut buffer, mut bits) = (0u32, 0u32);
    for &byte in bytes {
        buffer = (buffer << 8) | u32::from(byte);
        bits += 8;
        while bits >= 5 {
            bits -= 5;
            out.push(char::from(ALPHABET[((buffer >> bits) & 31) as usize]));
        }
    }
    if bits > 0 {
        out.push(char::from(ALPHABET[((buffer << (5 - bits)) & 31) as usize]));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_password_verifies_only_against_its_own_hash() {
        let hash = hash_password("correct horse battery staple").unwrap();
        assert!(
            hash.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"),
            "{hash}"
        );
        assert!(verify_password("correct horse battery staple", &hash));
        assert!(!verify_password("correct horse battery stapl", &hash));
        assert!(!verify_password("anything", "not a hash"));
        // Salted: the same password hashes differently each time.
        assert_ne!(hash, hash_password("correct horse battery staple").unwrap());
        assert!(!verify_password(
            "anything at all here",
            decoy_password_hash()
        ));
    }

    #[test]
    fn new_passwords_follow_the_length_rules() {
        assert_eq!(check_new_password("short"), Err(PasswordRule::TooShort));
        // Characters, not bytes: twelve Chinese characters are enough.
        assert_eq!(check_new_password("密码密码密码密码密码密码"), Ok(()));
        assert_eq!(
            check_new_password(&"x".repeat(MAX_PASSWORD_BYTES + 1)),
            Err(PasswordRule::TooLong)
        );
    }

    /// RFC 6238 appendix B, SHA-1 rows (8 digits there; the last six are the 6-digit code).
    #[test]
    fn totp_codes_match_the_rfc_test_vectors() {
        let secret = b"12345678901234567890";
        for (time, eight_digits) in [
            (59i64, 94287082u32),
            (1111111109, 7081804),
            (1111111111, 14050471),
            (1234567890, 89005924),
            (2000000000, 69279037),
        ] {
            assert_eq!(
                totp_code(secret, time / TOTP_STEP_SECONDS),
                eight_digits % 1_000_000,
                "t = {time}"
            );
        }
    }

    #[test]
    fn a_totp_code_matches_its_step_and_neighbours_once() {
        let secret = b"12345678901234567890";
        let now = 1_234_567_890;
        let step = now / TOTP_STEP_SECONDS;
        let code = format!("{:06}", totp_code(secret, step));
        assert_eq!(totp_match(secret, &code, now, 0), Some(step));
        assert_eq!(totp_match(secret, &code, now + 30, 0), Some(step));
        assert_eq!(totp_match(secret, &code, now + 90, 0), None, "too late");
        assert_eq!(totp_match(secret, &code, now, step), None, "used once");
        assert_eq!(totp_match(secret, "12345", now, 0), None);
        assert_eq!(totp_match(secret, "abcdef", now, 0), None);
    }

    #[test]
    fn base32_matches_rfc_4648() {
        assert_eq!(base32(b""), "");
        assert_eq!(base32(b"f"), "MY");
        assert_eq!(base32(b"fooba"), "MZXW6YTB");
        assert_eq!(base32(b"foobar"), "MZXW6YTBOI");
    }
}
