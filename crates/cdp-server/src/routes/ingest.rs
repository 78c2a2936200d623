//! Segment-compatible ingestion: `POST /v1/{identify,track,page,screen,group,alias,batch}`,
//! and the short paths Segment's browser library posts to (`/v1/{i,t,p,s,g,a,b}`), with
//! `text/plain` bodies as browsers send them; a request from a web page is checked against
//! its source's allowed origins (`browser.rs`).

use std::io::Read;

use axum::Json;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::http::header::CONTENT_ENCODING;
use cdp_core::segment::{MessageType, parse_body};
use serde::Serialize;
use time::OffsetDateTime;
use utoipa::ToSchema;

use crate::auth::basic_write_key;
use crate::routes::engine_error;
use crate::{ApiError, AppState, ErrorCode, Permission};

/// The answer Segment libraries expect.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct IngestAnswer {
    pub(crate) success: bool,
    /// Messages stored.
    pub(crate) accepted: usize,
    /// Retries of messages already stored (same messageId from the same source).
    pub(crate) duplicates: usize,
    /// Messages none of whose identifiers were usable (all blocked or invalid): not stored.
    pub(crate) unattributed: usize,
    /// Identifiers left out as invalid (a phone that does not parse) and messages not stored
    /// for want of an identifier, by place in the batch: at most 500, fields never values.
    /// Absent when there are none (Segment's libraries read `success` only).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub(crate) warnings: Vec<IngestWarningBody>,
}

/// One thing of a message the platform did not use.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct IngestWarningBody {
    /// The message's place in `batch` (absent for a single message).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) index: Option<usize>,
    /// The field, e.g. `traits.phone`; absent when the whole message is meant.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub(crate) field: String,
    pub(crate) problem: String,
}

/// Decompresses a gzip body without letting it grow past `limit` (a gzip bomb is refused, not
/// inflated).
pub(crate) fn decode_body(
    headers: &HeaderMap,
    body: Bytes,
    limit: usize,
) -> Result<Vec<u8>, ApiError> {
    let encoding = headers
        .get(CONTENT_ENCODING)
        .and_then(|value| value.to_str().ok())
        .map(|value| value.trim().to_ascii_lowercase());
    match encoding.as_deref() {
        None | Some("identity") | Some("") => Ok(body.to_vec()),
        Some("gzip") | Some("x-gzip") => {
            let mut decoded = Vec::with_capacity(body.len() * 4);
            let mut reader = flate2::read::MultiGzDecoder::new(&body[..]).take(limit as u64 + 1);
            reader
                .read_to_end(&mut decoded)
                .map_err(|_| ApiError::from_code(ErrorCode::InvalidEncoding))?;
            if decoded.len() > limit {
                return Err(ApiError::new(
                    ErrorCode::PayloadTooLarge,
                    format!("the decompressed body exceeds {limit} bytes"),
                ));
            }
            Ok(decoded)
        }
        Some(_) => Err(ApiError::new(
            ErrorCode::UnsupportedMediaType,
            "Content-Encoding must be gzip or absent",
        )),
    }
}

/// The answer for a message that does not parse: its index and field in `details`.
fn field_error(error: cdp_core::segment::FieldError) -> ApiError {
    let mut details = serde_json::json!({ "field": error.field, "problem": error.problem });
    if let Some(index) = error.index {
        details["index"] = index.into();
    }
    let code = if error.field == "(body)" {
        ErrorCode::InvalidJson
    } else {
        ErrorCode::InvalidMessage
    };
    ApiError::new(code, format!("{}: {}", error.field, error.problem)).with_details(details)
}

async fn ingest(
    state: AppState,
    headers: HeaderMap,
    body: Bytes,
    implied: Option<MessageType>,
) -> Result<Json<IngestAnswer>, ApiError> {
    let engine = state.engine.clone();
    let header_key = basic_write_key(&headers)?;
    let limits = *engine.limits();
    // A body that does not decode or parse is judged only for a caller with a valid write
    // key (401 before 400): without one, nobody learns from the answers what a valid body
    // looks like. The size limit comes first, as it does at the edge.
    let body = match decode_body(&headers, body, limits.max_batch_bytes) {
        Ok(body) => body,
        Err(error) => {
            if error.code != ErrorCode::PayloadTooLarge {
                authenticate(&state, header_key).await?;
            }
            return Err(error);
        }
    };
    let mut parsed = match parse_body(&body, implied, OffsetDateTime::now_utc(), &limits) {
        Ok(parsed) => parsed,
        Err(error) => {
            authenticate(&state, header_key.or_else(|| body_write_key(&body))).await?;
            return Err(field_error(error));
        }
    };
    // Global Privacy Control (`Sec-GPC: 1`): recorded as an objection to marketing with every
    // message of the request (GDPR Art 21(5)), as `context.gpc` does for one message.
    let gpc = headers
        .get("sec-gpc")
        .and_then(|value| value.to_str().ok())
        .is_some_and(|value| value.trim() == "1");
    if gpc {
        for message in &mut parsed.messages {
            message
                .context
                .insert("gpc".into(), serde_json::Value::Bool(true));
        }
    }
    let write_key = header_key
        .or(parsed.write_key)
        .ok_or_else(missing_write_key)?;
    let batched = implied.is_none();
    let engine = state.engine.clone();
    let origin = crate::routes::browser::origin_of(&headers);
    run_ingest(state, parsed.messages, batched, origin, move || {
        engine.source_for_write_key(&write_key)
    })
    .await
}

