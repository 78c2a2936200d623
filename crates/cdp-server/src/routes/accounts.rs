//! Operator accounts (`/v1/accounts`, admin) and console sessions (`/v1/session`).

use axum::Json;
use axum::extract::{Path, State};
use axum::http::header::SET_COOKIE;
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use cdp_engine::{AccountRecord, NewAccount, SignInRefusal};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::auth::{Caller, SESSION_COOKIE, check_csrf, console_session, session_cookie};
use crate::routes::body::JsonBody;
use crate::routes::profiles::blocking;
use crate::{ApiError, AppState, ErrorCode, Permission};

fn rfc3339(at: time::OffsetDateTime) -> String {
    at.format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct CreateAccount {
    /// 1-64 letters, digits or `. _ - @`; recorded as the actor of everything the account does.
    name: String,
    /// admin, dpo, marketer, analyst, customer_service, auditor.
    roles: Vec<String>,
    /// Purposes the operator may state (narrows what the roles allow).
    #[serde(default)]
    purposes: Vec<String>,
    /// At least 12 characters; stored only as an argon2id hash.
    password: String,
    /// Give the account a one-time-code second factor (TOTP, RFC 6238).
    #[serde(default)]
    totp: bool,
}

#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct AccountAnswer {
    name: String,
    roles: Vec<String>,
    purposes: Vec<String>,
    created_at: String,
    totp: bool,
    disabled: bool,
    /// Until when sign-ins are refused after repeated failures.
    #[serde(skip_serializing_if = "Option::is_none")]
    locked_until: Option<String>,
    /// The TOTP secret (base32) and its `otpauth://` URI: shown only at creation.
    #[serde(skip_serializing_if = "Option::is_none")]
    totp_secret: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    totp_uri: Option<String>,
}

/// Percent-encodes a URI component (account names may be Chinese).
fn percent_encode(value: &str) -> String {
    value
        .bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                char::from(b).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

fn account_answer(account: &AccountRecord, totp_secret: Option<String>) -> AccountAnswer {
    let now = time::OffsetDateTime::now_utc();
    AccountAnswer {
        name: account.name.clone(),
        roles: account.roles.clone(),
        purposes: account.purposes.clone(),
        created_at: rfc3339(account.created_at),
        totp: account.has_totp(),
        disabled: account.disabled,
        locked_until: account.locked_until.filter(|u| *u > now).map(rfc3339),
        totp_uri: totp_secret.as_ref().map(|secret| {
            format!(
                "otpauth://totp/cdp:{}?secret={secret}&issuer=cdp&algorithm=SHA1&digits=6&period=30",
                percent_encode(&account.name)
            )
        }),
        totp_secret,
    }
}

/// Creates an operator account for the console.
#[utoipa::path(post, path = "/v1/accounts", tag = "accounts", request_body = CreateAccount,
    security(("bearer" = [])),
    responses(
        (status = 201, description = "Created; a TOTP secret, when asked for, is in this answer only.", body = AccountAnswer),
        (status = 400, body = crate::ErrorBody), (status = 401, body = crate::ErrorBody),
        (status = 403, body = crate::ErrorBody), (status = 409, description = "The name is taken.", body = crate::ErrorBody),
    ))]
pub(crate) async fn create(
    State(state): State<AppState>,
    caller: Caller,
    body: JsonBody<CreateAccount>,
) -> Result<(StatusCode, Json<AccountAnswer>), ApiError> {
    caller.require(Permission::ManageAccounts)?;
    let body = body.parse()?;
    let engine = state.engine.clone();
    let actor = caller.0.sub.clone();
    let (account, secret, ticket) = blocking(move || {
        engine.create_account(
            &actor,
            NewAccount {
                name: body.name,
                roles: body.roles,
                purposes: body.purposes,
                password: body.password,
                totp: body.totp,
            },
        )
    })
    .await?;
    crate::routes::durable(ticket).await?;
    tracing::info!(account = %account.name, subject = %caller.0.sub, "account created");
    Ok((StatusCode::CREATED, Json(account_answer(&account, secret))))
}

/// Lists operator accounts (never their password hashes or secrets).
#[utoipa::path(get, path = "/v1/accounts", tag = "accounts", security(("bearer" = [])),
    responses((status = 200, body = Vec<AccountAnswer>), (status = 401, body = crate::ErrorBody), (status = 403, body = crate::ErrorBody)))]
