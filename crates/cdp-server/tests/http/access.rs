//! Who may read what, for which purpose: unknown purposes, least privilege, lookups that do
//! not reveal customers (issue 17 items 5 and 7).

use axum::http::StatusCode;
use serde_json::{Value, json};

use crate::harness;
use crate::policy::{get_json, identify, post_json, profile_id, send, source, token_with};

/// A purpose the taxonomy does not have is the caller's mistake: 400 `unknown_purpose` naming
/// the purposes there are, on reads, consents, audiences and exports alike (issue 17 item 7),
/// not a 403 that reads like a denial.
#[tokio::test]
async fn an_unknown_purpose_is_400_naming_the_allowed_ones() {
    let h = harness();
    let key = source(&h, "CN");
    send(
        &h,
        &key,
        json!({"batch": [identify("u-p", json!({"email": "p@example.cn"}))]}),
        false,
    )
    .await;
    let id = profile_id(&h, "u-p").await;
    let admin = token_with(&["admin"], &[]);
    let check = |label: &str, status: StatusCode, body: &Value| {
        assert_eq!(status, StatusCode::BAD_REQUEST, "{label}: {body}");
        assert_eq!(body["error"]["code"], "unknown_purpose", "{label}: {body}");
        let allowed = body["error"]["details"]["allowed"].as_array().unwrap();
        assert!(
            allowed.contains(&json!("customer_service")),
            "{label}: {body}"
        );
        assert!(
            body["error"]["message"]
                .as_str()
                .unwrap()
                .contains("purposes are"),
            "{label}: {body}"
        );
    };
    for path in [
        format!("/v1/profiles/{id}?purpose=marketing.fax"),
        format!("/v1/profiles/{id}/events?purpose=marketing.fax"),
        format!("/v1/profiles/{id}/consents?purpose=marketing.fax"),
        "/v1/profiles/lookup?type=email&value=p%40example.cn&purpose=marketing.fax".to_string(),
    ] {
        let (status, body) = get_json(&h, &path, &admin).await;
        check(&path, status, &body);
    }
    let (status, body) = post_json(
        &h,
        "/v1/consents",
        &admin,
        json!({
            "subject": {"type": "email", "value": "p@example.cn"},
            "purpose": "marketing.fax", "status": "granted", "legal_basis": "consent",
            "source": "form", "evidence": {}
        }),
    )
    .await;
    check("consent", status, &body);
    let (status, body) = post_json(
        &h,
        "/v1/audiences/count",
        &admin,
        json!({"query": "tier:gold", "purpose": "marketing.fax"}),
    )
    .await;
    check("audience count", status, &body);
}

