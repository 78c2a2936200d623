//! Credentials: write keys for ingestion; for management, bearer tokens (JWT) or the console's
//! session cookie of a named account.
//!
//! A cookie is sent by the browser on its own, so a request authenticated by one could be
//! forged by another site's page (CSRF). Three defences, each enough on its own in today's
//! browsers: the cookie is `SameSite=Strict`; every request that is not a read must carry the
//! session's `X-CSRF-Token` header (a page of another origin cannot read it, and cannot set a
//! custom header without a CORS preflight this server never grants); and such a request's
//! `Origin`, when the browser sends one, must be this server's own.

use axum::extract::FromRequestParts;
use axum::http::header::{AUTHORIZATION, COOKIE, HOST, ORIGIN};
use axum::http::request::Parts;
use axum::http::{HeaderMap, Method};
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
        if parts.headers.get(AUTHORIZATION).is_none()
            && let Some(token) = session_cookie(&parts.headers)
        {
            let signed_in = console_session(state, &token).await?;
            check_csrf(&parts.method, &parts.headers, &signed_in.session.csrf)?;
            return Ok(Caller(claims_of(&signed_in)));
        }
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

/// The name of the console's session cookie.
pub const SESSION_COOKIE: &str = "cdp_session";

/// The session token in the request's cookies, if any.
pub fn session_cookie(headers: &HeaderMap) -> Option<String> {
    headers
        .get_all(COOKIE)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, _)| *name == SESSION_COOKIE)
        .map(|(_, value)| value.to_string())
}

/// The live session of `token`, or 401.
pub async fn console_session(
    state: &AppState,
    token: &str,
) -> Result<cdp_engine::SignedIn, ApiError> {
    let engine = state.engine.clone();
    let token = token.to_string();
    crate::routes::profiles::blocking(move || engine.session(&token))
        .await?
        .ok_or_else(|| {
            ApiError::new(
                ErrorCode::Unauthorized,
                "the console session has ended (signed out, expired or unknown): sign in again",
            )
        })
}

/// Refuses a state-changing request without the session's CSRF token or from another origin.
pub fn check_csrf(method: &Method, headers: &HeaderMap, expected: &str) -> Result<(), ApiError> {
    if matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS) {
        return Ok(());
    }
    let given = headers
        .get("x-csrf-token")
        .and_then(|value| value.to_str().ok())
        .unwrap_or_default();
    let token_ok = given.len() == expected.len()
        && given
            .bytes()
            .zip(expected.bytes())
            .fold(0u8, |diff, (a, b)| diff | (a ^ b))
            == 0;
    let origin_ok = same_origin(headers);
    if token_ok && origin_ok {
        Ok(())
    } else {
        Err(ApiError::from_code(ErrorCode::CsrfRejected))
    }
}

/// Whether a request's `Origin`, when the browser sends one, is this server's own host.
pub fn same_origin(headers: &HeaderMap) -> bool {
    match headers.get(ORIGIN).and_then(|v| v.to_str().ok()) {
        None => true,
        Some(origin) => {
            let host = headers
                .get(HOST)
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default();
            let origin_host = origin
                .strip_prefix("http://")
                .or_else(|| origin.strip_prefix("https://"))
                .unwrap_or_default();
            !host.is_empty() && origin_host == host
        }
    }
}

/// A signed-in account as the policies and the audit log see a caller: its name is the
/// subject.
pub fn claims_of(signed_in: &cdp_engine::SignedIn) -> TokenClaims {
    let started = signed_in.session.started_at.unix_timestamp();
    TokenClaims {
        iss: "cdp-console".into(),
        aud: "cdp-console".into(),
        sub: signed_in.account.name.clone(),
        iat: started,
        exp: (signed_in.session.started_at + cdp_engine::accounts::SESSION_MAX).unix_timestamp(),
        nbf: None,
        roles: signed_in.account.roles.clone(),
        purposes: signed_in.account.purposes.clone(),
    }
}
