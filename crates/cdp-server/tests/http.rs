//! The HTTP edge in-process: routes, error shape, limits, metrics, OpenAPI (issue 2, items 6-7).

// Tests fail by panicking; helpers unwrap like the tests they serve.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use cdp_crypto::{Keyring, TokenKey};
use cdp_engine::{Engine, EngineConfig, EngineRules, IndexMode};
use cdp_server::{ErrorCode, HttpMetrics, Permission, ServerConfig, router};
use tower::ServiceExt;

#[path = "http/access.rs"]
mod access;
#[path = "http/audiences.rs"]
mod audiences;
#[path = "http/consents.rs"]
mod consents;
#[path = "http/edge.rs"]
mod edge;
#[path = "http/export_erasure.rs"]
mod export_erasure;
#[path = "http/exports.rs"]
mod exports;
#[path = "http/inferences.rs"]
mod inferences;
#[path = "http/ingest.rs"]
mod ingest;
#[path = "http/policy.rs"]
mod policy;
#[path = "http/requests.rs"]
mod requests;
#[path = "http/suspects.rs"]
mod suspects;
#[path = "http/tokens.rs"]
mod tokens;

pub(crate) const SECRET: &[u8] = b"0123456789abcdef0123456789abcdef";

pub(crate) struct Harness {
    pub(crate) app: axum::Router,
    pub(crate) engine: Arc<Engine>,
    pub(crate) indexer: Arc<cdp_engine::Indexer>,
    _dir: tempfile::TempDir,
}

impl Harness {
    /// Where this harness's engine writes export files.
    pub(crate) fn engine_exports_dir(&self) -> std::path::PathBuf {
        self._dir.path().join("exports")
    }

    /// Brings the search index up to date (the server's indexer thread does this by itself).
    pub(crate) fn index(&self) {
        self.indexer.catch_up().unwrap();
    }
}

pub(crate) fn harness() -> Harness {
    harness_with(ServerConfig {
        max_body_bytes: 1024 * 1024,
        ..ServerConfig::default()
    })
}

pub(crate) fn harness_with(config: ServerConfig) -> Harness {
    harness_with_exports(
        config,
        cdp_engine::exports::ExportSettings {
            // Export member lists of a few people span several chunks here.
            member_chunk: 3,
            ..Default::default()
        },
    )
}

pub(crate) fn harness_with_exports(
    config: ServerConfig,
    exports: cdp_engine::exports::ExportSettings,
) -> Harness {
    let dir = tempfile::tempdir().unwrap();
    let engine = Arc::new(
        Engine::open(
            EngineConfig::new(
                dir.path(),
                Arc::new(Keyring::generate().unwrap()),
                Arc::new(cdp_policy::PolicySet::builtin().unwrap()),
            )
            .with_rules(EngineRules {
                exports,
                ..EngineRules::default()
            })
            .with_index(IndexMode::InMemory),
        )
        .unwrap(),
    );
    let indexer = Arc::new(cdp_engine::Indexer::new(engine.clone(), Default::default()).unwrap());
    indexer.start().unwrap();
    let token_key = Arc::new(TokenKey::hs256(SECRET, "cdp", "cdp-api").unwrap());
    Harness {
        app: router(
            engine.clone(),
            token_key,
            Arc::new(HttpMetrics::new()),
            &config,
        ),
        engine,
        indexer,
        _dir: dir,
    }
}

pub(crate) fn token(roles: &[&str]) -> String {
    let key = TokenKey::hs256(SECRET, "cdp", "cdp-api").unwrap();
    let roles: Vec<String> = roles.iter().map(|r| (*r).to_string()).collect();
    key.issue(
        "tester",
        &roles,
        &[],
        time::OffsetDateTime::now_utc().unix_timestamp(),
        600,
    )
    .unwrap()
}

pub(crate) async fn call(
    app: &axum::Router,
    request: Request<Body>,
) -> (StatusCode, axum::http::HeaderMap, Vec<u8>) {
    let response = app.clone().oneshot(request).await.unwrap();
    let status = response.status();
    let headers = response.headers().clone();
    let body = axum::body::to_bytes(response.into_body(), usize::MAX)
        .await
        .unwrap();
    (status, headers, body.to_vec())
}

pub(crate) fn get(path: &str) -> Request<Body> {
    Request::get(path).body(Body::empty()).unwrap()
}

pub(crate) fn error_code(body: &[u8]) -> String {
    let value: serde_json::Value = serde_json::from_slice(body)
        .unwrap_or_else(|_| panic!("error body is not JSON: {}", String::from_utf8_lossy(body)));
    assert!(
        value["error"]["message"]
            .as_str()
            .is_some_and(|m| !m.is_empty()),
        "{value}"
    );
    value["error"]["code"].as_str().unwrap().to_string()
}

#[tokio::test]
async fn health_and_readiness() {
    let h = harness();
    let (status, _, body) = call(&h.app, get("/healthz")).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        serde_json::from_slice::<serde_json::Value>(&body).unwrap()["status"],
        "ok"
    );
    let (status, headers, body) = call(&h.app, get("/readyz")).await;
    assert_eq!(status, StatusCode::OK, "{}", String::from_utf8_lossy(&body));
    assert!(headers.contains_key("x-request-id"));
}

#[tokio::test]
async fn unknown_routes_are_404_in_the_error_shape() {
    let h = harness();
    for path in [
        "/nope",
        "/v1/people/lookup?type=email&value=x",
        "/healthz/extra",
    ] {
        let (status, _, body) = call(&h.app, get(path)).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{path}");
        assert_eq!(error_code(&body), "route_not_found");
    }
}

