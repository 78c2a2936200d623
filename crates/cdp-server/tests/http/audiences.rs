//! Computed traits, the search index and audiences over HTTP (issue 5): counts with
//! policy removals, saved audiences, members re-checked against the store, errors.

use axum::http::StatusCode;
use serde_json::{Value, json};

use crate::Harness;
use crate::policy::{get_json, post_json, profile_id, send, source, token_with};

fn order(user: &str, id: &str, revenue: f64, category: &str) -> Value {
    json!({"type": "track", "userId": user, "messageId": id, "event": "Order Completed",
           "properties": {"revenue": revenue, "products": [{"category": category}]}})
}

fn person(user: &str, city: &str, birthday: &str) -> Value {
    json!({"type": "identify", "userId": user, "messageId": format!("id-{user}"),
           "traits": {"address": {"country": "CN", "city": city}, "birthday": birthday,
                      "email": format!("{user}@example.cn")}})
}

async fn consent(h: &Harness, user: &str, purpose: &str, status: &str) {
    let service = token_with(&["customer_service"], &[]);
    let notice = if purpose == "marketing.sms" {
        json!("2026-01")
    } else {
        Value::Null
    };
    let (code, body) = post_json(
        h,
        "/v1/consents",
        &service,
        json!({
            "subject": {"type": "user_id", "value": user}, "purpose": purpose, "status": status,
            "notice_version": notice, "source": "app", "evidence": {"screen": "privacy"}
        }),
    )
    .await;
    assert_eq!(code, StatusCode::OK, "{body}");
}

async fn count(h: &Harness, token: &str, body: Value) -> Value {
    let (status, answer) = post_json(h, "/v1/audiences/count", token, body).await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    answer
}

/// Five people in 上海 / 北京 with orders, consents, a minor and an objection.
async fn shop() -> Harness {
    let h = crate::harness();
    let key = source(&h, "CN");
    send(&h, &key, json!({"batch": [
        person("u-a", "上海", "1990-01-01"), order("u-a", "o-a", 1500.0, "shoes"),
        person("u-b", "上海", "1985-01-01"), order("u-b", "o-b", 2000.0, "bags"),
        person("u-c", "北京", "1992-01-01"), order("u-c", "o-c", 100.0, "shoes"),
        person("u-d", "上海", "2014-01-01"), order("u-d", "o-d", 3000.0, "toys"),
        person("u-e", "上海", "1980-01-01"), order("u-e", "o-e", 1200.0, "shoes"),
        {"type": "track", "userId": "u-c", "messageId": "v1", "event": "Product Viewed", "properties": {"product_id": "sku-1", "category": "coats"}},
        {"type": "track", "userId": "u-c", "messageId": "v2", "event": "Product Viewed", "properties": {"product_id": "sku-1", "category": "coats"}},
        {"type": "track", "userId": "u-c", "messageId": "v3", "event": "Product Viewed", "properties": {"product_id": "sku-1", "category": "coats"}},
    ]}), false)
    .await;
    for user in ["u-a", "u-c", "u-d", "u-e"] {
        consent(&h, user, "marketing.sms", "granted").await;
    }
    for user in ["u-a", "u-e"] {
        consent(&h, user, "marketing.advertising", "granted").await;
    }
    consent(&h, "u-e", "personalization", "denied").await;
    h.index();
    h
}

