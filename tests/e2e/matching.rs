//! Fuzzy matching run by the platform over its own store (issue 20): FEBRL4's two files
//! imported through `cdp import` as a CRM (crm_id) and a loyalty system (member_id), matched
//! over HTTP, scored against the truth in the record ids; the review queue, the explanation,
//! a split that the next run respects, and the switch that keeps it off by default.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::support::{Server, cdp, run, temp_dir, text};

/// The FEBRL columns as compared fields and blocking passes (as `cdp bench identity` has
/// them), in `[matching]` of the configuration, matching on for every jurisdiction.
const FEBRL_MATCHING: &str = r#"
[matching]
jurisdictions = ["*"]
fields = [
  { name = "given_name", kind = "text" }, { name = "surname", kind = "text" },
  { name = "street_number", kind = "text" }, { name = "address_1", kind = "text" },
  { name = "address_2", kind = "text" }, { name = "suburb", kind = "text" },
  { name = "postcode", kind = "text" }, { name = "state", kind = "exact" },
  { name = "date_of_birth", kind = "date" }, { name = "soc_sec_id", kind = "text" },
]
passes = [
  { name = "surname+year", parts = [{ use = "soundex", field = "surname" }, { use = "year", field = "date_of_birth" }] },
  { name = "given+postcode", parts = [{ use = "soundex", field = "given_name" }, { use = "whole", field = "postcode" }] },
  { name = "given+surname", parts = [{ use = "soundex", field = "given_name" }, { use = "soundex", field = "surname" }] },
  { name = "birth date", parts = [{ use = "whole", field = "date_of_birth" }] },
  { name = "social security number", parts = [{ use = "whole", field = "soc_sec_id" }] },
  { name = "postcode+number", parts = [{ use = "whole", field = "postcode" }, { use = "whole", field = "street_number" }] },
  { name = "suburb+year", parts = [{ use = "whole", field = "suburb" }, { use = "year", field = "date_of_birth" }] },
]
"#;

fn import(server: &Server, admin: &str, source: &str, file: &Path, id_type: &str) {
    let output = run(cdp()
        .args(["import", "--source", source, "--map"])
        .arg(format!("id=externalId.{id_type}"))
        .arg(file)
        .args(["--server", &server.base_url(), "--token", admin]));
    assert!(output.status.success(), "{}", text(&output.stderr));
}

/// Starts a run and waits for it to end; its report.
fn run_matching(server: &Server, admin: &str) -> serde_json::Value {
    let started = server.post_with("/v1/identity/matching/run", admin, &json!({}));
    assert_eq!(started.status, 202, "{}", started.text());
    let deadline = Instant::now() + Duration::from_secs(600);
    loop {
        let overview = server.get_with("/v1/identity/matching", admin).json();
        if overview["running"] == false && overview.get("last_run").is_some() {
            assert!(overview.get("last_error").is_none(), "{overview}");
            return overview;
        }
        assert!(
            Instant::now() < deadline,
            "matching did not finish: {overview}"
        );
        std::thread::sleep(Duration::from_millis(500));
    }
}

fn identity(server: &Server, admin: &str, profile: &str) -> serde_json::Value {
    let response = server.get_with(
        &format!("/v1/profiles/{profile}/identity?purpose=essential.service"),
        admin,
    );
    assert_eq!(response.status, 200, "{}", response.text());
    response.json()
}

/// The records a profile holds, by the anonymous id `cdp import` gives each row
/// (`import:<id>`, shown unmasked, unlike the CRM and member ids), as their FEBRL entities
/// (`rec-<entity>-org`, `rec-<entity>-dup-<n>`).
fn records_of(identity: &serde_json::Value) -> Vec<String> {
    identity["identifiers"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|i| i["value"].as_str()?.strip_prefix("import:rec-"))
        .filter_map(|v| v.split('-').next().map(str::to_string))
        .collect()
}