/// Least privilege (issue 17 item 5): the analyst (aggregate only) reads no individual
/// profile whatever purpose it states; a lookup never tells whether someone is a customer to
/// a caller who may not read them: 403 before looking anything up when the token may not
/// state the purpose, and the same 404 for an unknown identifier and a person the policies
/// deny to this read.
#[tokio::test]
async fn lookups_do_not_reveal_customers_and_analysts_read_no_profiles() {
    let h = harness();
    let key = source(&h, "CN");
    send(&h, &key, json!({"batch": [identify("u-l", json!({"email": "known@example.cn", "address": {"country": "CN"}}))]}), false).await;
    let id = profile_id(&h, "u-l").await;

    let analyst = token_with(&["analyst"], &[]);
    for path in [
        format!("/v1/profiles/{id}?purpose=analytics"),
        format!("/v1/profiles/{id}/consents?purpose=analytics"),
        "/v1/profiles/lookup?type=email&value=known%40example.cn&purpose=analytics".to_string(),
    ] {
        let (status, body) = get_json(&h, &path, &analyst).await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{path}: {body}");
        assert_eq!(body["error"]["code"], "forbidden", "{path}: {body}");
    }

    // A marketer may state marketing.email; without consent (PIPL 13) the known person is
    // denied: the answer is the unknown identifier's, byte for byte.
    let marketer = token_with(&["marketer"], &[]);
    let lookup = |value: &str| {
        format!("/v1/profiles/lookup?type=email&value={value}&purpose=marketing.email")
    };
    let (known_status, known) = get_json(&h, &lookup("known%40example.cn"), &marketer).await;
    let (unknown_status, unknown) = get_json(&h, &lookup("nobody%40example.cn"), &marketer).await;
    assert_eq!(known_status, StatusCode::NOT_FOUND, "{known}");
    assert_eq!(unknown_status, StatusCode::NOT_FOUND, "{unknown}");
    assert_eq!(known, unknown);
    // The denial was audited all the same.
    let auditor = token_with(&["auditor"], &[]);
    let (_, log) = get_json(&h, "/v1/audit?limit=1000", &auditor).await;
    assert!(
        log["entries"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["decision"] == "deny" && e["purpose"] == "marketing.email"),
        "{log}"
    );

    // A purpose the token may not state: 403 for known and unknown identifiers alike.
    let service = token_with(&["customer_service"], &[]);
    let (known_status, known) = get_json(&h, &lookup("known%40example.cn"), &service).await;
    let (unknown_status, unknown) = get_json(&h, &lookup("nobody%40example.cn"), &service).await;
    assert_eq!(known_status, StatusCode::FORBIDDEN, "{known}");
    assert_eq!(unknown_status, StatusCode::FORBIDDEN, "{unknown}");
    assert_eq!(known, unknown);

    // With consent the same lookup answers.
    let (status, body) = post_json(
        &h,
        "/v1/consents",
        &service,
        json!({"subject": {"type": "email", "value": "known@example.cn"}, "purpose": "marketing.email",
               "status": "granted", "legal_basis": "consent", "notice_version": "2026-01",
               "source": "form", "channel": "web", "evidence": {"form": "x"}}),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (status, body) = get_json(&h, &lookup("known%40example.cn"), &marketer).await;
    assert_eq!(status, StatusCode::OK, "{body}");
}

/// `/v1/profiles/{id}/events` shows what the profile read shows (issue 17 item 5): contact
/// details inside events are masked as on the profile, sensitive values are withheld, and
/// what the person did is still there.
#[tokio::test]
async fn events_are_projected_and_masked_as_the_profile_read_is() {
    let h = harness();
    let key = source(&h, "CN");
    send(
        &h,
        &key,
        json!({"batch": [
            {"type": "identify", "userId": "u-ev", "messageId": "ev-0",
             "traits": {"email": "ev.person@example.cn", "phone": "13900001234", "health_conditions": "diabetes"}},
            {"type": "track", "userId": "u-ev", "messageId": "ev-1", "event": "Order Completed",
             "properties": {"revenue": 88, "email": "ev.person@example.cn", "health_conditions": "diabetes"},
             "context": {"ip": "203.0.113.9", "location": {"latitude": 31.2, "longitude": 121.5},
                         "device": {"id": "dev-42", "model": "P60"}}}
        ]}),
        false,
    )
    .await;
    let id = profile_id(&h, "u-ev").await;
    // The events route is the DPO's and the administrator's; the purpose shapes the answer.
    let service = token_with(&["dpo"], &[]);
    let (status, profile) = get_json(
        &h,
        &format!("/v1/profiles/{id}?purpose=customer_service"),
        &service,
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{profile}");
    let masked_email = profile["identifiers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["type"] == "email")
        .map(|i| i["value"].as_str().unwrap().to_string())
        .unwrap();
    assert_ne!(masked_email, "ev.person@example.cn");

    let (status, answer) = get_json(
        &h,
        &format!("/v1/profiles/{id}/events?purpose=customer_service"),
        &service,
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    let text = answer["events"].to_string();
    for clear in ["ev.person@example.cn", "13900001234", "diabetes", "121.5"] {
        assert!(!text.contains(clear), "{clear} in {text}");
    }
    let track = answer["events"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["message"]["type"] == "track")
        .unwrap()
        .clone();
    let properties = &track["message"]["properties"];
    assert_eq!(properties["revenue"], 88, "{track}");
    assert_eq!(properties["email"], masked_email.as_str(), "{track}");
    assert!(properties.get("health_conditions").is_none(), "{track}");
    assert!(
        track["message"]["context"].get("location").is_none(),
        "{track}"
    );
    assert_eq!(track["message"]["context"]["device"]["model"], "P60");
    let identify = answer["events"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["message"]["type"] == "identify")
        .unwrap();
    assert_eq!(
        identify["message"]["traits"]["email"],
        masked_email.as_str()
    );
    let withheld: Vec<&str> = answer["policy"]["withheld"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    assert!(
        withheld.contains(&"traits.health_conditions") && withheld.contains(&"context.location"),
        "{answer}"
    );
    assert_eq!(
        answer["policy"]["obligations"]["traits.email"], "mask:email",
        "{answer}"
    );
}
