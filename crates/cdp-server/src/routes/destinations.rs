//! Destinations and scheduled exports: `POST|GET /v1/destinations`,
//! `GET|DELETE /v1/destinations/{id}`, `POST /v1/destinations/{id}/rotate`,
//! `POST /v1/destinations/{id}/test`,
//! `GET /v1/destinations/{id}/dead-letters`, `POST /v1/destinations/{id}/dead-letters/retry`,
//! `GET /v1/exports/{id}/delivery`, `POST|GET /v1/schedules`,
//! `GET|PATCH|DELETE /v1/schedules/{id}`, `POST /v1/schedules/{id}/run`.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use cdp_engine::{DestinationInput, DestinationKind, ExportFormat, ScheduleInput, SchedulePatch};
use serde::Deserialize;
use utoipa::ToSchema;

use crate::auth::Caller;
use crate::routes::body::JsonBody;
use crate::routes::profiles::{as_json, blocking};
use crate::{ApiError, AppState, ErrorCode, Permission};

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct DestinationBody {
    name: String,
    /// The recipient (`rcp_...`) whose endpoint this is: exports to that recipient only.
    recipient: String,
    /// webhook or sftp.
    #[schema(value_type = String)]
    kind: DestinationKind,
    /// webhook: an https:// address.
    url: Option<String>,
    /// webhook: PEM certificate(s) of a private CA that signs the receiver's certificate.
    ca_certificate: Option<String>,
    /// webhook: rows per request (default 500, 1-10000).
    batch_size: Option<u32>,
    /// Tries of a batch before it is a dead letter (default 8, 1-20).
    max_attempts: Option<u32>,
    /// The first retry's delay in milliseconds, doubled for each later one (default 30000).
    retry_base_ms: Option<u64>,
    /// sftp: the server's host name or address.
    host: Option<String>,
    /// sftp: default 22.
    port: Option<u16>,
    /// sftp: the user the platform logs in as.
    username: Option<String>,
    /// sftp: an absolute directory the files go to.
    directory: Option<String>,
    /// sftp: the server's host key as `ssh-keyscan` prints it (pinned).
    host_key: Option<String>,
}

/// Registers a destination of a recipient. A webhook's answer carries its signing `secret`,
/// shown this once; an sftp destination's carries the `public_key` to install on the server.
#[utoipa::path(post, path = "/v1/destinations", tag = "exports", security(("bearer" = [])),
    request_body = DestinationBody,
    responses((status = 201, body = crate::schemas::Destination), (status = 400, body = crate::ErrorBody),
        (status = 403, body = crate::ErrorBody), (status = 404, body = crate::ErrorBody),
        (status = 409, description = "The recipient is retired.", body = crate::ErrorBody)))]
pub(crate) async fn create_destination(
    State(state): State<AppState>,
    caller: Caller,
    body: JsonBody<DestinationBody>,
) -> Result<(StatusCode, Json<serde_json::Value>), ApiError> {
    caller.require(Permission::ManageRecipients)?;
    let body = body.parse()?;
    let engine = state.engine.clone();
    let actor = caller.0.sub.clone();
    let (view, ticket) = blocking(move || {
        engine.create_destination(
            DestinationInput {
                name: body.name,
                recipient: body.recipient,
                kind: Some(body.kind),
                url: body.url,
                ca_certificate: body.ca_certificate,
                batch_size: body.batch_size,
                max_attempts: body.max_attempts,
                retry_base_ms: body.retry_base_ms,
                host: body.host,
                port: body.port,
                username: body.username,
                directory: body.directory,
                host_key: body.host_key,
            },
            &actor,
        )
    })
    .await?;
    crate::routes::durable(ticket).await?;
    Ok((StatusCode::CREATED, as_json(view)?))
}

/// The destinations (never their secrets).
#[utoipa::path(get, path = "/v1/destinations", tag = "exports", security(("bearer" = [])),
    responses((status = 200, body = crate::schemas::DestinationList), (status = 403, body = crate::ErrorBody)))]
pub(crate) async fn list_destinations(
    State(state): State<AppState>,
    caller: Caller,
) -> Result<Json<serde_json::Value>, ApiError> {
    caller.require(Permission::ListRecipients)?;
    let engine = state.engine.clone();
    let destinations = blocking(move || engine.destinations()).await?;
    as_json(serde_json::json!({ "destinations": destinations }))
}

