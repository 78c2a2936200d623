//! Consent, purpose-bound reads, masking, the audit log and the policy routes over HTTP
//! (issue 4).

use axum::body::Body;
use axum::http::{Request, StatusCode};
use base64::Engine as _;
use cdp_core::Channel;
use cdp_crypto::TokenKey;
use serde_json::{Value, json};

use crate::{Harness, SECRET, call, error_code, harness};

pub(crate) fn token_with(roles: &[&str], purposes: &[&str]) -> String {
    let key = TokenKey::hs256(SECRET, "cdp", "cdp-api").unwrap();
    key.issue(
        "agent-7",
        &roles.iter().map(|r| (*r).to_string()).collect::<Vec<_>>(),
        &purposes
            .iter()
            .map(|p| (*p).to_string())
            .collect::<Vec<_>>(),
        time::OffsetDateTime::now_utc().unix_timestamp(),
        600,
    )
    .unwrap()
}

pub(crate) fn source(h: &Harness, region: &str) -> String {
    let (_, key, ticket) = h
        .engine
        .create_source(&format!("shop-{region}"), Channel::Web, Some(region))
        .unwrap();
    ticket.wait_durable().unwrap();
    key
}

pub(crate) async fn send(h: &Harness, key: &str, body: Value, gpc: bool) {
    let mut request = Request::post("/v1/batch")
        .header("content-type", "application/json")
        .header(
            "authorization",
            format!(
                "Basic {}",
                base64::engine::general_purpose::STANDARD.encode(format!("{key}:"))
            ),
        );
    if gpc {
        request = request.header("sec-gpc", "1");
    }
    let (status, _, answer) =
        call(&h.app, request.body(Body::from(body.to_string())).unwrap()).await;
    assert_eq!(
        status,
        StatusCode::OK,
        "{}",
        String::from_utf8_lossy(&answer)
    );
}

pub(crate) async fn get_json(h: &Harness, path: &str, token: &str) -> (StatusCode, Value) {
    let (status, _, body) = call(
        &h.app,
        Request::get(path)
            .header("authorization", format!("Bearer {token}"))
            .body(Body::empty())
            .unwrap(),
    )
    .await;
    (status, serde_json::from_slice(&body).unwrap_or(Value::Null))
}

pub(crate) async fn post_json(
    h: &Harness,
    path: &str,
    token: &str,
    body: Value,
) -> (StatusCode, Value) {
    let (status, _, answer) = call(
        &h.app,
        Request::post(path)
            .header("authorization", format!("Bearer {token}"))
            .header("content-type", "application/json")
            .body(Body::from(body.to_string()))
            .unwrap(),
    )
    .await;
    (
        status,
        serde_json::from_slice(&answer).unwrap_or(Value::Null),
    )
}

fn cites(error: &Value) -> Vec<String> {
    error["error"]["details"]["reasons"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|r| r["cite"].as_array().unwrap().clone())
        .map(|c| c.as_str().unwrap().to_string())
        .collect()
}

pub(crate) fn identify(user: &str, traits: Value) -> Value {
    json!({"type": "identify", "userId": user, "messageId": format!("m-{user}-{}", traits), "traits": traits})
}

