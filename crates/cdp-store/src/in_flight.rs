//! Batches committed but not yet applied to sled, and reads that see them.
//!
//! `SledStore::commit` hands a batch to the applier thread instead of applying it on the
//! caller's thread: the caller (the engine, holding its write lock) goes on resolving the next
//! request while the previous one is written, so ingestion uses both cores. The contract of
//! [`crate::Store::commit`] is unchanged, a committed batch is visible to every reader at once,
//! because every read looks here first: newest batch first, then sled.
//!
//! Ordering: a batch is added before `commit` returns and removed only after sled has applied
//! it, so a reader that misses it here finds it in sled.

use std::collections::{BTreeMap, VecDeque};
use std::ops::Bound;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};

use crate::StoreError;

/// Values by full (keyspace-prefixed) key; `None` deletes.
pub(crate) type Writes = BTreeMap<Vec<u8>, Option<sled::IVec>>;

/// One committed batch on its way to sled.
#[derive(Debug)]
pub(crate) struct PendingBatch {
    pub(crate) seq: u64,
    pub(crate) writes: Writes,
}

impl PendingBatch {
    /// Bytes of keys and values, what the queue holds in memory for it.
    pub(crate) fn bytes(&self) -> usize {
        self.writes
            .iter()
            .map(|(key, value)| key.len() + value.as_ref().map_or(0, |v| v.len()))
            .sum()
    }
}

/// Bytes of batches that may wait for the applier before `commit` waits too: a few requests'
/// worth keeps both cores busy, and many small batches still form one group (one sync).
pub(crate) const MAX_IN_FLIGHT_BYTES: usize = 8 * 1024 * 1024;

#[derive(Debug, Default)]
struct Queue {
    batches: VecDeque<(Arc<PendingBatch>, usize)>,
    bytes: usize,
    /// The applier failed: nothing will leave the queue any more.
    stopped: bool,
}

/// The queue of committed, unapplied batches.
#[derive(Debug, Default)]
pub(crate) struct InFlight {
    queue: Mutex<Queue>,
    /// Batches in the queue, read without the lock: most reads of an idle store skip it.
    len: AtomicUsize,
    /// Signalled whenever a batch leaves the queue.
    left: Condvar,
}

impl InFlight {
    fn lock(&self) -> MutexGuard<'_, Queue> {
        // The queue holds plain data that no panic can leave half-changed.
        self.queue.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Waits until the queue has room for `bytes` more (backpressure on committers). A batch
    /// larger than the whole allowance goes once the queue is empty.
    pub(crate) fn wait_for_room(
        &self,
        bytes: usize,
        failed: impl Fn() -> Option<String>,
    ) -> Result<(), StoreError> {
        let mut queue = self.lock();
        while queue.bytes > 0 && queue.bytes + bytes > MAX_IN_FLIGHT_BYTES && !queue.stopped {
            queue = self.left.wait(queue).unwrap_or_else(|p| p.into_inner());
        }
        match failed() {
            Some(failure) => Err(StoreError::Unavailable(failure)),
            None => Ok(()),
        }
    }

    pub(crate) fn push(&self, batch: Arc<PendingBatch>, bytes: usize) {
        let mut queue = self.lock();
        queue.bytes += bytes;
        queue.batches.push_back((batch, bytes));
        self.len.store(queue.batches.len(), Ordering::Release);
    }

    /// Removes the oldest batch (the one just applied, or dropped after a failure).
    pub(crate) fn pop(&self, seq: u64) {
        let mut queue = self.lock();
        if queue
            .batches
            .front()
            .is_some_and(|(batch, _)| batch.seq == seq)
            && let Some((_, bytes)) = queue.batches.pop_front()
        {
            queue.bytes -= bytes;
        }
        self.len.store(queue.batches.len(), Ordering::Release);
        drop(queue);
        self.left.notify_all();
    }

    /// The applier stopped after a failure. The queued batches stay readable: the engine
    /// built later batches on them, and those journaled are replayed at the next open; but
    /// nobody waits for them to leave any more.
    pub(crate) fn stop(&self) {
        self.lock().stopped = true;
        self.left.notify_all();
    }

    /// Waits until every batch numbered `seq` or lower has left the queue, or the applier
    /// stopped.
    pub(crate) fn wait_through(&self, seq: u64) {
        let mut queue = self.lock();
        while !queue.stopped
            && queue
                .batches
                .front()
                .is_some_and(|(batch, _)| batch.seq <= seq)
        {
            queue = self.left.wait(queue).unwrap_or_else(|p| p.into_inner());
        }
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.len.load(Ordering::Acquire) == 0
    }

    /// The newest queued write of `key`: `Some(None)` when it is deleted, `None` when no
    /// queued batch touches it (read sled).
    pub(crate) fn get(&self, key: &[u8]) -> Option<Option<sled::IVec>> {
        if self.is_empty() {
            return None;
        }
        let queue = self.lock();
        queue
            .batches
            .iter()
            .rev()
            .find_map(|(batch, _)| batch.writes.get(key).cloned())
    }

