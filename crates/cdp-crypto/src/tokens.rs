//! Management-API tokens (JWT): a token key file, issuing and verifying.
//!
//! The token key is separate from the master keyring so that `cdp token issue` can run while
//! `cdp serve` holds the data directory: it reads only this file. EdDSA (Ed25519) by default;
//! HS256 when tokens must be issued by another system sharing the secret.
//!
//! Verification accepts exactly the configured algorithm (so `alg: none` and algorithm
//! confusion are refused), and requires `iss`, `aud`, `exp`, `sub`.

use std::path::{Path, PathBuf};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use ring::signature::{Ed25519KeyPair, KeyPair};
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use crate::KeyringError;

const FORMAT: &str = "cdp-token-key/1";
pub const DEFAULT_ISSUER: &str = "cdp";
pub const DEFAULT_AUDIENCE: &str = "cdp-api";

/// Token signing algorithm.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum TokenAlgorithm {
    EdDSA,
    HS256,
}

/// Claims of a management token.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenClaims {
    pub iss: String,
    pub aud: String,
    /// Who the token is for (an operator, a service); recorded in the audit log.
    pub sub: String,
    pub iat: i64,
    pub exp: i64,
    /// Not valid before (optional; checked when present).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nbf: Option<i64>,
    pub roles: Vec<String>,
    /// Purposes the holder may state when reading personal data.
    #[serde(default)]
    pub purposes: Vec<String>,
}

/// Why a token was refused. Deliberately coarse: details help attackers more than callers.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    #[error("the token has expired")]
    Expired,
    #[error("the token is not valid for this API (issuer or audience)")]
    WrongAudience,
    #[error("the token is malformed or its signature is invalid")]
    Invalid,
    /// `nbf` or `iat` lies in the future (beyond the leeway for clock drift).
    #[error("the token is not valid yet")]
    NotYetValid,
    /// `exp - iat` is longer than the server accepts: a leaked long-lived token is a standing
    /// key to personal data, whoever signed it.
    #[error("the token's lifetime is longer than this server accepts")]
    LifetimeTooLong,
}

/// The longest token lifetime a server accepts unless configured otherwise (`cdp token issue`
/// caps `--ttl` at the same).
pub const DEFAULT_MAX_TOKEN_LIFETIME_SECONDS: i64 = 30 * 24 * 3600;

/// Seconds of clock drift allowed on `exp`, `nbf` and `iat`.
const LEEWAY_SECONDS: i64 = 30;

#[derive(Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
struct TokenKeyFile {
    format: String,
    algorithm: TokenAlgorithm,
    issuer: String,
    audience: String,
    /// EdDSA: PKCS#8 of the key pair; HS256: the shared secret. Base64.
    secret: Zeroizing<String>,
}

/// The token signing and verification key.
pub struct TokenKey {
    algorithm: TokenAlgorithm,
    issuer: String,
    audience: String,
    encoding: EncodingKey,
    decoding: DecodingKey,
    path: Option<PathBuf>,
    /// Tokens whose `exp - iat` exceeds this are refused.
    max_lifetime_seconds: i64,
}

impl std::fmt::Debug for TokenKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenKey")
            .field("algorithm", &self.algorithm)
            .field("issuer", &self.issuer)
            .field("audience", &self.audience)
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

impl TokenKey {
    fn from_parts(
        algorithm: TokenAlgorithm,
        issuer: String,
        audience: String,
        secret: &[u8],
        path: Option<PathBuf>,
    ) -> Result<Self, String> {
        let (encoding, decoding) = match algorithm {
            TokenAlgorithm::EdDSA => {
                let pair = Ed25519KeyPair::from_pkcs8(secret)
                    .map_err(|_| "secret is not an Ed25519 PKCS#8 key".to_string())?;
                (
                    EncodingKey::from_ed_der(secret),
                    DecodingKey::from_ed_der(pair.public_key().as_ref()),
                )
            }
            TokenAlgorithm::HS256 => {
                if secret.len() < 32 {
                    return Err("an HS256 secret must be at least 32 bytes".into());
                }
                (
                    EncodingKey::from_secret(secret),
                    DecodingKey::from_secret(secret),
                )
            }
        };
        Ok(Self {
            algorithm,
            issuer,
            audience,
            encoding,
            decoding,
            path,
            max_lifetime_seconds: DEFAULT_MAX_TOKEN_LIFETIME_SECONDS,
        })
    }

