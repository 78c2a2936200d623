//! Loading and validating a policy directory.
//!
//! A directory holds `taxonomy.yaml`, `fields.yaml`, `roles.yaml`, `inferences.yaml` and one file per jurisdiction
//! (every other `*.yaml`); `tests/` holds golden cases and is not part of the policy. Every
//! error names the file, the line (where it can be found) and the rule.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use serde::de::DeserializeOwned;

use crate::inferences::{InferencesFile, normalise_value};
use crate::model::{FieldsFile, JurisdictionFile, RolesFile, TaxonomyFile, Transform};

/// Why a policy directory cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PolicyError {
    #[error("{file}{}: {rule}: {message}", line.map(|l| format!(":{l}")).unwrap_or_default())]
    Invalid {
        file: String,
        line: Option<usize>,
        rule: String,
        message: String,
    },
    #[error("{path}: {message}")]
    Io { path: String, message: String },
}

const TAXONOMY: &str = "taxonomy.yaml";
const FIELDS: &str = "fields.yaml";
const ROLES: &str = "roles.yaml";
const INFERENCES: &str = "inferences.yaml";

/// The policies shipped with the binary (the repository's `policies/`).
const BUILTIN: &[(&str, &str)] = &[
    (TAXONOMY, include_str!("../../../policies/taxonomy.yaml")),
    (FIELDS, include_str!("../../../policies/fields.yaml")),
    (ROLES, include_str!("../../../policies/roles.yaml")),
    (
        INFERENCES,
        include_str!("../../../policies/inferences.yaml"),
    ),
    ("pipl.yaml", include_str!("../../../policies/pipl.yaml")),
    ("gdpr.yaml", include_str!("../../../policies/gdpr.yaml")),
];

/// A loaded, validated set of policies.
#[derive(Debug, Clone)]
pub struct PolicySet {
    pub taxonomy: TaxonomyFile,
    pub fields: FieldsFile,
    pub roles: RolesFile,
    /// What selector values (interests, tags, event names) reveal.
    pub inferences: InferencesFile,
    pub jurisdictions: Vec<JurisdictionFile>,
    /// `sha256:` + 16 hex digits of the files' names and contents: which rules decided.
    pub version: String,
    /// Where the policies came from (a directory, or `builtin`).
    pub origin: String,
    /// Region -> the indices (in `jurisdictions`) of the files that name it: a decision finds
    /// a person's jurisdictions by one lookup per place rather than by testing every region
    /// of every file (the GDPR's 31), which was 3 % of an export's CPU.
    pub(crate) by_region: std::collections::HashMap<String, Vec<usize>>,
}

impl PolicySet {
    /// The policies compiled into the binary.
    pub fn builtin() -> Result<Self, PolicyError> {
        let files = BUILTIN
            .iter()
            .map(|(name, text)| ((*name).to_string(), (*text).to_string()))
            .collect();
        Self::from_files(files, "builtin")
    }

    /// Loads `dir` (see the module documentation).
    pub fn load_dir(dir: &Path) -> Result<Self, PolicyError> {
        let io = |message: String| PolicyError::Io {
            path: dir.display().to_string(),
            message,
        };
        let entries = std::fs::read_dir(dir).map_err(|e| io(e.to_string()))?;
        let mut files = BTreeMap::new();
        for entry in entries {
            let entry = entry.map_err(|e| io(e.to_string()))?;
            let path = entry.path();
            let is_yaml = path
                .extension()
                .is_some_and(|ext| ext == "yaml" || ext == "yml");
            if !is_yaml || !path.is_file() {
                continue;
            }
            let name = entry.file_name().to_string_lossy().into_owned();
            let text = std::fs::read_to_string(&path).map_err(|e| PolicyError::Io {
                path: path.display().to_string(),
                message: e.to_string(),
            })?;
            files.insert(name, text);
        }
        Self::from_files(files, &dir.display().to_string())
    }

