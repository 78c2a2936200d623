//! Recipients, the suppression list and exports: `POST|GET /v1/recipients`,
//! `GET|PATCH|DELETE /v1/recipients/{id}`, `POST|GET /v1/suppressions`,
//! `POST /v1/suppressions/remove`, `DELETE /v1/suppressions/{id}`, `POST|GET /v1/exports`,
//! `GET|DELETE /v1/exports/{id}`, `GET /v1/exports/{id}/file`, `GET /v1/keys/export`.

use axum::Json;
use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::http::{StatusCode, header};
use axum::response::Response;
use cdp_core::IdentifierType;
use cdp_engine::{ExportFormat, ExportRequest, RecipientInput, RecipientPatch};
use cdp_policy::RecipientRole;
use serde::Deserialize;
use utoipa::{IntoParams, ToSchema};

use crate::auth::Caller;
use crate::routes::body::JsonBody;
use crate::routes::profiles::{as_json, blocking};
use crate::{ApiError, AppState, ErrorCode, Permission};

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct RecipientBody {
    name: String,
    contact: String,
    /// processor or controller.
    #[schema(value_type = String)]
    role: RecipientRole,
    /// Where the recipient processes the data: CN, EU, DE, US...
    region: String,
    /// none, standard_contract, assessment, certification, adequacy, scc.
    transfer_mechanism: String,
    allowed_purposes: Vec<String>,
}

/// Registers a recipient of exports.
#[utoipa::path(post, path = "/v1/recipients", tag = "exports", security(("bearer" = [])),
    request_body = RecipientBody,
    responses((status = 201, body = crate::schemas::Recipient), (status = 400, body = crate::ErrorBody), (status = 403, body = crate::ErrorBody)))]
pub(crate) async fn create_recipient(
    State(state): State<AppState>,
    caller: Caller,
    body: JsonBody<RecipientBody>,
) -> Result<(StatusCode, Json<serde_json::Value>), ApiError> {
    caller.require(Permission::ManageRecipients)?;
    let body = body.parse()?;
    let engine = state.engine.clone();
    let actor = caller.0.sub.clone();
    let (record, ticket) = blocking(move || {
        engine.create_recipient(
            RecipientInput {
                name: body.name,
                contact: body.contact,
                role: body.role,
                region: body.region,
                transfer_mechanism: body.transfer_mechanism,
                allowed_purposes: body.allowed_purposes,
            },
            &actor,
        )
    })
    .await?;
    crate::routes::durable(ticket).await?;
    Ok((StatusCode::CREATED, as_json(record)?))
}

/// The registered recipients.
#[utoipa::path(get, path = "/v1/recipients", tag = "exports", security(("bearer" = [])),
    responses((status = 200, body = crate::schemas::RecipientList), (status = 403, body = crate::ErrorBody)))]
pub(crate) async fn list_recipients(
    State(state): State<AppState>,
    caller: Caller,
) -> Result<Json<serde_json::Value>, ApiError> {
    caller.require(Permission::ListRecipients)?;
    let engine = state.engine.clone();
    let recipients = blocking(move || engine.recipients()).await?;
    as_json(serde_json::json!({ "recipients": recipients }))
}

/// A recipient.
#[utoipa::path(get, path = "/v1/recipients/{id}", tag = "exports", security(("bearer" = [])),
    params(("id" = String, Path, description = "rcp_ and 16 hex digits")),
    responses((status = 200, body = crate::schemas::Recipient), (status = 400, body = crate::ErrorBody),
        (status = 403, body = crate::ErrorBody), (status = 404, body = crate::ErrorBody)))]
pub(crate) async fn get_recipient(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<serde_json::Value>, ApiError> {
    caller.require(Permission::ListRecipients)?;
    let engine = state.engine.clone();
    let lookup = id.clone();
    let record = blocking(move || engine.recipient(&lookup))
        .await?
        .ok_or_else(|| ApiError::new(ErrorCode::NotFound, format!("recipient {id} not found")))?;
    as_json(record)
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct RecipientPatchBody {
    name: Option<String>,
    contact: Option<String>,
    region: Option<String>,
    /// none, standard_contract, assessment, certification, adequacy, scc.
    transfer_mechanism: Option<String>,
    /// Replaces the list.
    allowed_purposes: Option<Vec<String>>,
}

/// Changes a recipient's details (audited, naming the fields changed). Its role cannot change:
/// a processor that becomes a controller is a new recipient.
#[utoipa::path(patch, path = "/v1/recipients/{id}", tag = "exports", security(("bearer" = [])),
    params(("id" = String, Path)), request_body = RecipientPatchBody,
    responses((status = 200, body = crate::schemas::Recipient), (status = 400, body = crate::ErrorBody),
        (status = 403, body = crate::ErrorBody), (status = 404, body = crate::ErrorBody),
        (status = 409, description = "The recipient is retired.", body = crate::ErrorBody)))]
