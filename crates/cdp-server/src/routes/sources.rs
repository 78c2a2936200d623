//! Sources and their write keys: `POST/GET /v1/sources`, `GET/PATCH/DELETE /v1/sources/{id}`,
//! `POST /v1/sources/{id}/rotate`, `GET /v1/sources/{id}/activity`.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use cdp_core::Channel;
use cdp_engine::records::SourceRecord;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::auth::Caller;
use crate::routes::body::JsonBody;
use crate::routes::engine_error;
use crate::{ApiError, AppState, ErrorCode, Permission};

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct CreateSource {
    /// Unique name.
    name: String,
    /// web, ios, android, mini_program, crm, pos, customer_service, social, email or sms.
    channel: String,
    /// ISO 3166 alpha-2 region for phone numbers without a country code (CN, DE...).
    default_region: Option<String>,
    /// Web origins (`https://shop.example.cn`) whose pages may send with the write key
    /// (Segment's browser library, `sendBeacon`); none by default.
    #[serde(default)]
    allowed_origins: Vec<String>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct UpdateSource {
    /// Replaces the list of web origins whose pages may send with the write key.
    allowed_origins: Vec<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct SourceAnswer {
    id: String,
    name: String,
    channel: String,
    default_region: Option<String>,
    created_at: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    key_rotated_at: Option<String>,
    /// Revoked sources ingest nothing.
    #[serde(skip_serializing_if = "Option::is_none")]
    revoked_at: Option<String>,
    /// Web origins whose pages may send with the write key.
    allowed_origins: Vec<String>,
    /// Shown only once, at creation or rotation. Stored hashed.
    #[serde(skip_serializing_if = "Option::is_none")]
    write_key: Option<String>,
}

fn answer(source: SourceRecord, write_key: Option<String>) -> SourceAnswer {
    let format = |at: time::OffsetDateTime| {
        at.format(&time::format_description::well_known::Rfc3339)
            .unwrap_or_default()
    };
    SourceAnswer {
        key_rotated_at: source.key_rotated_at.map(format),
        revoked_at: source.revoked_at.map(format),
        id: source.id,
        name: source.name,
        channel: source.channel.as_str().into(),
        default_region: source.default_region,
        allowed_origins: source.allowed_origins,
        created_at: source
            .created_at
            .format(&time::format_description::well_known::Rfc3339)
            .unwrap_or_default(),
        write_key,
    }
}

/// Creates an ingestion source and shows its write key once.
#[utoipa::path(post, path = "/v1/sources", tag = "sources", request_body = CreateSource,
    security(("bearer" = [])),
    responses(
        (status = 201, description = "Created; the write key is in the answer and nowhere else.", body = SourceAnswer),
        (status = 400, body = crate::ErrorBody), (status = 401, body = crate::ErrorBody),
        (status = 403, body = crate::ErrorBody), (status = 409, description = "The name is taken.", body = crate::ErrorBody),
    ))]
pub(crate) async fn create_source(
    State(state): State<AppState>,
    caller: Caller,
    body: JsonBody<CreateSource>,
) -> Result<(StatusCode, Json<SourceAnswer>), ApiError> {
    caller.require(Permission::ManageSources)?;
    let body = body.parse()?;
    let channel = Channel::parse(&body.channel).ok_or_else(|| {
        ApiError::new(
            ErrorCode::BadRequest,
            "channel must be one of web, ios, android, mini_program, crm, pos, customer_service, social, email, sms",
        )
    })?;
    let engine = state.engine.clone();
    let (source, write_key, ticket) = tokio::task::spawn_blocking(move || {
        engine.create_source_for_origins(
            &body.name,
            channel,
            body.default_region.as_deref(),
            &body.allowed_origins,
        )
    })
    .await
    .map_err(|_| ApiError::from_code(ErrorCode::Internal))?
    .map_err(engine_error)?;
    ticket.durable().await.map_err(|e| engine_error(e.into()))?;
    tracing::info!(source = %source.id, channel = %source.channel, subject = %caller.0.sub, "source created");
    Ok((StatusCode::CREATED, Json(answer(source, Some(write_key)))))
}

/// Lists sources (never their write keys).
#[utoipa::path(get, path = "/v1/sources", tag = "sources", security(("bearer" = [])),
    responses((status = 200, body = Vec<SourceAnswer>), (status = 401, body = crate::ErrorBody), (status = 403, body = crate::ErrorBody)))]
pub(crate) async fn list_sources(
    State(state): State<AppState>,
    caller: Caller,
) -> Result<Json<Vec<SourceAnswer>>, ApiError> {
    caller.require(Permission::ManageSources)?;
    let sources = state.engine.sources().map_err(engine_error)?;
    Ok(Json(sources.into_iter().map(|s| answer(s, None)).collect()))
}

