pub(crate) mod accounts;
pub(crate) mod audiences;
pub(crate) mod audit;
pub(crate) mod body;
pub(crate) mod browser;
pub(crate) mod campaigns;
pub(crate) mod consents;
pub(crate) mod destinations;
pub(crate) mod exports;
pub(crate) mod identity;
pub(crate) mod ingest;
pub(crate) mod policies;
pub(crate) mod profiles;
pub(crate) mod requests;
pub(crate) mod sensors;
pub(crate) mod sources;
pub(crate) mod system;

use cdp_engine::EngineError;
use cdp_store::StoreError;

use crate::{ApiError, ErrorCode};

/// Waits until an acknowledged write is durable: no answer is given before.
pub(crate) async fn durable(ticket: cdp_store::CommitTicket) -> Result<(), ApiError> {
    ticket.durable().await.map_err(|e| engine_error(e.into()))
}

/// The HTTP answer for an engine error.
pub(crate) fn engine_error(error: EngineError) -> ApiError {
    match error {
        EngineError::InvalidMessage {
            index,
            field,
            problem,
        } => {
            let mut details = serde_json::json!({ "field": field, "problem": problem });
            if let Some(index) = index {
                details["index"] = index.into();
            }
            ApiError::new(ErrorCode::InvalidMessage, format!("{field}: {problem}"))
                .with_details(details)
        }
        EngineError::InvalidRequest(message) => ApiError::new(ErrorCode::BadRequest, message),
        EngineError::UnknownPurpose { purpose, allowed } => {
            let message = format!(
                "purpose {purpose:?} is not a purpose of the taxonomy; purposes are {}",
                allowed.join(", ")
            );
            ApiError::new(ErrorCode::UnknownPurpose, message)
                .with_details(serde_json::json!({ "purpose": purpose, "allowed": allowed }))
        }
        EngineError::UnknownWriteKey => ApiError::new(ErrorCode::Unauthorized, "unknown write key"),
        EngineError::NotFound(what) => {
            ApiError::new(ErrorCode::NotFound, format!("{what} not found"))
        }
        EngineError::Conflict(message) => ApiError::new(ErrorCode::Conflict, message),
        EngineError::InvalidQuery(error) => ApiError::new(
            ErrorCode::InvalidQuery,
            format!(
                "the audience query is invalid at {}: {}",
                error.at, error.message
            ),
        )
        .with_details(serde_json::json!({ "at": error.at, "problem": error.message })),
        EngineError::Index(message) => {
            tracing::error!(error = %message, "search index");
            ApiError::from_code(ErrorCode::IndexUnavailable)
        }
        EngineError::Job(message) => {
            tracing::error!(error = %message, "background job");
            ApiError::from_code(ErrorCode::JobUnavailable)
        }
        EngineError::Io { context, source } => {
            tracing::error!(error = %source, context, "data directory I/O");
            ApiError::from_code(ErrorCode::Internal)
        }
        EngineError::PurposeRequired => ApiError::new(
            ErrorCode::PurposeRequired,
            "state the purpose of this read with ?purpose= (e.g. customer_service)",
        ),
        EngineError::Denied(decision) => {
            let message = format!("denied by policy: {}", decision.denial_summary());
            let details = serde_json::to_value(&*decision).unwrap_or_default();
            ApiError::new(ErrorCode::PolicyDenied, message).with_details(details)
        }
        EngineError::Store(StoreError::Unavailable(_)) => {
            ApiError::from_code(ErrorCode::StoreUnavailable)
        }
        // The database did not answer (down, restarting, unreachable): the caller may retry.
        EngineError::Store(error @ StoreError::Database { .. }) => {
            tracing::error!(error = %error, "database");
            ApiError::from_code(ErrorCode::StoreUnavailable)
        }
        other => {
            tracing::error!(error = %other, "request failed");
            ApiError::from_code(ErrorCode::Internal)
        }
    }
}

/// A person, by profile id or by identifier, as consent and request bodies name them.
#[derive(Debug, serde::Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct SubjectBody {
    profile_id: Option<String>,
    #[serde(rename = "type")]
    kind: Option<String>,
    value: Option<String>,
    /// Region for a phone number without country code.
    region: Option<String>,
}

impl SubjectBody {
    /// Exactly one of `profile_id` or `type` + `value`.
    pub(crate) fn parse(self) -> Result<cdp_engine::ConsentSubject, ApiError> {
        match (self.profile_id, self.kind, self.value) {
            (Some(id), None, None) => Ok(cdp_engine::ConsentSubject::Profile(profiles::parse_id(
                &id,
            )?)),
            (None, Some(kind), Some(value)) => Ok(cdp_engine::ConsentSubject::Identifier {
                kind: kind.parse::<cdp_core::IdentifierType>().map_err(|_| {
                    ApiError::new(
                        ErrorCode::BadRequest,
                        "subject.type is not an identifier type",
                    )
                })?,
                value,
                region: self.region,
            }),
            _ => Err(ApiError::new(
                ErrorCode::BadRequest,
                "subject is {\"profile_id\": ...} or {\"type\": ..., \"value\": ...}",
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Each engine failure that is not the caller's says what failed and gets its own status:
    /// a job that cannot start is worth a retry (503), a data-directory I/O failure is ours
    /// (500, logged with its context), the index being away is a 503 of its own.
    #[test]
    fn engine_failures_map_to_their_codes() {
        let cases = [
            (
                EngineError::Job("cannot start".into()),
                ErrorCode::JobUnavailable,
                503,
            ),
            (
                EngineError::Io {
                    context: "cannot write the export file",
                    source: std::io::Error::other("disk full"),
                },
                ErrorCode::Internal,
                500,
            ),
            (
                EngineError::Index("not open".into()),
                ErrorCode::IndexUnavailable,
                503,
            ),
            (
                EngineError::InvalidRequest("fields".into()),
                ErrorCode::BadRequest,
                400,
            ),
            (
                EngineError::NotFound("export x".into()),
                ErrorCode::NotFound,
                404,
            ),
        ];
        for (error, code, status) in cases {
            let answer = engine_error(error);
            assert_eq!(answer.code, code);
            assert_eq!(answer.code.status().as_u16(), status);
        }
    }
}
