//! Junk detection: `GET /v1/identity/suspects`, `POST /v1/identity/suspects/{id}`; fuzzy
//! matching: `GET /v1/identity/matching`, `POST /v1/identity/matching/run`,
//! `GET /v1/identity/suggestions`, `POST /v1/identity/suggestions/{id}`.
//!
//! Identifiers that merge protection kept from linking many different people are quarantined
//! automatically (cdp-engine `suspects.rs`); an administrator or the DPO lists them and blocks
//! or releases each. The list shows identifier values (it is audited).

use axum::Json;
use axum::extract::{Path, Query, State};
use cdp_engine::matching::suggestions::{SuggestionDecision, SuggestionStatus};
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

#[derive(Debug, Deserialize, IntoParams)]
pub(crate) struct SuggestionsQuery {
    /// `pending` (default), `accepted` or `rejected`.
    status: Option<String>,
}

/// Fuzzy matching: whether it is on and where, its thresholds, whether a run is under way,
/// and the last run with its model.
#[utoipa::path(get, operation_id = "matching_overview", path = "/v1/identity/matching", tag = "profiles", security(("bearer" = [])),
    responses((status = 200, description = "`{enabled, jurisdictions, link_probability, review_probability, fields, running, last_error?, last_run?: {report, model}}`", body = serde_json::Value),
        (status = 403, body = crate::ErrorBody)))]
pub(crate) async fn matching(
    State(state): State<AppState>,
    caller: Caller,
) -> Result<Json<serde_json::Value>, ApiError> {
    caller.require(Permission::ReadIdentityGraph)?;
    let engine = state.engine.clone();
    as_json(blocking(move || engine.matching_overview()).await?)
}

#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct RunMatchingBody {
    /// Estimate the model again (default: runs score with the model of the first run, kept
    /// until the schema changes).
    #[serde(default)]
    retrain: bool,
}

/// Starts a fuzzy matching run in the background (409 when matching is off or a run is
/// under way); `GET /v1/identity/matching` follows it.
#[utoipa::path(post, operation_id = "run_matching", path = "/v1/identity/matching/run", tag = "profiles", security(("bearer" = [])),
    request_body = RunMatchingBody,
    responses((status = 202, description = "`{running: true}`", body = serde_json::Value),
        (status = 403, body = crate::ErrorBody), (status = 409, body = crate::ErrorBody)))]
pub(crate) async fn run_matching(
    State(state): State<AppState>,
    caller: Caller,
    body: JsonBody<RunMatchingBody>,
) -> Result<(axum::http::StatusCode, Json<serde_json::Value>), ApiError> {
    caller.require(Permission::SplitProfiles)?;
    let body = body.parse()?;
    let access = caller.access(None);
    state
        .engine
        .start_matching(&access.actor, body.retrain)
        .map_err(crate::routes::engine_error)?;
    Ok((
        axum::http::StatusCode::ACCEPTED,
        Json(serde_json::json!({ "running": true })),
    ))
}

/// Pairs of people fuzzy matching found probably one person, for review, most probable
/// first: profile ids and each field's comparison level, never a value. Audited.
#[utoipa::path(get, operation_id = "list_suggestions", path = "/v1/identity/suggestions", tag = "profiles", security(("bearer" = [])),
    params(SuggestionsQuery),
    responses((status = 200, description = "`{suggestions: [{id, profiles: [a, b], probability, weight, fields: [{field, level, weight}], status, suggested_at, decided_by?}]}`", body = serde_json::Value),
        (status = 400, body = crate::ErrorBody), (status = 403, body = crate::ErrorBody)))]
pub(crate) async fn suggestions(
    State(state): State<AppState>,
    caller: Caller,
    Query(query): Query<SuggestionsQuery>,
) -> Result<Json<serde_json::Value>, ApiError> {
    caller.require(Permission::ReadIdentityGraph)?;
    let status = query
        .status
        .as_deref()
        .map(str::parse::<SuggestionStatus>)
        .transpose()
        .map_err(crate::routes::engine_error)?;
    let access = caller.access(None);
    let engine = state.engine.clone();
    let suggestions = blocking(move || engine.suggestions(status, &access)).await?;
    as_json(serde_json::json!({ "suggestions": suggestions }))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct SuggestionBody {
    /// `accept` (the pair is linked as one person, under merge protection: 409 when it
    /// refuses) or `reject` (the pair is not suggested again).
    #[schema(value_type = String)]
    decision: SuggestionDecision,
}

/// Accepts or rejects a pending suggestion; audited.
#[utoipa::path(post, operation_id = "decide_suggestion", path = "/v1/identity/suggestions/{id}", tag = "profiles", security(("bearer" = [])),
    params(("id" = String, Path)), request_body = SuggestionBody,
    responses((status = 200, description = "The suggestion as it now stands.", body = serde_json::Value),
        (status = 400, body = crate::ErrorBody), (status = 404, body = crate::ErrorBody), (status = 409, body = crate::ErrorBody)))]
pub(crate) async fn decide_suggestion(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    body: JsonBody<SuggestionBody>,
) -> Result<Json<serde_json::Value>, ApiError> {
    caller.require(Permission::SplitProfiles)?;
    let body = body.parse()?;
    let access = caller.access(None);
    let engine = state.engine.clone();
    as_json(blocking(move || engine.decide_suggestion(&id, body.decision, &access)).await?)
}
