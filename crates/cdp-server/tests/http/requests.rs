//! Data-subject requests over HTTP (issue 7): erasure is final, access bundles, rectification,
//! restriction, objection, tags, refusals, and the audit trail.

use axum::http::StatusCode;
use serde_json::{Value, json};

use crate::exports::{file, people, wait_done};
use crate::policy::{get_json, post_json, profile_id, send, source, token_with};

async fn request(h: &crate::Harness, body: Value) -> Value {
    let dpo = token_with(&["dpo"], &[]);
    let (status, answer) = post_json(h, "/v1/requests", &dpo, body).await;
    assert_eq!(status, StatusCode::CREATED, "{answer}");
    answer
}

async fn run_export(
    h: &crate::Harness,
    marketer: &str,
    audience: &Value,
    recipient: &Value,
) -> Value {
    let body = json!({"audience": audience["id"], "purpose": "marketing.sms", "recipient": recipient["id"],
                      "fields": ["pseudonym"], "format": "csv"});
    let (_, started) = post_json(h, "/v1/exports", marketer, body).await;
    wait_done(h, marketer, started["id"].as_str().unwrap()).await
}

async fn count(h: &crate::Harness, marketer: &str, query: &str) -> Value {
    post_json(
        h,
        "/v1/audiences/count",
        marketer,
        json!({"query": query, "purpose": "marketing.sms"}),
    )
    .await
    .1
}

fn verified() -> Value {
    json!({"method": "signed-in app session", "checked_by": "dpo-1"})
}

