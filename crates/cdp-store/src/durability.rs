//! Group commit: one sync for every writer waiting at the time.
//!
//! Writers commit their batch (visible at once through the queue readers look at) and then
//! wait for the durable sequence number to reach theirs. The backend's applier thread takes
//! every batch queued at once as one group, makes the group durable (one journal sync or one
//! transaction), records the group's last sequence number in the commit mark and publishes it.
//! While one group is synced, new writers queue up and share the next sync, so throughput grows
//! with concurrency instead of being capped at one fsync per write.
//!
//! The mark is written by the applier itself, after its sync: a separate flusher thread for it
//! cost a wake-up and a second group boundary per sync, and with both in flight at once the
//! groups were smaller (at 1M profiles, 8 clients reading: 1.5 audited reads per sync, and the
//! two threads 22 % of the process's CPU; docs/performance.md "Profile lookup").

use std::sync::{Arc, Condvar, Mutex, MutexGuard};

use tokio::sync::watch;

use crate::StoreError;
use crate::commit_mark::CommitMark;

#[derive(Debug, Default)]
struct FlushState {
    durable: u64,
    failed: Option<String>,
    shutdown: bool,
    flushes: u64,
}

/// Shared between the store, its applier thread and every commit ticket.
#[derive(Debug)]
pub(crate) struct Durability {
    state: Mutex<FlushState>,
    flushed: Condvar,
    /// The durable sequence number, for async waiters and change-feed followers.
    durable_tx: watch::Sender<u64>,
    /// Where the last durable sequence number is recorded outside the engine (none on
    /// PostgreSQL: a committed transaction is durable, and the database detects its own
    /// damage).
    mark: Option<CommitMark>,
}

impl Durability {
    pub(crate) fn new(durable: u64, mark: Option<CommitMark>) -> Arc<Self> {
        let (durable_tx, _) = watch::channel(durable);
        Arc::new(Self {
            state: Mutex::new(FlushState {
                durable,
                ..FlushState::default()
            }),
            flushed: Condvar::new(),
            durable_tx,
            mark,
        })
    }

    fn lock(&self) -> MutexGuard<'_, FlushState> {
        // A panic while holding this lock leaves consistent integers behind; keep going.
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The applier made every batch up to `seq` durable in the store: record it in the commit
    /// mark, then publish it to the waiting tickets. With a mark only the applier calls it;
    /// on a shared database the follower of its feed does too (for what other nodes wrote).
    pub(crate) fn mark_durable(&self, seq: u64) {
        if let Some(mark) = &self.mark
            && let Err(error) = mark.write(seq)
        {
            // The store holds the group, but a restart could not tell a later loss of it:
            // acknowledging it would promise what the mark cannot keep.
            self.fail(format!("store flush failed: {error}"));
            return;
        }
        let mut state = self.lock();
        state.flushes += 1;
        state.durable = state.durable.max(seq);
        let durable = state.durable;
        drop(state);
        self.durable_tx.send_replace(durable);
        self.flushed.notify_all();
    }

    /// A write to the store failed: refuse further writes and fail every waiting ticket.
    pub(crate) fn fail(&self, failure: String) {
        let mut state = self.lock();
        if state.failed.is_none() {
            tracing::error!(%failure, "store write failed; refusing further writes");
            state.failed = Some(failure);
        }
        let durable = state.durable;
        drop(state);
        self.flushed.notify_all();
        self.durable_tx.send_replace(durable);
    }

    pub(crate) fn failure(&self) -> Option<String> {
        self.lock().failed.clone()
    }

    pub(crate) fn durable(&self) -> u64 {
        self.lock().durable
    }

    pub(crate) fn flushes(&self) -> u64 {
        self.lock().flushes
    }

    pub(crate) fn subscribe(&self) -> watch::Receiver<u64> {
        self.durable_tx.subscribe()
    }

    /// The applier has stopped: tickets still waiting will not become durable.
    pub(crate) fn shutdown(&self) {
        let mut state = self.lock();
        state.shutdown = true;
        let durable = state.durable;
        drop(state);
        self.flushed.notify_all();
        self.durable_tx.send_replace(durable);
    }

    fn check(&self, seq: u64) -> Option<Result<(), StoreError>> {
        let state = self.lock();
        if state.durable >= seq {
            Some(Ok(()))
        } else if let Some(failure) = &state.failed {
            Some(Err(StoreError::Unavailable(failure.clone())))
        } else if state.shutdown {
            Some(Err(StoreError::Unavailable("the store is closing".into())))
        } else {
            None
        }
    }

    fn wait_blocking(&self, seq: u64) -> Result<(), StoreError> {
        let mut state = self.lock();
        loop {
            if state.durable >= seq {
                return Ok(());
            }
            if let Some(failure) = &state.failed {
                return Err(StoreError::Unavailable(failure.clone()));
            }
            if state.shutdown {
                return Err(StoreError::Unavailable("the store is closing".into()));
            }
            state = self
                .flushed
                .wait(state)
                .unwrap_or_else(|poisoned| poisoned.into_inner());
        }
    }
}

/// A committed batch: applied, and durable once [`CommitTicket::durable`] resolves.
#[derive(Debug)]
#[must_use = "a write is not durable until its ticket resolves"]
pub struct CommitTicket {
    seq: u64,
    durability: Arc<Durability>,
}

impl CommitTicket {
    pub(crate) fn new(seq: u64, durability: Arc<Durability>) -> Self {
        Self { seq, durability }
    }

    /// The batch's sequence number in the change feed.
    pub fn seq(&self) -> u64 {
        self.seq
    }

    /// Resolves once the batch is durable (its group synced and in the commit mark).
    pub async fn durable(self) -> Result<(), StoreError> {
        let mut receiver = self.durability.subscribe();
        loop {
            if let Some(result) = self.durability.check(self.seq) {
                return result;
            }
            if receiver.changed().await.is_err() {
                return Err(StoreError::Unavailable("the store was closed".into()));
            }
        }
    }

    /// Blocks until the batch is flushed to disk. For CLI tools and tests, not async code.
    pub fn wait_durable(self) -> Result<(), StoreError> {
        self.durability.wait_blocking(self.seq)
    }
}