pub(crate) fn missing_write_key() -> ApiError {
    ApiError::new(
        ErrorCode::Unauthorized,
        "a write key is required: HTTP Basic user name, or writeKey in the body",
    )
}

/// The `writeKey` of a body that is JSON but not a valid request (to authenticate the caller
/// before saying what is wrong with it).
fn body_write_key(body: &[u8]) -> Option<String> {
    let value: serde_json::Value = serde_json::from_slice(body).ok()?;
    value.get("writeKey")?.as_str().map(str::to_string)
}

/// The source of a write key, or the 401.
pub(crate) async fn authenticate(
    state: &AppState,
    write_key: Option<String>,
) -> Result<cdp_engine::records::SourceRecord, ApiError> {
    let write_key = write_key.ok_or_else(missing_write_key)?;
    let engine = state.engine.clone();
    tokio::task::spawn_blocking(move || engine.source_for_write_key(&write_key))
        .await
        .map_err(|_| ApiError::from_code(ErrorCode::Internal))?
        .map_err(engine_error)
}

/// Ingests as the source `source` finds, off the async threads; answers only once durable.
/// A request from a web page (`origin`) is refused, before anything is stored, unless the
/// source lists the page's origin.
pub(crate) async fn run_ingest(
    state: AppState,
    messages: Vec<cdp_core::segment::Message>,
    batched: bool,
    origin: Option<String>,
    source: impl FnOnce() -> Result<cdp_engine::records::SourceRecord, cdp_engine::EngineError>
    + Send
    + 'static,
) -> Result<Json<IngestAnswer>, ApiError> {
    let engine = state.engine.clone();
    let report = tokio::task::spawn_blocking(move || {
        let source = source().map_err(engine_error)?;
        if let Some(origin) = origin
            && !source.allows_origin(&origin)
        {
            return Err(crate::routes::browser::origin_refused(&origin, &source));
        }
        engine
            .ingest(&source, messages, batched)
            .map_err(engine_error)
    })
    .await
    .map_err(|_| ApiError::from_code(ErrorCode::Internal))??;
    if let Some(ticket) = report.ticket {
        // Acknowledged means durable: answer only after the group commit flushed this batch.
        ticket
            .durable()
            .await
            .map_err(|error| engine_error(error.into()))?;
    }
    state
        .metrics
        .record_ingest(report.accepted, report.duplicates, report.unattributed);
    Ok(Json(IngestAnswer {
        success: true,
        accepted: report.accepted,
        duplicates: report.duplicates,
        unattributed: report.unattributed,
        warnings: report
            .warnings
            .into_iter()
            .map(|warning| IngestWarningBody {
                index: warning.index,
                field: warning.field,
                problem: warning.problem,
            })
            .collect(),
    }))
}

macro_rules! ingest_route {
    ($name:ident, $path:literal, $kind:expr, $summary:literal, $body:ty) => {
        #[doc = $summary]
        #[utoipa::path(post, path = $path, tag = "ingestion",
            request_body(content = $body, description = "A Segment-spec message or batch (JSON, optionally gzip; `text/plain` from browsers' sendBeacon)."),
            security(("write_key" = [])),
            responses(
                (status = 200, description = "Stored and durable.", body = IngestAnswer),
                (status = 400, description = "Invalid JSON, encoding or message; nothing was stored.", body = crate::ErrorBody),
                (status = 401, description = "Missing or unknown write key.", body = crate::ErrorBody),
                (status = 403, description = "Sent by a web page of an origin the source does not list.", body = crate::ErrorBody),
                (status = 413, description = "Body too large.", body = crate::ErrorBody),
            ))]
        pub(crate) async fn $name(State(state): State<AppState>, headers: HeaderMap, body: Bytes) -> Result<Json<IngestAnswer>, ApiError> {
            ingest(state, headers, body, $kind).await
        }
    };
}

