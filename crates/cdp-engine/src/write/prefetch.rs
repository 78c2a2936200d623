//! Reads ahead for a store over the network (PostgreSQL): resolution reads an event's
//! identifier nodes and their profiles one at a time, each a round trip under the write lock;
//! what the writer's cache lacks of them for a whole request is read here in four round trips
//! and put in the cache (the cache holds committed records, and these are read within the
//! write lock and the store's write turn, so they are current). Embedded stores skip it: a
//! read there costs less than decoding a record that may not be needed.

use std::collections::BTreeSet;
use std::sync::Arc;

use cdp_core::ProfileId;
use cdp_store::Keyspace;

use crate::records::{EvidenceId, EvidenceRecord, GraphNode, NodeKey, NodeRecord, ProfileRecord};
use crate::write::cache::RecordCache;
use crate::write::message::{PreparedMessage, evidence_id_of};
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
                cache.nodes.put(*node, record);
            }
        }
        // Each message's identifier set, as resolution names it.
        let evidence: Vec<EvidenceId> = prepared
            .iter()
            .filter(|message| !message.identifiers.is_empty())
            .map(|message| {
                let nodes: Vec<GraphNode> = message
                    .identifiers
                    .iter()
                    .map(|(key, identifier)| GraphNode {
                        kind: identifier.kind.clone(),
                        key: *key,
                    })
                    .collect();
                evidence_id_of(&nodes)
            })
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
                cache.evidence.put(*id, record);
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
            cache.profiles.put(*id, (Arc::new(record), key));
        }
        Ok(())
    }
}
