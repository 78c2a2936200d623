//! Identity resolution, as pure functions over an abstract graph.
//!
//! - [`extract`]: the identifiers a Segment message carries (`userId`, `traits.email`,
//!   `context.externalIds[]`...).
//! - [`normalise`]: each to its canonical form (e-mail lowercase NFC, phone E.164 with the
//!   source's region, ...) or a rejection (blocked junk value, invalid).
//! - [`IdentityRules`]: limit and priority per identifier type, blocked values.
//! - [`graph`]: how one event's identifiers attach to, create or merge profiles under the rules
//!   ([`graph::apply_evidence`]); the canonical partition of a set of evidence
//!   ([`graph::partition`]); and [`graph::resolve`], which decides between the cheap incremental
//!   step and a canonical recompute so that the result never depends on arrival order.
//!
//! - [`fuzzy`]: matching people from names, birth dates and addresses on keyed Bloom-filter
//!   encodings, scored in the Fellegi-Sunter way (issue 20).
//!
//! The crate knows nothing of storage or keys: the engine gives it a [`graph::GraphView`] over
//! blind indexes and applies the [`graph::Resolution`] it returns.

pub mod extract;
pub mod fuzzy;
pub mod graph;
pub mod normalise;
mod rules;

pub use rules::{BlockRule, IdentityRules, IdentityRulesFile, RulesError, TypeRule};