    /// Parses and validates named file texts.
    pub fn from_files(files: BTreeMap<String, String>, origin: &str) -> Result<Self, PolicyError> {
        let take = |name: &str| {
            files.get(name).ok_or_else(|| PolicyError::Invalid {
                file: name.into(),
                line: None,
                rule: "files".into(),
                message: format!("the policy directory has no {name}"),
            })
        };
        let taxonomy: TaxonomyFile = parse(TAXONOMY, take(TAXONOMY)?)?;
        let fields: FieldsFile = parse(FIELDS, take(FIELDS)?)?;
        let roles: RolesFile = parse(ROLES, take(ROLES)?)?;
        let inferences: InferencesFile = parse(INFERENCES, take(INFERENCES)?)?;
        let mut jurisdictions = Vec::new();
        for (name, text) in &files {
            if [TAXONOMY, FIELDS, ROLES, INFERENCES].contains(&name.as_str()) {
                continue;
            }
            jurisdictions.push((name.clone(), parse::<JurisdictionFile>(name, text)?));
        }
        if jurisdictions.is_empty() {
            return Err(PolicyError::Invalid {
                file: origin.into(),
                line: None,
                rule: "files".into(),
                message: "no jurisdiction file (pipl.yaml, gdpr.yaml...)".into(),
            });
        }
        let validator = Validator { files: &files };
        validator.taxonomy(&taxonomy)?;
        validator.fields(&fields, &taxonomy)?;
        validator.roles(&roles, &taxonomy)?;
        validator.inferences(&inferences, &taxonomy)?;
        let mut ids = BTreeSet::new();
        for (name, jurisdiction) in &jurisdictions {
            if !ids.insert(jurisdiction.jurisdiction.clone()) {
                return Err(validator.error(
                    name,
                    &["jurisdiction:"],
                    "jurisdiction",
                    format!(
                        "jurisdiction {:?} is defined twice",
                        jurisdiction.jurisdiction
                    ),
                ));
            }
            validator.jurisdiction(name, jurisdiction, &taxonomy)?;
        }
        let mut parts: Vec<&[u8]> = Vec::new();
        for (name, text) in &files {
            parts.push(name.as_bytes());
            parts.push(text.as_bytes());
        }
        let digest = cdp_crypto::sha256_parts(&parts);
        let version = format!("sha256:{}", cdp_core::hex::encode(&digest[..8]));
        let jurisdictions: Vec<JurisdictionFile> =
            jurisdictions.into_iter().map(|(_, j)| j).collect();
        let mut by_region: std::collections::HashMap<String, Vec<usize>> =
            std::collections::HashMap::new();
        for (n, jurisdiction) in jurisdictions.iter().enumerate() {
            for region in &jurisdiction.regions {
                let files = by_region.entry(region.clone()).or_default();
                if !files.contains(&n) {
                    files.push(n);
                }
            }
        }
        Ok(Self {
            taxonomy,
            fields,
            roles,
            inferences,
            jurisdictions,
            version,
            origin: origin.into(),
            by_region,
        })
    }
}

fn parse<T: DeserializeOwned>(file: &str, text: &str) -> Result<T, PolicyError> {
    serde_yaml_ng::from_str(text).map_err(|error| {
        let line = error.location().map(|location| location.line());
        // serde_yaml_ng appends "at line L column C"; the line is reported separately.
        let message = error.to_string();
        let message = message
            .split(" at line ")
            .next()
            .unwrap_or(&message)
            .to_string();
        PolicyError::Invalid {
            file: file.into(),
            line,
            rule: "syntax".into(),
            message,
        }
    })
}

/// `a.b.c` -> `a.b`.
pub(crate) fn parent(key: &str) -> Option<&str> {
    key.rsplit_once('.').map(|(parent, _)| parent)
}

/// `a.b.c`, `a.b`, `a`: a dotted key and its ancestors, nearest first.
pub(crate) fn ancestors(key: &str) -> impl Iterator<Item = &str> {
    std::iter::successors(Some(key), |k| parent(k))
}

struct Validator<'a> {
    files: &'a BTreeMap<String, String>,
}

