//! Which records the writer's cache holds, readable without the write lock.
//!
//! Reading ahead before the lock (`prefetch.rs`) should skip what the cache holds: decoding a
//! profile the cache has is wasted, and at 200k people that waste took as much CPU as the lock
//! time the read-ahead saved. The cache lives under the lock, so each of its maps keeps a
//! counting filter beside it: one counter per slot (a slot from the record's key, which is a
//! random id, a digest or a blind index), raised when the map takes a key and lowered when it
//! lets it go. Zero means certainly absent; anything else means maybe present (other keys share
//! the slot). It is a hint only: what the read-ahead reads is checked against the cache itself
//! under the lock, and what it skips is read there as before.

use std::hash::Hash;
use std::num::NonZeroUsize;
use std::sync::Arc;
use std::sync::atomic::{AtomicU16, Ordering};

use cdp_core::ProfileId;
use lru::LruCache;

use crate::records::{EvidenceId, NodeKey};

/// Keys whose leading bytes are uniformly random.
pub(crate) trait Slot {
    fn slot_bits(&self) -> u64;
}

fn leading(bytes: &[u8]) -> u64 {
    let mut word = [0u8; 8];
    let n = bytes.len().min(8);
    word[..n].copy_from_slice(&bytes[..n]);
    u64::from_le_bytes(word)
}

impl Slot for NodeKey {
    fn slot_bits(&self) -> u64 {
        leading(self.0.as_bytes())
    }
}

impl Slot for EvidenceId {
    fn slot_bits(&self) -> u64 {
        leading(&self.0)
    }
}

impl Slot for ProfileId {
    fn slot_bits(&self) -> u64 {
        leading(self.as_bytes())
    }
}

/// A counting filter of the keys one cache map holds (see the module).
#[derive(Debug)]
pub(crate) struct Presence {
    counts: Box<[AtomicU16]>,
}

impl Presence {
    /// `slots` counters (a power of two); with a map of n keys, about n / slots of the absent
    /// keys read as maybe present.
    pub(crate) fn new(slots: usize) -> Self {
        let slots = slots.next_power_of_two();
        Self {
            counts: (0..slots).map(|_| AtomicU16::new(0)).collect(),
        }
    }

    fn counter(&self, key: &impl Slot) -> &AtomicU16 {
        let mask = self.counts.len() as u64 - 1;
        &self.counts[usize::try_from(key.slot_bits() & mask).unwrap_or(0)]
    }

    /// Whether the map may hold `key` (false: it certainly does not).
    pub(crate) fn maybe(&self, key: &impl Slot) -> bool {
        self.counter(key).load(Ordering::Relaxed) != 0
    }

    fn add(&self, key: &impl Slot) {
        // Wrapping would need 65,536 keys in one slot; even then only the hint would be wrong.
        self.counter(key).fetch_add(1, Ordering::Relaxed);
    }

    fn remove(&self, key: &impl Slot) {
        self.counter(key).fetch_sub(1, Ordering::Relaxed);
    }

    fn clear(&self) {
        for count in self.counts.iter() {
            count.store(0, Ordering::Relaxed);
        }
    }
}

/// What each map of the writer's cache holds (shared with the engine, read without the lock).
#[derive(Debug)]
pub(crate) struct CachePresence {
    pub(crate) nodes: Arc<Presence>,
    pub(crate) evidence: Arc<Presence>,
    pub(crate) profiles: Arc<Presence>,
}

impl CachePresence {
    /// Four times as many slots as the map holds keys: about one absent key in five reads as
    /// maybe present when the map is full.
    pub(crate) fn new(nodes: usize, evidence: usize, profiles: usize) -> Self {
        let slots = |n: usize| Arc::new(Presence::new((n * 4).min(MAX_SLOTS)));
        Self {
            nodes: slots(nodes),
            evidence: slots(evidence),
            profiles: slots(profiles),
        }
    }
}

/// The tests of the engine and the server open hundreds of engines, unoptimised: smaller
/// filters (more keys read as maybe present, so left to the lock) keep them fast.
#[cfg(not(feature = "test-support"))]
const MAX_SLOTS: usize = 1 << 22;
#[cfg(feature = "test-support")]
const MAX_SLOTS: usize = 1 << 12;

/// An LRU map that keeps its [`Presence`] current.
pub(crate) struct Tracked<K, V> {
    map: LruCache<K, V>,
    presence: Arc<Presence>,
}

impl<K: Hash + Eq + Copy + Slot, V> Tracked<K, V> {
    /// A map over a new (all-zero) presence.
    pub(crate) fn new(capacity: NonZeroUsize, presence: Arc<Presence>) -> Self {
        Self {
            map: LruCache::new(capacity),
            presence,
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.map.len()
    }

    pub(crate) fn contains(&self, key: &K) -> bool {
        self.map.contains(key)
    }

    pub(crate) fn get(&mut self, key: &K) -> Option<&V> {
        self.map.get(key)
    }

    pub(crate) fn peek(&self, key: &K) -> Option<&V> {
        self.map.peek(key)
    }

    /// Puts `value`; returns the value it replaced, or the entry it evicted.
    pub(crate) fn push(&mut self, key: K, value: V) -> Option<(K, V)> {
        let out = self.map.push(key, value);
        match &out {
            Some((old, _)) if *old == key => {}
            Some((evicted, _)) => {
                self.presence.remove(evicted);
                self.presence.add(&key);
            }
            None => self.presence.add(&key),
        }
        out
    }

    pub(crate) fn pop(&mut self, key: &K) -> Option<V> {
        let out = self.map.pop(key);
        if out.is_some() {
            self.presence.remove(key);
        }
        out
    }

    pub(crate) fn clear(&mut self) {
        self.map.clear();
        self.presence.clear();
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn the_presence_follows_what_the_map_holds_through_evictions_and_removals() {
        let presence = Arc::new(Presence::new(1 << 16));
        let mut map: Tracked<ProfileId, u32> =
            Tracked::new(NonZeroUsize::new(2).unwrap(), presence.clone());
        let id = |n: u8| ProfileId::from_bytes([n; 16]);
        assert!(!presence.maybe(&id(1)));
        map.push(id(1), 1);
        map.push(id(2), 2);
        assert!(presence.maybe(&id(1)) && presence.maybe(&id(2)));
        // Replacing a value keeps the key counted once; a third key evicts the oldest.
        map.push(id(2), 22);
        map.push(id(3), 3);
        assert!(!map.contains(&id(1)));
        assert!(
            !presence.maybe(&id(1)),
            "the evicted key is gone from the hint"
        );
        map.pop(&id(2));
        assert!(!presence.maybe(&id(2)));
        assert!(presence.maybe(&id(3)));
        map.pop(&id(2));
        assert!(
            presence.maybe(&id(3)),
            "popping an absent key changes nothing"
        );
        map.clear();
        assert!(!presence.maybe(&id(3)));
    }
}
