//! A write-through cache of decoded graph records and profiles, for the ingest path.
//!
//! The engine is the only writer and holds its write lock while it reads and writes the graph,
//! so a cache kept under that lock and updated only after a commit succeeded always equals the
//! store. It saves most store reads and decodes of an event (node, evidence, profile and its data
//! key). It holds decrypted profiles in memory, as processing does anyway; it is bounded, and
//! everything that removes a person must evict them (erasure, issue 7).

use std::num::NonZeroUsize;
use std::sync::Arc;

use cdp_core::ProfileId;
use cdp_crypto::DataKey;
use lru::LruCache;

use crate::records::{EvidenceId, EvidenceRecord, NodeKey, NodeRecord, ProfileRecord};
use crate::write::apply::Staged;
use crate::write::dedup::MessageWindow;

const NODES: usize = 200_000;
const EVIDENCE: usize = 200_000;
const PROFILES: usize = 50_000;

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
        }
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

    /// Applies what a committed request wrote.
    pub(crate) fn apply(&mut self, staged: Staged) {
        for (key, record) in staged.nodes {
            self.nodes.put(key, record);
        }
        for (id, record) in staged.evidence {
            self.evidence.put(id, record);
        }
        self.put_profiles(
            staged
                .profiles
                .into_iter()
                .map(|(id, profile)| (id, profile.map(|(record, key)| (Arc::new(record), key)))),
        );
    }

    /// Applies committed profiles (`None`: the profile no longer exists).
    pub(crate) fn put_profiles(
        &mut self,
        profiles: impl IntoIterator<Item = (ProfileId, Option<(Arc<ProfileRecord>, DataKey)>)>,
    ) {
        for (id, profile) in profiles {
            match profile {
                Some(profile) => {
                    self.profiles.put(id, profile);
                }
                None => {
                    self.profiles.pop(&id);
                }
            }
        }
    }
}
