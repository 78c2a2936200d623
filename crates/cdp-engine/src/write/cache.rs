//! A write-through cache of decoded graph records and profiles, for the ingest path.
//!
//! The engine is the only writer and holds its write lock while it reads and writes the graph,
//! so a cache kept under that lock and updated only after a commit succeeded always equals the
//! store. It saves most store reads and decodes of an event (node, evidence, profile and its data
//! key). It holds decrypted profiles in memory, as processing does anyway; it is bounded, and
//! everything that removes a person must evict them (erasure, issue 7).

use std::collections::VecDeque;
use std::num::NonZeroUsize;
use std::sync::Arc;

use cdp_core::ProfileId;
use cdp_crypto::DataKey;
use lru::LruCache;

use crate::records::{EvidenceId, EvidenceRecord, NodeKey, NodeRecord, ProfileRecord};
use crate::write::apply::Staged;
use crate::write::dedup::MessageWindow;
use crate::write::pipeline::Unsealed;

const NODES: usize = 200_000;
const EVIDENCE: usize = 200_000;
/// Decoded profiles. With `test-support` (the tests of the engine and the server) only two, so
/// that the tests evict and load profiles all the time and check that what the cache lets go
/// of and takes back stays equal to the store through merges, splits, erasure and edits.
#[cfg(not(feature = "test-support"))]
const PROFILES: usize = 50_000;
#[cfg(feature = "test-support")]
const PROFILES: usize = 2;

fn capacity(n: usize) -> NonZeroUsize {
    NonZeroUsize::new(n).unwrap_or(NonZeroUsize::MIN)
}

/// Decoded records as committed, and the messages of the de-duplication window (the writer's
/// state: it lives under the engine's write lock).
pub(crate) struct RecordCache {
    pub(crate) nodes: LruCache<NodeKey, NodeRecord>,
    pub(crate) evidence: LruCache<EvidenceId, EvidenceRecord>,
    /// Shared with the indexer's hand-off ([`crate::indexer::WrittenProfiles`]): the writer
    /// takes a profile back without a copy once the indexer has let go of it.
    pub(crate) profiles: LruCache<ProfileId, (Arc<ProfileRecord>, DataKey)>,
    pub(crate) messages: MessageWindow,
    /// The generation of the store's write turns this state is as of, and the last change
    /// it reflects (several nodes on one database: `sync_with_other_nodes`).
    pub(crate) generation: u64,
    pub(crate) synced_seq: u64,
    /// Requests resolved but not committed yet, oldest first (`pipeline`): what they wrote is
    /// read here when the cache above no longer holds it, and before the store.
    pub(crate) unsealed: VecDeque<Arc<Unsealed>>,
}

impl std::fmt::Debug for RecordCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RecordCache")
            .field("nodes", &self.nodes.len())
            .field("evidence", &self.evidence.len())
            .field("profiles", &self.profiles.len())
            .field("messages", &self.messages.len())
            .finish()
    }
}

impl RecordCache {
    /// The writer's state as of change `synced_seq` of the store.
    pub(crate) fn new(messages: MessageWindow, synced_seq: u64) -> Self {
        Self {
            nodes: LruCache::new(capacity(NODES)),
            evidence: LruCache::new(capacity(EVIDENCE)),
            profiles: LruCache::new(capacity(PROFILES)),
            messages,
            generation: 0,
            synced_seq,
            unsealed: VecDeque::new(),
        }
    }

    /// Lets go of the requests committed since (every place up to `done`).
    pub(crate) fn committed_through(&mut self, done: u64) {
        while self
            .unsealed
            .front()
            .is_some_and(|request| request.place <= done)
        {
            self.unsealed.pop_front();
        }
    }

    /// The newest uncommitted write of a node (`pipeline`).
    pub(crate) fn unsealed_node(&self, key: &NodeKey) -> Option<&NodeRecord> {
        self.unsealed
            .iter()
            .rev()
            .find_map(|request| request.nodes.get(key))
    }

    /// The newest uncommitted write of an evidence record.
    pub(crate) fn unsealed_evidence(&self, id: &EvidenceId) -> Option<&EvidenceRecord> {
        self.unsealed
            .iter()
            .rev()
            .find_map(|request| request.evidence.get(id))
    }