pub(crate) async fn list(
    State(state): State<AppState>,
    caller: Caller,
) -> Result<Json<Vec<AccountAnswer>>, ApiError> {
    caller.require(Permission::ManageAccounts)?;
    let engine = state.engine.clone();
    let accounts = blocking(move || engine.accounts()).await?;
    Ok(Json(
        accounts.iter().map(|a| account_answer(a, None)).collect(),
    ))
}

/// An administrator's change to an account: permission, the engine call, durability, 204.
async fn change_account(
    state: AppState,
    caller: Caller,
    change: impl FnOnce(
        &cdp_engine::Engine,
        &str,
    ) -> Result<cdp_store::CommitTicket, cdp_engine::EngineError>
    + Send
    + 'static,
) -> Result<StatusCode, ApiError> {
    caller.require(Permission::ManageAccounts)?;
    let engine = state.engine.clone();
    let actor = caller.0.sub.clone();
    let ticket = blocking(move || change(&engine, &actor)).await?;
    crate::routes::durable(ticket).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Disables an account and ends its sessions (kept, so the audit log still names it).
#[utoipa::path(delete, path = "/v1/accounts/{name}", tag = "accounts", security(("bearer" = [])),
    params(("name" = String, Path)),
    responses((status = 204), (status = 401, body = crate::ErrorBody), (status = 403, body = crate::ErrorBody), (status = 404, body = crate::ErrorBody)))]
pub(crate) async fn disable(
    State(state): State<AppState>,
    caller: Caller,
    Path(name): Path<String>,
) -> Result<StatusCode, ApiError> {
    change_account(state, caller, move |engine, actor| {
        engine.disable_account(actor, &name)
    })
    .await
}

/// Lifts a lock-out.
#[utoipa::path(post, path = "/v1/accounts/{name}/unlock", tag = "accounts", security(("bearer" = [])),
    params(("name" = String, Path)),
    responses((status = 204), (status = 401, body = crate::ErrorBody), (status = 403, body = crate::ErrorBody), (status = 404, body = crate::ErrorBody)))]
pub(crate) async fn unlock(
    State(state): State<AppState>,
    caller: Caller,
    Path(name): Path<String>,
) -> Result<StatusCode, ApiError> {
    change_account(state, caller, move |engine, actor| {
        engine.unlock_account(actor, &name)
    })
    .await
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct SignInBody {
    name: String,
    password: String,
    /// The 6-digit one-time code, for accounts with a second factor.
    code: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct SessionAnswer {
    name: String,
    roles: Vec<String>,
    purposes: Vec<String>,
    /// The purposes this operator may state when reading personal data (the taxonomy's,
    /// narrowed by roles.yaml and the account's own list).
    allowed_purposes: Vec<String>,
    /// Send it back as `X-CSRF-Token` with every request that changes something.
    csrf_token: String,
    /// When the session ends if unused (it is extended by use, up to `ends_at`).
    idle_until: String,
    ends_at: String,
}

fn session_answer(state: &AppState, signed_in: &cdp_engine::SignedIn) -> SessionAnswer {
    let session = &signed_in.session;
    let policies = state.engine.policies();
    let caller = cdp_policy::CallerFacts {
        roles: signed_in.account.roles.clone(),
        purposes: signed_in.account.purposes.clone(),
    };
    let allowed_purposes = policies
        .taxonomy
        .purposes
        .keys()
        .filter(|purpose| policies.caller_may_use(&caller, purpose))
        .cloned()
        .collect();
    SessionAnswer {
        name: signed_in.account.name.clone(),
        roles: signed_in.account.roles.clone(),
        purposes: signed_in.account.purposes.clone(),
        allowed_purposes,
        csrf_token: session.csrf.clone(),
        idle_until: rfc3339(session.last_seen + cdp_engine::accounts::SESSION_IDLE),
        ends_at: rfc3339(session.started_at + cdp_engine::accounts::SESSION_MAX),
    }
}

/// Whether the browser reached us over TLS (a TLS-terminating proxy says so): the cookie is
/// then `Secure`, never sent over plain HTTP.
pub(crate) fn over_tls(headers: &HeaderMap) -> bool {
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_ascii_lowercase()
    };
    header("x-forwarded-proto") == "https" || header("forwarded").contains("proto=https")
}

fn cookie(value: &str, max_age: i64, secure: bool) -> HeaderValue {
    let secure = if secure { "; Secure" } else { "" };
    // The token is hex: nothing in it needs quoting. The value is built from it alone.
    HeaderValue::from_str(&format!(
        "{SESSION_COOKIE}={value}; Path=/; HttpOnly; SameSite=Strict; Max-Age={max_age}{secure}"
    ))
    .unwrap_or_else(|_| HeaderValue::from_static("cdp_session=; Max-Age=0"))
}

/// Signs in to the console: answers the session (with its CSRF token) and sets the
/// `cdp_session` cookie (HttpOnly, SameSite=Strict, Secure over TLS).
#[utoipa::path(post, path = "/v1/session", tag = "accounts", request_body = SignInBody,
    responses(
        (status = 200, body = SessionAnswer),
        (status = 400, body = crate::ErrorBody),
        (status = 401, description = "`sign_in_failed` or `code_required`.", body = crate::ErrorBody),
        (status = 429, description = "`account_locked`.", body = crate::ErrorBody),
    ))]
