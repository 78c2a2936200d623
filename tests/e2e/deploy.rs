//! What `deploy/` ships works as shipped: the systemd unit verifies and is hardened, the
//! example configuration serves, the container's health check probes a real server, and the
//! alert rules and dashboard pass promtool's own tests and name metrics the server exports.
//! systemd-analyze and promtool come from Debian's packages (scripts/deploy-tools installs
//! them; the tests fail, never skip, when they are missing).

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::support::{CDP, Server, cdp, run, temp_dir, text};

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn read(relative: &str) -> String {
    std::fs::read_to_string(repo().join(relative)).unwrap_or_else(|e| panic!("{relative}: {e}"))
}

/// A program the test needs, or a failure that says how to get it.
fn tool(name: &str) -> Command {
    let found = std::env::var_os("PATH")
        .map(|path| std::env::split_paths(&path).any(|dir| dir.join(name).is_file()))
        .unwrap_or(false);
    assert!(
        found,
        "{name} is missing: run scripts/deploy-tools (Debian packages systemd and prometheus)"
    );
    Command::new(name)
}

#[test]
fn the_systemd_unit_verifies_and_is_hardened() {
    let dir = temp_dir();
    // verify checks that ExecStart's program exists: point it at the binary under test.
    let unit = read("deploy/cdp.service");
    assert!(unit.contains("\nExecStart=/usr/local/bin/cdp serve --config /etc/cdp/cdp.toml\n"));
    let unit = unit.replace("ExecStart=/usr/local/bin/cdp", &format!("ExecStart={CDP}"));
    let path = dir.path().join("cdp.service");
    std::fs::write(&path, unit).unwrap();

    let verify = tool("systemd-analyze")
        .arg("verify")
        .arg(&path)
        .output()
        .unwrap();
    assert!(
        verify.status.success() && verify.stderr.is_empty(),
        "systemd-analyze verify: {}",
        text(&verify.stderr)
    );

    let security = tool("systemd-analyze")
        .args(["security", "--offline=true", "--no-pager"])
        .arg(&path)
        .output()
        .unwrap();
    let report = text(&security.stdout);
    let exposure: f64 = report
        .lines()
        .find_map(|line| {
            line.split("Overall exposure level for cdp.service: ")
                .nth(1)
        })
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|value| value.parse().ok())
        .unwrap_or_else(|| panic!("no exposure level in: {report}{}", text(&security.stderr)));
    assert!(
        exposure <= 2.5,
        "the unit promises an exposure of 2.5 or lower, systemd rates it {exposure}:\n{report}"
    );
    // The capabilities and system calls a CDP never needs are gone (a regression here would
    // still rate "OK" overall).
    for line in [
        "✓ CapabilityBoundingSet=~CAP_SYS_ADMIN",
        "✓ SystemCallFilter=~@mount",
        "✓ PrivateDevices=",
        "✓ ProtectSystem=",
        "✓ NoNewPrivileges=",
        "✓ RestrictAddressFamilies=~AF_PACKET",
    ] {
        assert!(report.contains(line), "{line} missing in:\n{report}");
    }
}

/// deploy/cdp.toml with the machine's paths replaced by the test's.
fn example_config(dir: &Path) -> PathBuf {
    let key = dir.join("master.key");
    let init = run(cdp().args(["keys", "init", "--key-file"]).arg(&key));
    assert!(init.status.success(), "{}", text(&init.stderr));
    let config = read("deploy/cdp.toml");
    for setting in [
        "key_file = \"/etc/cdp/master.key\"",
        "policies = \"/etc/cdp/policies\"",
    ] {
        assert!(config.contains(setting), "deploy/cdp.toml lost {setting}");
    }
    let config = config
        .replace("\"/etc/cdp/master.key\"", &format!("{:?}", key))
        .replace(
            "\"/etc/cdp/policies\"",
            &format!("{:?}", repo().join("policies")),
        );
    let path = dir.join("cdp.toml");
    std::fs::write(&path, config).unwrap();
    path
}

/// The command of a health check written as a JSON array (`CMD ["/usr/local/bin/cdp", ...]`),
/// aimed at `server` and run with the binary under test.
fn health_check(declared: &str, server: &Server) -> Command {
    let array = &declared[declared.find('[').unwrap()..=declared.rfind(']').unwrap()];
    let argv: Vec<String> = serde_json::from_str(array).unwrap();
    let argv: Vec<&String> = argv.iter().filter(|arg| *arg != "CMD").collect();
    assert_eq!(argv[0], "/usr/local/bin/cdp", "{declared}");
    let mut command = cdp();
    for arg in &argv[1..] {
        command.arg(arg.replace("http://127.0.0.1:8080", &server.base_url()));
    }
    command
}

