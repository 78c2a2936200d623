//! `cdp policy check|ropa` and `cdp audit verify` on the real binary; the audit log detects a
//! changed, removed, reordered or cut-off entry in the store.

use std::path::{Path, PathBuf};

use cdp_store::{DataDir, Keyspace, Store, StoreOptions, WriteBatch, open_store};
use serde_json::json;

use crate::support::{Server, cdp, run, temp_dir, text};

fn policies_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../policies")
}

fn copy_dir(from: &Path, to: &Path) {
    let status = std::process::Command::new("cp")
        .arg("-a")
        .arg(from)
        .arg(to)
        .status()
        .unwrap();
    assert!(status.success());
}

#[test]
fn policy_check_validates_and_runs_the_golden_cases() {
    let output = run(cdp().args(["policy", "check", "--dir"]).arg(policies_dir()));
    let stdout = text(&output.stdout);
    assert!(output.status.success(), "{stdout}{}", text(&output.stderr));
    assert!(
        stdout.contains("valid (2 jurisdictions: gdpr, pipl"),
        "{stdout}"
    );
    assert!(stdout.contains(", 0 failed"), "{stdout}");

    // A PIPL purpose on legitimate interest is refused with file, line and rule.
    let dir = temp_dir();
    let copy = dir.path().join("policies");
    copy_dir(&policies_dir(), &copy);
    let pipl = copy.join("pipl.yaml");
    let original = std::fs::read_to_string(&pipl).unwrap();
    let broken = original.replace(
        "  analytics:\n    legal_basis: consent",
        "  analytics:\n    legal_basis: legitimate_interest",
    );
    assert_ne!(original, broken);
    std::fs::write(&pipl, &broken).unwrap();
    let line = broken
        .lines()
        .position(|l| l.contains("legal_basis: legitimate_interest"))
        .unwrap()
        + 1;
    let output = run(cdp().args(["policy", "check", "--dir"]).arg(&copy));
    let stderr = text(&output.stderr);
    assert!(!output.status.success());
    assert!(
        stderr.contains(&format!("pipl.yaml:{line}: pipl.purposes.analytics")),
        "{stderr}"
    );
    assert!(stderr.contains("PIPL-13"), "{stderr}");

    // A golden case that no longer holds fails the check.
    std::fs::write(&pipl, &original).unwrap();
    let cases = copy.join("tests/pipl.yaml");
    let golden = std::fs::read_to_string(&cases).unwrap();
    std::fs::write(
        &cases,
        golden.replacen(
            "expect: {decision: deny, cite: [PIPL-13], rules: [pipl.purposes.marketing]}",
            "expect: {decision: allow}",
            1,
        ),
    )
    .unwrap();
    let output = run(cdp().args(["policy", "check", "--dir"]).arg(&copy));
    assert!(!output.status.success());
    assert!(text(&output.stdout).contains("FAIL pipl.yaml: marketing e-mail without consent"));
}

#[test]
fn policy_ropa_prints_the_record_of_processing() {
    let output = run(cdp().args(["policy", "ropa"]));
    let stdout = text(&output.stdout);
    assert!(output.status.success(), "{}", text(&output.stderr));
    for needle in [
        "# Record of processing activities",
        "## Purposes and lawful bases",
        "| `marketing.email` |",
        "consent (GDPR-6, EPRIVACY-13)",
        "## Categories of personal data and retention",
        "## Recipients",
        "## Access by role",
    ] {
        assert!(stdout.contains(needle), "{needle:?} missing:\n{stdout}");
    }
}

/// A data directory whose audit log holds several entries.
fn audited_data_dir() -> (tempfile::TempDir, u64) {
    let dir = temp_dir();
    let server = Server::start(dir.path(), &[], &[]).unwrap();
    let admin = server.token(dir.path(), &["admin"]);
    let key = server.create_source(&admin, "web", "web");
    let response = server.ingest(
        "/v1/identify",
        &key,
        &json!({"userId": "u-audit", "traits": {"email": "audit@example.cn"}}),
    );
    assert_eq!(response.status, 200, "{}", response.text());
    let id = server.profile_of(&admin, "user_id", "u-audit").unwrap();
    for purpose in [
        "customer_service",
        "marketing.email",
        "analytics",
        "essential.service",
    ] {
        server.get_with(&format!("/v1/profiles/{id}?purpose={purpose}"), &admin);
    }
    let auditor = server.token(dir.path(), &["auditor"]);
    let verify = server.get_with("/v1/audit/verify", &auditor).json();
    assert_eq!(verify["ok"], true, "{verify}");
    let entries = verify["entries"].as_u64().unwrap();
    assert!(entries >= 5, "{verify}");
    assert!(server.stop_with("TERM").0.success());
    (dir, entries)
}

