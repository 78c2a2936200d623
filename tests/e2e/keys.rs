//! Key files: init, rotate, list, and serve's refusal of a keyring that lacks a version.

use crate::support::{Server, cdp, mode_of, run, temp_dir, text};

#[test]
fn init_rotate_list_and_serve_across_rotation() {
    let dir = temp_dir();
    let key = dir.path().join("secrets/master.key");
    let data = dir.path().join("data");
    let init = run(cdp().args(["keys", "init", "--key-file"]).arg(&key));
    assert!(init.status.success(), "{}", text(&init.stderr));
    assert_eq!(mode_of(&key), 0o600);
    let again = run(cdp().args(["keys", "init", "--key-file"]).arg(&key));
    assert!(!again.status.success());
    assert!(text(&again.stderr).contains("already exists"));

    let key_arg = key.to_str().unwrap();
    let server = Server::start(&data, &["--key-file", key_arg], &[]).unwrap();
    assert!(
        !server.logs().contains("DEVELOPMENT"),
        "a given key file is not a dev key"
    );
    assert!(
        !data.join("keys/master.key").exists(),
        "no dev key is created when a key file is given"
    );
    assert_eq!(
        mode_of(&data.join("keys/token.key")),
        0o600,
        "the token signing key is created private"
    );
    assert!(server.stop_with("TERM").0.success());

    let rotate = run(cdp().args(["keys", "rotate", "--key-file"]).arg(&key));
    assert!(rotate.status.success(), "{}", text(&rotate.stderr));
    assert_eq!(mode_of(&key), 0o600);
    let list = text(&run(cdp().args(["keys", "list", "--key-file"]).arg(&key)).stdout);
    assert!(
        list.contains("version 1") && list.contains("version 2 (current)"),
        "{list}"
    );
    assert!(!list.contains("material"));

    // Data written under version 1 stays readable; version 2 is now in use as well.
    let server = Server::start(&data, &["--key-file", key_arg], &[]).unwrap();
    assert!(
        server.logs().contains("\"key_version\":2"),
        "{}",
        server.logs()
    );
    assert!(server.stop_with("TERM").0.success());

    // A key file without version 1 is refused, naming the file and the version.
    let full = std::fs::read_to_string(&key).unwrap();
    let second_entry = full.rfind("[[key]]").unwrap();
    let header_end = full.find("[[key]]").unwrap();
    let v2_only = dir.path().join("v2-only.key");
    std::fs::write(
        &v2_only,
        format!("{}{}", &full[..header_end], &full[second_entry..]),
    )
    .unwrap();
    std::fs::set_permissions(
        &v2_only,
        std::os::unix::fs::PermissionsExt::from_mode(0o600),
    )
    .unwrap();
    let refused = Server::start(&data, &["--key-file", v2_only.to_str().unwrap()], &[])
        .err()
        .expect("serve refuses");
    assert!(
        refused.contains("version 1") && refused.contains("v2-only.key"),
        "{refused}"
    );
    assert!(!refused.contains("panicked"), "{refused}");
}

#[test]
fn a_different_key_and_a_world_readable_key_are_refused() {
    let dir = temp_dir();
    let data = dir.path().join("data");
    let server = Server::start(&data, &[], &[]).unwrap();
    assert!(server.stop_with("TERM").0.success());

    let other = dir.path().join("other.key");
    assert!(
        run(cdp().args(["keys", "init", "--key-file"]).arg(&other))
            .status
            .success()
    );
    let refused = Server::start(&data, &["--key-file", other.to_str().unwrap()], &[])
        .err()
        .expect("refused");
    assert!(refused.contains("is not the key the data"), "{refused}");

    std::fs::set_permissions(&other, std::os::unix::fs::PermissionsExt::from_mode(0o644)).unwrap();
    let refused = Server::start(
        &dir.path().join("fresh"),
        &["--key-file", other.to_str().unwrap()],
        &[],
    )
    .err()
    .expect("refused");
    assert!(refused.contains("chmod 600"), "{refused}");

    // A store without its key: no silent creation of a new dev key.
    std::fs::remove_file(data.join("keys/master.key")).unwrap();
    let refused = Server::start(&data, &[], &[]).err().expect("refused");
    assert!(
        refused.contains("holds a store but no master key"),
        "{refused}"
    );
}

