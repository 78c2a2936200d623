//! Destinations: where finished exports are delivered instead of waiting to be downloaded.
//!
//! A destination belongs to one recipient (the export's per-member decisions were made for
//! that recipient, so only its own endpoints may receive the file). Two kinds:
//! - `webhook`: HTTPS POSTs of batches of rows with the signed manifest, HMAC-signed under a
//!   secret the platform makes and shows once (rotated with `rotate_secret`);
//! - `sftp`: the file and its manifest uploaded with an Ed25519 key the platform makes (its
//!   public half shown for the recipient's `authorized_keys`), the server's host key pinned.
//!
//! Records live in `Keyspace::Exports` under `dest/<id>`, sealed with the system key (they
//! hold the secret and the private key). Deliveries and their retries are `delivery.rs`.

mod delivery;

use cdp_destinations::{DestinationError, sftp, webhook};
use cdp_store::{CommitTicket, Keyspace};
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use crate::audit::AuditRecord;
use crate::records::hex;
use crate::{Engine, EngineError};

pub(crate) use delivery::ExportContent;
pub use delivery::{BatchState, BatchStatus, DeadLetter, DeliveryRecord, DeliveryState};

/// Rows per webhook request unless the destination says otherwise.
pub const DEFAULT_BATCH_SIZE: u32 = 500;
/// Tries of a batch before it becomes a dead letter.
pub const DEFAULT_MAX_ATTEMPTS: u32 = 8;
/// The first retry's delay; each later one doubles it (at most an hour).
pub const DEFAULT_RETRY_BASE_MS: u64 = 30_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DestinationKind {
    Webhook,
    Sftp,
}

/// A registered destination (`dest/<id>`; secrets included: never answered as stored).
#[derive(Clone, Serialize, Deserialize)]
pub struct DestinationRecord {
    pub id: String,
    pub name: String,
    pub recipient: String,
    pub kind: DestinationKind,
    /// Webhook: the https:// address.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    /// Webhook: PEM certificates of a private CA that signs the receiver's certificate.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_certificate: Option<String>,
    pub batch_size: u32,
    pub max_attempts: u32,
    pub retry_base_ms: u64,
    /// SFTP: where and as whom.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<u16>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub username: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub directory: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host_key: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub public_key: Option<String>,
    /// The webhook's signing secret or the SFTP private key.
    secret: String,
    pub created_by: String,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        with = "time::serde::rfc3339::option"
    )]
    pub secret_rotated_at: Option<OffsetDateTime>,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        with = "time::serde::rfc3339::option"
    )]
    pub retired_at: Option<OffsetDateTime>,
}

impl std::fmt::Debug for DestinationRecord {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DestinationRecord")
            .field("id", &self.id)
            .field("kind", &self.kind)
            .finish_non_exhaustive()
    }
}

/// A destination as the API shows it: everything but the secret.
#[derive(Debug, Clone, Serialize)]
pub struct DestinationView {
    pub id: String,
    pub name: String,
    pub recipient: String,
    pub kind: DestinationKind,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    /// Whether a private CA is pinned (its certificate is not repeated).
    pub private_ca: bool,
    pub batch_size: u32,
    pub max_attempts: u32,
    pub retry_base_ms: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub host: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub port: Option<u16>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub username: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub directory: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub host_key: Option<String>,
    /// SFTP: the key to add to the server user's `authorized_keys`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub public_key: Option<String>,
    pub created_by: String,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    #[serde(
        skip_serializing_if = "Option::is_none",
        with = "time::serde::rfc3339::option"
    )]
    pub secret_rotated_at: Option<OffsetDateTime>,
    #[serde(
        skip_serializing_if = "Option::is_none",
        with = "time::serde::rfc3339::option"
    )]
    pub retired_at: Option<OffsetDateTime>,
    /// The signing secret: only in the answer that made it (creation, rotation).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub secret: Option<String>,
}

impl DestinationRecord {
    pub fn view(&self) -> DestinationView {
        DestinationView {
            id: self.id.clone(),
            name: self.name.clone(),
            recipient: self.recipient.clone(),
            kind: self.kind,
            url: self.url.clone(),
            private_ca: self.ca_certificate.is_some(),
            batch_size: self.batch_size,
            max_attempts: self.max_attempts,
            retry_base_ms: self.retry_base_ms,
            host: self.host.clone(),
            port: self.port,
            username: self.username.clone(),
            directory: self.directory.clone(),
            host_key: self.host_key.clone(),
            public_key: self.public_key.clone(),
            created_by: self.created_by.clone(),
            created_at: self.created_at,
            secret_rotated_at: self.secret_rotated_at,
            retired_at: self.retired_at,
            secret: None,
        }
    }

