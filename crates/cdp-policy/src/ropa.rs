//! Records of processing activities (GDPR Art 30; PIPL Art 55-56 and the personal
//! information processing records GB/T 35273 asks for), generated from the policies and the
//! registered recipients.

use std::fmt::Write as _;

use serde::{Deserialize, Serialize};

use crate::decide::RecipientRole;
use crate::load::{PolicySet, ancestors};

/// A registered recipient, as the record lists it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RopaRecipient {
    pub name: String,
    pub contact: String,
    pub role: RecipientRole,
    pub region: String,
    pub transfer_mechanism: String,
    pub allowed_purposes: Vec<String>,
    /// The day (YYYY-MM-DD) from which nothing more is sent to it: a retired recipient stays
    /// in the record, since what it received before remains disclosed.
    pub retired_on: Option<String>,
}

fn cell(text: &str) -> String {
    text.replace('|', "\\|").replace('\n', " ")
}

impl PolicySet {
    fn legal_basis_of(&self, jurisdiction: usize, purpose: &str) -> String {
        let j = &self.jurisdictions[jurisdiction];
        ancestors(purpose)
            .find_map(|candidate| j.purposes.get(candidate))
            .map_or_else(
                || format!("not permitted ({})", j.default.cite.join(", ")),
                |rule| format!("{} ({})", rule.legal_basis.as_str(), rule.cite.join(", ")),
            )
    }

    /// The record, in markdown. `generated_at` is printed as given (RFC 3339).
    pub fn ropa(&self, recipients: &[RopaRecipient], generated_at: &str) -> String {
        let mut out = String::new();
        let _ = writeln!(out, "# Record of processing activities\n");
        let _ = writeln!(
            out,
            "Generated {generated_at} from the policies `{}` (version `{}`). GDPR Art 30; PIPL Art 55-56.\n",
            self.origin, self.version
        );
        let _ = writeln!(out, "## Jurisdictions\n");
        for j in &self.jurisdictions {
            let _ = writeln!(
                out,
                "- **{}** (`{}`): people resident in, or whose data is collected in, {}.",
                j.name,
                j.jurisdiction,
                j.regions.join(", ")
            );
        }
        self.ropa_purposes(&mut out);
        self.ropa_data_categories(&mut out);
        self.ropa_recipients(&mut out, recipients);
        self.ropa_transfers(&mut out, recipients);
        self.ropa_access_requests_security(&mut out);
        out
    }

    /// The section(s) on the purposes and their lawful basis in each jurisdiction.
    fn ropa_purposes(&self, out: &mut String) {
        let _ = writeln!(out, "\n## Purposes and lawful bases\n");
        let mut header =
            String::from("| Purpose | Description | Marketing | Personalised | Notice |");
        let mut rule = String::from("|---|---|---|---|---|");
        for j in &self.jurisdictions {
            let _ = write!(header, " {} |", j.jurisdiction);
            rule.push_str("---|");
        }
        let _ = writeln!(out, "{header}\n{rule}");
        for (purpose, def) in &self.taxonomy.purposes {
            let mut row = format!(
                "| `{purpose}` | {} | {} | {} | {} |",
                cell(&def.description),
                if def.marketing { "yes" } else { "no" },
                if def.personalised { "yes" } else { "no" },
                self.notice_version(purpose).unwrap_or("-"),
            );
            for index in 0..self.jurisdictions.len() {
                let _ = write!(row, " {} |", self.legal_basis_of(index, purpose));
            }
            let _ = writeln!(out, "{row}");
        }
    }

