//! The audit log: `GET /v1/audit`, `GET /v1/audit/verify`.

use axum::Json;
use axum::extract::{Query, State};
use serde::Deserialize;
use utoipa::IntoParams;

use crate::auth::Caller;
use crate::routes::profiles::{as_json, blocking};
use crate::{ApiError, AppState, Permission};

#[derive(Debug, Deserialize, IntoParams)]
pub(crate) struct AuditQuery {
    /// Entries after this sequence number (default 0: from the start).
    after: Option<u64>,
    /// At most this many (default 100, at most 1000).
    limit: Option<usize>,
    /// `true`: the last `limit` entries instead (oldest first; `after` is ignored), with
    /// `entries_total`, the chain's length.
    #[serde(default)]
    latest: bool,
}

/// Audit entries, oldest first: who did what, for which purpose, about which (pseudonymous)
/// person, with the decision, the rules that spoke and the policy version.
#[utoipa::path(get, operation_id = "list_audit_entries", path = "/v1/audit", tag = "audit", security(("bearer" = [])), params(AuditQuery),
    responses((status = 200, body = crate::schemas::AuditPage), (status = 403, body = crate::ErrorBody)))]
pub(crate) async fn list(
    State(state): State<AppState>,
    caller: Caller,
    Query(query): Query<AuditQuery>,
) -> Result<Json<serde_json::Value>, ApiError> {
    caller.require(Permission::ReadAudit)?;
    let after = query.after.unwrap_or(0);
    let limit = query.limit.unwrap_or(100).clamp(1, 1000);
    let engine = state.engine.clone();
    if query.latest {
        let (entries, total) = blocking(move || engine.latest_audit_entries(limit)).await?;
        return as_json(serde_json::json!({ "entries": entries, "entries_total": total }));
    }
    let entries = blocking(move || engine.audit_entries(after, limit)).await?;
    let next = entries.last().map(|entry| entry.seq);
    as_json(serde_json::json!({ "entries": entries, "next_after": next }))
}

/// Checks the hash chain; `ok: false` names the first broken entry and how it broke.
#[utoipa::path(get, operation_id = "verify_audit_log", path = "/v1/audit/verify", tag = "audit", security(("bearer" = [])),
    responses((status = 200, body = crate::schemas::AuditVerification), (status = 403, body = crate::ErrorBody)))]
pub(crate) async fn verify(
    State(state): State<AppState>,
    caller: Caller,
) -> Result<Json<serde_json::Value>, ApiError> {
    caller.require(Permission::ReadAudit)?;
    let engine = state.engine.clone();
    as_json(blocking(move || engine.verify_audit()).await?)
}
