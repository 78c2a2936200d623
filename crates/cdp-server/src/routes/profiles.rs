//! Profile reads, the identity graph, split.
//!
//! Every read states `?purpose=`; the policies decide (roles.yaml says which roles may state
//! which purposes), the decision is audited, and the answer is masked as it says. The graph
//! routes are for operators (admin, dpo) on top of that.

use axum::Json;
use axum::extract::{Path, Query, State};
use cdp_core::{IdentifierType, ProfileId};
use cdp_engine::{SplitRequest, records::EvidenceId};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use crate::auth::Caller;
use crate::observe::Arrived;
use crate::routes::body::JsonBody;
use crate::routes::engine_error;
use crate::{ApiError, AppState, ErrorCode, Permission};

pub(crate) fn parse_id(id: &str) -> Result<ProfileId, ApiError> {
    id.parse().map_err(|_| {
        ApiError::new(
            ErrorCode::BadRequest,
            "profile id must be p_ followed by 32 hex digits",
        )
    })
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct PurposeQuery {
    /// Why the data is read: a purpose of the taxonomy (customer_service, marketing.email...).
    pub(crate) purpose: Option<String>,
}

/// Runs a blocking engine read off the async threads.
pub(crate) async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> Result<T, cdp_engine::EngineError> + Send + 'static,
) -> Result<T, ApiError> {
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|_| ApiError::from_code(ErrorCode::Internal))?
        .map_err(engine_error)
}

/// A profile read, timed from the request's arrival: the time until its audit entry is
/// committed ("work": waiting for a worker, authentication, the decision, the read, the
/// masking), then the wait for that entry's flush, both in a `Server-Timing` header
/// (`work;dur=0.21, audit;dur=1.30`, milliseconds), so that clients and `cdp bench lookup`
/// can see where a read's time goes. No personal data.
///
/// On the embedded store the read runs on the request's own worker: it is a few point reads
/// from memory or the page cache and some decoding (about 0.1-0.2 ms of CPU), and handing it
/// to the blocking pool and back cost two thread wake-ups that took longer than the read on
/// this 2-core machine (`cdp bench lookup`, 200k people, 8 clients, December 6: 4,404-5,088
/// reads/s handed over, 5,046-5,723 on the worker; client p50 1.44-1.63 ms against
/// 1.22-1.39). On PostgreSQL a read is a dozen network round trips: it stays on the blocking
/// pool so that it never holds an async worker for milliseconds.
async fn timed_read(
    engine: &std::sync::Arc<cdp_engine::Engine>,
    arrived: Arrived,
    work: impl FnOnce() -> Result<
        Option<cdp_engine::Audited<cdp_engine::ProfileRead>>,
        cdp_engine::EngineError,
    > + Send
    + 'static,
) -> Result<
    Option<(
        cdp_engine::ProfileRead,
        [(axum::http::HeaderName, String); 1],
    )>,
    ApiError,
> {
    let started = arrived.0;
    let pending = if engine.store_reads_are_remote() {
        blocking(work).await?
    } else {
        work().map_err(engine_error)?
    };
    let Some(pending) = pending else {
        return Ok(None);
    };
    let worked = started.elapsed();
    let profile = pending.durable().await.map_err(engine_error)?;
    let audited = started.elapsed() - worked;
    let timing = format!(
        "work;dur={:.3}, audit;dur={:.3}",
        worked.as_secs_f64() * 1e3,
        audited.as_secs_f64() * 1e3
    );
    Ok(Some((
        profile,
        [(axum::http::HeaderName::from_static("server-timing"), timing)],
    )))
}

/// An answer's JSON, serialized once: through `serde_json::Value` first, `perf` of
/// `cdp bench lookup` found 2.7 % of the process's samples building the tree and 1.7 % writing
/// it out again.
#[derive(Debug)]
struct JsonAnswer(Vec<u8>);

impl axum::response::IntoResponse for JsonAnswer {
    fn into_response(self) -> axum::response::Response {
        (
            [(
                axum::http::header::CONTENT_TYPE,
                axum::http::HeaderValue::from_static("application/json"),
            )],
            self.0,
        )
            .into_response()
    }
}

/// `value` as the answer's JSON body, for answers sent as they are (the profile reads).
fn json_answer<T: Serialize>(value: T) -> Result<JsonAnswer, ApiError> {
    serde_json::to_vec(&value)
        .map(JsonAnswer)
        .map_err(|_| ApiError::from_code(ErrorCode::Internal))
}

