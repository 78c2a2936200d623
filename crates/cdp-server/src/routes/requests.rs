//! Data-subject requests: `POST /v1/requests`, `GET /v1/requests`, `GET /v1/requests/{id}`,
//! `GET /v1/requests/{id}/bundle`.

use std::collections::BTreeMap;

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use cdp_engine::{RequestOptions, RequestType};
use serde::Deserialize;
use utoipa::ToSchema;

use crate::auth::Caller;
use crate::routes::body::JsonBody;
use crate::routes::profiles::{as_json, blocking};
use crate::{ApiError, AppState, ErrorCode, Permission};

/// Requests change or reveal everything about a person: the DPO's (or an admin's) job.

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct RequestBody {
    /// access, erasure, rectification, restriction, objection or tags.
    #[serde(rename = "type")]
    #[schema(value_type = String)]
    kind: RequestType,
    subject: crate::routes::SubjectBody,
    /// How the requester's identity was checked.
    #[schema(value_type = Object)]
    verification: serde_json::Value,
    /// Rectification: trait -> corrected value.
    #[serde(default)]
    #[schema(value_type = Object)]
    traits: BTreeMap<String, serde_json::Value>,
    /// Restriction: lift it instead.
    #[serde(default)]
    lift: bool,
    /// Objection: marketing and/or personalization (default both).
    #[serde(default)]
    scope: Vec<String>,
    /// Tags: the tags to delete.
    #[serde(default)]
    delete_tags: Vec<String>,
}

/// Records a data-subject request and carries it out; answers its final state (201).
#[utoipa::path(post, operation_id = "submit_request", path = "/v1/requests", tag = "requests", security(("bearer" = [])),
    request_body = RequestBody,
    responses((status = 201, body = crate::schemas::DataSubjectRequest), (status = 400, body = crate::ErrorBody), (status = 403, body = crate::ErrorBody)))]
pub(crate) async fn submit(
    State(state): State<AppState>,
    caller: Caller,
    body: JsonBody<RequestBody>,
) -> Result<(StatusCode, Json<serde_json::Value>), ApiError> {
    caller.require(Permission::HandleRequests)?;
    let body = body.parse()?;
    let subject = body.subject.parse()?;
    let options = RequestOptions {
        traits: body.traits,
        lift: body.lift,
        scope: body.scope,
        delete_tags: body.delete_tags,
    };
    let engine = state.engine.clone();
    let actor = caller.0.sub.clone();
    let record = blocking(move || {
        engine.submit_request(body.kind, subject, body.verification, options, &actor)
    })
    .await?;
    Ok((StatusCode::CREATED, as_json(record)?))
}

/// Every request, oldest first.
#[utoipa::path(get, operation_id = "list_requests", path = "/v1/requests", tag = "requests", security(("bearer" = [])),
    responses((status = 200, body = crate::schemas::RequestList), (status = 403, body = crate::ErrorBody)))]
pub(crate) async fn list(
    State(state): State<AppState>,
    caller: Caller,
) -> Result<Json<serde_json::Value>, ApiError> {
    caller.require(Permission::ReadRequests)?;
    let engine = state.engine.clone();
    let mut requests = blocking(move || engine.requests()).await?;
    if !Permission::HandleRequests.granted_to(&caller.0.roles) {
        requests = requests
            .into_iter()
            .map(cdp_engine::requests::RequestRecord::without_verification)
            .collect();
    }
    as_json(serde_json::json!({ "requests": requests }))
}

/// A request: status, due date, reason, result (the signed receipt of an erasure).
#[utoipa::path(get, operation_id = "get_request", path = "/v1/requests/{id}", tag = "requests", security(("bearer" = [])),
    params(("id" = String, Path)),
    responses((status = 200, body = crate::schemas::DataSubjectRequest), (status = 404, body = crate::ErrorBody)))]
pub(crate) async fn get(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<serde_json::Value>, ApiError> {
    caller.require(Permission::ReadRequests)?;
    let engine = state.engine.clone();
    let mut record = blocking(move || engine.request(&id))
        .await?
        .ok_or_else(|| ApiError::new(ErrorCode::NotFound, "no such request"))?;
    if !Permission::HandleRequests.granted_to(&caller.0.roles) {
        record = record.without_verification();
    }
    as_json(record)
}

/// The access bundle of a completed access request (JSON; docs/requests.md), audited.
#[utoipa::path(get, operation_id = "request_bundle", path = "/v1/requests/{id}/bundle", tag = "requests", security(("bearer" = [])),
    params(("id" = String, Path)),
    responses((status = 200, body = crate::schemas::AccessBundle), (status = 404, body = crate::ErrorBody), (status = 409, body = crate::ErrorBody)))]
pub(crate) async fn bundle(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<serde_json::Value>, ApiError> {
    caller.require(Permission::HandleRequests)?;
    let engine = state.engine.clone();
    let actor = caller.0.sub.clone();
    Ok(Json(
        blocking(move || engine.access_bundle(&id, &actor)).await?,
    ))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct RetentionBody {
    /// `true`: report what would be deleted; `false`: delete it. Required: a sweep deletes
    /// personal data for good, so it runs only when the caller says so in as many words.
    dry_run: bool,
}

/// Runs the retention sweeper now (it also runs on its schedule).
#[utoipa::path(post, operation_id = "run_retention", path = "/v1/retention/run", tag = "requests", security(("bearer" = [])),
    request_body = RetentionBody,
    responses((status = 200, body = crate::schemas::RetentionReport), (status = 403, body = crate::ErrorBody)))]
pub(crate) async fn retention(
    State(state): State<AppState>,
    caller: Caller,
    body: JsonBody<RetentionBody>,
) -> Result<Json<serde_json::Value>, ApiError> {
    caller.require(Permission::HandleRequests)?;
    let body = body.parse()?;
    let engine = state.engine.clone();
    let actor = caller.0.sub.clone();
    as_json(blocking(move || engine.run_retention(body.dry_run, &actor)).await?)
}
