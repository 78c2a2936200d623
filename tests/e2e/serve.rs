//! `cdp serve`: first run, HTTP contract over a real socket, config, signals.

use std::io::Write;
use std::net::TcpStream;
use std::time::Duration;

use crate::support::{Server, cdp, http, mode_of, read_response, run, temp_dir, text};

#[test]
fn first_run_creates_a_private_dev_key_with_a_loud_warning_and_serves() {
    let dir = temp_dir();
    let data = dir.path().join("data");
    let server = Server::start(&data, &[], &[]).unwrap();
    let key_file = data.join("keys/master.key");
    assert_eq!(mode_of(&key_file), 0o600);
    assert_eq!(mode_of(&data.join("keys")), 0o700);
    assert_eq!(mode_of(&data), 0o700);
    assert!(
        server.logs().contains("DEVELOPMENT key"),
        "{}",
        server.logs()
    );
    assert!(server.logs().contains("\"level\":\"WARN\""));

    let health = server.get("/healthz");
    assert_eq!(health.status, 200);
    assert_eq!(health.json()["status"], "ok");
    assert_eq!(server.get("/readyz").status, 200);

    let (status, logs) = server.stop_with("TERM");
    assert!(status.success(), "exit {status}: {logs}");
    assert!(logs.contains("shutdown complete"), "{logs}");

    // Second start: the same dev key is used (with a warning), the store opens cleanly.
    let server = Server::start(&data, &[], &[]).unwrap();
    assert!(
        server.logs().contains("using the DEVELOPMENT master key"),
        "{}",
        server.logs()
    );
    let (status, _) = server.stop_with("INT");
    assert!(status.success());
}

#[test]
fn errors_have_one_shape_and_nothing_personal_reaches_logs_or_metrics() {
    let dir = temp_dir();
    let server = Server::start(dir.path(), &[], &[]).unwrap();
    // Letters only: digits could match timestamps or request ids by chance.
    let marker = "zz.marker.qxjv@example.com";
    let missing = server.get(&format!("/v1/people/{marker}"));
    assert_eq!(missing.status, 404);
    assert_eq!(missing.json()["error"]["code"], "route_not_found");
    assert!(!missing.text().contains("marker"));
    let unauthorised = server.get(&format!("/v1/profiles/lookup?type=email&value={marker}"));
    assert_eq!(unauthorised.status, 401);
    assert!(!unauthorised.text().contains("marker"));

    let wrong_method = http(server.addr, "DELETE", "/healthz", &[], b"");
    assert_eq!(wrong_method.status, 405);
    assert_eq!(wrong_method.json()["error"]["code"], "method_not_allowed");
    assert!(
        wrong_method
            .head
            .to_ascii_lowercase()
            .contains("\nallow: get"),
        "{}",
        wrong_method.head
    );

    let big = vec![b'{'; 2 * 1024 * 1024];
    let too_large = http(
        server.addr,
        "POST",
        "/v1/batch",
        &[("Content-Type", "application/json")],
        &big,
    );
    assert_eq!(too_large.status, 413);
    assert_eq!(too_large.json()["error"]["code"], "payload_too_large");

    // A long target and a header flood, through hyper: the error shape, not an empty answer.
    let long_target = http(
        server.addr,
        "GET",
        &format!("/v1/sources?x={}", "a".repeat(10 * 1024)),
        &[],
        b"",
    );
    assert_eq!(long_target.status, 414);
    assert_eq!(long_target.json()["error"]["code"], "uri_too_long");
    let names: Vec<String> = (0..70).map(|i| format!("X-Flood-{i}")).collect();
    let flood: Vec<(&str, &str)> = names.iter().map(|name| (name.as_str(), "1")).collect();
    let flooded = http(server.addr, "GET", "/healthz", &flood, b"");
    assert_eq!(flooded.status, 431);
    assert_eq!(flooded.json()["error"]["code"], "headers_too_large");

    let metrics = server.get("/metrics");
    assert_eq!(metrics.status, 200);
    let metrics = metrics.text();
    assert!(
        metrics.contains(
            "cdp_http_requests_total{method=\"GET\",route=\"<unmatched>\",status=\"404\"} 1"
        ),
        "{metrics}"
    );
    assert!(metrics.contains("cdp_http_request_duration_seconds_bucket"));
    assert!(!metrics.contains("marker"));

    let openapi = server.get("/openapi.json");
    assert_eq!(openapi.status, 200);
    assert!(openapi.json()["paths"]["/readyz"]["get"].is_object());

    let (status, logs) = server.stop_with("TERM");
    assert!(status.success());
    assert!(logs.contains("\"route\":\"<unmatched>\""), "{logs}");
    assert!(
        !logs.contains("marker") && !logs.contains("qxjv"),
        "personal value in logs:\n{logs}"
    );
}