/// `value` as JSON to amend before it is sent (a value that cannot be written as JSON is our
/// fault: 500).
pub(crate) fn as_json<T: Serialize>(value: T) -> Result<Json<serde_json::Value>, ApiError> {
    serde_json::to_value(value)
        .map(Json)
        .map_err(|_| ApiError::from_code(ErrorCode::Internal))
}

/// A profile for a purpose: identifiers and traits with provenance, channel activity, each
/// field shown, masked or withheld as the policies decide (`policy` says which and why).
#[utoipa::path(get, path = "/v1/profiles/{id}", tag = "profiles", security(("bearer" = [])),
    params(("id" = String, Path, description = "Profile id (absorbed ids resolve to their survivor)"), PurposeQuery),
    responses((status = 200, body = crate::schemas::Profile), (status = 404, body = crate::ErrorBody), (status = 401, body = crate::ErrorBody),
        (status = 403, description = "No purpose, a purpose the token may not state, or a policy denial (details: the decision).", body = crate::ErrorBody)))]
pub(crate) async fn get_profile(
    arrived: Arrived,
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    Query(query): Query<PurposeQuery>,
) -> Result<impl axum::response::IntoResponse, ApiError> {
    caller.require(Permission::ReadProfiles)?;
    let id = parse_id(&id)?;
    let access = caller.access(query.purpose);
    let engine = state.engine.clone();
    let reader = engine.clone();
    let (profile, timing) = timed_read(&engine, arrived, move || {
        reader.read_profile_audited(id, &access)
    })
    .await?
    .ok_or_else(|| ApiError::new(ErrorCode::NotFound, format!("profile {id} not found")))?;
    tracing::info!(profile = %profile.id, subject = %caller.0.sub, purpose = %profile.policy.purpose, "profile read");
    Ok((timing, json_answer(profile)?))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct LookupQuery {
    /// Identifier type: email, phone, user_id, anonymous_id, wechat_unionid...
    #[serde(rename = "type")]
    kind: String,
    value: String,
    /// Region for a phone number without country code (CN, DE...).
    region: Option<String>,
    /// Why the data is read (see `GET /v1/profiles/{id}`).
    purpose: Option<String>,
}

/// The profile an identifier belongs to.
#[utoipa::path(get, path = "/v1/profiles/lookup", tag = "profiles", security(("bearer" = [])), params(LookupQuery),
    responses((status = 200, body = crate::schemas::Profile), (status = 404, body = crate::ErrorBody), (status = 400, body = crate::ErrorBody)))]
pub(crate) async fn lookup(
    arrived: Arrived,
    State(state): State<AppState>,
    caller: Caller,
    query: Result<Query<LookupQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<impl axum::response::IntoResponse, ApiError> {
    caller.require(Permission::ReadProfiles)?;
    let Query(query) = query.map_err(|_| {
        ApiError::new(
            ErrorCode::BadRequest,
            "type and value are required query parameters",
        )
    })?;
    lookup_profile(
        arrived,
        state,
        caller,
        query.kind,
        query.value,
        query.region,
        query.purpose,
    )
    .await
}

/// The lookup both routes make, wherever the identifier came from.
async fn lookup_profile(
    arrived: Arrived,
    state: AppState,
    caller: Caller,
    kind: String,
    value: String,
    region: Option<String>,
    purpose: Option<String>,
) -> Result<impl axum::response::IntoResponse, ApiError> {
    let kind: IdentifierType = kind
        .parse()
        .map_err(|_| ApiError::new(ErrorCode::BadRequest, "type is not an identifier type"))?;
    let access = caller.access(purpose);
    let engine = state.engine.clone();
    let lookup_kind = kind.clone();
    let reader = engine.clone();
    let (profile, timing) = timed_read(&engine, arrived, move || {
        reader.read_lookup_audited(&lookup_kind, &value, region.as_deref(), &access)
    })
    .await?
    .ok_or_else(|| ApiError::new(ErrorCode::NotFound, format!("no profile has that {kind}")))?;
    tracing::info!(profile = %profile.id, kind = %kind, subject = %caller.0.sub, "profile lookup");
    Ok((timing, json_answer(profile)?))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct LookupBody {
    /// Identifier type: email, phone, user_id, anonymous_id, wechat_unionid...
    #[serde(rename = "type")]
    kind: String,
    value: String,
    region: Option<String>,
    purpose: Option<String>,
}

/// The profile an identifier belongs to, with the identifier in the body instead of the URL
/// (what the console uses: a query string lands in proxies' logs and browsers' histories).
#[utoipa::path(post, path = "/v1/profiles/lookup", tag = "profiles", security(("bearer" = [])), request_body = LookupBody,
    responses((status = 200, body = crate::schemas::Profile), (status = 404, body = crate::ErrorBody), (status = 400, body = crate::ErrorBody)))]