impl Validator<'_> {
    /// An error located at the first line, at or after the previous needle's line, that holds
    /// each needle in turn (keys of nested maps).
    fn error(&self, file: &str, needles: &[&str], rule: &str, message: String) -> PolicyError {
        let line = self.files.get(file).and_then(|text| {
            let lines: Vec<&str> = text.lines().collect();
            let mut at = 0;
            for needle in needles {
                let found = lines[at..].iter().position(|line| {
                    !line.trim_start().starts_with('#') && line.contains(needle)
                })?;
                at += found;
            }
            Some(at + 1)
        });
        PolicyError::Invalid {
            file: file.into(),
            line,
            rule: rule.into(),
            message,
        }
    }

    fn taxonomy(&self, taxonomy: &TaxonomyFile) -> Result<(), PolicyError> {
        if taxonomy.version != 1 {
            return Err(self.error(
                TAXONOMY,
                &["version:"],
                "version",
                format!("version {} is not supported (1 is)", taxonomy.version),
            ));
        }
        for key in taxonomy.data_categories.keys() {
            check_key(key).map_err(|m| self.error(TAXONOMY, &[key], key, m))?;
            if let Some(parent) = parent(key)
                && !taxonomy.data_categories.contains_key(parent)
            {
                return Err(self.error(
                    TAXONOMY,
                    &["data_categories:", &format!("{key}:")],
                    key,
                    format!("its parent category {parent} is not defined"),
                ));
            }
        }
        for key in taxonomy.purposes.keys() {
            check_key(key).map_err(|m| self.error(TAXONOMY, &[key], key, m))?;
            if let Some(parent) = parent(key)
                && !taxonomy.purposes.contains_key(parent)
            {
                return Err(self.error(
                    TAXONOMY,
                    &["purposes:", &format!("{key}:")],
                    key,
                    format!("its parent purpose {parent} is not defined"),
                ));
            }
        }
        for (name, purposes) in &taxonomy.consent_categories {
            for purpose in purposes {
                if !taxonomy.purposes.contains_key(purpose) {
                    return Err(self.error(
                        TAXONOMY,
                        &["consent_categories:", &format!("{name}:")],
                        &format!("consent_categories.{name}"),
                        format!("purpose {purpose} is not defined"),
                    ));
                }
            }
        }
        Ok(())
    }

    /// Every category of the taxonomy, every term normalised and in one category only.
    fn inferences(
        &self,
        inferences: &InferencesFile,
        taxonomy: &TaxonomyFile,
    ) -> Result<(), PolicyError> {
        let mut seen: BTreeMap<&str, &str> = BTreeMap::new();
        for (category, terms) in &inferences.categories {
            if !taxonomy.data_categories.contains_key(category) {
                return Err(self.error(
                    INFERENCES,
                    &[&format!("{category}:")],
                    category,
                    format!("{category} is not a data category of taxonomy.yaml"),
                ));
            }
            for term in &terms.terms {
                if term.is_empty() || normalise_value(term) != *term {
                    return Err(self.error(
                        INFERENCES,
                        &[&format!("{category}:"), term],
                        category,
                        format!("term {term:?} must be lower case, with _ for spaces and dashes"),
                    ));
                }
                if let Some(other) = seen.insert(term, category) {
                    return Err(self.error(
                        INFERENCES,
                        &[&format!("{category}:"), term],
                        category,
                        format!("term {term} is listed under {other} too"),
                    ));
                }
            }
        }
        Ok(())
    }

    fn fields(&self, fields: &FieldsFile, taxonomy: &TaxonomyFile) -> Result<(), PolicyError> {
        for (field, category) in &fields.fields {
            let known_shape = field.starts_with("identifiers.")
                || field.starts_with("traits.")
                || field == "channels"
                || field == "events"
                || field == "context.ip"
                || field == "context.location";
            if !known_shape {
                return Err(self.error(
                    FIELDS,
                    &[&format!("{field}:")],
                    field,
                    "a field is identifiers.<type>, traits.<name>, channels, events, context.ip or context.location".into(),
                ));
            }
            if !taxonomy.data_categories.contains_key(category) {
                return Err(self.error(
                    FIELDS,
                    &[&format!("{field}:")],
                    field,
                    format!("data category {category} is not defined in taxonomy.yaml"),
                ));
            }
        }
        Ok(())
    }

    fn roles(&self, roles: &RolesFile, taxonomy: &TaxonomyFile) -> Result<(), PolicyError> {
        // Routes grant by role: a role the file leaves out could call routes with purposes
        // nobody wrote down.
        if let Some(missing) = crate::Role::ALL
            .iter()
            .find(|role| !roles.roles.contains_key(role))
        {
            return Err(self.error(
                ROLES,
                &["roles:"],
                missing.as_str(),
                format!(
                    "role {missing} is not defined (every role must be: {})",
                    crate::Role::names()
                ),
            ));
        }
        for (role, def) in &roles.roles {
            let role = role.as_str();
            for pattern in &def.purposes {
                if pattern != "*" && !taxonomy.purposes.contains_key(pattern) {
                    return Err(self.error(
                        ROLES,
                        &[&format!("{role}:"), "purposes:"],
                        role,
                        format!("purpose {pattern} is not defined in taxonomy.yaml"),
                    ));
                }
            }
        }
        Ok(())
    }

    /// A jurisdiction file: every rule cites articles of its own citations, names purposes and
    /// data categories of the taxonomy, and has plausible numbers.
    fn jurisdiction(
        &self,
        file: &str,
        j: &JurisdictionFile,
        taxonomy: &TaxonomyFile,
    ) -> Result<(), PolicyError> {
        let check = JurisdictionValidation {
            validator: self,
            file,
            j,
            taxonomy,
        };
        check.cited_sections()?;
        check.purposes()?;
        check.minors()?;
        check.display_masking()?;
        check.export()?;
        check.retention()?;
        if j.requests.response_days == 0 {
            return Err(check.error(
                &["requests:"],
                "requests",
                "response_days must be at least one".into(),
            ));
        }
        Ok(())
    }
}

