//! Reads ahead, so that resolution finds in the writer's cache what it reads.
//!
//! Over the network (PostgreSQL, [`Engine::prefetch`]): resolution reads an event's identifier
//! nodes and their profiles one at a time, each a round trip under the write lock; what the
//! writer's cache lacks of them for a whole request is read in four round trips and put in the
//! cache (the cache holds committed records, and these are read within the write lock and the
//! store's write turn, so they are current).
//!
//! On an embedded store ([`Engine::read_ahead`]) a read costs no round trip but the write lock
//! is ingestion's serial part: reading and decoding what a request's messages will need (their
//! evidence, the identifier nodes of new identifier sets, the profiles these point to) was a
//! fifth of the lock's time at 200k people (perf, December 7). So they are read before the
//! lock, beside the other requests' resolution, and taken into the cache under it only where
//! nothing was written since (`WrittenLately`): a record a later place or another writer wrote
//! is left for resolution to read as before.

use std::collections::BTreeSet;
use std::sync::Arc;

use cdp_core::ProfileId;
use cdp_store::Keyspace;

use crate::records::{EvidenceId, EvidenceRecord, NodeKey, NodeRecord, ProfileRecord};
use crate::write::cache::{ReadAhead, RecordCache};
use crate::write::message::{PreparedMessage, evidence_id_of, graph_nodes};
use crate::{Engine, EngineError};

impl Engine {
    /// Puts the identifier nodes of `prepared`, their evidence (the sets of identifiers the
    /// messages carry) and their profiles into `cache`.
    pub(crate) fn prefetch(
        &self,
        cache: &mut RecordCache,
        prepared: &[PreparedMessage],
    ) -> Result<(), EngineError> {
        let store = self.store();
        if !store.reads_are_remote() {
            return Ok(());
        }
        let all: BTreeSet<NodeKey> = prepared
            .iter()
            .flat_map(|message| message.identifiers.keys().copied())
            .collect();
        let missing: Vec<NodeKey> = all
            .iter()
            .filter(|node| !cache.nodes.contains(*node))
            .copied()
            .collect();
        let keys: Vec<&[u8]> = missing
            .iter()
            .map(|node| node.0.as_bytes().as_slice())
            .collect();
        for (node, value) in missing
            .iter()
            .zip(store.get_many(Keyspace::Identifiers, &keys)?)
        {
            if let Some(sealed) = value {
                let record: NodeRecord =
                    self.open_system(Keyspace::Identifiers, node.0.as_bytes(), &sealed)?;
                drop(cache.nodes.push(*node, record));
            }
        }
        // Each message's identifier set, as resolution names it.
        let evidence: Vec<EvidenceId> = prepared
            .iter()
            .filter(|message| !message.identifiers.is_empty())
            .map(|message| evidence_id_of(&graph_nodes(&message.identifiers)))
            .filter(|id| !cache.evidence.contains(id))
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect();
        let keys: Vec<&[u8]> = evidence.iter().map(|id| id.0.as_slice()).collect();
        for (id, value) in evidence
            .iter()
            .zip(store.get_many(Keyspace::IdentityEdges, &keys)?)
        {
            if let Some(sealed) = value {
                let record: EvidenceRecord =
                    self.open_system(Keyspace::IdentityEdges, &id.0, &sealed)?;
                drop(cache.evidence.push(*id, record));
            }
        }
        let profiles: Vec<ProfileId> = all
            .iter()
            .filter_map(|node| cache.nodes.peek(node).and_then(|record| record.profile))
            .filter(|id| !cache.profiles.contains(id))
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect();
        if profiles.is_empty() {
            return Ok(());
        }
        let ids: Vec<&[u8]> = profiles.iter().map(|id| id.as_bytes().as_slice()).collect();
        let wrapped = store.get_many(Keyspace::Keys, &ids)?;
        let sealed = store.get_many(Keyspace::Profiles, &ids)?;
        for ((id, wrapped), sealed) in profiles.iter().zip(wrapped).zip(sealed) {
            // A profile without its key was erased: it reads as absent, as resolution reads it.
            let (Some(wrapped), Some(sealed)) = (wrapped, sealed) else {
                continue;
            };
            let key = self.vault().unwrap_person_key(id, wrapped)?;
            let record: ProfileRecord =
                self.open_person(&key, Keyspace::Profiles, id.as_bytes(), &sealed)?;
            drop(cache.profiles.push(*id, (Arc::new(record), key)));
        }
        Ok(())
    }
}

impl Engine {
    /// Reads what the messages will need from an embedded store, before the write lock: each
    /// message's evidence (its identifier set); for a set not seen before, its identifier
    /// nodes; and the profiles these point to, decoded. `None` over a network, where
    /// [`Engine::prefetch`] reads under the lock.
    pub(crate) fn read_ahead(
        &self,
        prepared: &[PreparedMessage],
    ) -> Result<Option<ReadAhead>, EngineError> {
        let store = self.store();
        if store.reads_are_remote() {
            return Ok(None);
        }
        // Read before the store: what the places up to it wrote is in what the reads see.
        let mut ahead = ReadAhead {
            since: self.pipeline.done(),
            ..ReadAhead::default()
        };
        let mut evidence_seen = BTreeSet::new();
        let mut nodes_seen = BTreeSet::new();
        let mut profiles = BTreeSet::new();
        for message in prepared.iter().filter(|m| !m.identifiers.is_empty()) {
            let nodes = graph_nodes(&message.identifiers);
            let id = evidence_id_of(&nodes);
            // What the writer's cache may hold is left to it (decoding it here would be waste).
            if !evidence_seen.insert(id) || self.cached.evidence.maybe(&id) {
                continue;
            }
            let record: Option<EvidenceRecord> = match store.get(Keyspace::IdentityEdges, &id.0)? {
                Some(sealed) => Some(self.open_system(Keyspace::IdentityEdges, &id.0, &sealed)?),
                None => None,
            };
            match &record {
                // A set seen before: the event goes to its profile.
                Some(record) => {
                    profiles.insert(record.profile);
                }
                // A new set is resolved from its identifiers' nodes and their profiles.
                None => {
                    for node in nodes.iter().filter(|node| {
                        nodes_seen.insert(node.key) && !self.cached.nodes.maybe(&node.key)
                    }) {
                        let key = node.key.0.as_bytes();
                        let record: Option<NodeRecord> =
                            match store.get(Keyspace::Identifiers, key)? {
                                Some(sealed) => {
                                    Some(self.open_system(Keyspace::Identifiers, key, &sealed)?)
                                }
                                None => None,
                            };
                        profiles.extend(record.as_ref().and_then(|record| record.profile));
                        ahead.nodes.push((node.key, record));
                    }
                }
            }
            ahead.evidence.push((id, record));
        }
        for id in profiles
            .into_iter()
            .filter(|id| !self.cached.profiles.maybe(id))
        {
            // A profile without its key was erased: resolution reads it as absent.
            let Some(wrapped) = store.get(Keyspace::Keys, id.as_bytes())? else {
                continue;
            };
            let Some(sealed) = store.get(Keyspace::Profiles, id.as_bytes())? else {
                continue;
            };
            let key = self.vault().unwrap_person_key(&id, wrapped)?;
            let record: ProfileRecord =
                self.open_person(&key, Keyspace::Profiles, id.as_bytes(), &sealed)?;
            ahead.profiles.push((id, record, key));
        }
        Ok(Some(ahead))
    }
}