#[test]
fn master_key_from_the_environment() {
    let dir = temp_dir();
    let key = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";
    let server = Server::start(dir.path(), &[], &[("CDP_MASTER_KEY", key)]).unwrap();
    assert!(
        server
            .logs()
            .contains("environment variable CDP_MASTER_KEY"),
        "{}",
        server.logs()
    );
    assert!(!server.logs().contains(key), "the key must never be logged");
    assert!(server.stop_with("TERM").0.success());
    let bad = Server::start(dir.path(), &[], &[("CDP_MASTER_KEY", "short")])
        .err()
        .expect("refused");
    assert!(
        bad.contains("CDP_MASTER_KEY") && !bad.contains("short\""),
        "{bad}"
    );
    let output = run(cdp()
        .args(["serve", "--key-file", "/nonexistent/k"])
        .arg("--data-dir")
        .arg(dir.path()));
    assert!(
        text(&output.stderr).contains("cdp keys init --key-file /nonexistent/k"),
        "{}",
        text(&output.stderr)
    );
}

/// Retiring a key version: people and records written under version 2 are rewrapped to
/// version 3, version 2 leaves the key file, and the store still opens and reads everyone.
/// Version 1 names the store's blind indexes and stays; nothing is retired while still in use.
#[test]
fn rewrap_then_retire_a_key_version_and_everyone_stays_readable() {
    let dir = temp_dir();
    let key = dir.path().join("master.key");
    let data = dir.path().join("data");
    assert!(
        run(cdp().args(["keys", "init", "--key-file"]).arg(&key))
            .status
            .success()
    );
    let key_arg = ["--key-file", key.to_str().unwrap()];
    let keys = |args: &[&str]| {
        run(cdp()
            .arg("keys")
            .args(args)
            .args(key_arg)
            .arg("--data-dir")
            .arg(&data))
    };
    let ingest_people = |from: usize, to: usize| {
        let server = Server::start(&data, &key_arg, &[]).unwrap();
        let admin = server.token(&data, &["admin"]);
        let write_key = server.create_source(&admin, &format!("shop-{from}"), "web");
        let batch: Vec<_> = (from..to)
            .map(|i| {
                serde_json::json!({"type": "identify", "userId": format!("k-{i}"),
                "traits": {"email": format!("k{i}@example.com")}})
            })
            .collect();
        let sent = server.ingest(
            "/v1/batch",
            &write_key,
            &serde_json::json!({ "batch": batch }),
        );
        assert_eq!(sent.status, 200, "{}", sent.text());
        assert!(server.stop_with("TERM").0.success());
    };
    ingest_people(0, 5); // under version 1
    assert!(
        run(cdp().args(["keys", "rotate"]).args(key_arg))
            .status
            .success()
    );
    ingest_people(5, 10); // under version 2
    // An export under version 2 (CSV, the default format): its file key is wrapped under
    // version 2 too.
    let export_id = {
        let server = Server::start(&data, &key_arg, &[]).unwrap();
        let admin = server.token(&data, &["admin"]);
        let service = server.token(&data, &["customer_service"]);
        let marketer = server.token(&data, &["marketer"]);
        let write_key = server.create_source(&admin, "app", "ios");
        let batch: Vec<_> = (0..20)
            .map(|i| {
                serde_json::json!({"type": "identify", "userId": format!("x-{i}"),
                "traits": {"phone": format!("1370000{i:04}"), "address": {"city": "深圳"}}})
            })
            .collect();
        let sent = server.ingest(
            "/v1/batch",
            &write_key,
            &serde_json::json!({ "batch": batch }),
        );
        assert_eq!(sent.status, 200, "{}", sent.text());
        for i in 0..20 {
            let consent = server.post_with("/v1/consents", &service, &serde_json::json!({
                "subject": {"type": "user_id", "value": format!("x-{i}")}, "purpose": "marketing.sms",
                "status": "granted", "notice_version": "2026-01", "source": "app", "evidence": {"screen": "sms"}}));
            assert_eq!(consent.status, 200, "{}", consent.text());
        }
        let recipient = server
            .post_with("/v1/recipients", &admin, &serde_json::json!({"name": "SMS gateway", "contact": "dpo@sms.example.cn",
                "role": "processor", "region": "CN", "transfer_mechanism": "none", "allowed_purposes": ["marketing.sms"]}))
            .json();
        let body =
            serde_json::json!({"name": "深圳", "purpose": "marketing.sms", "query": "city:深圳"});
        // The index follows the writes: export once it counts all twenty (a loaded machine,
        // as CI is with every suite running, can take longer than the freshness budget).
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        loop {
            let count = server
                .post_with(
                    "/v1/audiences/count",
                    &marketer,
                    &serde_json::json!({"query": "city:深圳", "purpose": "marketing.sms"}),
                )
                .json();
            if count["count"] == 20 {
                break;
            }
            assert!(std::time::Instant::now() < deadline, "{count}");
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
        let audience = loop {
            let created = server.post_with("/v1/audiences", &marketer, &body);
            if created.status == 201 || created.status == 200 {
                break created.json();
            }
            assert!(std::time::Instant::now() < deadline, "{}", created.text());
            std::thread::sleep(std::time::Duration::from_millis(100));
        };
        let mut export = serde_json::Value::Null;
        let mut last = String::new();
        while std::time::Instant::now() < deadline {
            let started = server.post_with("/v1/exports", &marketer, &serde_json::json!({
                "audience": audience["id"], "purpose": "marketing.sms", "recipient": recipient["id"],
                "fields": ["pseudonym", "identifiers.phone"]}));
            if started.status == 202 || started.status == 200 || started.status == 201 {
                export = started.json();
                break;
            }
            last = started.text();
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
        let id = export["id"]
            .as_str()
            .unwrap_or_else(|| panic!("the export did not start: {last} {export}"))
            .to_string();
        loop {
            let record = server
                .get_with(&format!("/v1/exports/{id}"), &marketer)
                .json();
            if record["status"] == "done" {
                break;
            }
            assert!(record["status"] == "running", "{record}");
            assert!(std::time::Instant::now() < deadline, "{record}");
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
        assert!(server.stop_with("TERM").0.success());
        id
    };
    assert!(
        run(cdp().args(["keys", "rotate"]).args(key_arg))
            .status
            .success()
    );

    let early = keys(&["retire", "--version", "2"]);
    assert!(!early.status.success());
    assert!(
        text(&early.stderr).contains("still sealed under version 2")
            && text(&early.stderr).contains("cdp keys rewrap"),
        "{}",
        text(&early.stderr)
    );
    let rewrap = keys(&["rewrap"]);
    assert!(rewrap.status.success(), "{}", text(&rewrap.stderr));
    let said = text(&rewrap.stdout);
    assert!(
        said.contains("rewrapped 30 data keys") && said.contains("1 export file keys"),
        "{said}"
    );
    assert!(said.contains("under version 3"), "{said}");
    let again = keys(&["rewrap"]);
    assert!(
        text(&again.stdout).contains("rewrapped 0 data keys, 0 records"),
        "a second run has nothing left: {}",
        text(&again.stdout)
    );

    let pinned = keys(&["retire", "--version", "1"]);
    assert!(!pinned.status.success());
    assert!(text(&pinned.stderr).contains("names this store's blind indexes"));
    let current = keys(&["retire", "--version", "3"]);
    assert!(!current.status.success());
    assert!(text(&current.stderr).contains("current key version"));

    let retire = keys(&["retire", "--version", "2"]);
    assert!(retire.status.success(), "{}", text(&retire.stderr));
    let list = text(&run(cdp().args(["keys", "list"]).args(key_arg)).stdout);
    assert!(
        list.contains("version 1")
            && !list.contains("version 2")
            && list.contains("version 3 (current)"),
        "{list}"
    );
    assert_eq!(crate::support::mode_of(&key), 0o600);

    // The store opens without version 2 and reads the people written under it.
    let server = Server::start(&data, &key_arg, &[]).unwrap();
    let admin = server.token(&data, &["admin"]);
    for i in [0, 4, 5, 9] {
        assert!(
            server
                .profile_of(&admin, "email", &format!("k{i}@example.com"))
                .is_some(),
            "person {i} is readable after the retirement"
        );
    }
    // The export's file opens with its rewrapped file key.
    let marketer = server.token(&data, &["marketer"]);
    let file = server.get_with(&format!("/v1/exports/{export_id}/file"), &marketer);
    assert_eq!(file.status, 200, "{}", file.text());
    assert!(file.text().contains("+8613700000007"), "{}", file.text());
    let sources = server.get_with("/v1/sources", &admin);
    assert_eq!(sources.status, 200);
    assert_eq!(
        sources.json().as_array().map(Vec::len),
        Some(3),
        "{}",
        sources.text()
    );
    let audit = server.get_with("/v1/audit/verify", &admin);
    assert_eq!(audit.status, 200);
    assert_eq!(
        audit.json()["problem"],
        serde_json::Value::Null,
        "{}",
        audit.text()
    );
    assert!(server.stop_with("TERM").0.success());
}
