//! Everything that changes the identity graph, under the engine's write lock: ingestion of
//! Segment messages, resolution and merges, recompute of a component (late events, splits),
//! the staging of a request's changes into one atomic batch, and the cache of committed
//! records.

pub(crate) mod apply;
pub(crate) mod cache;
pub(crate) mod graph_store;
pub mod ingest;
pub mod survivorship;
