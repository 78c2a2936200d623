//! An application that can be replaced while the server keeps its listener: `cdp serve` swaps
//! in the recovering application while it reopens a store whose flush failed (a full disk), and
//! the new one once the store is back, as a database restarts its storage after a failed fsync
//! without the clients' connections going anywhere.

use std::sync::{Arc, RwLock};

use axum::Router;
use axum::extract::Request;
use axum::http::HeaderValue;
use axum::http::header::RETRY_AFTER;
use axum::response::{IntoResponse, Response};
use tower::ServiceExt as _;

use crate::{ApiError, ErrorCode};

/// The application the server answers with, replaceable at any time; requests in flight finish
/// on the one they started with.
#[derive(Clone)]
pub struct SwappableApp {
    current: Arc<RwLock<Router>>,
}

impl std::fmt::Debug for SwappableApp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SwappableApp")
    }
}

impl SwappableApp {
    pub fn new(app: Router) -> Self {
        Self {
            current: Arc::new(RwLock::new(app)),
        }
    }

    /// Answers every later request with `app`.
    pub fn replace(&self, app: Router) {
        *self.current.write().unwrap_or_else(|p| p.into_inner()) = app;
    }

    /// The router to serve: each request goes to the application current when it arrives.
    pub fn router(&self) -> Router {
        let current = self.current.clone();
        Router::new().fallback(move |request: Request| {
            let app = current.read().unwrap_or_else(|p| p.into_inner()).clone();
            async move {
                match app.oneshot(request).await {
                    Ok(response) => response,
                    Err(never) => match never {},
                }
            }
        })
    }
}

/// What the server answers while the store is being reopened: the process is alive
/// (`/healthz` 200), not ready (`/readyz` 503), and every other request is a 503
/// `store_unavailable` with `Retry-After`.
pub fn recovering_app() -> Router {
    async fn unavailable() -> Response {
        let mut response = ApiError::new(
            ErrorCode::StoreUnavailable,
            "the store is being reopened after a failed write (a full disk?); retry shortly",
        )
        .into_response();
        response
            .headers_mut()
            .insert(RETRY_AFTER, HeaderValue::from_static("5"));
        response
    }
    Router::new()
        .route(
            "/healthz",
            axum::routing::get(|| async {
                axum::Json(serde_json::json!({"status": "recovering"}))
            }),
        )
        .fallback(unavailable)
}
