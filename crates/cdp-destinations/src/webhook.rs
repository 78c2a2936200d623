//! HTTPS webhooks: one POST per batch, signed with HMAC-SHA256 under the destination's secret.
//!
//! The signature header is `X-CDP-Signature: t=<unix seconds>,v1=<hex>`, the HMAC of
//! `"<t>.<body>"`: the receiver recomputes it, compares in constant time and refuses a
//! timestamp older than a few minutes (a replayed request). `X-CDP-Delivery` names the batch
//! (`<export id>/<batch>`), the same on every retry, so a receiver that saw it already can
//! answer 2xx without applying it twice.
//!
//! What happens to an answer: 2xx delivered; 408, 429, 5xx, a timeout or a broken connection
//! are retried later; any other status (a 4xx, a redirect) is the receiver refusing the batch:
//! no retry, the batch goes to the dead letters. Redirects are not followed: a batch goes to
//! the address its destination names and nowhere else.

use std::sync::Arc;
use std::time::Duration;

use ureq::tls::{Certificate, RootCerts, TlsConfig};

use crate::DestinationError;

/// How long one request may take, connection included.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(15);
/// Bytes of a receiver's answer kept for the delivery status (never more: it is the
/// receiver's text, shown to operators).
const ANSWER_KEPT: usize = 200;

/// Where and how a webhook delivers.
#[derive(Clone)]
pub struct WebhookTarget {
    pub url: String,
    pub secret: zeroize::Zeroizing<String>,
    /// PEM certificates of the CA that signs the receiver's certificate, for a private CA;
    /// none: Mozilla's roots.
    pub ca_pem: Option<String>,
}

impl std::fmt::Debug for WebhookTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WebhookTarget")
            .field("url", &self.url)
            .field("ca_pem", &self.ca_pem.is_some())
            .finish_non_exhaustive()
    }
}

/// What a POST came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PostOutcome {
    Delivered {
        status: u16,
    },
    /// Worth another try later.
    Retry {
        status: Option<u16>,
        error: String,
    },
    /// The receiver refused it: no retry.
    Refused {
        status: Option<u16>,
        error: String,
    },
}

/// Checks a webhook address: `https://` with a host, no user or password in it.
pub fn validate_url(url: &str) -> Result<(), DestinationError> {
    let invalid = |why: &str| DestinationError::Invalid(format!("url: {why}"));
    let Some(rest) = url.strip_prefix("https://") else {
        return Err(invalid(
            "a webhook must be https:// (batches carry personal data)",
        ));
    };
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    if authority.is_empty() {
        return Err(invalid("no host"));
    }
    if authority.contains('@') {
        return Err(invalid(
            "no user or password in the address: the batches are signed instead",
        ));
    }
    if url.len() > 2048 || url.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(invalid("not a usable address"));
    }
    Ok(())
}

/// Checks that `pem` holds at least one certificate.
pub fn validate_ca(pem: &str) -> Result<(), DestinationError> {
    certificates(pem).map(|_| ())
}

fn certificates(pem: &str) -> Result<Vec<Certificate<'static>>, DestinationError> {
    let certs: Vec<Certificate<'static>> = ureq::tls::parse_pem(pem.as_bytes())
        .filter_map(|item| match item {
            Ok(ureq::tls::PemItem::Certificate(cert)) => Some(Ok(cert)),
            Ok(_) => None,
            Err(e) => Some(Err(e)),
        })
        .collect::<Result<_, _>>()
        .map_err(|e| DestinationError::Invalid(format!("ca_certificate: {e}")))?;
    if certs.is_empty() {
        return Err(DestinationError::Invalid(
            "ca_certificate: no PEM certificate in it".into(),
        ));
    }
    Ok(certs)
}

/// The value of `X-CDP-Signature` for `body` sent at `unix_seconds`.
pub fn signature(secret: &str, unix_seconds: i64, body: &[u8]) -> String {
    let mut signed = format!("{unix_seconds}.").into_bytes();
    signed.extend_from_slice(body);
    format!(
        "t={unix_seconds},v1={}",
        cdp_crypto::hmac_sha256_hex(secret.as_bytes(), &signed)
    )
}

