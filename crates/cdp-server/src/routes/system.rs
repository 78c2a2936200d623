//! Operational routes: liveness, readiness, metrics, the OpenAPI document.

use axum::Json;
use axum::extract::State;
use axum::http::header::CONTENT_TYPE;
use axum::response::{IntoResponse, Response};
use cdp_store::StoreHealth;
use serde::Serialize;
use utoipa::ToSchema;

use crate::{ApiError, AppState, ErrorCode};

#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct Status {
    #[schema(example = "ok")]
    status: &'static str,
}

/// Liveness: the process answers HTTP.
#[utoipa::path(get, path = "/healthz", tag = "operations",
    responses((status = 200, description = "The process is alive.", body = Status)))]
pub(crate) async fn healthz() -> Json<Status> {
    Json(Status { status: "ok" })
}

/// Readiness: the store is open and accepting writes.
#[utoipa::path(get, path = "/readyz", tag = "operations",
    responses(
        (status = 200, description = "Ready for traffic.", body = Status),
        (status = 503, description = "The store is not available.", body = crate::ErrorBody),
    ))]
pub(crate) async fn readyz(State(state): State<AppState>) -> Result<Json<Status>, ApiError> {
    match state.engine.store_health() {
        StoreHealth::Ready => Ok(Json(Status { status: "ready" })),
        StoreHealth::Failed(_) => Err(ApiError::new(
            ErrorCode::StoreUnavailable,
            "the store stopped accepting writes after a failed flush; see the server log",
        )),
        StoreHealth::Damaged(_) => Err(ApiError::new(
            ErrorCode::StoreUnavailable,
            "the store's verification found damage; the server is stopping (see its log)",
        )),
        StoreHealth::Unreachable(_) => Err(ApiError::new(
            ErrorCode::StoreUnavailable,
            "the database cannot be reached; writes resume by themselves once it can",
        )),
        StoreHealth::Closed => Err(ApiError::new(
            ErrorCode::StoreUnavailable,
            "the store is closed",
        )),
    }
}

/// Prometheus metrics (text exposition format 0.0.4).
#[utoipa::path(get, path = "/metrics", tag = "operations",
    responses((status = 200, description = "Metrics in Prometheus text format.", content_type = "text/plain; version=0.0.4", body = String)))]
pub(crate) async fn metrics(State(state): State<AppState>) -> Response {
    let ready = state.engine.store_health() == StoreHealth::Ready;
    let body = state.metrics.render(&state.engine.store_stats(), ready);
    (
        [(CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")],
        body,
    )
        .into_response()
}

/// This API's OpenAPI 3.1 document, generated from the code.
#[utoipa::path(get, path = "/openapi.json", tag = "operations",
    responses((status = 200, description = "The OpenAPI document.", content_type = "application/json", body = Object)))]
pub(crate) async fn openapi(State(state): State<AppState>) -> Response {
    (
        [(CONTENT_TYPE, "application/json")],
        state.openapi_json.as_ref().clone(),
    )
        .into_response()
}

/// Every unknown path.
pub(crate) async fn fallback() -> ApiError {
    ApiError::from_code(ErrorCode::RouteNotFound)
}

/// The console's overview: people in the index, how far the index is behind the store,
/// messages per second per source. Counts only, no personal data.
#[utoipa::path(get, path = "/v1/overview", tag = "operations", security(("bearer" = [])),
    responses((status = 200, body = crate::schemas::Overview), (status = 401, body = crate::ErrorBody)))]
pub(crate) async fn overview(
    State(state): State<AppState>,
    caller: crate::Caller,
) -> Result<Json<serde_json::Value>, ApiError> {
    caller.require(crate::Permission::ReadOverview)?;
    let engine = state.engine.clone();
    let overview = crate::routes::profiles::blocking(move || engine.overview()).await?;
    Ok(Json(serde_json::to_value(overview).unwrap_or_default()))
}
