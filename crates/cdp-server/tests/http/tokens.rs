//! Management routes refuse bad tokens with 401 and wrong roles with 403.

use axum::body::Body;
use axum::http::{Request, StatusCode};
use base64::Engine as _;
use cdp_crypto::TokenKey;

use crate::{SECRET, call, error_code, harness, token};

fn with_token(path: &str, token: &str) -> Request<Body> {
    Request::get(path)
        .header("authorization", format!("Bearer {token}"))
        .body(Body::empty())
        .unwrap()
}

#[tokio::test]
async fn bad_tokens_are_401_and_wrong_roles_403() {
    let h = harness();
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    let good = token(&["admin"]);
    let (status, _, body) = call(&h.app, with_token("/v1/sources", &good)).await;
    assert_eq!(status, StatusCode::OK, "{}", String::from_utf8_lossy(&body));

    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let parts: Vec<&str> = good.split('.').collect();
    let none_alg = format!(
        "{}.{}.",
        b64.encode(r#"{"alg":"none","typ":"JWT"}"#),
        parts[1]
    );
    let payload = String::from_utf8(b64.decode(parts[1]).unwrap()).unwrap();
    let tampered = format!(
        "{}.{}.{}",
        parts[0],
        b64.encode(payload.replace("tester", "root")),
        parts[2]
    );
    let other_key = TokenKey::hs256(&[9u8; 32], "cdp", "cdp-api").unwrap();
    let wrong_key = other_key
        .issue("x", &["admin".into()], &[], now, 600)
        .unwrap();
    let ours = TokenKey::hs256(SECRET, "cdp", "cdp-api").unwrap();
    let expired = ours
        .issue("x", &["admin".into()], &[], now - 7200, 600)
        .unwrap();
    let foreign = TokenKey::hs256(SECRET, "cdp", "someone-else").unwrap();
    let wrong_audience = foreign
        .issue("x", &["admin".into()], &[], now, 600)
        .unwrap();
    for (label, bad) in [
        ("alg none", none_alg.as_str()),
        ("tampered payload", tampered.as_str()),
        ("wrong key", wrong_key.as_str()),
        ("expired", expired.as_str()),
        ("wrong audience", wrong_audience.as_str()),
        ("garbage", "not-a-token"),
    ] {
        let (status, _, body) = call(&h.app, with_token("/v1/sources", bad)).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{label}");
        assert_eq!(error_code(&body), "unauthorized", "{label}");
    }
    let (status, _, _) = call(
        &h.app,
        Request::get("/v1/sources").body(Body::empty()).unwrap(),
    )
    .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);

    let marketer = token(&["marketer"]);
    let (status, _, body) = call(&h.app, with_token("/v1/sources", &marketer)).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert_eq!(error_code(&body), "forbidden");
    let (status, _, _) = call(
        &h.app,
        with_token("/v1/profiles/lookup?type=email&value=a%40b.cn", &marketer),
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
}

/// `nbf` in the future, `iat` in the future and a lifetime over the server's maximum (30 days
/// by default) are refused, whoever signed the token (issue 17 item 13).
#[tokio::test]
async fn tokens_not_yet_valid_or_too_long_lived_are_401() {
    let h = harness();
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    let ours = TokenKey::hs256(SECRET, "cdp", "cdp-api").unwrap();
    let with = |iat: i64, exp: i64, nbf: Option<i64>| {
        ours.sign(&cdp_crypto::TokenClaims {
            iss: "cdp".into(),
            aud: "cdp-api".into(),
            sub: "x".into(),
            iat,
            exp,
            nbf,
            roles: vec!["admin".into()],
            purposes: Vec::new(),
        })
        .unwrap()
    };
    let (status, _, _) = call(
        &h.app,
        with_token("/v1/sources", &with(now, now + 600, Some(now - 5))),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    for (label, bad, expected) in [
        (
            "nbf ahead",
            with(now, now + 600, Some(now + 300)),
            "not valid yet",
        ),
        (
            "iat ahead",
            with(now + 300, now + 900, None),
            "not valid yet",
        ),
        ("31 days", with(now, now + 31 * 24 * 3600, None), "lifetime"),
        (
            "backdated iat",
            with(now - 60 * 24 * 3600, now + 600, None),
            "lifetime",
        ),
    ] {
        let (status, _, body) = call(&h.app, with_token("/v1/sources", &bad)).await;
        let body = String::from_utf8_lossy(&body);
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{label}: {body}");
        assert!(body.contains(expected), "{label}: {body}");
        assert_eq!(error_code(body.as_bytes()), "unauthorized", "{label}");
    }
}
