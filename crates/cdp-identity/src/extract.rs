//! The identifiers a Segment message carries.

use cdp_core::IdentifierType;
use cdp_core::segment::{Message, MessageType};
use serde_json::Value;

/// One identifier as found in a message, before normalisation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FoundIdentifier {
    pub kind: IdentifierType,
    pub raw: String,
    /// Where it was found (`userId`, `context.externalIds[2]`), for provenance and errors.
    pub field: String,
}

/// Why a message's identifiers cannot be read. Names the field, never the value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {problem}")]
pub struct ExtractError {
    pub field: String,
    pub problem: String,
}

fn string_field(value: Option<&Value>) -> Option<String> {
    match value {
        Some(Value::String(text)) => Some(text.clone()),
        Some(Value::Number(number)) => Some(number.to_string()),
        _ => None,
    }
}

/// Every identifier in `message`. `alias` links `previousId`: it is returned as an identifier
/// of the type given by the rules of identity.md (a user id if `userId` is set, else anonymous).
pub fn extract(message: &Message) -> Result<Vec<FoundIdentifier>, ExtractError> {
    let mut found = Vec::new();
    let mut push = |kind: IdentifierType, raw: String, field: &str| {
        found.push(FoundIdentifier {
            kind,
            raw,
            field: field.to_string(),
        });
    };
    if let Some(user_id) = &message.user_id {
        push(IdentifierType::UserId, user_id.clone(), "userId");
    }
    if let Some(anonymous_id) = &message.anonymous_id {
        push(
            IdentifierType::AnonymousId,
            anonymous_id.clone(),
            "anonymousId",
        );
    }
    if message.kind == MessageType::Alias
        && let Some(previous) = &message.previous_id
    {
        // Segment: previousId is the old id of the same user, usually an anonymousId; a
        // previousId equal to a known userId works too because both are looked up.
        push(IdentifierType::AnonymousId, previous.clone(), "previousId");
    }
    if let Some(email) = string_field(message.traits.get("email")) {
        push(IdentifierType::Email, email, "traits.email");
    }
    if let Some(phone) = string_field(message.traits.get("phone")) {
        push(IdentifierType::Phone, phone, "traits.phone");
    }
    if let Some(Value::Object(device)) = message.context.get("device") {
        if let Some(id) = string_field(device.get("id")) {
            push(IdentifierType::DeviceId, id, "context.device.id");
        }
        if let Some(id) = string_field(device.get("advertisingId")) {
            push(
                IdentifierType::AdvertisingId,
                id,
                "context.device.advertisingId",
            );
        }
    }
    match message.context.get("externalIds") {
        None | Some(Value::Null) => {}
        Some(Value::Array(entries)) => {
            for (index, entry) in entries.iter().enumerate() {
                let field = format!("context.externalIds[{index}]");
                let error = |problem: &str| ExtractError {
                    field: field.clone(),
                    problem: problem.to_string(),
                };
                let Value::Object(entry) = entry else {
                    return Err(error(
                        "must be an object {id, type, collection?, encoding?}",
                    ));
                };
                let id =
                    string_field(entry.get("id")).ok_or_else(|| error("`id` must be a string"))?;
                let type_name = match entry.get("type") {
                    Some(Value::String(name)) => name.to_lowercase(),
                    _ => return Err(error("`type` must be a string")),
                };
                let kind: IdentifierType = type_name
                    .parse()
                    .map_err(|_| error("`type` must be lowercase letters, digits and `_`"))?;
                let raw = if kind == IdentifierType::WechatOpenId {
                    // An OpenID is unique only within one app: the app id is part of its identity.
                    let app = match entry.get("collection") {
                        Some(Value::String(app)) if !app.trim().is_empty() => {
                            app.trim().to_string()
                        }
                        _ => return Err(error("wechat_openid needs the app id in `collection`")),
                    };
                    format!("{app}:{id}")
                } else {
                    id
                };
                push(kind, raw, &field);
            }
        }
        Some(_) => {
            return Err(ExtractError {
                field: "context.externalIds".into(),
                problem: "must be an array".into(),
            });
        }
    }
    Ok(found)
}