    /// Creates a new EdDSA token key file (mode 0600); refuses to overwrite.
    pub fn create_file(path: &Path) -> Result<Self, KeyringError> {
        Self::create_file_with(
            path,
            TokenAlgorithm::EdDSA,
            DEFAULT_ISSUER,
            DEFAULT_AUDIENCE,
        )
    }

    /// Creates a new key file (never overwrites): an Ed25519 key pair, or a random 256-bit
    /// HS256 secret to share with another token issuer.
    pub fn create_file_with(
        path: &Path,
        algorithm: TokenAlgorithm,
        issuer: &str,
        audience: &str,
    ) -> Result<Self, KeyringError> {
        let secret = match algorithm {
            TokenAlgorithm::EdDSA => {
                let rng = ring::rand::SystemRandom::new();
                let pkcs8 = Ed25519KeyPair::generate_pkcs8(&rng)
                    .map_err(|_| crate::CryptoError::RandomFailed)?;
                Zeroizing::new(BASE64.encode(pkcs8.as_ref()))
            }
            TokenAlgorithm::HS256 => {
                let bytes = Zeroizing::new(crate::random_bytes::<32>()?);
                Zeroizing::new(BASE64.encode(bytes.as_ref()))
            }
        };
        let file = TokenKeyFile {
            format: FORMAT.into(),
            algorithm,
            issuer: issuer.into(),
            audience: audience.into(),
            secret,
        };
        let text = Zeroizing::new(format!(
            "# cdp token key: signs management-API tokens (`cdp token issue`). SECRET, mode 0600.\n{}",
            toml::to_string(&file).map_err(|e| KeyringError::Invalid {
                path: path.into(),
                message: e.to_string()
            })?
        ));
        crate::keyfile::create_private_file(path, text.as_bytes())?;
        Self::load_file(path)
    }

    /// Loads a token key file. Refuses files other users can read.
    pub fn load_file(path: &Path) -> Result<Self, KeyringError> {
        let text = crate::keyfile::read_private_file(path)?;
        let file: TokenKeyFile = toml::from_str(&text)
            .map_err(|error| crate::keyfile::parse_error(path, &text, &error))?;
        let invalid = |message: String| KeyringError::Invalid {
            path: path.into(),
            message,
        };
        if file.format != FORMAT {
            return Err(invalid(format!(
                "unknown format {:?}; this build reads {FORMAT:?}",
                file.format
            )));
        }
        let secret = Zeroizing::new(
            BASE64
                .decode(file.secret.trim())
                .map_err(|_| invalid("secret is not valid base64".into()))?,
        );
        Self::from_parts(
            file.algorithm,
            file.issuer,
            file.audience,
            &secret,
            Some(path.into()),
        )
        .map_err(invalid)
    }

    /// An HS256 key from a shared secret (for tests and external issuers).
    pub fn hs256(secret: &[u8], issuer: &str, audience: &str) -> Result<Self, String> {
        Self::from_parts(
            TokenAlgorithm::HS256,
            issuer.into(),
            audience.into(),
            secret,
            None,
        )
    }

    /// Refuse tokens whose lifetime (`exp - iat`) exceeds `seconds`.
    pub fn set_max_lifetime(&mut self, seconds: i64) {
        self.max_lifetime_seconds = seconds;
    }

    pub fn max_lifetime_seconds(&self) -> i64 {
        self.max_lifetime_seconds
    }

