//! Profile reads, the identity graph, split.
//!
//! Purpose-bound reads and masking are added by the policy engine (issue #4); until then these
//! routes are open to the roles that will keep full access (admin, dpo) and to customer service.

use axum::Json;
use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, Query, State};
use cdp_core::{IdentifierType, ProfileId};
use cdp_engine::{SplitRequest, records::EvidenceId};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use crate::auth::Caller;
use crate::routes::engine_error;
use crate::{ApiError, AppState, ErrorCode};

const READERS: &[&str] = &["admin", "dpo", "customer_service"];
const GRAPH_EDITORS: &[&str] = &["admin", "dpo"];

pub(crate) fn json_rejection(rejection: JsonRejection) -> ApiError {
    // The rejection's own text can quote input; say what kind of problem it is.
    let message = match rejection {
        JsonRejection::MissingJsonContentType(_) => "Content-Type must be application/json",
        JsonRejection::JsonSyntaxError(_) => "the body is not valid JSON",
        JsonRejection::JsonDataError(_) => {
            "the body has a missing field, an unknown field or a field of the wrong type"
        }
        _ => "the body cannot be read",
    };
    ApiError::new(ErrorCode::InvalidJson, message)
}

fn parse_id(id: &str) -> Result<ProfileId, ApiError> {
    id.parse().map_err(|_| {
        ApiError::new(
            ErrorCode::BadRequest,
            "profile id must be p_ followed by 32 hex digits",
        )
    })
}

fn as_json<T: Serialize>(value: T) -> Result<Json<serde_json::Value>, ApiError> {
    serde_json::to_value(value)
        .map(Json)
        .map_err(|_| ApiError::from_code(ErrorCode::Internal))
}

/// A profile: identifiers, traits with provenance, channel activity.
#[utoipa::path(get, path = "/v1/profiles/{id}", tag = "profiles", security(("bearer" = [])),
    params(("id" = String, Path, description = "Profile id (absorbed ids resolve to their survivor)")),
    responses((status = 200, body = Object), (status = 404, body = crate::ErrorBody), (status = 401, body = crate::ErrorBody), (status = 403, body = crate::ErrorBody)))]
pub(crate) async fn get_profile(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<serde_json::Value>, ApiError> {
    caller.require(READERS)?;
    let id = parse_id(&id)?;
    let profile = state.engine.profile(id).map_err(engine_error)?;
    let profile = profile
        .ok_or_else(|| ApiError::new(ErrorCode::NotFound, format!("profile {id} not found")))?;
    tracing::info!(profile = %profile.id, subject = %caller.0.sub, "profile read");
    as_json(profile)
}

#[derive(Debug, Deserialize, IntoParams)]
pub(crate) struct LookupQuery {
    /// Identifier type: email, phone, user_id, anonymous_id, wechat_unionid...
    #[serde(rename = "type")]
    kind: String,
    value: String,
    /// Region for a phone number without country code (CN, DE...).
    region: Option<String>,
}

/// The profile an identifier belongs to.
#[utoipa::path(get, path = "/v1/profiles/lookup", tag = "profiles", security(("bearer" = [])), params(LookupQuery),
    responses((status = 200, body = Object), (status = 404, body = crate::ErrorBody), (status = 400, body = crate::ErrorBody)))]
pub(crate) async fn lookup(
    State(state): State<AppState>,
    caller: Caller,
    query: Result<Query<LookupQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<serde_json::Value>, ApiError> {
    caller.require(READERS)?;
    let Query(query) = query.map_err(|_| {
        ApiError::new(
            ErrorCode::BadRequest,
            "type and value are required query parameters",
        )
    })?;
    let kind: IdentifierType = query
        .kind
        .parse()
        .map_err(|_| ApiError::new(ErrorCode::BadRequest, "type is not an identifier type"))?;
    let profile = state
        .engine
        .lookup(&kind, &query.value, query.region.as_deref())
        .map_err(engine_error)?
        .ok_or_else(|| ApiError::new(ErrorCode::NotFound, format!("no profile has that {kind}")))?;
    tracing::info!(profile = %profile.id, kind = %kind, subject = %caller.0.sub, "profile lookup");
    as_json(profile)
}

/// "Why are these one person": identifiers, the evidence that links them (with provenance and
/// what merge protection dropped), and the merge log.
#[utoipa::path(get, path = "/v1/profiles/{id}/identity", tag = "profiles", security(("bearer" = [])),
    params(("id" = String, Path)),
    responses((status = 200, body = Object), (status = 404, body = crate::ErrorBody)))]