#[test]
fn the_example_config_serves_and_the_container_health_checks_probe_it() {
    let dir = temp_dir();
    let config = example_config(dir.path());
    let data = dir.path().join("data");
    let server = Server::start(&data, &["--config", config.to_str().unwrap()], &[]).unwrap();
    // The key came from key_file: no development key was made in the data directory.
    assert!(!data.join("keys/master.key").exists());
    assert!(!server.logs().contains("development"), "{}", server.logs());
    // The token key was created in the data directory on first start, and tokens work.
    assert!(data.join("keys/token.key").exists());
    let admin = server.token(&data, &["admin"]);
    assert_eq!(server.get_with("/v1/sources", &admin).status, 200);

    let containerfile = read("deploy/Containerfile");
    let healthcheck = containerfile
        .split("HEALTHCHECK")
        .nth(1)
        .and_then(|rest| rest.lines().find(|line| line.contains("CMD [")))
        .expect("the Containerfile declares a HEALTHCHECK CMD");
    assert!(containerfile.contains("COPY deploy/cdp.toml /etc/cdp/cdp.toml"));
    assert!(containerfile.contains("\"serve\", \"--config\", \"/etc/cdp/cdp.toml\""));
    let compose = read("deploy/compose.yaml");
    let compose_check = compose
        .lines()
        .find(|line| line.contains("test: [\"CMD\", \"/usr/local/bin/cdp\""))
        .expect("compose's nodes probe themselves with cdp probe");

    for declared in [healthcheck, compose_check] {
        let probe = run(&mut health_check(declared, &server));
        assert!(
            probe.status.success(),
            "{declared}: {}",
            text(&probe.stderr)
        );
        assert!(text(&probe.stdout).contains("/readyz"), "{declared}");
    }
    let base = server.base_url();
    server.kill();
    let down = run(cdp().args(["probe", "--server", &base, "--timeout", "2"]));
    assert_eq!(down.status.code(), Some(1));
    assert!(
        text(&down.stderr).contains("does not answer"),
        "{}",
        text(&down.stderr)
    );
    let bad = run(cdp().args(["probe", "--path", "readyz"]));
    assert!(!bad.status.success());
    assert!(text(&bad.stderr).contains("--path must start with /"));

    // What the image leaves out of its build context.
    let ignored = read(".dockerignore");
    for pattern in ["target/", ".git/", "data/", "secrets/", "*.key"] {
        assert!(
            ignored.lines().any(|line| line.trim() == pattern),
            ".dockerignore lacks {pattern}"
        );
    }
}

/// Every `cdp_*` metric name an expression mentions, without a histogram's suffixes.
fn metric_names(expressions: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    let bytes = expressions.as_bytes();
    let mut at = 0;
    while let Some(found) = expressions[at..].find("cdp_") {
        let start = at + found;
        let mut end = start;
        while end < bytes.len() && (bytes[end].is_ascii_lowercase() || bytes[end] == b'_') {
            end += 1;
        }
        let name = &expressions[start..end];
        let base = ["_bucket", "_sum", "_count"]
            .iter()
            .find_map(|suffix| name.strip_suffix(suffix))
            .unwrap_or(name);
        names.insert(base.to_string());
        at = end;
    }
    names
}