/// A destination.
#[utoipa::path(get, path = "/v1/destinations/{id}", tag = "exports", security(("bearer" = [])),
    params(("id" = String, Path, description = "dst_ and 16 hex digits")),
    responses((status = 200, body = crate::schemas::Destination), (status = 400, body = crate::ErrorBody),
        (status = 403, body = crate::ErrorBody), (status = 404, body = crate::ErrorBody)))]
pub(crate) async fn get_destination(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<serde_json::Value>, ApiError> {
    caller.require(Permission::ListRecipients)?;
    let engine = state.engine.clone();
    let lookup = id.clone();
    let view = blocking(move || engine.destination(&lookup))
        .await?
        .ok_or_else(|| ApiError::new(ErrorCode::NotFound, format!("destination {id} not found")))?;
    as_json(view)
}

/// Retires a destination: nothing more is delivered to it, its secret or key is destroyed.
#[utoipa::path(delete, path = "/v1/destinations/{id}", tag = "exports", security(("bearer" = [])),
    params(("id" = String, Path)),
    responses((status = 200, body = crate::schemas::Destination), (status = 400, body = crate::ErrorBody),
        (status = 403, body = crate::ErrorBody), (status = 404, body = crate::ErrorBody),
        (status = 409, description = "Already retired.", body = crate::ErrorBody)))]
pub(crate) async fn retire_destination(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<serde_json::Value>, ApiError> {
    caller.require(Permission::ManageRecipients)?;
    let engine = state.engine.clone();
    let actor = caller.0.sub.clone();
    let (view, ticket) = blocking(move || engine.retire_destination(&id, &actor)).await?;
    crate::routes::durable(ticket).await?;
    as_json(view)
}

/// A new signing secret for a webhook, shown once; the old one stops signing at once.
#[utoipa::path(post, path = "/v1/destinations/{id}/rotate", tag = "exports", security(("bearer" = [])),
    params(("id" = String, Path)),
    responses((status = 200, body = crate::schemas::Destination), (status = 400, body = crate::ErrorBody),
        (status = 403, body = crate::ErrorBody), (status = 404, body = crate::ErrorBody),
        (status = 409, description = "Retired, or not a webhook.", body = crate::ErrorBody)))]
pub(crate) async fn rotate_destination(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<serde_json::Value>, ApiError> {
    caller.require(Permission::ManageRecipients)?;
    let engine = state.engine.clone();
    let actor = caller.0.sub.clone();
    let (view, ticket) = blocking(move || engine.rotate_destination_secret(&id, &actor)).await?;
    crate::routes::durable(ticket).await?;
    as_json(view)
}

/// Tries a destination without delivering anything: a webhook gets a signed
/// `{"type": "ping"}`, an SFTP server is logged in to and its directory looked at. `ok: false`
/// with the error when it does not work (the test itself succeeded: 200).
#[utoipa::path(post, path = "/v1/destinations/{id}/test", tag = "exports", security(("bearer" = [])),
    params(("id" = String, Path)),
    responses((status = 200, body = crate::schemas::DestinationTest), (status = 400, body = crate::ErrorBody),
        (status = 403, body = crate::ErrorBody), (status = 404, body = crate::ErrorBody),
        (status = 409, description = "The destination is retired.", body = crate::ErrorBody)))]
pub(crate) async fn test_destination(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<serde_json::Value>, ApiError> {
    caller.require(Permission::ManageRecipients)?;
    let engine = state.engine.clone();
    let actor = caller.0.sub.clone();
    as_json(blocking(move || engine.test_destination(&id, &actor)).await?)
}

/// The batches a destination did not take: tried to the limit or refused by the receiver.
#[utoipa::path(get, path = "/v1/destinations/{id}/dead-letters", tag = "exports", security(("bearer" = [])),
    params(("id" = String, Path)),
    responses((status = 200, body = crate::schemas::DeadLetterList), (status = 400, body = crate::ErrorBody),
        (status = 403, body = crate::ErrorBody), (status = 404, body = crate::ErrorBody)))]
