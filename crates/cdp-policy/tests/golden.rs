#![allow(clippy::unwrap_used, clippy::expect_used)]
//! Runs `policies/tests/*.yaml` against `policies/`, and checks that the cases cover every
//! article the decision rules cite.

use std::collections::BTreeSet;
use std::path::PathBuf;

use cdp_policy::PolicySet;
use cdp_policy::golden::{load_cases, run};

fn policies_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../policies")
}

#[test]
fn golden_cases_hold_and_cover_every_enforced_article() {
    let policies = PolicySet::load_dir(&policies_dir()).unwrap();
    let files = load_cases(&policies_dir().join("tests")).unwrap();
    let report = run(&policies, &files);
    assert!(
        report.failures.is_empty(),
        "{} golden case(s) failed:\n{}",
        report.failures.len(),
        report.failures.join("\n")
    );
    assert!(report.passed >= 40, "only {} golden cases", report.passed);

    // Articles cited by the rules `decide` applies (retention and request deadlines are
    // enforced by the sweeper and the request clock, not by decisions).
    let mut enforced = BTreeSet::new();
    for j in &policies.jurisdictions {
        let mut add = |cites: &[String]| enforced.extend(cites.iter().cloned());
        add(&j.default.cite);
        for rule in j.purposes.values() {
            add(&rule.cite);
        }
        add(&j.consent.cite);
        add(&j.consent.withdrawal_cite);
        add(&j.consent.stale_notice_cite);
        add(&j.objection.personalization_cite);
        add(&j.objection.marketing_cite);
        add(&j.restriction.cite);
        add(&j.minors.cite);
        if let Some(ban) = &j.minors.advertising_profiling_ban {
            add(&ban.cite);
        }
        add(&j.sensitive.cite);
        add(&j.publish.cite);
        if let Some(provision) = &j.provision {
            add(&provision.cite);
        }
        add(&j.cross_border.cite);
        add(&j.unclassified_fields.cite);
        add(&j.display_masking.cite);
    }
    let uncovered: Vec<_> = enforced.difference(&report.cited).collect();
    assert!(
        uncovered.is_empty(),
        "no golden case expects these articles: {uncovered:?}"
    );
}

#[test]
fn the_builtin_policies_are_the_repository_files() {
    let builtin = PolicySet::builtin().unwrap();
    let dir = PolicySet::load_dir(&policies_dir()).unwrap();
    assert_eq!(builtin.version, dir.version);
    assert!(builtin.version.starts_with("sha256:"));
}

#[test]
fn a_golden_case_that_expects_the_wrong_thing_fails() {
    // The runner must be able to fail: flip one case's expectation.
    let policies = PolicySet::builtin().unwrap();
    let mut files = load_cases(&policies_dir().join("tests")).unwrap();
    let case = &mut files[0].1.cases[0];
    case.expect.decision = match case.expect.decision {
        cdp_policy::Effect::Allow => cdp_policy::Effect::Deny,
        cdp_policy::Effect::Deny => cdp_policy::Effect::Allow,
    };
    let report = run(&policies, &files);
    assert_eq!(report.failures.len(), 1, "{:?}", report.failures);
}
