#![allow(clippy::unwrap_used, clippy::expect_used)]
//! Loading refuses bad policy files and names file, line and rule.

use std::collections::BTreeMap;
use std::path::PathBuf;

use cdp_policy::{PolicyError, PolicySet};

fn files() -> BTreeMap<String, String> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../policies");
    [
        "taxonomy.yaml",
        "fields.yaml",
        "roles.yaml",
        "inferences.yaml",
        "pipl.yaml",
        "gdpr.yaml",
    ]
    .into_iter()
    .map(|name| {
        (
            name.to_string(),
            std::fs::read_to_string(dir.join(name)).unwrap(),
        )
    })
    .collect()
}

fn invalid(
    edit: impl FnOnce(&mut BTreeMap<String, String>),
) -> (String, Option<usize>, String, String) {
    let mut files = files();
    edit(&mut files);
    match PolicySet::from_files(files, "test") {
        Err(PolicyError::Invalid {
            file,
            line,
            rule,
            message,
        }) => (file, line, rule, message),
        other => panic!("expected an invalid policy, got {other:?}"),
    }
}

fn line_of(files: &BTreeMap<String, String>, file: &str, needle: &str) -> usize {
    files[file]
        .lines()
        .position(|line| line.contains(needle))
        .unwrap()
        + 1
}

#[test]
fn legitimate_interest_is_refused_in_pipl() {
    let (file, line, rule, message) = invalid(|files| {
        let text = files["pipl.yaml"].replace(
            "  analytics:\n    legal_basis: consent",
            "  analytics:\n    legal_basis: legitimate_interest",
        );
        files.insert("pipl.yaml".into(), text);
    });
    assert_eq!(file, "pipl.yaml");
    assert_eq!(rule, "pipl.purposes.analytics");
    assert!(
        message.contains("legitimate_interest") && message.contains("PIPL-13"),
        "{message}"
    );
    let mut edited = files();
    edited.insert(
        "pipl.yaml".into(),
        edited["pipl.yaml"].replace(
            "  analytics:\n    legal_basis: consent",
            "  analytics:\n    legal_basis: legitimate_interest",
        ),
    );
    assert_eq!(
        line,
        Some(line_of(
            &edited,
            "pipl.yaml",
            "legal_basis: legitimate_interest"
        ))
    );
}

#[test]
fn unknown_citation_category_purpose_and_key_are_named() {
    let (file, _, rule, message) = invalid(|files| {
        let text = files["gdpr.yaml"].replace("cite: [GDPR-18]", "cite: [GDPR-99]");
        files.insert("gdpr.yaml".into(), text);
    });
    assert_eq!(
        (file.as_str(), rule.as_str()),
        ("gdpr.yaml", "gdpr.restriction")
    );
    assert!(message.contains("GDPR-99"), "{message}");

    let (file, line, rule, message) = invalid(|files| {
        let text = files["fields.yaml"].replace(
            "traits.gender: user.demographic.gender",
            "traits.gender: user.demographic.genre",
        );
        files.insert("fields.yaml".into(), text);
    });
    assert_eq!(
        (file.as_str(), rule.as_str()),
        ("fields.yaml", "traits.gender")
    );
    assert!(message.contains("user.demographic.genre"), "{message}");
    assert!(line.is_some());

    let (file, _, rule, _) = invalid(|files| {
        let text = files["roles.yaml"].replace("purposes: [analytics]", "purposes: [analytix]");
        files.insert("roles.yaml".into(), text);
    });
    assert_eq!((file.as_str(), rule.as_str()), ("roles.yaml", "analyst"));

    // A misspelt key is a syntax error with its line, not an ignored rule.
    let (file, line, rule, message) = invalid(|files| {
        let text = files["pipl.yaml"].replace("restriction:\n", "restrictoin:\n");
        files.insert("pipl.yaml".into(), text);
    });
    assert_eq!((file.as_str(), rule.as_str()), ("pipl.yaml", "syntax"));
    assert!(message.contains("restrictoin"), "{message}");
    assert!(line.is_some());
}

#[test]
fn a_missing_file_is_named() {
    let (file, _, _, _) = invalid(|files| {
        files.remove("roles.yaml");
    });
    assert_eq!(file, "roles.yaml");
}

#[test]
fn errors_display_file_line_and_rule() {
    let mut edited = files();
    edited.insert(
        "gdpr.yaml".into(),
        edited["gdpr.yaml"].replace("cite: [GDPR-18]", "cite: [GDPR-99]"),
    );
    let error = PolicySet::from_files(edited, "test")
        .unwrap_err()
        .to_string();
    assert!(error.starts_with("gdpr.yaml:"), "{error}");
    assert!(error.contains("gdpr.restriction"), "{error}");
}