    fn webhook_target(&self) -> Option<webhook::WebhookTarget> {
        Some(webhook::WebhookTarget {
            url: self.url.clone()?,
            secret: zeroize::Zeroizing::new(self.secret.clone()),
            ca_pem: self.ca_certificate.clone(),
        })
    }

    fn sftp_target(&self) -> Option<sftp::SftpTarget> {
        Some(sftp::SftpTarget {
            host: self.host.clone()?,
            port: self.port.unwrap_or(22),
            username: self.username.clone()?,
            directory: self.directory.clone()?,
            host_key: self.host_key.clone()?,
            private_key: zeroize::Zeroizing::new(self.secret.clone()),
        })
    }
}

/// What `POST /v1/destinations` gives.
#[derive(Debug, Clone, Default)]
pub struct DestinationInput {
    pub name: String,
    pub recipient: String,
    pub kind: Option<DestinationKind>,
    pub url: Option<String>,
    pub ca_certificate: Option<String>,
    pub batch_size: Option<u32>,
    pub max_attempts: Option<u32>,
    pub retry_base_ms: Option<u64>,
    pub host: Option<String>,
    pub port: Option<u16>,
    pub username: Option<String>,
    pub directory: Option<String>,
    pub host_key: Option<String>,
}

pub(crate) fn destination_key(id: &str) -> Vec<u8> {
    [b"dest/".as_slice(), id.as_bytes()].concat()
}

fn invalid(error: DestinationError) -> EngineError {
    match error {
        DestinationError::Invalid(text) => EngineError::InvalidRequest(text),
        other => EngineError::Job(other.to_string()),
    }
}

fn new_webhook_secret() -> Result<String, EngineError> {
    Ok(format!(
        "whsec_{}",
        hex::encode(&cdp_crypto::random_bytes::<24>()?)
    ))
}

fn required(field: &str, value: Option<String>) -> Result<String, EngineError> {
    value
        .map(|v| v.trim().to_string())
        .filter(|v| !v.is_empty())
        .ok_or_else(|| EngineError::InvalidRequest(format!("{field} is required for this kind")))
}

impl Engine {
    /// Registers a destination of a recipient. The answer carries the webhook's secret (the
    /// only time it is shown) or the SFTP public key to install.
    pub fn create_destination(
        &self,
        input: DestinationInput,
        actor: &str,
    ) -> Result<(DestinationView, CommitTicket), EngineError> {
        let name = input.name.trim().to_string();
        if name.is_empty() || name.len() > 200 || name.chars().any(char::is_control) {
            return Err(EngineError::InvalidRequest(
                "name must be 1 to 200 bytes without control characters".into(),
            ));
        }
        let recipient = self
            .recipient(&input.recipient)?
            .ok_or_else(|| EngineError::NotFound(format!("recipient {}", input.recipient)))?;
        if recipient.retired_at.is_some() {
            return Err(EngineError::Conflict(format!(
                "recipient {} is retired: nothing more is sent to it",
                recipient.id
            )));
        }
        let batch_size = input.batch_size.unwrap_or(DEFAULT_BATCH_SIZE);
        if !(1..=10_000).contains(&batch_size) {
            return Err(EngineError::InvalidRequest(
                "batch_size is 1 to 10000 rows".into(),
            ));
        }
        let max_attempts = input.max_attempts.unwrap_or(DEFAULT_MAX_ATTEMPTS);
        if !(1..=20).contains(&max_attempts) {
            return Err(EngineError::InvalidRequest(
                "max_attempts is 1 to 20".into(),
            ));
        }
        let retry_base_ms = input.retry_base_ms.unwrap_or(DEFAULT_RETRY_BASE_MS);
        if !(100..=3_600_000).contains(&retry_base_ms) {
            return Err(EngineError::InvalidRequest(
                "retry_base_ms is 100 to 3600000".into(),
            ));
        }
        let id = format!("dst_{}", hex::encode(&cdp_crypto::random_bytes::<8>()?));
        let mut record = DestinationRecord {
            id: id.clone(),
            name,
            recipient: recipient.id.clone(),
            kind: DestinationKind::Webhook,
            url: None,
            ca_certificate: None,
            batch_size,
            max_attempts,
            retry_base_ms,
            host: None,
            port: None,
            username: None,
            directory: None,
            host_key: None,
            public_key: None,
            secret: String::new(),
            created_by: actor.to_string(),
            created_at: OffsetDateTime::now_utc(),
            secret_rotated_at: None,
            retired_at: None,
        };
        let sftp_fields = [
            &input.host,
            &input.username,
            &input.directory,
            &input.host_key,
        ];
        match input.kind {
            Some(DestinationKind::Webhook) => {
                if sftp_fields.iter().any(|f| f.is_some()) || input.port.is_some() {
                    return Err(EngineError::InvalidRequest(
                        "a webhook takes url (and ca_certificate), not host, port, username, directory or host_key".into(),
                    ));
                }
                let url = required("url", input.url)?;
                webhook::validate_url(&url).map_err(invalid)?;
                if let Some(pem) = &input.ca_certificate {
                    webhook::validate_ca(pem).map_err(invalid)?;
                }
                record.url = Some(url);
                record.ca_certificate = input.ca_certificate;
                record.secret = new_webhook_secret()?;
            }
            Some(DestinationKind::Sftp) => {
                if input.url.is_some() || input.ca_certificate.is_some() {
                    return Err(EngineError::InvalidRequest(
                        "an sftp destination takes host, port, username, directory and host_key, not url".into(),
                    ));
                }
                let host = required("host", input.host)?;
                sftp::validate_host(&host).map_err(invalid)?;
                let username = required("username", input.username)?;
                if username.len() > 64
                    || !username
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_'))
                {
                    return Err(EngineError::InvalidRequest(
                        "username: letters, digits, . - _ (at most 64)".into(),
                    ));
                }
                let directory = required("directory", input.directory)?;
                sftp::validate_directory(&directory).map_err(invalid)?;
                let host_key = sftp::parse_host_key(&required("host_key", input.host_key)?)
                    .map_err(invalid)?;
                let (private, public) =
                    sftp::generate_key(&format!("cdp-{id}")).map_err(invalid)?;
                record.kind = DestinationKind::Sftp;
                record.host = Some(host);
                record.port = Some(input.port.unwrap_or(22));
                record.username = Some(username);
                record.directory = Some(directory);
                record.host_key = Some(host_key);
                record.public_key = Some(public);
                record.secret = private.to_string();
            }
            None => {
                return Err(EngineError::InvalidRequest(
                    "kind is webhook or sftp".into(),
                ));
            }
        }
        let ticket = self.save_destination(&record, actor, "destination.create")?;
        let mut view = record.view();
        if record.kind == DestinationKind::Webhook {
            view.secret = Some(record.secret.clone());
        }
        Ok((view, ticket))
    }

