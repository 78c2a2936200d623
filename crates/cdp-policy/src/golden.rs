//! Golden cases: request + subject facts -> expected decision, obligations and citations.
//!
//! Files under `policies/tests/*.yaml` (format in docs/policies.md); run by `cargo test` and by
//! `cdp policy check`.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use serde::Deserialize;

use crate::decide::{Action, CallerFacts, DecisionRequest, Effect, RecipientFacts, SubjectFacts};
use crate::load::{PolicyError, PolicySet};

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GoldenFile {
    pub cases: Vec<GoldenCase>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GoldenCase {
    pub name: String,
    pub request: GoldenRequest,
    #[serde(default)]
    pub subject: SubjectFacts,
    pub expect: Expectation,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GoldenRequest {
    pub action: Action,
    pub purpose: String,
    /// The caller's role (checked against roles.yaml); absent: not checked.
    #[serde(default)]
    pub role: Option<String>,
    #[serde(default)]
    pub token_purposes: Vec<String>,
    #[serde(default)]
    pub recipient: Option<RecipientFacts>,
    #[serde(default)]
    pub fields: Vec<String>,
    /// Sensitive categories the selection reveals (inferences.yaml).
    #[serde(default)]
    pub inferred: Vec<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Expectation {
    pub decision: Effect,
    /// Exactly these jurisdictions applied, if given.
    #[serde(default)]
    pub jurisdictions: Option<Vec<String>>,
    /// These fields have exactly these obligations (`keep`, `drop`, `mask:phone`...).
    #[serde(default)]
    pub obligations: BTreeMap<String, String>,
    /// These articles are among the decision's citations.
    #[serde(default)]
    pub cite: Vec<String>,
    /// These rules spoke (`pipl.provision`...).
    #[serde(default)]
    pub rules: Vec<String>,
}

impl GoldenRequest {
    pub fn to_request(&self) -> DecisionRequest {
        DecisionRequest {
            action: self.action,
            purpose: self.purpose.clone(),
            caller: self.role.as_ref().map(|role| CallerFacts {
                roles: vec![role.clone()],
                purposes: self.token_purposes.clone(),
            }),
            recipient: self.recipient.clone(),
            fields: self.fields.clone(),
            inferred: self.inferred.clone(),
        }
    }
}

/// One case's result: `Err` says what differed.
pub fn check(policies: &PolicySet, case: &GoldenCase) -> Result<(), String> {
    let decision = policies.decide(&case.request.to_request(), &case.subject);
    let mut problems = Vec::new();
    if decision.decision != case.expect.decision {
        problems.push(format!(
            "decision {:?}, expected {:?}",
            decision.decision, case.expect.decision
        ));
    }
    if let Some(expected) = &case.expect.jurisdictions
        && *expected != decision.jurisdictions
    {
        problems.push(format!(
            "jurisdictions {:?}, expected {expected:?}",
            decision.jurisdictions
        ));
    }
    for (field, expected) in &case.expect.obligations {
        let actual = decision
            .obligations
            .get(field)
            .map_or_else(|| "(none)".to_string(), |t| t.label());
        if actual != *expected {
            problems.push(format!("{field}: {actual}, expected {expected}"));
        }
    }
    let cited = decision.citations();
    for cite in &case.expect.cite {
        if !cited.contains(cite.as_str()) {
            problems.push(format!("{cite} not cited (cited: {cited:?})"));
        }
    }
    let rules: BTreeSet<&str> = decision.reasons.iter().map(|r| r.rule.as_str()).collect();
    for rule in &case.expect.rules {
        if !rules.contains(rule.as_str()) {
            problems.push(format!("rule {rule} did not speak (rules: {rules:?})"));
        }
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(problems.join("; "))
    }
}

/// The golden files of a directory, by file name.
pub fn load_cases(dir: &Path) -> Result<Vec<(String, GoldenFile)>, PolicyError> {
    let io = |message: String| PolicyError::Io {
        path: dir.display().to_string(),
        message,
    };
    let mut files = Vec::new();
    let mut paths: Vec<_> = std::fs::read_dir(dir)
        .map_err(|e| io(e.to_string()))?
        .filter_map(Result::ok)
        .map(|entry| entry.path())
        .filter(|path| path.extension().is_some_and(|e| e == "yaml" || e == "yml"))
        .collect();
    paths.sort();
    for path in paths {
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let text = std::fs::read_to_string(&path).map_err(|e| io(e.to_string()))?;
        files.push((name.clone(), parse_file(&name, &text)?));
    }
    Ok(files)
}

fn parse_file(name: &str, text: &str) -> Result<GoldenFile, PolicyError> {
    serde_yaml_ng::from_str(text).map_err(|error| PolicyError::Invalid {
        file: format!("tests/{name}"),
        line: error.location().map(|l| l.line()),
        rule: "golden case".into(),
        message: error.to_string(),
    })
}

/// The golden cases shipped with the built-in policies (the repository's `policies/tests`).
const BUILTIN_CASES: &[(&str, &str)] = &[
    (
        "common.yaml",
        include_str!("../../../policies/tests/common.yaml"),
    ),
    (
        "gdpr.yaml",
        include_str!("../../../policies/tests/gdpr.yaml"),
    ),
    (
        "pipl.yaml",
        include_str!("../../../policies/tests/pipl.yaml"),
    ),
];

/// The golden cases that go with `policies`: the built-in ones, or the `tests/` directory
/// beside a policy directory (none when it has no such directory).
pub fn cases_for(policies: &PolicySet) -> Result<Vec<(String, GoldenFile)>, PolicyError> {
    if policies.origin == "builtin" {
        return BUILTIN_CASES
            .iter()
            .map(|(name, text)| Ok(((*name).to_string(), parse_file(name, text)?)))
            .collect();
    }
    let tests = Path::new(&policies.origin).join("tests");
    if tests.is_dir() {
        load_cases(&tests)
    } else {
        Ok(Vec::new())
    }
}

/// The result of running golden files: failures as `file: case: problem`.
#[derive(Debug, Default)]
pub struct GoldenReport {
    pub passed: usize,
    pub failures: Vec<String>,
    /// Citations the cases expect, over all cases.
    pub cited: BTreeSet<String>,
}

pub fn run(policies: &PolicySet, files: &[(String, GoldenFile)]) -> GoldenReport {
    let mut report = GoldenReport::default();
    for (name, file) in files {
        for case in &file.cases {
            report.cited.extend(case.expect.cite.iter().cloned());
            match check(policies, case) {
                Ok(()) => report.passed += 1,
                Err(problem) => report
                    .failures
                    .push(format!("{name}: {}: {problem}", case.name)),
            }
        }
    }
    report
}

#[cfg(test)]
mod builtin_tests {
    use super::*;

    #[test]
    fn the_builtin_policies_carry_their_golden_cases_and_pass_them() {
        let policies = PolicySet::builtin().unwrap();
        let files = cases_for(&policies).unwrap();
        assert_eq!(files.len(), BUILTIN_CASES.len());
        let report = run(&policies, &files);
        assert!(report.passed > 0);
        assert_eq!(report.failures, Vec::<String>::new());
    }
}
