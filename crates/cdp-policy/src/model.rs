//! The policy files as written (YAML), one struct per file kind. `deny_unknown_fields`
//! everywhere: a misspelt key is an error, not a silently ignored rule.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// `taxonomy.yaml`: data categories, purposes and consent-category names.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TaxonomyFile {
    pub version: u32,
    pub data_categories: BTreeMap<String, CategoryDef>,
    pub purposes: BTreeMap<String, PurposeDef>,
    #[serde(default)]
    pub consent_categories: BTreeMap<String, Vec<String>>,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct CategoryDef {
    pub description: String,
    /// Sensitive (PIPL Art 28) / special category (GDPR Art 9). Inherited by descendants.
    #[serde(default)]
    pub sensitive: bool,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct PurposeDef {
    pub description: String,
    /// Direct marketing (objections to marketing cover it).
    #[serde(default)]
    pub marketing: bool,
    /// Based on a profile of the person (an objection to personalisation covers it).
    #[serde(default)]
    pub personalised: bool,
    /// The version of the notice people consent to; consents to another version are stale.
    #[serde(default)]
    pub notice_version: Option<String>,
}

/// `fields.yaml`: profile field -> data category.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FieldsFile {
    pub version: u32,
    pub fields: BTreeMap<String, String>,
}

/// `roles.yaml`: which purposes each role may state.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RolesFile {
    pub version: u32,
    pub roles: BTreeMap<crate::Role, RoleDef>,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RoleDef {
    pub description: String,
    pub purposes: Vec<String>,
}

/// Lawful bases (GDPR Art 6(1), PIPL Art 13).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum LegalBasis {
    Consent,
    Contract,
    LegalObligation,
    VitalInterest,
    PublicTask,
    LegitimateInterest,
}

impl LegalBasis {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Consent => "consent",
            Self::Contract => "contract",
            Self::LegalObligation => "legal_obligation",
            Self::VitalInterest => "vital_interest",
            Self::PublicTask => "public_task",
            Self::LegitimateInterest => "legitimate_interest",
        }
    }
}