pub(crate) async fn sign_in(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: JsonBody<SignInBody>,
) -> Result<Response, ApiError> {
    // Another site's page must not sign a browser in to an account of its choosing (login
    // CSRF: the victim would then act, and be audited, as the attacker's account).
    if !crate::auth::same_origin(&headers) {
        return Err(ApiError::from_code(ErrorCode::CsrfRejected));
    }
    let body = body.parse()?;
    let engine = state.engine.clone();
    let outcome =
        blocking(move || engine.sign_in(&body.name, &body.password, body.code.as_deref())).await?;
    match outcome {
        Ok((token, signed_in)) => {
            tracing::info!(account = %signed_in.account.name, "signed in");
            let max_age = cdp_engine::accounts::SESSION_MAX.whole_seconds();
            let mut response = Json(session_answer(&state, &signed_in)).into_response();
            response
                .headers_mut()
                .insert(SET_COOKIE, cookie(&token, max_age, over_tls(&headers)));
            Ok(response)
        }
        Err(SignInRefusal::Failed) => Err(ApiError::from_code(ErrorCode::SignInFailed)),
        Err(SignInRefusal::CodeRequired) => Err(ApiError::from_code(ErrorCode::CodeRequired)),
        Err(SignInRefusal::Locked { until }) => Err(ApiError::new(
            ErrorCode::AccountLocked,
            format!(
                "too many failed sign-ins: this account is locked until {}",
                rfc3339(until)
            ),
        )
        .with_details(serde_json::json!({ "locked_until": rfc3339(until) }))),
    }
}

/// The signed-in operator and the session's CSRF token (the console asks at every start).
#[utoipa::path(get, path = "/v1/session", tag = "accounts",
    responses((status = 200, body = SessionAnswer), (status = 401, body = crate::ErrorBody)))]
pub(crate) async fn current(
    State(state): State<AppState>,
    headers: HeaderMap,
) -> Result<Json<SessionAnswer>, ApiError> {
    let token = session_cookie(&headers)
        .ok_or_else(|| ApiError::new(ErrorCode::Unauthorized, "not signed in"))?;
    let signed_in = console_session(&state, &token).await?;
    Ok(Json(session_answer(&state, &signed_in)))
}

/// Signs out: ends the session and clears the cookie.
#[utoipa::path(delete, path = "/v1/session", tag = "accounts",
    responses((status = 204), (status = 401, body = crate::ErrorBody), (status = 403, body = crate::ErrorBody)))]
pub(crate) async fn sign_out(
    State(state): State<AppState>,
    method: axum::http::Method,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let token = session_cookie(&headers)
        .ok_or_else(|| ApiError::new(ErrorCode::Unauthorized, "not signed in"))?;
    let signed_in = console_session(&state, &token).await?;
    check_csrf(&method, &headers, &signed_in.session.csrf)?;
    let engine = state.engine.clone();
    blocking(move || engine.sign_out(&token)).await?;
    let mut response = StatusCode::NO_CONTENT.into_response();
    response
        .headers_mut()
        .insert(SET_COOKIE, cookie("", 0, over_tls(&headers)));
    Ok(response)
}
