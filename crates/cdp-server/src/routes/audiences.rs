//! Audiences: `POST /v1/audiences/count`, `POST /v1/audiences`,
//! `GET/PATCH/DELETE /v1/audiences/{id}`, `GET /v1/audiences/{id}/members`.

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use cdp_engine::{AudiencePatch, AudienceQuery};
use cdp_index::Condition;
use serde::Deserialize;
use utoipa::{IntoParams, ToSchema};

use crate::auth::Caller;
use crate::routes::body::JsonBody;
use crate::routes::profiles::{as_json, blocking};
use crate::{ApiError, AppState, ErrorCode, Permission};

fn query_of(
    query: Option<String>,
    condition: Option<Condition>,
) -> Result<AudienceQuery, ApiError> {
    match (query, condition) {
        (Some(text), None) => Ok(AudienceQuery::Text(text)),
        (None, Some(tree)) => Ok(AudienceQuery::Tree(tree)),
        _ => Err(ApiError::new(
            ErrorCode::BadRequest,
            "give exactly one of query (text form) or condition (JSON tree)",
        )),
    }
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct CountBody {
    /// Text form: `tier:vip AND city:上海 AND consent.marketing_sms:granted AND monetary_90d>=1000`.
    query: Option<String>,
    /// JSON tree: `{"all": [{"field": "tier", "op": "eq", "value": "vip"}, ...]}`.
    #[schema(value_type = Option<Object>)]
    condition: Option<Condition>,
    /// The purpose of the count (required): only people the policies allow for it count.
    purpose: String,
}

/// A count shown to a caller who may not read individual profiles (the analyst): every number
/// below the minimum audience size becomes `"<k"`, so that a count cannot single a person out;
/// `removed_by_policy` goes too when it would give a suppressed number back by subtraction.
fn suppress_small_counts(count: &mut serde_json::Value, k: u64) {
    let small = |value: &serde_json::Value| value.as_u64().is_some_and(|n| n < k);
    let (count_small, matched_small) = (small(&count["count"]), small(&count["matched"]));
    let hidden = serde_json::Value::String(format!("<{k}"));
    if count_small {
        count["count"] = hidden.clone();
    }
    if matched_small {
        count["matched"] = hidden.clone();
    }
    if count_small != matched_small || small(&count["removed_by_policy"]) {
        count["removed_by_policy"] = hidden;
    }
    count["suppressed_below"] = serde_json::Value::from(k);
}

/// How many people match, and how many the policies remove for the purpose.
#[utoipa::path(post, operation_id = "count_audience", path = "/v1/audiences/count", tag = "audiences", security(("bearer" = [])),
    request_body = CountBody,
    responses((status = 200, description = "`{count, matched, removed_by_policy, purpose, evaluated_at}`; for a caller who may not read profiles, numbers below the minimum audience size are `\"<20\"` (`suppressed_below`)", body = crate::schemas::AudienceCount),
        (status = 400, description = "A query error names where (`details.at`).", body = crate::ErrorBody),
        (status = 403, body = crate::ErrorBody)))]
pub(crate) async fn count(
    State(state): State<AppState>,
    caller: Caller,
    body: JsonBody<CountBody>,
) -> Result<Json<serde_json::Value>, ApiError> {
    caller.require(Permission::CountAudiences)?;
    let body = body.parse()?;
    let query = query_of(body.query, body.condition)?;
    let access = caller.access(Some(body.purpose.clone()));
    let engine = state.engine.clone();
    let purpose = body.purpose;
    let k = engine.min_audience_size();
    let Json(mut count) =
        as_json(blocking(move || engine.count_audience(&query, &purpose, &access)).await?)?;
    if !Permission::ReadProfiles.granted_to(&caller.0.roles) {
        suppress_small_counts(&mut count, k);
    }
    Ok(Json(count))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct CreateBody {
    name: String,
    /// The purpose the audience is for (membership is filtered by it).
    purpose: String,
    query: Option<String>,
    #[schema(value_type = Option<Object>)]
    condition: Option<Condition>,
}

/// Saves an audience definition; answers it with its size now.
#[utoipa::path(post, operation_id = "create_audience", path = "/v1/audiences", tag = "audiences", security(("bearer" = [])),
    request_body = CreateBody,
    responses((status = 201, body = crate::schemas::Audience), (status = 400, body = crate::ErrorBody), (status = 403, body = crate::ErrorBody)))]