#[tokio::test]
async fn counts_apply_the_language_and_the_policies() {
    let h = shop().await;
    let marketer = token_with(&["marketer"], &[]);
    let answer = count(
        &h,
        &marketer,
        json!({"query": "city:上海 AND monetary_90d>=1000", "purpose": "marketing.sms"}),
    )
    .await;
    // u-a, u-b, u-d, u-e match; u-b has no consent, u-d is 12 (no guardian's consent).
    assert_eq!(answer["matched"], 4, "{answer}");
    assert_eq!(answer["count"], 2, "{answer}");
    assert_eq!(answer["removed_by_policy"], 2, "{answer}");

    let answer = count(
        &h,
        &marketer,
        json!({"query": "city:上海 AND consent.marketing_sms:granted AND monetary_90d>=1000", "purpose": "analytics"}),
    )
    .await;
    assert_eq!(answer["matched"], 3, "{answer}");

    // PIPL Art 24: the objector is in no personalised audience.
    let answer = count(
        &h,
        &marketer,
        json!({"query": "city:上海", "purpose": "marketing.advertising.first_party"}),
    )
    .await;
    assert_eq!(
        (answer["matched"].as_u64(), answer["count"].as_u64()),
        (Some(4), Some(1)),
        "{answer}"
    );

    // Computed traits: hesitation, interests, lifecycle, event counts within days, minors.
    for (query, expected) in [
        ("hesitating:true", 1),
        ("interest:shoes", 3),
        ("lifecycle:acquisition AND orders_total=1", 5),
        (
            "events.order_completed.30d>=1 AND events.product_viewed.7d>=3",
            1,
        ),
        ("minor:true", 1),
        ("age_band:30-39", 2),
        ("NOT city:上海", 1),
        ("jurisdiction:pipl AND channel:web", 5),
    ] {
        let answer = count(
            &h,
            &marketer,
            json!({ "query": query, "purpose": "analytics" }),
        )
        .await;
        assert_eq!(answer["matched"], expected, "{query}: {answer}");
    }
    let tree = json!({"purpose": "analytics", "condition": {"all": [
        {"field": "city", "op": "in", "values": ["上海"]},
        {"field": "monetary_90d", "op": "range", "gte": 1000, "lt": 2500}
    ]}});
    assert_eq!(count(&h, &marketer, tree).await["matched"], 3);
}

