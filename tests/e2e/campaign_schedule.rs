//! Campaigns that send by themselves: once at a set time, or on a cron-like schedule, with
//! the same arms at every send and the channel's frequency caps across all of them.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::campaigns::{contacted, phone, rows_of, wait_done, without_quiet_hours};
use crate::support::{Server, temp_dir};

/// The campaign's sends so far, oldest first, once each has finished.
fn finished_sends(server: &Server, token: &str, id: &str) -> Vec<Value> {
    let view = server
        .get_with(&format!("/v1/campaigns/{id}"), token)
        .json();
    let mut sends: Vec<Value> = view["send_history"].as_array().unwrap().clone();
    sends.reverse();
    sends
        .iter()
        .map(|s| wait_done(server, token, s["export_id"].as_str().unwrap()))
        .collect()
}

/// Waits until campaign `id` has `n` sends, at most `within`.
fn wait_sends(server: &Server, token: &str, id: &str, n: usize, within: Duration) -> Vec<Value> {
    let started = Instant::now();
    loop {
        let view = server
            .get_with(&format!("/v1/campaigns/{id}"), token)
            .json();
        if view["send_history"].as_array().unwrap().len() >= n {
            return finished_sends(server, token, id);
        }
        assert!(started.elapsed() < within, "{n} sends expected: {view}");
        std::thread::sleep(Duration::from_millis(250));
    }
}

fn rfc3339(at: time::OffsetDateTime) -> String {
    at.format(&time::format_description::well_known::Rfc3339)
        .unwrap()
}

fn parse_time(value: &Value) -> time::OffsetDateTime {
    time::OffsetDateTime::parse(
        value
            .as_str()
            .unwrap_or_else(|| panic!("not a time: {value}")),
        &time::format_description::well_known::Rfc3339,
    )
    .unwrap()
}

