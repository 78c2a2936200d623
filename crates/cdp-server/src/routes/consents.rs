//! The consent ledger: `POST /v1/consents` (one) and `POST /v1/consents/batch` (a bulk import's
//! rows, each recorded or refused on its own), `GET /v1/profiles/{id}/consents`, and coverage
//! over time, `GET /v1/consents/trend`.

use axum::Json;
use axum::extract::{Path, Query, State};
use cdp_core::Channel;
use cdp_engine::ConsentInput;
use cdp_policy::{ConsentStatus, LegalBasis};
use serde::Deserialize;
use utoipa::ToSchema;

use crate::auth::Caller;
use crate::routes::body::JsonBody;
use crate::routes::profiles::{PurposeQuery, as_json, blocking, parse_id};
use crate::{ApiError, AppState, ErrorCode, Permission};

/// Roles that record consents (the consent-management backend runs with one of them).

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct ConsentBody {
    subject: crate::routes::SubjectBody,
    /// A purpose of the taxonomy (`marketing.email`...); a parent covers its children.
    purpose: String,
    /// granted, denied or withdrawn.
    #[schema(value_type = String)]
    status: ConsentStatus,
    #[schema(value_type = Option<String>)]
    legal_basis: Option<LegalBasis>,
    /// The notice version the person saw (PIPL Art 14: a newer notice makes it stale).
    notice_version: Option<String>,
    /// Where it was collected (form, app screen, store).
    source: String,
    #[schema(value_type = Option<String>)]
    channel: Option<Channel>,
    /// A recipient id, for a consent scoped to one recipient (PIPL Art 23, 39).
    recipient: Option<String>,
    /// A separate consent (单独同意), its own record (PIPL Art 23, 25, 29, 39).
    #[serde(default)]
    separate: bool,
    /// Given by a guardian (PIPL Art 31, GDPR Art 8).
    #[serde(default)]
    guardian: bool,
    /// What a separate consent naming a recipient covers: `provision` (PIPL Art 23) and/or
    /// `cross_border` (PIPL Art 39). None: the provision only; one never implies the other.
    #[serde(default)]
    #[schema(value_type = Vec<String>)]
    scopes: Vec<cdp_policy::ConsentScope>,
    /// Sensitive data categories a separate consent covers (`user.health`): the purpose may
    /// select the person by what reveals them (PIPL Art 29, GDPR Art 9(2)(a)).
    #[serde(default)]
    categories: Vec<String>,
    /// Proof: what was shown and how the person agreed (at most 4 KB of JSON).
    #[schema(value_type = Object)]
    evidence: serde_json::Value,
    /// When the person gave it (RFC 3339; default now, never in the future).
    #[serde(default, with = "time::serde::rfc3339::option")]
    #[schema(value_type = Option<String>)]
    at: Option<time::OffsetDateTime>,
}

impl ConsentBody {
    fn into_input(self) -> Result<ConsentInput, ApiError> {
        Ok(ConsentInput {
            subject: self.subject.parse()?,
            purpose: self.purpose,
            status: self.status,
            legal_basis: self.legal_basis,
            notice_version: self.notice_version,
            source: self.source,
            channel: self.channel,
            recipient: self.recipient,
            separate: self.separate,
            guardian: self.guardian,
            scopes: self.scopes,
            categories: self.categories,
            evidence: self.evidence,
            at: self.at,
        })
    }
}

/// Rows one batch may hold.
const MAX_BATCH_CONSENTS: usize = 500;

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct ConsentBatchBody {
    /// Up to 500 consents, each shaped as the body of `POST /v1/consents`.
    #[schema(value_type = Vec<Object>)]
    consents: Vec<serde_json::Value>,
}

/// Records many consents (a bulk import): each row is validated and recorded on its own, so
/// one bad row refuses only itself. Answers once every recorded row is durable, with a result
/// per row (`index`, and `id` + `state` or `error`). Each recorded row is audited as
/// `POST /v1/consents` audits one.
#[utoipa::path(post, path = "/v1/consents/batch", tag = "consent", operation_id = "record_consents", security(("bearer" = [])),
    request_body = ConsentBatchBody,
    responses((status = 200, description = "Per-row results; `recorded` and `failed` count them.", body = crate::schemas::ConsentBatchAnswer),
        (status = 400, body = crate::ErrorBody), (status = 403, body = crate::ErrorBody)))]
