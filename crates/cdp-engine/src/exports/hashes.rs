//! Ad-platform hashes of contact data, normalised as each platform documents (Google Customer
//! Match, Meta custom audiences), so that a recipient can match without receiving the value.

/// Plain SHA-256 of the text, hex (what ad platforms match on; not the length-prefixed
/// `sha256_parts` used for internal ids).
fn sha256_hex(text: &str) -> String {
    let mut hash = cdp_crypto::Sha256Stream::default();
    hash.update(text.as_bytes());
    hash.finish_hex()
}

/// Google Customer Match: trimmed, lower case; for gmail.com and googlemail.com the dots of the
/// local part are removed. Then SHA-256, hex.
pub fn email_sha256_google(email: &str) -> String {
    let email = email.trim().to_lowercase();
    let normalised = match email.split_once('@') {
        Some((local, domain)) if domain == "gmail.com" || domain == "googlemail.com" => {
            format!("{}@{domain}", local.replace('.', ""))
        }
        _ => email,
    };
    sha256_hex(&normalised)
}

/// Meta custom audiences: trimmed, lower case, then SHA-256, hex.
pub fn email_sha256_meta(email: &str) -> String {
    sha256_hex(&email.trim().to_lowercase())
}

/// Google: E.164 with the `+` (`+8613800138000`), then SHA-256.
pub fn phone_sha256_google(e164: &str) -> String {
    let digits: String = e164.chars().filter(char::is_ascii_digit).collect();
    sha256_hex(&format!("+{digits}"))
}

/// Meta: digits only with the country code, no `+` or leading zeros, then SHA-256.
pub fn phone_sha256_meta(e164: &str) -> String {
    let digits: String = e164.chars().filter(char::is_ascii_digit).collect();
    sha256_hex(digits.trim_start_matches('0'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ad_platform_hashes_match_the_documented_normalisation() {
        // Digests from Python's hashlib of the normalised strings.
        assert_eq!(
            email_sha256_google(" Buyer.0@Gmail.com "),
            "ef8c4a9fb342af2c405bd6f442ee3393f0286d154dd3152e78635855309f13c8"
        );
        assert_eq!(
            email_sha256_google("John.Doe@example.com"),
            "836f82db99121b3481011f16b49dfa5fbc714a0d1b1b9f784a1ebbbf5b39577f"
        );
        assert_eq!(
            email_sha256_meta(" John.Doe@Example.com"),
            "836f82db99121b3481011f16b49dfa5fbc714a0d1b1b9f784a1ebbbf5b39577f"
        );
        assert_eq!(
            phone_sha256_google("+8613900000000"),
            "99f43c0f4b02d29c595f7308f1c7727c912612e10707cf423c0826d889fbe1db"
        );
        assert_eq!(
            phone_sha256_meta("+8613900000000"),
            "2995d216d7630ebb4d15fcbaa9f80a354d1a47bc6331a5d6ab4e49b20a064199"
        );
    }
}
