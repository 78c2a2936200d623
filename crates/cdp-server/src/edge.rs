//! Limits on what a request may be before any route sees it: its target's length, its
//! headers, its body's size and how long the body may take to arrive.
//!
//! hyper enforces its own limits too (a target up to 64 KiB, 100 headers, about 400 KiB of
//! head), but answers them with an empty 414 or 431 that no client can tell apart from a
//! broken proxy. The limits here are lower, so that every request a client could plausibly
//! send gets the `{"error": ...}` shape with a stable code; beyond hyper's, hyper answers.
//!
//! The body is read here, in full, within `body_timeout`: a client that trickles its body is
//! answered 408 `request_timeout` (not the handler's 503 `timeout`), and a body over the
//! limit is 413 whether or not it would have parsed (a chunked body has no Content-Length
//! for the limit layer to refuse up front). Every route buffers its body anyway.

use std::time::Duration;

use axum::body::Body;
use axum::extract::Request;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use crate::error::{ApiError, ErrorCode};

/// Longest request target (path and query) answered by a route.
pub(crate) const MAX_TARGET_BYTES: usize = 8 * 1024;
/// Most request headers, and most bytes of them (names and values), answered by a route.
pub(crate) const MAX_HEADERS: usize = 64;
pub(crate) const MAX_HEADER_BYTES: usize = 32 * 1024;

/// The edge's limits, from the server's configuration.
#[derive(Debug, Clone, Copy)]
pub(crate) struct EdgeLimits {
    pub(crate) max_body_bytes: usize,
    pub(crate) body_timeout: Duration,
}

/// Refuses requests over the edge's limits and reads the body within its deadline.
pub(crate) async fn enforce_limits(limits: EdgeLimits, request: Request, next: Next) -> Response {
    let target = request
        .uri()
        .path_and_query()
        .map_or(0, |target| target.as_str().len());
    if target > MAX_TARGET_BYTES {
        return ApiError::new(
            ErrorCode::UriTooLong,
            format!(
                "the request target is {target} bytes; at most {MAX_TARGET_BYTES} are accepted"
            ),
        )
        .into_response();
    }
    let headers = request.headers();
    let header_bytes: usize = headers
        .iter()
        .map(|(name, value)| name.as_str().len() + value.len())
        .sum();
    if headers.len() > MAX_HEADERS || header_bytes > MAX_HEADER_BYTES {
        return ApiError::new(
            ErrorCode::HeadersTooLarge,
            format!(
                "the request has {} headers of {header_bytes} bytes; at most {MAX_HEADERS} headers of {MAX_HEADER_BYTES} bytes are accepted",
                headers.len()
            ),
        )
        .into_response();
    }
    let (parts, body) = request.into_parts();
    let read = axum::body::to_bytes(body, limits.max_body_bytes);
    let bytes = match tokio::time::timeout(limits.body_timeout, read).await {
        Err(_) => {
            return ApiError::new(
                ErrorCode::RequestTimeout,
                format!(
                    "the request body did not arrive within {} s",
                    limits.body_timeout.as_secs()
                ),
            )
            .into_response();
        }
        Ok(Err(error)) => {
            // axum's error wraps http-body-util's; look through the chain for it.
            let mut cause: Option<&(dyn std::error::Error + 'static)> = Some(&error);
            let mut too_large = false;
            while let Some(current) = cause {
                too_large |= current.is::<http_body_util::LengthLimitError>();
                cause = current.source();
            }
            return if too_large {
                ApiError::new(
                    ErrorCode::PayloadTooLarge,
                    format!(
                        "the body exceeds {} bytes (http.max_body_bytes)",
                        limits.max_body_bytes
                    ),
                )
                .into_response()
            } else {
                // The connection broke or the client sent a malformed chunked body.
                ApiError::new(ErrorCode::BadRequest, "the request body could not be read")
                    .into_response()
            };
        }
        Ok(Ok(bytes)) => bytes,
    };
    next.run(Request::from_parts(parts, Body::from(bytes)))
        .await
}
