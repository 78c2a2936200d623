//! The one table of stable error codes at the HTTP edge.
//!
//! Every error answer is `{"error": {"code", "message", "details"?}}`. Codes are part of the
//! contract (clients branch on them): never rename one. `docs/API.md` lists them; a test keeps
//! that list and this table in step.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use utoipa::ToSchema;

macro_rules! error_codes {
    ($($variant:ident => ($code:literal, $status:ident, $meaning:literal),)*) => {
        /// A stable error code, its HTTP status and what it means.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum ErrorCode { $($variant,)* }

        impl ErrorCode {
            pub const ALL: &'static [ErrorCode] = &[$(ErrorCode::$variant,)*];

            pub const fn as_str(self) -> &'static str {
                match self { $(ErrorCode::$variant => $code,)* }
            }

            pub const fn status(self) -> StatusCode {
                match self { $(ErrorCode::$variant => StatusCode::$status,)* }
            }

            /// The default message, also the documentation of the code.
            pub const fn meaning(self) -> &'static str {
                match self { $(ErrorCode::$variant => $meaning,)* }
            }
        }
    };
}

error_codes! {
    BadRequest => ("bad_request", BAD_REQUEST, "The request is malformed."),
    InvalidJson => ("invalid_json", BAD_REQUEST, "The body is not valid JSON of the expected shape."),
    InvalidMessage => ("invalid_message", BAD_REQUEST, "A message of the request is invalid; details name its index and field, and nothing of the request was stored."),
    InvalidQuery => ("invalid_query", BAD_REQUEST, "The audience query does not parse or names an unknown field; details say where (`at`: a character offset or a JSON path)."),
    UnknownPurpose => ("unknown_purpose", BAD_REQUEST, "The purpose is not one of the taxonomy's; details list those there are."),
    InvalidEncoding => ("invalid_encoding", BAD_REQUEST, "The body's Content-Encoding does not decode (broken gzip)."),
    Unauthorized => ("unauthorized", UNAUTHORIZED, "Credentials are missing or invalid."),
    SignInFailed => ("sign_in_failed", UNAUTHORIZED, "The name, password or one-time code is wrong (which is not said)."),
    CodeRequired => ("code_required", UNAUTHORIZED, "The password is right; the account also needs its one-time code (`code`)."),
    AccountLocked => ("account_locked", TOO_MANY_REQUESTS, "Too many failed sign-ins: the account is locked for a while (details say until when) or until an administrator unlocks it."),
    Forbidden => ("forbidden", FORBIDDEN, "The credentials do not allow this request."),
    OriginNotAllowed => ("origin_not_allowed", FORBIDDEN, "A web page of an origin the source does not list in its allowed_origins sent with its write key (PATCH /v1/sources/{id} to add it)."),
    CsrfRejected => ("csrf_rejected", FORBIDDEN, "A console request that changes something must carry the session's X-CSRF-Token header and come from this server's own pages."),
    PurposeRequired => ("purpose_required", FORBIDDEN, "A read of personal data must state its purpose (`purpose` query parameter)."),
    PolicyDenied => ("policy_denied", FORBIDDEN, "The policies deny this use of personal data; details hold the decision with its reasons and articles."),
    RouteNotFound => ("route_not_found", NOT_FOUND, "No route has this path."),
    NotFound => ("not_found", NOT_FOUND, "The resource does not exist."),
    MethodNotAllowed => ("method_not_allowed", METHOD_NOT_ALLOWED, "The route does not accept this HTTP method."),
    Conflict => ("conflict", CONFLICT, "The request conflicts with the current state."),
    PayloadTooLarge => ("payload_too_large", PAYLOAD_TOO_LARGE, "The body exceeds the size limit."),
    UriTooLong => ("uri_too_long", URI_TOO_LONG, "The request target (path and query) is longer than 8 KiB."),
    HeadersTooLarge => ("headers_too_large", REQUEST_HEADER_FIELDS_TOO_LARGE, "The request has more than 64 headers or more than 32 KiB of them."),
    UnsupportedMediaType => ("unsupported_media_type", UNSUPPORTED_MEDIA_TYPE, "The body's content type or encoding is not accepted."),
    Unprocessable => ("unprocessable", UNPROCESSABLE_ENTITY, "The body is well-formed but cannot be processed."),
    RequestTimeout => ("request_timeout", REQUEST_TIMEOUT, "The request body did not arrive in time."),
    IndexUnavailable => ("index_unavailable", SERVICE_UNAVAILABLE, "The search index cannot answer now; retry later."),
    StoreUnavailable => ("store_unavailable", SERVICE_UNAVAILABLE, "The store cannot take requests now; retry later."),
    JobUnavailable => ("job_unavailable", SERVICE_UNAVAILABLE, "A background job (an export) could not be started; retry later."),
    Timeout => ("timeout", SERVICE_UNAVAILABLE, "The server did not finish the request in time; retry later."),
    Internal => ("internal", INTERNAL_SERVER_ERROR, "An internal error; it has been logged."),
}

