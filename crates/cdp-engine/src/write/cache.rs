//! A write-through cache of decoded graph records and profiles, for the ingest path.
//!
//! The engine is the only writer and holds its write lock while it reads and writes the graph,
//! so a cache kept under that lock and updated only after a commit succeeded always equals the
//! store. It saves most store reads and decodes of an event (node, evidence, profile and its data
//! key). It holds decrypted profiles in memory, as processing does anyway; it is bounded, and
//! everything that removes a person must evict them (erasure, issue 7).

use std::collections::{HashMap, HashSet, VecDeque};
use std::num::NonZeroUsize;
use std::sync::Arc;

use cdp_core::ProfileId;
use cdp_crypto::DataKey;

use crate::records::{EvidenceId, EvidenceRecord, NodeKey, NodeRecord, ProfileRecord};
use crate::write::apply::Staged;
use crate::write::dedup::MessageWindow;
use crate::write::pipeline::Unsealed;
use crate::write::presence::{CachePresence, Tracked};

pub(crate) const NODES: usize = 200_000;
pub(crate) const EVIDENCE: usize = 200_000;
/// Decoded profiles. With `test-support` (the tests of the engine and the server) only two, so
/// that the tests evict and load profiles all the time and check that what the cache lets go
/// of and takes back stays equal to the store through merges, splits, erasure and edits.
#[cfg(not(feature = "test-support"))]
pub(crate) const PROFILES: usize = 50_000;
#[cfg(feature = "test-support")]
pub(crate) const PROFILES: usize = 2;

fn capacity(n: usize) -> NonZeroUsize {
    NonZeroUsize::new(n).unwrap_or(NonZeroUsize::MIN)
}

/// Decoded records as committed, and the messages of the de-duplication window (the writer's
/// state: it lives under the engine's write lock).
pub(crate) struct RecordCache {
    pub(crate) nodes: Tracked<NodeKey, NodeRecord>,
    pub(crate) evidence: Tracked<EvidenceId, EvidenceRecord>,
    /// Shared with the indexer's hand-off ([`crate::indexer::WrittenProfiles`]): the writer
    /// takes a profile back without a copy once the indexer has let go of it.
    pub(crate) profiles: Tracked<ProfileId, (Arc<ProfileRecord>, DataKey)>,
    pub(crate) messages: MessageWindow,
    /// The generation of the store's write turns this state is as of, and the last change
    /// it reflects (several nodes on one database: `sync_with_other_nodes`).
    pub(crate) generation: u64,
    pub(crate) synced_seq: u64,
    /// Requests resolved but not committed yet, oldest first (`pipeline`): what they wrote is
    /// read here when the cache above no longer holds it, and before the store.
    pub(crate) unsealed: VecDeque<Arc<Unsealed>>,
    /// Which places wrote which graph records lately, to check what was read before the lock.
    pub(crate) written: WrittenLately,
    /// Identifier sets and nodes the current request read ahead as absent from the store.
    pub(crate) absent: Absent,
}

/// Records read before the write lock (`Engine::read_ahead`), as the store held them once
/// every place up to `since` had committed.
#[derive(Debug, Default)]
pub(crate) struct ReadAhead {
    pub(crate) since: u64,
    pub(crate) evidence: Vec<(EvidenceId, Option<EvidenceRecord>)>,
    pub(crate) nodes: Vec<(NodeKey, Option<NodeRecord>)>,
    pub(crate) profiles: Vec<(ProfileId, ProfileRecord, DataKey)>,
}

/// Identifier sets and nodes a request's read-ahead found absent and nothing wrote since: its
/// resolution need not ask the store again. Cleared whenever the write lock is taken.
#[derive(Debug, Default)]
pub(crate) struct Absent {
    pub(crate) evidence: HashSet<EvidenceId>,
    pub(crate) nodes: HashSet<NodeKey>,
}

/// Places of the commit order remembered by what they wrote: the reads of a request made
/// before the lock, when every place up to `since` had committed, hold for a record unless a
/// later place wrote it.
#[derive(Debug, Default)]
pub(crate) struct WrittenLately {
    last_place: HashMap<GraphRecord, u64>,
    places: VecDeque<(u64, Vec<GraphRecord>)>,
    /// What the places up to this one wrote is forgotten (or a writer other than ingestion
    /// held the lock at this place): reads made before it cannot be checked.
    floor: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum GraphRecord {
    Node(NodeKey),
    Evidence(EvidenceId),
    Profile(ProfileId),
}

/// Places remembered. A read-ahead waits for the lock while the requests before it resolve:
/// a few places with 8 clients; one older than this is not taken.
const PLACES_REMEMBERED: usize = 256;

impl WrittenLately {
    fn note(&mut self, place: u64, written: Vec<GraphRecord>) {
        for record in &written {
            self.last_place.insert(*record, place);
        }
        self.places.push_back((place, written));
        while self.places.len() > PLACES_REMEMBERED {
            let Some((place, written)) = self.places.pop_front() else {
                break;
            };
            for record in written {
                if self.last_place.get(&record) == Some(&place) {
                    self.last_place.remove(&record);
                }
            }
            self.floor = place;
        }
    }