pub(crate) async fn create(
    State(state): State<AppState>,
    caller: Caller,
    body: JsonBody<CreateBody>,
) -> Result<(StatusCode, Json<serde_json::Value>), ApiError> {
    caller.require(Permission::BuildAudiences)?;
    let body = body.parse()?;
    let query = query_of(body.query, body.condition)?;
    let access = caller.access(Some(body.purpose.clone()));
    let engine = state.engine.clone();
    let (view, ticket) =
        blocking(move || engine.create_audience(&body.name, &body.purpose, &query, &access))
            .await?;
    crate::routes::durable(ticket).await?;
    Ok((StatusCode::CREATED, as_json(view)?))
}

/// The saved audiences: definitions only (sizes are `GET /v1/audiences/{id}`, which counts
/// and is audited).
#[utoipa::path(get, operation_id = "list_audiences", path = "/v1/audiences", tag = "audiences", security(("bearer" = [])),
    responses((status = 200, body = crate::schemas::AudienceList), (status = 401, body = crate::ErrorBody), (status = 403, body = crate::ErrorBody)))]
pub(crate) async fn list(
    State(state): State<AppState>,
    caller: Caller,
) -> Result<Json<serde_json::Value>, ApiError> {
    caller.require(Permission::CountAudiences)?;
    let engine = state.engine.clone();
    let audiences = blocking(move || engine.saved_audiences()).await?;
    let Json(audiences) = as_json(audiences)?;
    Ok(Json(serde_json::json!({ "audiences": audiences })))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct BreakdownBody {
    query: Option<String>,
    #[schema(value_type = Option<Object>)]
    condition: Option<Condition>,
    purpose: String,
    /// tier, lifecycle, channel, city, region, rfm (default: all).
    #[serde(default)]
    dimensions: Vec<String>,
}

/// An audience's members the policies allow, counted per tier, lifecycle stage, channel,
/// city, region and on the RFM grid, for charts; counts below the minimum audience size are
/// withheld (`null`) for every caller.
#[utoipa::path(post, operation_id = "audience_breakdown", path = "/v1/audiences/breakdown", tag = "audiences", security(("bearer" = [])),
    request_body = BreakdownBody,
    responses((status = 200, body = crate::schemas::Breakdown), (status = 400, body = crate::ErrorBody), (status = 403, body = crate::ErrorBody)))]
pub(crate) async fn breakdown(
    State(state): State<AppState>,
    caller: Caller,
    body: JsonBody<BreakdownBody>,
) -> Result<Json<serde_json::Value>, ApiError> {
    caller.require(Permission::CountAudiences)?;
    let body = body.parse()?;
    let query = query_of(body.query, body.condition)?;
    let dimensions = if body.dimensions.is_empty() {
        cdp_engine::read::breakdown::DIMENSIONS
            .iter()
            .map(|d| d.to_string())
            .collect()
    } else {
        body.dimensions
    };
    let access = caller.access(Some(body.purpose.clone()));
    let engine = state.engine.clone();
    let purpose = body.purpose;
    as_json(
        blocking(move || engine.audience_breakdown(&query, &purpose, &dimensions, &access)).await?,
    )
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct UpdateBody {
    name: Option<String>,
    /// A new purpose: the caller must be allowed it, and membership is filtered by it.
    purpose: Option<String>,
    /// A new definition, text form (or `condition`, not both).
    query: Option<String>,
    #[schema(value_type = Option<Object>)]
    condition: Option<Condition>,
}

/// Renames a saved audience, or changes its definition or purpose (checked as at creation;
/// audited, naming the fields changed); answers it with its size now. Exports made before keep
/// the hash of the definition they used.
#[utoipa::path(patch, operation_id = "update_audience", path = "/v1/audiences/{id}", tag = "audiences", security(("bearer" = [])),
    params(("id" = String, Path)), request_body = UpdateBody,
    responses((status = 200, body = crate::schemas::Audience), (status = 400, body = crate::ErrorBody),
        (status = 403, body = crate::ErrorBody), (status = 404, body = crate::ErrorBody)))]
