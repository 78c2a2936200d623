//! Destinations and scheduled exports, end to end: a real HTTPS receiver (Python's standard
//! library, the test's own CA) for webhooks, OpenSSH's sshd (started by the test on
//! 127.0.0.1, `scripts/openssh` installs it; its tests are in `sftp.rs`), and the scheduler of
//! `cdp serve`.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::support::{Server, assert_no_clear_values, http, temp_dir};

/// Phones of the test's people (scanned for in the data directory).
pub(crate) fn phone(i: usize) -> String {
    format!("1390000{i:04}")
}

/// The phone as exports carry it (E.164).
pub(crate) fn e164(i: usize) -> String {
    format!("+86{}", phone(i))
}

/// `n` people in 深圳 with a phone; the first `consented` granted SMS marketing.
pub(crate) fn people(
    server: &Server,
    admin: &str,
    range: std::ops::Range<usize>,
    consented: usize,
) {
    let key = server.create_source(admin, &format!("app-{}", range.start), "ios");
    let batch: Vec<Value> = range
        .clone()
        .map(|i| {
            json!({"type": "identify", "userId": format!("d-{i}"),
            "traits": {"phone": phone(i), "address": {"country": "CN", "city": "深圳"}}})
        })
        .collect();
    let response = server.ingest("/v1/batch", &key, &json!({ "batch": batch }));
    assert_eq!(response.status, 200, "{}", response.text());
    for i in range.take(consented) {
        consent(server, admin, i, "granted");
    }
}

fn consent(server: &Server, admin: &str, i: usize, status: &str) {
    let response = server.post_with("/v1/consents", admin, &json!({
        "subject": {"type": "user_id", "value": format!("d-{i}")}, "purpose": "marketing.sms",
        "status": status, "notice_version": "2026-01", "source": "app", "evidence": {"screen": "sms"}}));
    assert_eq!(response.status, 200, "{}", response.text());
}