ingest_route!(
    identify,
    "/v1/identify",
    Some(MessageType::Identify),
    "Segment identify: who the user is, with traits.",
    crate::schemas::SegmentIdentify
);
ingest_route!(
    track,
    "/v1/track",
    Some(MessageType::Track),
    "Segment track: an action the user performed.",
    crate::schemas::SegmentTrack
);
ingest_route!(
    page,
    "/v1/page",
    Some(MessageType::Page),
    "Segment page: a web page view.",
    crate::schemas::SegmentView
);
ingest_route!(
    screen,
    "/v1/screen",
    Some(MessageType::Screen),
    "Segment screen: an app screen view.",
    crate::schemas::SegmentView
);
ingest_route!(
    group,
    "/v1/group",
    Some(MessageType::Group),
    "Segment group: the user joined a group (account, household).",
    crate::schemas::SegmentGroup
);
ingest_route!(
    alias,
    "/v1/alias",
    Some(MessageType::Alias),
    "Segment alias: previousId and userId are the same person.",
    crate::schemas::SegmentAlias
);
ingest_route!(
    batch,
    "/v1/batch",
    None,
    "Segment batch: up to 500 KB of messages, accepted or refused whole.",
    crate::schemas::SegmentBatch
);

// The short paths of Segment's browser library (`{apiHost}/{first letter of the type}`).
ingest_route!(
    identify_short,
    "/v1/i",
    Some(MessageType::Identify),
    "Segment identify, at the browser library's short path.",
    crate::schemas::SegmentIdentify
);
ingest_route!(
    track_short,
    "/v1/t",
    Some(MessageType::Track),
    "Segment track, at the browser library's short path.",
    crate::schemas::SegmentTrack
);
ingest_route!(
    page_short,
    "/v1/p",
    Some(MessageType::Page),
    "Segment page, at the browser library's short path.",
    crate::schemas::SegmentView
);
ingest_route!(
    screen_short,
    "/v1/s",
    Some(MessageType::Screen),
    "Segment screen, at the browser library's short path.",
    crate::schemas::SegmentView
);
ingest_route!(
    group_short,
    "/v1/g",
    Some(MessageType::Group),
    "Segment group, at the browser library's short path.",
    crate::schemas::SegmentGroup
);
ingest_route!(
    alias_short,
    "/v1/a",
    Some(MessageType::Alias),
    "Segment alias, at the browser library's short path.",
    crate::schemas::SegmentAlias
);
ingest_route!(
    batch_short,
    "/v1/b",
    None,
    "Segment batch, where the browser library's batching delivery posts.",
    crate::schemas::SegmentBatch
);

#[derive(Debug, serde::Deserialize, utoipa::IntoParams)]
pub(crate) struct ImportQuery {
    /// The source (by name) the messages are recorded as coming from.
    source: String,
}

/// Bulk import for operators: a Segment batch recorded as coming from a named source, with a
/// bearer token instead of the source's write key (`cdp import` uses it). Same validation,
/// identity path and durability as `/v1/batch`.
#[utoipa::path(post, path = "/v1/import", tag = "ingestion", params(ImportQuery),
    request_body(content = crate::schemas::SegmentBatch, description = "A Segment batch: {\"batch\": [...]}."),
    security(("bearer" = [])),
    responses(
        (status = 200, body = IngestAnswer),
        (status = 400, body = crate::ErrorBody), (status = 401, body = crate::ErrorBody),
        (status = 403, body = crate::ErrorBody), (status = 404, description = "No such source.", body = crate::ErrorBody),
    ))]
pub(crate) async fn import(
    State(state): State<AppState>,
    caller: crate::auth::Caller,
    axum::extract::Query(query): axum::extract::Query<ImportQuery>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Json<IngestAnswer>, ApiError> {
    caller.require(Permission::Import)?;
    let engine = state.engine.clone();
    let limits = *engine.limits();
    let body = decode_body(&headers, body, limits.max_batch_bytes)?;
    let parsed =
        parse_body(&body, None, OffsetDateTime::now_utc(), &limits).map_err(field_error)?;
    // Operators' imports come from programs, never from a web page's origin.
    run_ingest(state, parsed.messages, true, None, move || {
        engine
            .source_by_name(&query.source)?
            .ok_or_else(|| cdp_engine::EngineError::NotFound(format!("source {:?}", query.source)))
    })
    .await
}
