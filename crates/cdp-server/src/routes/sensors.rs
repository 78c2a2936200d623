//! The Sensors Analytics endpoint (`/sa`, `/sa.gif`; GET or POST): its SDKs send here with
//! the source's write key as the `token` query parameter of their `server_url`
//! (`https://cdp.example.cn/sa?token=cdpwk_...`). The protocol is in `crate::sensors`.

use axum::Json;
use axum::body::Bytes;
use axum::extract::{RawQuery, State};
use axum::http::header::{CONTENT_TYPE, REFERER};
use axum::http::{HeaderMap, HeaderValue};
use axum::response::{IntoResponse, Response};
use time::OffsetDateTime;

use crate::auth::basic_write_key;
use crate::routes::ingest::{authenticate, decode_body, missing_write_key, run_ingest};
use crate::{ApiError, AppState, ErrorCode};

/// The smallest transparent GIF: what an image request (`/sa.gif`) is answered with.
const PIXEL: &[u8] = &[
    0x47, 0x49, 0x46, 0x38, 0x39, 0x61, 0x01, 0x00, 0x01, 0x00, 0x80, 0x00, 0x00, 0x00, 0x00, 0x00,
    0xff, 0xff, 0xff, 0x21, 0xf9, 0x04, 0x01, 0x00, 0x00, 0x00, 0x00, 0x2c, 0x00, 0x00, 0x00, 0x00,
    0x01, 0x00, 0x01, 0x00, 0x00, 0x02, 0x02, 0x44, 0x01, 0x00, 0x3b,
];

/// The origin of the page that sent a request: its `Origin`, or for an image request (which
/// carries none) the origin of its `Referer`.
fn page_origin(headers: &HeaderMap) -> Option<String> {
    if let Some(origin) = crate::routes::browser::origin_of(headers) {
        return Some(origin);
    }
    let referer = headers.get(REFERER)?.to_str().ok()?;
    let (scheme, rest) = referer.split_once("://")?;
    let host = rest.split(['/', '?', '#']).next()?;
    Some(format!("{scheme}://{host}"))
}

async fn receive(
    state: AppState,
    query: Option<String>,
    headers: HeaderMap,
    body: Bytes,
    image: bool,
) -> Result<Response, ApiError> {
    let limits = *state.engine.limits();
    let query = query.unwrap_or_default();
    let body = decode_body(&headers, body, limits.max_batch_bytes)?;
    let params: Vec<(String, String)> = form_urlencoded::parse(query.as_bytes())
        .chain(form_urlencoded::parse(&body))
        .map(|(key, value)| (key.into_owned(), value.into_owned()))
        .collect();
    let write_key = basic_write_key(&headers)?.or_else(|| {
        params
            .iter()
            .find(|(key, _)| key == "token")
            .map(|(_, value)| value.clone())
    });
    // As on the Segment routes: a caller without a valid key learns nothing about bodies.
    let decoded = crate::sensors::records(&params, &limits)
        .and_then(|records| crate::sensors::convert(&records, OffsetDateTime::now_utc(), &limits));
    let converted = match decoded {
        Ok(converted) => converted,
        Err(error) => {
            authenticate(&state, write_key).await?;
            return Err(ApiError::new(
                ErrorCode::InvalidMessage,
                format!("{}: {}", error.field, error.problem),
            )
            .with_details(serde_json::json!({"field": error.field, "problem": error.problem})));
        }
    };
    let write_key = write_key.ok_or_else(missing_write_key)?;
    let ignored = converted.ignored;
    let answer = if converted.messages.is_empty() {
        // Only ignored records (catalogue items...): still a known key, or a 401.
        authenticate(&state, Some(write_key)).await?;
        serde_json::json!({"success": true, "accepted": 0, "duplicates": 0, "unattributed": 0})
    } else {
        let engine = state.engine.clone();
        let Json(answer) = run_ingest(
            state,
            converted.messages,
            true,
            page_origin(&headers),
            move || engine.source_for_write_key(&write_key),
        )
        .await?;
        serde_json::to_value(answer).unwrap_or_default()
    };
    if image {
        let mut response = PIXEL.into_response();
        response
            .headers_mut()
            .insert(CONTENT_TYPE, HeaderValue::from_static("image/gif"));
        return Ok(response);
    }
    let mut answer = answer;
    answer["ignored"] = ignored.into();
    Ok(Json(answer).into_response())
}

/// Sensors Analytics SDKs' records (`data` or `data_list`: base64 of JSON, optionally
/// gzipped) in a form-encoded body or the query string; the write key as `token`.
/// Answers once the messages are durable, with Segment's counts and `ignored` (records
/// that are not about people: items, unbind, increments).
#[utoipa::path(post, operation_id = "sensors_post", path = "/sa", tag = "ingestion",
    params(("token" = String, Query, description = "The source's write key.")),
    request_body(content = String, content_type = "application/x-www-form-urlencoded",
        description = "data=BASE64 or data_list=BASE64, gzip=1 when gzipped."),
    responses(
        (status = 200, description = "Stored and durable.", body = crate::schemas::SensorsAnswer),
        (status = 400, description = "A parameter or record is invalid; nothing was stored.", body = crate::ErrorBody),
        (status = 401, body = crate::ErrorBody),
        (status = 403, description = "Sent by a web page of an origin the source does not list.", body = crate::ErrorBody),
    ))]
pub(crate) async fn post(
    State(state): State<AppState>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    receive(state, query, headers, body, false).await
}

/// The same records in the query string of a GET (`data`, `token`).
#[utoipa::path(get, operation_id = "sensors_get", path = "/sa", tag = "ingestion",
    params(("token" = String, Query), ("data" = String, Query, description = "Base64 of a JSON record.")),
    responses((status = 200, body = crate::schemas::SensorsAnswer), (status = 400, body = crate::ErrorBody), (status = 401, body = crate::ErrorBody)))]
pub(crate) async fn get(
    State(state): State<AppState>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    receive(state, query, headers, Bytes::new(), false).await
}

/// The web SDK's image requests: the records in the query string, answered with a 1x1 GIF.
#[utoipa::path(get, operation_id = "sensors_image", path = "/sa.gif", tag = "ingestion",
    params(("token" = String, Query), ("data" = String, Query, description = "Base64 of a JSON record.")),
    responses((status = 200, description = "A 1x1 GIF, once stored and durable.", content_type = "image/gif"),
        (status = 400, body = crate::ErrorBody), (status = 401, body = crate::ErrorBody)))]
pub(crate) async fn image(
    State(state): State<AppState>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    receive(state, query, headers, Bytes::new(), true).await
}

/// The web SDK posts to its `server_url` rewritten to `/sa.gif` when it sends by AJAX or
/// beacon: the same as `POST /sa`.
#[utoipa::path(post, operation_id = "sensors_image_post", path = "/sa.gif", tag = "ingestion",
    params(("token" = String, Query)),
    request_body(content = String, content_type = "application/x-www-form-urlencoded"),
    responses((status = 200, body = crate::schemas::SensorsAnswer), (status = 400, body = crate::ErrorBody), (status = 401, body = crate::ErrorBody)))]
pub(crate) async fn image_post(
    State(state): State<AppState>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    receive(state, query, headers, body, false).await
}