/// The JSON body of every error answer.
#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorDetail {
    /// A stable code from the table in docs/API.md.
    #[schema(example = "route_not_found")]
    pub code: &'static str,
    /// What went wrong, for people. Names fields and ids, never personal values.
    pub message: String,
    /// Machine-readable specifics (the field, the limit...), when there are any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub details: Option<serde_json::Value>,
}

/// An error answer. Handlers return `Result<_, ApiError>`.
#[derive(Debug)]
pub struct ApiError {
    pub code: ErrorCode,
    pub message: String,
    pub details: Option<serde_json::Value>,
}

/// Marks responses built from [`ApiError`], so the error normaliser leaves them alone.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ApiErrorMarker;

impl ApiError {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
            details: None,
        }
    }

    pub fn from_code(code: ErrorCode) -> Self {
        Self::new(code, code.meaning())
    }

    pub fn with_details(mut self, details: serde_json::Value) -> Self {
        self.details = Some(details);
        self
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = ErrorBody {
            error: ErrorDetail {
                code: self.code.as_str(),
                message: self.message,
                details: self.details,
            },
        };
        let mut response = (self.code.status(), Json(body)).into_response();
        response.extensions_mut().insert(ApiErrorMarker);
        response
    }
}

impl ErrorCode {
    /// The code for an error status produced outside our handlers (axum rejections, tower
    /// layers), so that every error answer has the same shape.
    pub(crate) fn for_status(status: StatusCode) -> Self {
        match status {
            StatusCode::NOT_FOUND => Self::RouteNotFound,
            StatusCode::METHOD_NOT_ALLOWED => Self::MethodNotAllowed,
            StatusCode::PAYLOAD_TOO_LARGE => Self::PayloadTooLarge,
            StatusCode::URI_TOO_LONG => Self::UriTooLong,
            StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE => Self::HeadersTooLarge,
            StatusCode::UNSUPPORTED_MEDIA_TYPE => Self::UnsupportedMediaType,
            StatusCode::UNPROCESSABLE_ENTITY => Self::Unprocessable,
            StatusCode::UNAUTHORIZED => Self::Unauthorized,
            StatusCode::FORBIDDEN => Self::Forbidden,
            StatusCode::CONFLICT => Self::Conflict,
            StatusCode::REQUEST_TIMEOUT => Self::RequestTimeout,
            StatusCode::SERVICE_UNAVAILABLE => Self::Timeout,
            status if status.is_client_error() => Self::BadRequest,
            _ => Self::Internal,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_unique_snake_case_and_statuses_are_errors() {
        let mut seen = std::collections::HashSet::new();
        for code in ErrorCode::ALL {
            assert!(seen.insert(code.as_str()), "duplicate {}", code.as_str());
            assert!(
                code.as_str()
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b == b'_')
            );
            assert!(code.status().is_client_error() || code.status().is_server_error());
            assert!(code.meaning().ends_with('.'));
        }
    }
}
