//! Campaigns: `POST|GET /v1/campaigns`, `GET|PATCH /v1/campaigns/{id}`,
//! `POST /v1/campaigns/{id}/send`, `GET /v1/campaigns/{id}/results`.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use cdp_engine::{CampaignChannel, CampaignCost, CampaignInput, Conversion, ExportFormat, Variant};
use serde::Deserialize;
use utoipa::ToSchema;

use crate::auth::Caller;
use crate::routes::body::JsonBody;
use crate::routes::profiles::{as_json, blocking};
use crate::{ApiError, AppState, Permission};

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct VariantBody {
    name: String,
    /// Its share of the treated people, relative to the other variants' weights.
    weight: f64,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct CostBody {
    total: Option<f64>,
    per_contact: Option<f64>,
    /// Default CNY.
    currency: Option<String>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct ConversionBody {
    /// The event that counts as a conversion, e.g. `Order Completed`.
    event: String,
    /// Within how many days of a send (1-365).
    within_days: u32,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct CapBody {
    /// At most this many contacts (1-1000)...
    max: u32,
    /// ...within this many days (1-365), across every campaign on the channel.
    window_days: u32,
}

/// The campaign's own frequency caps and quiet hours for its channel, added to the configured
/// ones: they can only make it stricter.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct ContactBody {
    #[serde(default)]
    caps: Vec<CapBody>,
    /// `HH:MM-HH:MM` in the person's local time, e.g. `20:00-09:00`.
    quiet_hours: Option<String>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct AttributionBody {
    /// first_touch or last_touch (default).
    #[schema(value_type = Option<String>)]
    model: Option<cdp_engine::campaigns::TouchModel>,
    /// Contacts up to this many days before a conversion count (1-365, default 7).
    window_days: Option<u32>,
}

/// When the campaign sends by itself: `cron` (recurring) or `at` (once).
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct CampaignScheduleBody {
    /// Five cron fields or a shorthand (`0 10 * * 1`: Mondays at 10:00; `@daily`).
    cron: Option<String>,
    /// The offset the expression is read at, e.g. `+08:00` (default `+00:00`).
    utc_offset: Option<String>,
    /// One send at this time (RFC 3339), instead of `cron`.
    #[serde(default, with = "time::serde::rfc3339::option")]
    #[schema(value_type = Option<String>, format = DateTime)]
    at: Option<time::OffsetDateTime>,
    /// No scheduled send after this time (RFC 3339).
    #[serde(default, with = "time::serde::rfc3339::option")]
    #[schema(value_type = Option<String>, format = DateTime)]
    until: Option<time::OffsetDateTime>,
}

impl From<CampaignScheduleBody> for cdp_engine::CampaignScheduleInput {
    fn from(body: CampaignScheduleBody) -> Self {
        Self {
            cron: body.cron,
            utc_offset: body.utc_offset,
            at: body.at,
            until: body.until,
        }
    }
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct CampaignBody {
    name: String,
    /// A saved audience id.
    audience: String,
    purpose: String,
    /// sms, email, push, wechat or ads.
    #[schema(value_type = String)]
    channel: CampaignChannel,
    /// A recipient id (the processor that sends the messages).
    recipient: String,
    /// A destination of the recipient that receives every send.
    destination: Option<String>,
    /// The fields of each row; pseudonym is required, arm (the variant) is added.
    fields: Vec<String>,
    /// csv (the default) or jsonl.
    #[serde(default = "csv")]
    #[schema(value_type = String, default = "csv")]
    format: ExportFormat,
    /// The share of eligible people kept from contact, 0 to 0.5 (default 0.1).
    holdout: Option<f64>,
    /// A/B variants of the treated people (default one, `treatment`).
    #[serde(default)]
    variants: Vec<VariantBody>,
    #[serde(default)]
    cost: Option<CostBody>,
    conversion: ConversionBody,
    #[serde(default)]
    contact: ContactBody,
    attribution: Option<AttributionBody>,
    /// Sends by itself, once or recurring (default: only when sent).
    schedule: Option<CampaignScheduleBody>,
}

fn csv() -> ExportFormat {
    ExportFormat::Csv
}

/// Makes a campaign, checked as its sends' export would be now.
#[utoipa::path(post, path = "/v1/campaigns", tag = "exports", security(("bearer" = [])),
    request_body = CampaignBody,
    responses((status = 201, body = crate::schemas::Campaign), (status = 400, body = crate::ErrorBody),
        (status = 403, body = crate::ErrorBody), (status = 404, body = crate::ErrorBody),
        (status = 409, body = crate::ErrorBody)))]
pub(crate) async fn create_campaign(
    State(state): State<AppState>,
    caller: Caller,
    body: JsonBody<CampaignBody>,
) -> Result<(StatusCode, Json<serde_json::Value>), ApiError> {
    caller.require(Permission::Export)?;
    let body = body.parse()?;
    let access = caller.access(Some(body.purpose.clone()));
    let engine = state.engine.clone();
    let (record, ticket) = blocking(move || {
        let quiet_hours = match body.contact.quiet_hours {
            Some(text) => Some(
                cdp_engine::contact::QuietHours::try_from(text).map_err(|e| {
                    cdp_engine::EngineError::InvalidRequest(format!("contact.quiet_hours: {e}"))
                })?,
            ),
            None => None,
        };
        let contact = cdp_engine::contact::CampaignContact {
            caps: body
                .contact
                .caps
                .iter()
                .map(|c| cdp_engine::contact::FrequencyCap {
                    max: c.max,
                    window_days: c.window_days,
                })
                .collect(),
            quiet_hours,
        };
        let attribution = body
            .attribution
            .map(|a| cdp_engine::campaigns::Attribution {
                model: a.model.unwrap_or_default(),
                window_days: a.window_days.unwrap_or(7),
            });
        let cost = body.cost.unwrap_or(CostBody {
            total: None,
            per_contact: None,
            currency: None,
        });
        engine.create_campaign(
            CampaignInput {
                name: body.name,
                audience: body.audience,
                purpose: body.purpose,
                channel: body.channel,
                recipient: body.recipient,
                destination: body.destination,
                fields: body.fields,
                format: body.format,
                holdout: body.holdout,
                variants: body
                    .variants
                    .into_iter()
                    .map(|v| Variant {
                        name: v.name,
                        weight: v.weight,
                    })
                    .collect(),
                cost: CampaignCost {
                    total: cost.total,
                    per_contact: cost.per_contact,
                    currency: cost.currency.unwrap_or_else(|| "CNY".into()),
                },
                conversion: Conversion {
                    event: body.conversion.event,
                    within_days: body.conversion.within_days,
                },
                contact,
                attribution,
                schedule: body.schedule.map(Into::into),
            },
            &access,
        )
    })
    .await?;
    crate::routes::durable(ticket).await?;
    Ok((StatusCode::CREATED, as_json(record)?))
}

/// The campaigns, newest first.
#[utoipa::path(get, path = "/v1/campaigns", tag = "exports", security(("bearer" = [])),
    responses((status = 200, body = crate::schemas::CampaignList), (status = 403, body = crate::ErrorBody)))]