    /// A writer other than ingestion holds the lock at `place`: it may change any record.
    pub(crate) fn everything_at(&mut self, place: u64) {
        self.last_place.clear();
        self.places.clear();
        self.floor = place;
    }

    fn trusts(&self, since: u64) -> bool {
        since >= self.floor
    }

    fn after(&self, record: GraphRecord, since: u64) -> bool {
        self.last_place
            .get(&record)
            .is_some_and(|place| *place > since)
    }
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
    pub(crate) fn new(messages: MessageWindow, synced_seq: u64, presence: &CachePresence) -> Self {
        Self {
            nodes: Tracked::new(capacity(NODES), presence.nodes.clone()),
            evidence: Tracked::new(capacity(EVIDENCE), presence.evidence.clone()),
            profiles: Tracked::new(capacity(PROFILES), presence.profiles.clone()),
            messages,
            generation: 0,
            synced_seq,
            unsealed: VecDeque::new(),
            written: WrittenLately::default(),
            absent: Absent::default(),
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
        self.written.note(
            request.place,
            request
                .nodes
                .keys()
                .map(|key| GraphRecord::Node(*key))
                .chain(request.evidence.keys().map(|id| GraphRecord::Evidence(*id)))
                .chain(request.profiles.keys().map(|id| GraphRecord::Profile(*id)))
                .collect(),
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

impl RecordCache {
    /// Takes what was read ahead into the cache (under the write lock), except the records
    /// written since the reads (by a later place, or by a writer other than ingestion) and
    /// those the cache holds already (it is current). Identifier sets and nodes read as
    /// absent are noted as such for this request (`absent`). Drop what it returns after the
    /// lock.
    pub(crate) fn take_read_ahead(&mut self, ahead: ReadAhead) -> Released {
        let mut released = Released::default();
        let written = &self.written;
        if !written.trusts(ahead.since) {
            return released;
        }
        for (id, record) in ahead.evidence {
            if written.after(GraphRecord::Evidence(id), ahead.since) || self.evidence.contains(&id)
            {
                continue;
            }
            match record {
                Some(record) => released
                    .evidence
                    .extend(self.evidence.push(id, record).map(|(_, old)| old)),
                None => {
                    self.absent.evidence.insert(id);
                }
            }
        }
        for (key, record) in ahead.nodes {
            if written.after(GraphRecord::Node(key), ahead.since) || self.nodes.contains(&key) {
                continue;
            }
            match record {
                Some(record) => released
                    .nodes
                    .extend(self.nodes.push(key, record).map(|(_, old)| old)),
                None => {
                    self.absent.nodes.insert(key);
                }
            }
        }
        for (id, record, key) in ahead.profiles {
            if written.after(GraphRecord::Profile(id), ahead.since) || self.profiles.contains(&id) {
                continue;
            }
            released.profiles.extend(
                self.profiles
                    .push(id, (Arc::new(record), key))
                    .map(|(_, old)| old),
            );
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

#[cfg(test)]
mod tests {
    use super::*;

    fn profile(n: u8) -> GraphRecord {
        GraphRecord::Profile(ProfileId::from_bytes([n; 16]))
    }

    #[test]
    fn a_read_ahead_holds_for_records_no_later_place_wrote() {
        let mut written = WrittenLately::default();
        written.note(
            1,
            vec![profile(1), GraphRecord::Evidence(EvidenceId([1; 16]))],
        );
        written.note(2, vec![profile(2)]);
        written.note(3, vec![profile(1)]);
        // Read when places up to 1 had committed: what 2 and 3 wrote is stale in it.
        assert!(written.trusts(1));
        assert!(written.after(profile(1), 1));
        assert!(written.after(profile(2), 1));
        assert!(!written.after(GraphRecord::Evidence(EvidenceId([1; 16])), 1));
        assert!(!written.after(profile(9), 1));
        // Read after place 3 committed: all of it current.
        assert!(!written.after(profile(1), 3));
        assert!(!written.after(profile(2), 3));
    }

    #[test]
    fn reads_older_than_what_is_remembered_or_than_another_writer_are_not_taken() {
        let mut written = WrittenLately::default();
        for place in 1..=(PLACES_REMEMBERED as u64 + 10) {
            written.note(place, vec![profile((place % 200) as u8)]);
        }
        assert!(
            !written.trusts(5),
            "place 6 is forgotten: a read before it cannot be checked"
        );
        assert!(written.trusts(10));
        assert!(written.last_place.len() <= PLACES_REMEMBERED);
        // An erasure or an edit held the lock at place 300: it may have changed anything.
        written.everything_at(300);
        assert!(!written.trusts(299));
        assert!(written.trusts(300));
        assert!(!written.after(profile(1), 300));
    }
}