pub(crate) fn wait_for_count(server: &Server, token: &str, expected: u64) {
    let started = Instant::now();
    loop {
        let count = server
            .post_with(
                "/v1/audiences/count",
                token,
                &json!({"query": "city:深圳", "purpose": "marketing.sms"}),
            )
            .json();
        if count["count"] == expected {
            return;
        }
        assert!(started.elapsed() < Duration::from_secs(10), "{count}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

pub(crate) fn recipient_and_audience(server: &Server, admin: &str) -> (String, String) {
    let recipient = server
        .post_with("/v1/recipients", admin, &json!({"name": "SMS gateway", "contact": "dpo@sms.example.cn",
            "role": "processor", "region": "CN", "transfer_mechanism": "none", "allowed_purposes": ["marketing.sms"]}))
        .json();
    let audience = server.post_with(
        "/v1/audiences",
        admin,
        &json!({"name": "深圳", "purpose": "marketing.sms", "query": "city:深圳"}),
    );
    assert_eq!(audience.status, 201, "{}", audience.text());
    (
        recipient["id"].as_str().unwrap().to_string(),
        audience.json()["id"].as_str().unwrap().to_string(),
    )
}

fn send(
    server: &Server,
    method: &str,
    path: &str,
    token: &str,
    body: &Value,
) -> crate::support::Response {
    http(
        server.addr,
        method,
        path,
        &[
            ("Authorization", &format!("Bearer {token}")),
            ("Content-Type", "application/json"),
        ],
        body.to_string().as_bytes(),
    )
}

/// Runs `cdp ARGS --server URL --token TOKEN` and returns what it printed.
pub(crate) fn cli(server: &Server, token: &str, args: &[&str]) -> String {
    let output = crate::support::run(crate::support::cdp().args(args).args([
        "--server",
        &server.base_url(),
        "--token",
        token,
    ]));
    assert!(
        output.status.success(),
        "{args:?}: {}",
        crate::support::text(&output.stderr)
    );
    crate::support::text(&output.stdout)
}

/// Waits until the export is done and its delivery has ended (delivered or failed).
pub(crate) fn wait_delivery(server: &Server, token: &str, export: &str, within: Duration) -> Value {
    let started = Instant::now();
    loop {
        let job = server
            .get_with(&format!("/v1/exports/{export}"), token)
            .json();
        assert!(
            job["status"] == "running" || job["status"] == "done",
            "{job}"
        );
        let delivery = server.get_with(&format!("/v1/exports/{export}/delivery"), token);
        if delivery.status == 200 {
            let delivery = delivery.json();
            if delivery["state"] == "delivered" || delivery["state"] == "failed" {
                return delivery;
            }
        }
        assert!(
            started.elapsed() < within,
            "delivery of {export} not ended: {}\n{}",
            delivery.text(),
            server.logs()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// A CA and a certificate for 127.0.0.1 it signed: (ca.pem, cert, key).
fn certificates(dir: &Path) -> (PathBuf, PathBuf, PathBuf) {
    let openssl = |args: &[&str]| {
        let output = Command::new("openssl")
            .args(args)
            .current_dir(dir)
            .output()
            .expect("openssl (Debian: apt-get install openssl)");
        assert!(
            output.status.success(),
            "{}",
            String::from_utf8_lossy(&output.stderr)
        );
    };
    openssl(&[
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-days",
        "2",
        "-subj",
        "/CN=webhook test CA",
        "-keyout",
        "ca.key",
        "-out",
        "ca.pem",
    ]);
    openssl(&[
        "req",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-subj",
        "/CN=127.0.0.1",
        "-keyout",
        "server.key",
        "-out",
        "server.csr",
    ]);
    std::fs::write(dir.join("san.ext"), "subjectAltName=IP:127.0.0.1\n").unwrap();
    openssl(&[
        "x509",
        "-req",
        "-in",
        "server.csr",
        "-CA",
        "ca.pem",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-days",
        "2",
        "-extfile",
        "san.ext",
        "-out",
        "server.crt",
    ]);
    (
        dir.join("ca.pem"),
        dir.join("server.crt"),
        dir.join("server.key"),
    )
}

/// The Python receiver of `tests/destinations/webhook_receiver.py`.
struct Receiver {
    child: Child,
    port: u16,
    log: PathBuf,
    control: PathBuf,
    ca_pem: String,
}

impl Receiver {
    fn start(dir: &Path) -> Self {
        let (ca, cert, key) = certificates(dir);
        let log = dir.join("received.jsonl");
        let control = dir.join("control");
        std::fs::create_dir_all(&control).unwrap();
        let script = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../tests/destinations/webhook_receiver.py");
        let mut child = Command::new("python3")
            .arg(script)
            .args([&cert, &key, &log, &control])
            .stdout(Stdio::piped())
            .spawn()
            .expect("python3");
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let port = line
            .trim()
            .strip_prefix("listening ")
            .and_then(|p| p.parse().ok())
            .unwrap_or_else(|| panic!("the receiver said {line:?}"));
        Self {
            child,
            port,
            log,
            control,
            ca_pem: std::fs::read_to_string(ca).unwrap(),
        }
    }

    fn url(&self) -> String {
        format!("https://127.0.0.1:{}/hooks/cdp", self.port)
    }

    fn set(&self, name: &str, value: Option<&str>) {
        let path = self.control.join(name);
        match value {
            Some(value) => std::fs::write(path, value).unwrap(),
            None => {
                let _ = std::fs::remove_file(path);
            }
        }
    }

    fn received(&self) -> Vec<Value> {
        std::fs::read_to_string(&self.log)
            .unwrap_or_default()
            .lines()
            .map(|line| serde_json::from_str(line).unwrap())
            .collect()
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The rows the receiver accepted for an export, after checking every request's signature.
fn accepted_rows(receiver: &Receiver, secret: &str, export: &str) -> Vec<Value> {
    let mut rows = Vec::new();
    for request in receiver.received() {
        let body = request["body"].as_str().unwrap();
        let signature = request["headers"]["x-cdp-signature"].as_str().unwrap();
        let (t, v1) = signature
            .strip_prefix("t=")
            .and_then(|rest| rest.split_once(",v1="))
            .unwrap();
        assert_eq!(
            v1,
            cdp_crypto::hmac_sha256_hex(secret.as_bytes(), format!("{t}.{body}").as_bytes()),
            "a request whose signature does not verify"
        );
        let age = time::OffsetDateTime::now_utc().unix_timestamp() - t.parse::<i64>().unwrap();
        assert!((0..600).contains(&age), "signed {age} s ago");
        let body: Value = serde_json::from_str(body).unwrap();
        if body["export_id"] == export && request["status"] == 200 {
            assert_eq!(
                request["headers"]["x-cdp-delivery"],
                format!("{export}/r0/{}", body["batch"])
            );
            assert_eq!(body["manifest"]["export_id"], export);
            rows.extend(body["rows"].as_array().unwrap().iter().cloned());
        }
    }
    rows
}

#[test]
fn a_webhook_gets_signed_batches_retries_failures_and_keeps_dead_letters_until_retried() {
    let dir = temp_dir();
    let work = temp_dir();
    let receiver = Receiver::start(work.path());
    let server = Server::start(dir.path(), &[], &[]).unwrap();
    let admin = server.token(dir.path(), &["admin"]);
    let marketer = server.token(dir.path(), &["marketer"]);
    people(&server, &admin, 0..28, 25);
    wait_for_count(&server, &marketer, 25);
    let (recipient, audience) = recipient_and_audience(&server, &admin);

    // Bad settings are refused, naming the problem.
    for (body, says) in [
        (
            json!({"name": "x", "recipient": recipient, "kind": "webhook", "url": "http://127.0.0.1/"}),
            "https",
        ),
        (
            json!({"name": "x", "recipient": recipient, "kind": "webhook"}),
            "url is required",
        ),
        (
            json!({"name": "x", "recipient": recipient, "kind": "webhook", "url": receiver.url(), "batch_size": 0}),
            "batch_size",
        ),
        (
            json!({"name": "x", "recipient": recipient, "kind": "webhook", "url": receiver.url(), "ca_certificate": "nope"}),
            "ca_certificate",
        ),
        (
            json!({"name": "x", "recipient": recipient, "kind": "ftp", "url": receiver.url()}),
            "expected webhook or sftp",
        ),
    ] {
        let refused = server.post_with("/v1/destinations", &admin, &body);
        assert_eq!(refused.status, 400, "{body}: {}", refused.text());
        assert!(refused.text().contains(says), "{says}: {}", refused.text());
    }
    let refused = server.post_with(
        "/v1/destinations",
        &marketer,
        &json!({"name": "x",
        "recipient": recipient, "kind": "webhook", "url": receiver.url()}),
    );
    assert_eq!(refused.status, 403, "{}", refused.text());

    let created = server.post_with("/v1/destinations", &admin, &json!({"name": "SMS gateway hook",
        "recipient": recipient, "kind": "webhook", "url": receiver.url(), "ca_certificate": receiver.ca_pem,
        "batch_size": 10, "max_attempts": 3, "retry_base_ms": 200}));
    assert_eq!(created.status, 201, "{}", created.text());
    let created = created.json();
    let destination = created["id"].as_str().unwrap().to_string();
    let secret = created["secret"].as_str().unwrap().to_string();
    assert!(secret.starts_with("whsec_"), "{created}");
    // The secret is shown once: never again.
    let shown = server.get_with(&format!("/v1/destinations/{destination}"), &marketer);
    assert_eq!(shown.status, 200, "{}", shown.text());
    assert!(!shown.text().contains(&secret) && shown.json().get("secret").is_none());
    assert!(
        !server
            .get_with("/v1/destinations", &admin)
            .text()
            .contains(&secret)
    );

    // The first two requests fail (503: retried with backoff), batch 1 is refused (400: a
    // dead letter at once).
    // (The receiver counts from its first request: the ping above was the first.)
    receiver.set("fail_first", Some("3"));
    receiver.set("refuse", Some("1"));
    let export = server.post_with("/v1/exports", &marketer, &json!({"audience": audience,
        "purpose": "marketing.sms", "recipient": recipient, "fields": ["pseudonym", "identifiers.phone"],
        "format": "jsonl", "destination": destination}));
    assert_eq!(export.status, 202, "{}", export.text());
    let export = export.json()["id"].as_str().unwrap().to_string();
    let delivery = wait_delivery(&server, &marketer, &export, Duration::from_secs(60));
    assert_eq!(delivery["state"], "failed", "{delivery}");
    let batches = delivery["batches"].as_array().unwrap();
    assert_eq!(batches.len(), 3, "{delivery}");
    assert_eq!(batches[0]["status"], "delivered", "{delivery}");
    // The two 503s went to the first tries of batches 0 and 1 (sent one after the other).
    assert_eq!(batches[0]["attempts"], 2, "a 503, then 200: {delivery}");
    assert_eq!(batches[1]["status"], "dead", "{delivery}");
    assert_eq!(batches[1]["last_status"], 400, "{delivery}");
    assert_eq!(
        batches[1]["attempts"], 2,
        "a 503 then a 400: the refusal is not tried again although 3 tries are allowed: {delivery}"
    );
    assert_eq!(batches[2]["status"], "delivered", "{delivery}");
    let rows: u64 = batches.iter().map(|b| b["rows"].as_u64().unwrap()).sum();
    assert_eq!(rows, 25, "{delivery}");

    let letters = server
        .get_with(
            &format!("/v1/destinations/{destination}/dead-letters"),
            &admin,
        )
        .json();
    assert_eq!(
        letters["dead_letters"].as_array().unwrap().len(),
        1,
        "{letters}"
    );
    assert_eq!(letters["dead_letters"][0]["export_id"], export);
    assert_eq!(letters["dead_letters"][0]["batch"], 1);
    assert!(
        letters["dead_letters"][0]["last_error"]
            .as_str()
            .unwrap()
            .contains("batch refused")
    );
    assert_eq!(accepted_rows(&receiver, &secret, &export).len(), 15);
    let listed = cli(
        &server,
        &admin,
        &["destinations", "dead-letters", &destination],
    );
    assert!(
        listed.contains("1 dead letters") && listed.contains("HTTP 400"),
        "{listed}"
    );

    // The receiver is fixed; the operator puts the dead letter back in the queue.
    receiver.set("refuse", None);
    let retried = cli(&server, &admin, &["destinations", "retry", &destination]);
    assert!(retried.contains("1 batches queued again"), "{retried}");
    let delivery = wait_delivery(&server, &marketer, &export, Duration::from_secs(30));
    assert_eq!(delivery["state"], "delivered", "{delivery}");
    let rows = accepted_rows(&receiver, &secret, &export);
    assert_eq!(rows.len(), 25);
    let mut pseudonyms: Vec<&str> = rows
        .iter()
        .map(|r| r["pseudonym"].as_str().unwrap())
        .collect();
    pseudonyms.sort_unstable();
    pseudonyms.dedup();
    assert_eq!(pseudonyms.len(), 25, "every member once");
    let exported: Vec<String> = (0..25).map(e164).collect();
    for row in &rows {
        assert_eq!(row["op"], "add");
        assert!(
            exported.contains(&row["identifiers.phone"].as_str().unwrap().to_string()),
            "{row}"
        );
    }
    let phones: Vec<String> = (0..28).map(phone).collect();
    assert!(
        server
            .get_with(
                &format!("/v1/destinations/{destination}/dead-letters"),
                &admin
            )
            .json()["dead_letters"]
            .as_array()
            .unwrap()
            .is_empty()
    );

    // A new secret signs from now on; the old one no longer does.
    let rotated = server.post_with(
        &format!("/v1/destinations/{destination}/rotate"),
        &admin,
        &json!({}),
    );
    assert_eq!(rotated.status, 200, "{}", rotated.text());
    let new_secret = rotated.json()["secret"].as_str().unwrap().to_string();
    assert_ne!(new_secret, secret);

    // A destination of another recipient cannot receive this recipient's export.
    let other = server
        .post_with("/v1/recipients", &admin, &json!({"name": "Other", "contact": "o@example.cn",
            "role": "processor", "region": "CN", "transfer_mechanism": "none", "allowed_purposes": ["marketing.sms"]}))
        .json();
    let refused = server.post_with("/v1/exports", &marketer, &json!({"audience": audience,
        "purpose": "marketing.sms", "recipient": other["id"], "fields": ["pseudonym"], "destination": destination}));
    assert_eq!(refused.status, 400, "{}", refused.text());
    assert!(
        refused.text().contains("delivers to recipient"),
        "{}",
        refused.text()
    );

    // Retired: no more deliveries, and exports naming it are refused.
    let retired = send(
        &server,
        "DELETE",
        &format!("/v1/destinations/{destination}"),
        &admin,
        &json!({}),
    );
    assert_eq!(retired.status, 200, "{}", retired.text());
    let refused = server.post_with("/v1/exports", &marketer, &json!({"audience": audience,
        "purpose": "marketing.sms", "recipient": recipient, "fields": ["pseudonym"], "destination": destination}));
    assert_eq!(refused.status, 409, "{}", refused.text());

    // Nothing of the people is on disk in clear, nor in the server's log.
    drop(server);
    assert_no_clear_values(
        dir.path(),
        &phones.iter().map(String::as_str).collect::<Vec<_>>(),
    );
}

#[test]
fn scheduled_exports_send_what_changed_and_a_withdrawn_consent_arrives_as_a_removal() {
    let dir = temp_dir();
    let work = temp_dir();
    let receiver = Receiver::start(work.path());
    let server = Server::start(dir.path(), &[], &[]).unwrap();
    let admin = server.token(dir.path(), &["admin"]);
    let marketer = server.token(dir.path(), &["marketer"]);
    people(&server, &admin, 0..25, 25);
    wait_for_count(&server, &marketer, 25);
    let (recipient, audience) = recipient_and_audience(&server, &admin);
    let created = server.post_with("/v1/destinations", &admin, &json!({"name": "hook",
        "recipient": recipient, "kind": "webhook", "url": receiver.url(), "ca_certificate": receiver.ca_pem,
        "retry_base_ms": 200}));
    assert_eq!(created.status, 201, "{}", created.text());
    let created = created.json();
    let (destination, secret) = (
        created["id"].as_str().unwrap().to_string(),
        created["secret"].as_str().unwrap().to_string(),
    );

    let schedule_body = |fields: Value, cron: &str| {
        json!({"name": "nightly SMS list", "audience": audience, "purpose": "marketing.sms",
            "recipient": recipient, "fields": fields, "format": "jsonl", "destination": destination,
            "cron": cron, "utc_offset": "+08:00"})
    };
    for (body, says) in [
        (
            schedule_body(json!(["identifiers.phone"]), "0 3 * * *"),
            "pseudonym",
        ),
        (schedule_body(json!(["pseudonym"]), "0 3 * *"), "five"),
        (schedule_body(json!(["pseudonym"]), "0 25 * * *"), "hour"),
    ] {
        let refused = server.post_with("/v1/schedules", &marketer, &body);
        assert_eq!(refused.status, 400, "{body}: {}", refused.text());
        assert!(refused.text().contains(says), "{says}: {}", refused.text());
    }
    let schedule = server.post_with(
        "/v1/schedules",
        &marketer,
        &schedule_body(json!(["pseudonym", "identifiers.phone"]), "0 3 * * *"),
    );
    assert_eq!(schedule.status, 201, "{}", schedule.text());
    let schedule = schedule.json();
    let id = schedule["id"].as_str().unwrap().to_string();
    // 03:00 in Beijing is 19:00 UTC.
    let next = time::OffsetDateTime::parse(
        schedule["next_run_at"].as_str().unwrap(),
        &time::format_description::well_known::Rfc3339,
    )
    .unwrap();
    assert_eq!((next.hour(), next.minute()), (19, 0), "{schedule}");

    let run = |expect_runs: usize| -> (String, Value) {
        let started = server.post_with(&format!("/v1/schedules/{id}/run"), &marketer, &json!({}));
        assert_eq!(started.status, 202, "{}", started.text());
        let export = started.json()["id"].as_str().unwrap().to_string();
        let delivery = wait_delivery(&server, &marketer, &export, Duration::from_secs(30));
        assert_eq!(delivery["state"], "delivered", "{delivery}");
        let history = server
            .get_with(&format!("/v1/schedules/{id}"), &marketer)
            .json();
        assert_eq!(
            history["history"].as_array().unwrap().len(),
            expect_runs,
            "{history}"
        );
        assert_eq!(
            history["history"][0]["export_id"], export,
            "newest first: {history}"
        );
        (export, history["history"][0].clone())
    };

    // The first run: everyone is new.
    let (first, summary) = run(1);
    assert_eq!(summary["added"], 25, "{summary}");
    assert_eq!(summary["removals"], 0, "{summary}");
    assert_eq!(summary["delivery"], "delivered", "{summary}");
    let first_rows = accepted_rows(&receiver, &secret, &first);
    assert_eq!(first_rows.len(), 25);

    // Three people join; two withdraw their consent before the next run.
    people(&server, &admin, 100..103, 3);
    consent(&server, &admin, 3, "withdrawn");
    consent(&server, &admin, 7, "withdrawn");
    wait_for_count(&server, &marketer, 26);
    let (second, summary) = run(2);
    assert_eq!(summary["added"], 3, "{summary}");
    assert_eq!(summary["removals"], 2, "{summary}");
    let shown = cli(&server, &marketer, &["schedules", "show", &id]);
    assert!(
        shown.contains("added 3") && shown.contains("removed 2"),
        "{shown}"
    );
    let rows = accepted_rows(&receiver, &secret, &second);
    let adds: Vec<&Value> = rows.iter().filter(|r| r["op"] == "add").collect();
    let removes: Vec<&Value> = rows.iter().filter(|r| r["op"] == "remove").collect();
    assert_eq!((adds.len(), removes.len()), (3, 2), "{rows:?}");
    let new_phones: Vec<String> = (100..103).map(e164).collect();
    for add in &adds {
        assert!(
            new_phones.contains(&add["identifiers.phone"].as_str().unwrap().to_string()),
            "{add}"
        );
    }
    // A removal names the person by the pseudonym the first run sent, and nothing else.
    let withdrawn: Vec<&Value> = first_rows
        .iter()
        .filter(|r| r["identifiers.phone"] == e164(3) || r["identifiers.phone"] == e164(7))
        .collect();
    for remove in &removes {
        assert!(
            remove.get("identifiers.phone").is_none_or(Value::is_null),
            "{remove}"
        );
        assert!(
            withdrawn
                .iter()
                .any(|w| w["pseudonym"] == remove["pseudonym"]),
            "{remove} is not one of the withdrawn people"
        );
    }

    // One person is erased: the next run tells the recipient to remove them, by pseudonym.
    let dpo = server.token(dir.path(), &["dpo"]);
    let erased = server.post_with(
        "/v1/requests",
        &dpo,
        &json!({"type": "erasure",
        "subject": {"type": "user_id", "value": "d-0"},
        "verification": {"method": "signed-in app session", "checked_by": "dpo-1"}}),
    );
    assert_eq!(erased.status, 201, "{}", erased.text());
    assert_eq!(erased.json()["status"], "done", "{}", erased.text());
    wait_for_count(&server, &marketer, 25);
    let (third, summary) = run(3);
    assert_eq!(summary["added"], 0, "{summary}");
    assert_eq!(summary["removals"], 1, "{summary}");
    let rows = accepted_rows(&receiver, &secret, &third);
    let erased_pseudonym = first_rows
        .iter()
        .find(|r| r["identifiers.phone"] == e164(0))
        .map(|r| r["pseudonym"].clone())
        .unwrap();
    assert_eq!(rows.len(), 1, "{rows:?}");
    assert_eq!(
        (&rows[0]["op"], &rows[0]["pseudonym"]),
        (&json!("remove"), &erased_pseudonym)
    );

    // Nothing changed: an empty delta.
    let (fourth, summary) = run(4);
    assert_eq!(summary["added"], 0, "{summary}");
    assert_eq!(summary["removals"], 0, "{summary}");
    assert!(accepted_rows(&receiver, &secret, &fourth).is_empty());

    // The scheduler itself starts a run when the time comes (every minute here).
    let changed = send(
        &server,
        "PATCH",
        &format!("/v1/schedules/{id}"),
        &marketer,
        &json!({"cron": "* * * * *"}),
    );
    assert_eq!(changed.status, 200, "{}", changed.text());
    let started = Instant::now();
    loop {
        let history = server
            .get_with(&format!("/v1/schedules/{id}"), &marketer)
            .json();
        // The run appears in the history as soon as it starts; its delta once it is done.
        if history["history"].as_array().unwrap().len() == 5
            && history["history"][0]["status"] != "running"
        {
            assert_eq!(history["history"][0]["added"], 0, "{history}");
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(80),
            "{history}\n{}",
            server.logs()
        );
        std::thread::sleep(Duration::from_millis(500));
    }
    // Paused: no more runs; deleted: gone, its runs still among the exports.
    let paused = send(
        &server,
        "PATCH",
        &format!("/v1/schedules/{id}"),
        &marketer,
        &json!({"paused": true}),
    );
    assert_eq!(paused.json()["paused"], true, "{}", paused.text());
    let deleted = send(
        &server,
        "DELETE",
        &format!("/v1/schedules/{id}"),
        &marketer,
        &json!({}),
    );
    assert_eq!(deleted.status, 204, "{}", deleted.text());
    assert_eq!(
        server
            .get_with(&format!("/v1/schedules/{id}"), &marketer)
            .status,
        404
    );
    assert_eq!(
        server
            .get_with(&format!("/v1/exports/{first}"), &marketer)
            .json()["schedule"],
        id
    );
}
