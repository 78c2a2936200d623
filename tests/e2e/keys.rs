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
