//! The commit path both embedded backends share: `commit` validates a batch, numbers it,
//! records its change-feed entry and sequence number in it, notes its keys in the absent-key
//! filters and queues it for the backend's applier thread (readers see it at once through
//! `in_flight`); tickets resolve once the backend's applier has made the group durable and
//! written the commit mark. The backends differ only in how the applier writes a group and
//! what the final flush syncs.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, Sender};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use crate::absent::AbsentFilters;
use crate::commit_mark::CommitMark;
use crate::durability::Durability;
use crate::encoding::{encode_change_of, prefixed};
use crate::in_flight::{InFlight, PendingBatch, Writes};
use crate::meta::LAST_SEQ_KEY;
use crate::store::{StoreHealth, StoreStats};
use crate::{CommitTicket, Keyspace, StoreError, WriteBatch};

pub(crate) struct CommitQueue {
    pub(crate) durability: Arc<Durability>,
    /// The last sequence number handed out. Held while a batch is numbered and queued, so that
    /// queue order is sequence order (the applier applies in queue order, and the durable
    /// sequence number it publishes relies on sequence order being apply order).
    writer: Mutex<u64>,
    /// Committed batches the applier has not written yet; reads look here first.
    pub(crate) in_flight: Arc<InFlight>,
    /// Which keys of the keyspaces probed for new keys certainly do not exist (see `absent`).
    pub(crate) absent: AbsentFilters,
    /// The applier's queue; `None` once the store is closed.
    applier_queue: Mutex<Option<Sender<Arc<PendingBatch>>>>,
    commits: AtomicU64,
    /// Damage a verification found after open (see `damage.rs`): writes are refused.
    damage: Mutex<Option<String>>,
    /// The database cannot be reached (PostgreSQL): new writes are refused meanwhile.
    outage: Mutex<Option<String>>,
    /// Every block was read and found sound since open.
    verified: AtomicBool,
    applier: Mutex<Option<JoinHandle<()>>>,
    /// The feed lists the identity graph's keys too (several nodes share the store:
    /// [`Keyspace::followed_by_nodes`]).
    feed_for_nodes: AtomicBool,
}

/// A batch's operations keyed as stored, the later of two operations on one key winning (as
/// in an engine's batch). The tree is built in bulk from the sorted operations: inserted one
/// by one, a campaign send's million contact records spent about a tenth of the send's
/// finishing in node splits, and the half-empty nodes that ascending inserts leave doubled
/// the tree's memory (fresh pages, which the kernel zeroes first).
fn writes_of(ops: Vec<crate::batch::BatchOp>) -> Writes {
    let mut entries: Vec<(Vec<u8>, Option<sled::IVec>)> = ops
        .into_iter()
        .map(|op| {
            (
                prefixed(op.keyspace, &op.key),
                op.value.map(sled::IVec::from),
            )
        })
        .collect();
    // Stable: operations on one key stay in their order.
    entries.sort_by(|a, b| a.0.cmp(&b.0));
    // `later` goes, its value taking the place of the earlier one's.
    entries.dedup_by(|later, earlier| {
        let same = later.0 == earlier.0;
        if same {
            std::mem::swap(&mut later.1, &mut earlier.1);
        }
        same
    });
    entries.into_iter().collect()
}

impl CommitQueue {
    /// Starts the store's applier thread at sequence number `last_seq` (`applier` takes the
    /// durability, the queue readers see and the batches to write, and makes each group
    /// durable before [`Durability::mark_durable`] records it in the commit mark).
    pub(crate) fn start(
        last_seq: u64,
        absent: AbsentFilters,
        mark: Option<CommitMark>,
        applier: impl FnOnce(&Durability, &InFlight, &Receiver<Arc<PendingBatch>>) + Send + 'static,
    ) -> Result<Self, StoreError> {
        // The mark must reflect the store as opened (initialisation may have written to it).
        if let Some(mark) = &mark {
            mark.write(last_seq)?;
        }
        let durability = Durability::new(last_seq, mark);
        let in_flight = Arc::new(InFlight::default());
        let (queue, batches) = std::sync::mpsc::channel();
        let applier = {
            let (durability, in_flight) = (durability.clone(), in_flight.clone());
            std::thread::Builder::new()
                .name("cdp-store-applier".into())
                .spawn(move || applier(&durability, &in_flight, &batches))
                .map_err(|e| StoreError::io("cannot start the applier thread", e))?
        };
        Ok(Self {
            durability,
            writer: Mutex::new(last_seq),
            in_flight,
            absent,
            applier_queue: Mutex::new(Some(queue)),
            commits: AtomicU64::new(0),
            damage: Mutex::new(None),
            outage: Mutex::new(None),
            verified: AtomicBool::new(false),
            applier: Mutex::new(Some(applier)),
            feed_for_nodes: AtomicBool::new(false),
        })
    }

    /// From now on the feed lists the identity graph's keys too (several nodes share the
    /// store).
    pub(crate) fn feed_for_nodes(&self) {
        self.feed_for_nodes.store(true, Ordering::Relaxed);
    }