fn verify(dir: &Path) -> (bool, String) {
    let output = run(cdp().args(["audit", "verify", "--data-dir"]).arg(dir));
    (
        output.status.success(),
        format!("{}{}", text(&output.stdout), text(&output.stderr)),
    )
}

/// An edit of the store behind the server's back.
type Tamper = dyn FnOnce(&dyn Store, &mut WriteBatch);

fn tamper(dir: &Path, edit: impl FnOnce(&dyn Store, &mut WriteBatch)) {
    // The engine the data directory holds.
    let store = open_store(&DataDir::new(dir), &StoreOptions::default()).unwrap();
    let mut batch = WriteBatch::default();
    edit(store.as_ref(), &mut batch);
    store.commit(batch).unwrap().wait_durable().unwrap();
    store.close().unwrap();
}

fn entry(store: &dyn Store, seq: u64) -> Vec<u8> {
    store
        .get(Keyspace::Audit, &seq.to_be_bytes())
        .unwrap()
        .unwrap()
}

#[test]
fn audit_verify_detects_changed_removed_reordered_and_cut_entries() {
    let (dir, entries) = audited_data_dir();
    let (ok, output) = verify(dir.path());
    assert!(ok, "{output}");
    assert!(output.contains("\"ok\": true"), "{output}");

    let cases: Vec<(&str, Box<Tamper>, String)> = vec![
        (
            "changed",
            Box::new(|store, batch| {
                let mut value = entry(store, 3);
                let last = value.len() - 20;
                value[last] ^= 1;
                batch.put(Keyspace::Audit, 3u64.to_be_bytes().to_vec(), value);
            }),
            "entry 3".into(),
        ),
        (
            "removed",
            Box::new(|_, batch| {
                batch.delete(Keyspace::Audit, 2u64.to_be_bytes().to_vec());
            }),
            "entry 2 (missing)".into(),
        ),
        (
            "reordered",
            Box::new(|store, batch| {
                let (two, three) = (entry(store, 2), entry(store, 3));
                batch.put(Keyspace::Audit, 2u64.to_be_bytes().to_vec(), three);
                batch.put(Keyspace::Audit, 3u64.to_be_bytes().to_vec(), two);
            }),
            "entry 2".into(),
        ),
        (
            "cut off",
            Box::new(move |_, batch| {
                batch.delete(Keyspace::Audit, entries.to_be_bytes().to_vec());
            }),
            "(truncated)".into(),
        ),
    ];
    for (label, edit, expected) in cases {
        let copy = temp_dir();
        let target = copy.path().join("data");
        copy_dir(dir.path(), &target);
        tamper(&target, edit);
        let (ok, output) = verify(&target);
        assert!(!ok, "{label}: verify passed:\n{output}");
        assert!(
            output.contains(&expected),
            "{label}: expected {expected:?} in:\n{output}"
        );
    }
}

