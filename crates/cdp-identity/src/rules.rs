//! Merge rules per identifier type.

use std::collections::BTreeMap;

use cdp_core::IdentifierType;
use serde::Deserialize;

/// Limit and priority of one identifier type.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TypeRule {
    /// At most this many distinct identifiers of the type in one profile. A merge that would
    /// exceed it does not happen: the incoming event's lower-priority identifier is dropped.
    pub limit: usize,
    /// Lower is stronger. An event's strongest identifier is its anchor; weaker ones attach to
    /// the anchor's profile or are dropped.
    pub priority: u32,
    /// When set, the limit counts only identifiers linked within this many days before the
    /// event ("at most 3 device ids per 30 days"); older ones no longer count.
    #[serde(default)]
    pub window_days: Option<u32>,
}

impl TypeRule {
    pub const fn new(limit: usize, priority: u32) -> Self {
        Self {
            limit,
            priority,
            window_days: None,
        }
    }
}

/// A blocked value: exact (after normalisation) or a regular expression over the whole value.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BlockRule {
    #[serde(default)]
    pub exact: Option<String>,
    #[serde(default)]
    pub pattern: Option<String>,
}

/// Why a rules file is unusable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RulesError {
    #[error("identity rules: {0}")]
    Invalid(String),
}

/// Distinct identifiers an identifier may be kept from linking before it is quarantined.
pub const DEFAULT_JUNK_THRESHOLD: usize = 8;

/// The merge rules: one [`TypeRule`] per identifier type, a default for other types, and
/// blocked values per type (`"*"` applies to every type).
#[derive(Debug, Clone)]
pub struct IdentityRules {
    /// An identifier that conflicted with more than this many distinct identifiers (merge
    /// protection kept it from linking them) is quarantined as junk.
    junk_threshold: usize,
    types: BTreeMap<String, TypeRule>,
    default_rule: TypeRule,
    blocked_exact: BTreeMap<String, Vec<String>>,
    blocked_patterns: BTreeMap<String, Vec<regex::Regex>>,
}

/// The TOML form (`[identity]` in the config file): see docs/identity.md.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IdentityRulesFile {
    #[serde(default)]
    pub types: BTreeMap<String, TypeRule>,
    #[serde(default)]
    pub default: Option<TypeRule>,
    /// Automatic junk detection: an identifier that merge protection kept from linking more
    /// than this many distinct other identifiers is quarantined (default 8, at least 2).
    #[serde(default)]
    pub junk_threshold: Option<usize>,
    /// Replaces the default blocked values when present.
    #[serde(default)]
    pub blocked: Option<BTreeMap<String, Vec<BlockRule>>>,
}

const DEFAULT_TYPES: &[(&str, usize, u32)] = &[
    ("user_id", 1, 1),
    ("wechat_unionid", 1, 2),
    ("crm_id", 1, 3),
    ("member_id", 1, 4),
    ("alipay_user_id", 1, 5),
    ("email", 5, 10),
    ("phone", 5, 11),
    ("wechat_openid", 10, 20),
    ("device_id", 10, 30),
    ("advertising_id", 10, 31),
    ("anonymous_id", 100, 100),
];

/// Junk seen in real traffic (identity.md): a build that sends one of these for everybody would
/// otherwise merge everybody.
const DEFAULT_BLOCKED_EXACT: &[&str] = &[
    "",
    "null",
    "nil",
    "none",
    "undefined",
    "anonymous",
    "unknown",
    "n/a",
    "na",
    "-1",
    "0",
    "test",
    "test@test.com",
    "test@example.com",
    "noemail@noemail.com",
    "none@none.com",
    // What languages print for missing or unserialised values, and literal field names: each
    // of these merged about twenty people into one in a hostile test (issue 17 item 8).
    "nan",
    "(null)",
    "<null>",
    "[null]",
    "[object object]",
    "[object]",
    "object",
    "false",
    "true",
    "user_id",
    "userid",
    "anonymous_id",
    "anonymousid",
    "email",
    "phone",
];
const DEFAULT_BLOCKED_PATTERNS: &[&str] = &[
    // All zeros and dashes: unset device / advertising ids (00000000-0000-...).
    r"^[0\-]*$",
    // Template placeholders a tag manager or e-mail tool failed to fill: {{userId}},
    // ${user_id}, %USER_ID%, [[email]].
    r"^\{\{.*\}\}$",
    r"^\$\{.*\}$",
    r"^%[A-Za-z_][A-Za-z0-9_.]*%$",
    r"^\[\[.*\]\]$",
];

impl Default for IdentityRules {
    fn default() -> Self {
        let mut blocked = BTreeMap::new();
        blocked.insert(
            "*".to_string(),
            DEFAULT_BLOCKED_EXACT
                .iter()
                .map(|value| BlockRule {
                    exact: Some((*value).to_string()),
                    pattern: None,
                })
                .chain(DEFAULT_BLOCKED_PATTERNS.iter().map(|pattern| BlockRule {
                    exact: None,
                    pattern: Some((*pattern).to_string()),
                }))
                .collect(),
        );
        Self::from_file(IdentityRulesFile {
            blocked: Some(blocked),
            ..IdentityRulesFile::default()
        })
        .unwrap_or_else(|_| Self {
            junk_threshold: DEFAULT_JUNK_THRESHOLD,
            types: BTreeMap::new(),
            default_rule: TypeRule::new(20, 200),
            blocked_exact: BTreeMap::new(),
            blocked_patterns: BTreeMap::new(),
        })
    }
}

