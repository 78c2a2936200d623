//! Who may call which management route: one table. The routes check it (`Caller::require`),
//! `cdp token issue` takes its role names from `cdp_policy::Role`, and a test keeps the roles
//! column of docs/API.md equal to it. Roles grant routes; which purposes a role may state is
//! for the policies (`policies/roles.yaml`) to say, per read.

use cdp_policy::Role;
use cdp_policy::Role::{Admin, Analyst, Auditor, CustomerService, Dpo, Marketer};

/// What a management route needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Permission {
    ReadOverview,
    ManageAccounts,
    ManageSources,
    ReadProfiles,
    Import,
    ReadIdentityGraph,
    SplitProfiles,
    RecordConsents,
    ReadPolicies,
    EvaluatePolicies,
    CountAudiences,
    BuildAudiences,
    ManageRecipients,
    ListRecipients,
    Export,
    ReadExports,
    HandleRequests,
    ReadRequests,
    ReadAudit,
}

impl Permission {
    pub const ALL: &'static [Permission] = &[
        Permission::ReadOverview,
        Permission::ManageAccounts,
        Permission::ManageSources,
        Permission::ReadProfiles,
        Permission::Import,
        Permission::ReadIdentityGraph,
        Permission::SplitProfiles,
        Permission::RecordConsents,
        Permission::ReadPolicies,
        Permission::EvaluatePolicies,
        Permission::CountAudiences,
        Permission::BuildAudiences,
        Permission::ManageRecipients,
        Permission::ListRecipients,
        Permission::Export,
        Permission::ReadExports,
        Permission::HandleRequests,
        Permission::ReadRequests,
        Permission::ReadAudit,
    ];

    /// The roles that hold the permission, in the order of [`Role::ALL`].
    pub fn roles(self) -> &'static [Role] {
        match self {
            // Counts only: people indexed, index lag, messages per second per source.
            Permission::ReadOverview => &[Admin, Dpo, Marketer, Analyst, CustomerService, Auditor],
            Permission::ManageAccounts | Permission::ManageSources | Permission::Import => &[Admin],
            Permission::ReadIdentityGraph
            | Permission::SplitProfiles
            | Permission::EvaluatePolicies
            | Permission::ManageRecipients
            | Permission::HandleRequests => &[Admin, Dpo],
            Permission::RecordConsents => &[Admin, Dpo, CustomerService],
            // Individual profiles: not the analyst (aggregate only) nor the auditor (no
            // personal data), whatever purposes a token claims. The policies then decide per
            // read.
            Permission::ReadProfiles => &[Admin, Dpo, Marketer, CustomerService],
            Permission::ReadPolicies | Permission::ReadRequests | Permission::ReadAudit => {
                &[Admin, Dpo, Auditor]
            }
            Permission::CountAudiences => &[Admin, Dpo, Marketer, Analyst],
            Permission::BuildAudiences | Permission::Export => &[Admin, Dpo, Marketer],
            Permission::ListRecipients | Permission::ReadExports => {
                &[Admin, Dpo, Marketer, Auditor]
            }
        }
    }

    /// The routes (`METHOD /path` as in the router) that need it.
    pub fn routes(self) -> &'static [&'static str] {
        match self {
            Permission::ReadOverview => &["GET /v1/overview", "GET /v1/consents/trend"],
            Permission::ManageAccounts => &[
                "POST /v1/accounts",
                "GET /v1/accounts",
                "DELETE /v1/accounts/{name}",
                "POST /v1/accounts/{name}/unlock",
            ],
            Permission::ManageSources => &[
                "POST /v1/sources",
                "GET /v1/sources",
                "POST /v1/sources/{id}/rotate",
                "DELETE /v1/sources/{id}",
                "PATCH /v1/sources/{id}",
                "GET /v1/sources/{id}/activity",
            ],
            Permission::Import => &["POST /v1/import"],
            Permission::ReadProfiles => &[
                "GET /v1/profiles/{id}",
                "GET /v1/profiles/lookup",
                "POST /v1/profiles/lookup",
                "GET /v1/profiles/{id}/consents",
            ],
            Permission::ReadIdentityGraph => &[
                "GET /v1/profiles/{id}/identity",
                "GET /v1/profiles/{id}/events",
                "GET /v1/identity/suspects",
                "GET /v1/identity/matching",
                "GET /v1/identity/suggestions",
            ],
            Permission::SplitProfiles => &[
                "POST /v1/profiles/{id}/split",
                "POST /v1/identity/suspects/{id}",
                "POST /v1/identity/matching/run",
                "POST /v1/identity/suggestions/{id}",
            ],
            Permission::RecordConsents => &["POST /v1/consents", "POST /v1/consents/batch"],
            Permission::ReadPolicies => &[
                "GET /v1/policies",
                "GET /v1/policies/ropa",
                "GET /v1/policies/golden",
            ],
            Permission::EvaluatePolicies => &["POST /v1/policies/evaluate"],
            Permission::CountAudiences => &[
                "POST /v1/audiences/count",
                "POST /v1/audiences/breakdown",
                "GET /v1/campaigns/{id}/results",
                "GET /v1/audiences",
                "GET /v1/audiences/{id}",
            ],
            Permission::BuildAudiences => &[
                "POST /v1/audiences",
                "DELETE /v1/audiences/{id}",
                "GET /v1/audiences/{id}/members",
            ],
            Permission::ManageRecipients => &[
                "POST /v1/recipients",
                "POST /v1/suppressions",
                "POST /v1/destinations",
                "DELETE /v1/destinations/{id}",
                "POST /v1/destinations/{id}/rotate",
                "POST /v1/destinations/{id}/test",
                "POST /v1/destinations/{id}/dead-letters/retry",
            ],
            Permission::ListRecipients => &[
                "GET /v1/recipients",
                "GET /v1/destinations",
                "GET /v1/destinations/{id}",
                "GET /v1/destinations/{id}/dead-letters",
            ],
            Permission::Export => &[
                "POST /v1/exports",
                "GET /v1/exports/{id}/file",
                "POST /v1/schedules",
                "PATCH /v1/schedules/{id}",
                "DELETE /v1/schedules/{id}",
                "POST /v1/schedules/{id}/run",
                "POST /v1/campaigns",
                "POST /v1/campaigns/{id}/send",
                "PATCH /v1/campaigns/{id}",
            ],
            Permission::ReadExports => &[
                "GET /v1/exports",
                "GET /v1/exports/{id}",
                "GET /v1/exports/{id}/manifest",
                "GET /v1/exports/{id}/delivery",
                "GET /v1/schedules",
                "GET /v1/schedules/{id}",
                "GET /v1/campaigns",
                "GET /v1/campaigns/{id}",
            ],
            Permission::HandleRequests => &[
                "POST /v1/requests",
                "GET /v1/requests/{id}/bundle",
                "POST /v1/retention/run",
            ],
            Permission::ReadRequests => &["GET /v1/requests", "GET /v1/requests/{id}"],
            Permission::ReadAudit => &["GET /v1/audit", "GET /v1/audit/verify"],
        }
    }

    /// Whether any of `roles` (names from a token) holds the permission.
    pub fn granted_to(self, roles: &[String]) -> bool {
        roles.iter().any(|name| {
            name.parse::<Role>()
                .is_ok_and(|role| self.roles().contains(&role))
        })
    }

    /// `admin, dpo`: the roles as docs/API.md lists them.
    pub fn roles_text(self) -> String {
        self.roles()
            .iter()
            .map(|role| role.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roles_are_listed_in_canonical_order_and_routes_once() {
        let mut routes = std::collections::BTreeSet::new();
        for permission in Permission::ALL {
            let roles = permission.roles();
            let mut sorted = roles.to_vec();
            sorted.sort();
            assert_eq!(roles, sorted.as_slice(), "{permission:?}");
            for route in permission.routes() {
                assert!(routes.insert(*route), "{route} is in two rows");
            }
        }
        assert!(Permission::Export.granted_to(&["marketer".into()]));
        assert!(!Permission::Export.granted_to(&["analyst".into(), "marketr".into()]));
    }
}
