//! `cdp store copy`: a sled data directory moved to the LSM engine keeps every person, event,
//! key and audit entry; a non-empty target is refused.

use serde_json::json;

use crate::support::{Server, cdp, run, temp_dir, text};

fn copy(from: &std::path::Path, to: &std::path::Path) -> std::process::Output {
    run(cdp()
        .args(["store", "copy", "--from"])
        .arg(from)
        .arg("--to")
        .arg(to))
}

#[test]
fn a_sled_store_copied_to_fjall_serves_the_same_people() {
    let dir = temp_dir();
    let (old, new) = (dir.path().join("old"), dir.path().join("new"));
    let server = Server::start(&old, &["--store-engine", "sled"], &[]).unwrap();
    let admin = server.token(&old, &["admin"]);
    let key = server.create_source(&admin, "web", "web");
    let batch: Vec<_> = (0..20)
        .map(|i| {
            json!({"type": "identify", "userId": format!("copy-{i}"), "messageId": format!("c-{i}"),
            "traits": {"email": format!("copy{i}@example.com")}})
        })
        .collect();
    assert_eq!(
        server
            .ingest("/v1/batch", &key, &json!({ "batch": batch }))
            .status,
        200
    );
    let before = server
        .profile_of(&admin, "email", "copy7@example.com")
        .unwrap();
    assert!(server.stop_with("TERM").0.success());

    let output = copy(&old, &new);
    assert!(output.status.success(), "{}", text(&output.stderr));
    let report = text(&output.stdout);
    assert!(report.contains("into a fjall store"), "{report}");
    assert!(report.contains("counts and digests verified"), "{report}");
    assert!(new.join("lsm").is_dir() && !new.join("store").exists());

    // The copy opens with the keys that came along (the development key, the token key),
    // and answers as the original did; the audit chain still verifies.
    let server = Server::start(&new, &[], &[]).unwrap();
    assert!(!server.logs().contains("uses the sled engine"));
    let admin = server.token(&new, &["admin"]);
    assert_eq!(
        server.profile_of(&admin, "email", "copy7@example.com"),
        Some(before)
    );
    assert_eq!(
        server.get_with("/v1/audit/verify", &admin).json()["ok"],
        true
    );
    assert!(server.stop_with("TERM").0.success());

    // Never into a directory that holds a store.
    let output = copy(&old, &new);
    assert!(!output.status.success());
    assert!(
        text(&output.stderr).contains("already holds a store"),
        "{}",
        text(&output.stderr)
    );
}

#[test]
fn serve_on_a_sled_directory_names_the_copy_command() {
    let dir = temp_dir();
    let server = Server::start(dir.path(), &["--store-engine", "sled"], &[]).unwrap();
    assert!(server.stop_with("TERM").0.success());
    let server = Server::start(dir.path(), &[], &[]).unwrap();
    let logs = server.logs();
    assert!(logs.contains("cdp store copy --from"), "{logs}");
    assert!(server.stop_with("TERM").0.success());
}
