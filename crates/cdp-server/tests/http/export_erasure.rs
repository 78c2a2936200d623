//! Erasure reaches export files (issue 17 item 4; GDPR Art 17(2), 19, PIPL Art 47): a file
//! that holds the erased person is rewritten without them (also when it has no pseudonym
//! column), its manifest says so and is signed again, the old file is gone; expired files are
//! deleted by the retention sweep and an erasure withdraws them.

use axum::http::StatusCode;
use serde_json::{Value, json};

use crate::exports::{file, people, wait_done};
use crate::policy::{get_json, post_json, profile_id, token_with};
use crate::{Harness, harness_with_exports};

async fn sms_recipient(h: &Harness) -> Value {
    let admin = token_with(&["admin"], &[]);
    let (status, recipient) = post_json(h, "/v1/recipients", &admin, json!({"name": "SMS gateway", "contact": "dpo@sms.example.cn",
        "role": "processor", "region": "CN", "transfer_mechanism": "none", "allowed_purposes": ["marketing.sms"]})).await;
    assert_eq!(status, StatusCode::CREATED, "{recipient}");
    recipient
}

async fn shanghai(h: &Harness) -> Value {
    let marketer = token_with(&["marketer"], &[]);
    let (status, audience) = post_json(
        h,
        "/v1/audiences",
        &marketer,
        json!({"name": "Shanghai", "purpose": "marketing.sms", "query": "city:上海"}),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{audience}");
    audience
}

async fn export(h: &Harness, recipient: &Value, audience: &Value, fields: Value) -> Value {
    let marketer = token_with(&["marketer"], &[]);
    let (status, started) = post_json(h, "/v1/exports", &marketer, json!({"audience": audience["id"],
        "purpose": "marketing.sms", "recipient": recipient["id"], "fields": fields, "format": "csv"}))
    .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{started}");
    wait_done(h, &marketer, started["id"].as_str().unwrap()).await
}

async fn erase(h: &Harness, user_id: &str) -> Value {
    let dpo = token_with(&["dpo"], &[]);
    let id = profile_id(h, user_id).await;
    let (status, erased) = post_json(
        h,
        "/v1/requests",
        &dpo,
        json!({"type": "erasure", "subject": {"profile_id": id},
        "verification": {"method": "signed-in app session", "checked_by": "dpo-1"}}),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{erased}");
    assert_eq!(erased["status"], "done", "{erased}");
    erased["result"]["receipt"].clone()
}

fn sha256_hex(text: &str) -> String {
    let mut hash = cdp_crypto::Sha256Stream::default();
    hash.update(text.as_bytes());
    hash.finish_hex()
}

fn signature_holds(manifest: &Value) -> bool {
    let mut unsigned = manifest.clone();
    let signature = unsigned["signature"].as_str().unwrap().to_string();
    unsigned.as_object_mut().unwrap().remove("signature");
    let manifest: cdp_engine::exports::Manifest = serde_json::from_value(unsigned).unwrap();
    cdp_crypto::verify_signature(&manifest.signing_key, &manifest.signed_bytes(), &signature)
}

#[tokio::test]
async fn an_erasure_rewrites_the_export_files_that_hold_the_person() {
    let h = crate::harness();
    people(&h, 25).await;
    let marketer = token_with(&["marketer"], &[]);
    let recipient = sms_recipient(&h).await;
    let audience = shanghai(&h).await;
    // No pseudonym column: the file itself does not say whose row is whose.
    let done = export(
        &h,
        &recipient,
        &audience,
        json!(["phone_sha256_google", "city"]),
    )
    .await;
    assert_eq!(done["status"], "done", "{done}");
    let id = done["id"].as_str().unwrap().to_string();
    let included = done["manifest"]["counts"]["included"].as_u64().unwrap();
    let (_, before) = file(&h, &marketer, &id).await;
    let erased_hash = cdp_engine::exports::phone_sha256_google("+8613900000000");
    assert!(before.contains(&erased_hash), "{before}");
    assert_eq!(
        before.lines().count() as u64,
        included + 1,
        "header and rows"
    );

    let receipt = erase(&h, "x-0").await;
    let notified = &receipt["recipients_to_notify"][0];
    assert_eq!(notified["export_id"], id.as_str(), "{receipt}");
    assert_eq!(notified["recipient_id"], recipient["id"]);
    assert_eq!(
        notified["file"], "rewritten without the person",
        "{receipt}"
    );

    // The same export, its file without the person: every other row unchanged.
    let (status, after) = file(&h, &marketer, &id).await;
    assert_eq!(status, StatusCode::OK, "{after}");
    assert!(!after.contains(&erased_hash), "{after}");
    let expected: Vec<&str> = before
        .lines()
        .filter(|line| !line.contains(&erased_hash))
        .collect();
    assert_eq!(after.lines().collect::<Vec<_>>(), expected);
    let (_, record) = get_json(&h, &format!("/v1/exports/{id}"), &marketer).await;
    let manifest = &record["manifest"];
    assert_eq!(manifest["counts"]["included"], included - 1, "{manifest}");
    assert_eq!(manifest["counts"]["excluded"]["erased"], 1, "{manifest}");
    assert_eq!(manifest["file_sha256"], sha256_hex(&after).as_str());
    assert_eq!(manifest["file_bytes"], after.len() as u64);
    assert!(manifest["revised_at"].is_string(), "{manifest}");
    assert!(signature_holds(manifest), "{manifest}");

    // One file per export on disk, the rewritten one; readable by the server's user only.
    let names: Vec<String> = std::fs::read_dir(h.engine_exports_dir())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(names, vec![format!("{id}.r1.sealed")]);
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        let path = h.engine_exports_dir().join(&names[0]);
        assert_eq!(
            std::fs::metadata(path).unwrap().permissions().mode() & 0o777,
            0o600
        );
    }

    // A second erasure rewrites the rewritten file.
    erase(&h, "x-1").await;
    let (_, again) = file(&h, &marketer, &id).await;
    assert_eq!(again.lines().count() as u64, included - 1);
    let (_, record) = get_json(&h, &format!("/v1/exports/{id}"), &marketer).await;
    assert_eq!(record["manifest"]["counts"]["excluded"]["erased"], 2);
    assert!(signature_holds(&record["manifest"]));

    // The next export of the audience to the recipient tells it to remove both.
    let next = export(&h, &recipient, &audience, json!(["pseudonym"])).await;
    assert_eq!(next["status"], "done", "{next}");
    assert_eq!(next["manifest"]["previous_export"], id.as_str());
    assert_eq!(next["manifest"]["counts"]["removals"], 2, "{next}");
}

#[tokio::test]
async fn expired_export_files_are_deleted_by_retention_and_withdrawn_by_an_erasure() {
    // Files expire as soon as they are written here.
    let h = harness_with_exports(
        cdp_server::ServerConfig {
            max_body_bytes: 1024 * 1024,
            ..cdp_server::ServerConfig::default()
        },
        cdp_engine::exports::ExportSettings {
            member_chunk: 3,
            file_lifetime: time::Duration::ZERO,
        },
    );
    people(&h, 25).await;
    let marketer = token_with(&["marketer"], &[]);
    let dpo = token_with(&["dpo"], &[]);
    let recipient = sms_recipient(&h).await;
    let audience = shanghai(&h).await;
    let first = export(&h, &recipient, &audience, json!(["pseudonym"])).await;
    let second = export(&h, &recipient, &audience, json!(["pseudonym", "city"])).await;
    let (first_id, second_id) = (
        first["id"].as_str().unwrap(),
        second["id"].as_str().unwrap(),
    );
    let (status, body) = file(&h, &marketer, first_id).await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    assert!(body.contains("has expired"), "{body}");

    // An erasure withdraws the expired files that hold the person.
    let receipt = erase(&h, "x-0").await;
    let files: Vec<&str> = receipt["recipients_to_notify"]
        .as_array()
        .unwrap()
        .iter()
        .map(|line| line["file"].as_str().unwrap())
        .collect();
    assert_eq!(files, ["withdrawn", "withdrawn"], "{receipt}");
    for id in [first_id, second_id] {
        let (_, record) = get_json(&h, &format!("/v1/exports/{id}"), &marketer).await;
        assert_eq!(record["status"], "withdrawn", "{record}");
        assert!(
            record["reason"].as_str().unwrap().contains("expired"),
            "{record}"
        );
        // The manifest stays: what was shared with whom.
        assert!(record["manifest"]["recipient"]["id"] == recipient["id"]);
        let (status, body) = file(&h, &marketer, id).await;
        assert_eq!(status, StatusCode::CONFLICT, "{body}");
        assert!(body.contains("withdrawn"), "{body}");
    }
    assert_eq!(
        std::fs::read_dir(h.engine_exports_dir()).unwrap().count(),
        0
    );

    // Retention deletes an expired file nobody erased anything from (dry first).
    let third = export(&h, &recipient, &audience, json!(["city"])).await;
    let third_id = third["id"].as_str().unwrap();
    let (status, dry) = post_json(&h, "/v1/retention/run", &dpo, json!({"dry_run": true})).await;
    assert_eq!(status, StatusCode::OK, "{dry}");
    assert_eq!(dry["export_files_deleted"], 1, "{dry}");
    assert_eq!(
        std::fs::read_dir(h.engine_exports_dir()).unwrap().count(),
        1
    );
    let (_, report) = post_json(&h, "/v1/retention/run", &dpo, json!({"dry_run": false})).await;
    assert_eq!(report["export_files_deleted"], 1, "{report}");
    assert_eq!(
        std::fs::read_dir(h.engine_exports_dir()).unwrap().count(),
        0
    );
    let (_, record) = get_json(&h, &format!("/v1/exports/{third_id}"), &marketer).await;
    assert_eq!(record["status"], "withdrawn", "{record}");
    assert!(
        record["reason"].as_str().unwrap().contains("PIPL Art 19"),
        "{record}"
    );
}