impl IdentityRules {
    /// Builds rules from the file form over the defaults; validates limits and patterns.
    pub fn from_file(file: IdentityRulesFile) -> Result<Self, RulesError> {
        let mut types: BTreeMap<String, TypeRule> = DEFAULT_TYPES
            .iter()
            .map(|(name, limit, priority)| ((*name).to_string(), TypeRule::new(*limit, *priority)))
            .collect();
        for (name, rule) in file.types {
            name.parse::<IdentifierType>()
                .map_err(|_| RulesError::Invalid(format!("`{name}` is not an identifier type")))?;
            if rule.limit == 0 {
                return Err(RulesError::Invalid(format!(
                    "types.{name}.limit must be at least 1"
                )));
            }
            types.insert(name, rule);
        }
        let default_rule = file.default.unwrap_or(TypeRule::new(20, 200));
        let junk_threshold = file.junk_threshold.unwrap_or(DEFAULT_JUNK_THRESHOLD);
        if junk_threshold < 2 {
            return Err(RulesError::Invalid(
                "junk_threshold must be at least 2 (a family may share an e-mail)".into(),
            ));
        }
        let mut blocked_exact: BTreeMap<String, Vec<String>> = BTreeMap::new();
        let mut blocked_patterns: BTreeMap<String, Vec<regex::Regex>> = BTreeMap::new();
        let blocked = match file.blocked {
            Some(blocked) => blocked,
            None => {
                let mut rules = Self::default().with_types(types, default_rule);
                rules.junk_threshold = junk_threshold;
                return Ok(rules);
            }
        };
        for (name, rules) in blocked {
            if name != "*" {
                name.parse::<IdentifierType>().map_err(|_| {
                    RulesError::Invalid(format!("blocked.{name}: not an identifier type"))
                })?;
            }
            for rule in rules {
                match (rule.exact, rule.pattern) {
                    // Lowercased once here: values are compared case-insensitively.
                    (Some(exact), None) => blocked_exact
                        .entry(name.clone())
                        .or_default()
                        .push(exact.to_lowercase()),
                    (None, Some(pattern)) => {
                        let anchored = format!("^(?:{pattern})$");
                        let regex = regex::Regex::new(&anchored).map_err(|e| {
                            RulesError::Invalid(format!("blocked.{name}: pattern {pattern:?}: {e}"))
                        })?;
                        blocked_patterns
                            .entry(name.clone())
                            .or_default()
                            .push(regex);
                    }
                    _ => {
                        return Err(RulesError::Invalid(format!(
                            "blocked.{name}: each rule needs exactly one of `exact` or `pattern`"
                        )));
                    }
                }
            }
        }
        Ok(Self {
            junk_threshold,
            types,
            default_rule,
            blocked_exact,
            blocked_patterns,
        })
    }

    /// See [`IdentityRulesFile::junk_threshold`].
    pub fn junk_threshold(&self) -> usize {
        self.junk_threshold
    }

    fn with_types(mut self, types: BTreeMap<String, TypeRule>, default_rule: TypeRule) -> Self {
        self.types = types;
        self.default_rule = default_rule;
        self
    }

    pub fn rule(&self, kind: &IdentifierType) -> TypeRule {
        self.types
            .get(kind.as_str())
            .copied()
            .unwrap_or(self.default_rule)
    }

    /// Whether a normalised value is blocked for its type.
    pub fn is_blocked(&self, kind: &IdentifierType, normalised: &str) -> bool {
        let lowered = normalised.to_lowercase();
        for key in ["*", kind.as_str()] {
            if self
                .blocked_exact
                .get(key)
                .is_some_and(|values| values.contains(&lowered))
            {
                return true;
            }
            if self
                .blocked_patterns
                .get(key)
                .is_some_and(|patterns| patterns.iter().any(|p| p.is_match(normalised)))
            {
                return true;
            }
        }
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_block_junk_and_rank_user_id_first() {
        let rules = IdentityRules::default();
        for junk in [
            "null",
            "Undefined",
            "00000000-0000-0000-0000-000000000000",
            "0",
            "-1",
            "test@test.com",
        ] {
            assert!(rules.is_blocked(&IdentifierType::DeviceId, junk), "{junk}");
        }
        assert!(!rules.is_blocked(&IdentifierType::UserId, "u-12345"));
        assert_eq!(rules.rule(&IdentifierType::UserId).limit, 1);
        assert_eq!(rules.rule(&IdentifierType::Email).limit, 5);
        assert_eq!(rules.rule(&IdentifierType::AnonymousId).limit, 100);
        assert!(
            rules.rule(&IdentifierType::UserId).priority
                < rules.rule(&IdentifierType::Email).priority
        );
    }

    #[test]
    fn file_overrides_and_validation() {
        let file: IdentityRulesFile = toml::from_str(
            "[types.email]\nlimit = 2\npriority = 3\n[blocked]\nphone = [{ exact = \"+8613800000000\" }]\n",
        )
        .unwrap();
        let rules = IdentityRules::from_file(file).unwrap();
        assert_eq!(rules.rule(&IdentifierType::Email).limit, 2);
        assert!(rules.is_blocked(&IdentifierType::Phone, "+8613800000000"));
        assert!(!rules.is_blocked(&IdentifierType::Email, "+8613800000000"));
        let bad: IdentityRulesFile =
            toml::from_str("[blocked]\nemail = [{ pattern = \"(\" }]\n").unwrap();
        assert!(IdentityRules::from_file(bad).is_err());
        let bad: IdentityRulesFile =
            toml::from_str("[types.email]\nlimit = 0\npriority = 1\n").unwrap();
        assert!(IdentityRules::from_file(bad).is_err());
    }
}