/// The checks of one jurisdiction file.
struct JurisdictionValidation<'a> {
    validator: &'a Validator<'a>,
    file: &'a str,
    j: &'a JurisdictionFile,
    taxonomy: &'a TaxonomyFile,
}

impl JurisdictionValidation<'_> {
    /// An error of the rule `<jurisdiction>.<section>`.
    fn error(&self, needles: &[&str], section: &str, message: String) -> PolicyError {
        let rule = format!("{}.{section}", self.j.jurisdiction);
        self.validator.error(self.file, needles, &rule, message)
    }

    /// A rule cites at least one article, each of this file's citations.
    fn cites(&self, section: &str, cites: &[String]) -> Result<(), PolicyError> {
        if cites.is_empty() {
            return Err(self.error(
                &[&format!(
                    "{}:",
                    section.rsplit('.').next().unwrap_or(section)
                )],
                section,
                "a rule must cite at least one article".into(),
            ));
        }
        for cite in cites {
            if !self.j.citations.contains_key(cite) {
                return Err(self.error(
                    &[
                        &format!("{}:", section.split('.').next().unwrap_or(section)),
                        cite,
                    ],
                    section,
                    format!("cites {cite}, which is not in this file's citations"),
                ));
            }
        }
        Ok(())
    }

    /// A data category of the taxonomy.
    fn category(&self, section: &str, key: &str, category: &str) -> Result<(), PolicyError> {
        if self.taxonomy.data_categories.contains_key(category) {
            return Ok(());
        }
        Err(self.error(
            &[&format!("{key}:"), &format!("{category}:")],
            &format!("{section}.{category}"),
            format!("data category {category} is not defined in taxonomy.yaml"),
        ))
    }

    /// The sections that hold nothing but citations.
    fn cited_sections(&self) -> Result<(), PolicyError> {
        let j = self.j;
        for forbidden in &j.forbidden_legal_bases {
            self.cites("forbidden_legal_bases", &forbidden.cite)?;
        }
        let sections: [(&str, &[String]); 14] = [
            ("default", &j.default.cite),
            ("consent", &j.consent.cite),
            ("consent.withdrawal_cite", &j.consent.withdrawal_cite),
            ("consent.stale_notice_cite", &j.consent.stale_notice_cite),
            (
                "objection.personalization_cite",
                &j.objection.personalization_cite,
            ),
            ("objection.marketing_cite", &j.objection.marketing_cite),
            ("restriction", &j.restriction.cite),
            ("minors", &j.minors.cite),
            ("sensitive", &j.sensitive.cite),
            ("publish", &j.publish.cite),
            ("cross_border", &j.cross_border.cite),
            ("unclassified_fields", &j.unclassified_fields.cite),
            ("display_masking", &j.display_masking.cite),
            ("export", &j.export.cite),
        ];
        for (section, cites) in sections {
            self.cites(section, cites)?;
        }
        if let Some(ban) = &j.minors.advertising_profiling_ban {
            self.cites("minors.advertising_profiling_ban", &ban.cite)?;
        }
        if let Some(provision) = &j.provision {
            self.cites("provision", &provision.cite)?;
        }
        self.cites("requests", &j.requests.cite)
    }

    /// Purposes of the taxonomy, cited, on a basis the jurisdiction does not forbid.
    fn purposes(&self) -> Result<(), PolicyError> {
        for (purpose, rule) in &self.j.purposes {
            let section = format!("purposes.{purpose}");
            if !self.taxonomy.purposes.contains_key(purpose) {
                return Err(self.error(
                    &["purposes:", &format!("{purpose}:")],
                    &section,
                    format!("purpose {purpose} is not defined in taxonomy.yaml"),
                ));
            }
            self.cites(&section, &rule.cite)?;
            if let Some(forbidden) = self
                .j
                .forbidden_legal_bases
                .iter()
                .find(|f| f.basis == rule.legal_basis)
            {
                return Err(self.error(
                    &["purposes:", &format!("{purpose}:"), "legal_basis"],
                    &section,
                    format!(
                        "legal basis {} is forbidden in this jurisdiction ({})",
                        rule.legal_basis.as_str(),
                        forbidden.cite.join(", ")
                    ),
                ));
            }
        }
        Ok(())
    }

    fn minors(&self) -> Result<(), PolicyError> {
        for (country, age) in &self.j.minors.by_country {
            if !(1..=21).contains(age) {
                return Err(self.error(
                    &["by_country:", country],
                    &format!("minors.by_country.{country}"),
                    format!("age {age} is not plausible"),
                ));
            }
        }
        Ok(())
    }

    fn display_masking(&self) -> Result<(), PolicyError> {
        for (category, transform) in &self.j.display_masking.categories {
            self.category("display_masking", "display_masking", category)?;
            if matches!(transform, Transform::Pseudonymise) {
                return Err(self.error(
                    &["display_masking:", &format!("{category}:")],
                    &format!("display_masking.{category}"),
                    "display masking cannot pseudonymise (pseudonyms are for exports)".into(),
                ));
            }
        }
        Ok(())
    }

    fn export(&self) -> Result<(), PolicyError> {
        let export = &self.j.export;
        if export.min_audience_size == 0 {
            return Err(self.error(
                &["export:", "min_audience_size"],
                "export",
                "min_audience_size must be at least 1".into(),
            ));
        }
        for (category, purposes) in &export.clear {
            self.category("export.clear", "export", category)?;
            for purpose in purposes {
                if !self.taxonomy.purposes.contains_key(purpose) {
                    return Err(self.error(
                        &["export:", &format!("{category}:")],
                        &format!("export.clear.{category}"),
                        format!("purpose {purpose} is not defined in taxonomy.yaml"),
                    ));
                }
            }
        }
        Ok(())
    }

    fn retention(&self) -> Result<(), PolicyError> {
        for (category, rule) in &self.j.retention {
            self.category("retention", "retention", category)?;
            if rule.days == 0 {
                return Err(self.error(
                    &["retention:", &format!("{category}:")],
                    &format!("retention.{category}"),
                    "retention must be at least one day".into(),
                ));
            }
            self.cites(&format!("retention.{category}"), &rule.cite)?;
        }
        Ok(())
    }
}

fn check_key(key: &str) -> Result<(), String> {
    let valid = !key.is_empty()
        && key.split('.').all(|part| {
            !part.is_empty()
                && part
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
        });
    if valid {
        Ok(())
    } else {
        Err(format!(
            "{key:?} is not a dotted key of lower-case letters, digits and _"
        ))
    }
}
