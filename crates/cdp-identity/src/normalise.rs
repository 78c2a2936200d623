//! Canonical forms of identifiers, before blind-indexing (identity.md, "Normalisation").
//!
//! The blind index is exact-match, so two spellings of one identifier must normalise to the
//! same string, and junk must be recognised before it can merge people.

use cdp_core::IdentifierType;
use unicode_normalization::UnicodeNormalization;

use crate::IdentityRules;

/// Why an identifier was not used.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Rejection {
    /// A junk value (`null`, all zeros...) from the blocked list.
    Blocked,
    /// Not a valid value of its type (an e-mail without `@`, a phone that does not parse).
    Invalid,
}

/// Normalises `raw` as an identifier of `kind`. `default_region` (ISO 3166 alpha-2, e.g. `CN`)
/// is the source's region for phone numbers written without a country code.
pub fn normalise(
    kind: &IdentifierType,
    raw: &str,
    default_region: Option<&str>,
    rules: &IdentityRules,
) -> Result<String, Rejection> {
    let trimmed: String = raw.trim().nfc().collect();
    let normalised = match kind {
        IdentifierType::Email => email(&trimmed)?,
        IdentifierType::Phone => phone(&trimmed, default_region)?,
        IdentifierType::AdvertisingId => trimmed.to_lowercase(),
        _ => trimmed,
    };
    if normalised.is_empty() || rules.is_blocked(kind, &normalised) {
        return Err(Rejection::Blocked);
    }
    Ok(normalised)
}

fn email(text: &str) -> Result<String, Rejection> {
    let lowered = text.to_lowercase();
    let (local, domain) = lowered.rsplit_once('@').ok_or(Rejection::Invalid)?;
    let valid = !local.is_empty()
        && local.len() <= 64
        && !domain.is_empty()
        && domain.len() <= 253
        && domain.contains('.')
        && !domain.starts_with('.')
        && !domain.ends_with('.')
        && !lowered.chars().any(|c| c.is_whitespace() || c.is_control())
        && !local.contains('@');
    if valid {
        Ok(lowered)
    } else {
        Err(Rejection::Invalid)
    }
}

fn phone(text: &str, default_region: Option<&str>) -> Result<String, Rejection> {
    let region = default_region.and_then(|code| {
        code.to_ascii_uppercase()
            .parse::<phonenumber::country::Id>()
            .ok()
    });
    // "00" international prefix and "+": both forms parse without a region.
    let number = phonenumber::parse(region, text).map_err(|_| Rejection::Invalid)?;
    if !phonenumber::is_valid(&number) {
        return Err(Rejection::Invalid);
    }
    Ok(number.format().mode(phonenumber::Mode::E164).to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn n(kind: IdentifierType, raw: &str, region: Option<&str>) -> Result<String, Rejection> {
        normalise(&kind, raw, region, &IdentityRules::default())
    }

    #[test]
    fn table() {
        use IdentifierType::*;
        type Case<'a> = (
            IdentifierType,
            &'a str,
            Option<&'a str>,
            Result<&'a str, Rejection>,
        );
        let cases: &[Case<'_>] = &[
            (
                Email,
                "  Zhang.Wei@Example.COM ",
                None,
                Ok("zhang.wei@example.com"),
            ),
            (Email, "not-an-address", None, Err(Rejection::Invalid)),
            (Email, "a@b", None, Err(Rejection::Invalid)),
            (Email, "a b@c.cn", None, Err(Rejection::Invalid)),
            (Email, "test@test.com", None, Err(Rejection::Blocked)),
            (Phone, "138 1234 5678", Some("CN"), Ok("+8613812345678")),
            (Phone, "+86 138-1234-5678", None, Ok("+8613812345678")),
            (Phone, "0049 30 901820", Some("CN"), Ok("+4930901820")),
            (Phone, "030 901820", Some("DE"), Ok("+4930901820")),
            (Phone, "12345", Some("CN"), Err(Rejection::Invalid)),
            (Phone, "call me", Some("CN"), Err(Rejection::Invalid)),
            (
                AdvertisingId,
                " 6D92078A-8246-4BA4-AE5B-76104861E7DC ",
                None,
                Ok("6d92078a-8246-4ba4-ae5b-76104861e7dc"),
            ),
            (
                AdvertisingId,
                "00000000-0000-0000-0000-000000000000",
                None,
                Err(Rejection::Blocked),
            ),
            (DeviceId, "  dev-1 ", None, Ok("dev-1")),
            (UserId, "undefined", None, Err(Rejection::Blocked)),
            (UserId, "   ", None, Err(Rejection::Blocked)),
            (AnonymousId, "anon-7", None, Ok("anon-7")),
        ];
        for (kind, raw, region, expected) in cases {
            assert_eq!(
                n(kind.clone(), raw, *region).as_deref().map_err(|e| *e),
                *expected,
                "{kind} {raw:?}"
            );
        }
    }

    #[test]
    fn unicode_forms_normalise_to_one() {
        // "é" precomposed and decomposed are one e-mail.
        let composed = n(IdentifierType::Email, "jos\u{e9}@example.com", None).unwrap();
        let decomposed = n(IdentifierType::Email, "jose\u{301}@example.com", None).unwrap();
        assert_eq!(composed, decomposed);
    }
}
