//! The consent ledger: its records (`record`), recording and reading them (`ledger`), and
//! tallies of the states over time (`trend`).
//! Signals that arrive with events are staged by `write::consent_staging`.

pub mod ledger;
pub mod record;
pub mod trend;
