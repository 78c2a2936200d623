//! The storage interface the rest of the CDP is written against.

use crate::{CommitTicket, Keyspace, StoreError, WriteBatch};

/// An iterator over `(key, value)` pairs of one keyspace, keys without the keyspace prefix.
pub type ScanIter<'a> =
    Box<dyn Iterator<Item = Result<(Vec<u8>, Vec<u8>), StoreError>> + Send + 'a>;

/// One operation recorded in the change feed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChangeOp {
    Put,
    Delete,
}

/// One committed batch, as the change feed reports it: which keys of followed keyspaces
/// ([`crate::Keyspace::followed`]) it touched (keys are opaque ids, never personal values).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    pub seq: u64,
    pub keys: Vec<(Keyspace, ChangeOp, Vec<u8>)>,
}

/// Whether the store can take writes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreHealth {
    Ready,
    /// A flush failed; the store refuses writes until restarted (acknowledging after a failed
    /// fsync could lose data silently).
    Failed(String),
    /// The background verification found damage: writes are refused and the server stops
    /// (the store's files must be restored; reopening would find the same damage).
    Damaged(String),
    /// The database (PostgreSQL) cannot be reached: new writes are refused until it can,
    /// writes already accepted are retried. Passes by itself.
    Unreachable(String),
    Closed,
}

/// Counters for `/metrics`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StoreStats {
    pub commits: u64,
    pub flushes: u64,
    pub last_seq: u64,
    pub durable_seq: u64,
    /// Whether every block of the store has been read and found sound since open.
    pub verified: bool,
}

/// An ordered key-value store with atomic multi-keyspace batches, a change feed and durable
/// acknowledgement. Implementations: [`crate::FjallStore`] (the default), [`crate::SledStore`]
/// and [`crate::PostgresStore`]. Every implementation passes the conformance suite in
/// `tests/conformance/`.
pub trait Store: Send + Sync + std::fmt::Debug {
    fn get(&self, keyspace: Keyspace, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError>;

    /// Every entry of `keyspace` whose key starts with `prefix`, in key order.
    fn scan_prefix(&self, keyspace: Keyspace, prefix: &[u8]) -> ScanIter<'_>;

    /// Every entry of `keyspace` whose key is `>= start`, in key order (paging).
    fn scan_from(&self, keyspace: Keyspace, start: &[u8]) -> ScanIter<'_>;

    /// Applies `batch` atomically (visible to readers at once) and returns a ticket that
    /// resolves when it is durable. Acknowledge the caller only after the ticket resolves.
    fn commit(&self, batch: WriteBatch) -> Result<CommitTicket, StoreError>;

    /// Flushes everything committed so far, blocking.
    fn flush(&self) -> Result<(), StoreError>;

    /// Change-feed entries with a sequence number above `after`, at most `limit`.
    fn changes_after(&self, after: u64, limit: usize) -> Result<Vec<Change>, StoreError>;

    /// Forgets change-feed entries up to and including `upto` (every follower has them).
    fn trim_changes(&self, upto: u64) -> Result<(), StoreError>;

    /// Receives the newest durable sequence number, for followers of the change feed.
    fn subscribe_durable(&self) -> tokio::sync::watch::Receiver<u64>;

    fn health(&self) -> StoreHealth;

    fn stats(&self) -> StoreStats;

    /// Flushes, stops the store's background work and makes every later commit fail. After
    /// it, every acknowledged write is in the store's files. Idempotent.
    fn close(&self) -> Result<(), StoreError>;
}