pub(crate) async fn dead_letters(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<serde_json::Value>, ApiError> {
    caller.require(Permission::ListRecipients)?;
    let engine = state.engine.clone();
    let letters = blocking(move || engine.dead_letters(&id)).await?;
    as_json(serde_json::json!({ "dead_letters": letters }))
}

/// Puts a destination's dead letters back in the queue with fresh tries (those whose export
/// file still exists).
#[utoipa::path(post, path = "/v1/destinations/{id}/dead-letters/retry", tag = "exports", security(("bearer" = [])),
    params(("id" = String, Path)),
    responses((status = 200, body = crate::schemas::Requeued), (status = 400, body = crate::ErrorBody),
        (status = 403, body = crate::ErrorBody), (status = 404, body = crate::ErrorBody),
        (status = 409, description = "The destination is retired.", body = crate::ErrorBody)))]
pub(crate) async fn retry_dead_letters(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<serde_json::Value>, ApiError> {
    caller.require(Permission::ManageRecipients)?;
    let engine = state.engine.clone();
    let actor = caller.0.sub.clone();
    let (requeued, ticket) = blocking(move || engine.retry_dead_letters(&id, &actor)).await?;
    crate::routes::durable(ticket).await?;
    as_json(serde_json::json!({ "requeued_batches": requeued }))
}

/// The delivery of an export to its destination: its state and every batch's.
#[utoipa::path(get, path = "/v1/exports/{id}/delivery", tag = "exports", security(("bearer" = [])),
    params(("id" = String, Path)),
    responses((status = 200, body = crate::schemas::Delivery), (status = 400, body = crate::ErrorBody),
        (status = 403, body = crate::ErrorBody),
        (status = 404, description = "No such export, or it has no destination.", body = crate::ErrorBody)))]
pub(crate) async fn export_delivery(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<serde_json::Value>, ApiError> {
    caller.require(Permission::ReadExports)?;
    let engine = state.engine.clone();
    let lookup = id.clone();
    let delivery = blocking(move || engine.delivery(&lookup))
        .await?
        .ok_or_else(|| {
            ApiError::new(
                ErrorCode::NotFound,
                format!("export {id} has no delivery (no destination, or not finished yet)"),
            )
        })?;
    as_json(delivery)
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct ScheduleBody {
    name: String,
    /// A saved audience id.
    audience: String,
    purpose: String,
    /// A recipient id.
    recipient: String,
    /// The fields of each row; must include pseudonym (removals name people by it).
    fields: Vec<String>,
    /// csv (the default) or jsonl.
    #[serde(default = "csv")]
    #[schema(value_type = String, default = "csv")]
    format: ExportFormat,
    /// A destination (`dst_...`) of the recipient that receives every run.
    destination: Option<String>,
    /// Five cron fields (minute hour day-of-month month day-of-week) or @hourly, @daily,
    /// @weekly, @monthly.
    cron: String,
    /// The offset the schedule is read at: +08:00 (default +00:00).
    utc_offset: Option<String>,
}

fn csv() -> ExportFormat {
    ExportFormat::Csv
}

/// Makes a scheduled export: every run sends the changes since the previous run.
#[utoipa::path(post, path = "/v1/schedules", tag = "exports", security(("bearer" = [])),
    request_body = ScheduleBody,
    responses((status = 201, body = crate::schemas::Schedule), (status = 400, body = crate::ErrorBody),
        (status = 403, body = crate::ErrorBody), (status = 404, body = crate::ErrorBody),
        (status = 409, body = crate::ErrorBody)))]
pub(crate) async fn create_schedule(
    State(state): State<AppState>,
    caller: Caller,
    body: JsonBody<ScheduleBody>,
) -> Result<(StatusCode, Json<serde_json::Value>), ApiError> {
    caller.require(Permission::Export)?;
    let body = body.parse()?;
    let access = caller.access(Some(body.purpose.clone()));
    let engine = state.engine.clone();
    let (view, ticket) = blocking(move || {
        engine.create_schedule(
            ScheduleInput {
                name: body.name,
                audience: body.audience,
                purpose: body.purpose,
                recipient: body.recipient,
                fields: body.fields,
                format: body.format,
                destination: body.destination,
                cron: body.cron,
                utc_offset: body.utc_offset,
            },
            &access,
        )
    })
    .await?;
    crate::routes::durable(ticket).await?;
    Ok((StatusCode::CREATED, as_json(view)?))
}

