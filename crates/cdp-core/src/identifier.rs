//! Identifier types: the kinds of values that can name a person.
//!
//! The type is part of every blind index, so `email:x` and `user_id:x` never collide. The
//! spelling returned by [`IdentifierType::as_str`] is persisted (inside blind-index inputs):
//! never change an existing one.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// A kind of identifier, as carried by Segment-spec events (see `shared/design/identity.md`).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(into = "String", try_from = "String")]
pub enum IdentifierType {
    UserId,
    AnonymousId,
    Email,
    Phone,
    DeviceId,
    AdvertisingId,
    /// WeChat OpenID; only unique within one app id, so the app id is part of the value.
    WechatOpenId,
    WechatUnionId,
    AlipayUserId,
    CrmId,
    MemberId,
    /// A deployment-specific type from `context.externalIds[].type`, lowercase `[a-z0-9_]`.
    Other(String),
}

/// Why a string is not an identifier type.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown identifier type: use lowercase letters, digits and `_` (at most 64)")]
pub struct UnknownIdentifierType;

impl IdentifierType {
    pub fn as_str(&self) -> &str {
        match self {
            Self::UserId => "user_id",
            Self::AnonymousId => "anonymous_id",
            Self::Email => "email",
            Self::Phone => "phone",
            Self::DeviceId => "device_id",
            Self::AdvertisingId => "advertising_id",
            Self::WechatOpenId => "wechat_openid",
            Self::WechatUnionId => "wechat_unionid",
            Self::AlipayUserId => "alipay_user_id",
            Self::CrmId => "crm_id",
            Self::MemberId => "member_id",
            Self::Other(name) => name,
        }
    }
}

impl FromStr for IdentifierType {
    type Err = UnknownIdentifierType;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        Ok(match text {
            "user_id" => Self::UserId,
            "anonymous_id" => Self::AnonymousId,
            "email" => Self::Email,
            "phone" => Self::Phone,
            "device_id" => Self::DeviceId,
            "advertising_id" => Self::AdvertisingId,
            "wechat_openid" => Self::WechatOpenId,
            "wechat_unionid" => Self::WechatUnionId,
            "alipay_user_id" => Self::AlipayUserId,
            "crm_id" => Self::CrmId,
            "member_id" => Self::MemberId,
            other => {
                let well_formed = !other.is_empty()
                    && other.len() <= 64
                    && other
                        .bytes()
                        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
                if !well_formed {
                    return Err(UnknownIdentifierType);
                }
                Self::Other(other.to_string())
            }
        })
    }
}

impl fmt::Display for IdentifierType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl From<IdentifierType> for String {
    fn from(value: IdentifierType) -> Self {
        value.as_str().to_string()
    }
}

impl TryFrom<String> for IdentifierType {
    type Error = UnknownIdentifierType;

    fn try_from(value: String) -> Result<Self, Self::Error> {
        value.parse()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_types_round_trip() {
        for name in [
            "user_id",
            "anonymous_id",
            "email",
            "phone",
            "device_id",
            "advertising_id",
            "wechat_openid",
            "wechat_unionid",
            "alipay_user_id",
            "crm_id",
            "member_id",
            "loyalty_card",
        ] {
            let parsed: IdentifierType = name.parse().unwrap();
            assert_eq!(parsed.as_str(), name);
        }
        assert_eq!("email".parse(), Ok(IdentifierType::Email));
    }

    #[test]
    fn rejects_bad_custom_types() {
        for bad in ["", "Email", "a b", "x".repeat(65).as_str(), "wechat-openid"] {
            assert!(bad.parse::<IdentifierType>().is_err(), "{bad:?}");
        }
    }
}