#[tokio::test]
async fn query_errors_point_at_the_problem() {
    let h = crate::harness();
    let marketer = token_with(&["marketer"], &[]);
    for (body, at) in [
        (json!({"query": "tier:vip AND monetary_9d>=5"}), json!("13")),
        (
            json!({"condition": {"all": [{"field": "tier", "op": "range", "gte": 1}]}}),
            json!("condition.all[0].op"),
        ),
        (
            json!({"query": "consent.marketing_fax:granted"}),
            json!("0"),
        ),
    ] {
        let mut body = body;
        body["purpose"] = json!("analytics");
        let (status, answer) = post_json(&h, "/v1/audiences/count", &marketer, body.clone()).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
        assert_eq!(answer["error"]["code"], "invalid_query", "{answer}");
        assert_eq!(answer["error"]["details"]["at"], at, "{answer}");
    }
    let (status, answer) = post_json(
        &h,
        "/v1/audiences/count",
        &marketer,
        json!({"query": "tier:vip", "condition": {"field": "tier", "op": "exists"}, "purpose": "analytics"}),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{answer}");
    let (status, answer) = post_json(
        &h,
        "/v1/audiences/count",
        &marketer,
        json!({"query": "tier:vip", "purpose": "customer_service"}),
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{answer}");
    assert_eq!(answer["error"]["code"], "policy_denied");
    let service = token_with(&["customer_service"], &[]);
    let (status, _) = post_json(
        &h,
        "/v1/audiences/count",
        &service,
        json!({"query": "tier:vip", "purpose": "customer_service"}),
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    // A count states its purpose.
    let (status, answer) = post_json(
        &h,
        "/v1/audiences/count",
        &marketer,
        json!({"query": "tier:vip"}),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{answer}");
    assert!(
        answer["error"]["message"]
            .as_str()
            .unwrap()
            .contains("purpose"),
        "{answer}"
    );
    let analyst = token_with(&["analyst"], &[]);
    let (status, answer) = post_json(
        &h,
        "/v1/audiences/count",
        &analyst,
        json!({"query": "tier:vip", "purpose": "analytics"}),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    let (status, _) = post_json(
        &h,
        "/v1/audiences",
        &analyst,
        json!({"name": "x", "purpose": "analytics", "query": "tier:vip"}),
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
}

#[tokio::test]
async fn saved_audiences_list_members_allowed_now() {
    let h = shop().await;
    let marketer = token_with(&["marketer"], &[]);
    let (status, created) = post_json(
        &h,
        "/v1/audiences",
        &marketer,
        json!({
            "name": "上海 big spenders", "purpose": "marketing.sms",
            "query": "city:上海 AND monetary_90d>=1000"
        }),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    let id = created["id"].as_str().unwrap().to_string();
    assert_eq!(created["size"]["count"], 2);
    let (status, view) = get_json(&h, &format!("/v1/audiences/{id}"), &marketer).await;
    assert_eq!(status, StatusCode::OK, "{view}");
    assert_eq!(view["name"], "上海 big spenders");
    assert_eq!(view["size"]["removed_by_policy"], 2);
    assert!(view["size"]["evaluated_at"].is_string());

    let members_path = format!("/v1/audiences/{id}/members?limit=1");
    let (status, page) = get_json(&h, &members_path, &marketer).await;
    assert_eq!(status, StatusCode::OK, "{page}");
    assert_eq!(page["members"].as_array().unwrap().len(), 1);
    let after = page["next_after"].as_str().unwrap().to_string();
    let (_, second) = get_json(&h, &format!("{members_path}&after={after}"), &marketer).await;
    let mut members: Vec<Value> = page["members"].as_array().unwrap().clone();
    members.extend(second["members"].as_array().unwrap().clone());
    let a = profile_id(&h, "u-a").await;
    let e = profile_id(&h, "u-e").await;
    let mut expected = vec![json!(a), json!(e)];
    expected.sort_by_key(|v| v.to_string());
    members.sort_by_key(|v| v.to_string());
    assert_eq!(members, expected);
    let text = page.to_string();
    assert!(
        !text.contains("example.cn"),
        "members are pseudonymous: {text}"
    );

    // Withdrawal applies at once: the next listing re-checks, before the index has caught up.
    consent(&h, "u-a", "marketing.sms", "withdrawn").await;
    let (_, page) = get_json(&h, &format!("/v1/audiences/{id}/members"), &marketer).await;
    assert_eq!(page["members"], json!([e]), "{page}");
    assert_eq!(page["removed_on_recheck"], 1);
    h.index();
    let (_, view) = get_json(&h, &format!("/v1/audiences/{id}"), &marketer).await;
    assert_eq!(view["size"]["count"], 1, "{view}");

    let (status, _) = get_json(&h, "/v1/audiences/aud_0000000000000000", &marketer).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, _) = get_json(&h, "/v1/audiences/nope", &marketer).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let auditor = token_with(&["auditor"], &[]);
    let (_, log) = get_json(&h, "/v1/audit?limit=1000", &auditor).await;
    let actions: Vec<&str> = log["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["action"].as_str().unwrap())
        .collect();
    for action in ["audience.create", "audience.evaluate", "audience.members"] {
        assert!(
            actions.contains(&action),
            "{action} not audited: {actions:?}"
        );
    }
}

/// A role without individual access (the analyst) sees counts below the minimum audience size
/// as "<20" (issue 17 item 5): a count cannot single a person out, nor can a subtraction.
#[tokio::test]
async fn small_counts_are_suppressed_for_aggregate_only_roles() {
    let h = shop().await;
    let analyst = token_with(&["analyst"], &[]);
    let marketer = token_with(&["marketer"], &[]);
    let body = json!({"query": "city:上海", "purpose": "analytics"});
    let exact = count(&h, &marketer, body.clone()).await;
    assert_eq!(exact["matched"], 4, "{exact}");
    assert!(exact.get("suppressed_below").is_none(), "{exact}");
    let suppressed = count(&h, &analyst, body).await;
    assert_eq!(suppressed["matched"], "<20", "{suppressed}");
    assert_eq!(suppressed["count"], "<20", "{suppressed}");
    assert_eq!(suppressed["removed_by_policy"], "<20", "{suppressed}");
    assert_eq!(suppressed["suppressed_below"], 20);
    // A saved audience's size too.
    let (_, audience) = post_json(
        &h,
        "/v1/audiences",
        &marketer,
        json!({"name": "Shanghai", "purpose": "analytics", "query": "city:上海"}),
    )
    .await;
    let path = format!("/v1/audiences/{}", audience["id"].as_str().unwrap());
    let (status, view) = get_json(&h, &path, &analyst).await;
    assert_eq!(status, StatusCode::OK, "{view}");
    assert_eq!(view["size"]["matched"], "<20", "{view}");
    let (_, view) = get_json(&h, &path, &marketer).await;
    assert_eq!(view["size"]["matched"], 4, "{view}");
}
