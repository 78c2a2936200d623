//! Bloom filters over the keys of the keyspaces whose point reads mostly miss.
//!
//! Ingestion looks up every message's identifier set's evidence and each of its identifiers
//! before it knows whether they exist, and for new data they do not.
//! A miss costs sled a whole descent of its tree (5 µs at 20,000 people, a page read from disk
//! once the store outgrows the page cache), and these lookups run under the engine's write lock.
//! A filter answers most of them from memory: "definitely absent" skips sled, "maybe present"
//! asks it.
//!
//! Correctness needs one thing: every key that sled or the commit queue may hold is in the
//! filter. Keys present at open are added by the scan at open; a committed batch's keys are
//! added before the batch becomes visible (see `SledStore::commit`). Deleted keys stay in the
//! filter (a false "maybe", answered by sled), so erasure needs nothing here. The filters live
//! in memory only and are rebuilt at every open.
//!
//! The LSM backend fills them in the background after open ([`AbsentFilters::pending`]): until
//! the scan has absorbed every stored key, every probe answers "maybe" (fjall's own per-table
//! filters answer), and committed keys go in as usual, so the filter is complete from the
//! moment it is marked ready.

use std::collections::hash_map::RandomState;
use std::hash::BuildHasher;
use std::sync::RwLock;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};

use crate::Keyspace;

/// Keyspaces with a filter: the ones ingestion probes for keys that are usually new.
pub(crate) const FILTERED: [Keyspace; 2] = [Keyspace::IdentityEdges, Keyspace::Identifiers];

/// Bits per key and probes per key: about 0.8% false "maybe" per filter.
const BITS_PER_KEY: usize = 10;
const PROBES: u64 = 7;
/// The first filter of a keyspace holds this many keys at least (160 KiB).
const MIN_CAPACITY: usize = 1 << 17;
/// Each further filter holds this many times the previous one's keys, so that a store of
/// 100 million keys needs only a handful of filters (each probe looks at every one).
const GROWTH: usize = 4;

/// One fixed-size Bloom filter. Bits are set with atomic ORs: one writer (the committer
/// holding the store's writer lock) and any number of readers.
struct Bloom {
    words: Vec<AtomicU64>,
    /// `words.len() * 64`.
    bits: u64,
    capacity: usize,
    keys: AtomicUsize,
}

impl Bloom {
    fn with_capacity(capacity: usize) -> Self {
        let words = (capacity * BITS_PER_KEY).div_ceil(64).max(1);
        Self {
            words: (0..words).map(|_| AtomicU64::new(0)).collect(),
            bits: words as u64 * 64,
            capacity,
            keys: AtomicUsize::new(0),
        }
    }

    /// The probed bit positions (double hashing, Kirsch and Mitzenmacher).
    fn positions(&self, hashes: (u64, u64)) -> impl Iterator<Item = u64> + '_ {
        let (first, step) = hashes;
        (0..PROBES).map(move |i| first.wrapping_add(i.wrapping_mul(step)) % self.bits)
    }

    fn insert(&self, hashes: (u64, u64)) {
        for bit in self.positions(hashes) {
            self.words[(bit / 64) as usize].fetch_or(1 << (bit % 64), Ordering::Relaxed);
        }
        self.keys.fetch_add(1, Ordering::Relaxed);
    }

    fn may_contain(&self, hashes: (u64, u64)) -> bool {
        self.positions(hashes).all(|bit| {
            self.words[(bit / 64) as usize].load(Ordering::Relaxed) & (1 << (bit % 64)) != 0
        })
    }

    fn is_full(&self) -> bool {
        self.keys.load(Ordering::Relaxed) >= self.capacity
    }
}

/// The filters of one keyspace: when the newest is full, a larger one is added; a key may be
/// in any of them.
struct KeyspaceFilter {
    filters: RwLock<Vec<Bloom>>,
}

impl KeyspaceFilter {
    fn new(expected: usize) -> Self {
        Self {
            filters: RwLock::new(vec![Bloom::with_capacity(expected.max(MIN_CAPACITY))]),
        }
    }

