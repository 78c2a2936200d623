//! The router and its state.

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::http::StatusCode;
use axum::http::header::{AUTHORIZATION, COOKIE, SET_COOKIE};
use axum::middleware;
use cdp_crypto::TokenKey;
use cdp_engine::Engine;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::limit::RequestBodyLimitLayer;
use tower_http::sensitive_headers::SetSensitiveHeadersLayer;
use tower_http::timeout::TimeoutLayer;
use utoipa::OpenApi;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::edge::{EdgeLimits, enforce_limits};
use crate::metrics::HttpMetrics;
use crate::observe::{normalise_errors, observe, observe_edge, panic_response};
use crate::openapi::ApiDoc;
use crate::routes::{
    accounts, audiences, audit, browser, campaigns, consents, destinations, exports, identity,
    ingest, policies, profiles, requests, sensors, sources, system,
};

/// Limits and timeouts of the HTTP edge.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// Largest request body accepted, in bytes (larger: 413).
    pub max_body_bytes: usize,
    /// Longest a request may take before it is answered 503 `timeout` (after its body
    /// arrived).
    pub request_timeout: Duration,
    /// Longest the body may take to arrive before the request is answered 408
    /// `request_timeout`.
    pub body_timeout: Duration,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            max_body_bytes: 1024 * 1024,
            request_timeout: Duration::from_secs(30),
            body_timeout: Duration::from_secs(30),
        }
    }
}

/// What every handler can reach.
#[derive(Clone, Debug)]
pub struct AppState {
    pub engine: Arc<Engine>,
    pub token_key: Arc<TokenKey>,
    pub metrics: Arc<HttpMetrics>,
    pub(crate) openapi_json: Arc<String>,
}