pub(crate) async fn lookup_by_body(
    arrived: Arrived,
    State(state): State<AppState>,
    caller: Caller,
    body: crate::routes::body::JsonBody<LookupBody>,
) -> Result<impl axum::response::IntoResponse, ApiError> {
    caller.require(Permission::ReadProfiles)?;
    let body = body.parse()?;
    lookup_profile(
        arrived,
        state,
        caller,
        body.kind,
        body.value,
        body.region,
        body.purpose,
    )
    .await
}

/// "Why are these one person": identifiers, the evidence that links them (with provenance and
/// what merge protection dropped), and the merge log.
#[utoipa::path(get, path = "/v1/profiles/{id}/identity", tag = "profiles", security(("bearer" = [])),
    params(("id" = String, Path), PurposeQuery),
    responses((status = 200, body = crate::schemas::IdentityView), (status = 404, body = crate::ErrorBody), (status = 403, body = crate::ErrorBody)))]
pub(crate) async fn identity(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    Query(query): Query<PurposeQuery>,
) -> Result<Json<serde_json::Value>, ApiError> {
    caller.require(Permission::ReadIdentityGraph)?;
    let id = parse_id(&id)?;
    let access = caller.access(query.purpose);
    let engine = state.engine.clone();
    let (view, policy) = blocking(move || engine.read_identity(id, &access))
        .await?
        .ok_or_else(|| ApiError::new(ErrorCode::NotFound, format!("profile {id} not found")))?;
    let mut answer =
        serde_json::to_value(view).map_err(|_| ApiError::from_code(ErrorCode::Internal))?;
    answer["policy"] = serde_json::to_value(policy).unwrap_or_default();
    Ok(Json(answer))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct EventsQuery {
    /// At most this many events, oldest first (default 100, at most 1000).
    limit: Option<usize>,
    /// Why the data is read.
    purpose: Option<String>,
}

/// A profile's events, oldest first.
#[utoipa::path(get, path = "/v1/profiles/{id}/events", tag = "profiles", security(("bearer" = [])),
    params(("id" = String, Path), EventsQuery),
    responses((status = 200, body = crate::schemas::EventsView), (status = 404, body = crate::ErrorBody)))]
pub(crate) async fn events(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    Query(query): Query<EventsQuery>,
) -> Result<Json<serde_json::Value>, ApiError> {
    caller.require(Permission::ReadIdentityGraph)?;
    let id = parse_id(&id)?;
    let limit = query.limit.unwrap_or(100).min(1000);
    let access = caller.access(query.purpose);
    let engine = state.engine.clone();
    let (events, policy) = blocking(move || engine.read_events(id, &access, limit))
        .await?
        .ok_or_else(|| ApiError::new(ErrorCode::NotFound, format!("profile {id} not found")))?;
    as_json(serde_json::json!({ "events": events, "policy": policy }))
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
    responses((status = 200, description = "The profiles the component became.", body = crate::schemas::SplitAnswer), (status = 404, body = crate::ErrorBody), (status = 400, body = crate::ErrorBody)))]
pub(crate) async fn split(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    body: JsonBody<SplitBody>,
) -> Result<Json<serde_json::Value>, ApiError> {
    caller.require(Permission::SplitProfiles)?;
    let id = parse_id(&id)?;
    let body = body.parse()?;
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
    let actor = caller.0.sub.clone();
    let (report, ticket) = blocking(move || engine.split_audited(id, &request, &actor)).await?;
    if let Some(ticket) = ticket {
        ticket.durable().await.map_err(|e| engine_error(e.into()))?;
    }
    tracing::info!(profile = %id, subject = %caller.0.sub, profiles = report.profiles.len(), "profile split");
    as_json(report)
}