pub(crate) async fn list_campaigns(
    State(state): State<AppState>,
    caller: Caller,
) -> Result<Json<serde_json::Value>, ApiError> {
    caller.require(Permission::ReadExports)?;
    let engine = state.engine.clone();
    let campaigns = blocking(move || engine.campaigns()).await?;
    as_json(serde_json::json!({ "campaigns": campaigns }))
}

/// A campaign and its sends: each one's status, people contacted and held out.
#[utoipa::path(get, path = "/v1/campaigns/{id}", tag = "exports", security(("bearer" = [])),
    params(("id" = String, Path, description = "cmp_ and 16 hex digits")),
    responses((status = 200, body = crate::schemas::CampaignWithSends), (status = 400, body = crate::ErrorBody),
        (status = 403, body = crate::ErrorBody), (status = 404, body = crate::ErrorBody)))]
pub(crate) async fn get_campaign(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<serde_json::Value>, ApiError> {
    caller.require(Permission::ReadExports)?;
    let engine = state.engine.clone();
    as_json(blocking(move || engine.campaign_view(&id)).await?)
}

/// What `PATCH /v1/campaigns/{id}` changes.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct CampaignPatchBody {
    name: Option<String>,
    /// A new schedule; `null` removes it (the campaign then sends only when sent).
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<CampaignScheduleBody>, nullable)]
    schedule: Option<Option<CampaignScheduleBody>>,
    /// Pauses (true) or resumes (false) the schedule; resumed, it sends at its next time
    /// from now (missed times are not caught up).
    paused: Option<bool>,
}

