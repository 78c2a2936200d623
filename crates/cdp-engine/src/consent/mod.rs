//! The consent ledger.

pub mod ledger;