pub(crate) async fn update_recipient(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    body: JsonBody<RecipientPatchBody>,
) -> Result<Json<serde_json::Value>, ApiError> {
    caller.require(Permission::ManageRecipients)?;
    let body = body.parse()?;
    let engine = state.engine.clone();
    let actor = caller.0.sub.clone();
    let (record, ticket) = blocking(move || {
        engine.update_recipient(
            &id,
            RecipientPatch {
                name: body.name,
                contact: body.contact,
                region: body.region,
                transfer_mechanism: body.transfer_mechanism,
                allowed_purposes: body.allowed_purposes,
            },
            &actor,
        )
    })
    .await?;
    crate::routes::durable(ticket).await?;
    as_json(record)
}

/// Retires a recipient: every later export to it is refused (409). It stays listed, and in
/// the record of processing, since what it already received remains disclosed.
#[utoipa::path(delete, path = "/v1/recipients/{id}", tag = "exports", security(("bearer" = [])),
    params(("id" = String, Path)),
    responses((status = 200, body = crate::schemas::Recipient), (status = 400, body = crate::ErrorBody),
        (status = 403, body = crate::ErrorBody), (status = 404, body = crate::ErrorBody),
        (status = 409, description = "Already retired.", body = crate::ErrorBody)))]
pub(crate) async fn retire_recipient(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<serde_json::Value>, ApiError> {
    caller.require(Permission::ManageRecipients)?;
    let engine = state.engine.clone();
    let actor = caller.0.sub.clone();
    let (record, ticket) = blocking(move || engine.retire_recipient(&id, &actor)).await?;
    crate::routes::durable(ticket).await?;
    as_json(record)
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct SuppressionBody {
    #[serde(rename = "type")]
    kind: String,
    value: String,
    region: Option<String>,
}

/// Adds an identifier to the suppression list: no export will include its person.
#[utoipa::path(post, path = "/v1/suppressions", tag = "exports", security(("bearer" = [])),
    request_body = SuppressionBody,
    responses((status = 204), (status = 400, body = crate::ErrorBody), (status = 403, body = crate::ErrorBody)))]
pub(crate) async fn suppress(
    State(state): State<AppState>,
    caller: Caller,
    body: JsonBody<SuppressionBody>,
) -> Result<StatusCode, ApiError> {
    caller.require(Permission::ManageRecipients)?;
    let body = body.parse()?;
    let kind = identifier_type(&body.kind)?;
    let engine = state.engine.clone();
    let actor = caller.0.sub.clone();
    let ticket =
        blocking(move || engine.suppress(&kind, &body.value, body.region.as_deref(), &actor))
            .await?;
    crate::routes::durable(ticket).await?;
    Ok(StatusCode::NO_CONTENT)
}

fn identifier_type(kind: &str) -> Result<IdentifierType, ApiError> {
    kind.parse()
        .map_err(|_| ApiError::new(ErrorCode::BadRequest, "type is not an identifier type"))
}

/// Takes an identifier off the suppression list, given as it was added: its people may be
/// exported again (audited).
#[utoipa::path(post, operation_id = "remove_suppression_by_value", path = "/v1/suppressions/remove", tag = "exports", security(("bearer" = [])),
    request_body = SuppressionBody,
    responses((status = 204), (status = 400, body = crate::ErrorBody), (status = 403, body = crate::ErrorBody),
        (status = 404, description = "Not on the list.", body = crate::ErrorBody)))]
pub(crate) async fn unsuppress(
    State(state): State<AppState>,
    caller: Caller,
    body: JsonBody<SuppressionBody>,
) -> Result<StatusCode, ApiError> {
    caller.require(Permission::ManageRecipients)?;
    let body = body.parse()?;
    let kind = identifier_type(&body.kind)?;
    let engine = state.engine.clone();
    let actor = caller.0.sub.clone();
    let ticket =
        blocking(move || engine.unsuppress(&kind, &body.value, body.region.as_deref(), &actor))
            .await?;
    crate::routes::durable(ticket).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Takes the entry listed as `id` off the suppression list (audited).
#[utoipa::path(delete, operation_id = "remove_suppression", path = "/v1/suppressions/{id}", tag = "exports", security(("bearer" = [])),
    params(("id" = String, Path, description = "sup_ and 16 hex digits")),
    responses((status = 204), (status = 400, body = crate::ErrorBody), (status = 403, body = crate::ErrorBody),
        (status = 404, body = crate::ErrorBody)))]
