//! PIPL and GDPR policies as code.
//!
//! - [`PolicySet`]: the files of `policies/` (taxonomy, field map, roles, one file per
//!   jurisdiction), loaded and validated; errors name file, line and rule.
//! - [`PolicySet::decide`]: a request about one person -> allow/deny, obligations per field and
//!   reasons citing articles; the most restrictive jurisdiction wins.
//! - [`consent::resolve`]: what an append-only consent ledger means for one purpose.
//! - [`transform::apply`]: display masking and generalisation of values.
//! - [`golden`]: request + facts -> expected decision cases (`policies/tests`).
//! - [`PolicySet::ropa`]: the record of processing activities.
//!
//! Pure: no I/O except reading policy files.

pub mod consent;
mod decide;
pub mod golden;
pub mod inferences;
mod load;
mod lookup;
pub mod model;
mod role;
mod ropa;
pub mod transform;

pub use consent::{
    ConsentFact, ConsentOutcome, ConsentQuery, ConsentScope, ConsentState, ConsentStatus, covers,
};
pub use decide::{
    Action, CallerFacts, Decision, DecisionRequest, Effect, Reason, ReasonKind, RecipientFacts,
    RecipientRole, SubjectFacts,
};
pub use inferences::Inference;
pub use load::{PolicyError, PolicySet};
pub use model::{LegalBasis, Transform};
pub use role::{Role, UnknownRole};
pub use ropa::RopaRecipient;
