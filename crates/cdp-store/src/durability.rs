//! Group commit: one flush for every writer waiting at the time.
//!
//! Writers commit their batch (visible at once; the applier thread puts it into sled) and then
//! wait for the durable sequence number to reach theirs. A single flusher thread loops: take
//! the highest applied sequence number, flush the store and the commit mark, publish the new
//! durable number. While one flush runs, new
//! writers queue up and share the next one, so throughput grows with concurrency instead of
//! being capped at one fsync per write.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};

use tokio::sync::watch;

use crate::StoreError;

#[derive(Debug, Default)]
struct FlushState {
    requested: u64,
    durable: u64,
    failed: Option<String>,
    shutdown: bool,
    flushes: u64,
}

/// Shared between the store, its flusher thread and every commit ticket.
#[derive(Debug)]
pub(crate) struct Durability {
    state: Mutex<FlushState>,
    wake_flusher: Condvar,
    flushed: Condvar,
    /// The durable sequence number, for async waiters and change-feed followers.
    durable_tx: watch::Sender<u64>,
    /// Highest sequence number applied to the store (not necessarily durable).
    pub(crate) applied: AtomicU64,
}

impl Durability {
    pub(crate) fn new(durable: u64) -> Arc<Self> {
        let (durable_tx, _) = watch::channel(durable);
        Arc::new(Self {
            state: Mutex::new(FlushState {
                requested: durable,
                durable,
                ..FlushState::default()
            }),
            wake_flusher: Condvar::new(),
            flushed: Condvar::new(),
            durable_tx,
            applied: AtomicU64::new(durable),
        })
    }

    fn lock(&self) -> MutexGuard<'_, FlushState> {
        // A panic while holding this lock leaves consistent integers behind; keep going.
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    pub(crate) fn request(&self, seq: u64) {
        let mut state = self.lock();
        if seq > state.requested {
            state.requested = seq;
            self.wake_flusher.notify_one();
        }
    }

    /// The applier put every batch up to `seq` into sled.
    pub(crate) fn mark_applied(&self, seq: u64) {
        // Under the lock, so a flusher deciding to sleep cannot miss the wake-up.
        let _state = self.lock();
        self.applied.fetch_max(seq, Ordering::AcqRel);
        self.wake_flusher.notify_one();
    }

    /// Another process committed everything up to `seq` (a shared database): it is applied
    /// and durable here too, for followers of the change feed.
    pub(crate) fn advance_to(&self, seq: u64) {
        self.mark_applied(seq);
        self.request(seq);
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
        self.wake_flusher.notify_all();
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

    /// The flusher thread's loop. `flush(target)` must make every write up to `target` durable.
    pub(crate) fn run_flusher(&self, mut flush: impl FnMut(u64) -> Result<(), StoreError>) {
        loop {
            {
                let mut state = self.lock();
                // Flush when someone waits for a batch the last flush did not cover and the
                // applier has put something new into sled (flushing earlier covers nothing).
                while !state.shutdown
                    && state.failed.is_none()
                    && (state.requested <= state.durable
                        || self.applied.load(Ordering::Acquire) <= state.durable)
                {
                    state = self
                        .wake_flusher
                        .wait(state)
                        .unwrap_or_else(|poisoned| poisoned.into_inner());
                }
                let nothing_new = state.requested <= state.durable
                    || self.applied.load(Ordering::Acquire) <= state.durable;
                if state.failed.is_some() || (state.shutdown && nothing_new) {
                    return;
                }
            }
            // Everything applied up to now is in sled's memory; this flush covers it all.
            let target = self.applied.load(Ordering::Acquire);
            let result = flush(target);
            let mut state = self.lock();
            state.flushes += 1;
            match result {
                Ok(()) => state.durable = state.durable.max(target),
                Err(error) => {
                    tracing::error!(%error, "store flush failed; refusing further writes");
                    state.failed = Some(error.to_string());
                }
            }
            let durable = state.durable;
            let failed = state.failed.is_some();
            drop(state);
            self.durable_tx.send_replace(durable);
            self.flushed.notify_all();
            if failed {
                return;
            }
        }
    }

    pub(crate) fn shutdown(&self) {
        let mut state = self.lock();
        state.shutdown = true;
        self.wake_flusher.notify_all();
        drop(state);
        self.flushed.notify_all();
    }

    fn check(&self, seq: u64) -> Option<Result<(), StoreError>> {
        let state = self.lock();
        if state.durable >= seq {
            Some(Ok(()))
        } else if let Some(failure) = &state.failed {
            Some(Err(StoreError::Unavailable(failure.clone())))
        } else if state.shutdown && state.requested < seq {
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

    /// Resolves once the batch is flushed to disk (asking the flusher for it).
    pub async fn durable(self) -> Result<(), StoreError> {
        let mut receiver = self.durability.subscribe();
        self.durability.request(self.seq);
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
        self.durability.request(self.seq);
        self.durability.wait_blocking(self.seq)
    }
}
