//! What Segment's browser library (`@segment/analytics-next`, analytics.js snippets) and the
//! Sensors web SDK (`/sa`, `/sa.gif`, `routes/sensors.rs`) need
//! from the server besides the ingestion routes: its settings document
//! (`GET /v1/projects/{writeKey}/settings`, fetched from its `cdnURL`), and CORS on the
//! routes a web page calls.
//!
//! A write key in a web page is public: anyone can read it. What makes it the shop's own is
//! the list of web origins a source allows (`allowed_origins`): a request that carries an
//! `Origin` header (every request a browser page makes across origins, and `sendBeacon`) is
//! refused unless its source lists that origin, and only a listed origin gets the CORS
//! headers that let its page read the answer. Programs that are not browsers send no
//! `Origin` and are unaffected (they could send any; the write key is their credential).

use axum::Json;
use axum::extract::{Path, Request, State};
use axum::http::header::{
    ACCESS_CONTROL_ALLOW_HEADERS, ACCESS_CONTROL_ALLOW_METHODS, ACCESS_CONTROL_ALLOW_ORIGIN,
    ACCESS_CONTROL_MAX_AGE, HOST, ORIGIN, VARY,
};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use crate::{ApiError, AppState, ErrorCode};

/// The routes a web page calls: Segment's long and short ingestion paths and the settings.
pub(crate) fn is_browser_path(path: &str) -> bool {
    const PATHS: &[&str] = &[
        "/v1/identify",
        "/v1/track",
        "/v1/page",
        "/v1/screen",
        "/v1/group",
        "/v1/alias",
        "/v1/batch",
        "/v1/i",
        "/v1/t",
        "/v1/p",
        "/v1/s",
        "/v1/g",
        "/v1/a",
        "/v1/b",
        "/sa",
        "/sa.gif",
    ];
    PATHS.contains(&path) || (path.starts_with("/v1/projects/") && path.ends_with("/settings"))
}

/// The `Origin` a browser sent, if any.
pub(crate) fn origin_of(headers: &HeaderMap) -> Option<String> {
    headers
        .get(ORIGIN)
        .and_then(|value| value.to_str().ok())
        .map(str::to_string)
}

/// The refusal of a page whose origin its source does not list.
pub(crate) fn origin_refused(origin: &str, source: &cdp_engine::records::SourceRecord) -> ApiError {
    ApiError::new(
        ErrorCode::OriginNotAllowed,
        format!(
            "pages of {origin} may not send with this write key: add the origin to the allowed_origins of source {} (PATCH /v1/sources/{})",
            source.id, source.id
        ),
    )
}

/// CORS for the browser routes. A preflight (`OPTIONS`) names no source, so it is answered
/// for an origin some source lists; the request that follows is checked against its own
/// source by the route. Answers carry `Access-Control-Allow-Origin` only for listed origins,
/// never with credentials (the library sends none).
pub(crate) async fn browser_cors(
    State(state): State<AppState>,
    request: Request,
    next: Next,
) -> Response {
    let origin = match origin_of(request.headers()) {
        Some(origin) if is_browser_path(request.uri().path()) => origin,
        _ => return next.run(request).await,
    };
    let engine = state.engine.clone();
    let lookup = origin.clone();
    let listed = tokio::task::spawn_blocking(move || engine.origin_allowed_by_any_source(&lookup))
        .await
        .ok()
        .and_then(Result::ok)
        .unwrap_or(false);
    if request.method() == Method::OPTIONS {
        if !listed {
            return ApiError::new(
                ErrorCode::OriginNotAllowed,
                format!("no source lists {origin} among its allowed_origins"),
            )
            .into_response();
        }
        let mut response = StatusCode::NO_CONTENT.into_response();
        allow(response.headers_mut(), &origin);
        let headers = response.headers_mut();
        headers.insert(
            ACCESS_CONTROL_ALLOW_METHODS,
            HeaderValue::from_static("GET, POST, OPTIONS"),
        );
        headers.insert(
            ACCESS_CONTROL_ALLOW_HEADERS,
            HeaderValue::from_static(
                "Content-Type, Content-Encoding, Authorization, X-Retry-Count, Sec-GPC",
            ),
        );
        headers.insert(ACCESS_CONTROL_MAX_AGE, HeaderValue::from_static("600"));
        return response;
    }
    let mut response = next.run(request).await;
    if listed {
        allow(response.headers_mut(), &origin);
    }
    response
}