/// POSTs one batch (`body`, JSON) to the target, signed; blocking.
pub fn post(target: &WebhookTarget, delivery: &str, body: &[u8]) -> PostOutcome {
    let roots = match &target.ca_pem {
        Some(pem) => match certificates(pem) {
            Ok(certs) => RootCerts::Specific(Arc::new(certs)),
            Err(e) => {
                return PostOutcome::Refused {
                    status: None,
                    error: e.to_string(),
                };
            }
        },
        None => RootCerts::WebPki,
    };
    let agent = ureq::Agent::config_builder()
        .tls_config(TlsConfig::builder().root_certs(roots).build())
        .timeout_global(Some(REQUEST_TIMEOUT))
        .max_redirects(0)
        .http_status_as_error(false)
        .user_agent("cdp-webhook/1")
        .build()
        .new_agent();
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    let sent = agent
        .post(&target.url)
        .header("content-type", "application/json")
        .header("x-cdp-delivery", delivery)
        .header("x-cdp-signature", signature(&target.secret, now, body))
        .send(body);
    match sent {
        Ok(mut response) => {
            let status = response.status().as_u16();
            if (200..300).contains(&status) {
                return PostOutcome::Delivered { status };
            }
            let answer = response
                .body_mut()
                .with_config()
                .limit(4096)
                .read_to_string()
                .unwrap_or_default();
            let answer: String = answer.chars().take(ANSWER_KEPT).collect();
            let error = if answer.trim().is_empty() {
                format!("HTTP {status}")
            } else {
                format!("HTTP {status}: {}", answer.trim())
            };
            if status == 408 || status == 429 || status >= 500 {
                PostOutcome::Retry {
                    status: Some(status),
                    error,
                }
            } else {
                PostOutcome::Refused {
                    status: Some(status),
                    error,
                }
            }
        }
        Err(error) => {
            let text = error.to_string();
            // A certificate the roots do not vouch for will not start to verify by itself
            // soon; it is still retried (a receiver may be mid-renewal), named as such.
            PostOutcome::Retry {
                status: None,
                error: text.chars().take(ANSWER_KEPT).collect(),
            }
        }
    }
}

/// The delay before attempt `attempt` (1 = the first retry): `base` doubled each time, at
/// most an hour, with up to a fifth added at random so that many batches failing together do
/// not come back together.
pub fn backoff(base: Duration, attempt: u32) -> Duration {
    let doubled = base.saturating_mul(1u32 << attempt.saturating_sub(1).min(20));
    let capped = doubled.min(Duration::from_secs(3600));
    let jitter = cdp_crypto::random_bytes::<2>()
        .map(|b| u16::from_le_bytes(b) as u64)
        .unwrap_or(0);
    capped + capped.mul_f64(jitter as f64 / 65535.0 / 5.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_must_be_https_without_credentials() {
        assert!(validate_url("https://hooks.example.com/cdp?x=1").is_ok());
        for (url, says) in [
            ("http://hooks.example.com/", "https"),
            ("https:///path", "no host"),
            ("https://user:pw@hooks.example.com/", "no user or password"),
            ("https://a b/", "not a usable"),
        ] {
            let error = validate_url(url).expect_err(url).to_string();
            assert!(error.contains(says), "{url}: {error}");
        }
    }

    #[test]
    fn the_signature_is_the_hmac_of_time_dot_body() {
        let header = signature("whsec_test", 1_700_000_000, b"{\"a\":1}");
        assert_eq!(
            header,
            format!(
                "t=1700000000,v1={}",
                cdp_crypto::hmac_sha256_hex(b"whsec_test", b"1700000000.{\"a\":1}")
            )
        );
    }

    #[test]
    fn backoff_doubles_and_is_capped() {
        let base = Duration::from_millis(100);
        let first = backoff(base, 1);
        assert!(first >= base && first <= base.mul_f64(1.21), "{first:?}");
        let third = backoff(base, 3);
        assert!(
            third >= base * 4 && third <= (base * 4).mul_f64(1.21),
            "{third:?}"
        );
        assert!(backoff(Duration::from_secs(60), 30) <= Duration::from_secs(4320));
    }

    #[test]
    fn a_pem_without_a_certificate_is_refused() {
        assert!(validate_ca("not a certificate").is_err());
    }
}