    pub fn algorithm(&self) -> TokenAlgorithm {
        self.algorithm
    }

    fn jwt_algorithm(&self) -> Algorithm {
        match self.algorithm {
            TokenAlgorithm::EdDSA => Algorithm::EdDSA,
            TokenAlgorithm::HS256 => Algorithm::HS256,
        }
    }

    /// Issues a token for `subject` with `roles` and `purposes`, valid for `ttl_seconds`.
    pub fn issue(
        &self,
        subject: &str,
        roles: &[String],
        purposes: &[String],
        now: i64,
        ttl_seconds: i64,
    ) -> Result<String, TokenError> {
        let claims = TokenClaims {
            iss: self.issuer.clone(),
            aud: self.audience.clone(),
            sub: subject.into(),
            iat: now,
            exp: now + ttl_seconds,
            nbf: None,
            roles: roles.to_vec(),
            purposes: purposes.to_vec(),
        };
        self.sign(&claims)
    }

    /// Signs `claims` as they are (tests, and tools that set `nbf` or their own times).
    pub fn sign(&self, claims: &TokenClaims) -> Result<String, TokenError> {
        jsonwebtoken::encode(&Header::new(self.jwt_algorithm()), claims, &self.encoding)
            .map_err(|_| TokenError::Invalid)
    }