#[test]
fn scheduled_campaigns_send_by_themselves_in_the_same_arms_and_within_the_caps() {
    let dir = temp_dir();
    // The default caps (two SMS a week per person, across campaigns) and no quiet hours: the
    // test must not depend on the time of day it runs.
    let config = without_quiet_hours(dir.path());
    let server = Server::start(dir.path(), &["--config", &config], &[]).unwrap();
    let admin = server.token(dir.path(), &["admin"]);
    let marketer = server.token(dir.path(), &["marketer"]);
    let key = server.create_source(&admin, "app", "ios");
    let people = 200;
    let batch: Vec<Value> = (0..people)
        .map(|i| {
            json!({"type": "identify", "userId": format!("s-{i}"),
                "traits": {"phone": phone(i), "address": {"country": "CN", "city": "杭州"}}})
        })
        .collect();
    assert_eq!(
        server
            .ingest("/v1/batch", &key, &json!({ "batch": batch }))
            .status,
        200
    );
    crate::campaigns::grant_sms(&server, &admin, "s", people);
    let started = Instant::now();
    while server
        .post_with(
            "/v1/audiences/count",
            &marketer,
            &json!({"query": "city:杭州", "purpose": "marketing.sms"}),
        )
        .json()["count"]
        != people
    {
        assert!(started.elapsed() < Duration::from_secs(10));
        std::thread::sleep(Duration::from_millis(50));
    }
    let recipient = crate::campaigns::sms_gateway(&server, &admin);
    let audience = server
        .post_with(
            "/v1/audiences",
            &marketer,
            &json!({"name": "杭州", "purpose": "marketing.sms", "query": "city:杭州"}),
        )
        .json();
    let body = |name: &str, schedule: Value| {
        json!({"name": name, "audience": audience["id"], "purpose": "marketing.sms",
            "channel": "sms", "recipient": recipient["id"], "fields": ["pseudonym", "identifiers.phone"],
            "format": "jsonl", "holdout": 0.2, "variants": [{"name": "A", "weight": 1}, {"name": "B", "weight": 1}],
            "conversion": {"event": "Order Completed", "within_days": 14}, "schedule": schedule})
    };
    let now = time::OffsetDateTime::now_utc();
    for (schedule, says) in [
        (json!({}), "either cron"),
        (json!({"cron": "every monday"}), "schedule.cron"),
        (
            json!({"cron": "* * * * *", "at": rfc3339(now + time::Duration::hours(1))}),
            "either cron",
        ),
        (
            json!({"at": rfc3339(now - time::Duration::hours(1))}),
            "in the past",
        ),
        (json!({"at": "tomorrow"}), "at"),
    ] {
        let refused = server.post_with("/v1/campaigns", &marketer, &body("bad", schedule.clone()));
        assert_eq!(refused.status, 400, "{schedule}: {}", refused.text());
        assert!(refused.text().contains(says), "{says}: {}", refused.text());
    }

    // A one-off two seconds from now, and one every minute.
    let once = server.post_with(
        "/v1/campaigns",
        &marketer,
        &body(
            "一次",
            json!({"at": rfc3339(time::OffsetDateTime::now_utc() + time::Duration::seconds(2))}),
        ),
    );
    assert_eq!(once.status, 201, "{}", once.text());
    let once = once.json()["id"].as_str().unwrap().to_string();
    let weekly = server.post_with(
        "/v1/campaigns",
        &marketer,
        &body(
            "每分钟",
            json!({"cron": "* * * * *", "utc_offset": "+08:00"}),
        ),
    );
    assert_eq!(weekly.status, 201, "{}", weekly.text());
    let weekly = weekly.json();
    let recurring = weekly["id"].as_str().unwrap().to_string();
    let next = parse_time(&weekly["schedule"]["next_send_at"]);
    assert!(
        next > now && next <= time::OffsetDateTime::now_utc() + time::Duration::seconds(61),
        "{weekly}"
    );
    // A paused schedule sends nothing; pausing a campaign without one is a conflict.
    let paused = server
        .post_with(
            "/v1/campaigns",
            &marketer,
            &body("暂停", json!({"cron": "* * * * *"})),
        )
        .json()["id"]
        .as_str()
        .unwrap()
        .to_string();
    let answer = server.patch_with(
        &format!("/v1/campaigns/{paused}"),
        &marketer,
        &json!({"paused": true}),
    );
    assert_eq!(answer.status, 200, "{}", answer.text());
    assert_eq!(answer.json()["schedule"]["paused"], true);

    let sent_once = wait_sends(&server, &marketer, &once, 1, Duration::from_secs(20));
    let view = server
        .get_with(&format!("/v1/campaigns/{once}"), &marketer)
        .json();
    assert!(view["schedule"]["next_send_at"].is_null(), "{view}");
    let answer = server.patch_with(
        &format!("/v1/campaigns/{once}"),
        &marketer,
        &json!({"schedule": null}),
    );
    assert_eq!(answer.status, 200, "{}", answer.text());
    assert!(answer.json().get("schedule").is_none(), "{}", answer.text());
    let refused = server.patch_with(
        &format!("/v1/campaigns/{once}"),
        &marketer,
        &json!({"paused": true}),
    );
    assert_eq!(refused.status, 409, "{}", refused.text());

    let sends = wait_sends(&server, &marketer, &recurring, 2, Duration::from_secs(140));
    // Sent at two different minutes, in order.
    let (first_at, second_at) = (
        parse_time(&sends[0]["created_at"]),
        parse_time(&sends[1]["created_at"]),
    );
    assert!(
        second_at - first_at >= time::Duration::seconds(30),
        "{first_at} {second_at}"
    );
    let view = server
        .get_with(&format!("/v1/campaigns/{recurring}"), &marketer)
        .json();
    assert!(
        parse_time(&view["schedule"]["next_send_at"]) > second_at,
        "{view}"
    );

    // Nobody got more than the two SMS a week the cap allows over the three sends: the
    // second scheduled send held back exactly those the one-off and the first had reached.
    let reached: Vec<std::collections::BTreeSet<usize>> = [&sent_once[0], &sends[0], &sends[1]]
        .iter()
        .map(|job| contacted(&server, &marketer, job["id"].as_str().unwrap()))
        .collect();
    let mut per_person: BTreeMap<usize, usize> = BTreeMap::new();
    for person in reached.iter().flatten() {
        *per_person.entry(*person).or_default() += 1;
    }
    assert!(per_person.values().all(|n| *n <= 2), "{per_person:?}");
    assert_eq!(
        reached[0].intersection(&reached[1]).count() as u64,
        sends[1]["manifest"]["counts"]["excluded"]["frequency_cap"]
            .as_u64()
            .unwrap(),
        "{}",
        sends[1]["manifest"]
    );
    // The same person in the same arm at both scheduled sends.
    let arms = |job: &Value| -> BTreeMap<String, String> {
        rows_of(&server, &marketer, job["id"].as_str().unwrap())
            .into_values()
            .map(|(arm, phone)| (phone, arm))
            .collect()
    };
    let (a, b) = (arms(&sends[0]), arms(&sends[1]));
    let both: Vec<&String> = a.keys().filter(|p| b.contains_key(*p)).collect();
    assert!(!both.is_empty(), "{a:?} {b:?}");
    assert!(both.iter().all(|p| a[*p] == b[*p]), "{a:?} {b:?}");

    let view = server
        .get_with(&format!("/v1/campaigns/{paused}"), &marketer)
        .json();
    assert_eq!(view["send_history"].as_array().unwrap().len(), 0, "{view}");
    // Resumed, it sends from its next minute; the CLI says when.
    let shown = crate::destinations::cli(&server, &marketer, &["campaigns", "resume", &paused]);
    assert!(shown.contains("* * * * * at +00:00, next"), "{shown}");
    let shown = crate::destinations::cli(
        &server,
        &marketer,
        &[
            "campaigns",
            "schedule",
            &paused,
            "--cron",
            "0 10 * * 1",
            "--utc-offset",
            "+08:00",
        ],
    );
    assert!(shown.contains("0 10 * * 1 at +08:00, next"), "{shown}");
    let shown = crate::destinations::cli(&server, &marketer, &["campaigns", "pause", &paused]);
    assert!(shown.contains("paused"), "{shown}");
    let audit = server
        .get_with("/v1/audit?latest=true&limit=1000", &admin)
        .json();
    let scheduled: Vec<&Value> = audit["entries"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["action"] == "campaign.scheduled_send")
        .collect();
    assert!(scheduled.len() >= 3, "{scheduled:?}");
    let said = serde_json::to_string(&scheduled).unwrap();
    assert!(said.contains(&recurring) && said.contains(&once), "{said}");
}