pub(crate) async fn remove_suppression(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    caller.require(Permission::ManageRecipients)?;
    let engine = state.engine.clone();
    let actor = caller.0.sub.clone();
    let ticket = blocking(move || engine.unsuppress_by_id(&id, &actor)).await?;
    crate::routes::durable(ticket).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Debug, Deserialize, IntoParams)]
pub(crate) struct SuppressionsQuery {
    /// `next_after` of the previous page.
    after: Option<String>,
    /// Page size (default 100, at most 1000).
    limit: Option<usize>,
}

/// The suppression list, paged: each entry's type and when and by whom it was added. The
/// values are not stored (only their blind indexes), so they cannot be listed.
#[utoipa::path(get, operation_id = "list_suppressions", path = "/v1/suppressions", tag = "exports", security(("bearer" = [])),
    params(SuppressionsQuery),
    responses((status = 200, body = crate::schemas::SuppressionPage), (status = 400, body = crate::ErrorBody), (status = 403, body = crate::ErrorBody)))]
pub(crate) async fn list_suppressions(
    State(state): State<AppState>,
    caller: Caller,
    Query(query): Query<SuppressionsQuery>,
) -> Result<Json<serde_json::Value>, ApiError> {
    caller.require(Permission::ManageRecipients)?;
    let engine = state.engine.clone();
    let (entries, next_after) =
        blocking(move || engine.suppressions(query.after.as_deref(), query.limit.unwrap_or(100)))
            .await?;
    as_json(serde_json::json!({ "suppressions": entries, "next_after": next_after }))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct ExportBody {
    /// A saved audience id.
    audience: String,
    purpose: String,
    /// A recipient id.
    recipient: String,
    /// pseudonym, email_sha256_google, phone_sha256_meta, identifiers.<type>, traits.<name>,
    /// age_band, region, city, tier, lifecycle, rfm_score...
    fields: Vec<String>,
    /// csv (the default) or jsonl.
    #[serde(default = "csv")]
    #[schema(value_type = String, default = "csv")]
    format: ExportFormat,
    /// A destination (`dst_...`) of the recipient that receives the file once it is done
    /// (`GET /v1/exports/{id}/delivery`).
    destination: Option<String>,
}

/// Most recipients load CSV; a body without `format` asks for it.
fn csv() -> ExportFormat {
    ExportFormat::Csv
}

/// Starts an export job; poll `GET /v1/exports/{id}`.
#[utoipa::path(post, path = "/v1/exports", tag = "exports", security(("bearer" = [])),
    request_body = ExportBody,
    responses((status = 202, body = crate::schemas::Export), (status = 400, body = crate::ErrorBody), (status = 403, body = crate::ErrorBody), (status = 404, body = crate::ErrorBody)))]
pub(crate) async fn create_export(
    State(state): State<AppState>,
    caller: Caller,
    body: JsonBody<ExportBody>,
) -> Result<(StatusCode, Json<serde_json::Value>), ApiError> {
    caller.require(Permission::Export)?;
    let body = body.parse()?;
    let access = caller.access(Some(body.purpose.clone()));
    let engine = state.engine.clone();
    let record = blocking(move || {
        engine.start_export(
            ExportRequest {
                audience: body.audience,
                purpose: body.purpose,
                recipient: body.recipient,
                fields: body.fields,
                format: body.format,
                destination: body.destination,
                schedule: None,
                campaign: None,
            },
            &access,
        )
    })
    .await?;
    Ok((StatusCode::ACCEPTED, as_json(record)?))
}

/// The 100 most recent export jobs, newest first.
#[utoipa::path(get, path = "/v1/exports", tag = "exports", security(("bearer" = [])),
    responses((status = 200, body = crate::schemas::ExportList), (status = 401, body = crate::ErrorBody), (status = 403, body = crate::ErrorBody)))]
pub(crate) async fn list_exports(
    State(state): State<AppState>,
    caller: Caller,
) -> Result<Json<serde_json::Value>, ApiError> {
    caller.require(Permission::ReadExports)?;
    let engine = state.engine.clone();
    let records = blocking(move || engine.exports(100)).await?;
    let Json(records) = as_json(records)?;
    Ok(Json(serde_json::json!({ "exports": records })))
}

