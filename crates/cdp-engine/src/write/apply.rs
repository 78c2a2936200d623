//! Writes of one identity change, gathered first and turned into one atomic batch at the end,
//! so that a record touched several times (a node that is attached and re-mentioned, a profile
//! that absorbs two others) is written once, in its final state.

use std::collections::{BTreeMap, BTreeSet};

use cdp_core::{IdentifierType, ProfileId};
use cdp_crypto::DataKey;
use cdp_store::{Keyspace, WriteBatch};

use crate::consent::record::ConsentRecord;
use crate::records::{
    EvidenceId, EvidenceRecord, MergeLogEntry, NodeKey, NodeRecord, ProfileRecord, StoredEvent,
};
use crate::{Engine, EngineError};

#[derive(Default)]
pub(crate) struct Changes {
    pub(crate) nodes: BTreeMap<NodeKey, NodeRecord>,
    pub(crate) evidence: BTreeMap<EvidenceId, EvidenceRecord>,
    pub(crate) mentions: BTreeSet<(NodeKey, EvidenceId)>,
    pub(crate) removed_mentions: BTreeSet<(NodeKey, EvidenceId)>,
    pub(crate) profiles: BTreeMap<ProfileId, (ProfileRecord, DataKey)>,
    /// Profiles that no longer exist (merged away): record and data key are deleted.
    pub(crate) deleted_profiles: BTreeSet<ProfileId>,
    pub(crate) events: BTreeMap<Vec<u8>, (ProfileId, StoredEvent)>,
    pub(crate) deleted_events: BTreeSet<Vec<u8>>,
    /// Consent ledger records written (new, or moved to another person by a merge or split).
    pub(crate) consents: BTreeMap<Vec<u8>, (ProfileId, ConsentRecord)>,
    pub(crate) deleted_consents: BTreeSet<Vec<u8>>,
    pub(crate) aliases: BTreeMap<ProfileId, ProfileId>,
    pub(crate) merge_log: Vec<MergeLogEntry>,
    /// Campaign facts of new events, sealed with their (surviving) person's key.
    pub(crate) facts: Vec<crate::campaign_facts::PendingFact>,
    /// Wrapped data keys of profiles created by this change.
    pub(crate) batch: WriteBatch,
}

impl Changes {
    /// The record of a node as this change leaves it.
    pub(crate) fn node_mut(
        &mut self,
        key: NodeKey,
        current: impl FnOnce() -> NodeRecord,
    ) -> &mut NodeRecord {
        self.nodes.entry(key).or_insert_with(current)
    }

    /// Seals the change into a batch and hands its decoded records to `staged` (moved, not
    /// copied). The nodes, evidence and profiles it writes are left to [`Staged::seal_graph`]
    /// at the end of the request or operation, so a person with twenty events in one request
    /// (an SDK's batch) has their profile encrypted once, not twenty times with nineteen
    /// thrown away. Later messages read those records decoded from `staged`, never from the
    /// store. Events and consents are sealed here: a merge later in the request moves them
    /// by reading the request's staged writes.
    pub(crate) fn into_staged_batch(
        mut self,
        engine: &Engine,
        staged: &mut Staged,
    ) -> Result<WriteBatch, EngineError> {
        let batch = self.seal_except_graph(engine)?;
        staged.take(self);
        Ok(batch)
    }

    /// Everything but the puts of nodes, evidence and profiles (deletions included).
    fn seal_except_graph(&mut self, engine: &Engine) -> Result<WriteBatch, EngineError> {
        let mut batch = std::mem::take(&mut self.batch);
        for (node, evidence) in &self.removed_mentions {
            if !self.mentions.contains(&(*node, *evidence)) {
                batch.delete(
                    Keyspace::Mentions,
                    [node.0.as_bytes().as_slice(), &evidence.0].concat(),
                );
            }
        }
        for (node, evidence) in &self.mentions {
            batch.put(
                Keyspace::Mentions,
                [node.0.as_bytes().as_slice(), &evidence.0].concat(),
                Vec::new(),
            );
        }
        for key in &self.deleted_events {
            if !self.events.contains_key(key) {
                batch.delete(Keyspace::Events, key.clone());
            }
        }
        for (key, (profile, event)) in &self.events {
            let data_key = &self
                .profiles
                .get(profile)
                .ok_or_else(|| {
                    EngineError::Corrupt(format!("event for unloaded profile {profile}"))
                })?
                .1;
            let sealed = engine.seal_person(data_key, Keyspace::Events, key, event)?;
            batch.put(Keyspace::Events, key.clone(), sealed);
        }
        for key in &self.deleted_consents {
            if !self.consents.contains_key(key) {
                batch.delete(Keyspace::Consents, key.clone());
            }
        }
        for (key, (profile, record)) in &self.consents {
            let data_key = &self
                .profiles
                .get(profile)
                .ok_or_else(|| {
                    EngineError::Corrupt(format!("consent for unloaded profile {profile}"))
                })?
                .1;
            let sealed = engine.seal_person(data_key, Keyspace::Consents, key, record)?;
            batch.put(Keyspace::Consents, key.clone(), sealed);
        }
        for pending in &self.facts {
            // The event's person may have been absorbed later in this change.
            let mut owner = pending.profile;
            for _ in 0..16 {
                match self.aliases.get(&owner) {
                    Some(survivor) => owner = *survivor,
                    None => break,
                }
            }
            let Some((_, data_key)) = self.profiles.get(&owner) else {
                continue;
            };
            let key =
                crate::campaign_facts::fact_key(&pending.tag, pending.at, &owner, &pending.digest);
            let sealed = engine.seal_person(data_key, Keyspace::Exports, &key, &pending.fact)?;
            batch.put(Keyspace::Exports, key, sealed);
        }
        for id in &self.deleted_profiles {
            batch.delete(Keyspace::Profiles, id.as_bytes().to_vec());
            engine.vault().destroy_person_key(id, &mut batch);
        }
        for (old, survivor) in &self.aliases {
            batch.put(
                Keyspace::Aliases,
                old.as_bytes().to_vec(),
                survivor.as_bytes().to_vec(),
            );
        }
        for (index, entry) in self.merge_log.iter().enumerate() {
            let micros = i64::try_from(entry.at.unix_timestamp_nanos() / 1_000).unwrap_or(i64::MAX);
            let mut key = entry.survivor.as_bytes().to_vec();
            key.extend_from_slice(&((micros as u64) ^ (1 << 63)).to_be_bytes());
            key.extend_from_slice(&cdp_crypto::random_bytes::<4>()?);
            key.extend_from_slice(&(index as u32).to_be_bytes());
            let sealed = engine.seal_system(Keyspace::MergeLog, &key, entry)?;
            batch.put(Keyspace::MergeLog, key, sealed);
        }
        Ok(batch)
    }
}