    fn insert(&self, hashes: (u64, u64)) {
        let filters = self.filters.read().unwrap_or_else(|p| p.into_inner());
        if let Some(newest) = filters.last().filter(|bloom| !bloom.is_full()) {
            newest.insert(hashes);
            return;
        }
        drop(filters);
        let mut filters = self.filters.write().unwrap_or_else(|p| p.into_inner());
        if filters.last().is_none_or(Bloom::is_full) {
            let capacity = filters
                .last()
                .map_or(MIN_CAPACITY, |bloom| bloom.capacity.saturating_mul(GROWTH));
            filters.push(Bloom::with_capacity(capacity));
        }
        if let Some(newest) = filters.last() {
            newest.insert(hashes);
        }
    }

    fn may_contain(&self, hashes: (u64, u64)) -> bool {
        let filters = self.filters.read().unwrap_or_else(|p| p.into_inner());
        filters.iter().any(|bloom| bloom.may_contain(hashes))
    }

    /// Adds a scan's keys in a filter of their own, sized for twice as many, which then takes
    /// the keys committed later (it is the newest).
    fn absorb(&self, hashes: &[u64]) {
        let bloom = Bloom::with_capacity(hashes.len().saturating_mul(2).max(MIN_CAPACITY));
        for hash in hashes {
            bloom.insert(probes_of(*hash));
        }
        self.filters
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .push(bloom);
    }
}

/// Hashes of the keys of the filtered keyspaces, collected while the store is scanned at open,
/// so that each filter is sized for what exists before its first key goes in.
pub(crate) struct FilterBuilder {
    /// Per-process random key: nobody can choose keys that collide on purpose.
    state: RandomState,
    hashes: [Vec<u64>; FILTERED.len()],
}

impl FilterBuilder {
    pub(crate) fn new() -> Self {
        Self {
            state: RandomState::new(),
            hashes: Default::default(),
        }
    }

    /// Adds a key found in the store (`full_key` starts with its keyspace tag).
    pub(crate) fn add_stored(&mut self, full_key: &[u8]) {
        let Some((tag, key)) = full_key.split_first() else {
            return;
        };
        if let Some(slot) = Keyspace::from_tag(*tag).and_then(slot) {
            self.hashes[slot].push(self.state.hash_one(key));
        }
    }

    pub(crate) fn finish(self) -> AbsentFilters {
        let filters = self.hashes.map(|hashes| {
            // Room to grow by as much again before a second filter is added.
            let filter = KeyspaceFilter::new(hashes.len().saturating_mul(2));
            for hash in hashes {
                filter.insert(probes_of(hash));
            }
            filter
        });
        AbsentFilters {
            state: self.state,
            filters,
            ready: AtomicBool::new(true),
        }
    }
}

fn slot(keyspace: Keyspace) -> Option<usize> {
    FILTERED.iter().position(|filtered| *filtered == keyspace)
}

/// The two hashes of double hashing, from one 64-bit hash; the step is odd so that it visits
/// distinct positions modulo the (even) number of bits.
fn probes_of(hash: u64) -> (u64, u64) {
    (hash, hash.rotate_left(32) | 1)
}

/// The filters of every filtered keyspace.
pub(crate) struct AbsentFilters {
    state: RandomState,
    filters: [KeyspaceFilter; FILTERED.len()],
    /// False until the keys stored before open are in (see [`AbsentFilters::pending`]).
    ready: AtomicBool,
}

impl std::fmt::Debug for AbsentFilters {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AbsentFilters").finish_non_exhaustive()
    }
}

impl AbsentFilters {
    /// Filters that answer "maybe" to everything until [`AbsentFilters::absorb`] has put in
    /// the keys of a scan started after this call (committed keys go in meanwhile).
    pub(crate) fn pending() -> Self {
        let builder = FilterBuilder::new();
        Self {
            state: builder.state,
            filters: std::array::from_fn(|_| KeyspaceFilter::new(0)),
            ready: AtomicBool::new(false),
        }
    }

    /// A builder hashing as these filters do, for the scan that fills them.
    pub(crate) fn builder(&self) -> FilterBuilder {
        FilterBuilder {
            state: self.state.clone(),
            hashes: Default::default(),
        }
    }

    /// Adds the stored keys a scan collected (in a filter sized for them, beside the keys
    /// committed since) and starts answering "absent".
    pub(crate) fn absorb(&self, builder: FilterBuilder) {
        for (filter, hashes) in self.filters.iter().zip(builder.hashes) {
            filter.absorb(&hashes);
        }
        self.ready.store(true, Ordering::Release);
    }

