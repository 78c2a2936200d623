//! The policies: `GET /v1/policies`, `POST /v1/policies/evaluate`, `GET /v1/policies/ropa`.

use axum::Json;
use axum::extract::State;
use cdp_engine::EvaluateSubject;
use cdp_policy::{Action, CallerFacts, DecisionRequest, RecipientFacts, SubjectFacts};
use serde::Deserialize;
use utoipa::ToSchema;

use crate::auth::Caller;
use crate::routes::body::JsonBody;
use crate::routes::profiles::{as_json, blocking, parse_id};
use crate::{ApiError, AppState, ErrorCode, Permission};

/// The loaded policies: version, jurisdictions with their rules and citations, taxonomy,
/// field map and roles.
#[utoipa::path(get, operation_id = "show_policies", path = "/v1/policies", tag = "policies", security(("bearer" = [])),
    responses((status = 200, body = crate::schemas::PoliciesView), (status = 403, body = crate::ErrorBody)))]
pub(crate) async fn show(
    State(state): State<AppState>,
    caller: Caller,
) -> Result<Json<serde_json::Value>, ApiError> {
    caller.require(Permission::ReadPolicies)?;
    let policies = state.engine.policies();
    as_json(serde_json::json!({
        "version": policies.version,
        "origin": policies.origin,
        "jurisdictions": policies.jurisdictions,
        "taxonomy": {
            "data_categories": policies.taxonomy.data_categories,
            "purposes": policies.taxonomy.purposes,
            "consent_categories": policies.taxonomy.consent_categories,
        },
        "fields": policies.fields.fields,
        "roles": policies.roles.roles,
    }))
}

/// A hypothetical request: exactly one of `subject` (facts) or `profile_id` (a real person,
/// whose facts are read; the evaluation is audited).
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct EvaluateBody {
    /// read, audience, export or publish.
    #[schema(value_type = String)]
    action: Action,
    purpose: String,
    /// Roles and token purposes to check; absent: not checked.
    #[schema(value_type = Option<Object>)]
    caller: Option<CallerFacts>,
    #[schema(value_type = Option<Object>)]
    recipient: Option<RecipientFacts>,
    #[serde(default)]
    fields: Vec<String>,
    /// Sensitive categories the selection reveals (`user.health`), as an audience selecting by
    /// them would state.
    #[serde(default)]
    inferred: Vec<String>,
    #[schema(value_type = Option<Object>)]
    subject: Option<SubjectFacts>,
    profile_id: Option<String>,
}

/// Dry run for the DPO: the decision, its obligations and its reasons with citations.
#[utoipa::path(post, operation_id = "evaluate_policy", path = "/v1/policies/evaluate", tag = "policies", security(("bearer" = [])),
    request_body = EvaluateBody,
    responses((status = 200, description = "The decision (allow or deny alike).", body = crate::schemas::Evaluation),
        (status = 400, body = crate::ErrorBody), (status = 403, body = crate::ErrorBody)))]
pub(crate) async fn evaluate(
    State(state): State<AppState>,
    caller: Caller,
    body: JsonBody<EvaluateBody>,
) -> Result<Json<serde_json::Value>, ApiError> {
    caller.require(Permission::EvaluatePolicies)?;
    let body = body.parse()?;
    let subject = match (body.subject, body.profile_id) {
        (Some(facts), None) => EvaluateSubject::Facts(facts),
        (None, Some(id)) => EvaluateSubject::Profile(parse_id(&id)?),
        (None, None) => EvaluateSubject::Facts(SubjectFacts::default()),
        (Some(_), Some(_)) => {
            return Err(ApiError::new(
                ErrorCode::BadRequest,
                "give subject facts or a profile_id, not both",
            ));
        }
    };
    let request = DecisionRequest {
        action: body.action,
        purpose: body.purpose,
        caller: body.caller,
        recipient: body.recipient,
        fields: body.fields,
        inferred: body.inferred,
    };
    let engine = state.engine.clone();
    let actor = caller.0.sub.clone();
    let (decision, facts) = blocking(move || engine.evaluate(&request, subject, &actor)).await?;
    // Facts of a real person are summarised, never returned whole (they hold consent records).
    as_json(serde_json::json!({
        "decision": decision,
        "subject": {
            "residency": facts.residency,
            "regions": facts.regions,
            "age": facts.age,
            "restricted": facts.restricted,
            "consent_records": facts.consents.len(),
        },
    }))
}

/// The record of processing activities (GDPR Art 30, PIPL), markdown, from the policies and
/// the registered recipients.
#[utoipa::path(get, operation_id = "policy_ropa", path = "/v1/policies/ropa", tag = "policies", security(("bearer" = [])),
    responses((status = 200, description = "`{\"markdown\": ...}`", body = crate::schemas::Ropa), (status = 403, body = crate::ErrorBody)))]
pub(crate) async fn ropa(
    State(state): State<AppState>,
    caller: Caller,
) -> Result<Json<serde_json::Value>, ApiError> {
    caller.require(Permission::ReadPolicies)?;
    let now = time::OffsetDateTime::now_utc()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default();
    let engine = state.engine.clone();
    let recipients = blocking(move || engine.recipients()).await?;
    let recipients: Vec<cdp_policy::RopaRecipient> = recipients
        .iter()
        .map(cdp_engine::RecipientRecord::ropa)
        .collect();
    let markdown = state.engine.policies().ropa(&recipients, &now);
    as_json(serde_json::json!({ "markdown": markdown }))
}

/// The golden cases of the policies in force (the built-in ones, or the `tests/` beside a
/// policy directory) run now: how many pass, and each failure.
#[utoipa::path(get, operation_id = "policy_golden_cases", path = "/v1/policies/golden", tag = "policies", security(("bearer" = [])),
    responses((status = 200, body = crate::schemas::GoldenRun), (status = 403, body = crate::ErrorBody)))]
pub(crate) async fn golden(
    State(state): State<AppState>,
    caller: Caller,
) -> Result<Json<serde_json::Value>, ApiError> {
    caller.require(Permission::ReadPolicies)?;
    let policies = state.engine.policies().clone();
    let report = tokio::task::spawn_blocking(move || {
        cdp_policy::golden::cases_for(&policies).map(|files| {
            let cases: usize = files.iter().map(|(_, file)| file.cases.len()).sum();
            (
                files.len(),
                cases,
                cdp_policy::golden::run(&policies, &files),
            )
        })
    })
    .await
    .map_err(|_| ApiError::from_code(ErrorCode::Internal))?
    .map_err(|error| ApiError::new(ErrorCode::Unprocessable, error.to_string()))?;
    let (files, cases, report) = report;
    as_json(serde_json::json!({
        "files": files,
        "cases": cases,
        "passed": report.passed,
        "failures": report.failures,
    }))
}
