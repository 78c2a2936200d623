//! Campaigns over HTTP: a holdout kept from contact, A/B variants named in each row, the
//! same assignment at every send, through the export's gates and signed manifest.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::support::{Server, assert_no_clear_values, temp_dir};

pub(crate) fn phone(i: usize) -> String {
    format!("1360000{i:04}")
}

pub(crate) fn wait_done(server: &Server, token: &str, export: &str) -> Value {
    let started = Instant::now();
    loop {
        let job = server
            .get_with(&format!("/v1/exports/{export}"), token)
            .json();
        if job["status"] != "running" {
            assert_eq!(job["status"], "done", "{job}");
            return job;
        }
        assert!(started.elapsed() < Duration::from_secs(30), "{job}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The SMS gateway every SMS campaign test sends to: a processor in CN for SMS marketing.
pub(crate) fn sms_gateway(server: &Server, admin: &str) -> Value {
    let recipient = server.post_with("/v1/recipients", admin, &json!({"name": "SMS gateway", "contact": "dpo@sms.example.cn",
        "role": "processor", "region": "CN", "transfer_mechanism": "none", "allowed_purposes": ["marketing.sms"]}));
    assert_eq!(recipient.status, 201, "{}", recipient.text());
    recipient.json()
}

/// Users `<prefix>-0..n` grant SMS marketing, as an app's consent screen records it.
pub(crate) fn grant_sms(server: &Server, admin: &str, prefix: &str, n: usize) {
    let consents: Vec<Value> = (0..n)
        .map(|i| {
            json!({"subject": {"type": "user_id", "value": format!("{prefix}-{i}")},
            "purpose": "marketing.sms", "status": "granted", "notice_version": "2026-01",
            "source": "app", "evidence": {"screen": "sms"}})
        })
        .collect();
    let recorded = server.post_with("/v1/consents/batch", admin, &json!({"consents": consents}));
    assert_eq!(recorded.json()["recorded"], n, "{}", recorded.text());
}

/// A config file with the default frequency caps and no quiet hours.
pub(crate) fn without_quiet_hours(dir: &std::path::Path) -> String {
    let config = dir.join("campaigns.toml");
    std::fs::write(&config, "[campaigns]\nquiet_hours = {}\n").unwrap();
    config.to_str().unwrap().to_string()
}

/// The send's rows of people it contacted (not the removals a later send lists against the
/// one before): pseudonym -> (arm, phone).
pub(crate) fn rows_of(
    server: &Server,
    token: &str,
    export: &str,
) -> BTreeMap<String, (String, String)> {
    let file = server.get_with(&format!("/v1/exports/{export}/file"), token);
    assert_eq!(file.status, 200, "{}", file.text());
    file.text()
        .lines()
        .map(|line| serde_json::from_str::<Value>(line).unwrap())
        .filter(|row| row["op"] != "remove")
        .map(|row| {
            assert_eq!(row["op"], "add", "{row}");
            (
                row["pseudonym"].as_str().unwrap().to_string(),
                (
                    row["arm"].as_str().unwrap().to_string(),
                    row["identifiers.phone"].as_str().unwrap().to_string(),
                ),
            )
        })
        .collect()
}

/// The send's rows: pseudonym -> arm.
fn arms_of(server: &Server, token: &str, export: &str) -> BTreeMap<String, String> {
    rows_of(server, token, export)
        .into_iter()
        .map(|(pseudonym, (arm, _))| (pseudonym, arm))
        .collect()
}

#[test]
fn a_campaign_keeps_its_holdout_from_contact_and_assigns_the_same_arms_at_every_send() {
    let dir = temp_dir();
    // No quiet hours: the test must not depend on the time of day it runs (the default caps,
    // two SMS a week, allow its two sends).
    let config = without_quiet_hours(dir.path());
    let server = Server::start(dir.path(), &["--config", &config], &[]).unwrap();
    let admin = server.token(dir.path(), &["admin"]);
    let marketer = server.token(dir.path(), &["marketer"]);
    let key = server.create_source(&admin, "app", "ios");
    let (people, consented) = (300, 280);
    let batch: Vec<Value> = (0..people)
        .map(|i| {
            json!({"type": "identify", "userId": format!("c-{i}"),
                "traits": {"phone": phone(i), "address": {"country": "CN", "city": "深圳"}}})
        })
        .collect();
    let response = server.ingest("/v1/batch", &key, &json!({ "batch": batch }));
    assert_eq!(response.status, 200, "{}", response.text());
    let consents: Vec<Value> = (0..consented)
        .map(|i| {
            json!({"subject": {"type": "user_id", "value": format!("c-{i}")},
            "purpose": "marketing.sms", "status": "granted", "notice_version": "2026-01",
            "source": "app", "evidence": {"screen": "sms"}})
        })
        .collect();
    let recorded = server.post_with("/v1/consents/batch", &admin, &json!({"consents": consents}));
    assert_eq!(
        recorded.json()["recorded"],
        consented,
        "{}",
        recorded.text()
    );
    let started = Instant::now();
    loop {
        let count = server
            .post_with(
                "/v1/audiences/count",
                &marketer,
                &json!({"query": "city:深圳", "purpose": "marketing.sms"}),
            )
            .json();
        if count["count"] == consented {
            break;
        }
        assert!(started.elapsed() < Duration::from_secs(10), "{count}");
        std::thread::sleep(Duration::from_millis(50));
    }
    let recipient = crate::campaigns::sms_gateway(&server, &admin);
    let audience = server
        .post_with(
            "/v1/audiences",
            &marketer,
            &json!({"name": "深圳", "purpose": "marketing.sms", "query": "city:深圳"}),
        )
        .json();
    let body = |changes: Value| {
        let mut body = json!({"name": "双十二 SMS", "audience": audience["id"], "purpose": "marketing.sms",
            "channel": "sms", "recipient": recipient["id"], "fields": ["pseudonym", "identifiers.phone"],
            "format": "jsonl", "holdout": 0.2, "variants": [{"name": "A", "weight": 1}, {"name": "B", "weight": 1}],
            "cost": {"per_contact": 0.05}, "conversion": {"event": "Order Completed", "within_days": 14}});
        for (key, value) in changes.as_object().unwrap() {
            body[key] = value.clone();
        }
        body
    };
    for (changes, says) in [
        (json!({"holdout": 0.7}), "holdout"),
        (
            json!({"variants": [{"name": "A", "weight": 1}, {"name": "A", "weight": 2}]}),
            "differ",
        ),
        (json!({"variants": [{"name": "A", "weight": 0}]}), "weight"),
        (json!({"fields": ["identifiers.phone"]}), "pseudonym"),
        (json!({"channel": "fax"}), "expected"),
        (
            json!({"conversion": {"event": "Order Completed", "within_days": 0}}),
            "within_days",
        ),
    ] {
        let refused = server.post_with("/v1/campaigns", &marketer, &body(changes.clone()));
        assert_eq!(refused.status, 400, "{changes}: {}", refused.text());
        assert!(refused.text().contains(says), "{says}: {}", refused.text());
    }
    // The arm is a campaign's field only.
    let refused = server.post_with(
        "/v1/exports",
        &marketer,
        &json!({"audience": audience["id"],
        "purpose": "marketing.sms", "recipient": recipient["id"], "fields": ["pseudonym", "arm"]}),
    );
    assert_eq!(refused.status, 400, "{}", refused.text());
    let analyst = server.token(dir.path(), &["analyst"]);
    assert_eq!(
        server
            .post_with("/v1/campaigns", &analyst, &body(json!({})))
            .status,
        403
    );

    let campaign = server.post_with("/v1/campaigns", &marketer, &body(json!({})));
    assert_eq!(campaign.status, 201, "{}", campaign.text());
    let campaign = campaign.json();
    let id = campaign["id"].as_str().unwrap().to_string();
    assert!(
        campaign["fields"]
            .as_array()
            .unwrap()
            .contains(&json!("arm")),
        "{campaign}"
    );

    let send = |n: usize| -> (Value, BTreeMap<String, String>) {
        let started = server.post_with(&format!("/v1/campaigns/{id}/send"), &marketer, &json!({}));
        assert_eq!(started.status, 202, "{}", started.text());
        let export = started.json()["id"].as_str().unwrap().to_string();
        let job = wait_done(&server, &marketer, &export);
        let view = server
            .get_with(&format!("/v1/campaigns/{id}"), &marketer)
            .json();
        assert_eq!(view["send_history"].as_array().unwrap().len(), n, "{view}");
        assert_eq!(view["send_history"][0]["export_id"], export, "{view}");
        (job, arms_of(&server, &marketer, &export))
    };
    let (first, arms) = send(1);
    let manifest = &first["manifest"];
    assert_eq!(manifest["campaign"], id, "{manifest}");
    let holdout = manifest["counts"]["excluded"]["holdout"].as_u64().unwrap();
    let contacted = manifest["counts"]["included"].as_u64().unwrap();
    // Everyone the gates allowed is either contacted or held out: 280 eligible people.
    assert_eq!(holdout + contacted, consented as u64, "{manifest}");
    assert_eq!(arms.len() as u64, contacted);
    // A fifth held out, the rest split evenly (bounds of five standard deviations).
    assert!((22..=90).contains(&holdout), "holdout {holdout}");
    let a = arms.values().filter(|arm| *arm == "A").count();
    let b = arms.values().filter(|arm| *arm == "B").count();
    assert_eq!(a + b, arms.len(), "{arms:?}");
    assert!(
        (70..=155).contains(&a) && (70..=155).contains(&b),
        "A {a}, B {b}"
    );

    // The second send assigns everyone as the first did: the same people contacted, in the
    // same arms, and the same people held out.
    let (second, again) = send(2);
    assert_eq!(again, arms);
    assert_eq!(second["manifest"]["counts"]["excluded"]["holdout"], holdout);
    let view = server
        .get_with(&format!("/v1/campaigns/{id}"), &marketer)
        .json();
    assert_eq!(view["send_history"][0]["holdout"], holdout, "{view}");
    assert_eq!(view["send_history"][0]["contacted"], contacted, "{view}");
    let listed = server.get_with("/v1/campaigns", &marketer).json();
    assert_eq!(listed["campaigns"][0]["id"], id, "{listed}");

    // Conversions after the send, planted: half of the contacted people order, 1 in 10 of
    // the held out (chosen by their number, which the assignment knows nothing of).
    let contacted_people: BTreeMap<usize, String> =
        rows_of(&server, &marketer, first["id"].as_str().unwrap())
            .into_values()
            .map(|(arm, phone)| (phone[phone.len() - 4..].parse::<usize>().unwrap(), arm))
            .collect();
    let converts = |i: usize| {
        if contacted_people.contains_key(&i) {
            i % 10 < 5
        } else {
            i % 10 < 1
        }
    };
    let orders: Vec<Value> = (0..consented)
        .filter(|i| converts(*i))
        .map(|i| {
            json!({"type": "track", "userId": format!("c-{i}"), "event": "Order Completed",
            "properties": {"revenue": 100}})
        })
        .collect();
    let response = server.ingest("/v1/batch", &key, &json!({ "batch": orders }));
    assert_eq!(response.status, 200, "{}", response.text());
    let results = server
        .get_with(
            &format!(
                "/v1/campaigns/{id}/results?export={}",
                first["id"].as_str().unwrap()
            ),
            &analyst,
        )
        .json();
    let arm = |name: &str| {
        results["arms"]
            .as_array()
            .unwrap()
            .iter()
            .find(|a| a["arm"] == name)
            .unwrap()
            .clone()
    };
    let expected = |name: &str| -> (u64, u64) {
        let members: Vec<usize> = (0..consented)
            .filter(|i| match name {
                "holdout" => !contacted_people.contains_key(i),
                arm => contacted_people.get(i).is_some_and(|a| a == arm),
            })
            .collect();
        (
            members.len() as u64,
            members.iter().filter(|i| converts(**i)).count() as u64,
        )
    };
    for name in ["holdout", "A", "B"] {
        let (members, conversions) = expected(name);
        let got = arm(name);
        assert_eq!(
            (got["members"].as_u64(), got["conversions"].as_u64()),
            (Some(members), Some(conversions)),
            "{name}: {results}"
        );
        assert_eq!(
            got["revenue"].as_f64(),
            Some(conversions as f64 * 100.0),
            "{name}"
        );
        assert_eq!(
            got["new_customers"].as_u64(),
            Some(conversions),
            "{name}: nobody ordered before"
        );
    }
    let (hm, hc) = expected("holdout");
    for name in ["A", "B"] {
        let (m, c) = expected(name);
        let points = (c as f64 / m as f64 - hc as f64 / hm as f64) * 100.0;
        let uplift = &arm(name)["uplift"];
        assert!(
            (uplift["points"].as_f64().unwrap() - points).abs() < 0.01,
            "{name}: {uplift} vs {points}"
        );
        let ci = uplift["ci95"].as_array().unwrap();
        assert!(
            ci[0].as_f64().unwrap() < points && points < ci[1].as_f64().unwrap(),
            "{uplift}"
        );
        assert_eq!(
            uplift["significant"], true,
            "50 % against 10 % (a difference the assignment cannot hide): {uplift}"
        );
    }
    let cost = results["cost"].as_f64().unwrap();
    assert!((cost - 0.05 * contacted as f64).abs() < 1e-6, "{results}");
    assert!(
        results["roi"].as_f64().unwrap() > 0.0 && results["cac"].as_f64().unwrap() > 0.0,
        "{results}"
    );
    // Aggregates only: nothing names a person (no profile id, no phone).
    let text = results.to_string().replace("\"p_value\"", "");
    assert!(!text.contains("\"p_") && !text.contains("+86"), "{results}");
    // An analyst reads results but does not send.
    assert_eq!(
        server
            .post_with(&format!("/v1/campaigns/{id}/send"), &analyst, &json!({}))
            .status,
        403
    );

    drop(server);
    let phones: Vec<String> = (0..people).map(phone).collect();
    assert_no_clear_values(
        dir.path(),
        &phones.iter().map(String::as_str).collect::<Vec<_>>(),
    );
}

/// The index of the person a row's phone belongs to (`phone(i)`).
pub(crate) fn person_of(phone: &str) -> usize {
    phone[phone.len() - 4..].parse().unwrap()
}

/// The people a send contacted, by index.
pub(crate) fn contacted(
    server: &Server,
    token: &str,
    export: &str,
) -> std::collections::BTreeSet<usize> {
    rows_of(server, token, export)
        .into_values()
        .map(|(_, phone)| person_of(&phone))
        .collect()
}

pub(crate) fn arm_named(results: &Value, name: &str) -> Value {
    results["arms"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["arm"] == name)
        .unwrap_or_else(|| panic!("no arm {name}: {results}"))
        .clone()
}

#[test]
fn contact_pressure_holds_across_campaigns_sent_at_once_and_engagement_comes_back() {
    let dir = temp_dir();
    // Two SMS a week across campaigns; quiet hours only where a campaign sets its own.
    let config = dir.path().join("campaigns.toml");
    std::fs::write(
        &config,
        "[campaigns]\nquiet_hours = {}\ncaps = [{ channel = \"sms\", max = 2, window_days = 7 }]\n",
    )
    .unwrap();
    let server = Server::start(dir.path(), &["--config", config.to_str().unwrap()], &[]).unwrap();
    let admin = server.token(dir.path(), &["admin"]);
    let marketer = server.token(dir.path(), &["marketer"]);
    let analyst = server.token(dir.path(), &["analyst"]);
    let key = server.create_source(&admin, "app", "ios");
    // Half live in Shanghai, half in New York (12 or 13 hours apart).
    let people = 240;
    let shanghai = |i: usize| i < people / 2;
    let batch: Vec<Value> = (0..people)
        .map(|i| {
            let zone = if shanghai(i) {
                "Asia/Shanghai"
            } else {
                "America/New_York"
            };
            json!({"type": "identify", "userId": format!("p-{i}"),
                "traits": {"phone": phone(i), "city": "深圳", "timezone": zone}})
        })
        .collect();
    assert_eq!(
        server
            .ingest("/v1/batch", &key, &json!({ "batch": batch }))
            .status,
        200
    );
    grant_sms(&server, &admin, "p", people);
    let count = || {
        server
            .post_with(
                "/v1/audiences/count",
                &marketer,
                &json!({"query": "city:深圳", "purpose": "marketing.sms"}),
            )
            .json()["count"]
            .as_u64()
            .unwrap()
    };
    let started = Instant::now();
    while count() != people as u64 {
        assert!(started.elapsed() < Duration::from_secs(10));
        std::thread::sleep(Duration::from_millis(50));
    }
    let recipient = crate::campaigns::sms_gateway(&server, &admin);
    let audience = server
        .post_with(
            "/v1/audiences",
            &marketer,
            &json!({"name": "深圳", "purpose": "marketing.sms", "query": "city:深圳"}),
        )
        .json();
    // Two hours from the start of this hour in Shanghai: quiet there, afternoon or evening of
    // the day before in New York.
    let hour = (time::OffsetDateTime::now_utc().hour() as usize + 8) % 24;
    let quiet = format!("{hour:02}:00-{:02}:00", (hour + 2) % 24);
    let make = |name: &str, extra: Value| -> String {
        let mut body = json!({"name": name, "audience": audience["id"], "purpose": "marketing.sms",
            "channel": "sms", "recipient": recipient["id"], "fields": ["pseudonym", "identifiers.phone"],
            "format": "jsonl", "holdout": 0.1, "conversion": {"event": "Order Completed", "within_days": 14}});
        for (key, value) in extra.as_object().unwrap() {
            body[key] = value.clone();
        }
        let made = server.post_with("/v1/campaigns", &marketer, &body);
        assert_eq!(made.status, 201, "{}", made.text());
        made.json()["id"].as_str().unwrap().to_string()
    };
    // Bad contact rules are refused with what is wrong.
    for (contact, says) in [
        (json!({"quiet_hours": "21:00"}), "HH:MM-HH:MM"),
        (json!({"caps": [{"max": 0, "window_days": 7}]}), "max"),
        (
            json!({"caps": [{"max": 1, "window_days": 400}]}),
            "window_days",
        ),
    ] {
        let refused = server.post_with(
            "/v1/campaigns",
            &marketer,
            &json!({"name": "x",
            "audience": audience["id"], "purpose": "marketing.sms", "channel": "sms",
            "recipient": recipient["id"], "fields": ["pseudonym"], "contact": contact,
            "conversion": {"event": "Order Completed", "within_days": 14}}),
        );
        assert_eq!(refused.status, 400, "{contact}: {}", refused.text());
        assert!(refused.text().contains(says), "{says}: {}", refused.text());
    }
    let a = make(
        "A: quiet in Shanghai now",
        json!({"contact": {"quiet_hours": quiet}}),
    );
    // B's holdout is large enough that its figures stay above the minimum audience size (k = 20)
    // whatever the campaign id draws: at 10 % of 240 it falls below 20 about one run in six.
    let b = make("B", json!({"holdout": 0.3}));
    // C through the CLI.
    let made = crate::destinations::cli(
        &server,
        &marketer,
        &[
            "campaigns",
            "create",
            "--name",
            "C",
            "--audience",
            audience["id"].as_str().unwrap(),
            "--purpose",
            "marketing.sms",
            "--channel",
            "sms",
            "--recipient",
            recipient["id"].as_str().unwrap(),
            "--field",
            "pseudonym",
            "--field",
            "identifiers.phone",
            "--format",
            "jsonl",
            "--holdout",
            "0.1",
            "--attribution",
            "first_touch",
            "--attribution-days",
            "7",
        ],
    );
    let c = made.split_whitespace().next().unwrap().to_string();
    assert!(c.starts_with("cmp_"), "{made}");
    let send = |id: &str| -> String {
        let started = server.post_with(&format!("/v1/campaigns/{id}/send"), &marketer, &json!({}));
        assert_eq!(started.status, 202, "{}", started.text());
        started.json()["id"].as_str().unwrap().to_string()
    };

    // A and B at once: their member decisions take the channel's turn one after the other.
    let (send_a, send_b) = (send(&a), send(&b));
    let (job_a, job_b) = (
        wait_done(&server, &marketer, &send_a),
        wait_done(&server, &marketer, &send_b),
    );
    let excluded_a = &job_a["manifest"]["counts"]["excluded"];
    assert_eq!(excluded_a["quiet_hours"], people / 2, "{excluded_a}");
    let (in_a, in_b) = (
        contacted(&server, &marketer, &send_a),
        contacted(&server, &marketer, &send_b),
    );
    assert!(in_a.iter().all(|i| !shanghai(*i)), "{in_a:?}");
    assert!(in_b.iter().any(|i| shanghai(*i)), "B has no quiet hours");
    assert!(
        job_b["manifest"]["counts"]["excluded"]
            .get("quiet_hours")
            .is_none()
    );

    // C comes third: everyone A and B both contacted has had their two SMS this week.
    let send_c = send(&c);
    let job_c = wait_done(&server, &marketer, &send_c);
    let in_c = contacted(&server, &marketer, &send_c);
    let twice: Vec<usize> = in_a.intersection(&in_b).copied().collect();
    assert!(twice.len() > 50, "{}", twice.len());
    assert_eq!(
        job_c["manifest"]["counts"]["excluded"]["frequency_cap"],
        twice.len(),
        "{}",
        job_c["manifest"]
    );
    // The cap held for every person.
    for i in 0..people {
        let sends = [&in_a, &in_b, &in_c]
            .iter()
            .filter(|s| s.contains(&i))
            .count();
        assert!(sends <= 2, "person {i} contacted {sends} times");
    }
    // A campaign's own cap is stricter still: one SMS a day leaves out everyone contacted
    // today, before the arms are drawn (too few remain, so the send is refused, with counts).
    let d = make(
        "D",
        json!({"contact": {"caps": [{"max": 1, "window_days": 1}]}}),
    );
    let send_d = send(&d);
    let started = Instant::now();
    let job_d = loop {
        let job = server
            .get_with(&format!("/v1/exports/{send_d}"), &marketer)
            .json();
        if job["status"] != "running" {
            break job;
        }
        assert!(started.elapsed() < Duration::from_secs(30), "{job}");
        std::thread::sleep(Duration::from_millis(100));
    };
    let reached: std::collections::BTreeSet<usize> =
        in_a.iter().chain(&in_b).chain(&in_c).copied().collect();
    assert_eq!(job_d["status"], "refused", "{job_d}");
    assert_eq!(
        job_d["counts"]["excluded"]["frequency_cap"],
        reached.len(),
        "{job_d}"
    );

    // Engagement comes back as events naming the campaign; an unsubscribe withdraws consent.
    let b_people: Vec<usize> = in_b.iter().copied().collect();
    let mut events = Vec::new();
    for (n, i) in b_people.iter().take(40).enumerate() {
        let user = format!("p-{i}");
        events.push(
            json!({"type": "track", "userId": user, "event": "SMS Delivered",
            "properties": {"campaign_id": b}}),
        );
        if n < 20 {
            events.push(
                json!({"type": "track", "userId": user, "event": "SMS Link Clicked",
                "properties": {"campaign_id": b}}),
            );
        }
        if n < 5 {
            events.push(
                json!({"type": "track", "userId": user, "event": "Unsubscribed",
                "properties": {"campaign_id": b}}),
            );
        }
    }
    // Conversions: every third person orders, every sixth twice.
    for i in (0..people).filter(|i| i % 3 == 0) {
        let times = if i % 6 == 0 { 2 } else { 1 };
        for _ in 0..times {
            events.push(json!({"type": "track", "userId": format!("p-{i}"),
                "event": "Order Completed", "properties": {"revenue": 50}}));
        }
    }
    let response = server.ingest("/v1/batch", &key, &json!({ "batch": events }));
    assert_eq!(response.status, 200, "{}", response.text());
    let started = Instant::now();
    while count() != people as u64 - 5 {
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "the unsubscribes did not withdraw consent: {}",
            count()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    // A member of B who did not order as themselves orders as a guest, and is then recognised:
    // the guest profile merges with theirs, and so does the conversion.
    let merged = *b_people.iter().rev().find(|i| *i % 3 != 0).unwrap();
    for message in [
        json!({"type": "track", "anonymousId": "guest-1", "event": "Order Completed",
            "properties": {"revenue": 70}}),
        json!({"type": "identify", "userId": format!("p-{merged}"), "anonymousId": "guest-1"}),
    ] {
        let response = server.ingest("/v1/batch", &key, &json!({ "batch": [message] }));
        assert_eq!(response.status, 200, "{}", response.text());
    }
    // A converted member of C is erased: their conversion leaves the figures with them.
    let engaged: Vec<usize> = b_people.iter().take(40).copied().collect();
    let erased = *in_c
        .iter()
        .find(|i| *i % 3 == 0 && (in_a.contains(i) || in_b.contains(i)) && !engaged.contains(i))
        .unwrap();
    let dpo = server.token(dir.path(), &["dpo"]);
    let request = server.post_with(
        "/v1/requests",
        &dpo,
        &json!({"type": "erasure", "subject": {"type": "user_id", "value": format!("p-{erased}")},
        "verification": {"method": "signed-in app session", "checked_by": "dpo-1"}}),
    );
    assert_eq!(request.json()["status"], "done", "{}", request.text());
    let results = |id: &str| {
        let response = server.get_with(&format!("/v1/campaigns/{id}/results"), &analyst);
        assert_eq!(response.status, 200, "{}", response.text());
        response.json()
    };
    let rb = results(&b);
    let treated = arm_named(&rb, "treatment");
    assert_eq!(treated["sent"], in_b.len(), "{rb}");
    assert_eq!(
        (
            &treated["delivered"],
            &treated["opened"],
            &treated["clicked"],
            &treated["unsubscribed"]
        ),
        (&json!(40), &json!(20), &json!(20), &json!(5)),
        "{rb}"
    );
    assert_eq!(arm_named(&rb, "holdout")["sent"], 0, "{rb}");
    assert_eq!(arm_named(&rb, "holdout")["delivered"], 0, "{rb}");
    let ra = results(&a);
    assert_eq!(ra["held_back"]["quiet_hours"], people / 2, "{ra}");

    // C credits conversions by first touch: only those of people no earlier send reached.
    let rc = results(&c);
    let c_treated = arm_named(&rc, "treatment");
    // The guest who merged into a member of B converted too, and C counts them when C
    // reached them as well (when A had not: the cap).
    let converters: Vec<usize> = in_c
        .iter()
        .copied()
        .filter(|i| (i % 3 == 0 && *i != erased) || *i == merged)
        .collect();
    let first_touch: usize = converters
        .iter()
        .filter(|i| !in_a.contains(i) && !in_b.contains(i))
        .count();
    assert_eq!(c_treated["conversions"], converters.len(), "{rc}");
    assert_eq!(c_treated["attributed_conversions"], first_touch, "{rc}");
    assert_eq!(
        c_treated["attributed_revenue"].as_f64(),
        Some(
            converters
                .iter()
                .filter(|i| !in_a.contains(i) && !in_b.contains(i))
                .map(|i| if i % 6 == 0 { 100.0 } else { 50.0 })
                .sum::<f64>()
        ),
        "{rc}"
    );
    let repeat = converters.iter().filter(|i| *i % 6 == 0).count();
    let rate = c_treated["repurchase_rate"].as_f64().unwrap();
    assert!(
        (rate - repeat as f64 / converters.len() as f64).abs() < 1e-3,
        "{rate} vs {repeat}/{}",
        converters.len()
    );
    let shown = crate::destinations::cli(&server, &analyst, &["campaigns", "results", &c]);
    assert!(
        shown.contains("treatment")
            && shown.contains("holdout")
            && shown.contains("first_touch")
            && shown.contains(&format!("{} by frequency caps", twice.len())),
        "{shown}"
    );
    let listed = crate::destinations::cli(&server, &marketer, &["campaigns", "list"]);
    assert!(listed.contains(&c) && listed.contains(&a), "{listed}");
    let shown = crate::destinations::cli(&server, &marketer, &["campaigns", "show", &c]);
    assert!(shown.contains(&send_c) && shown.contains("done"), "{shown}");
    // B credits by last touch: its converters whom C did not reach afterwards, at most.
    let b_treated = arm_named(&rb, "treatment");
    let b_converters: Vec<usize> = in_b
        .iter()
        .copied()
        .filter(|i| (i % 3 == 0 && *i != erased) || *i == merged)
        .collect();
    assert_eq!(b_treated["conversions"], b_converters.len(), "{rb}");
    let (only_b, not_c) = (
        b_converters
            .iter()
            .filter(|i| !in_a.contains(i) && !in_c.contains(i))
            .count(),
        b_converters.iter().filter(|i| !in_c.contains(i)).count(),
    );
    let credited = b_treated["attributed_conversions"].as_u64().unwrap() as usize;
    assert!(
        (only_b..=not_c).contains(&credited),
        "{credited} not within {only_b}..={not_c}"
    );

    drop(server);
    let phones: Vec<String> = (0..people).map(phone).collect();
    assert_no_clear_values(
        dir.path(),
        &phones.iter().map(String::as_str).collect::<Vec<_>>(),
    );
}
