//! Consent signals and records beyond the basics of `policy.rs`: signals sent as strings
//! (issue 17 item 9), the separate consent to a transfer abroad (item 2).

use axum::http::StatusCode;
use serde_json::{Value, json};

use crate::harness;
use crate::policy::{get_json, identify, post_json, profile_id, send, source, token_with};

/// Some libraries send GPC and category preferences as strings (`"gpc": "true"`): they are
/// the same signals (issue 17 item 9); a value that is neither yes nor no records nothing.
#[tokio::test]
async fn gpc_and_preferences_sent_as_strings_are_the_same_signals() {
    let h = harness();
    let key = source(&h, "DE");
    send(&h, &key, json!({"batch": [
        identify("u-s", json!({"address": {"country": "DE"}})),
        {"type": "track", "event": "Viewed", "userId": "u-s", "messageId": "s-1",
         "context": {"gpc": "maybe", "consent": {"categoryPreferences": {"Analytics": "yes please"}}}},
    ]}), false).await;
    let id = profile_id(&h, "u-s").await;
    let dpo = token_with(&["dpo"], &[]);
    let consents_path = format!("/v1/profiles/{id}/consents?purpose=customer_service");
    let (status, body) = get_json(&h, &consents_path, &dpo).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["history"].as_array().unwrap().len(), 0, "{body}");

    send(
        &h,
        &key,
        json!({"batch": [
            {"type": "track", "event": "Viewed", "userId": "u-s", "messageId": "s-2",
             "context": {"gpc": "true", "consent": {"categoryPreferences": {"Analytics": "true"}}}},
        ]}),
        false,
    )
    .await;
    let (_, body) = get_json(&h, &consents_path, &dpo).await;
    let history = body["history"].as_array().unwrap();
    let via = |via: &str, purpose: &str| {
        history
            .iter()
            .find(|r| r["via"] == via && r["purpose"] == purpose)
            .map(|r| r["status"].clone())
    };
    assert_eq!(
        via("ingest:gpc", "marketing"),
        Some(json!("denied")),
        "{body}"
    );
    assert_eq!(
        via("ingest:consent_preferences", "analytics"),
        Some(json!("granted")),
        "{body}"
    );
    let marketer = token_with(&["marketer"], &[]);
    let (status, body) = get_json(
        &h,
        &format!("/v1/profiles/{id}?purpose=marketing.push"),
        &marketer,
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
}