    fn save_destination(
        &self,
        record: &DestinationRecord,
        actor: &str,
        action: &str,
    ) -> Result<CommitTicket, EngineError> {
        self.put_system_audited(
            Keyspace::Exports,
            destination_key(&record.id),
            record,
            AuditRecord {
                actor: actor.to_string(),
                action: action.into(),
                purpose: None,
                person: None,
                decision: "done".into(),
                rules: vec![record.id.clone(), record.recipient.clone()],
            },
        )
    }

    /// A destination as stored (with its secret; engine use only).
    pub(crate) fn destination_record(
        &self,
        id: &str,
    ) -> Result<Option<DestinationRecord>, EngineError> {
        if !(id.len() == 20 && id.starts_with("dst_")) {
            return Err(EngineError::InvalidRequest(
                "a destination id is dst_ followed by 16 hex digits".into(),
            ));
        }
        self.get_system(Keyspace::Exports, &destination_key(id))
    }

    /// A destination, without its secret.
    pub fn destination(&self, id: &str) -> Result<Option<DestinationView>, EngineError> {
        Ok(self.destination_record(id)?.map(|record| record.view()))
    }

    /// Every destination, oldest first, without secrets.
    pub fn destinations(&self) -> Result<Vec<DestinationView>, EngineError> {
        let mut out: Vec<DestinationView> = Vec::new();
        for item in self.store().scan_prefix(Keyspace::Exports, b"dest/") {
            let (key, sealed) = item?;
            let record: DestinationRecord = self.open_system(Keyspace::Exports, &key, &sealed)?;
            out.push(record.view());
        }
        out.sort_by_key(|view| view.created_at);
        Ok(out)
    }

    /// A new signing secret for a webhook (the old one stops signing at once); shown once.
    pub fn rotate_destination_secret(
        &self,
        id: &str,
        actor: &str,
    ) -> Result<(DestinationView, CommitTicket), EngineError> {
        let _turn = self.store().write_turn()?;
        let mut record = self
            .destination_record(id)?
            .ok_or_else(|| EngineError::NotFound(format!("destination {id}")))?;
        if record.kind != DestinationKind::Webhook {
            return Err(EngineError::Conflict(format!(
                "destination {id} is sftp: its key pair is not rotated, register a new destination"
            )));
        }
        if record.retired_at.is_some() {
            return Err(EngineError::Conflict(format!(
                "destination {id} is retired"
            )));
        }
        record.secret = new_webhook_secret()?;
        record.secret_rotated_at = Some(OffsetDateTime::now_utc());
        let ticket = self.save_destination(&record, actor, "destination.rotate")?;
        let mut view = record.view();
        view.secret = Some(record.secret.clone());
        Ok((view, ticket))
    }