    /// Verifies a token: signature by this key with exactly its algorithm, issuer, audience,
    /// expiry, `nbf` when present, an `iat` not in the future (30 s leeway for clock drift on
    /// each), and a lifetime within the server's maximum.
    pub fn verify(&self, token: &str) -> Result<TokenClaims, TokenError> {
        let now = time::OffsetDateTime::now_utc().unix_timestamp();
        let mut validation = Validation::new(self.jwt_algorithm());
        validation.algorithms = vec![self.jwt_algorithm()];
        validation.set_issuer(&[&self.issuer]);
        validation.set_audience(&[&self.audience]);
        validation.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
        validation.leeway = LEEWAY_SECONDS.unsigned_abs();
        validation.validate_nbf = true;
        let claims = jsonwebtoken::decode::<TokenClaims>(token, &self.decoding, &validation)
            .map(|data| data.claims)
            .map_err(|error| match error.kind() {
                jsonwebtoken::errors::ErrorKind::ExpiredSignature => TokenError::Expired,
                jsonwebtoken::errors::ErrorKind::ImmatureSignature => TokenError::NotYetValid,
                jsonwebtoken::errors::ErrorKind::InvalidAudience
                | jsonwebtoken::errors::ErrorKind::InvalidIssuer => TokenError::WrongAudience,
                _ => TokenError::Invalid,
            })?;
        if claims.iat > now.saturating_add(LEEWAY_SECONDS) {
            return Err(TokenError::NotYetValid);
        }
        if claims.exp.saturating_sub(claims.iat) > self.max_lifetime_seconds {
            return Err(TokenError::LifetimeTooLong);
        }
        Ok(claims)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn now() -> i64 {
        1_800_000_000
    }

    fn roles(list: &[&str]) -> Vec<String> {
        list.iter().map(|r| (*r).to_string()).collect()
    }

    #[test]
    fn eddsa_round_trip_and_refusals() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("token.key");
        let key = TokenKey::create_file(&path).unwrap();
        let current = time_now();
        let token = key
            .issue("ops", &roles(&["admin"]), &[], current, 3600)
            .unwrap();
        let claims = key.verify(&token).unwrap();
        assert_eq!(claims.roles, vec!["admin"]);
        // Expired.
        let old = key
            .issue("ops", &roles(&["admin"]), &[], now() - 100_000_000, 60)
            .unwrap();
        assert_eq!(key.verify(&old), Err(TokenError::Expired));
        // Another key.
        let other = TokenKey::create_file(&dir.path().join("other.key")).unwrap();
        assert_eq!(other.verify(&token), Err(TokenError::Invalid));
        // Tampered payload: swap the role claim, keep the signature.
        let parts: Vec<&str> = token.split('.').collect();
        let payload = String::from_utf8(
            base64::engine::general_purpose::URL_SAFE_NO_PAD
                .decode(parts[1])
                .unwrap(),
        )
        .unwrap();
        let forged = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .encode(payload.replace("admin", "dpo"));
        assert_eq!(
            key.verify(&format!("{}.{forged}.{}", parts[0], parts[2])),
            Err(TokenError::Invalid)
        );
        // alg none.
        let header = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .encode(r#"{"alg":"none","typ":"JWT"}"#);
        assert_eq!(
            key.verify(&format!("{header}.{}.", parts[1])),
            Err(TokenError::Invalid)
        );
        // HS256 token signed with the public key bytes (algorithm confusion).
        let confused = TokenKey::hs256(&[7u8; 32], DEFAULT_ISSUER, DEFAULT_AUDIENCE).unwrap();
        let token = confused
            .issue("x", &roles(&["admin"]), &[], current, 60)
            .unwrap();
        assert_eq!(key.verify(&token), Err(TokenError::Invalid));
        // Wrong audience.
        let foreign = TokenKey::hs256(&[7u8; 32], DEFAULT_ISSUER, "another-api").unwrap();
        let token = foreign
            .issue("x", &roles(&["admin"]), &[], current, 60)
            .unwrap();
        assert_eq!(confused.verify(&token), Err(TokenError::WrongAudience));
    }

    fn time_now() -> i64 {
        time::OffsetDateTime::now_utc().unix_timestamp()
    }

    fn claims(key: &TokenKey, iat: i64, exp: i64, nbf: Option<i64>) -> String {
        key.sign(&TokenClaims {
            iss: DEFAULT_ISSUER.into(),
            aud: DEFAULT_AUDIENCE.into(),
            sub: "ops".into(),
            iat,
            exp,
            nbf,
            roles: roles(&["admin"]),
            purposes: Vec::new(),
        })
        .unwrap()
    }

    /// nbf, an iat in the future and the server's maximum lifetime (issue 17 item 13).
    #[test]
    fn times_and_lifetime_are_checked() {
        let dir = tempfile::tempdir().unwrap();
        let mut key = TokenKey::create_file(&dir.path().join("token.key")).unwrap();
        let now = time_now();
        assert!(key.verify(&claims(&key, now, now + 3600, None)).is_ok());
        assert!(
            key.verify(&claims(&key, now, now + 3600, Some(now)))
                .is_ok()
        );
        // Drift within the leeway is tolerated.
        assert!(
            key.verify(&claims(&key, now + 10, now + 3600, Some(now + 10)))
                .is_ok()
        );
        assert_eq!(
            key.verify(&claims(&key, now, now + 3600, Some(now + 600))),
            Err(TokenError::NotYetValid)
        );
        assert_eq!(
            key.verify(&claims(&key, now + 600, now + 3600, None)),
            Err(TokenError::NotYetValid)
        );
        let thirty_days = DEFAULT_MAX_TOKEN_LIFETIME_SECONDS;
        assert!(
            key.verify(&claims(&key, now, now + thirty_days, None))
                .is_ok()
        );
        assert_eq!(
            key.verify(&claims(&key, now, now + thirty_days + 1, None)),
            Err(TokenError::LifetimeTooLong)
        );
        // An iat far in the past does not stretch the limit: the lifetime is exp - iat.
        assert_eq!(
            key.verify(&claims(&key, now - 40 * 24 * 3600, now + 3600, None)),
            Err(TokenError::LifetimeTooLong)
        );
        key.set_max_lifetime(3600);
        assert_eq!(
            key.verify(&claims(&key, now, now + 7200, None)),
            Err(TokenError::LifetimeTooLong)
        );
    }
}
