//! Junk detection: `GET /v1/identity/suspects`, `POST /v1/identity/suspects/{id}`.
//!
//! Identifiers that merge protection kept from linking many different people are quarantined
//! automatically (cdp-engine `suspects.rs`); an administrator or the DPO lists them and blocks
//! or releases each. The list shows identifier values (it is audited).

use axum::Json;
use axum::extract::{Path, Query, State};
use cdp_engine::{SuspectDecision, SuspectStatus};
use serde::Deserialize;
use utoipa::{IntoParams, ToSchema};

use crate::auth::Caller;
use crate::routes::body::JsonBody;
use crate::routes::profiles::{as_json, blocking};
use crate::{ApiError, AppState, Permission};

#[derive(Debug, Deserialize, IntoParams)]
pub(crate) struct SuspectsQuery {
    /// `quarantined` (default), `watching`, `blocked` or `released`.
    status: Option<String>,
}

/// Identifiers quarantined as junk (or in another status), most conflicted first.
#[utoipa::path(get, operation_id = "list_suspects", path = "/v1/identity/suspects", tag = "profiles", security(("bearer" = [])),
    params(SuspectsQuery),
    responses((status = 200, description = "`{suspects: [{id, type, value, status, distinct_conflicts, conflicts, profile, first_seen, last_seen, decided_by}]}`", body = crate::schemas::SuspectList),
        (status = 400, body = crate::ErrorBody), (status = 403, body = crate::ErrorBody)))]
pub(crate) async fn list(
    State(state): State<AppState>,
    caller: Caller,
    Query(query): Query<SuspectsQuery>,
) -> Result<Json<serde_json::Value>, ApiError> {
    caller.require(Permission::ReadIdentityGraph)?;
    let status = query
        .status
        .as_deref()
        .map(str::parse::<SuspectStatus>)
        .transpose()
        .map_err(crate::routes::engine_error)?;
    let access = caller.access(None);
    let engine = state.engine.clone();
    let suspects = blocking(move || engine.suspects(status, &access)).await?;
    as_json(serde_json::json!({ "suspects": suspects }))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct DecideBody {
    /// `block` (junk: it links nobody, and is split off the profile it joined) or `release`
    /// (genuine: it links again and is not quarantined automatically again).
    #[schema(value_type = String)]
    decision: SuspectDecision,
}

/// Blocks or releases a suspect.
#[utoipa::path(post, operation_id = "decide_suspect", path = "/v1/identity/suspects/{id}", tag = "profiles", security(("bearer" = [])),
    params(("id" = String, Path)), request_body = DecideBody,
    responses((status = 200, description = "The suspect as it now stands.", body = crate::schemas::Suspect),
        (status = 400, body = crate::ErrorBody), (status = 404, body = crate::ErrorBody)))]
pub(crate) async fn decide(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    body: JsonBody<DecideBody>,
) -> Result<Json<serde_json::Value>, ApiError> {
    caller.require(Permission::SplitProfiles)?;
    let body = body.parse()?;
    let access = caller.access(None);
    let engine = state.engine.clone();
    as_json(blocking(move || engine.decide_suspect(&id, body.decision, &access)).await?)
}