pub(crate) async fn profile_id(h: &Harness, user: &str) -> String {
    let admin = token_with(&["admin"], &[]);
    let (status, body) = get_json(
        h,
        &format!("/v1/profiles/lookup?type=user_id&value={user}&purpose=essential.service"),
        &admin,
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    body["id"].as_str().unwrap().to_string()
}

#[tokio::test]
async fn reads_need_a_purpose_are_masked_and_follow_consent() {
    let h = harness();
    let key = source(&h, "CN");
    send(
        &h,
        &key,
        json!({"batch": [identify("u-1", json!({
            "email": "Zhang.San@Example.cn", "phone": "13812341234", "firstName": "张三",
            "birthday": "1990-05-01", "address": {"country": "CN", "city": "上海"},
            "favourite_colour": "blue"
        }))]}),
        false,
    )
    .await;
    let id = profile_id(&h, "u-1").await;
    let service = token_with(&["customer_service"], &[]);
    let marketer = token_with(&["marketer"], &[]);

    // No purpose: 403 purpose_required.
    let (status, body) = get_json(&h, &format!("/v1/profiles/{id}"), &service).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert_eq!(body["error"]["code"], "purpose_required");

    // Customer service sees masked contact data (GB/T 35273 7.2).
    let (status, body) = get_json(
        &h,
        &format!("/v1/profiles/{id}?purpose=customer_service"),
        &service,
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let identifiers = body["identifiers"].as_array().unwrap();
    let value_of = |kind: &str| {
        identifiers
            .iter()
            .find(|i| i["type"] == kind)
            .map(|i| i["value"].as_str().unwrap().to_string())
    };
    assert_eq!(value_of("phone").as_deref(), Some("+86138****1234"));
    assert_eq!(value_of("email").as_deref(), Some("z****@example.cn"));
    assert_eq!(body["traits"]["firstName"]["value"], "张*");
    assert_eq!(body["traits"]["birthday"]["value"], "1990");
    assert_eq!(body["traits"]["phone"]["value"], "138****1234");
    assert!(
        body["traits"].get("favourite_colour").is_none(),
        "unclassified field shown"
    );
    assert!(
        body["policy"]["withheld"]
            .as_array()
            .unwrap()
            .contains(&json!("traits.favourite_colour"))
    );
    assert_eq!(
        body["policy"]["obligations"]["identifiers.phone"],
        "mask:phone"
    );
    assert_eq!(body["policy"]["jurisdictions"], json!(["pipl"]));
    let text = body.to_string();
    assert!(
        !text.contains("13812341234") && !text.contains("Zhang"),
        "{text}"
    );

    // A marketer may not state customer_service (roles.yaml).
    let (status, body) = get_json(
        &h,
        &format!("/v1/profiles/{id}?purpose=customer_service"),
        &marketer,
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert_eq!(body["error"]["code"], "policy_denied");
    assert_eq!(body["error"]["details"]["reasons"][0]["rule"], "roles");

    // A token's purposes claim narrows its role.
    let narrowed = token_with(&["customer_service"], &["essential.service"]);
    let (status, _) = get_json(
        &h,
        &format!("/v1/profiles/{id}?purpose=customer_service"),
        &narrowed,
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN);

    // Marketing needs consent in China (PIPL Art 13: no legitimate interest).
    let path = format!("/v1/profiles/{id}?purpose=marketing.email");
    let (status, body) = get_json(&h, &path, &marketer).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    assert!(cites(&body).contains(&"PIPL-13".to_string()), "{body}");

    let consent = |status: &str| {
        json!({
            "subject": {"type": "email", "value": "zhang.san@example.cn"},
            "purpose": "marketing.email", "status": status, "legal_basis": "consent",
            "notice_version": "2026-01", "source": "newsletter-form", "channel": "web",
            "evidence": {"form": "footer", "checkbox": "unticked by default"}
        })
    };
    let (status, receipt) = post_json(&h, "/v1/consents", &service, consent("granted")).await;
    assert_eq!(status, StatusCode::OK, "{receipt}");
    assert_eq!(receipt["state"], "granted");
    assert_eq!(receipt["profile_id"], id.as_str());
    let (status, body) = get_json(&h, &path, &marketer).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(value_of("phone").as_deref(), Some("+86138****1234"));

    // Withdrawal applies to the very next read.
    let (status, receipt) = post_json(&h, "/v1/consents", &service, consent("withdrawn")).await;
    assert_eq!(status, StatusCode::OK, "{receipt}");
    assert_eq!(receipt["state"], "withdrawn");
    let (status, body) = get_json(&h, &path, &marketer).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert!(cites(&body).contains(&"PIPL-15".to_string()), "{body}");

    let (status, body) = get_json(
        &h,
        &format!("/v1/profiles/{id}/consents?purpose=customer_service"),
        &service,
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["history"].as_array().unwrap().len(), 2);
    let current = body["current"].as_array().unwrap();
    let state_of =
        |purpose: &str| current.iter().find(|c| c["purpose"] == purpose).unwrap()["state"].clone();
    assert_eq!(state_of("marketing.email"), "withdrawn");
    assert!(
        body["history"][0]["origin"]
            .as_str()
            .unwrap()
            .starts_with("email:")
    );
    assert!(!body.to_string().contains("zhang.san@example.cn"));
}

#[tokio::test]
async fn consent_arrives_with_events_and_gpc_objects_to_marketing() {
    let h = harness();
    let key = source(&h, "DE");
    let with_preferences = |message_id: &str, analytics: bool| {
        json!({"type": "track", "event": "Segment Consent Preference Updated", "userId": "u-9",
               "messageId": message_id,
               "context": {"consent": {"categoryPreferences": {"Analytics": analytics, "Advertising": false, "unknown_vendor": true}}}})
    };
    send(&h, &key, json!({"batch": [identify("u-9", json!({"address": {"country": "DE"}})), with_preferences("c-1", true)]}), false).await;
    // The same preferences on the next event are not recorded again.
    send(
        &h,
        &key,
        json!({"batch": [with_preferences("c-2", true)]}),
        false,
    )
    .await;
    let id = profile_id(&h, "u-9").await;
    let dpo = token_with(&["dpo"], &[]);
    let consents_path = format!("/v1/profiles/{id}/consents?purpose=customer_service");
    let (status, body) = get_json(&h, &consents_path, &dpo).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["history"].as_array().unwrap().len(), 2, "{body}");
    let state_of = |body: &Value, purpose: &str| {
        body["current"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["purpose"] == purpose)
            .unwrap()["state"]
            .clone()
    };
    assert_eq!(state_of(&body, "analytics"), "granted");
    assert_eq!(
        state_of(&body, "marketing.advertising.third_party"),
        "denied"
    );

    // Push marketing rests on legitimate interest in the EU: allowed until the person objects.
    let marketer = token_with(&["marketer"], &[]);
    let push = format!("/v1/profiles/{id}?purpose=marketing.push");
    let (status, body) = get_json(&h, &push, &marketer).await;
    assert_eq!(status, StatusCode::OK, "{body}");

    // Sec-GPC: 1 is an objection to marketing (GDPR Art 21).
    send(
        &h,
        &key,
        json!({"batch": [{"type": "page", "userId": "u-9", "messageId": "p-1", "name": "Home"}]}),
        true,
    )
    .await;
    let (status, body) = get_json(&h, &push, &marketer).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    assert!(cites(&body).contains(&"GDPR-21".to_string()), "{body}");
    let (_, body) = get_json(&h, &consents_path, &dpo).await;
    assert_eq!(state_of(&body, "marketing"), "denied");
    let gpc = body["history"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["via"] == "ingest:gpc")
        .expect("a GPC record");
    assert_eq!(gpc["purpose"], "marketing");
}

#[tokio::test]
async fn a_merge_never_turns_a_denial_into_a_grant() {
    let h = harness();
    let key = source(&h, "CN");
    send(&h, &key, json!({"batch": [
        {"type": "identify", "anonymousId": "a-1", "messageId": "x1", "traits": {"email": "li@example.cn"}},
        {"type": "identify", "anonymousId": "a-2", "messageId": "x2", "traits": {"phone": "13900001111"}},
    ]}), false).await;
    let service = token_with(&["customer_service"], &[]);
    for (kind, value, status) in [
        ("email", "li@example.cn", "granted"),
        ("phone", "13900001111", "denied"),
    ] {
        let (code, body) = post_json(
            &h,
            "/v1/consents",
            &service,
            json!({
                "subject": {"type": kind, "value": value, "region": "CN"},
                "purpose": "marketing.sms", "status": status, "notice_version": "2026-01",
                "source": "app", "evidence": {"screen": "settings"}
            }),
        )
        .await;
        assert_eq!(code, StatusCode::OK, "{body}");
    }
    // One event carries both: the two profiles merge.
    send(&h, &key, json!({"batch": [
        {"type": "identify", "userId": "u-li", "messageId": "x3", "traits": {"email": "li@example.cn", "phone": "13900001111"}},
    ]}), false).await;
    let id = profile_id(&h, "u-li").await;
    let marketer = token_with(&["marketer"], &[]);
    let (status, body) = get_json(
        &h,
        &format!("/v1/profiles/{id}?purpose=marketing.sms"),
        &marketer,
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    let dpo = token_with(&["dpo"], &[]);
    let (_, body) = get_json(
        &h,
        &format!("/v1/profiles/{id}/consents?purpose=customer_service"),
        &dpo,
    )
    .await;
    assert_eq!(body["history"].as_array().unwrap().len(), 2, "{body}");
}

#[tokio::test]
async fn consent_input_errors_are_400_or_404_and_store_nothing() {
    let h = harness();
    let key = source(&h, "CN");
    send(
        &h,
        &key,
        json!({"batch": [identify("u-2", json!({"email": "w@example.cn"}))]}),
        false,
    )
    .await;
    let service = token_with(&["customer_service"], &[]);
    let base = json!({"subject": {"type": "email", "value": "w@example.cn"}, "purpose": "marketing.email",
                      "status": "granted", "source": "form", "evidence": {"form": "x"}});
    let mut cases: Vec<(Value, StatusCode, &str)> = Vec::new();
    let mut bad = base.clone();
    bad["purpose"] = json!("marketing.carrier_pigeon");
    cases.push((bad, StatusCode::BAD_REQUEST, "unknown_purpose"));
    let mut bad = base.clone();
    bad["status"] = json!("maybe");
    cases.push((bad, StatusCode::BAD_REQUEST, "invalid_json"));
    let mut bad = base.clone();
    bad.as_object_mut().unwrap().remove("evidence");
    cases.push((bad, StatusCode::BAD_REQUEST, "invalid_json"));
    let mut bad = base.clone();
    bad["subject"] =
        json!({"profile_id": "p_00000000000000000000000000000000", "type": "email", "value": "x"});
    cases.push((bad, StatusCode::BAD_REQUEST, "bad_request"));
    let mut bad = base.clone();
    bad["subject"] = json!({"type": "email", "value": "nobody@example.cn"});
    cases.push((bad, StatusCode::NOT_FOUND, "not_found"));
    let mut bad = base.clone();
    bad["evidence"] = json!({"blob": "x".repeat(5000)});
    cases.push((bad, StatusCode::BAD_REQUEST, "bad_request"));
    // Issue 17 item 7: a recipient nobody registered, a consent dated in the future.
    let mut bad = base.clone();
    bad["recipient"] = json!("rcp_00000000000000aa");
    bad["separate"] = json!(true);
    bad["legal_basis"] = json!("consent");
    cases.push((bad, StatusCode::BAD_REQUEST, "bad_request"));
    let mut bad = base.clone();
    let tomorrow = time::OffsetDateTime::now_utc() + time::Duration::days(1);
    bad["at"] = json!(
        tomorrow
            .format(&time::format_description::well_known::Rfc3339)
            .unwrap()
    );
    cases.push((bad, StatusCode::BAD_REQUEST, "bad_request"));
    for (body, expected, code) in cases {
        let (status, answer) = post_json(&h, "/v1/consents", &service, body.clone()).await;
        assert_eq!(status, expected, "{body} -> {answer}");
        assert_eq!(answer["error"]["code"], code, "{answer}");
        assert!(!answer.to_string().contains("nobody@example.cn"));
    }
    let marketer = token_with(&["marketer"], &[]);
    let (status, _) = post_json(&h, "/v1/consents", &marketer, base.clone()).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let id = profile_id(&h, "u-2").await;
    let (_, body) = get_json(
        &h,
        &format!("/v1/profiles/{id}/consents?purpose=customer_service"),
        &service,
    )
    .await;
    assert_eq!(body["history"].as_array().unwrap().len(), 0, "{body}");
    // A little drift is tolerated, and the record is dated no later than its recording.
    let mut drifted = base.clone();
    let soon = time::OffsetDateTime::now_utc() + time::Duration::minutes(1);
    drifted["at"] = json!(
        soon.format(&time::format_description::well_known::Rfc3339)
            .unwrap()
    );
    let (status, answer) = post_json(&h, "/v1/consents", &service, drifted).await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    let (_, body) = get_json(
        &h,
        &format!("/v1/profiles/{id}/consents?purpose=customer_service"),
        &service,
    )
    .await;
    let history = body["history"].as_array().unwrap();
    assert_eq!(history.len(), 1, "{body}");
    assert!(
        history[0]["at"].as_str() <= history[0]["recorded_at"].as_str(),
        "{body}"
    );
}

#[tokio::test]
async fn every_read_is_audited_and_the_chain_verifies() {
    let h = harness();
    let key = source(&h, "CN");
    send(
        &h,
        &key,
        json!({"batch": [identify("u-3", json!({"email": "a3@example.cn"}))]}),
        false,
    )
    .await;
    let id = profile_id(&h, "u-3").await;
    let service = token_with(&["customer_service"], &[]);
    let marketer = token_with(&["marketer"], &[]);
    let (status, headers, _) = call(
        &h.app,
        Request::get(format!("/v1/profiles/{id}?purpose=customer_service"))
            .header("authorization", format!("Bearer {service}"))
            .body(Body::empty())
            .unwrap(),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    // Where the read's time went: the work, then the wait for its audit entry's flush.
    let timing = headers["server-timing"].to_str().unwrap();
    let parts: Vec<&str> = timing.split(", ").collect();
    assert!(
        parts.len() == 2 && parts[0].starts_with("work;dur=") && parts[1].starts_with("audit;dur="),
        "{timing}"
    );
    get_json(
        &h,
        &format!("/v1/profiles/{id}?purpose=marketing.sms"),
        &marketer,
    )
    .await;
    let auditor = token_with(&["auditor"], &[]);
    let (status, body) = get_json(&h, "/v1/audit?limit=1000", &auditor).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let entries = body["entries"].as_array().unwrap();
    // The lookup in profile_id(), the allowed read, the denied read.
    let reads: Vec<&Value> = entries
        .iter()
        .filter(|e| e["action"] == "profile.read")
        .collect();
    assert_eq!(reads.len(), 3, "{body}");
    assert_eq!(reads[1]["decision"], "allow");
    assert_eq!(reads[1]["purpose"], "customer_service");
    assert_eq!(reads[1]["actor"], "agent-7");
    assert_eq!(reads[2]["decision"], "deny");
    assert!(
        reads[2]["rules"]
            .as_array()
            .unwrap()
            .contains(&json!("pipl.purposes.marketing"))
    );
    let person = reads[1]["person"].as_str().unwrap();
    assert!(person.starts_with("ps_") && !body.to_string().contains(&id));
    assert!(
        reads[1]["policy_version"]
            .as_str()
            .unwrap()
            .starts_with("sha256:")
    );
    for pair in entries.windows(2) {
        assert_eq!(pair[1]["prev"], pair[0]["hash"]);
    }
    let (status, body) = get_json(&h, "/v1/audit/verify", &auditor).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["ok"], true, "{body}");
    assert_eq!(body["entries"].as_u64().unwrap(), entries.len() as u64);
    // The audit log is for auditors: a marketer cannot read it.
    let (status, _) = get_json(&h, "/v1/audit", &marketer).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
}

#[tokio::test]
async fn the_dpo_dry_runs_decisions() {
    let h = harness();
    let dpo = token_with(&["dpo"], &[]);
    let (status, body) = post_json(&h, "/v1/policies/evaluate", &dpo, json!({
        "action": "export", "purpose": "marketing.advertising.third_party",
        "recipient": {"id": "r_tmall", "role": "controller", "region": "CN", "transfer_mechanism": "none", "allowed_purposes": ["marketing.advertising"]},
        "subject": {"residency": "CN", "consents": [{"purpose": "marketing.advertising", "status": "granted", "at": "2026-01-10T00:00:00Z"}]}
    })).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["decision"]["decision"], "deny");
    let reasons = body["decision"]["reasons"].as_array().unwrap();
    assert!(
        reasons
            .iter()
            .any(|r| r["rule"] == "pipl.provision" && r["cite"] == json!(["PIPL-23"])),
        "{body}"
    );

    let (status, body) = post_json(
        &h,
        "/v1/policies/evaluate",
        &dpo,
        json!({"action": "read", "purpose": "x", "bogus": 1}),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    let marketer = token_with(&["marketer"], &[]);
    let (status, _) = post_json(
        &h,
        "/v1/policies/evaluate",
        &marketer,
        json!({"action": "read", "purpose": "analytics"}),
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN);

    let (status, body) = get_json(&h, "/v1/policies", &dpo).await;
    assert_eq!(status, StatusCode::OK);
    assert!(body["version"].as_str().unwrap().starts_with("sha256:"));
    assert_eq!(body["jurisdictions"].as_array().unwrap().len(), 2);
    let (status, body) = get_json(&h, "/v1/policies/ropa", &dpo).await;
    assert_eq!(status, StatusCode::OK);
    let markdown = body["markdown"].as_str().unwrap();
    assert!(markdown.contains("# Record of processing activities"));
    assert!(markdown.contains("`marketing.email`"));
    let _ = error_code;
}