    /// Retires a destination: nothing more is delivered to it (deliveries under way stop at
    /// their next batch; exports and schedules naming it are refused). Its secret is
    /// destroyed; the record stays for the history of what it received.
    pub fn retire_destination(
        &self,
        id: &str,
        actor: &str,
    ) -> Result<(DestinationView, CommitTicket), EngineError> {
        let _turn = self.store().write_turn()?;
        let mut record = self
            .destination_record(id)?
            .ok_or_else(|| EngineError::NotFound(format!("destination {id}")))?;
        if record.retired_at.is_some() {
            return Err(EngineError::Conflict(format!(
                "destination {id} is already retired"
            )));
        }
        record.retired_at = Some(OffsetDateTime::now_utc());
        record.secret = String::new();
        let ticket = self.save_destination(&record, actor, "destination.retire")?;
        Ok((record.view(), ticket))
    }

    /// Checks that an export to `recipient` may go to destination `id`.
    pub(crate) fn usable_destination(
        &self,
        id: &str,
        recipient: &str,
    ) -> Result<DestinationRecord, EngineError> {
        let record = self
            .destination_record(id)?
            .ok_or_else(|| EngineError::NotFound(format!("destination {id}")))?;
        if record.retired_at.is_some() {
            return Err(EngineError::Conflict(format!(
                "destination {id} is retired: nothing more is delivered to it"
            )));
        }
        if record.recipient != recipient {
            return Err(EngineError::InvalidRequest(format!(
                "destination {id} delivers to recipient {}, not {recipient}: the members were decided for the export's recipient",
                record.recipient
            )));
        }
        Ok(record)
    }
}

/// What a connection test of a destination came to.
#[derive(Debug, Clone, Serialize)]
pub struct DestinationTest {
    pub ok: bool,
    /// The receiver's HTTP status (webhooks).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status: Option<u16>,
    /// Why it failed, naming the host and status, never data.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

impl Engine {
    /// Tries a destination without delivering anything (audited): a webhook gets a signed
    /// `{"type": "ping"}` it should answer 2xx; an SFTP server is logged in to and its
    /// directory looked at, nothing written.
    pub fn test_destination(&self, id: &str, actor: &str) -> Result<DestinationTest, EngineError> {
        let record = self
            .destination_record(id)?
            .ok_or_else(|| EngineError::NotFound(format!("destination {id}")))?;
        if record.retired_at.is_some() {
            return Err(EngineError::Conflict(format!(
                "destination {id} is retired"
            )));
        }
        let result = match record.kind {
            DestinationKind::Webhook => {
                let target = record
                    .webhook_target()
                    .ok_or_else(|| EngineError::Corrupt(format!("destination {id}")))?;
                let body = serde_json::to_vec(&serde_json::json!({
                    "type": "ping",
                    "destination": record.id,
                    "at": OffsetDateTime::now_utc()
                        .format(&time::format_description::well_known::Rfc3339)
                        .unwrap_or_default(),
                }))
                .unwrap_or_default();
                let delivery = format!("ping/{}", hex::encode(&cdp_crypto::random_bytes::<8>()?));
                match webhook::post(&target, &delivery, &body) {
                    webhook::PostOutcome::Delivered { status } => DestinationTest {
                        ok: true,
                        status: Some(status),
                        error: None,
                    },
                    webhook::PostOutcome::Retry { status, error }
                    | webhook::PostOutcome::Refused { status, error } => DestinationTest {
                        ok: false,
                        status,
                        error: Some(error),
                    },
                }
            }
            DestinationKind::Sftp => {
                let target = record
                    .sftp_target()
                    .ok_or_else(|| EngineError::Corrupt(format!("destination {id}")))?;
                match sftp::check(&target) {
                    Ok(()) => DestinationTest {
                        ok: true,
                        status: None,
                        error: None,
                    },
                    Err(error) => DestinationTest {
                        ok: false,
                        status: None,
                        error: Some(error.to_string()),
                    },
                }
            }
        };
        self.audit(&[AuditRecord {
            actor: actor.to_string(),
            action: "destination.test".into(),
            purpose: None,
            person: None,
            decision: if result.ok { "done" } else { "failed" }.into(),
            rules: vec![record.id.clone()],
        }])?
        .wait_durable()?;
        Ok(result)
    }
}
