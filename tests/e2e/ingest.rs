//! Ingestion and identity through the real binary: CLI-created source, tokens issued while the
//! server runs, Segment calls over HTTP, lookup, identity view, split.

use serde_json::json;

use crate::support::{Server, temp_dir};

#[test]
fn events_from_two_channels_become_one_profile_and_can_be_split() {
    let dir = temp_dir();
    let server = Server::start(dir.path(), &[], &[]).unwrap();
    // Issued while `serve` holds the data directory: reads only keys/token.key.
    let admin = server.token(dir.path(), &["admin"]);
    let web = server.create_source(&admin, "web shop", "web");
    let store = server.create_source(&admin, "store 12", "pos");

    let first = server.ingest("/v1/batch", &web, &json!({"batch": [
        {"type":"page","anonymousId":"anon-9","name":"Home","messageId":"w1","timestamp":"2026-11-01T10:00:00Z"},
        {"type":"identify","anonymousId":"anon-9","userId":"member-9","messageId":"w2","timestamp":"2026-11-01T10:01:00Z",
         "traits":{"email":"Li.Na@example.com","name":"李娜"}},
    ]}));
    assert_eq!(first.status, 200, "{}", first.text());
    assert_eq!(first.json()["accepted"], 2);
    // The store's POS knows her phone (national format, CN source) and a shared till device.
    let pos = server.ingest("/v1/identify", &store, &json!({"userId":"member-9","messageId":"p1",
        "timestamp":"2026-11-02T09:00:00Z","traits":{"phone":"138 0013 8000"},"context":{"device":{"id":"till-3"}}}));
    assert_eq!(pos.status, 200, "{}", pos.text());

    let by_email = server
        .profile_of(&admin, "email", "li.na@example.com")
        .expect("found by e-mail");
    assert_eq!(
        server
            .profile_of(&admin, "phone", "+8613800138000")
            .as_deref(),
        Some(by_email.as_str())
    );
    assert_eq!(
        server
            .profile_of(&admin, "anonymous_id", "anon-9")
            .as_deref(),
        Some(by_email.as_str())
    );
    let profile = server
        .get_with(
            &format!("/v1/profiles/{by_email}?purpose=essential.service"),
            &admin,
        )
        .json();
    assert_eq!(profile["event_count"], 3);
    assert_eq!(profile["channels"]["pos"]["events"], 1);
    // A CN source: names are masked for display (GB/T 35273 7.2).
    assert_eq!(profile["traits"]["name"]["value"], "李*");
    assert_eq!(profile["traits"]["name"]["channel"], "web");

    // Why is this one person?
    let identity = server
        .get_with(
            &format!("/v1/profiles/{by_email}/identity?purpose=essential.service"),
            &admin,
        )
        .json();
    let edges = identity["edges"].as_array().unwrap();
    assert!(
        edges
            .iter()
            .any(|e| e["first"]["message_id"] == "p1" && e["first"]["channel"] == "pos"),
        "{identity}"
    );

    // The till device was a mistake: split it off.
    let split = server.post_with(
        &format!("/v1/profiles/{by_email}/split"),
        &admin,
        &json!({"identifier": {"type": "device_id", "value": "till-3"}}),
    );
    assert_eq!(split.status, 200, "{}", split.text());
    let after = server
        .get_with(
            &format!("/v1/profiles/{by_email}/identity?purpose=essential.service"),
            &admin,
        )
        .json();
    assert!(
        after["identifiers"]
            .as_array()
            .unwrap()
            .iter()
            .all(|i| i["type"] != "device_id"),
        "{after}"
    );
    assert!(
        after["merge_log"]
            .as_array()
            .unwrap()
            .iter()
            .any(|entry| entry["kind"] == "split")
    );

    // Role checks and errors over the wire.
    let marketer = server.token(dir.path(), &["marketer"]);
    assert_eq!(
        server
            .get_with(
                &format!("/v1/profiles/{by_email}?purpose=essential.service"),
                &marketer
            )
            .status,
        403
    );
    assert_eq!(
        server
            .get_with(
                "/v1/profiles/p_00000000000000000000000000000000?purpose=essential.service",
                &admin
            )
            .status,
        404
    );
    assert_eq!(
        server.get_with("/v1/profiles/not-an-id", &admin).status,
        400
    );
    let (status, logs) = server.stop_with("TERM");
    assert!(status.success());
    let personal = [
        "li.na",
        "Li.Na",
        "李娜",
        "13800138000",
        "member-9",
        "anon-9",
        "till-3",
    ];
    for value in personal {
        assert!(
            !logs.contains(value),
            "personal value {value:?} in logs:\n{logs}"
        );
    }
    // Invariant 1 through the whole ingestion path: nothing personal in clear on disk.
    crate::support::assert_no_clear_values(dir.path(), &personal);
}

#[test]
fn a_slow_request_in_flight_at_sigterm_completes_and_is_durable() {
    let dir = temp_dir();
    let server = Server::start(dir.path(), &[], &[]).unwrap();
    let admin = server.token(dir.path(), &["admin"]);
    let key = server.create_source(&admin, "web", "web");
    let body =
        json!({"userId":"slow-1","event":"Order Completed","messageId":"slow-m1"}).to_string();
    use base64::Engine as _;
    use std::io::Write;
    let credentials = base64::engine::general_purpose::STANDARD.encode(format!("{key}:"));
    let mut stream = std::net::TcpStream::connect(server.addr).unwrap();
    stream
        .set_read_timeout(Some(std::time::Duration::from_secs(20)))
        .unwrap();
    let head = format!(
        "POST /v1/track HTTP/1.1\r\nHost: cdp\r\nAuthorization: Basic {credentials}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes()).unwrap();
    // Half the body now, the signal, then the rest: the request is in flight at the signal.
    let (first, rest) = body.as_bytes().split_at(body.len() / 2);
    stream.write_all(first).unwrap();
    std::thread::sleep(std::time::Duration::from_millis(200));
    crate::support::signal_process(server.pid(), "TERM");
    std::thread::sleep(std::time::Duration::from_millis(300));
    stream.write_all(rest).unwrap();
    let response = crate::support::read_response(&mut stream);
    assert_eq!(response.status, 200, "{}", response.text());
    let (status, _) = server.stop_with("TERM");
    assert!(status.success());

    let server = Server::start(dir.path(), &[], &[]).unwrap();
    assert!(
        server.profile_of(&admin, "user_id", "slow-1").is_some(),
        "the acknowledged event survived the shutdown"
    );
}