pub(crate) async fn record_batch(
    State(state): State<AppState>,
    caller: Caller,
    body: JsonBody<ConsentBatchBody>,
) -> Result<Json<serde_json::Value>, ApiError> {
    caller.require(Permission::RecordConsents)?;
    let rows = body.parse()?.consents;
    if rows.is_empty() || rows.len() > MAX_BATCH_CONSENTS {
        return Err(ApiError::new(
            ErrorCode::BadRequest,
            format!("consents must hold 1 to {MAX_BATCH_CONSENTS} rows"),
        ));
    }
    let engine = state.engine.clone();
    let actor = caller.0.sub.clone();
    let (results, tickets) = blocking(move || {
        let mut results = Vec::with_capacity(rows.len());
        let mut tickets = Vec::new();
        for (index, row) in rows.into_iter().enumerate() {
            let input = serde_json::from_value::<ConsentBody>(row)
                .map_err(|error| {
                    // serde names the field and what it expected, never the value.
                    ApiError::new(ErrorCode::InvalidJson, error.to_string())
                })
                .and_then(ConsentBody::into_input);
            let outcome = input.and_then(|input| {
                engine
                    .record_consent(input, &actor)
                    .map_err(crate::routes::engine_error)
            });
            match outcome {
                Ok((receipt, ticket)) => {
                    tickets.push(ticket);
                    results.push(serde_json::json!({"index": index, "id": receipt.id, "state": receipt.state}));
                }
                Err(error) => results.push(serde_json::json!({"index": index, "error": {
                    "code": error.code.as_str(), "message": error.message}})),
            }
        }
        Ok::<_, cdp_engine::EngineError>((results, tickets))
    })
    .await?;
    for ticket in tickets {
        crate::routes::durable(ticket).await?;
    }
    let failed = results.iter().filter(|r| r.get("error").is_some()).count();
    let recorded = results.len() - failed;
    Ok(Json(serde_json::json!({
        "recorded": recorded,
        "failed": failed,
        "results": results,
    })))
}

/// Appends a consent record (encrypted, append-only) and answers once it is durable.
/// Withdrawal takes effect for every later read, audience and export.
#[utoipa::path(post, operation_id = "record_consent", path = "/v1/consents", tag = "consent", security(("bearer" = [])),
    request_body = ConsentBody,
    responses((status = 200, description = "Recorded; `state` is the person's state for the purpose now.", body = crate::schemas::ConsentReceipt),
        (status = 400, body = crate::ErrorBody), (status = 403, body = crate::ErrorBody), (status = 404, description = "No such person.", body = crate::ErrorBody)))]
pub(crate) async fn record(
    State(state): State<AppState>,
    caller: Caller,
    body: JsonBody<ConsentBody>,
) -> Result<Json<serde_json::Value>, ApiError> {
    caller.require(Permission::RecordConsents)?;
    let input = body.parse()?.into_input()?;
    let engine = state.engine.clone();
    let actor = caller.0.sub.clone();
    let (receipt, ticket) = blocking(move || engine.record_consent(input, &actor)).await?;
    crate::routes::durable(ticket).await?;
    as_json(receipt)
}

/// A person's consent history and current state per purpose (a purpose-bound read).
#[utoipa::path(get, operation_id = "list_consents", path = "/v1/profiles/{id}/consents", tag = "consent", security(("bearer" = [])),
    params(("id" = String, Path), PurposeQuery),
    responses((status = 200, body = crate::schemas::ConsentsView), (status = 403, body = crate::ErrorBody), (status = 404, body = crate::ErrorBody)))]
pub(crate) async fn list(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    Query(query): Query<PurposeQuery>,
) -> Result<Json<serde_json::Value>, ApiError> {
    caller.require(Permission::ReadProfiles)?;
    let id = parse_id(&id)?;
    let access = caller.access(query.purpose);
    let engine = state.engine.clone();
    let view = blocking(move || engine.read_consents(id, &access))
        .await?
        .ok_or_else(|| ApiError::new(ErrorCode::NotFound, format!("profile {id} not found")))?;
    as_json(view)
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
pub(crate) struct TrendQuery {
    /// Days back from now (default 30, at most 400).
    days: Option<u32>,
    /// `day` (default): the last tally of each day (UTC); `tally`: every tally.
    step: Option<String>,
}

/// Consent coverage over time: people per consent state (granted, stale, denied, withdrawn,
/// none) for the main purposes, from the tallies taken every `[consent] trend_every_secs`,
/// then the live count of now. Counts of the whole population only; counts below the minimum
/// audience size are withheld (`null`).
#[utoipa::path(get, operation_id = "consent_trend", path = "/v1/consents/trend", tag = "consent", security(("bearer" = [])),
    params(TrendQuery),
    responses((status = 200, body = crate::schemas::ConsentTrend), (status = 400, body = crate::ErrorBody), (status = 403, body = crate::ErrorBody)))]
pub(crate) async fn trend(
    State(state): State<AppState>,
    caller: Caller,
    Query(query): Query<TrendQuery>,
) -> Result<Json<serde_json::Value>, ApiError> {
    caller.require(Permission::ReadOverview)?;
    let step = match query.step.as_deref() {
        None | Some("day") => cdp_engine::consent::trend::TrendStep::Day,
        Some("tally") => cdp_engine::consent::trend::TrendStep::Tally,
        Some(other) => {
            return Err(ApiError::new(
                ErrorCode::BadRequest,
                format!("step {other:?} is not one of day, tally"),
            ));
        }
    };
    let days = query.days.unwrap_or(30);
    let engine = state.engine.clone();
    let trend = blocking(move || engine.consent_trend(days, step)).await?;
    as_json(trend)
}