fn allow(headers: &mut HeaderMap, origin: &str) {
    if let Ok(value) = HeaderValue::from_str(origin) {
        headers.insert(ACCESS_CONTROL_ALLOW_ORIGIN, value);
    }
    headers.append(VARY, HeaderValue::from_static("Origin"));
}

/// The settings document Segment's browser library loads before it sends anything (from
/// `{cdnURL}/v1/projects/{writeKey}/settings`): it points the library's `Segment.io`
/// destination at this server (the host the page reached, `/v1`) and turns off what would
/// call Segment's own hosts (remote metrics, device-mode destinations, remote plugins).
#[utoipa::path(get, path = "/v1/projects/{write_key}/settings", tag = "ingestion",
    params(("write_key" = String, Path, description = "A source's write key.")),
    responses(
        (status = 200, description = "The settings document of Segment's browser library.", body = Object),
        (status = 403, description = "A page of an origin the source does not list.", body = crate::ErrorBody),
        (status = 404, description = "No source has this write key (or it was revoked).", body = crate::ErrorBody),
    ))]
pub(crate) async fn settings(
    State(state): State<AppState>,
    Path(write_key): Path<String>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let engine = state.engine.clone();
    let source =
        crate::routes::profiles::blocking(move || match engine.source_for_write_key(&write_key) {
            Err(cdp_engine::EngineError::UnknownWriteKey) => Ok(None),
            other => other.map(|source| Some((source, write_key))),
        })
        .await?;
    let Some((source, write_key)) = source else {
        return Err(ApiError::new(
            ErrorCode::NotFound,
            "no source has this write key",
        ));
    };
    if let Some(origin) = origin_of(&headers)
        && !source.allows_origin(&origin)
    {
        return Err(origin_refused(&origin, &source));
    }
    let host = headers
        .get(HOST)
        .and_then(|value| value.to_str().ok())
        .unwrap_or("localhost");
    let protocol = if crate::routes::accounts::over_tls(&headers) {
        "https"
    } else {
        "http"
    };
    let document = serde_json::json!({
        "integrations": {
            "Segment.io": {
                "apiKey": write_key,
                "apiHost": format!("{host}/v1"),
                "protocol": protocol,
                "addBundledMetadata": true,
                "unbundledIntegrations": [],
            }
        },
        "plan": {"track": {"__default": {"enabled": true}}, "identify": {"__default": {"enabled": true}}, "group": {"__default": {"enabled": true}}},
        "edgeFunction": {},
        "analyticsNextEnabled": true,
        "middlewareSettings": {},
        "enabledMiddleware": {},
        "metrics": {"sampleRate": 0},
        "legacyVideoPluginsEnabled": false,
        "remotePlugins": [],
    });
    let mut response = Json(document).into_response();
    // Browsers may keep it a minute: a changed key or origin list takes effect soon after.
    response.headers_mut().insert(
        axum::http::header::CACHE_CONTROL,
        HeaderValue::from_static("public, max-age=60"),
    );
    Ok(response)
}

#[cfg(test)]
mod tests {
    use super::is_browser_path;

    #[test]
    fn only_the_routes_pages_call_are_browser_routes() {
        assert!(is_browser_path("/v1/t"));
        assert!(is_browser_path("/v1/batch"));
        assert!(is_browser_path("/v1/projects/cdpwk_x/settings"));
        assert!(!is_browser_path("/v1/import"));
        assert!(!is_browser_path("/v1/profiles/lookup"));
        assert!(!is_browser_path("/v1/projects/x"));
    }
}