    /// The queued writes of keys in `[start, end)`, newest winning, or `None` when there are
    /// none (the scan reads sled alone).
    pub(crate) fn range(&self, start: &[u8], end: &[u8]) -> Option<Writes> {
        if self.is_empty() {
            return None;
        }
        let queue = self.lock();
        let mut out = Writes::new();
        for (batch, _) in &queue.batches {
            let range = (Bound::Included(start), Bound::Excluded(end));
            for (key, value) in batch.writes.range::<[u8], _>(range) {
                out.insert(key.clone(), value.clone());
            }
        }
        (!out.is_empty()).then_some(out)
    }
}

/// Entries of a range of the engine with queued writes laid over them, in key order. Keys are
/// full (prefixed) keys in both inputs.
pub(crate) struct MergedRange<I: Iterator> {
    base: std::iter::Peekable<I>,
    queued: std::iter::Peekable<std::collections::btree_map::IntoIter<Vec<u8>, Option<sled::IVec>>>,
}

impl<I, K, E> MergedRange<I>
where
    I: Iterator<Item = Result<(K, sled::IVec), E>>,
    K: AsRef<[u8]>,
{
    pub(crate) fn new(base: I, queued: Writes) -> Self {
        Self {
            base: base.peekable(),
            queued: queued.into_iter().peekable(),
        }
    }
}

impl<I, K, E> Iterator for MergedRange<I>
where
    I: Iterator<Item = Result<(K, sled::IVec), E>>,
    K: AsRef<[u8]>,
{
    type Item = Result<(Vec<u8>, sled::IVec), E>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            let base_key = match self.base.peek() {
                Some(Ok((key, _))) => Some(key.as_ref()),
                Some(Err(_)) => {
                    return self
                        .base
                        .next()
                        .map(|item| item.map(|(k, v)| (k.as_ref().to_vec(), v)));
                }
                None => None,
            };
            let take_queued = match (base_key, self.queued.peek()) {
                (_, None) => false,
                (None, Some(_)) => true,
                (Some(base), Some((queued, _))) => queued.as_slice() <= base,
            };
            if !take_queued {
                return self
                    .base
                    .next()
                    .map(|item| item.map(|(key, value)| (key.as_ref().to_vec(), value)));
            }
            let Some((key, value)) = self.queued.next() else {
                continue;
            };
            // The queued write replaces (or deletes) the same key in sled.
            if let Some(Ok((base, _))) = self.base.peek()
                && base.as_ref() == key.as_slice()
            {
                self.base.next();
            }
            if let Some(value) = value {
                return Some(Ok((key, value)));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn base(entries: &[(&str, &str)]) -> Vec<Result<(sled::IVec, sled::IVec), sled::Error>> {
        entries
            .iter()
            .map(|(k, v)| {
                Ok((
                    sled::IVec::from(k.as_bytes()),
                    sled::IVec::from(v.as_bytes()),
                ))
            })
            .collect()
    }

    fn merged(
        base_entries: &[(&str, &str)],
        queued: &[(&str, Option<&str>)],
    ) -> Vec<(String, String)> {
        let writes: Writes = queued
            .iter()
            .map(|(k, v)| {
                (
                    k.as_bytes().to_vec(),
                    v.map(|v| sled::IVec::from(v.as_bytes())),
                )
            })
            .collect();
        MergedRange::new(base(base_entries).into_iter(), writes)
            .map(|item| {
                let (k, v) = item.unwrap();
                (
                    String::from_utf8(k).unwrap(),
                    String::from_utf8(v.to_vec()).unwrap(),
                )
            })
            .collect()
    }

    #[test]
    fn queued_writes_replace_insert_and_delete_in_key_order() {
        let out = merged(
            &[("a", "1"), ("c", "3"), ("e", "5")],
            &[
                ("b", Some("2q")),
                ("c", Some("3q")),
                ("e", None),
                ("f", Some("6q")),
            ],
        );
        let expected: Vec<(String, String)> = [("a", "1"), ("b", "2q"), ("c", "3q"), ("f", "6q")]
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        assert_eq!(out, expected);
        assert!(merged(&[("a", "1")], &[("a", None)]).is_empty());
        assert_eq!(merged(&[], &[("z", Some("9"))]).len(), 1);
    }

    #[test]
    fn the_newest_queued_batch_wins_and_applied_batches_leave() {
        let in_flight = InFlight::default();
        let batch = |seq, value: Option<&str>| {
            let mut writes = Writes::new();
            writes.insert(b"k".to_vec(), value.map(|v| sled::IVec::from(v.as_bytes())));
            Arc::new(PendingBatch { seq, writes })
        };
        assert_eq!(in_flight.get(b"k"), None);
        in_flight.push(batch(1, Some("one")), 4);
        in_flight.push(batch(2, None), 1);
        assert_eq!(in_flight.get(b"k"), Some(None));
        assert_eq!(in_flight.range(b"a", b"z").map(|w| w.len()), Some(1));
        in_flight.pop(1);
        assert_eq!(in_flight.get(b"k"), Some(None));
        in_flight.pop(2);
        assert_eq!(in_flight.get(b"k"), None);
        assert!(in_flight.range(b"a", b"z").is_none());
        in_flight.wait_through(2);
    }
}
