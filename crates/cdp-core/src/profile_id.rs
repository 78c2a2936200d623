//! Pseudonymous profile ids.
//!
//! A profile id is 16 random bytes, written `p_` + 32 lowercase hex digits. It carries no
//! information about the person, so it may appear in logs and error messages (not in metric
//! labels: their number is unbounded).

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// The stable, pseudonymous id of one person's profile.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ProfileId([u8; 16]);

/// Why a string is not a profile id.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("not a profile id: expected `p_` followed by 32 lowercase hex digits")]
pub struct ProfileIdError;

impl ProfileId {
    pub const PREFIX: &'static str = "p_";

    /// Wraps 16 bytes. Callers generate them with a CSPRNG (`cdp_crypto::random_profile_id`).
    pub const fn from_bytes(bytes: [u8; 16]) -> Self {
        Self(bytes)
    }

    pub const fn as_bytes(&self) -> &[u8; 16] {
        &self.0
    }
}

impl fmt::Display for ProfileId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut text = String::with_capacity(Self::PREFIX.len() + 32);
        text.push_str(Self::PREFIX);
        crate::hex::push(&mut text, &self.0);
        f.write_str(&text)
    }
}

impl fmt::Debug for ProfileId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl FromStr for ProfileId {
    type Err = ProfileIdError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let hex = text.strip_prefix(Self::PREFIX).ok_or(ProfileIdError)?;
        if hex.len() != 32 {
            return Err(ProfileIdError);
        }
        let mut bytes = [0u8; 16];
        for (index, pair) in hex.as_bytes().chunks_exact(2).enumerate() {
            bytes[index] = (hex_digit(pair[0])? << 4) | hex_digit(pair[1])?;
        }
        Ok(Self(bytes))
    }
}

fn hex_digit(byte: u8) -> Result<u8, ProfileIdError> {
    match byte {
        b'0'..=b'9' => Ok(byte - b'0'),
        b'a'..=b'f' => Ok(byte - b'a' + 10),
        _ => Err(ProfileIdError),
    }
}

impl Serialize for ProfileId {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for ProfileId {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_and_parse_round_trip() {
        let id = ProfileId::from_bytes([0xab; 16]);
        let text = id.to_string();
        assert_eq!(text, format!("p_{}", "ab".repeat(16)));
        assert_eq!(text.parse::<ProfileId>(), Ok(id));
        let json = serde_json::to_string(&id).unwrap();
        assert_eq!(serde_json::from_str::<ProfileId>(&json).unwrap(), id);
    }

    #[test]
    fn rejects_malformed_ids() {
        for bad in [
            "",
            "p_",
            "ab".repeat(16).as_str(),
            &format!("p_{}", "AB".repeat(16)),
            &format!("p_{}", "ab".repeat(15)),
            &format!("p_{}x", "ab".repeat(15)),
            &format!("q_{}", "ab".repeat(16)),
        ] {
            assert_eq!(bad.parse::<ProfileId>(), Err(ProfileIdError), "{bad:?}");
        }
    }
}