    /// Stops answering "absent" for good (the keys of some writes could not be added).
    pub(crate) fn give_up(&self) {
        self.ready.store(false, Ordering::Release);
    }

    /// Whether the filters answer "absent" yet.
    pub(crate) fn is_ready(&self) -> bool {
        self.ready.load(Ordering::Acquire)
    }

    /// Records that `key` (without the keyspace tag) may exist in `keyspace`.
    pub(crate) fn insert(&self, keyspace: Keyspace, key: &[u8]) {
        if let Some(slot) = slot(keyspace) {
            self.filters[slot].insert(probes_of(self.state.hash_one(key)));
        }
    }

    /// False only when `key` is certainly not in `keyspace`.
    pub(crate) fn may_contain(&self, keyspace: Keyspace, key: &[u8]) -> bool {
        if !self.is_ready() {
            return true;
        }
        match slot(keyspace) {
            Some(slot) => self.filters[slot].may_contain(probes_of(self.state.hash_one(key))),
            None => true,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(n: u64) -> [u8; 16] {
        let mut key = [0u8; 16];
        key[..8].copy_from_slice(&n.to_be_bytes());
        key[8..].copy_from_slice(&n.wrapping_mul(0x9e37_79b9_7f4a_7c15).to_le_bytes());
        key
    }

    #[test]
    fn every_inserted_key_may_be_present_across_growth() {
        let filters = FilterBuilder::new().finish();
        // Past the first filter's capacity, so that a second and third are added.
        let count = (MIN_CAPACITY * 2 * (1 + GROWTH)) as u64 + 1_000;
        for n in 0..count {
            filters.insert(Keyspace::IdentityEdges, &key(n));
        }
        let layers = filters.filters[0].filters.read().unwrap().len();
        assert!(layers >= 3, "{layers} filters");
        assert!((0..count).all(|n| filters.may_contain(Keyspace::IdentityEdges, &key(n))));
    }

    #[test]
    fn pending_filters_say_maybe_until_a_scan_is_absorbed_and_keep_committed_keys() {
        let filters = AbsentFilters::pending();
        // A key committed while the scan runs, and one the scan finds.
        filters.insert(Keyspace::Identifiers, &key(1));
        let mut scan = filters.builder();
        let mut stored = vec![Keyspace::Identifiers.tag()];
        stored.extend_from_slice(&key(2));
        scan.add_stored(&stored);
        assert!(filters.may_contain(Keyspace::Identifiers, &key(3)));
        filters.absorb(scan);
        assert!(filters.is_ready());
        assert!(filters.may_contain(Keyspace::Identifiers, &key(1)));
        assert!(filters.may_contain(Keyspace::Identifiers, &key(2)));
        let false_maybes = (1_000..11_000u64)
            .filter(|n| filters.may_contain(Keyspace::Identifiers, &key(*n)))
            .count();
        assert!(
            false_maybes < 200,
            "{false_maybes} false positives of 10,000"
        );
        // Keys committed after the scan go in as well.
        filters.insert(Keyspace::Identifiers, &key(4));
        assert!(filters.may_contain(Keyspace::Identifiers, &key(4)));
    }

    #[test]
    fn absent_keys_are_mostly_answered_and_keyspaces_are_separate() {
        // Half the keys found at open, half committed later.
        let mut builder = FilterBuilder::new();
        for n in 0..50_000u64 {
            let mut full = vec![Keyspace::IdentityEdges.tag()];
            full.extend_from_slice(&key(n));
            builder.add_stored(&full);
        }
        let filters = builder.finish();
        for n in 50_000..100_000u64 {
            filters.insert(Keyspace::IdentityEdges, &key(n));
        }
        assert!((0..100_000u64).all(|n| filters.may_contain(Keyspace::IdentityEdges, &key(n))));
        let false_maybes = (1_000_000..1_100_000u64)
            .filter(|n| filters.may_contain(Keyspace::IdentityEdges, &key(*n)))
            .count();
        assert!(
            false_maybes < 2_000,
            "{false_maybes} false positives of 100,000"
        );
        // Another keyspace's filter knows nothing of these keys.
        assert!(!filters.may_contain(Keyspace::Identifiers, &key(7)));
        // Keyspaces without a filter always say "maybe".
        assert!(filters.may_contain(Keyspace::Profiles, &key(7)));
    }
}
