//! A recurring campaign: each send counts its own engagement, and a split never frees anyone
//! from a frequency cap (the contacts of a merged person count against every person the split
//! makes of them: which of them a message reached is unknown).

use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::campaigns::{phone, wait_done, without_quiet_hours};
use crate::support::{Server, temp_dir};

/// The guest's own phone (not one of `phone(i)`).
const GUEST_PHONE: &str = "13900000001";

fn held_back_by_cap(job: &Value) -> u64 {
    job["manifest"]["counts"]["excluded"]["frequency_cap"]
        .as_u64()
        .unwrap_or(0)
}

#[test]
fn each_send_counts_its_own_engagement_and_after_a_split_both_people_carry_the_contacts() {
    let dir = temp_dir();
    // The default caps (two SMS a week per person) and no quiet hours.
    let config = without_quiet_hours(dir.path());
    let server = Server::start(dir.path(), &["--config", &config], &[]).unwrap();
    let admin = server.token(dir.path(), &["admin"]);
    let marketer = server.token(dir.path(), &["marketer"]);
    let key = server.create_source(&admin, "app", "ios");
    let identify = |user: String, i: usize| {
        json!({"type": "identify", "userId": user,
            "traits": {"phone": phone(i), "address": {"country": "CN", "city": "苏州"}}})
    };
    let members = 30;
    let mut batch: Vec<Value> = (0..members)
        .map(|i| identify(format!("x-{i}"), i))
        .collect();
    // A guest with a phone of their own, then signed in as x-0: one person.
    let guest = json!({"type": "identify", "anonymousId": "g-0",
        "traits": {"phone": GUEST_PHONE, "address": {"country": "CN", "city": "苏州"}}});
    let link = json!({"type": "identify", "anonymousId": "g-0", "userId": "x-0"});
    batch.extend([guest, link]);
    let sent = server.ingest("/v1/batch", &key, &json!({ "batch": batch }));
    assert_eq!(sent.status, 200, "{}", sent.text());
    crate::campaigns::grant_sms(&server, &admin, "x", members);
    let by_phone = server.post_with(
        "/v1/consents/batch",
        &admin,
        &json!({"consents": [{"subject": {"type": "phone", "value": GUEST_PHONE, "region": "CN"},
            "purpose": "marketing.sms", "status": "granted", "notice_version": "2026-01",
            "source": "app", "evidence": {"screen": "sms"}}]}),
    );
    assert_eq!(by_phone.json()["recorded"], 1, "{}", by_phone.text());
    let merged = server
        .profile_of(&admin, "phone", &format!("+86{GUEST_PHONE}"))
        .expect("the guest");
    assert_eq!(
        server.profile_of(&admin, "user_id", "x-0").as_deref(),
        Some(merged.as_str())
    );
    let count = |expected: usize| {
        let started = Instant::now();
        while server
            .post_with(
                "/v1/audiences/count",
                &marketer,
                &json!({"query": "city:苏州", "purpose": "marketing.sms"}),
            )
            .json()["count"]
            != expected
        {
            assert!(
                started.elapsed() < Duration::from_secs(10),
                "{expected} people"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    };
    count(members);

    let recipient = crate::campaigns::sms_gateway(&server, &admin);
    let audience = server
        .post_with(
            "/v1/audiences",
            &marketer,
            &json!({"name": "苏州", "purpose": "marketing.sms", "query": "city:苏州"}),
        )
        .json();
    // No holdout: everyone eligible is contacted at every send the cap allows.
    let campaign = server.post_with(
        "/v1/campaigns",
        &marketer,
        &json!({"name": "周末", "audience": audience["id"], "purpose": "marketing.sms",
            "channel": "sms", "recipient": recipient["id"], "fields": ["pseudonym", "identifiers.phone"],
            "format": "jsonl", "holdout": 0.0,
            "conversion": {"event": "Order Completed", "within_days": 14}}),
    );
    assert_eq!(campaign.status, 201, "{}", campaign.text());
    let campaign = campaign.json()["id"].as_str().unwrap().to_string();
    let send = || {
        let started = server.post_with(
            &format!("/v1/campaigns/{campaign}/send"),
            &marketer,
            &json!({}),
        );
        assert_eq!(started.status, 202, "{}", started.text());
        wait_done(&server, &marketer, started.json()["id"].as_str().unwrap())
    };
    // Two sends: every member, the merged person among them, has had the week's two SMS.
    let sends: Vec<Value> = (0..2).map(|_| send()).collect();
    for job in &sends {
        assert_eq!(job["manifest"]["counts"]["included"], members, "{job}");
    }
    // The gateway reports deliveries now: they belong to the second send (engagement names
    // the campaign, not the send; the first send's count ends where the second began). Not
    // yet for x-0, whom the split below makes two people.
    let delivered = members - 1;
    let deliveries: Vec<Value> = (1..members)
        .map(|i| {
            json!({"type": "track", "userId": format!("x-{i}"), "event": "SMS Delivered",
                "properties": {"campaign_id": campaign}})
        })
        .collect();
    assert_eq!(
        server
            .ingest("/v1/batch", &key, &json!({ "batch": deliveries }))
            .status,
        200
    );
    // The treated arm's results of a send (or of `all` of them): (sends, members, delivered).
    let treated = |export: &str| {
        let results = server
            .get_with(
                &format!("/v1/campaigns/{campaign}/results?export={export}"),
                &marketer,
            )
            .json();
        let arm = results["arms"]
            .as_array()
            .unwrap_or_else(|| panic!("{results}"))
            .iter()
            .find(|arm| arm["arm"] != "holdout")
            .unwrap_or_else(|| panic!("{results}"))
            .clone();
        let figure = |v: &Value| v.as_u64().unwrap_or_else(|| panic!("{results}"));
        (
            figure(&results["sends"]),
            figure(&arm["members"]),
            figure(&arm["delivered"]),
        )
    };
    let id_of = |job: &Value| job["id"].as_str().unwrap().to_string();
    assert_eq!(treated(&id_of(&sends[0])), (1, members as u64, 0));
    assert_eq!(
        treated(&id_of(&sends[1])),
        (1, members as u64, delivered as u64)
    );

    // The guest was someone else after all: split off. Two people now, each with their phone.
    let split = server.post_with(
        &format!("/v1/profiles/{merged}/split"),
        &admin,
        &json!({"identifier": {"type": "anonymous_id", "value": "g-0"}}),
    );
    assert_eq!(split.status, 200, "{}", split.text());
    let guest = server
        .profile_of(&admin, "phone", &format!("+86{GUEST_PHONE}"))
        .expect("the guest after the split");
    let member = server
        .profile_of(&admin, "user_id", "x-0")
        .expect("x-0 after the split");
    assert_ne!(guest, member, "the split made two people");
    // One of them kept the profile id the sends recorded; the other was born of the split.
    // A delivery reported for the one born of it is the member's: measured in the member's
    // arm, once.
    let born = if guest == merged {
        json!({"type": "track", "userId": "x-0", "event": "SMS Delivered",
            "properties": {"campaign_id": campaign}})
    } else {
        assert_eq!(member, merged, "one side keeps the id");
        // By the guest's phone (the SMS went to it): g-0 itself was cut loose by the split.
        json!({"type": "track", "anonymousId": "gateway-0", "event": "SMS Delivered",
            "context": {"traits": {"phone": GUEST_PHONE}},
            "properties": {"campaign_id": campaign}})
    };
    assert_eq!(server.ingest("/v1/track", &key, &born).status, 200);
    let delivered = delivered + 1;
    assert_eq!(
        treated(&id_of(&sends[1])),
        (1, members as u64, delivered as u64)
    );

    // New people join, so that the third send has enough people to go out.
    let fresh = 25;
    let batch: Vec<Value> = (0..fresh)
        .map(|i| identify(format!("y-{i}"), 100 + i))
        .collect();
    assert_eq!(
        server
            .ingest("/v1/batch", &key, &json!({ "batch": batch }))
            .status,
        200
    );
    crate::campaigns::grant_sms(&server, &admin, "y", fresh);
    count(members + 1 + fresh);
    let third = send();
    // Every member of the first two sends is held back, the guest as well: the SMS that
    // reached "x-0 or the guest" counts for both.
    assert_eq!(held_back_by_cap(&third), members as u64 + 1, "{third}");
    assert_eq!(third["manifest"]["counts"]["included"], fresh, "{third}");

    // The three sends together: each member once (the first two sends' 30 and the 25 new),
    // the deliveries once.
    assert_eq!(treated(&id_of(&third)), (1, fresh as u64, 0));
    assert_eq!(
        treated("all"),
        (3, (members + fresh) as u64, delivered as u64)
    );
}
