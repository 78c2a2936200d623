//! The fields an export may ask for, and what each depends on in the policies.

use cdp_core::IdentifierType;

use crate::EngineError;

/// Derived fields an export may ask for (besides `identifiers.<type>` and `traits.<name>`).
pub const DERIVED_FIELDS: &[&str] = &[
    "pseudonym",
    "email_sha256_google",
    "email_sha256_meta",
    "phone_sha256_google",
    "phone_sha256_meta",
    "age_band",
    "region",
    "city",
    "tier",
    "lifecycle",
    "rfm_score",
    // A campaign's variant of the person (campaign sends only).
    "arm",
];

/// Checks the requested fields: 1 to 50, each of the vocabulary and classified in the
/// policies' fields.yaml (an unclassified field would only ever be dropped from the file:
/// asking for one is a mistake to be told about, not a silent empty column).
pub(super) fn validate(
    fields: &[String],
    policies: &cdp_policy::PolicySet,
) -> Result<(), EngineError> {
    if fields.is_empty() || fields.len() > 50 {
        return Err(EngineError::InvalidRequest(
            "fields needs 1 to 50 fields".into(),
        ));
    }
    for field in fields {
        let known = DERIVED_FIELDS.contains(&field.as_str())
            || field
                .strip_prefix("identifiers.")
                .is_some_and(|t| t.parse::<IdentifierType>().is_ok())
            || field.strip_prefix("traits.").is_some_and(|t| {
                !t.is_empty() && t.len() <= 64 && t.chars().all(|c| c.is_alphanumeric() || c == '_')
            });
        if !known {
            return Err(EngineError::InvalidRequest(format!(
                "unknown export field {field:?}; fields are identifiers.<type>, traits.<name>, {}",
                DERIVED_FIELDS.join(", ")
            )));
        }
        if let Some(policy_field) = policy_field(field)
            && policies.category_of(&policy_field).is_none()
        {
            return Err(EngineError::InvalidRequest(format!(
                "export field {field} is not classified: fields.yaml gives {policy_field} no data category, so it could never be exported (classify it first; docs/policies.md)"
            )));
        }
    }
    Ok(())
}

/// The policy field a requested export field depends on.
pub(super) fn policy_field(field: &str) -> Option<String> {
    match field {
        "email_sha256_google" | "email_sha256_meta" => Some("identifiers.email".into()),
        "phone_sha256_google" | "phone_sha256_meta" => Some("identifiers.phone".into()),
        "city" | "region" => Some("traits.city".into()),
        "age_band" => Some("traits.age".into()),
        f if f.starts_with("identifiers.") || f.starts_with("traits.") => Some(f.to_string()),
        _ => None,
    }
}