#[test]
fn the_alert_rules_pass_promtool_and_rules_and_dashboard_name_exported_metrics() {
    let rules_dir = repo().join("deploy/prometheus");
    let check = tool("promtool")
        .args(["check", "rules", "cdp-rules.yml"])
        .current_dir(&rules_dir)
        .output()
        .unwrap();
    assert!(
        check.status.success(),
        "{}{}",
        text(&check.stdout),
        text(&check.stderr)
    );
    let unit_tests = tool("promtool")
        .args(["test", "rules", "cdp-rules.test.yml"])
        .current_dir(&rules_dir)
        .output()
        .unwrap();
    assert!(
        unit_tests.status.success(),
        "{}{}",
        text(&unit_tests.stdout),
        text(&unit_tests.stderr)
    );

    let rules: serde_json::Value =
        serde_yaml_ng::from_str(&read("deploy/prometheus/cdp-rules.yml")).unwrap();
    let mut expressions = String::new();
    for rule in rules["groups"][0]["rules"].as_array().unwrap() {
        expressions.push_str(rule["expr"].as_str().unwrap());
        expressions.push('\n');
    }
    let dashboard: serde_json::Value =
        serde_json::from_str(&read("deploy/grafana/cdp-dashboard.json")).unwrap();
    let mut panels = 0;
    for panel in dashboard["panels"].as_array().unwrap() {
        panels += 1;
        for target in panel["targets"].as_array().unwrap() {
            expressions.push_str(target["expr"].as_str().unwrap());
            expressions.push('\n');
        }
    }
    assert!(panels >= 8, "the dashboard has {panels} panels");

    let dir = temp_dir();
    let server = Server::start(dir.path(), &[], &[]).unwrap();
    let admin = server.token(dir.path(), &["admin"]);
    let key = server.create_source(&admin, "shop", "web");
    let sent = server.ingest(
        "/v1/track",
        &key,
        &serde_json::json!({"userId": "u-1", "event": "Viewed"}),
    );
    assert_eq!(sent.status, 200);
    let exported = server.get("/metrics").text();
    let wanted = metric_names(&expressions);
    assert!(wanted.len() >= 8, "{wanted:?}");
    for name in &wanted {
        assert!(
            exported.contains(&format!("# TYPE {name} ")),
            "the rules or dashboard use {name}, which /metrics does not export"
        );
    }
}

/// The backup and restore drill of docs/operations.md, command by command: a stopped
/// server's store copied with `cdp store copy`, the copy verified block by block and its audit
/// chain checked, then served beside the original: the same people, the same counts.
#[test]
fn the_backup_and_restore_drill_of_the_operations_guide_works() {
    let dir = temp_dir();
    let key = dir.path().join("master.key");
    assert!(
        run(cdp().args(["keys", "init", "--key-file"]).arg(&key))
            .status
            .success()
    );
    let key_arg = ["--key-file", key.to_str().unwrap()];
    let live = dir.path().join("live");
    let server = Server::start(&live, &key_arg, &[]).unwrap();
    let admin = server.token(&live, &["admin"]);
    let write_key = server.create_source(&admin, "shop", "web");
    let batch: Vec<_> = (0..30)
        .map(|i| {
            serde_json::json!({"type": "identify", "userId": format!("drill-{i}"),
            "traits": {"email": format!("drill{i}@example.com")}})
        })
        .collect();
    assert_eq!(
        server
            .ingest(
                "/v1/batch",
                &write_key,
                &serde_json::json!({ "batch": batch })
            )
            .status,
        200
    );
    let person = server.profile_of(&admin, "user_id", "drill-7").unwrap();
    let (status, logs) = server.stop_with("TERM");
    assert!(status.success(), "{logs}");

    let backup = dir.path().join("backup");
    let copy = run(cdp()
        .args(["store", "copy", "--from"])
        .arg(&live)
        .arg("--to")
        .arg(&backup));
    assert!(copy.status.success(), "{}", text(&copy.stderr));
    let verify = run(cdp().args(["store", "verify", "--data-dir"]).arg(&backup));
    assert!(verify.status.success(), "{}", text(&verify.stderr));
    let audit = run(cdp()
        .args(["audit", "verify", "--data-dir"])
        .arg(&backup)
        .args(key_arg));
    assert!(audit.status.success(), "{}", text(&audit.stderr));
    // The backup holds nothing in clear and no key: it may leave the machine.
    crate::support::assert_no_clear_values(&backup, &["drill7@example.com", "drill-7"]);
    assert!(!backup.join("keys/master.key").exists());

    let restored = Server::start(&backup, &key_arg, &[]).unwrap();
    let probe = run(cdp().args(["probe", "--server", &restored.base_url()]));
    assert!(probe.status.success(), "{}", text(&probe.stderr));
    let admin = restored.token(&backup, &["admin"]);
    assert_eq!(
        restored.profile_of(&admin, "user_id", "drill-7"),
        Some(person.clone())
    );
    assert_eq!(
        restored.profile_of(&admin, "email", "drill7@example.com"),
        Some(person)
    );
    let marketer = restored.token(&backup, &["marketer"]);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let count = run(cdp()
            .args(["audiences", "count", "--purpose", "analytics", "tier:*"])
            .args(["--server", &restored.base_url(), "--token", &marketer]));
        assert!(count.status.success(), "{}", text(&count.stderr));
        if text(&count.stdout).contains("of 30 matching") {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the restored store should count 30 matches: {}",
            text(&count.stdout)
        );
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
}