pub(crate) async fn identity(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<serde_json::Value>, ApiError> {
    caller.require(GRAPH_EDITORS)?;
    let id = parse_id(&id)?;
    let view = state
        .engine
        .identity(id)
        .map_err(engine_error)?
        .ok_or_else(|| ApiError::new(ErrorCode::NotFound, format!("profile {id} not found")))?;
    as_json(view)
}

#[derive(Debug, Deserialize, IntoParams)]
pub(crate) struct EventsQuery {
    /// At most this many events, oldest first (default 100, at most 1000).
    limit: Option<usize>,
}

/// A profile's events, oldest first.
#[utoipa::path(get, path = "/v1/profiles/{id}/events", tag = "profiles", security(("bearer" = [])),
    params(("id" = String, Path), EventsQuery),
    responses((status = 200, body = Object), (status = 404, body = crate::ErrorBody)))]
pub(crate) async fn events(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    Query(query): Query<EventsQuery>,
) -> Result<Json<serde_json::Value>, ApiError> {
    caller.require(GRAPH_EDITORS)?;
    let id = parse_id(&id)?;
    if state.engine.profile(id).map_err(engine_error)?.is_none() {
        return Err(ApiError::new(
            ErrorCode::NotFound,
            format!("profile {id} not found"),
        ));
    }
    let limit = query.limit.unwrap_or(100).min(1000);
    let events = state.engine.events(id, limit).map_err(engine_error)?;
    as_json(serde_json::json!({ "events": events }))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct SplitIdentifier {
    #[serde(rename = "type")]
    kind: String,
    value: String,
}

/// Exactly one of `identifier` or `edge`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct SplitBody {
    /// Remove this identifier from the profile.
    identifier: Option<SplitIdentifier>,
    /// Remove this edge (an evidence id from the identity view).
    edge: Option<String>,
}

/// Removes an identifier or an edge; the component is re-resolved and events and traits follow.
#[utoipa::path(post, path = "/v1/profiles/{id}/split", tag = "profiles", security(("bearer" = [])),
    params(("id" = String, Path)), request_body = SplitBody,
    responses((status = 200, description = "The profiles the component became.", body = Object), (status = 404, body = crate::ErrorBody), (status = 400, body = crate::ErrorBody)))]
pub(crate) async fn split(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    body: Result<Json<SplitBody>, JsonRejection>,
) -> Result<Json<serde_json::Value>, ApiError> {
    caller.require(GRAPH_EDITORS)?;
    let id = parse_id(&id)?;
    let Json(body) = body.map_err(json_rejection)?;
    let request = match (body.identifier, body.edge) {
        (Some(identifier), None) => SplitRequest::Identifier {
            kind: identifier.kind.parse().map_err(|_| {
                ApiError::new(
                    ErrorCode::BadRequest,
                    "identifier.type is not an identifier type",
                )
            })?,
            value: identifier.value,
        },
        (None, Some(edge)) => {
            let bytes = (edge.len() == 32)
                .then(|| {
                    let mut out = [0u8; 16];
                    for (index, chunk) in edge.as_bytes().chunks_exact(2).enumerate() {
                        out[index] =
                            u8::from_str_radix(std::str::from_utf8(chunk).ok()?, 16).ok()?;
                    }
                    Some(out)
                })
                .flatten()
                .ok_or_else(|| {
                    ApiError::new(
                        ErrorCode::BadRequest,
                        "edge must be an evidence id (32 hex digits)",
                    )
                })?;
            SplitRequest::Edge(EvidenceId(bytes))
        }
        _ => {
            return Err(ApiError::new(
                ErrorCode::BadRequest,
                "give exactly one of identifier or edge",
            ));
        }
    };
    let engine = state.engine.clone();
    let (report, ticket) = tokio::task::spawn_blocking(move || engine.split(id, &request))
        .await
        .map_err(|_| ApiError::from_code(ErrorCode::Internal))?
        .map_err(engine_error)?;
    if let Some(ticket) = ticket {
        ticket.durable().await.map_err(|e| engine_error(e.into()))?;
    }
    tracing::info!(profile = %id, subject = %caller.0.sub, profiles = report.profiles.len(), "profile split");
    as_json(report)
}
