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
