//! Reads: purpose-bound and audited reads of personal data (`access`), the unaudited views
//! they are built from (`profiles`, crate-private), and audiences over the search index.

pub mod access;
pub mod audiences;
pub mod breakdown;
pub(crate) mod profiles;
pub mod selection;
