//! Inferred sensitive data (issue 17 item 1; PIPL Art 28, 29, GDPR Art 9): an audience that
//! selects by what reveals a sensitive category needs each member's separate consent naming it;
//! unclassified values are refused for marketing; unindexed traits fail clearly.

use axum::http::StatusCode;
use serde_json::{Value, json};

use crate::exports::wait_done;
use crate::policy::{post_json, send, source, token_with};

/// 25 shoppers in 上海 who agreed to SMS marketing: p-0..p-21 bought at the pharmacy, the rest
/// insulin; the first 20 also agreed, separately, that SMS marketing may use their health.
async fn pharmacy_shoppers(h: &crate::Harness) {
    let key = source(h, "CN");
    let mut batch = Vec::new();
    for i in 0..25 {
        let category = if i < 22 { "pharmacy" } else { "insulin" };
        batch.push(json!({"type": "identify", "userId": format!("p-{i}"), "messageId": format!("pi-{i}"),
            "traits": {"phone": format!("1390001{i:04}"), "address": {"country": "CN", "city": "上海"}}}));
        batch.push(json!({"type": "track", "userId": format!("p-{i}"), "messageId": format!("po-{i}"),
            "event": "Order Completed",
            "properties": {"revenue": 30, "products": [{"category": category}, {"category": "shoes"}]}}));
    }
    send(h, &key, json!({ "batch": batch }), false).await;
    let service = token_with(&["customer_service"], &[]);
    for i in 0..25 {
        let mut consents = vec![
            json!({"purpose": "marketing.sms", "status": "granted", "notice_version": "2026-01"}),
        ];
        if i < 20 {
            consents.push(
                json!({"purpose": "marketing.sms", "status": "granted", "notice_version": "2026-01",
                                 "separate": true, "categories": ["user.health"]}),
            );
        }
        for consent in consents {
            let mut body = consent;
            body["subject"] = json!({"type": "user_id", "value": format!("p-{i}")});
            body["source"] = json!("app");
            body["evidence"] = json!({"screen": "sms-and-health"});
            let (status, answer) = post_json(h, "/v1/consents", &service, body).await;
            assert_eq!(status, StatusCode::OK, "{answer}");
        }
    }
    h.index();
}

async fn count(h: &crate::Harness, query: &str, purpose: &str) -> (StatusCode, Value) {
    let marketer = token_with(&["marketer"], &[]);
    post_json(
        h,
        "/v1/audiences/count",
        &marketer,
        json!({"query": query, "purpose": purpose}),
    )
    .await
}

#[tokio::test]
async fn selecting_by_a_sensitive_interest_needs_the_separate_consent_naming_it() {
    let h = crate::harness();
    pharmacy_shoppers(&h).await;
    let (status, answer) = count(&h, "interest:pharmacy", "marketing.sms").await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    assert_eq!(answer["matched"], 22, "{answer}");
    assert_eq!(answer["count"], 20, "{answer}");
    assert_eq!(answer["removed_by_policy"], 2, "{answer}");
    assert_eq!(
        answer["sensitive"][0]["category"], "user.health",
        "{answer}"
    );
    assert_eq!(answer["sensitive"][0]["selector"], "interest:pharmacy");
    // An ordinary interest needs nothing more.
    let (_, shoes) = count(&h, "interest:shoes", "marketing.sms").await;
    assert_eq!(
        (shoes["matched"].as_u64(), shoes["count"].as_u64()),
        (Some(25), Some(25)),
        "{shoes}"
    );
    assert!(shoes.get("sensitive").is_none(), "{shoes}");

    // For marketing, a value nothing classifies is refused; for analytics it is counted.
    let (status, refused) = count(&h, "interest:zz_mystery", "marketing.sms").await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{refused}");
    let message = refused["error"]["message"].as_str().unwrap();
    assert!(
        message.contains("interest:zz_mystery is not classified"),
        "{message}"
    );
    let (status, _) = count(&h, "interest:zz_mystery", "analytics").await;
    assert_eq!(status, StatusCode::OK);
    // A sensitive trait is never indexed: an error, not a silent zero.
    let (status, refused) = count(&h, "traits.health_conditions:diabetes", "analytics").await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{refused}");
    assert!(
        refused["error"]["message"]
            .as_str()
            .unwrap()
            .contains("sensitive (user.health)"),
        "{refused}"
    );
    let (status, refused) = count(&h, "traits.shoe_size:42", "analytics").await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{refused}");

    // The export includes the 20 who consented, and says why the other two are not in it.
    let admin = token_with(&["admin"], &[]);
    let marketer = token_with(&["marketer"], &[]);
    let (_, recipient) = post_json(&h, "/v1/recipients", &admin, json!({"name": "SMS", "contact": "dpo@sms.example.cn",
        "role": "processor", "region": "CN", "transfer_mechanism": "none", "allowed_purposes": ["marketing.sms"]})).await;
    let (status, audience) = post_json(&h, "/v1/audiences", &marketer,
        json!({"name": "pharmacy buyers", "purpose": "marketing.sms", "query": "interest:pharmacy"})).await;
    assert_eq!(status, StatusCode::CREATED, "{audience}");
    assert_eq!(audience["size"]["count"], 20, "{audience}");
    let (status, started) = post_json(&h, "/v1/exports", &marketer, json!({"audience": audience["id"],
        "purpose": "marketing.sms", "recipient": recipient["id"], "fields": ["pseudonym", "identifiers.phone"], "format": "csv"}))
    .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{started}");
    let done = wait_done(&h, &marketer, started["id"].as_str().unwrap()).await;
    assert_eq!(done["status"], "done", "{done}");
    let counts = &done["manifest"]["counts"];
    assert_eq!(
        (counts["considered"].as_u64(), counts["included"].as_u64()),
        (Some(22), Some(20)),
        "{counts}"
    );
    let line = counts["exclusions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|l| l["reason"] == "pipl.sensitive_inference")
        .unwrap_or_else(|| panic!("{counts}"));
    assert_eq!(line["people"], 2);
    assert!(
        line["cite"].as_array().unwrap().contains(&json!("PIPL-29")),
        "{line}"
    );

    // Nobody who bought insulin agreed to that use of their health: the audience is refused.
    let (status, refused) = post_json(
        &h,
        "/v1/audiences",
        &marketer,
        json!({"name": "insulin buyers", "purpose": "marketing.sms", "query": "interest:insulin"}),
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{refused}");
    let message = refused["error"]["message"].as_str().unwrap();
    assert!(
        message.contains("user.health") && message.contains("PIPL-29"),
        "{message}"
    );
}
