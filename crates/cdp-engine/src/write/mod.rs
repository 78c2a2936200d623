//! Everything that changes the identity graph, under the engine's write lock.
//!
//! - `ingest`: a request of Segment messages -> one atomic batch (`message` prepares each one).
//! - `resolve`: an event's evidence resolved incrementally (attach, merge); `recompute`: a
//!   component re-resolved (a late event, or a `split`).
//! - `profile_update`: what one event does to a profile; `survivorship`: which trait value wins.
//! - `consent_staging`: consent signals that arrive with events.
//! - `apply`: a change's records, sealed into a batch; `graph_store`: the graph as stored, read
//!   through `cache` (decoded committed records).
//! - `pipeline`: ingestion's commits in lock order, graph records sealed after the lock.
//! - `dedup`: the de-duplication window of retried messages (in memory, one record per request).

pub(crate) mod apply;
pub(crate) mod cache;
pub(crate) mod consent_staging;
pub(crate) mod dedup;
pub(crate) mod fuzzy_link;
pub(crate) mod graph_store;
pub mod ingest;
pub(crate) mod message;
pub(crate) mod pipeline;
pub(crate) mod prefetch;
pub(crate) mod presence;
pub(crate) mod profile_update;
pub(crate) mod recompute;
pub(crate) mod resolve;
pub mod split;
pub mod survivorship;
