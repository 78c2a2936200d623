//! The official Python SDKs, unmodified, pointed at `cdp serve` by host only (issue 3, item 3).
//! The venv is created here from tests/sdk/requirements.txt: nothing is skipped if it cannot be.

use std::path::PathBuf;
use std::process::Command;
use std::sync::Mutex;

use crate::support::{Server, temp_dir, text};

static VENV: Mutex<Option<PathBuf>> = Mutex::new(None);

/// A venv with the SDKs, created once per test run (in Cargo's target tmp dir).
fn venv_python() -> PathBuf {
    let mut guard = VENV.lock().unwrap_or_else(|p| p.into_inner());
    if let Some(python) = guard.as_ref() {
        return python.clone();
    }
    let root = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("sdk-venv");
    let python = root.join("bin/python");
    let requirements =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/sdk/requirements.txt");
    let stamp = root.join("installed-requirements.txt");
    let wanted = std::fs::read_to_string(&requirements).expect("tests/sdk/requirements.txt");
    if std::fs::read_to_string(&stamp).ok().as_deref() != Some(wanted.as_str()) {
        let _ = std::fs::remove_dir_all(&root);
        let status = Command::new("python3")
            .args(["-m", "venv"])
            .arg(&root)
            .status()
            .expect("python3 runs");
        assert!(status.success(), "python3 -m venv failed");
        let output = Command::new(&python)
            .args([
                "-m",
                "pip",
                "install",
                "--quiet",
                "--disable-pip-version-check",
                "-r",
            ])
            .arg(&requirements)
            .output()
            .expect("pip runs");
        assert!(
            output.status.success(),
            "pip install failed:\n{}",
            text(&output.stderr)
        );
        std::fs::write(&stamp, wanted).unwrap();
    }
    *guard = Some(python.clone());
    python
}

fn run_sdk(sdk: &str) {
    let python = venv_python();
    let dir = temp_dir();
    let server = Server::start(dir.path(), &[], &[]).unwrap();
    let admin = server.token(dir.path(), &["admin"]);
    let key = server.create_source(&admin, &format!("{sdk} app"), "android");
    let prefix = format!("{sdk}-sdk");
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/sdk/send_events.py");
    let output = Command::new(&python)
        .arg(&script)
        .args([sdk, &server.base_url(), &key, &prefix])
        .output()
        .expect("the SDK script runs");
    assert!(
        output.status.success(),
        "{sdk} SDK reported errors:\n{}\n{}",
        text(&output.stderr),
        server.logs()
    );

    let user = server
        .profile_of(&admin, "user_id", &format!("{prefix}-user"))
        .expect("identify arrived");
    assert_eq!(
        server
            .profile_of(&admin, "email", &format!("{prefix}@example.com"))
            .as_deref(),
        Some(user.as_str())
    );
    assert_eq!(
        server
            .profile_of(&admin, "phone", "+8613800138000")
            .as_deref(),
        Some(user.as_str())
    );
    assert_eq!(
        server
            .profile_of(&admin, "anonymous_id", &format!("{prefix}-anon"))
            .as_deref(),
        Some(user.as_str())
    );
    // alias(anon2, user) merged the anonymous page view into the user.
    assert_eq!(
        server
            .profile_of(&admin, "anonymous_id", &format!("{prefix}-anon2"))
            .as_deref(),
        Some(user.as_str())
    );
    let profile = server
        .get_with(
            &format!("/v1/profiles/{user}?purpose=essential.service"),
            &admin,
        )
        .json();
    assert_eq!(profile["event_count"], 4, "{profile}");
    // A CN source: names are masked for display (GB/T 35273 7.2).
    assert_eq!(profile["traits"]["name"]["value"], "李*");
    let events = server
        .get_with(
            &format!("/v1/profiles/{user}/events?purpose=essential.service"),
            &admin,
        )
        .json();
    let kinds: Vec<&str> = events["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["message"]["type"].as_str().unwrap())
        .collect();
    for kind in ["identify", "track", "page", "alias"] {
        assert!(kinds.contains(&kind), "{kinds:?}");
    }
}

#[test]
fn segment_analytics_python_works_unchanged() {
    run_sdk("segment");
}

#[test]
fn rudder_sdk_python_works_with_only_its_data_plane_url() {
    run_sdk("rudder");
}