/// Merge protection kept `node` from linking to `counterpart` for one event.
#[derive(Debug, Clone)]
pub(crate) struct Conflict {
    pub(crate) node: NodeKey,
    pub(crate) kind: IdentifierType,
    pub(crate) value: String,
    pub(crate) counterpart: NodeKey,
    /// Whether the refusal is the ingested event's own (else one found again in its
    /// component): only those count as events.
    pub(crate) this_event: bool,
}

/// Records written earlier in the current request (not committed yet), decoded: later
/// messages of the request read them here instead of decoding staged bytes again.
#[derive(Default)]
pub(crate) struct Staged {
    pub(crate) nodes: BTreeMap<NodeKey, NodeRecord>,
    pub(crate) evidence: BTreeMap<EvidenceId, EvidenceRecord>,
    /// `None`: the profile no longer exists (merged away).
    pub(crate) profiles: BTreeMap<ProfileId, Option<(ProfileRecord, DataKey)>>,
    /// Digests of the messages staged (the de-duplication window takes them at commit).
    pub(crate) messages: BTreeSet<[u8; 16]>,
    /// Links merge protection refused, for junk detection once the request committed.
    pub(crate) conflicts: Vec<Conflict>,
}

impl Staged {
    /// The nodes, evidence and profiles of the changes taken, in their final state, sealed
    /// once (profiles merged away are left out: the change that merged them deleted them).
    pub(crate) fn seal_graph(&self, engine: &Engine) -> Result<WriteBatch, EngineError> {
        seal_graph(
            engine,
            &self.nodes,
            &self.evidence,
            self.profiles
                .iter()
                .map(|(id, profile)| (id, profile.as_ref().map(|(record, key)| (record, key)))),
        )
    }

    /// Takes the final state of one change, once it is sealed into a batch.
    pub(crate) fn take(&mut self, changes: Changes) {
        self.nodes.extend(changes.nodes);
        self.evidence.extend(changes.evidence);
        for (id, profile) in changes.profiles {
            let value = if changes.deleted_profiles.contains(&id) {
                None
            } else {
                Some(profile)
            };
            self.profiles.insert(id, value);
        }
        for id in changes.deleted_profiles {
            self.profiles.insert(id, None);
        }
    }
}

/// Graph records sealed into a batch: nodes and evidence with the system key, profiles with
/// their person's key (`None`: merged away, deleted by the change that merged it).
pub(crate) fn seal_graph<'r>(
    engine: &Engine,
    nodes: &BTreeMap<NodeKey, NodeRecord>,
    evidence: &BTreeMap<EvidenceId, EvidenceRecord>,
    profiles: impl IntoIterator<Item = (&'r ProfileId, Option<(&'r ProfileRecord, &'r DataKey)>)>,
) -> Result<WriteBatch, EngineError> {
    let mut batch = WriteBatch::new();
    for (key, record) in nodes {
        let sealed = engine.seal_system(Keyspace::Identifiers, key.0.as_bytes(), record)?;
        batch.put(Keyspace::Identifiers, key.0.as_bytes().to_vec(), sealed);
    }
    for (id, record) in evidence {
        let sealed = engine.seal_system(Keyspace::IdentityEdges, &id.0, record)?;
        batch.put(Keyspace::IdentityEdges, id.0.to_vec(), sealed);
    }
    for (id, profile) in profiles {
        if let Some((record, key)) = profile {
            let sealed = engine.seal_person(key, Keyspace::Profiles, id.as_bytes(), record)?;
            batch.put(Keyspace::Profiles, id.as_bytes().to_vec(), sealed);
        }
    }
    Ok(batch)
}