/// The scheduled exports, each with its runs.
#[utoipa::path(get, path = "/v1/schedules", tag = "exports", security(("bearer" = [])),
    responses((status = 200, body = crate::schemas::ScheduleList), (status = 403, body = crate::ErrorBody)))]
pub(crate) async fn list_schedules(
    State(state): State<AppState>,
    caller: Caller,
) -> Result<Json<serde_json::Value>, ApiError> {
    caller.require(Permission::ReadExports)?;
    let engine = state.engine.clone();
    let schedules = blocking(move || engine.schedules()).await?;
    as_json(serde_json::json!({ "schedules": schedules }))
}

/// A scheduled export and its history: every run's status, people added and removed, and
/// delivery.
#[utoipa::path(get, path = "/v1/schedules/{id}", tag = "exports", security(("bearer" = [])),
    params(("id" = String, Path, description = "sch_ and 16 hex digits")),
    responses((status = 200, body = crate::schemas::Schedule), (status = 400, body = crate::ErrorBody),
        (status = 403, body = crate::ErrorBody), (status = 404, body = crate::ErrorBody)))]
pub(crate) async fn get_schedule(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<serde_json::Value>, ApiError> {
    caller.require(Permission::ReadExports)?;
    let engine = state.engine.clone();
    as_json(blocking(move || engine.schedule(&id)).await?)
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct SchedulePatchBody {
    name: Option<String>,
    cron: Option<String>,
    utc_offset: Option<String>,
    /// true pauses it, false resumes it.
    paused: Option<bool>,
}

/// Renames, reschedules, pauses or resumes a scheduled export (audited).
#[utoipa::path(patch, path = "/v1/schedules/{id}", tag = "exports", security(("bearer" = [])),
    params(("id" = String, Path)), request_body = SchedulePatchBody,
    responses((status = 200, body = crate::schemas::Schedule), (status = 400, body = crate::ErrorBody),
        (status = 403, body = crate::ErrorBody), (status = 404, body = crate::ErrorBody)))]
pub(crate) async fn update_schedule(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    body: JsonBody<SchedulePatchBody>,
) -> Result<Json<serde_json::Value>, ApiError> {
    caller.require(Permission::Export)?;
    let body = body.parse()?;
    let engine = state.engine.clone();
    let actor = caller.0.sub.clone();
    let (view, ticket) = blocking(move || {
        engine.update_schedule(
            &id,
            SchedulePatch {
                name: body.name,
                cron: body.cron,
                utc_offset: body.utc_offset,
                paused: body.paused,
            },
            &actor,
        )
    })
    .await?;
    crate::routes::durable(ticket).await?;
    as_json(view)
}

/// Deletes a scheduled export: no more runs (its runs stay among the exports).
#[utoipa::path(delete, path = "/v1/schedules/{id}", tag = "exports", security(("bearer" = [])),
    params(("id" = String, Path)),
    responses((status = 204), (status = 400, body = crate::ErrorBody),
        (status = 403, body = crate::ErrorBody), (status = 404, body = crate::ErrorBody)))]
pub(crate) async fn delete_schedule(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    caller.require(Permission::Export)?;
    let engine = state.engine.clone();
    let actor = caller.0.sub.clone();
    let ticket = blocking(move || engine.delete_schedule(&id, &actor)).await?;
    crate::routes::durable(ticket).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Starts a run now (the schedule's next run stays as it was): 202 with the run's export job.
#[utoipa::path(post, path = "/v1/schedules/{id}/run", tag = "exports", security(("bearer" = [])),
    params(("id" = String, Path)),
    responses((status = 202, body = crate::schemas::Export), (status = 400, body = crate::ErrorBody),
        (status = 403, body = crate::ErrorBody), (status = 404, body = crate::ErrorBody),
        (status = 409, body = crate::ErrorBody)))]
pub(crate) async fn run_schedule(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<(StatusCode, Json<serde_json::Value>), ApiError> {
    caller.require(Permission::Export)?;
    let engine = state.engine.clone();
    let run = blocking(move || engine.run_schedule_now(&id)).await?;
    Ok((StatusCode::ACCEPTED, as_json(run)?))
}
