//! Credentials: write keys for ingestion, bearer tokens (JWT) for management.

use axum::extract::FromRequestParts;
use axum::http::header::AUTHORIZATION;
use axum::http::request::Parts;
use base64::Engine as _;
use cdp_crypto::{TokenClaims, TokenError};

use crate::{ApiError, AppState, ErrorCode, Permission};

/// A caller authenticated by a bearer token.
#[derive(Debug, Clone)]
pub struct Caller(pub TokenClaims);

impl Caller {
    /// The caller as the policies and the audit log see it, reading for `purpose`.
    pub fn access(&self, purpose: Option<String>) -> cdp_engine::Access {
        cdp_engine::Access {
            actor: self.0.sub.clone(),
            caller: cdp_policy::CallerFacts {
                roles: self.0.roles.clone(),
                purposes: self.0.purposes.clone(),
            },
            purpose,
        }
    }

    /// Refuses with 403 unless one of the caller's roles holds `permission`.
    pub fn require(&self, permission: Permission) -> Result<(), ApiError> {
        if permission.granted_to(&self.0.roles) {
            Ok(())
        } else {
            Err(ApiError::new(
                ErrorCode::Forbidden,
                format!(
                    "this route needs one of the roles: {}",
                    permission.roles_text()
                ),
            ))
        }
    }
}

impl FromRequestParts<AppState> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let header = parts
            .headers
            .get(AUTHORIZATION)
            .and_then(|value| value.to_str().ok())
            .ok_or_else(|| {
                ApiError::new(
                    ErrorCode::Unauthorized,
                    "a bearer token is required (Authorization: Bearer <token>)",
                )
            })?;
        let token = header
            .strip_prefix("Bearer ")
            .or_else(|| header.strip_prefix("bearer "))
            .ok_or_else(|| {
                ApiError::new(ErrorCode::Unauthorized, "use Authorization: Bearer <token>")
            })?;
        let claims = state.token_key.verify(token.trim()).map_err(|error| {
            let message = match error {
                TokenError::Expired => "the token has expired",
                TokenError::WrongAudience => "the token was not issued for this API",
                TokenError::Invalid => "the token is malformed or its signature is invalid",
                TokenError::NotYetValid => {
                    "the token is not valid yet (its nbf or iat lies in the future)"
                }
                TokenError::LifetimeTooLong => {
                    "the token's lifetime (exp - iat) is longer than this server accepts (auth.max_token_lifetime_days)"
                }
            };
            ApiError::new(ErrorCode::Unauthorized, message)
        })?;
        Ok(Caller(claims))
    }
}

/// The write key of an ingestion request's `Authorization: Basic` header (Segment sends the
/// write key as the user name and an empty password).
pub fn basic_write_key(parts: &axum::http::HeaderMap) -> Result<Option<String>, ApiError> {
    let Some(value) = parts.get(AUTHORIZATION) else {
        return Ok(None);
    };
    let invalid = || {
        ApiError::new(
            ErrorCode::Unauthorized,
            "Authorization must be Basic with the write key as user name",
        )
    };
    let text = value.to_str().map_err(|_| invalid())?;
    let encoded = text
        .strip_prefix("Basic ")
        .or_else(|| text.strip_prefix("basic "))
        .ok_or_else(invalid)?;
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(encoded.trim())
        .map_err(|_| invalid())?;
    let decoded = String::from_utf8(decoded).map_err(|_| invalid())?;
    let user = decoded
        .split_once(':')
        .map_or(decoded.as_str(), |(user, _)| user);
    if user.is_empty() {
        return Err(invalid());
    }
    Ok(Some(user.to_string()))
}
