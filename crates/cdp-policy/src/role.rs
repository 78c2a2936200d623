//! The roles of the management API. The set is closed (routes grant by role, see the permission
//! table of `cdp-server`); `roles.yaml` says which purposes each may state and must define
//! every one of them, and nothing else.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// Operates the platform: sources, keys, the identity graph.
    Admin,
    /// Data protection officer: requests, policies, audit.
    Dpo,
    /// Builds audiences and exports for campaigns.
    Marketer,
    /// Aggregate analysis only.
    Analyst,
    /// Answers customers.
    CustomerService,
    /// Reads the audit log; no personal data.
    Auditor,
}

impl Role {
    pub const ALL: &'static [Role] = &[
        Role::Admin,
        Role::Dpo,
        Role::Marketer,
        Role::Analyst,
        Role::CustomerService,
        Role::Auditor,
    ];

    /// The name in tokens and `roles.yaml`.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Admin => "admin",
            Role::Dpo => "dpo",
            Role::Marketer => "marketer",
            Role::Analyst => "analyst",
            Role::CustomerService => "customer_service",
            Role::Auditor => "auditor",
        }
    }

    /// The names of every role, comma-separated (for error messages).
    pub fn names() -> String {
        Role::ALL
            .iter()
            .map(|r| r.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    }
}

impl std::fmt::Display for Role {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A role name that is not one of [`Role::ALL`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown role {0:?}; roles are {names}", names = Role::names())]
pub struct UnknownRole(pub String);

impl std::str::FromStr for Role {
    type Err = UnknownRole;

    fn from_str(name: &str) -> Result<Self, Self::Err> {
        Role::ALL
            .iter()
            .copied()
            .find(|role| role.as_str() == name)
            .ok_or_else(|| UnknownRole(name.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_match_serde() {
        for role in Role::ALL {
            assert_eq!(role.as_str().parse::<Role>(), Ok(*role));
            assert_eq!(
                serde_json::to_value(role).ok(),
                Some(serde_json::Value::String(role.as_str().into()))
            );
        }
        assert!("admn".parse::<Role>().is_err());
    }
}