#[tokio::test]
async fn wrong_method_is_405_in_the_error_shape() {
    let h = harness();
    let (status, headers, body) = call(
        &h.app,
        Request::post("/healthz").body(Body::empty()).unwrap(),
    )
    .await;
    assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(error_code(&body), "method_not_allowed");
    assert!(headers.contains_key("allow"));
}

#[tokio::test]
async fn bodies_over_the_limit_are_413() {
    let h = harness();
    let big = vec![b'x'; 1024 * 1024 + 1];
    // With a Content-Length, and streamed without one.
    let request = Request::post("/healthz")
        .header("content-length", big.len())
        .body(Body::from(big.clone()))
        .unwrap();
    let (status, _, body) = call(&h.app, request).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(error_code(&body), "payload_too_large");
    let request = Request::post("/nope")
        .header("content-length", big.len())
        .body(Body::from(big))
        .unwrap();
    let (status, _, _) = call(&h.app, request).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
}

#[tokio::test]
async fn metrics_count_requests_per_route_template_and_never_raw_paths() {
    let h = harness();
    for _ in 0..3 {
        call(&h.app, get("/healthz")).await;
    }
    // A matched route carrying a value in its query, and an unmatched path carrying one.
    call(
        &h.app,
        get("/v1/profiles/lookup?type=email&value=zz.marker.qxjv%40example.com"),
    )
    .await;
    call(&h.app, get("/v1/people/zz.marker.qxjv%40example.com")).await;
    let (status, headers, body) = call(&h.app, get("/metrics")).await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        headers["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/plain")
    );
    let text = String::from_utf8(body).unwrap();
    assert!(
        text.contains(
            "cdp_http_requests_total{method=\"GET\",route=\"/healthz\",status=\"200\"} 3"
        ),
        "{text}"
    );
    assert!(text.contains(
        "cdp_http_request_duration_seconds_bucket{method=\"GET\",route=\"/healthz\",le=\"+Inf\"} 3"
    ));
    assert!(
        text.contains(
            "cdp_http_request_duration_seconds_count{method=\"GET\",route=\"/healthz\"} 3"
        )
    );
    assert!(
        text.contains("route=\"<unmatched>\",status=\"404\"} 1"),
        "{text}"
    );
    assert!(text.contains("cdp_store_flushes_total"));
    assert!(text.contains("cdp_ready 1"));
    assert!(
        text.contains("route=\"/v1/profiles/lookup\",status=\"401\"} 1"),
        "{text}"
    );
    assert!(
        !text.contains("marker") && !text.contains("qxjv") && !text.contains("people"),
        "{text}"
    );
}

#[tokio::test]
async fn openapi_is_generated_from_the_routes() {
    let h = harness();
    let (status, _, body) = call(&h.app, get("/openapi.json")).await;
    assert_eq!(status, StatusCode::OK);
    let document: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert!(document["openapi"].as_str().unwrap().starts_with("3."));
    for path in [
        "/healthz",
        "/readyz",
        "/metrics",
        "/openapi.json",
        "/v1/sources",
        "/v1/profiles/{id}",
        "/v1/profiles/lookup",
        "/v1/profiles/{id}/identity",
    ] {
        assert!(
            document["paths"][path]["get"].is_object(),
            "{path} missing from {document}"
        );
    }
    for path in [
        "/v1/identify",
        "/v1/track",
        "/v1/page",
        "/v1/screen",
        "/v1/group",
        "/v1/alias",
        "/v1/batch",
        "/v1/sources",
        "/v1/profiles/{id}/split",
    ] {
        assert!(
            document["paths"][path]["post"].is_object(),
            "{path} missing"
        );
    }
    assert!(document["components"]["securitySchemes"]["bearer"].is_object());
    assert!(document["components"]["schemas"]["ErrorBody"].is_object());
}

#[test]
fn every_error_code_is_documented() {
    let api =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/API.md")).unwrap();
    for code in ErrorCode::ALL {
        let row = format!("| `{}` | {} |", code.as_str(), code.status().as_u16());
        assert!(
            api.contains(&row),
            "docs/API.md lacks the row starting {row}"
        );
    }
}

/// The permission table is the one truth about roles: every route in it exists, and the roles
/// column of docs/API.md says exactly what it says.
#[tokio::test]
async fn the_permission_table_matches_the_router_and_the_docs() {
    let h = harness();
    let (_, _, body) = call(&h.app, get("/openapi.json")).await;
    let document: serde_json::Value = serde_json::from_slice(&body).unwrap();
    let api =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/API.md")).unwrap();
    for permission in Permission::ALL {
        for route in permission.routes() {
            let (method, path) = route.split_once(' ').unwrap();
            assert!(
                document["paths"][path][method.to_lowercase()].is_object(),
                "{route} ({permission:?}) is not a route of the router"
            );
            // The row of the route: `| `GET /v1/x...` ... | roles | what |`.
            let row = api
                .lines()
                .find(|line| {
                    line.starts_with(&format!("| `{route}"))
                        && line[3 + route.len()..].starts_with(['`', '?', ' ', '['])
                })
                .unwrap_or_else(|| panic!("docs/API.md has no row for {route}"));
            let cells: Vec<&str> = row.split(" | ").collect();
            let roles = cells[1].trim_end_matches(" (+ policy)");
            assert_eq!(
                roles,
                permission.roles_text(),
                "docs/API.md gives {route} other roles than the permission table"
            );
        }
    }
}