#[tokio::test]
async fn erasure_is_final_and_later_exports_list_the_removal() {
    let h = crate::harness();
    people(&h, 25).await;
    let admin = token_with(&["admin"], &[]);
    let marketer = token_with(&["marketer"], &[]);
    let dpo = token_with(&["dpo"], &[]);
    let (_, recipient) = post_json(&h, "/v1/recipients", &admin, json!({"name": "SMS gateway", "contact": "dpo@sms.example.cn",
        "role": "processor", "region": "CN", "transfer_mechanism": "none", "allowed_purposes": ["marketing.sms"]})).await;
    let (_, audience) = post_json(
        &h,
        "/v1/audiences",
        &marketer,
        json!({"name": "all", "purpose": "marketing.sms", "query": "city:上海"}),
    )
    .await;
    let first = run_export(&h, &marketer, &audience, &recipient).await;
    assert_eq!(first["status"], "done", "{first}");
    let old_id = profile_id(&h, "x-0").await;

    // Access first: the bundle holds the identifiers in clear, consents and the export.
    let access = request(&h, json!({"type": "access", "subject": {"type": "user_id", "value": "x-0"}, "verification": verified()})).await;
    assert_eq!(access["status"], "done", "{access}");
    assert!(access["due_at"].is_string());
    let (status, bundle) = get_json(
        &h,
        &format!("/v1/requests/{}/bundle", access["id"].as_str().unwrap()),
        &dpo,
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{bundle}");
    assert_eq!(bundle["format"], "cdp-access-bundle/1");
    let text = bundle.to_string();
    assert!(
        text.contains("buyer.0@gmail.com") && text.contains("+8613900000000"),
        "{text}"
    );
    assert_eq!(bundle["consents"].as_array().unwrap().len(), 1);
    assert_eq!(bundle["exports"][0]["export_id"], first["id"]);
    assert_eq!(bundle["audiences"][0]["id"], audience["id"]);
    assert!(!bundle["events"].as_array().unwrap().is_empty());

    // Erasure.
    let erased = request(
        &h,
        json!({"type": "erasure", "subject": {"profile_id": old_id}, "verification": verified()}),
    )
    .await;
    assert_eq!(erased["status"], "done", "{erased}");
    assert!(erased.get("profile_id").is_none(), "{erased}");
    let receipt = erased["result"]["receipt"].clone();
    assert_eq!(receipt["data_key_destroyed"], true);
    assert_eq!(receipt["recipients_to_notify"][0]["export_id"], first["id"]);
    let mut unsigned = receipt.clone();
    let signature = unsigned["signature"].as_str().unwrap().to_string();
    let key = unsigned["signing_key"].as_str().unwrap().to_string();
    unsigned.as_object_mut().unwrap().remove("signature");
    unsigned.as_object_mut().unwrap().remove("signing_key");
    assert!(cdp_crypto::verify_signature(
        &key,
        &serde_json::to_vec(&unsigned).unwrap(),
        &signature
    ));

    // Every former identifier is unknown; no key can open their records; the index forgot them.
    for (kind, value) in [
        ("user_id", "x-0"),
        ("email", "buyer.0@gmail.com"),
        ("phone", "+8613900000000"),
    ] {
        let (status, _) = get_json(
            &h,
            &format!("/v1/profiles/lookup?type={kind}&value={value}&purpose=essential.service"),
            &admin,
        )
        .await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{kind}");
    }
    let old: cdp_core::ProfileId = old_id.parse().unwrap();
    assert!(!h.engine.holds_data_key(&old).unwrap());
    let (status, _) = get_json(
        &h,
        &format!("/v1/profiles/{old_id}?purpose=essential.service"),
        &admin,
    )
    .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    h.index();
    assert!(!h.indexer.index().contains(old.as_bytes()).unwrap());
    let (_, members) = get_json(
        &h,
        &format!(
            "/v1/audiences/{}/members?limit=1000",
            audience["id"].as_str().unwrap()
        ),
        &marketer,
    )
    .await;
    assert!(!members.to_string().contains(&old_id));

    // The next export to the recipient lists their pseudonym for removal.
    let second = run_export(&h, &marketer, &audience, &recipient).await;
    assert_eq!(second["manifest"]["counts"]["removals"], 1, "{second}");
    let (_, csv) = file(&h, &marketer, second["id"].as_str().unwrap()).await;
    assert!(csv.lines().any(|l| l.starts_with("remove,")), "{csv}");

    // Their old events, sent again, make a new person with nothing of the old one.
    // Through the same source (its messageIds are de-duplicated per source).
    let (status, answer) = post_json(&h, "/v1/import?source=shop-CN", &admin, json!({"batch": [
        {"type": "identify", "userId": "x-0", "messageId": "xi-0", "traits": {"email": "Buyer.0@Gmail.com"}}]})).await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    assert_eq!(
        answer["accepted"], 1,
        "the old messageId must not count as a retry: {answer}"
    );
    let new_id = profile_id(&h, "x-0").await;
    assert_ne!(new_id, old_id);
    let (_, consents) = get_json(
        &h,
        &format!("/v1/profiles/{new_id}/consents?purpose=customer_service"),
        &dpo,
    )
    .await;
    assert_eq!(
        consents["history"].as_array().unwrap().len(),
        0,
        "{consents}"
    );

    // The audit log keeps the steps, with the pseudonym only, and still verifies.
    let auditor = token_with(&["auditor"], &[]);
    let (_, log) = get_json(&h, "/v1/audit?limit=1000", &auditor).await;
    let actions: Vec<&str> = log["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["action"].as_str().unwrap())
        .collect();
    for action in [
        "request.erasure.received",
        "request.erasure.in_progress",
        "person.erased",
        "request.erasure.done",
        "request.access.bundle",
    ] {
        assert!(actions.contains(&action), "{action}: {actions:?}");
    }
    assert!(!log.to_string().contains(&old_id));
    let (_, verify) = get_json(&h, "/v1/audit/verify", &auditor).await;
    assert_eq!(verify["ok"], true);
}

#[tokio::test]
async fn rectification_restriction_objection_and_tags() {
    let h = crate::harness();
    let key = source(&h, "CN");
    send(&h, &key, json!({"batch": [
        {"type": "identify", "userId": "r-1", "messageId": "r1", "traits": {"firstName": "Wrong", "tags": ["vip", "coupon-hunter"], "address": {"country": "CN", "city": "上海"}}}
    ]}), false).await;
    let service = token_with(&["customer_service"], &[]);
    post_json(
        &h,
        "/v1/consents",
        &service,
        json!({"subject": {"type": "user_id", "value": "r-1"}, "purpose": "marketing.sms",
        "status": "granted", "notice_version": "2026-01", "source": "app", "evidence": {"x": 1}}),
    )
    .await;
    let id = profile_id(&h, "r-1").await;
    let dpo = token_with(&["dpo"], &[]);
    let marketer = token_with(&["marketer"], &[]);

    let done = request(&h, json!({"type": "rectification", "subject": {"profile_id": id}, "verification": verified(), "traits": {"firstName": "Right"}})).await;
    assert_eq!(done["status"], "done", "{done}");
    let (_, profile) = get_json(
        &h,
        &format!("/v1/profiles/{id}?purpose=customer_service"),
        &dpo,
    )
    .await;
    assert_eq!(
        profile["traits"]["firstName"]["value"], "R****",
        "{profile}"
    );
    assert!(
        profile["traits"]["firstName"]["source_id"]
            .as_str()
            .unwrap()
            .starts_with("dsr:req_")
    );

    let done = request(&h, json!({"type": "tags", "subject": {"profile_id": id}, "verification": verified(), "delete_tags": ["coupon-hunter"]})).await;
    assert_eq!(done["result"]["tags"], json!(["vip"]), "{done}");
    h.index();
    assert_eq!(
        count(&h, &marketer, "tag:coupon-hunter").await["matched"],
        0
    );
    assert_eq!(count(&h, &marketer, "tag:vip").await["count"], 1);

    let done = request(
        &h,
        json!({"type": "restriction", "subject": {"profile_id": id}, "verification": verified()}),
    )
    .await;
    assert_eq!(done["status"], "done");
    let (status, denied) = get_json(
        &h,
        &format!("/v1/profiles/{id}?purpose=customer_service"),
        &service,
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{denied}");
    assert!(denied.to_string().contains("PIPL-47"));
    h.index();
    assert_eq!(count(&h, &marketer, "tag:vip").await["count"], 0);
    request(&h, json!({"type": "restriction", "subject": {"profile_id": id}, "verification": verified(), "lift": true})).await;
    let (status, _) = get_json(
        &h,
        &format!("/v1/profiles/{id}?purpose=customer_service"),
        &service,
    )
    .await;
    assert_eq!(status, StatusCode::OK);

    let done = request(&h, json!({"type": "objection", "subject": {"type": "user_id", "value": "r-1"}, "verification": verified()})).await;
    assert_eq!(
        done["result"]["objected_to"],
        json!(["marketing", "personalization"])
    );
    let (status, _) = get_json(
        &h,
        &format!("/v1/profiles/{id}?purpose=marketing.sms"),
        &marketer,
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN);

    // Refusals and errors.
    let refused = request(&h, json!({"type": "access", "subject": {"type": "email", "value": "nobody@example.cn"}, "verification": verified()})).await;
    assert_eq!(refused["status"], "refused");
    assert!(refused["reason"].as_str().unwrap().contains("no person"));
    let bad = request(&h, json!({"type": "objection", "subject": {"profile_id": id}, "verification": verified(), "scope": ["analytics"]})).await;
    assert_eq!(bad["status"], "refused");
    for body in [
        json!({"type": "access", "subject": {"profile_id": id}}),
        json!({"type": "forget-me", "subject": {"profile_id": id}, "verification": verified()}),
    ] {
        let (status, _) = post_json(&h, "/v1/requests", &dpo, body).await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
    }
    let (status, _) = post_json(
        &h,
        "/v1/requests",
        &marketer,
        json!({"type": "access", "subject": {"profile_id": id}, "verification": verified()}),
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (_, list) = get_json(&h, "/v1/requests", &dpo).await;
    assert_eq!(list["requests"].as_array().unwrap().len(), 7);
    assert!(!list.to_string().contains("Wrong"));
}

#[tokio::test]
async fn retention_deletes_old_events_and_erases_long_inactive_people() {
    let h = crate::harness();
    let key = source(&h, "CN");
    let old = (time::OffsetDateTime::now_utc() - time::Duration::days(500))
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap();
    let ancient = (time::OffsetDateTime::now_utc() - time::Duration::days(1500))
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap();
    send(&h, &key, json!({"batch": [
        {"type": "identify", "userId": "keep", "messageId": "k1", "traits": {"address": {"country": "CN"}}},
        {"type": "page", "userId": "keep", "messageId": "k2", "name": "Old page", "timestamp": old},
        {"type": "identify", "userId": "gone", "messageId": "g1", "timestamp": ancient, "traits": {"address": {"country": "CN"}}},
    ]}), false).await;
    let keep = profile_id(&h, "keep").await;
    let dpo = token_with(&["dpo"], &[]);
    let (status, dry) = post_json(&h, "/v1/retention/run", &dpo, json!({"dry_run": true})).await;
    assert_eq!(status, StatusCode::OK, "{dry}");
    assert_eq!(
        (
            dry["events_deleted"].as_u64(),
            dry["people_erased"].as_u64()
        ),
        (Some(1), Some(1)),
        "{dry}"
    );
    // A dry run changes nothing.
    assert_eq!(
        h.engine
            .unaudited_events(keep.parse().unwrap(), 100)
            .unwrap()
            .len(),
        2
    );
    // A body that does not say `"dry_run": false` deletes nothing (issue 17 item 12).
    for body in [
        json!([]),
        json!({}),
        json!({"dry_run": "false"}),
        json!(null),
    ] {
        let (status, answer) = post_json(&h, "/v1/retention/run", &dpo, body.clone()).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}: {answer}");
        assert_eq!(answer["error"]["code"], "invalid_json", "{body}: {answer}");
    }
    let (_, answer) = post_json(&h, "/v1/retention/run", &dpo, json!({})).await;
    assert!(
        answer.to_string().contains("missing the field dry_run"),
        "{answer}"
    );
    let (_, answer) = post_json(&h, "/v1/retention/run", &dpo, json!([])).await;
    assert!(
        answer.to_string().contains("must be a JSON object"),
        "{answer}"
    );
    assert_eq!(
        h.engine
            .unaudited_events(keep.parse().unwrap(), 100)
            .unwrap()
            .len(),
        2
    );
    let (_, report) = post_json(&h, "/v1/retention/run", &dpo, json!({"dry_run": false})).await;
    assert_eq!(
        (
            report["events_deleted"].as_u64(),
            report["people_erased"].as_u64()
        ),
        (Some(1), Some(1)),
        "{report}"
    );
    assert_eq!(
        h.engine
            .unaudited_events(keep.parse().unwrap(), 100)
            .unwrap()
            .len(),
        1
    );
    let admin = token_with(&["admin"], &[]);
    let (status, _) = get_json(
        &h,
        "/v1/profiles/lookup?type=user_id&value=gone&purpose=essential.service",
        &admin,
    )
    .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let auditor = token_with(&["auditor"], &[]);
    let (_, log) = get_json(&h, "/v1/audit?limit=1000", &auditor).await;
    let actions: Vec<&str> = log["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["action"].as_str().unwrap())
        .collect();
    assert!(
        actions.contains(&"retention.dry_run")
            && actions.contains(&"retention.run")
            && actions.contains(&"person.erased"),
        "{actions:?}"
    );
    let marketer = token_with(&["marketer"], &[]);
    // Permission before the body: a malformed body from a caller without the right is 403.
    for body in [json!({"dry_run": true}), json!([])] {
        let (status, _) = post_json(&h, "/v1/retention/run", &marketer, body).await;
        assert_eq!(status, StatusCode::FORBIDDEN);
    }
}

/// The operator's free-text verification of a requester is for those who handle requests:
/// the auditor lists and reads requests without it (issue 17 item 5).
#[tokio::test]
async fn the_auditor_does_not_see_how_requesters_were_verified() {
    let h = crate::harness();
    people(&h, 1).await;
    let secret =
        json!({"method": "ID card checked at the counter", "id_number": "110101199003071234"});
    let done = request(&h, json!({"type": "access", "subject": {"type": "user_id", "value": "x-0"}, "verification": secret})).await;
    let id = done["id"].as_str().unwrap().to_string();
    let dpo = token_with(&["dpo"], &[]);
    let auditor = token_with(&["auditor"], &[]);
    let (status, listed) = get_json(&h, "/v1/requests", &dpo).await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        listed.to_string().contains("110101199003071234"),
        "{listed}"
    );
    for path in ["/v1/requests".to_string(), format!("/v1/requests/{id}")] {
        let (status, body) = get_json(&h, &path, &auditor).await;
        assert_eq!(status, StatusCode::OK, "{path}: {body}");
        let text = body.to_string();
        assert!(!text.contains("110101199003071234"), "{path}: {text}");
        assert!(!text.contains("ID card"), "{path}: {text}");
        assert!(text.contains("withheld"), "{path}: {text}");
        assert!(text.contains("\"status\":\"done\""), "{path}: {text}");
    }
}
