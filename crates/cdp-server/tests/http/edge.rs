//! The edge's limits answer in the error shape (issue 17 item 14): a long target (414), a
//! header flood (431), a body that trickles (408), a chunked body over the limit (413, even
//! when it is not JSON either).

use std::time::Duration;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use cdp_server::ServerConfig;

use crate::{call, error_code, harness, harness_with, token};

#[tokio::test]
async fn long_targets_and_header_floods_get_json_errors() {
    let h = harness();
    let admin = token(&["admin"]);
    let long = format!("/v1/sources?x={}", "a".repeat(9 * 1024));
    let (status, _, body) = call(
        &h.app,
        Request::get(long)
            .header("authorization", format!("Bearer {admin}"))
            .body(Body::empty())
            .unwrap(),
    )
    .await;
    assert_eq!(status, StatusCode::URI_TOO_LONG);
    assert_eq!(error_code(&body), "uri_too_long");

    let mut flood = Request::get("/v1/sources").header("authorization", format!("Bearer {admin}"));
    for index in 0..70 {
        flood = flood.header(format!("x-flood-{index}"), "1");
    }
    let (status, _, body) = call(&h.app, flood.body(Body::empty()).unwrap()).await;
    assert_eq!(status, StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE);
    assert_eq!(error_code(&body), "headers_too_large");

    let (status, _, body) = call(
        &h.app,
        Request::get("/v1/sources")
            .header("authorization", format!("Bearer {admin}"))
            .header("x-big", "b".repeat(40 * 1024))
            .body(Body::empty())
            .unwrap(),
    )
    .await;
    assert_eq!(status, StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE);
    assert_eq!(error_code(&body), "headers_too_large");

    // The refusals are in the request metrics, under the edge's label.
    let (status, _, body) = call(
        &h.app,
        Request::get("/metrics")
            .header("authorization", format!("Bearer {admin}"))
            .body(Body::empty())
            .unwrap(),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    let metrics = String::from_utf8(body).unwrap();
    for (code, times) in [("414", 1), ("431", 2)] {
        let line = format!(
            "cdp_http_requests_total{{method=\"GET\",route=\"<edge>\",status=\"{code}\"}} {times}"
        );
        assert!(metrics.contains(&line), "{line} not in\n{metrics}");
    }
    // What a route answered is counted once, under its route.
    assert!(
        !metrics.contains("route=\"<edge>\",status=\"200\""),
        "{metrics}"
    );

    // Within the limits, the route answers.
    let (status, _, _) = call(
        &h.app,
        Request::get(format!("/v1/sources?x={}", "a".repeat(1024)))
            .header("authorization", format!("Bearer {admin}"))
            .body(Body::empty())
            .unwrap(),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
}

#[tokio::test]
async fn a_trickling_body_is_408_and_a_chunked_oversized_one_413() {
    let h = harness_with(ServerConfig {
        max_body_bytes: 64 * 1024,
        body_timeout: Duration::from_millis(300),
        ..ServerConfig::default()
    });
    // One chunk, then nothing: the sender stays open.
    let (mut sender, channel) = http_body_util::channel::Channel::<axum::body::Bytes>::new(1);
    sender
        .send_data(axum::body::Bytes::from_static(br#"{"batch": ["#))
        .await
        .unwrap();
    let request = Request::post("/v1/batch")
        .header("content-type", "application/json")
        .body(Body::new(channel))
        .unwrap();
    let (status, _, body) = call(&h.app, request).await;
    assert_eq!(status, StatusCode::REQUEST_TIMEOUT);
    assert_eq!(error_code(&body), "request_timeout");
    drop(sender);

    // Chunked (no Content-Length), over the limit and not JSON: 413, not 400.
    let (mut sender, channel) = http_body_util::channel::Channel::<axum::body::Bytes>::new(4);
    let feeder = tokio::spawn(async move {
        for _ in 0..20 {
            if sender
                .send_data(axum::body::Bytes::from(vec![b'x'; 8 * 1024]))
                .await
                .is_err()
            {
                break;
            }
        }
    });
    let request = Request::post("/v1/batch")
        .header("content-type", "application/json")
        .body(Body::new(channel))
        .unwrap();
    let (status, _, body) = call(&h.app, request).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(error_code(&body), "payload_too_large");
    feeder.abort();
}
