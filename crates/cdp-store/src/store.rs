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

/// Releases a [`WriteTurn`] (the backend's side of it).
pub trait TurnRelease: Send + Sync {
    fn leave(&self);
}

/// A turn at writing a store that several processes share (PostgreSQL with `cluster` on):
/// while any thread of a process holds one, no other process commits, so what the process
/// reads during the turn stays true until its batches are committed. A process that takes a
/// turn after another one wrote gets a new [`WriteTurn::generation`]: whatever it cached of
/// the store before is stale up to [`WriteTurn::synced_seq`]. A store only one process writes
/// hands out turns that cost nothing and never change generation.
///
/// Held on one thread (turns nest on the thread that holds one) and for as short as a
/// request's reads and commit: other processes wait meanwhile.
#[must_use = "a turn covers only the writes made while it is held"]
pub struct WriteTurn {
    generation: u64,
    synced_seq: u64,
    release: Option<std::sync::Arc<dyn TurnRelease>>,
    /// Left on the thread that took it (nesting is counted per thread).
    _not_send: std::marker::PhantomData<std::rc::Rc<()>>,
}

impl WriteTurn {
    /// The turn of a store only this process writes.
    pub fn solo() -> Self {
        Self {
            generation: 0,
            synced_seq: 0,
            release: None,
            _not_send: std::marker::PhantomData,
        }
    }

    pub(crate) fn shared(
        generation: u64,
        synced_seq: u64,
        release: std::sync::Arc<dyn TurnRelease>,
    ) -> Self {
        Self {
            generation,
            synced_seq,
            release: Some(release),
            _not_send: std::marker::PhantomData,
        }
    }

    /// Changes when another process wrote the store since this one last held a turn.
    pub fn generation(&self) -> u64 {
        self.generation
    }

    /// The store's last sequence number when this process's turn began: every change up to
    /// it, another process's included, is committed.
    pub fn synced_seq(&self) -> u64 {
        self.synced_seq
    }
}

impl Drop for WriteTurn {
    fn drop(&mut self) {
        if let Some(release) = self.release.take() {
            release.leave();
        }
    }
}

impl std::fmt::Debug for WriteTurn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WriteTurn")
            .field("generation", &self.generation)
            .field("synced_seq", &self.synced_seq)
            .finish()
    }
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

    /// The values of several keys of `keyspace`, in their order (what [`Store::get`] gives
    /// for each). A store over the network answers in one round trip.
    fn get_many(
        &self,
        keyspace: Keyspace,
        keys: &[&[u8]],
    ) -> Result<Vec<Option<Vec<u8>>>, StoreError> {
        keys.iter().map(|key| self.get(keyspace, key)).collect()
    }

    /// Whether reads cost a round trip each, so that a caller reading many known keys should
    /// ask [`Store::get_many`] ahead of time.
    fn reads_are_remote(&self) -> bool {
        false
    }

    /// Every entry of `keyspace` whose key starts with `prefix`, in key order.
    fn scan_prefix(&self, keyspace: Keyspace, prefix: &[u8]) -> ScanIter<'_>;

    /// Every entry of `keyspace` whose key is `>= start`, in key order (paging).
    fn scan_from(&self, keyspace: Keyspace, start: &[u8]) -> ScanIter<'_>;

    /// Applies `batch` atomically (visible to readers at once) and returns a ticket that
    /// resolves when it is durable. Acknowledge the caller only after the ticket resolves.
    fn commit(&self, batch: WriteBatch) -> Result<CommitTicket, StoreError>;

    /// A turn at writing: read what a change depends on and commit it while holding one
    /// ([`WriteTurn`]). Only stores that several processes write hand out real turns.
    fn write_turn(&self) -> Result<WriteTurn, StoreError> {
        Ok(WriteTurn::solo())
    }

    /// Flushes everything committed so far, blocking.
    fn flush(&self) -> Result<(), StoreError>;

    /// Change-feed entries with a sequence number above `after`, at most `limit`.
    /// [`StoreError::FeedTrimmed`] when entries after `after` were already forgotten (a
    /// follower that far behind rebuilds what it derives).
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
