//! `cdp export create` and `cdp export verify` on the real binary; export files sealed at rest.

use std::time::{Duration, Instant};

use serde_json::json;

use crate::support::{Server, assert_no_clear_values, cdp, run, temp_dir, text};

#[test]
fn export_create_downloads_a_signed_file_that_verify_accepts_and_tampering_breaks() {
    let dir = temp_dir();
    let server = Server::start(dir.path(), &[], &[]).unwrap();
    let admin = server.token(dir.path(), &["admin"]);
    let service = server.token(dir.path(), &["customer_service"]);
    let marketer = server.token(dir.path(), &["marketer"]);
    let key = server.create_source(&admin, "app", "ios");
    let mut batch = Vec::new();
    for i in 0..24 {
        batch.push(json!({"type": "identify", "userId": format!("e-{i}"),
            "traits": {"phone": format!("1370000{i:04}"), "address": {"country": "CN", "city": "深圳"}}}));
    }
    let response = server.ingest("/v1/batch", &key, &json!({ "batch": batch }));
    assert_eq!(response.status, 200, "{}", response.text());
    for i in 0..22 {
        let response = server.post_with("/v1/consents", &service, &json!({
            "subject": {"type": "user_id", "value": format!("e-{i}")}, "purpose": "marketing.sms",
            "status": "granted", "notice_version": "2026-01", "source": "app", "evidence": {"screen": "sms"}}));
        assert_eq!(response.status, 200, "{}", response.text());
    }
    let recipient = server
        .post_with("/v1/recipients", &admin, &json!({"name": "SMS gateway", "contact": "dpo@sms.example.cn",
            "role": "processor", "region": "CN", "transfer_mechanism": "none", "allowed_purposes": ["marketing.sms"]}))
        .json();
    // The index follows within a second.
    let started = Instant::now();
    loop {
        let count = server
            .post_with(
                "/v1/audiences/count",
                &marketer,
                &json!({"query": "city:深圳", "purpose": "marketing.sms"}),
            )
            .json();
        if count["count"] == 22 {
            break;
        }
        assert!(started.elapsed() < Duration::from_secs(5), "{count}");
        std::thread::sleep(Duration::from_millis(50));
    }
    let audience = server
        .post_with(
            "/v1/audiences",
            &marketer,
            &json!({"name": "深圳", "purpose": "marketing.sms", "query": "city:深圳"}),
        )
        .json();
    // Downloads go outside the data directory, which is scanned for clear values below.
    let work = temp_dir();
    let out = work.path().join("sms.csv");
    let output = run(cdp()
        .args([
            "export",
            "create",
            "--server",
            &server.base_url(),
            "--token",
            &marketer,
        ])
        .args([
            "--audience",
            audience["id"].as_str().unwrap(),
            "--purpose",
            "marketing.sms",
        ])
        .args(["--recipient", recipient["id"].as_str().unwrap()])
        .args([
            "--field",
            "pseudonym",
            "--field",
            "identifiers.phone",
            "--field",
            "phone_sha256_google",
        ])
        .arg("--out")
        .arg(&out));
    assert!(output.status.success(), "{}", text(&output.stderr));
    assert!(
        text(&output.stdout).contains("22 included"),
        "{}",
        text(&output.stdout)
    );
    let manifest = work.path().join("sms.csv.manifest.json");
    let csv = std::fs::read_to_string(&out).unwrap();
    assert!(csv.contains("+8613700000001"), "{csv}");
    // Personal data on the operator's disk: owner only (issue 17 item 4).
    assert_eq!(crate::support::mode_of(&out) & 0o777, 0o600);
    assert_eq!(crate::support::mode_of(&manifest) & 0o777, 0o600);

    let verify = |manifest: &std::path::Path, file: &std::path::Path| {
        run(cdp()
            .args(["export", "verify"])
            .arg(manifest)
            .arg(file)
            .args(["--server", &server.base_url()]))
    };
    let output = verify(&manifest, &out);
    assert!(output.status.success(), "{}", text(&output.stderr));
    assert!(text(&output.stdout).contains("signed by the expected key"));

    // One changed byte in the file, or one changed count in the manifest, and it fails.
    let changed = work.path().join("changed.csv");
    std::fs::write(&changed, csv.replacen("+86137", "+86138", 1)).unwrap();
    let output = verify(&manifest, &changed);
    assert!(!output.status.success());
    assert!(text(&output.stderr).contains("does not match the manifest"));
    let forged = work.path().join("forged.json");
    let mut value: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&manifest).unwrap()).unwrap();
    value["counts"]["included"] = json!(999);
    std::fs::write(&forged, serde_json::to_vec(&value).unwrap()).unwrap();
    let output = verify(&forged, &out);
    assert!(!output.status.success());
    assert!(
        text(&output.stderr).contains("signature is invalid"),
        "{}",
        text(&output.stderr)
    );

    assert!(server.stop_with("TERM").0.success());
    // At rest the export file is sealed: no phone in clear anywhere in the data directory.
    assert_eq!(
        std::fs::read_dir(dir.path().join("exports"))
            .unwrap()
            .count(),
        1
    );
    assert_no_clear_values(dir.path(), &["+8613700000001", "13700000001"]);
}