pub(crate) async fn update(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    body: JsonBody<UpdateBody>,
) -> Result<Json<serde_json::Value>, ApiError> {
    caller.require(Permission::BuildAudiences)?;
    let body = body.parse()?;
    let query = match (body.query, body.condition) {
        (None, None) => None,
        (query, condition) => Some(query_of(query, condition)?),
    };
    let access = caller.access(body.purpose.clone());
    let patch = AudiencePatch {
        name: body.name,
        purpose: body.purpose,
        query,
    };
    let engine = state.engine.clone();
    let k = engine.min_audience_size();
    let (view, ticket) = blocking(move || engine.update_audience(&id, patch, &access)).await?;
    crate::routes::durable(ticket).await?;
    let Json(mut view) = as_json(view)?;
    if !Permission::ReadProfiles.granted_to(&caller.0.roles) {
        suppress_small_counts(&mut view["size"], k);
    }
    Ok(Json(view))
}

/// Deletes a saved audience (audited).
#[utoipa::path(delete, operation_id = "delete_audience", path = "/v1/audiences/{id}", tag = "audiences", security(("bearer" = [])),
    params(("id" = String, Path)),
    responses((status = 204), (status = 403, body = crate::ErrorBody), (status = 404, body = crate::ErrorBody)))]
pub(crate) async fn delete(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    caller.require(Permission::BuildAudiences)?;
    let access = caller.access(None);
    let engine = state.engine.clone();
    let ticket = blocking(move || engine.delete_audience(&id, &access)).await?;
    crate::routes::durable(ticket).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// An audience: its definition and its size now.
#[utoipa::path(get, operation_id = "get_audience", path = "/v1/audiences/{id}", tag = "audiences", security(("bearer" = [])),
    params(("id" = String, Path)),
    responses((status = 200, body = crate::schemas::Audience), (status = 404, body = crate::ErrorBody)))]
pub(crate) async fn get(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<serde_json::Value>, ApiError> {
    caller.require(Permission::CountAudiences)?;
    let access = caller.access(None);
    let engine = state.engine.clone();
    let k = engine.min_audience_size();
    let Json(mut view) = as_json(blocking(move || engine.audience(&id, &access)).await?)?;
    if !Permission::ReadProfiles.granted_to(&caller.0.roles) {
        suppress_small_counts(&mut view["size"], k);
    }
    Ok(Json(view))
}

#[derive(Debug, Deserialize, IntoParams)]
pub(crate) struct MembersQuery {
    /// Default: the audience's purpose.
    purpose: Option<String>,
    /// `next_after` of the previous page.
    after: Option<String>,
    /// Page size (default 100, at most 1000).
    limit: Option<usize>,
}

/// Members the policies allow for the purpose (pseudonymous ids), paged.
#[utoipa::path(get, operation_id = "list_audience_members", path = "/v1/audiences/{id}/members", tag = "audiences", security(("bearer" = [])),
    params(("id" = String, Path), MembersQuery),
    responses((status = 200, body = crate::schemas::MembersPage), (status = 403, body = crate::ErrorBody), (status = 404, body = crate::ErrorBody)))]
pub(crate) async fn members(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    Query(query): Query<MembersQuery>,
) -> Result<Json<serde_json::Value>, ApiError> {
    caller.require(Permission::BuildAudiences)?;
    let access = caller.access(query.purpose.clone());
    let engine = state.engine.clone();
    as_json(
        blocking(move || {
            engine.audience_members(
                &id,
                query.purpose.as_deref(),
                query.after.as_deref(),
                query.limit.unwrap_or(100),
                &access,
            )
        })
        .await?,
    )
}
