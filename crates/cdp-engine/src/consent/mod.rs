//! The consent ledger: its records (`record`), and recording and reading them (`ledger`).
//! Signals that arrive with events are staged by `write::consent_staging`.

pub mod ledger;
pub mod record;