/// A field that may be given as `null` (`Some(None)`) or left out (`None`).
fn present<'de, D: serde::Deserializer<'de>>(
    deserializer: D,
) -> Result<Option<Option<CampaignScheduleBody>>, D::Error> {
    Option::<CampaignScheduleBody>::deserialize(deserializer).map(Some)
}

/// Renames a campaign, sets or removes its schedule, pauses or resumes it (audited).
#[utoipa::path(patch, path = "/v1/campaigns/{id}", tag = "exports", security(("bearer" = [])),
    params(("id" = String, Path, description = "cmp_ and 16 hex digits")),
    request_body = CampaignPatchBody,
    responses((status = 200, body = crate::schemas::Campaign), (status = 400, body = crate::ErrorBody),
        (status = 403, body = crate::ErrorBody), (status = 404, body = crate::ErrorBody),
        (status = 409, description = "Pause or resume of a campaign without a schedule.", body = crate::ErrorBody)))]
pub(crate) async fn update_campaign(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    body: JsonBody<CampaignPatchBody>,
) -> Result<Json<serde_json::Value>, ApiError> {
    caller.require(Permission::Export)?;
    let body = body.parse()?;
    let actor = caller.0.sub.clone();
    let engine = state.engine.clone();
    let (record, ticket) = blocking(move || {
        engine.update_campaign(
            &id,
            cdp_engine::CampaignPatch {
                name: body.name,
                schedule: body.schedule.map(|s| s.map(Into::into)),
                paused: body.paused,
            },
            &actor,
        )
    })
    .await?;
    crate::routes::durable(ticket).await?;
    as_json(record)
}

/// Sends the campaign now: an export job of its audience, the holdout kept out, each row's
/// variant in its `arm` field. 202 with the job.
#[utoipa::path(post, path = "/v1/campaigns/{id}/send", tag = "exports", security(("bearer" = [])),
    params(("id" = String, Path)),
    responses((status = 202, body = crate::schemas::Export), (status = 400, body = crate::ErrorBody),
        (status = 403, body = crate::ErrorBody), (status = 404, body = crate::ErrorBody),
        (status = 409, body = crate::ErrorBody)))]
pub(crate) async fn send_campaign(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<(StatusCode, Json<serde_json::Value>), ApiError> {
    caller.require(Permission::Export)?;
    let engine = state.engine.clone();
    let job = blocking(move || engine.send_campaign(&id)).await?;
    Ok((StatusCode::ACCEPTED, as_json(job)?))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
pub(crate) struct ResultsQuery {
    /// A send of the campaign (`exp_...`), or `all`: every finished send together (each
    /// member once, converted within the window from the first send to the last one's end);
    /// default the latest finished send.
    export: Option<String>,
}

/// What a send did, measured against the holdout: per arm members, conversions, revenue;
/// per variant the uplift with its 95 % confidence interval and test, incremental revenue;
/// ROI and CAC. Aggregates only; arms below the minimum audience size withheld.
#[utoipa::path(get, path = "/v1/campaigns/{id}/results", tag = "exports", security(("bearer" = [])),
    params(("id" = String, Path), ResultsQuery),
    responses((status = 200, body = crate::schemas::CampaignResults), (status = 400, body = crate::ErrorBody),
        (status = 403, body = crate::ErrorBody), (status = 404, body = crate::ErrorBody),
        (status = 409, description = "No finished send yet.", body = crate::ErrorBody)))]
pub(crate) async fn campaign_results(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    axum::extract::Query(query): axum::extract::Query<ResultsQuery>,
) -> Result<Json<serde_json::Value>, ApiError> {
    caller.require(Permission::CountAudiences)?;
    let engine = state.engine.clone();
    let results = blocking(move || engine.campaign_results(&id, query.export.as_deref())).await?;
    as_json(results)
}
