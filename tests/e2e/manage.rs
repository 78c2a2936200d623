//! Managing what one created (issue 21, item 4), through the CLI as an operator would:
//! `cdp recipients`, `cdp suppressions`, `cdp audiences`, `cdp sources`, `cdp export list|show|
//! delete`, and what each change does to exports and ingestion at once.

use std::process::Output;
use std::time::{Duration, Instant};

use serde_json::json;

use crate::support::{Server, cdp, http, run, temp_dir, text};

/// Runs `cdp ARGS --server URL --token TOKEN`.
fn cli(server: &Server, token: &str, args: &[&str]) -> Output {
    run(cdp()
        .args(args)
        .args(["--server", &server.base_url(), "--token", token]))
}

/// Runs it and answers stdout; fails the test with stderr if it failed.
fn ok(server: &Server, token: &str, args: &[&str]) -> String {
    let output = cli(server, token, args);
    assert!(
        output.status.success(),
        "cdp {args:?}: {}",
        text(&output.stderr)
    );
    text(&output.stdout)
}

/// Runs it, expects a refusal, answers stderr.
fn refused(server: &Server, token: &str, args: &[&str]) -> String {
    let output = cli(server, token, args);
    assert!(
        !output.status.success(),
        "cdp {args:?} should fail: {}",
        text(&output.stdout)
    );
    text(&output.stderr)
}

/// The word after `label` on the first line that starts with it.
fn field(stdout: &str, label: &str) -> String {
    stdout
        .lines()
        .find_map(|line| line.strip_prefix(label))
        .and_then(|rest| rest.split_whitespace().next())
        .unwrap_or_else(|| panic!("no {label:?} in {stdout}"))
        .trim_end_matches(':')
        .to_string()
}