/// An export job: status (running, done, refused, failed), progress, reason, signed manifest.
#[utoipa::path(get, path = "/v1/exports/{id}", tag = "exports", security(("bearer" = [])),
    params(("id" = String, Path)),
    responses((status = 200, body = crate::schemas::Export), (status = 404, body = crate::ErrorBody)))]
pub(crate) async fn get_export(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<serde_json::Value>, ApiError> {
    caller.require(Permission::ReadExports)?;
    let engine = state.engine.clone();
    let record = blocking(move || engine.export(&id))
        .await?
        .ok_or_else(|| ApiError::new(ErrorCode::NotFound, "no such export"))?;
    as_json(record)
}

/// Deletes a finished export's file and destroys its key (audited); the job and its signed
/// manifest stay, with status `withdrawn`, as the record of what was shared with whom.
#[utoipa::path(delete, path = "/v1/exports/{id}", tag = "exports", security(("bearer" = [])),
    params(("id" = String, Path)),
    responses((status = 200, body = crate::schemas::Export), (status = 400, body = crate::ErrorBody),
        (status = 403, body = crate::ErrorBody), (status = 404, body = crate::ErrorBody),
        (status = 409, description = "Not finished, or no file left.", body = crate::ErrorBody)))]
pub(crate) async fn delete_export(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<serde_json::Value>, ApiError> {
    caller.require(Permission::Export)?;
    let access = caller.access(None);
    let engine = state.engine.clone();
    as_json(blocking(move || engine.delete_export(&id, &access)).await?)
}

/// The export file (decrypted for the download; audited).
#[utoipa::path(get, path = "/v1/exports/{id}/file", tag = "exports", security(("bearer" = [])),
    params(("id" = String, Path)),
    responses((status = 200, description = "text/csv or application/x-ndjson"), (status = 404, body = crate::ErrorBody), (status = 409, body = crate::ErrorBody)))]
pub(crate) async fn export_file(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    caller.require(Permission::Export)?;
    let access = caller.access(None);
    let engine = state.engine.clone();
    let (record, bytes) = blocking(move || engine.export_file(&id, &access)).await?;
    let (content_type, extension) = match record.format {
        ExportFormat::Csv => ("text/csv; charset=utf-8", "csv"),
        ExportFormat::Jsonl => ("application/x-ndjson", "jsonl"),
    };
    Response::builder()
        .status(StatusCode::OK)
        .header(header::CONTENT_TYPE, content_type)
        .header(
            header::CONTENT_DISPOSITION,
            format!("attachment; filename=\"{}.{extension}\"", record.id),
        )
        .body(Body::from(bytes))
        .map_err(|_| ApiError::from_code(ErrorCode::Internal))
}

/// The signed manifest of a finished export, as the file `cdp export verify` reads: its
/// fields in their signed order, so that a client can check the Ed25519 signature over the
/// bytes it received (the signed bytes are these without the final `signature` field).
#[utoipa::path(get, path = "/v1/exports/{id}/manifest", tag = "exports", security(("bearer" = [])),
    params(("id" = String, Path)),
    responses((status = 200, description = "application/json"), (status = 404, body = crate::ErrorBody), (status = 409, body = crate::ErrorBody)))]
pub(crate) async fn export_manifest(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    caller.require(Permission::ReadExports)?;
    let engine = state.engine.clone();
    let lookup = id.clone();
    let record = blocking(move || engine.export(&lookup))
        .await?
        .ok_or_else(|| ApiError::new(ErrorCode::NotFound, "no such export"))?;
    let manifest = record.manifest.ok_or_else(|| {
        ApiError::new(
            ErrorCode::Conflict,
            format!(
                "export {id} has no manifest: it is {}",
                record.status.name()
            ),
        )
    })?;
    let bytes =
        serde_json::to_vec(&manifest).map_err(|_| ApiError::from_code(ErrorCode::Internal))?;
    Response::builder()
        .status(StatusCode::OK)
        .header(header::CONTENT_TYPE, "application/json")
        .header(
            header::CONTENT_DISPOSITION,
            format!("attachment; filename=\"{id}.manifest.json\""),
        )
        .body(Body::from(bytes))
        .map_err(|_| ApiError::from_code(ErrorCode::Internal))
}

/// The public key that verifies export manifests (Ed25519, base64).
#[utoipa::path(get, path = "/v1/keys/export", tag = "exports",
    responses((status = 200, body = crate::schemas::ExportKey)))]
pub(crate) async fn export_key(
    State(state): State<AppState>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let key = state
        .engine
        .signing_public_key()
        .map_err(crate::routes::engine_error)?;
    as_json(serde_json::json!({ "algorithm": "Ed25519", "public_key": key }))
}