/// PIPL 39's separate consent to a transfer abroad is its own, distinct from PIPL 23's to the
/// provision (issue 17 item 2): a record says what it covers (`scopes`), and one never implies
/// the other.
#[tokio::test]
async fn cross_border_is_its_own_separate_consent() {
    let h = harness();
    let key = source(&h, "CN");
    send(&h, &key, json!({"batch": [identify("u-x", json!({"email": "x@example.cn", "address": {"country": "CN"}}))]}), false).await;
    let id = profile_id(&h, "u-x").await;
    let admin = token_with(&["admin"], &[]);
    let dpo = token_with(&["dpo"], &[]);
    let (status, recipient) = post_json(
        &h,
        "/v1/recipients",
        &admin,
        json!({"name": "US e-mail service", "contact": "privacy@esp.example", "role": "processor",
               "region": "US", "transfer_mechanism": "standard_contract", "allowed_purposes": ["marketing.email"]}),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{recipient}");
    let recipient_id = recipient["id"].as_str().unwrap().to_string();
    let consent = |scopes: Value, separate: bool| {
        json!({"subject": {"profile_id": id}, "purpose": "marketing.email", "status": "granted",
               "legal_basis": "consent", "notice_version": "2026-01", "source": "form", "channel": "web",
               "recipient": recipient_id, "separate": separate, "scopes": scopes,
               "evidence": {"form": "transfer notice"}})
    };
    let general = json!({"subject": {"profile_id": id}, "purpose": "marketing.email", "status": "granted",
        "legal_basis": "consent", "notice_version": "2026-01", "source": "form", "channel": "web",
        "evidence": {"form": "newsletter"}});
    let (status, body) = post_json(&h, "/v1/consents", &admin, general).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let evaluate = || {
        post_json(
            &h,
            "/v1/policies/evaluate",
            &dpo,
            json!({"action": "export", "purpose": "marketing.email", "profile_id": id,
                   "recipient": {"id": recipient_id, "role": "processor", "region": "US",
                                 "transfer_mechanism": "standard_contract", "allowed_purposes": ["marketing.email"]}}),
        )
    };
    // Scopes belong to a separate consent naming a recipient.
    let (status, body) = post_json(
        &h,
        "/v1/consents",
        &admin,
        consent(json!(["cross_border"]), false),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert!(body.to_string().contains("scopes"), "{body}");
    // A separate consent to the provision only: the transfer abroad is still refused.
    let (status, body) = post_json(
        &h,
        "/v1/consents",
        &admin,
        consent(json!(["provision"]), true),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (status, decision) = evaluate().await;
    assert_eq!(status, StatusCode::OK, "{decision}");
    assert_eq!(decision["decision"]["decision"], "deny", "{decision}");
    assert!(
        decision
            .to_string()
            .contains("pipl.cross_border.separate_consent"),
        "{decision}"
    );
    assert!(decision.to_string().contains("PIPL-39"), "{decision}");
    // The transfer consented to in so many words: allowed.
    let (status, body) = post_json(
        &h,
        "/v1/consents",
        &admin,
        consent(json!(["cross_border"]), true),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (_, decision) = evaluate().await;
    assert_eq!(decision["decision"]["decision"], "allow", "{decision}");
    // The consents view shows what each record covers.
    let (_, view) = get_json(
        &h,
        &format!("/v1/profiles/{id}/consents?purpose=customer_service"),
        &dpo,
    )
    .await;
    assert!(
        view.to_string().contains("\"scopes\":[\"cross_border\"]"),
        "{view}"
    );
}

/// A child under 14 (PIPL Art 28, 31): all of their information is sensitive, so even the
/// service desk needs the guardian's separate consent, recorded as such (issue 17 item 3).
#[tokio::test]
async fn a_child_under_14_needs_the_guardians_separate_consent_for_everything() {
    let h = crate::harness();
    let key = crate::policy::source(&h, "CN");
    crate::policy::send(
        &h,
        &key,
        json!({"batch": [{"type": "identify", "userId": "kid-1", "messageId": "kid-1",
                          "traits": {"phone": "13900007777", "birthday": "2016-03-01",
                                     "address": {"country": "CN", "city": "上海"}}}]}),
        false,
    )
    .await;
    // Not by a lookup: even that is a processing the guardian has not consented to (it
    // answers 404 as for an unknown identifier).
    let (status, _) = get_json(
        &h,
        "/v1/profiles/lookup?type=user_id&value=kid-1&purpose=essential.service",
        &token_with(&["admin"], &[]),
    )
    .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let id = h
        .engine
        .profile_of_identifier(&cdp_core::IdentifierType::UserId, "kid-1", None)
        .unwrap()
        .unwrap()
        .to_string();
    let service = crate::policy::token_with(&["customer_service"], &[]);
    let path = format!("/v1/profiles/{id}?purpose=customer_service");
    let (status, body) = crate::policy::get_json(&h, &path, &service).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    let message = body["error"]["message"].as_str().unwrap();
    assert!(
        message.contains("child under 14") && message.contains("PIPL-28"),
        "{message}"
    );
    let consent = |separate: bool| {
        json!({"subject": {"profile_id": id}, "purpose": "customer_service", "status": "granted",
               "source": "store", "guardian": true, "separate": separate,
               "evidence": {"form": "guardian-signup", "guardian": "parent"}})
    };
    // A guardian's consent that is not separate is not enough.
    let (status, body) =
        crate::policy::post_json(&h, "/v1/consents", &service, consent(false)).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (status, _) = crate::policy::get_json(&h, &path, &service).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, body) =
        crate::policy::post_json(&h, "/v1/consents", &service, consent(true)).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (status, profile) = crate::policy::get_json(&h, &path, &service).await;
    assert_eq!(status, StatusCode::OK, "{profile}");
    // Masked like anyone's.
    assert!(!profile.to_string().contains("13900007777"), "{profile}");
    // The ledger says who consented.
    let (_, consents) = crate::policy::get_json(
        &h,
        &format!("/v1/profiles/{id}/consents?purpose=customer_service"),
        &service,
    )
    .await;
    let history = consents["history"].as_array().unwrap();
    assert!(
        history
            .iter()
            .any(|r| r["guardian"] == true && r["separate"] == true),
        "{consents}"
    );
}
