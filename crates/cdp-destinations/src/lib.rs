//! Where exports go when they leave the platform, and when recurring ones run.
//!
//! Transports only: `webhook` (signed HTTPS POSTs of batches), `sftp` (files uploaded with a
//! key, the server's host key pinned) and `cron` (the schedules of recurring exports). What is
//! delivered, to whom, and the record of each try live in `cdp-engine` (`destinations`).

pub mod cron;
pub mod sftp;
pub mod webhook;

pub use cron::{CronError, CronSchedule};

/// Why a destination cannot be registered or a delivery did not go through. The texts name
/// hosts and statuses, never the data delivered or a secret.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DestinationError {
    /// The destination's settings are wrong (the caller's mistake).
    #[error("{0}")]
    Invalid(String),
    /// The other side could not be reached or broke off: worth another try.
    #[error("{0}")]
    Unreachable(String),
    /// The other side refused (a changed host key, a key not authorised, no permission).
    #[error("{0}")]
    Refused(String),
    #[error("{0}")]
    Internal(String),
}

impl DestinationError {
    /// Whether trying again later may succeed.
    pub fn retryable(&self) -> bool {
        matches!(self, Self::Unreachable(_))
    }
}