/// A rule that only carries citations.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Cited {
    pub cite: Vec<String>,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ForbiddenBasis {
    pub basis: LegalBasis,
    pub cite: Vec<String>,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct PurposeRule {
    pub legal_basis: LegalBasis,
    pub cite: Vec<String>,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ConsentRules {
    pub cite: Vec<String>,
    pub withdrawal_cite: Vec<String>,
    pub stale_notice_cite: Vec<String>,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ObjectionRules {
    pub personalization_cite: Vec<String>,
    pub marketing_cite: Vec<String>,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct AgeRule {
    pub age_under: u32,
    pub cite: Vec<String>,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct MinorsRule {
    /// Below this age, consent-based processing needs a guardian's consent.
    pub age_under: u32,
    /// Country -> age, where a country sets its own.
    #[serde(default)]
    pub by_country: BTreeMap<String, u32>,
    pub cite: Vec<String>,
    /// Below this age, no advertising purpose at all (the consent of nobody lifts it).
    #[serde(default)]
    pub advertising_profiling_ban: Option<AgeRule>,
    /// Below `age_under`, all of the child's personal information is sensitive (PIPL Art 28):
    /// every purpose, whatever its lawful basis, needs the guardian's separate consent, and
    /// every field is treated as a sensitive one.
    #[serde(default)]
    pub all_sensitive: bool,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ProvisionRule {
    pub separate_consent: bool,
    pub cite: Vec<String>,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct CrossBorderRule {
    /// Transfer mechanisms this jurisdiction accepts.
    pub mechanisms: Vec<String>,
    /// Whether the person must also have given a separate consent (PIPL Art 39).
    pub separate_consent: bool,
    pub cite: Vec<String>,
}

/// How one field is shown or handed over. Written as text: `keep`, `drop`, `pseudonymise`,
/// `mask:phone|email|name|tail`, `generalise:year|band10`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(try_from = "String", into = "String")]
pub enum Transform {
    /// Kept as it is.
    Keep,
    /// Masked for display (`138****1234`).
    Mask(MaskStyle),
    /// Generalised (a date to its year, an age to a band).
    Generalise(Generalisation),
    /// Replaced by a keyed pseudonym.
    Pseudonymise,
    /// Left out.
    Drop,
}

impl Transform {
    /// How much the transform hides: the most restrictive of two obligations wins.
    pub fn strictness(self) -> u8 {
        match self {
            Self::Keep => 0,
            Self::Mask(_) => 1,
            Self::Generalise(_) => 2,
            Self::Pseudonymise => 3,
            Self::Drop => 4,
        }
    }

    pub fn label(self) -> String {
        match self {
            Self::Keep => "keep".into(),
            Self::Mask(style) => format!("mask:{}", style.as_str()),
            Self::Generalise(to) => format!("generalise:{}", to.as_str()),
            Self::Pseudonymise => "pseudonymise".into(),
            Self::Drop => "drop".into(),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MaskStyle {
    /// First 3 and last 4 digits: `138****1234` (GB/T 35273 7.2).
    Phone,
    /// First character of the local part and the domain: `z***@example.cn`.
    Email,
    /// First character: `张*`, `J***`.
    Name,
    /// Everything but the last 4 characters.
    Tail,
}

impl MaskStyle {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Phone => "phone",
            Self::Email => "email",
            Self::Name => "name",
            Self::Tail => "tail",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Generalisation {
    /// A date to its year.
    Year,
    /// A number of years to a ten-year band (`30-39`).
    Band10,
}

impl Generalisation {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Year => "year",
            Self::Band10 => "band10",
        }
    }
}

impl From<Transform> for String {
    fn from(transform: Transform) -> Self {
        transform.label()
    }
}

impl TryFrom<String> for Transform {
    type Error = String;

    fn try_from(text: String) -> Result<Self, Self::Error> {
        Ok(match text.as_str() {
            "keep" => Self::Keep,
            "drop" => Self::Drop,
            "pseudonymise" => Self::Pseudonymise,
            "mask:phone" => Self::Mask(MaskStyle::Phone),
            "mask:email" => Self::Mask(MaskStyle::Email),
            "mask:name" => Self::Mask(MaskStyle::Name),
            "mask:tail" => Self::Mask(MaskStyle::Tail),
            "generalise:year" => Self::Generalise(Generalisation::Year),
            "generalise:band10" => Self::Generalise(Generalisation::Band10),
            other => {
                return Err(format!(
                    "unknown transform {other:?} (keep, drop, pseudonymise, mask:phone|email|name|tail, generalise:year|band10)"
                ));
            }
        })
    }
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct DisplayMasking {
    pub cite: Vec<String>,
    /// Category (or ancestor) -> transform for reads.
    pub categories: BTreeMap<String, Transform>,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RetentionRule {
    pub days: u32,
    pub cite: Vec<String>,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RequestsRule {
    pub response_days: u32,
    pub cite: Vec<String>,
}

/// What exports may hand over, and the smallest audience they may describe.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ExportRules {
    /// Below this many people an export is refused: a small file can single people out.
    pub min_audience_size: u64,
    /// Data category -> purposes for which a processor may receive it in clear; everything
    /// else identifying leaves pseudonymised.
    #[serde(default)]
    pub clear: BTreeMap<String, Vec<String>>,
    pub cite: Vec<String>,
}

/// A jurisdiction file (`pipl.yaml`, `gdpr.yaml`, ...).
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct JurisdictionFile {
    /// Short id (`pipl`), used in rule ids.
    pub jurisdiction: String,
    pub name: String,
    /// Applies to people resident in, or whose data was collected in, these regions.
    pub regions: Vec<String>,
    /// A recipient outside these regions is a cross-border transfer.
    pub home_regions: Vec<String>,
    /// Citation id -> what the article asks (paraphrase).
    pub citations: BTreeMap<String, String>,
    #[serde(default)]
    pub forbidden_legal_bases: Vec<ForbiddenBasis>,
    /// Why a purpose this file does not list is denied.
    pub default: Cited,
    /// Purpose (or ancestor) -> legal basis.
    pub purposes: BTreeMap<String, PurposeRule>,
    pub consent: ConsentRules,
    pub objection: ObjectionRules,
    pub restriction: Cited,
    pub minors: MinorsRule,
    pub sensitive: Cited,
    pub publish: Cited,
    #[serde(default)]
    pub provision: Option<ProvisionRule>,
    pub cross_border: CrossBorderRule,
    pub unclassified_fields: Cited,
    pub display_masking: DisplayMasking,
    pub export: ExportRules,
    pub retention: BTreeMap<String, RetentionRule>,
    pub requests: RequestsRule,
}