#[test]
fn a_request_in_flight_when_sigterm_arrives_is_answered() {
    let dir = temp_dir();
    let server = Server::start(dir.path(), &[], &[]).unwrap();
    // Start a request but hold back the end of its head, so it is in flight at the signal.
    let mut stream = TcpStream::connect(server.addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    stream
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: cdp\r\n")
        .unwrap();
    std::thread::sleep(Duration::from_millis(200));
    crate::support::signal_process(server.pid(), "TERM");
    std::thread::sleep(Duration::from_millis(300));
    stream.write_all(b"Connection: close\r\n\r\n").unwrap();
    let response = read_response(&mut stream);
    assert_eq!(response.status, 200, "{}", response.text());
    let (status, logs) = server.stop_with("TERM");
    assert!(status.success(), "{logs}");
    assert!(logs.contains("shutdown complete"));
}

#[test]
fn config_file_settings_apply_and_bad_ones_are_named() {
    let dir = temp_dir();
    let config = dir.path().join("cdp.toml");
    std::fs::write(
        &config,
        "[http]\nmax_body_bytes = 2048\n\n[log]\nlevel = \"debug\"\n",
    )
    .unwrap();
    let server = Server::start(
        &dir.path().join("data"),
        &["--config", config.to_str().unwrap()],
        &[],
    )
    .unwrap();
    let over = http(server.addr, "POST", "/v1/track", &[], &[b'x'; 4096]);
    assert_eq!(over.status, 413);
    drop(server);

    std::fs::write(
        &config,
        "listen = \"127.0.0.1:0\"\n[http]\nmax_body_byte = 10\n",
    )
    .unwrap();
    let output = run(cdp().args(["serve", "--config"]).arg(&config));
    assert!(!output.status.success());
    let stderr = text(&output.stderr);
    assert!(
        stderr.contains("cdp.toml, line 3") && stderr.contains("max_body_byte"),
        "{stderr}"
    );
}

#[test]
fn bad_listen_address_and_busy_port_and_locked_data_dir_are_clear_errors() {
    let dir = temp_dir();
    let output = run(cdp()
        .args(["serve", "--listen", "localhost-ish"])
        .arg("--data-dir")
        .arg(dir.path()));
    assert!(!output.status.success());
    assert!(
        text(&output.stderr).contains("is not IP:PORT"),
        "{}",
        text(&output.stderr)
    );

    let server = Server::start(dir.path(), &[], &[]).unwrap();
    let second = run(cdp()
        .args(["serve", "--listen", "127.0.0.1:0"])
        .arg("--data-dir")
        .arg(dir.path()));
    assert!(!second.status.success());
    let stderr = text(&second.stderr);
    assert!(stderr.contains("in use by another process"), "{stderr}");
    assert!(!stderr.contains("panicked"));

    let other = temp_dir();
    let busy = run(cdp()
        .args(["serve", "--listen", &server.addr.to_string()])
        .arg("--data-dir")
        .arg(other.path()));
    assert!(!busy.status.success());
    assert!(
        text(&busy.stderr).contains("cannot listen on"),
        "{}",
        text(&busy.stderr)
    );
}

#[test]
fn environment_variables_configure_serve() {
    let dir = temp_dir();
    // CDP_LOG filters logs: the binary's own lines stay, per-request lines of cdp_server go.
    let server = Server::start(dir.path(), &[], &[("CDP_LOG", "warn,cdp::serve=info")]).unwrap();
    assert_eq!(server.get("/healthz").status, 200);
    let (status, logs) = server.stop_with("TERM");
    assert!(status.success());
    assert!(
        logs.contains("shutdown complete") && !logs.contains("\"route\":\"/healthz\""),
        "{logs}"
    );
    // CDP_DATA_DIR and CDP_LISTEN are read when the flags are absent.
    let mut command = cdp();
    command
        .args(["--log-format", "json", "serve"])
        .env("CDP_DATA_DIR", dir.path())
        .env("CDP_LISTEN", "not-an-address");
    let output = run(&mut command);
    assert!(
        text(&output.stderr).contains("\"not-an-address\""),
        "{}",
        text(&output.stderr)
    );
}
