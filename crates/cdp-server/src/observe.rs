//! Per-request middleware: request ids, logs, metrics, and one shape for every error answer.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use axum::body::Body;
use axum::extract::{MatchedPath, Request, State};
use axum::http::HeaderValue;
use axum::http::header::CONTENT_TYPE;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use crate::error::{ApiError, ApiErrorMarker, ErrorCode};
use crate::metrics::{HttpMetrics, method_label};

/// Route label for requests that matched no route. Never the raw path: it could hold a value.
const UNMATCHED: &str = "<unmatched>";
/// The route label of requests the edge refused before routing (414, 431, 408, 413, timeouts).
const EDGE: &str = "<edge>";

/// Marks a response `observe` counted, so that the edge does not count it again.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Observed;

static REQUEST_COUNTER: AtomicU64 = AtomicU64::new(0);

/// When the request entered the application (set by [`observe_edge`], the outermost
/// middleware that sees every request): the start of the server-side times a route reports
/// (`Server-Timing`), so that they include the wait for a worker, not only the work.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Arrived(pub(crate) Instant);

impl<S: Send + Sync> axum::extract::FromRequestParts<S> for Arrived {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        _state: &S,
    ) -> Result<Self, Self::Rejection> {
        // Absent only when a route is served without the edge (tests of one router): from
        // here is then the best estimate.
        Ok(parts
            .extensions
            .get::<Arrived>()
            .copied()
            .unwrap_or_else(|| Arrived(Instant::now())))
    }
}

/// Records metrics and a log line per request, labelled by route template. Added with
/// `Router::layer`, so it sees `MatchedPath`.
pub(crate) async fn observe(
    State(metrics): State<Arc<HttpMetrics>>,
    request: Request,
    next: Next,
) -> Response {
    let started = Instant::now();
    let method = method_label(request.method());
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map(|path| path.as_str().to_string())
        .unwrap_or_else(|| UNMATCHED.to_string());
    let request_id = format!(
        "{:x}-{:x}",
        std::process::id(),
        REQUEST_COUNTER.fetch_add(1, Ordering::Relaxed)
    );
    let mut response = next.run(request).await;
    response.extensions_mut().insert(Observed);
    let elapsed = started.elapsed();
    let status = response.status().as_u16();
    metrics.record(method, &route, status, elapsed);
    if let Ok(value) = HeaderValue::from_str(&request_id) {
        response.headers_mut().insert("x-request-id", value);
    }
    if response.status().is_server_error() {
        tracing::warn!(%request_id, method, route, status, elapsed_ms = elapsed.as_secs_f64() * 1e3, "request failed");
    } else {
        tracing::info!(%request_id, method, route, status, elapsed_ms = elapsed.as_secs_f64() * 1e3, "request");
    }
    response
}

/// Counts and logs what the edge answered before a route saw the request (a target too long,
/// a header flood, a body too slow or too large, a handler past its timeout): the operator
/// sees refusals and probes in the same metrics as everything else.
pub(crate) async fn observe_edge(
    State(metrics): State<Arc<HttpMetrics>>,
    request: Request,
    next: Next,
) -> Response {
    let started = Instant::now();
    let method = method_label(request.method());
    let mut request = request;
    request.extensions_mut().insert(Arrived(started));
    let response = next.run(request).await;
    if response.extensions().get::<Observed>().is_none() {
        let elapsed = started.elapsed();
        let status = response.status().as_u16();
        metrics.record(method, EDGE, status, elapsed);
        tracing::warn!(
            method,
            route = EDGE,
            status,
            elapsed_ms = elapsed.as_secs_f64() * 1e3,
            "request refused at the edge"
        );
    }
    response
}

/// Rewrites error answers produced outside our handlers (axum's rejections, body limits,
/// timeouts, method mismatches) into the `{"error": {...}}` shape with a stable code. Their
/// original text is dropped: serde messages can quote the offending input.
pub(crate) async fn normalise_errors(request: Request, next: Next) -> Response {
    let response = next.run(request).await;
    let status = response.status();
    if !(status.is_client_error() || status.is_server_error())
        || response.extensions().get::<ApiErrorMarker>().is_some()
    {
        return response;
    }
    let code = ErrorCode::for_status(status);
    let (parts, _) = response.into_parts();
    let mut rewritten = ApiError::from_code(code).into_response();
    // Keep the original status (e.g. 400 vs 422) and headers such as `Allow`.
    *rewritten.status_mut() = parts.status;
    for (name, value) in parts.headers.iter() {
        if name != CONTENT_TYPE && name != axum::http::header::CONTENT_LENGTH {
            rewritten.headers_mut().insert(name.clone(), value.clone());
        }
    }
    rewritten
}

/// The answer for a handler that panicked: a plain `internal` error, details only in the log.
pub(crate) fn panic_response(payload: Box<dyn std::any::Any + Send + 'static>) -> Response<Body> {
    let detail = payload
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_default();
    tracing::error!(panic = %detail, "request handler panicked");
    ApiError::from_code(ErrorCode::Internal).into_response()
}