/// A source (never its write key).
#[utoipa::path(get, path = "/v1/sources/{id}", tag = "sources", security(("bearer" = [])),
    params(("id" = String, Path)),
    responses((status = 200, body = SourceAnswer), (status = 401, body = crate::ErrorBody),
        (status = 403, body = crate::ErrorBody), (status = 404, body = crate::ErrorBody)))]
pub(crate) async fn get_source(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<SourceAnswer>, ApiError> {
    caller.require(Permission::ManageSources)?;
    let engine = state.engine.clone();
    let lookup = id.clone();
    let source = crate::routes::profiles::blocking(move || engine.source(&lookup))
        .await?
        .ok_or_else(|| ApiError::new(ErrorCode::NotFound, format!("source {id} not found")))?;
    Ok(Json(answer(source, None)))
}

/// Replaces a source's write key: the old one stops working at once; the new one is in the
/// answer and nowhere else.
#[utoipa::path(post, path = "/v1/sources/{id}/rotate", tag = "sources", security(("bearer" = [])),
    params(("id" = String, Path)),
    responses((status = 200, body = SourceAnswer), (status = 403, body = crate::ErrorBody),
        (status = 404, body = crate::ErrorBody), (status = 409, description = "The source is revoked.", body = crate::ErrorBody)))]
pub(crate) async fn rotate_source(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<SourceAnswer>, ApiError> {
    caller.require(Permission::ManageSources)?;
    let engine = state.engine.clone();
    let (source, write_key, ticket) =
        crate::routes::profiles::blocking(move || engine.rotate_source_key(&id)).await?;
    ticket.durable().await.map_err(|e| engine_error(e.into()))?;
    tracing::info!(source = %source.id, subject = %caller.0.sub, "source write key rotated");
    Ok(Json(answer(source, Some(write_key))))
}

/// Replaces the web origins whose pages may send with the source's write key (from the next
/// request on).
#[utoipa::path(patch, path = "/v1/sources/{id}", tag = "sources", security(("bearer" = [])),
    params(("id" = String, Path)), request_body = UpdateSource,
    responses((status = 200, body = SourceAnswer), (status = 400, body = crate::ErrorBody),
        (status = 403, body = crate::ErrorBody), (status = 404, body = crate::ErrorBody),
        (status = 409, description = "The source is revoked.", body = crate::ErrorBody)))]
pub(crate) async fn update_source(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    body: JsonBody<UpdateSource>,
) -> Result<Json<SourceAnswer>, ApiError> {
    caller.require(Permission::ManageSources)?;
    let body = body.parse()?;
    let engine = state.engine.clone();
    let (source, ticket) = crate::routes::profiles::blocking(move || {
        engine.set_source_origins(&id, &body.allowed_origins)
    })
    .await?;
    ticket.durable().await.map_err(|e| engine_error(e.into()))?;
    tracing::info!(source = %source.id, origins = source.allowed_origins.len(), subject = %caller.0.sub, "source origins changed");
    Ok(Json(answer(source, None)))
}

/// Revokes a source: its write key stops working at once, for good.
#[utoipa::path(delete, path = "/v1/sources/{id}", tag = "sources", security(("bearer" = [])),
    params(("id" = String, Path)),
    responses((status = 200, body = SourceAnswer), (status = 403, body = crate::ErrorBody),
        (status = 404, body = crate::ErrorBody), (status = 409, body = crate::ErrorBody)))]
pub(crate) async fn revoke_source(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<SourceAnswer>, ApiError> {
    caller.require(Permission::ManageSources)?;
    let engine = state.engine.clone();
    let (source, ticket) =
        crate::routes::profiles::blocking(move || engine.revoke_source(&id)).await?;
    ticket.durable().await.map_err(|e| engine_error(e.into()))?;
    tracing::info!(source = %source.id, subject = %caller.0.sub, "source revoked");
    Ok(Json(answer(source, None)))
}

/// The live event debugger: the types and names of the source's latest accepted messages
/// (never their values) and its messages per minute, as this node saw them.
#[utoipa::path(get, path = "/v1/sources/{id}/activity", tag = "sources", security(("bearer" = [])),
    params(("id" = String, Path)),
    responses((status = 200, body = crate::schemas::SourceActivity), (status = 403, body = crate::ErrorBody), (status = 404, body = crate::ErrorBody)))]
pub(crate) async fn source_activity(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<serde_json::Value>, ApiError> {
    caller.require(Permission::ManageSources)?;
    let engine = state.engine.clone();
    let lookup = id.clone();
    crate::routes::profiles::blocking(move || engine.source(&lookup))
        .await?
        .ok_or_else(|| ApiError::new(ErrorCode::NotFound, format!("source {id} not found")))?;
    let view = state.engine.source_activity(&id);
    Ok(Json(serde_json::to_value(view).unwrap_or_default()))
}
