//! The HTTP edge: routes, the error-code table, metrics, OpenAPI and graceful shutdown.
//!
//! API boundary: this crate turns HTTP into calls on the layers below and their results into
//! JSON. It holds no business rules. Every error a caller sees comes from [`ErrorCode`]; request
//! logs and metrics carry the matched route template, never the raw path or query (which can
//! hold identifiers such as `?value=<e-mail>`).

mod app;
mod auth;
mod console;
mod edge;
mod error;
mod metrics;
mod observe;
mod openapi;
mod permissions;
mod routes;
mod schemas;
mod sensors;
mod serve;
mod swap;

pub use app::{AppState, ServerConfig, router};
pub use auth::Caller;
pub use error::{ApiError, ErrorBody, ErrorCode, ErrorDetail};
pub use metrics::HttpMetrics;
pub use permissions::Permission;
pub use serve::serve;
pub use swap::{SwappableApp, recovering_app};

/// The HTTP application (an axum router), as `cdp serve` builds and swaps it.
pub type App = axum::Router;