#[test]
fn febrl4_imported_through_cdp_import_is_linked_by_the_platform() {
    let febrl = crate::fuzzy::febrl_dir();
    let dir = temp_dir();
    let data = dir.path().join("data");

    // Off by default: a DPO has to name where it may run.
    let server = Server::start(&data, &[], &[]).unwrap();
    let admin = server.token(&data, &["admin"]);
    server.create_source(&admin, "crm", "crm");
    let shop = server.create_source(&admin, "loyalty", "pos");
    // A child seen twice at the till, identical but for the visit: minors do not take part.
    let child = json!({"given_name": "lily", "surname": "tan", "date_of_birth": "20160302",
        "birthday": "2016-03-02", "postcode": "2000", "suburb": "sydney"});
    let batch: Vec<_> = ["till-visit-1", "till-visit-2"]
        .iter()
        .map(|visit| json!({"type": "identify", "anonymousId": visit, "traits": child}))
        .collect();
    let sent = server.ingest("/v1/batch", &shop, &json!({ "batch": batch }));
    assert_eq!(sent.status, 200, "{}", sent.text());
    import(
        &server,
        &admin,
        "crm",
        &febrl.join("febrl4_a.jsonl"),
        "crm_id",
    );
    import(
        &server,
        &admin,
        "loyalty",
        &febrl.join("febrl4_b.jsonl"),
        "member_id",
    );
    let off = server.post_with("/v1/identity/matching/run", &admin, &json!({}));
    assert_eq!(off.status, 409, "{}", off.text());
    assert!(
        off.text().contains("[matching] jurisdictions"),
        "{}",
        off.text()
    );
    let overview = server.get_with("/v1/identity/matching", &admin).json();
    assert_eq!(overview["enabled"], false, "{overview}");
    // Nothing deterministic joins the two files: 10,000 people.
    let a0 = server.profile_of(&admin, "crm_id", "rec-1070-org").unwrap();
    let b0 = server
        .profile_of(&admin, "member_id", "rec-1070-dup-0")
        .unwrap();
    assert_ne!(a0, b0);
    drop(server);

    // A jurisdiction that the policies do not have is refused at start, by name.
    let bad = dir.path().join("bad.toml");
    std::fs::write(&bad, "[matching]\njurisdictions = [\"atlantis\"]\n").unwrap();
    let refused = run(cdp()
        .args(["serve", "--data-dir"])
        .arg(&data)
        .arg("--config")
        .arg(&bad));
    assert!(!refused.status.success());
    assert!(
        text(&refused.stderr).contains("atlantis"),
        "{}",
        text(&refused.stderr)
    );

    let config = dir.path().join("cdp.toml");
    std::fs::write(&config, FEBRL_MATCHING).unwrap();
    let server = Server::start(&data, &["--config", config.to_str().unwrap()], &[]).unwrap();
    let overview = run_matching(&server, &admin);
    let report = &overview["last_run"]["report"];
    assert_eq!(report["profiles"], 10_002, "{report}");
    assert_eq!(
        report["eligible"], 10_000,
        "the child is left out: {report}"
    );
    assert_eq!(report["encoded"], 10_000, "{report}");
    assert!(report["linked"].as_u64().unwrap() >= 4_950, "{report}");
    assert!(
        report["training"]["converged"].as_bool().unwrap(),
        "{report}"
    );

    // Scored on the first 1,000 entities of file A: each record's profile, and every
    // identifier that profile holds.
    let originals: Vec<String> = std::fs::read_to_string(febrl.join("febrl4_a.jsonl"))
        .unwrap()
        .lines()
        .map(|l| {
            serde_json::from_str::<serde_json::Value>(l).unwrap()["id"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .take(1_000)
        .collect();
    let (mut found, mut wrong, mut predicted) = (0u64, 0u64, 0u64);
    let mut linked_profile = None;
    for id in &originals {
        let entity = id.split('-').nth(1).unwrap();
        let profile = server.profile_of(&admin, "crm_id", id).unwrap();
        let holds = identity(&server, &admin, &profile);
        let held = records_of(&holds);
        let entities: BTreeSet<&String> = held.iter().collect();
        let records = held.len() as u64;
        predicted += records - 1;
        if entities.len() > 1 {
            wrong += records - 1;
        } else if entities.contains(&entity.to_string()) && records == 2 {
            found += 1;
            linked_profile.get_or_insert(profile);
        }
    }
    let precision = (predicted - wrong) as f64 / predicted.max(1) as f64;
    let recall = found as f64 / originals.len() as f64;
    let f1 = 2.0 * precision * recall / (precision + recall);
    assert!(f1 >= 0.996, "precision {precision} recall {recall} f1 {f1}");

    // The explanation shows the link with its score and each field's part.
    let profile = linked_profile.unwrap();
    let holds = identity(&server, &admin, &profile);
    let edge = holds["edges"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e.get("fuzzy").is_some())
        .unwrap_or_else(|| panic!("no fuzzy edge: {holds}"))
        .clone();
    assert!(
        edge["fuzzy"]["probability"].as_f64().unwrap() >= 0.99,
        "{edge}"
    );
    assert_eq!(edge["fuzzy"]["decided_by"], "fuzzy-matching", "{edge}");
    let fields: BTreeMap<&str, &str> = edge["fuzzy"]["fields"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| (f["field"].as_str().unwrap(), f["level"].as_str().unwrap()))
        .collect();
    assert_eq!(fields.len(), 10, "{edge}");
    assert_eq!(edge["first"]["source_id"], "fuzzy-matching", "{edge}");
    assert!(
        holds["merge_log"]
            .as_array()
            .unwrap()
            .iter()
            .any(|m| m["rule"].as_str().unwrap().contains("fuzzy matching")),
        "{holds}"
    );

    // Split like any link; the next run does not make it again.
    let split = server.post_with(
        &format!("/v1/profiles/{profile}/split"),
        &admin,
        &json!({"edge": edge["id"]}),
    );
    assert_eq!(split.status, 200, "{}", split.text());
    assert_eq!(
        split.json()["profiles"].as_array().unwrap().len(),
        2,
        "{}",
        split.text()
    );
    let overview = run_matching(&server, &admin);
    let report = &overview["last_run"]["report"];
    // Only people whose values changed (the merged ones) are encoded again; the model of
    // the first run scores (a population whose duplicates are linked would teach EM
    // nothing but namesakes).
    assert!(report["encoded"].as_u64().unwrap() < 5_000, "{report}");
    assert!(report.get("training").is_none(), "{report}");
    assert_eq!(report["linked"], 0, "{report}");
    assert!(report["refused"].as_u64().unwrap() >= 1, "{report}");
    let after = identity(&server, &admin, &profile);
    assert_eq!(records_of(&after).len(), 1, "{after}");

    // The review queue: pairs, probabilities and comparison levels, never a value.
    let listed = server.get_with("/v1/identity/suggestions", &admin);
    assert_eq!(listed.status, 200, "{}", listed.text());
    let suggestions = listed.json()["suggestions"].as_array().unwrap().clone();
    assert!(suggestions.len() >= 2, "{suggestions:?}");
    for suggestion in &suggestions {
        let p = suggestion["probability"].as_f64().unwrap();
        assert!((0.5..0.99).contains(&p), "{suggestion}");
        assert!(!suggestion.to_string().contains("rec-"), "{suggestion}");
    }
    let accept = &suggestions[0];
    let decided = server.post_with(
        &format!(
            "/v1/identity/suggestions/{}",
            accept["id"].as_str().unwrap()
        ),
        &admin,
        &json!({"decision": "accept"}),
    );
    match decided.status {
        200 => {
            assert_eq!(decided.json()["status"], "accepted", "{}", decided.text());
            let [a, b] = [&accept["profiles"][0], &accept["profiles"][1]];
            let joined = identity(&server, &admin, a.as_str().unwrap());
            let edge = joined["edges"]
                .as_array()
                .unwrap()
                .iter()
                .find(|e| e.get("fuzzy").is_some())
                .unwrap_or_else(|| panic!("{joined}"));
            assert_ne!(edge["fuzzy"]["decided_by"], "fuzzy-matching", "{edge}");
            assert_eq!(
                identity(&server, &admin, b.as_str().unwrap())["id"],
                joined["id"]
            );
        }
        // Merge protection may refuse (both sides hold a CRM id): the suggestion stays.
        409 => assert!(
            decided.text().contains("merge protection"),
            "{}",
            decided.text()
        ),
        other => panic!("{other}: {}", decided.text()),
    }
    let reject = &suggestions[1];
    let id = reject["id"].as_str().unwrap();
    let rejected = server.post_with(
        &format!("/v1/identity/suggestions/{id}"),
        &admin,
        &json!({"decision": "reject"}),
    );
    assert_eq!(rejected.status, 200, "{}", rejected.text());
    let again = server.post_with(
        &format!("/v1/identity/suggestions/{id}"),
        &admin,
        &json!({"decision": "accept"}),
    );
    assert_eq!(again.status, 409, "{}", again.text());
    let pending = server.get_with("/v1/identity/suggestions", &admin).json();
    assert!(
        pending["suggestions"]
            .as_array()
            .unwrap()
            .iter()
            .all(|s| s["id"] != id),
        "{pending}"
    );
    let listed = server
        .get_with("/v1/identity/suggestions?status=rejected", &admin)
        .json();
    assert!(
        listed["suggestions"]
            .as_array()
            .unwrap()
            .iter()
            .any(|s| s["id"] == id),
        "{listed}"
    );
    let bad = server.get_with("/v1/identity/suggestions?status=maybe", &admin);
    assert_eq!(bad.status, 400, "{}", bad.text());
    let bad = server.post_with(
        "/v1/identity/suggestions/nothex",
        &admin,
        &json!({"decision": "accept"}),
    );
    assert_eq!(bad.status, 400, "{}", bad.text());

    // Decisions and runs are in the audit log, under the purpose of identity resolution.
    let audit = server
        .get_with("/v1/audit?latest=true&limit=200", &admin)
        .json();
    for action in [
        "identity.matching",
        "identity.suggestions",
        "identity.suggestion_rejected",
        "identity.split",
    ] {
        let entries: Vec<&Value> = audit["entries"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|e| e["action"] == action)
            .collect();
        assert!(!entries.is_empty(), "{action} not audited");
        for entry in entries {
            assert_eq!(entry["purpose"], "essential.identity", "{entry}");
        }
    }
}
