//! Automatic junk detection (issue 17 item 8): an identifier that keeps linking different
//! people is quarantined, listed with its counts, and blocked or released by an operator.

use axum::http::StatusCode;
use serde_json::{Value, json};

use crate::policy::{get_json, post_json, profile_id, send, source, token_with};

/// The `i`th walk-in customer of the day at the till.
fn checkout(i: usize) -> Value {
    json!({"type": "identify", "userId": format!("member-{i}"), "messageId": format!("co-{i}"),
           "timestamp": format!("2026-11-30T10:{i:02}:00Z"),
           "traits": {"email": "checkout@shop.example.cn"}})
}

async fn lookup(h: &crate::Harness, kind: &str, value: &str) -> (StatusCode, Value) {
    let admin = token_with(&["admin"], &[]);
    get_json(
        h,
        &format!("/v1/profiles/lookup?type={kind}&value={value}&purpose=essential.service"),
        &admin,
    )
    .await
}

#[tokio::test]
async fn a_shared_checkout_email_is_quarantined_listed_and_blocked() {
    let h = crate::harness();
    let key = source(&h, "CN");
    // Twelve walk-in customers, each with their own member id, all given the till's e-mail.
    let batch: Vec<Value> = (0..12).map(checkout).collect();
    send(&h, &key, json!({ "batch": batch }), false).await;
    let admin = token_with(&["admin"], &[]);

    let (status, answer) = get_json(&h, "/v1/identity/suspects", &admin).await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    let suspects = answer["suspects"].as_array().unwrap();
    assert_eq!(suspects.len(), 1, "{answer}");
    let suspect = &suspects[0];
    assert_eq!(suspect["type"], "email");
    assert_eq!(suspect["value"], "checkout@shop.example.cn");
    assert_eq!(suspect["status"], "quarantined");
    assert!(
        suspect["distinct_conflicts"].as_u64().unwrap() > 8,
        "{suspect}"
    );
    assert_eq!(suspect["conflicts"], 11, "{suspect}");
    // It stays with the first of them (merge protection kept it there).
    let first = profile_id(&h, "member-0").await;
    assert_eq!(suspect["profile"], first.as_str(), "{suspect}");
    let id = suspect["id"].as_str().unwrap().to_string();
    // The member ids it conflicted with are watched, not quarantined.
    let (_, watching) = get_json(&h, "/v1/identity/suspects?status=watching", &admin).await;
    assert_eq!(
        watching["suspects"].as_array().unwrap().len(),
        11,
        "{watching}"
    );

    // Quarantined, it links nobody: a visitor who types it at the till is not member-0.
    send(
        &h,
        &key,
        json!({"batch": [{"type": "identify", "anonymousId": "visitor-1", "messageId": "v-1",
                          "traits": {"email": "checkout@shop.example.cn"}}]}),
        false,
    )
    .await;
    let (status, visitor) = lookup(&h, "anonymous_id", "visitor-1").await;
    assert_eq!(status, StatusCode::OK, "{visitor}");
    assert_ne!(visitor["id"], first.as_str(), "{visitor}");

    // Blocked: for good, and split off the profile it had joined.
    let path = format!("/v1/identity/suspects/{id}");
    let (status, blocked) = post_json(&h, &path, &admin, json!({"decision": "block"})).await;
    assert_eq!(status, StatusCode::OK, "{blocked}");
    assert_eq!(blocked["status"], "blocked");
    assert!(blocked["decided_by"].is_string(), "{blocked}");
    let (_, member) = get_json(
        &h,
        &format!("/v1/profiles/{first}?purpose=essential.service"),
        &admin,
    )
    .await;
    let kinds: Vec<&str> = member["identifiers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["type"].as_str().unwrap())
        .collect();
    assert_eq!(kinds, ["user_id"], "{member}");
    let (_, listed) = get_json(&h, "/v1/identity/suspects?status=blocked", &admin).await;
    assert_eq!(listed["suspects"][0]["id"], id.as_str(), "{listed}");
    let (_, quarantined) = get_json(&h, "/v1/identity/suspects", &admin).await;
    assert!(quarantined["suspects"].as_array().unwrap().is_empty());

    // Released: a watched member id links as usual.
    let member_1 = watching["suspects"][0]["id"].as_str().unwrap();
    let (status, released) = post_json(
        &h,
        &format!("/v1/identity/suspects/{member_1}"),
        &admin,
        json!({"decision": "release"}),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{released}");
    assert_eq!(released["status"], "released");

    // Mistakes are 4xx naming the problem; the marketer may not see or decide.
    let marketer = token_with(&["marketer"], &[]);
    for (path, token, expected) in [
        (
            "/v1/identity/suspects?status=odd",
            &admin,
            StatusCode::BAD_REQUEST,
        ),
        ("/v1/identity/suspects", &marketer, StatusCode::FORBIDDEN),
    ] {
        let (status, body) = get_json(&h, path, token).await;
        assert_eq!(status, expected, "{path}: {body}");
    }
    for (path, body, expected) in [
        (
            "/v1/identity/suspects/zz".to_string(),
            json!({"decision": "block"}),
            StatusCode::BAD_REQUEST,
        ),
        (
            format!("/v1/identity/suspects/{}", "0".repeat(64)),
            json!({"decision": "block"}),
            StatusCode::NOT_FOUND,
        ),
        (
            path.clone(),
            json!({"decision": "maybe"}),
            StatusCode::BAD_REQUEST,
        ),
    ] {
        let (status, answer) = post_json(&h, &path, &admin, body).await;
        assert_eq!(status, expected, "{path}: {answer}");
    }
    let (status, _) = post_json(&h, &path, &marketer, json!({"decision": "release"})).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
}

/// A family sharing an e-mail stays below the threshold: nothing is quarantined.
#[tokio::test]
async fn a_family_email_is_not_junk() {
    let h = crate::harness();
    let key = source(&h, "CN");
    let batch: Vec<Value> = (0..4)
        .map(|i| json!({"type": "identify", "userId": format!("fam-{i}"), "messageId": format!("fam-{i}"),
                        "traits": {"email": "the.wangs@example.cn"}}))
        .collect();
    send(&h, &key, json!({ "batch": batch }), false).await;
    let admin = token_with(&["admin"], &[]);
    let (_, answer) = get_json(&h, "/v1/identity/suspects", &admin).await;
    assert!(
        answer["suspects"].as_array().unwrap().is_empty(),
        "{answer}"
    );
    // The e-mail still leads to one of them (the first in event order).
    let (status, found) = lookup(&h, "email", "the.wangs@example.cn").await;
    assert_eq!(status, StatusCode::OK, "{found}");
    let mut family = Vec::new();
    for i in 0..4 {
        family.push(profile_id(&h, &format!("fam-{i}")).await);
    }
    assert!(
        family.contains(&found["id"].as_str().unwrap().to_string()),
        "{found}"
    );
    // A watched e-mail still links: a new device that gives it joins that member.
    send(
        &h,
        &key,
        json!({"batch": [{"type": "identify", "anonymousId": "tablet-1", "messageId": "t-1",
                          "traits": {"email": "the.wangs@example.cn"}}]}),
        false,
    )
    .await;
    let (_, tablet) = lookup(&h, "anonymous_id", "tablet-1").await;
    assert_eq!(tablet["id"], found["id"], "{tablet}");
}