    /// The last sequence number this process handed out (or resumed at).
    pub(crate) fn last_seq(&self) -> u64 {
        *self.writer.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Another process wrote the shared database through `seq` while this one did not write
    /// (nothing of this process is queued): number the next batch after it, and let
    /// followers of the feed see it.
    pub(crate) fn resume_at(&self, seq: u64) {
        let mut writer = self.writer.lock().unwrap_or_else(|p| p.into_inner());
        if seq > *writer {
            *writer = seq;
        }
        drop(writer);
        self.durability.mark_durable(seq);
    }

    pub(crate) fn check_writable(&self) -> Result<(), StoreError> {
        if let Some(failure) = self.durability.failure() {
            return Err(StoreError::Unavailable(failure));
        }
        if let Some(problem) = self.damage() {
            return Err(StoreError::Unavailable(format!(
                "the store is damaged: {problem}"
            )));
        }
        if let Some(problem) = self.outage() {
            return Err(StoreError::Unavailable(format!(
                "the database cannot be reached ({problem}); try again shortly"
            )));
        }
        Ok(())
    }

    fn outage(&self) -> Option<String> {
        self.outage
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// The database became unreachable (`Some`) or reachable again (`None`).
    pub(crate) fn set_outage(&self, problem: Option<String>) {
        *self.outage.lock().unwrap_or_else(|p| p.into_inner()) = problem;
    }

    fn damage(&self) -> Option<String> {
        self.damage
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// A verification after open found damage: refuse writes from now on.
    pub(crate) fn mark_damaged(&self, problem: String) {
        let mut damage = self.damage.lock().unwrap_or_else(|p| p.into_inner());
        if damage.is_none() {
            *damage = Some(problem);
        }
    }

    /// Every block was read and found sound.
    pub(crate) fn mark_verified(&self) {
        self.verified.store(true, Ordering::Relaxed);
    }

    pub(crate) fn commit(&self, batch: WriteBatch) -> Result<CommitTicket, StoreError> {
        batch.validate()?;
        self.check_writable()?;
        let change = if self.feed_for_nodes.load(Ordering::Relaxed) {
            encode_change_of(&batch.ops, Keyspace::followed_by_nodes)
        } else {
            encode_change_of(&batch.ops, Keyspace::followed)
        };
        let mut writes = writes_of(batch.ops);
        let mut last_seq = self.writer.lock().unwrap_or_else(|p| p.into_inner());
        let seq = *last_seq + 1;
        writes.insert(
            prefixed(Keyspace::Meta, LAST_SEQ_KEY),
            Some(sled::IVec::from(&seq.to_be_bytes())),
        );
        writes.insert(
            prefixed(Keyspace::Changes, &seq.to_be_bytes()),
            Some(sled::IVec::from(change)),
        );
        let batch = Arc::new(PendingBatch { seq, writes });
        let bytes = batch.bytes();
        self.in_flight
            .wait_for_room(bytes, || self.durability.failure())?;
        // Before the batch is queued, so that no reader finds the key in neither the queue nor
        // the filter. A commit that fails below leaves its keys in the filter: a false "maybe".
        for (full, value) in &batch.writes {
            if value.is_some()
                && let Some((tag, key)) = full.split_first()
                && let Some(keyspace) = Keyspace::from_tag(*tag)
            {
                self.absent.insert(keyspace, key);
            }
        }
        {
            let queue = self.applier_queue.lock().unwrap_or_else(|p| p.into_inner());
            let queue = queue
                .as_ref()
                .ok_or_else(|| StoreError::Unavailable("the store is closed".into()))?;
            self.in_flight.push(batch.clone(), bytes);
            if queue.send(batch).is_err() {
                self.in_flight.pop(seq);
                return Err(StoreError::Unavailable("the store's writer stopped".into()));
            }
        }
        *last_seq = seq;
        drop(last_seq);
        self.commits.fetch_add(1, Ordering::Relaxed);
        // The flush is requested when the ticket is awaited, not here: a caller that commits
        // many batches in a row (one per message of a request) waits once, and gets one flush.
        Ok(CommitTicket::new(seq, self.durability.clone()))
    }

    /// Waits until everything committed so far is applied and durable (the first half of a
    /// flush; the backend then syncs what it has to).
    pub(crate) fn wait_durable(&self) -> Result<(), StoreError> {
        let committed = *self.writer.lock().unwrap_or_else(|p| p.into_inner());
        self.in_flight.wait_through(committed);
        // Damage found by a verification does not stop the applier: what was committed is
        // still made durable.
        if let Some(failure) = self.durability.failure() {
            return Err(StoreError::Unavailable(failure));
        }
        // The applier publishes a group durable before it leaves the queue: this returns at
        // once unless the mark's write failed.
        CommitTicket::new(committed, self.durability.clone()).wait_durable()
    }

    pub(crate) fn health(&self) -> StoreHealth {
        if let Some(problem) = self.damage() {
            return StoreHealth::Damaged(problem);
        }
        if let Some(failure) = self.durability.failure() {
            return StoreHealth::Failed(failure);
        }
        if let Some(problem) = self.outage() {
            return StoreHealth::Unreachable(problem);
        }
        if self
            .applier
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .is_none()
        {
            return StoreHealth::Closed;
        }
        StoreHealth::Ready
    }

    pub(crate) fn stats(&self) -> StoreStats {
        StoreStats {
            commits: self.commits.load(Ordering::Relaxed),
            flushes: self.durability.flushes(),
            last_seq: self.last_seq(),
            durable_seq: self.durability.durable(),
            verified: self.verified.load(Ordering::Relaxed),
        }
    }

    /// Flushes (`flush`: the backend's), stops the applier, and makes every
    /// later commit fail. Idempotent.
    pub(crate) fn close(
        &self,
        flush: impl FnOnce() -> Result<(), StoreError>,
    ) -> Result<(), StoreError> {
        let result = flush();
        // No more batches: the applier finishes the queue (empty after the flush) and stops.
        self.applier_queue
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take();
        join(&self.applier);
        self.durability.shutdown();
        result
    }
}

/// Waits for a background thread of the store to end (once; later calls find nothing).
fn join(thread: &Mutex<Option<JoinHandle<()>>>) {
    if let Some(handle) = thread.lock().unwrap_or_else(|p| p.into_inner()).take() {
        let _ = handle.join();
    }
}