    /// The newest uncommitted write of a profile (`Some(None)`: merged away).
    #[allow(clippy::type_complexity)]
    pub(crate) fn unsealed_profile(
        &self,
        id: &ProfileId,
    ) -> Option<Option<&(Arc<ProfileRecord>, DataKey)>> {
        self.unsealed
            .iter()
            .rev()
            .find_map(|request| request.profiles.get(id).map(Option::as_ref))
    }

    /// Applies what a resolved request wrote before it is committed (`pipeline`): the
    /// records are shared with the request's [`Unsealed`], which stays readable until the
    /// commit. Drop what it returns after the write lock.
    pub(crate) fn apply_unsealed(&mut self, request: Arc<Unsealed>) -> Released {
        let mut released = Released::default();
        for (key, record) in &request.nodes {
            released
                .nodes
                .extend(self.nodes.push(*key, record.clone()).map(|(_, old)| old));
        }
        for (id, record) in &request.evidence {
            released
                .evidence
                .extend(self.evidence.push(*id, record.clone()).map(|(_, old)| old));
        }
        released.extend(
            self.put_profiles(
                request
                    .profiles
                    .iter()
                    .map(|(id, profile)| (*id, profile.clone())),
            ),
        );
        self.unsealed.push_back(request);
        released
    }

    /// Forgets every cached record (after a change made outside the ingest path, such as an
    /// erasure); the de-duplication window stays.
    pub(crate) fn clear_records(&mut self) {
        self.nodes.clear();
        self.evidence.clear();
        self.profiles.clear();
    }

    /// Drops the cached record a write of another node to `keyspace`/`key` made stale.
    pub(crate) fn forget(&mut self, keyspace: cdp_store::Keyspace, key: &[u8]) {
        use cdp_store::Keyspace;
        match keyspace {
            Keyspace::Identifiers => {
                if let Ok(bytes) = <[u8; 32]>::try_from(key) {
                    self.nodes
                        .pop(&NodeKey(cdp_crypto::BlindIndex::from_bytes(bytes)));
                }
            }
            Keyspace::IdentityEdges => {
                if let Ok(bytes) = <[u8; 16]>::try_from(key) {
                    self.evidence.pop(&EvidenceId(bytes));
                }
            }
            Keyspace::Profiles | Keyspace::Keys => {
                if let Ok(bytes) = <[u8; 16]>::try_from(key) {
                    self.profiles.pop(&ProfileId::from_bytes(bytes));
                }
            }
            _ => {}
        }
    }

    /// Applies what a committed request wrote. Drop what it returns after the write lock.
    pub(crate) fn apply(&mut self, staged: Staged) -> Released {
        let mut released = Released::default();
        for (key, record) in staged.nodes {
            released
                .nodes
                .extend(self.nodes.push(key, record).map(|(_, old)| old));
        }
        for (id, record) in staged.evidence {
            released
                .evidence
                .extend(self.evidence.push(id, record).map(|(_, old)| old));
        }
        released.extend(
            self.put_profiles(
                staged.profiles.into_iter().map(|(id, profile)| {
                    (id, profile.map(|(record, key)| (Arc::new(record), key)))
                }),
            ),
        );
        released
    }

    /// Applies committed profiles (`None`: the profile no longer exists). Drop what it
    /// returns after the write lock.
    pub(crate) fn put_profiles(
        &mut self,
        profiles: impl IntoIterator<Item = (ProfileId, Option<(Arc<ProfileRecord>, DataKey)>)>,
    ) -> Released {
        let mut released = Released::default();
        for (id, profile) in profiles {
            let old = match profile {
                Some(profile) => self.profiles.push(id, profile).map(|(_, old)| old),
                None => self.profiles.pop(&id),
            };
            released.profiles.extend(old);
        }
        released
    }
}

/// Records the cache let go of (evicted, replaced or removed), to be dropped once the write
/// lock is released: a decoded profile is hundreds of allocations to free, and freeing the
/// evicted ones under the lock took 4-5 % of the writer's time at 200k people (perf,
/// December 7), time every other request waited for.
#[must_use = "drop it after releasing the write lock"]
#[derive(Default)]
pub(crate) struct Released {
    nodes: Vec<NodeRecord>,
    evidence: Vec<EvidenceRecord>,
    profiles: Vec<(Arc<ProfileRecord>, DataKey)>,
}

impl Released {
    pub(crate) fn extend(&mut self, other: Released) {
        self.nodes.extend(other.nodes);
        self.evidence.extend(other.evidence);
        self.profiles.extend(other.profiles);
    }
}