/// The whole HTTP application.
pub fn router(
    engine: Arc<Engine>,
    token_key: Arc<TokenKey>,
    metrics: Arc<HttpMetrics>,
    config: &ServerConfig,
) -> Router {
    let (routes, api) = OpenApiRouter::with_openapi(ApiDoc::openapi())
        .routes(routes!(system::healthz))
        .routes(routes!(system::readyz))
        .routes(routes!(system::metrics))
        .routes(routes!(system::openapi))
        .routes(routes!(system::overview))
        .routes(routes!(ingest::identify))
        .routes(routes!(ingest::track))
        .routes(routes!(ingest::page))
        .routes(routes!(ingest::screen))
        .routes(routes!(ingest::group))
        .routes(routes!(ingest::alias))
        .routes(routes!(ingest::batch))
        .routes(routes!(ingest::import))
        .routes(routes!(ingest::identify_short))
        .routes(routes!(ingest::track_short))
        .routes(routes!(ingest::page_short))
        .routes(routes!(ingest::screen_short))
        .routes(routes!(ingest::group_short))
        .routes(routes!(ingest::alias_short))
        .routes(routes!(ingest::batch_short))
        .routes(routes!(browser::settings))
        .routes(routes!(sensors::get, sensors::post))
        .routes(routes!(sensors::image, sensors::image_post))
        .routes(routes!(accounts::create, accounts::list))
        .routes(routes!(accounts::disable))
        .routes(routes!(accounts::unlock))
        .routes(routes!(
            accounts::sign_in,
            accounts::current,
            accounts::sign_out
        ))
        .routes(routes!(sources::create_source, sources::list_sources))
        .routes(routes!(sources::rotate_source))
        .routes(routes!(
            sources::get_source,
            sources::revoke_source,
            sources::update_source
        ))
        .routes(routes!(sources::source_activity))
        .routes(routes!(profiles::lookup, profiles::lookup_by_body))
        .routes(routes!(profiles::get_profile))
        .routes(routes!(profiles::identity))
        .routes(routes!(profiles::events))
        .routes(routes!(profiles::split))
        .routes(routes!(identity::list))
        .routes(routes!(identity::decide))
        .routes(routes!(identity::matching))
        .routes(routes!(identity::run_matching))
        .routes(routes!(identity::suggestions))
        .routes(routes!(identity::decide_suggestion))
        .routes(routes!(consents::record))
        .routes(routes!(consents::list))
        .routes(routes!(consents::trend))
        .routes(routes!(consents::record_batch))
        .routes(routes!(audiences::count))
        .routes(routes!(audiences::breakdown))
        .routes(routes!(audiences::create, audiences::list))
        .routes(routes!(
            audiences::get,
            audiences::update,
            audiences::delete
        ))
        .routes(routes!(audiences::members))
        .routes(routes!(exports::create_recipient, exports::list_recipients))
        .routes(routes!(
            exports::get_recipient,
            exports::update_recipient,
            exports::retire_recipient
        ))
        .routes(routes!(exports::suppress, exports::list_suppressions))
        .routes(routes!(exports::unsuppress))
        .routes(routes!(exports::remove_suppression))
        .routes(routes!(exports::create_export, exports::list_exports))
        .routes(routes!(exports::get_export, exports::delete_export))
        .routes(routes!(exports::export_file))
        .routes(routes!(exports::export_manifest))
        .routes(routes!(exports::export_key))
        .routes(routes!(destinations::export_delivery))
        .routes(routes!(
            destinations::create_destination,
            destinations::list_destinations
        ))
        .routes(routes!(
            destinations::get_destination,
            destinations::retire_destination
        ))
        .routes(routes!(destinations::rotate_destination))
        .routes(routes!(destinations::test_destination))
        .routes(routes!(destinations::dead_letters))
        .routes(routes!(destinations::retry_dead_letters))
        .routes(routes!(
            destinations::create_schedule,
            destinations::list_schedules
        ))
        .routes(routes!(
            destinations::get_schedule,
            destinations::update_schedule,
            destinations::delete_schedule
        ))
        .routes(routes!(destinations::run_schedule))
        .routes(routes!(
            campaigns::create_campaign,
            campaigns::list_campaigns
        ))
        .routes(routes!(campaigns::get_campaign, campaigns::update_campaign))
        .routes(routes!(campaigns::send_campaign))
        .routes(routes!(campaigns::campaign_results))
        .routes(routes!(requests::submit, requests::list))
        .routes(routes!(requests::get))
        .routes(routes!(requests::bundle))
        .routes(routes!(requests::retention))
        .routes(routes!(audit::list))
        .routes(routes!(audit::verify))
        .routes(routes!(policies::show))
        .routes(routes!(policies::evaluate))
        .routes(routes!(policies::ropa))
        .routes(routes!(policies::golden))
        .split_for_parts();
    // Serialising a derived OpenApi value cannot fail (no maps with non-string keys).
    let openapi_json = Arc::new(api.to_pretty_json().unwrap_or_default());
    let state = AppState {
        engine,
        token_key,
        metrics: metrics.clone(),
        openapi_json,
    };
    let routed = routes
        .merge(crate::console::routes())
        .fallback(system::fallback)
        .layer(middleware::from_fn_with_state(
            state.clone(),
            browser::browser_cors,
        ))
        .layer(middleware::from_fn_with_state(metrics.clone(), observe))
        .layer(DefaultBodyLimit::max(config.max_body_bytes))
        .with_state(state);
    // Each `layer` wraps what is above it, so the last one runs first: redact credentials
    // before anything can log them; give foreign error answers our shape; turn panics into
    // `internal`; count what the edge refuses; refuse oversized bodies before reading them;
    // refuse long targets and header floods, read the body within its deadline (`edge.rs`);
    // bound the handler's time.
    let limits = EdgeLimits {
        max_body_bytes: config.max_body_bytes,
        body_timeout: config.body_timeout,
    };
    routed
        .layer(TimeoutLayer::with_status_code(
            StatusCode::SERVICE_UNAVAILABLE,
            config.request_timeout,
        ))
        .layer(middleware::from_fn(move |request, next| {
            enforce_limits(limits, request, next)
        }))
        .layer(RequestBodyLimitLayer::new(config.max_body_bytes))
        .layer(middleware::from_fn_with_state(metrics, observe_edge))
        .layer(CatchPanicLayer::custom(panic_response))
        .layer(middleware::from_fn(normalise_errors))
        .layer(SetSensitiveHeadersLayer::new([
            AUTHORIZATION,
            COOKIE,
            SET_COOKIE,
        ]))
}