#[test]
fn hs256_token_keys_are_configurable() {
    let dir = temp_dir();
    let key_file = dir.path().join("secrets/token.key");
    let output = run(cdp()
        .args(["token", "init", "--algorithm", "hs256", "--token-key-file"])
        .arg(&key_file));
    assert!(output.status.success(), "{}", text(&output.stderr));
    // Never overwritten.
    let again = run(cdp()
        .args(["token", "init", "--algorithm", "hs256", "--token-key-file"])
        .arg(&key_file));
    assert!(!again.status.success());
    let config = dir.path().join("cdp.toml");
    std::fs::write(
        &config,
        format!("token_key_file = {:?}\n", key_file.display().to_string()),
    )
    .unwrap();
    let data = dir.path().join("data");
    let server = Server::start(&data, &["--config", config.to_str().unwrap()], &[]).unwrap();
    let issue = |roles: &[&str], purposes: &[&str]| {
        let mut command = cdp();
        command
            .args(["token", "issue", "--token-key-file"])
            .arg(&key_file);
        for role in roles {
            command.args(["--role", role]);
        }
        for purpose in purposes {
            command.args(["--purpose", purpose]);
        }
        run(&mut command)
    };
    let output = issue(&["admin"], &[]);
    assert!(output.status.success(), "{}", text(&output.stderr));
    let token = text(&output.stdout).trim().to_string();
    let header = token.split('.').next().unwrap();
    use base64::Engine as _;
    let header = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(header)
        .unwrap();
    assert!(String::from_utf8(header).unwrap().contains("HS256"));
    assert_eq!(server.get_with("/v1/sources", &token).status, 200);
    // Another key's tokens (an EdDSA key here) are refused.
    let other = dir.path().join("other.key");
    assert!(
        run(cdp()
            .args(["token", "init", "--token-key-file"])
            .arg(&other))
        .status
        .success()
    );
    let output = run(cdp()
        .args(["token", "issue", "--role", "admin", "--token-key-file"])
        .arg(&other));
    assert!(output.status.success(), "{}", text(&output.stderr));
    let foreign = text(&output.stdout).trim().to_string();
    assert!(foreign.split('.').count() == 3);
    assert_eq!(server.get_with("/v1/sources", &foreign).status, 401);
    // Purposes are checked against the taxonomy when issuing.
    let output = issue(&["marketer"], &["marketing.carrier_pigeon"]);
    assert!(!output.status.success());
    assert!(text(&output.stderr).contains("unknown purpose"));
    // ... and against the roles (issue 17 item 7): a marketer may not state customer_service.
    let output = issue(&["marketer"], &["customer_service"]);
    assert!(!output.status.success());
    assert!(
        text(&output.stderr).contains("marketer may not state the purpose customer_service"),
        "{}",
        text(&output.stderr)
    );
    let output = issue(&["marketer"], &["marketing.email"]);
    assert!(output.status.success(), "{}", text(&output.stderr));
    assert!(server.stop_with("TERM").0.success());
}

/// A command's error is printed once, says each cause once and names the flag that fixes it
/// (issue 21 item 8).
#[test]
fn cli_errors_are_one_line_naming_the_flag_to_fix() {
    let empty = temp_dir();
    let cases: [(&[&str], &str); 2] = [
        (
            &["token", "issue", "--role", "admin", "--data-dir"],
            "--data-dir",
        ),
        (&["policy", "check", "--dir"], "--dir"),
    ];
    for (args, flag) in cases {
        let output = run(cdp().args(args).arg(empty.path().join("missing")));
        assert!(!output.status.success(), "{args:?}");
        let stderr = text(&output.stderr);
        let lines: Vec<&str> = stderr.lines().filter(|l| !l.trim().is_empty()).collect();
        assert_eq!(lines.len(), 1, "{args:?}: {stderr}");
        assert!(lines[0].starts_with("error: "), "{stderr}");
        assert!(lines[0].contains(flag), "{stderr}");
        assert_eq!(
            lines[0].matches("No such file or directory").count(),
            1,
            "{stderr}"
        );
    }
}

/// Output piped into a reader that stops early (`cdp policy ropa | head -1`) ends the command
/// quietly, as a Unix tool killed by SIGPIPE: no panic message, status 141.
#[test]
fn output_into_a_closed_pipe_is_not_a_panic() {
    // The shell waits so that the pipe's reader is surely gone before cdp writes.
    let mut child = std::process::Command::new("sh")
        .args([
            "-c",
            "sleep 0.3; exec \"$0\" policy ropa",
            crate::support::CDP,
        ])
        .env_remove("CDP_POLICIES")
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // The reader goes away before the command has written anything.
    drop(child.stdout.take());
    let output = child.wait_with_output().unwrap();
    let stderr = text(&output.stderr);
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert_eq!(output.status.code(), Some(141), "{stderr}");
}
