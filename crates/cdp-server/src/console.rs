//! The web console at `/console/`: a page and its scripts and styles, compiled into the binary
//! (no CDN, no build step: plain ES modules), served with a strict Content-Security-Policy.
//!
//! The console is a client of the same HTTP API as every other client: it signs in at
//! `POST /v1/session` (a named account, an HttpOnly cookie) and then calls the `/v1` routes,
//! which apply the same permissions, policy decisions and audit entries, naming the account.
//! It holds no personal data of its own and puts none in URLs (a lookup's value travels in a
//! request body, never in the address bar or a query string).

use axum::Router;
use axum::extract::Path;
use axum::http::header::{CACHE_CONTROL, CONTENT_TYPE, LOCATION};
use axum::http::{HeaderName, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;

use crate::{ApiError, ErrorCode};

/// Everything the console loads comes from this server; nothing runs inline; no frame may
/// hold it; forms and requests go only here.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

/// The console's files: name, content type, bytes.
const ASSETS: &[(&str, &str, &str)] = &[
    (
        "app.js",
        "text/javascript; charset=utf-8",
        include_str!("../console/app.js"),
    ),
    (
        "api.js",
        "text/javascript; charset=utf-8",
        include_str!("../console/api.js"),
    ),
    (
        "dom.js",
        "text/javascript; charset=utf-8",
        include_str!("../console/dom.js"),
    ),
    (
        "i18n.js",
        "text/javascript; charset=utf-8",
        include_str!("../console/i18n.js"),
    ),
    (
        "i18n-en.js",
        "text/javascript; charset=utf-8",
        include_str!("../console/i18n-en.js"),
    ),
    (
        "i18n-zh.js",
        "text/javascript; charset=utf-8",
        include_str!("../console/i18n-zh.js"),
    ),
    (
        "charts.js",
        "text/javascript; charset=utf-8",
        include_str!("../console/charts.js"),
    ),
    (
        "pages.js",
        "text/javascript; charset=utf-8",
        include_str!("../console/pages.js"),
    ),
    (
        "ui.js",
        "text/javascript; charset=utf-8",
        include_str!("../console/ui.js"),
    ),
    (
        "page-insight.js",
        "text/javascript; charset=utf-8",
        include_str!("../console/page-insight.js"),
    ),
    (
        "page-people.js",
        "text/javascript; charset=utf-8",
        include_str!("../console/page-people.js"),
    ),
    (
        "page-data.js",
        "text/javascript; charset=utf-8",
        include_str!("../console/page-data.js"),
    ),
    (
        "page-deliveries.js",
        "text/javascript; charset=utf-8",
        include_str!("../console/page-deliveries.js"),
    ),
    (
        "page-campaigns.js",
        "text/javascript; charset=utf-8",
        include_str!("../console/page-campaigns.js"),
    ),
    (
        "page-governance.js",
        "text/javascript; charset=utf-8",
        include_str!("../console/page-governance.js"),
    ),
    (
        "console.css",
        "text/css; charset=utf-8",
        include_str!("../console/console.css"),
    ),
];

const INDEX_HTML: &str = include_str!("../console/index.html");

/// The console's routes (outside the OpenAPI document: pages, not API).
pub fn routes<S: Clone + Send + Sync + 'static>() -> Router<S> {
    Router::new()
        .route("/console", get(redirect))
        .route("/console/", get(index))
        .route("/console/assets/{name}", get(asset))
}

async fn redirect() -> Response {
    let mut response = StatusCode::MOVED_PERMANENTLY.into_response();
    response
        .headers_mut()
        .insert(LOCATION, HeaderValue::from_static("/console/"));
    response
}

fn secured(mut response: Response, content_type: &'static str, cache: &'static str) -> Response {
    let headers = response.headers_mut();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    headers.insert(CACHE_CONTROL, HeaderValue::from_static(cache));
    headers.insert(
        HeaderName::from_static("content-security-policy"),
        HeaderValue::from_static(CONTENT_SECURITY_POLICY),
    );
    headers.insert(
        HeaderName::from_static("x-content-type-options"),
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(
        HeaderName::from_static("x-frame-options"),
        HeaderValue::from_static("DENY"),
    );
    headers.insert(
        HeaderName::from_static("referrer-policy"),
        HeaderValue::from_static("no-referrer"),
    );
    response
}

async fn index() -> Response {
    secured(
        INDEX_HTML.into_response(),
        "text/html; charset=utf-8",
        "no-store",
    )
}

async fn asset(Path(name): Path<String>) -> Result<Response, ApiError> {
    let (_, content_type, body) = ASSETS
        .iter()
        .find(|(file, _, _)| *file == name)
        .ok_or_else(|| ApiError::new(ErrorCode::NotFound, "no such console file"))?;
    // `no-cache`: revalidated each time, so a new binary's console is never mixed with an
    // old cached script.
    Ok(secured(body.into_response(), content_type, "no-cache"))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every file of `console/` is served, and every module a script imports is one of them:
    /// a file added but not listed would be a 404 in the browser.
    #[test]
    fn every_console_file_is_served_and_every_import_resolves() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("console");
        for entry in std::fs::read_dir(&dir).unwrap() {
            let name = entry.unwrap().file_name().into_string().unwrap();
            assert!(
                name == "index.html" || ASSETS.iter().any(|(file, _, _)| *file == name),
                "console/{name} is not in ASSETS"
            );
        }
        for (file, _, body) in ASSETS {
            for line in body.lines().filter(|l| l.contains(" from './")) {
                let target = line
                    .split(" from './")
                    .nth(1)
                    .and_then(|rest| rest.split('\'').next())
                    .unwrap_or_default();
                assert!(
                    ASSETS.iter().any(|(name, _, _)| *name == target),
                    "{file} imports {target}, which is not served"
                );
            }
        }
    }
}