#[test]
fn roles_yaml_defines_exactly_the_roles_of_the_api() {
    // A role the routes know but the file leaves out.
    let (file, _, rule, message) = invalid(|files| {
        let text = files["roles.yaml"].replace("  auditor:\n", "  auditor_gone:\n");
        files.insert("roles.yaml".into(), text);
    });
    assert_eq!(file, "roles.yaml");
    assert!(message.contains("auditor_gone"), "{rule}: {message}");
    // Without the unknown one: the missing role is named.
    let (file, _, rule, message) = invalid(|files| {
        let start = files["roles.yaml"].find("  auditor:\n").unwrap();
        let text = files["roles.yaml"][..start].to_string();
        files.insert("roles.yaml".into(), text);
    });
    assert_eq!(file, "roles.yaml");
    assert_eq!(rule, "auditor");
    assert!(message.contains("role auditor is not defined"), "{message}");
}

#[test]
fn inference_terms_name_known_categories_once() {
    let (file, _, rule, message) = invalid(|files| {
        let text = files["inferences.yaml"].replace("  user.minor:", "  user.astrology:");
        files.insert("inferences.yaml".into(), text);
    });
    assert_eq!(
        (file.as_str(), rule.as_str()),
        ("inferences.yaml", "user.astrology")
    );
    assert!(message.contains("not a data category"), "{message}");
    let (_, _, _, message) = invalid(|files| {
        let text = files["inferences.yaml"].replace("[pharmacy,", "[pharmacy, shoes,");
        files.insert("inferences.yaml".into(), text);
    });
    assert!(message.contains("term shoes is listed under"), "{message}");
    let (_, _, _, message) = invalid(|files| {
        let text = files["inferences.yaml"].replace("[pharmacy,", "[Pharmacy,");
        files.insert("inferences.yaml".into(), text);
    });
    assert!(message.contains("lower case"), "{message}");
}

#[test]
fn an_exports_minimum_audience_is_the_strictest_of_the_jurisdictions_decided() {
    use cdp_policy::{Action, DecisionRequest, SubjectFacts};
    let mut files = files();
    let pipl = files["pipl.yaml"].replace("  min_audience_size: 20", "  min_audience_size: 50");
    assert_ne!(pipl, files["pipl.yaml"], "the fixture's edit must apply");
    files.insert("pipl.yaml".into(), pipl);
    let policies = PolicySet::from_files(files, "test").unwrap();
    let request = |purpose: &str| DecisionRequest {
        action: Action::Export,
        purpose: purpose.into(),
        caller: None,
        recipient: None,
        fields: Vec::new(),
        inferred: Vec::new(),
    };
    let person = |residency: Option<&str>| SubjectFacts {
        residency: residency.map(str::to_string),
        ..SubjectFacts::default()
    };
    // Found from the decision's jurisdictions, it equals what finding them again gives.
    for (residency, expected) in [(Some("CN"), 50), (Some("DE"), 20), (None, 50)] {
        let facts = person(residency);
        let decision = policies.decide(&request("marketing"), &facts);
        let again = (policies.jurisdictions_for(&facts).0.iter())
            .map(|j| j.export.min_audience_size)
            .max();
        assert_eq!(policies.min_audience_of(&decision), Some(expected));
        assert_eq!(again, Some(expected), "{residency:?}");
    }
    // A decision that ended before any jurisdiction applied names none.
    let decision = policies.decide(&request("no-such-purpose"), &person(Some("CN")));
    assert!(decision.jurisdictions.is_empty());
    assert_eq!(policies.min_audience_of(&decision), None);
}

#[test]
fn a_persons_jurisdictions_are_every_file_naming_a_place_of_theirs_in_file_order() {
    let policies = PolicySet::from_files(files(), "test").unwrap();
    let names = |residency: Option<&str>, regions: &[&str]| {
        let facts = cdp_policy::SubjectFacts {
            residency: residency.map(str::to_string),
            regions: regions.iter().map(|r| r.to_string()).collect(),
            ..cdp_policy::SubjectFacts::default()
        };
        let (found, all) = policies.jurisdictions_for(&facts);
        // What testing every region of every file gives.
        let naive: Vec<&str> = (policies.jurisdictions.iter())
            .filter(|j| {
                (j.regions.iter()).any(|r| residency == Some(r.as_str()) || regions.contains(&&**r))
            })
            .map(|j| j.jurisdiction.as_str())
            .collect();
        let found: Vec<String> = found.iter().map(|j| j.jurisdiction.clone()).collect();
        if naive.is_empty() {
            assert!(all, "{residency:?} {regions:?}");
        } else {
            assert!(!all);
            assert_eq!(found, naive, "{residency:?} {regions:?}");
        }
        found
    };
    let order: Vec<String> = (policies.jurisdictions.iter())
        .map(|j| j.jurisdiction.clone())
        .collect();
    assert_eq!(names(Some("CN"), &[]), ["pipl"]);
    assert_eq!(names(Some("DE"), &["DE", "EU"]), ["gdpr"]);
    assert_eq!(names(Some("CN"), &["EU"]), order);
    assert_eq!(names(Some("FR"), &["CN"]), order);
    // No file names the place: every jurisdiction applies, the most restrictive wins.
    assert_eq!(names(Some("US"), &[]), order);
    assert_eq!(names(None, &[]), order);
}
