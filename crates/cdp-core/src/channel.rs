//! The channels a source can belong to.

use serde::{Deserialize, Serialize};

/// Where events come from. Persisted by name: never rename one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Channel {
    Web,
    Ios,
    Android,
    MiniProgram,
    Crm,
    Pos,
    CustomerService,
    Social,
    Email,
    Sms,
}

impl Channel {
    pub const ALL: [Channel; 10] = [
        Self::Web,
        Self::Ios,
        Self::Android,
        Self::MiniProgram,
        Self::Crm,
        Self::Pos,
        Self::CustomerService,
        Self::Social,
        Self::Email,
        Self::Sms,
    ];

    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Web => "web",
            Self::Ios => "ios",
            Self::Android => "android",
            Self::MiniProgram => "mini_program",
            Self::Crm => "crm",
            Self::Pos => "pos",
            Self::CustomerService => "customer_service",
            Self::Social => "social",
            Self::Email => "email",
            Self::Sms => "sms",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        Self::ALL
            .into_iter()
            .find(|channel| channel.as_str() == text)
    }
}

impl std::fmt::Display for Channel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}