    /// The section(s) on data subjects, categories of personal data and their retention.
    fn ropa_data_categories(&self, out: &mut String) {
        let _ = writeln!(out, "\n## Categories of data subjects\n");
        let _ = writeln!(
            out,
            "Customers and prospects who interact through the registered sources (web, apps, mini-programs, stores, service desk, CRM), including minors where the policies' age rules allow.\n"
        );
        let _ = writeln!(out, "## Categories of personal data and retention\n");
        let mut header = String::from("| Category | Description | Sensitive |");
        let mut rule = String::from("|---|---|---|");
        for j in &self.jurisdictions {
            let _ = write!(header, " Retention ({}) |", j.jurisdiction);
            rule.push_str("---|");
        }
        let _ = writeln!(out, "{header}\n{rule}");
        for (category, def) in &self.taxonomy.data_categories {
            let mut row = format!(
                "| `{category}` | {} | {} |",
                cell(&def.description),
                if self.is_sensitive(category) {
                    "yes"
                } else {
                    "no"
                }
            );
            for j in &self.jurisdictions {
                let found = ancestors(category).find_map(|candidate| j.retention.get(candidate));
                let text = found.map_or_else(
                    || "-".to_string(),
                    |r| format!("{} days ({})", r.days, r.cite.join(", ")),
                );
                let _ = write!(row, " {text} |");
            }
            let _ = writeln!(out, "{row}");
        }
    }

    /// The section(s) on the registered recipients.
    fn ropa_recipients(&self, out: &mut String, recipients: &[RopaRecipient]) {
        let _ = writeln!(out, "\n## Recipients\n");
        if recipients.is_empty() {
            let _ = writeln!(out, "No recipient is registered.\n");
        } else {
            let _ = writeln!(
                out,
                "| Recipient | Contact | Role | Region | Transfer mechanism | Purposes |\n|---|---|---|---|---|---|"
            );
            for r in recipients {
                let _ = writeln!(
                    out,
                    "| {}{} | {} | {} | {} | {} | {} |",
                    cell(&r.name),
                    r.retired_on
                        .as_deref()
                        .map(|day| format!(" (retired {day})"))
                        .unwrap_or_default(),
                    cell(&r.contact),
                    match r.role {
                        RecipientRole::Processor => "processor",
                        RecipientRole::Controller => "controller",
                    },
                    cell(&r.region),
                    cell(&r.transfer_mechanism),
                    r.allowed_purposes.join(", ")
                );
            }
            let _ = writeln!(out);
        }
    }

    /// The section(s) on international transfers.
    fn ropa_transfers(&self, out: &mut String, recipients: &[RopaRecipient]) {
        let _ = writeln!(out, "## International transfers\n");
        let mut any = false;
        for r in recipients {
            for j in &self.jurisdictions {
                if !j.home_regions.contains(&r.region) {
                    any = true;
                    let _ = writeln!(
                        out,
                        "- {} ({}) is outside {}'s regions: mechanism `{}`{}; accepted: {} ({}).",
                        cell(&r.name),
                        r.region,
                        j.jurisdiction,
                        r.transfer_mechanism,
                        if j.cross_border.separate_consent {
                            ", plus the person's separate consent"
                        } else {
                            ""
                        },
                        j.cross_border.mechanisms.join(", "),
                        j.cross_border.cite.join(", ")
                    );
                }
            }
        }
        if !any {
            let _ = writeln!(out, "None.");
        }
    }

    /// The section(s) on access by role, rights requests and security measures.
    fn ropa_access_requests_security(&self, out: &mut String) {
        let _ = writeln!(out, "\n## Access by role\n");
        let _ = writeln!(out, "| Role | Description | Purposes |\n|---|---|---|");
        for (role, def) in &self.roles.roles {
            let _ = writeln!(
                out,
                "| {role} | {} | {} |",
                cell(&def.description),
                if def.purposes.is_empty() {
                    "none".to_string()
                } else {
                    def.purposes.join(", ")
                }
            );
        }
        let _ = writeln!(out, "\n## Rights requests\n");
        for j in &self.jurisdictions {
            let _ = writeln!(
                out,
                "- {}: answered within {} days ({}).",
                j.jurisdiction,
                j.requests.response_days,
                j.requests.cite.join(", ")
            );
        }
        let _ = writeln!(out, "\n## Security measures (GDPR Art 32, PIPL Art 51)\n");
        let _ = writeln!(
            out,
            "- Every personal record is sealed with AES-256-GCM under a per-person data key, wrapped by a versioned master key; erasure destroys the data key.\n\
             - Identifiers are stored as keyed blind indexes (HMAC-SHA256); the search index holds pseudonymous attributes only.\n\
             - Reads of personal data state a purpose, are decided by these policies, masked for display, and logged in a hash-chained audit log.\n\
             - Exports use per-recipient keyed pseudonyms and signed manifests."
        );
    }
}
