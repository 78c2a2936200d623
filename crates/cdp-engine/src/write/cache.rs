//! A write-through cache of decoded graph records and profiles, for the ingest path.
//!
//! The engine is the only writer and holds its write lock while it reads and writes the graph,
//! so a cache kept under that lock and updated only after a commit succeeded always equals the
//! store. It saves most store reads and decodes of an event (node, evidence, profile and its data
//! key). It holds decrypted profiles in memory, as processing does anyway; it is bounded, and
//! everything that removes a person must evict them (erasure, issue 7).

use std::num::NonZeroUsize;

use cdp_core::ProfileId;
use cdp_crypto::DataKey;
use lru::LruCache;

use crate::records::{EvidenceId, EvidenceRecord, NodeKey, NodeRecord, ProfileRecord};
use crate::write::apply::Staged;

const NODES: usize = 200_000;
const EVIDENCE: usize = 200_000;
const PROFILES: usize = 50_000;

fn capacity(n: usize) -> NonZeroUsize {
    NonZeroUsize::new(n).unwrap_or(NonZeroUsize::MIN)
}

/// Decoded records as committed.
pub(crate) struct RecordCache {
    pub(crate) nodes: LruCache<NodeKey, NodeRecord>,
    pub(crate) evidence: LruCache<EvidenceId, EvidenceRecord>,
    pub(crate) profiles: LruCache<ProfileId, (ProfileRecord, DataKey)>,
}

impl std::fmt::Debug for RecordCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RecordCache")
            .field("nodes", &self.nodes.len())
            .field("evidence", &self.evidence.len())
            .field("profiles", &self.profiles.len())
            .finish()
    }
}

impl Default for RecordCache {
    fn default() -> Self {
        Self {
            nodes: LruCache::new(capacity(NODES)),
            evidence: LruCache::new(capacity(EVIDENCE)),
            profiles: LruCache::new(capacity(PROFILES)),
        }
    }
}

impl RecordCache {
    /// Applies what a committed request wrote.
    pub(crate) fn apply(&mut self, staged: Staged) {
        for (key, record) in staged.nodes {
            self.nodes.put(key, record);
        }
        for (id, record) in staged.evidence {
            self.evidence.put(id, record);
        }
        for (id, profile) in staged.profiles {
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
