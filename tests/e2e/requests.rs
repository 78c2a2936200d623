//! `cdp requests` and `cdp retention run` against the real binary: an erasure makes every
//! identifier unknown and leaves nothing decryptable of the person.

use serde_json::json;

use crate::support::{Server, cdp, run, temp_dir, text};

/// `cdp requests submit` erasing the person known by erase.me@example.cn.
const ERASE_BY_EMAIL: &[&str] = &[
    "requests",
    "submit",
    "--type",
    "erasure",
    "--identifier",
    "email",
    "--value",
    "erase.me@example.cn",
    "--verification",
    "signed-in account",
];

#[test]
fn cli_requests_erase_a_person_and_retention_runs() {
    let dir = temp_dir();
    let server = Server::start(dir.path(), &[], &[]).unwrap();
    let admin = server.token(dir.path(), &["admin"]);
    let dpo = server.token(dir.path(), &["dpo"]);
    let key = server.create_source(&admin, "web", "web");
    let response = server.ingest(
        "/v1/identify",
        &key,
        &json!({"userId": "erase-me", "traits": {"email": "erase.me@example.cn", "phone": "13655556666"}}),
    );
    assert_eq!(response.status, 200, "{}", response.text());
    let profile = server
        .profile_of(&admin, "email", "erase.me@example.cn")
        .unwrap();
    let cli = |args: &[&str]| {
        run(cdp()
            .args(args)
            .args(["--server", &server.base_url(), "--token", &dpo]))
    };
    let output = cli(ERASE_BY_EMAIL);
    assert!(output.status.success(), "{}", text(&output.stderr));
    assert!(
        text(&output.stdout).contains(": done"),
        "{}",
        text(&output.stdout)
    );
    for (kind, value) in [
        ("email", "erase.me@example.cn"),
        ("phone", "+8613655556666"),
        ("user_id", "erase-me"),
    ] {
        assert_eq!(server.profile_of(&admin, kind, value), None, "{kind}");
    }
    // The same request again: nobody is known by that e-mail any more. The refusal is recorded
    // and printed, and the command exits non-zero (issue 21 item 8).
    let output = cli(ERASE_BY_EMAIL);
    assert!(!output.status.success(), "{}", text(&output.stdout));
    assert!(
        text(&output.stdout).contains(": refused (no person is known"),
        "{}",
        text(&output.stdout)
    );
    assert_eq!(
        text(&output.stderr).lines().count(),
        1,
        "{}",
        text(&output.stderr)
    );
    let output = cli(&["requests", "list"]);
    assert!(output.status.success(), "{}", text(&output.stderr));
    assert!(
        text(&output.stdout).contains("erasure"),
        "{}",
        text(&output.stdout)
    );
    let output = cli(&["retention", "run", "--dry-run"]);
    assert!(output.status.success(), "{}", text(&output.stderr));
    assert!(
        text(&output.stdout).starts_with("dry run: checked 0 people"),
        "{}",
        text(&output.stdout)
    );
    assert!(server.stop_with("TERM").0.success());

    // Offline: the person's data key is gone, so nothing sealed for them opens; the audit log
    // still verifies and names them by pseudonym only.
    let output = run(cdp()
        .args(["audit", "verify", "--data-dir"])
        .arg(dir.path()));
    assert!(output.status.success(), "{}", text(&output.stderr));
    let store = cdp_store::open_store(
        &cdp_store::DataDir::new(dir.path()),
        &cdp_store::StoreOptions::default(),
    )
    .unwrap();
    let id: cdp_core::ProfileId = profile.parse().unwrap();
    assert!(
        store
            .get(cdp_store::Keyspace::Keys, id.as_bytes())
            .unwrap()
            .is_none()
    );
    assert!(
        store
            .get(cdp_store::Keyspace::Profiles, id.as_bytes())
            .unwrap()
            .is_none()
    );
    assert_eq!(
        store
            .scan_prefix(cdp_store::Keyspace::Events, id.as_bytes())
            .count(),
        0
    );
}