/// Waits until `what` ("count" or "matched") of the query reaches `expected`.
fn wait_for(server: &Server, token: &str, query: &str, purpose: &str, what: &str, expected: u64) {
    let started = Instant::now();
    loop {
        let count = server
            .post_with(
                "/v1/audiences/count",
                token,
                &json!({"query": query, "purpose": purpose}),
            )
            .json();
        if count[what] == expected {
            return;
        }
        assert!(started.elapsed() < Duration::from_secs(10), "{count}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn recipients_suppressions_and_exports_are_managed_from_the_cli_and_exports_follow_at_once() {
    let dir = temp_dir();
    let server = Server::start(dir.path(), &[], &[]).unwrap();
    let admin = server.token(dir.path(), &["admin"]);
    let service = server.token(dir.path(), &["customer_service"]);
    let key = server.create_source(&admin, "app", "ios");
    let batch: Vec<_> = (0..24)
        .map(|i| {
            json!({"type": "identify", "userId": format!("m-{i}"), "traits": {
                "email": format!("m{i}@example.com"), "phone": format!("1370000{i:04}"),
                "address": {"country": "CN", "city": "深圳"}}})
        })
        .collect();
    let response = server.ingest("/v1/batch", &key, &json!({ "batch": batch }));
    assert_eq!(response.status, 200, "{}", response.text());
    for i in 0..22 {
        let response = server.post_with("/v1/consents", &service, &json!({
            "subject": {"type": "user_id", "value": format!("m-{i}")}, "purpose": "marketing.sms",
            "status": "granted", "notice_version": "2026-01", "source": "app", "evidence": {"screen": "sms"}}));
        assert_eq!(response.status, 200, "{}", response.text());
    }

    // Recipients: add, show, update (a bad value changes nothing), list.
    let added = ok(
        &server,
        &admin,
        &[
            "recipients",
            "add",
            "--name",
            "SMS gateway",
            "--contact",
            "dpo@sms.example.cn",
            "--region",
            "cn",
            "--purpose",
            "marketing.sms",
        ],
    );
    let recipient = field(&added, "recipient");
    assert!(recipient.starts_with("rcp_"), "{added}");
    let stderr = refused(
        &server,
        &admin,
        &["recipients", "update", &recipient, "--region", "China"],
    );
    assert!(
        stderr.contains("400") && stderr.contains("two-letter"),
        "{stderr}"
    );
    let updated = ok(
        &server,
        &admin,
        &[
            "recipients",
            "update",
            &recipient,
            "--name",
            "SMS gateway (Shenzhen)",
            "--purpose",
            "marketing.sms",
            "--purpose",
            "marketing.email",
        ],
    );
    assert!(updated.contains("SMS gateway (Shenzhen)"), "{updated}");
    let shown = ok(&server, &admin, &["recipients", "show", &recipient]);
    assert!(shown.contains("marketing.sms,marketing.email"), "{shown}");
    assert!(shown.contains("region             CN"), "{shown}");
    let stderr = refused(
        &server,
        &admin,
        &["recipients", "update", &recipient, "--purpose", "astrology"],
    );
    assert!(stderr.contains("not a purpose of the taxonomy"), "{stderr}");
    let shown = ok(&server, &admin, &["recipients", "show", &recipient]);
    assert!(shown.contains("marketing.sms,marketing.email"), "{shown}");

    // Suppressions: two added; the list has their types and no value.
    ok(
        &server,
        &admin,
        &[
            "suppressions",
            "add",
            "--type",
            "email",
            "--value",
            "M3@Example.com",
        ],
    );
    ok(
        &server,
        &admin,
        &["suppressions", "add", "--type", "user_id", "--value", "m-4"],
    );
    let list = ok(&server, &admin, &["suppressions", "list"]);
    assert!(list.contains("2 on the suppression list"), "{list}");
    assert!(
        list.contains(" email ") && list.contains(" user_id "),
        "{list}"
    );
    assert!(
        !list.contains("m3@example.com") && !list.contains("m-4"),
        "{list}"
    );

    wait_for(&server, &admin, "city:深圳", "marketing.sms", "count", 22);
    let created = ok(
        &server,
        &admin,
        &[
            "audiences",
            "create",
            "--name",
            "深圳",
            "--purpose",
            "marketing.sms",
            "--query",
            "city:深圳",
        ],
    );
    let audience = field(&created, "audience");
    let work = temp_dir();
    let export = |out: &str| {
        cli(
            &server,
            &admin,
            &[
                "export",
                "create",
                "--audience",
                &audience,
                "--purpose",
                "marketing.sms",
                "--recipient",
                &recipient,
                "--field",
                "pseudonym",
                "--out",
                work.path().join(out).to_str().unwrap(),
            ],
        )
    };
    let first = export("first.csv");
    assert!(first.status.success(), "{}", text(&first.stderr));
    let first = text(&first.stdout);
    assert!(first.contains("20 included"), "{first}");
    let first_id = field(&first, "export");
    let shown = ok(&server, &admin, &["export", "show", &first_id]);
    assert!(shown.contains("status    done"), "{shown}");
    assert!(shown.contains("2  suppressed"), "{shown}");

    // Off the list again, one by value and one by the id the list shows.
    ok(
        &server,
        &admin,
        &[
            "suppressions",
            "remove",
            "--type",
            "email",
            "--value",
            "m3@example.com",
        ],
    );
    let list = ok(&server, &admin, &["suppressions", "list"]);
    let id = field(&list, "sup_");
    ok(
        &server,
        &admin,
        &["suppressions", "remove", "--id", &format!("sup_{id}")],
    );
    let list = ok(&server, &admin, &["suppressions", "list"]);
    assert!(list.contains("0 on the suppression list"), "{list}");
    let stderr = refused(
        &server,
        &admin,
        &[
            "suppressions",
            "remove",
            "--type",
            "user_id",
            "--value",
            "m-4",
        ],
    );
    assert!(
        stderr.contains("404") && stderr.contains("not on the suppression list"),
        "{stderr}"
    );
    let second = export("second.csv");
    assert!(second.status.success(), "{}", text(&second.stderr));
    assert!(
        text(&second.stdout).contains("22 included"),
        "{}",
        text(&second.stdout)
    );

    // Deleting an export: its file is gone, its signed manifest stays.
    let deleted = ok(&server, &admin, &["export", "delete", &first_id]);
    assert!(
        deleted.contains("withdrawn") && deleted.contains("deleted by"),
        "{deleted}"
    );
    let download = server.get_with(&format!("/v1/exports/{first_id}/file"), &admin);
    assert_eq!(download.status, 409, "{}", download.text());
    let manifest = server.get_with(&format!("/v1/exports/{first_id}/manifest"), &admin);
    assert_eq!(manifest.status, 200, "{}", manifest.text());
    let listed = ok(&server, &admin, &["export", "list"]);
    assert!(
        listed.contains(&format!("{first_id}  withdrawn")),
        "{listed}"
    );
    let stderr = refused(&server, &admin, &["export", "delete", &first_id]);
    assert!(stderr.contains("409"), "{stderr}");

    // Retired: every later export is refused at once; it stays on record.
    let retired = ok(&server, &admin, &["recipients", "retire", &recipient]);
    assert!(retired.contains("retired at"), "{retired}");
    let third = export("third.csv");
    assert!(!third.status.success());
    let stderr = text(&third.stderr);
    assert!(
        stderr.contains("409") && stderr.contains("was retired"),
        "{stderr}"
    );
    assert!(!work.path().join("third.csv").exists());
    let list = ok(&server, &admin, &["recipients", "list"]);
    assert!(
        list.contains("retired") && list.contains(&recipient),
        "{list}"
    );
    let stderr = refused(&server, &admin, &["recipients", "retire", &recipient]);
    assert!(stderr.contains("already retired"), "{stderr}");
    let stderr = refused(
        &server,
        &admin,
        &["recipients", "update", &recipient, "--name", "back"],
    );
    assert!(stderr.contains("409"), "{stderr}");
    let ropa = server.get_with("/v1/policies/ropa", &admin).json();
    let markdown = ropa["markdown"].as_str().unwrap();
    assert!(
        markdown.contains("SMS gateway (Shenzhen) (retired "),
        "{markdown}"
    );

    // Every change is in the audit log under the caller's name.
    let audit = server.get_with("/v1/audit?limit=1000", &admin).json();
    let actions: Vec<&str> = audit["entries"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|entry| entry["action"].as_str())
        .collect();
    for action in [
        "recipient.create",
        "recipient.update",
        "recipient.retire",
        "suppression.add",
        "suppression.remove",
        "export.delete",
    ] {
        assert!(actions.contains(&action), "{action} not in {actions:?}");
    }
    // A reader without the permission is refused.
    let marketer = server.token(dir.path(), &["marketer"]);
    let response = http(
        server.addr,
        "DELETE",
        &format!("/v1/recipients/{recipient}"),
        &[("Authorization", &format!("Bearer {marketer}"))],
        b"",
    );
    assert_eq!(response.status, 403, "{}", response.text());
}

#[test]
fn audiences_and_sources_are_read_changed_and_revoked_from_the_cli() {
    let dir = temp_dir();
    let server = Server::start(dir.path(), &[], &[]).unwrap();
    let admin = server.token(dir.path(), &["admin"]);
    let key = server.create_source(&admin, "shop", "web");
    let batch: Vec<_> = (0..6)
        .map(|i| {
            let city = if i < 4 { "Hamburg" } else { "Köln" };
            json!({"type": "identify", "userId": format!("a-{i}"),
                "traits": {"address": {"country": "DE", "city": city}}})
        })
        .collect();
    let response = server.ingest("/v1/batch", &key, &json!({ "batch": batch }));
    assert_eq!(response.status, 200, "{}", response.text());
    wait_for(&server, &admin, "city:Hamburg", "analytics", "matched", 4);

    let created = ok(
        &server,
        &admin,
        &[
            "audiences",
            "create",
            "--name",
            "Hamburg",
            "--purpose",
            "analytics",
            "--query",
            "city:Hamburg",
        ],
    );
    let audience = field(&created, "audience");
    assert!(created.contains("of 4 matching"), "{created}");
    let counted = ok(
        &server,
        &admin,
        &["audiences", "count", "city:Köln", "--purpose", "analytics"],
    );
    assert!(counted.contains("of 2 matching"), "{counted}");

    // A bad definition is refused with where it went wrong, and changes nothing.
    let stderr = refused(
        &server,
        &admin,
        &["audiences", "update", &audience, "--query", "city:(Hamburg"],
    );
    assert!(stderr.contains("400"), "{stderr}");
    let updated = ok(
        &server,
        &admin,
        &[
            "audiences",
            "update",
            &audience,
            "--name",
            "Hamburg und Köln",
            "--query",
            "city:Hamburg OR city:Köln",
        ],
    );
    assert!(updated.contains("Hamburg und Köln"), "{updated}");
    assert!(updated.contains("of 6 matching"), "{updated}");
    let shown = ok(&server, &admin, &["audiences", "show", &audience]);
    assert!(shown.contains("city:Hamburg OR city:Köln"), "{shown}");
    let listed = ok(&server, &admin, &["audiences", "list"]);
    assert!(
        listed.contains(&audience) && listed.contains("Hamburg und Köln"),
        "{listed}"
    );
    let record = server
        .get_with(&format!("/v1/audiences/{audience}"), &admin)
        .json();
    assert!(record["updated_at"].is_string(), "{record}");
    ok(&server, &admin, &["audiences", "delete", &audience]);
    let stderr = refused(&server, &admin, &["audiences", "show", &audience]);
    assert!(stderr.contains("404"), "{stderr}");

    // Sources: show, rotate (the old key refused at once), revoke (the new one too).
    let sources = ok(&server, &admin, &["sources", "list"]);
    let source = sources.split_whitespace().next().unwrap().to_string();
    let shown = ok(&server, &admin, &["sources", "show", &source]);
    assert!(shown.contains("shop") && shown.contains("web"), "{shown}");
    assert!(!shown.contains(&key), "the write key is never shown again");
    let track = json!({"type": "track", "userId": "a-1", "event": "Viewed"});
    assert_eq!(server.ingest("/v1/track", &key, &track).status, 200);
    let rotated = ok(&server, &admin, &["sources", "rotate", &source]);
    let new_key = field(&rotated, "write key");
    assert_eq!(server.ingest("/v1/track", &key, &track).status, 401);
    assert_eq!(server.ingest("/v1/track", &new_key, &track).status, 200);
    let shown = ok(&server, &admin, &["sources", "show", &source]);
    assert!(shown.contains("key rotated"), "{shown}");
    ok(&server, &admin, &["sources", "revoke", &source]);
    assert_eq!(server.ingest("/v1/track", &new_key, &track).status, 401);
    let shown = ok(&server, &admin, &["sources", "show", &source]);
    assert!(shown.contains("revoked"), "{shown}");
    let stderr = refused(
        &server,
        &admin,
        &["sources", "show", "src_0000000000000000"],
    );
    assert!(stderr.contains("404"), "{stderr}");
}
