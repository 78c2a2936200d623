//! The identity graph as stored, seen through `cdp_identity::graph::GraphView`.

use std::collections::BTreeMap;

use std::sync::Arc;

use cdp_core::ProfileId;
use cdp_crypto::DataKey;
use cdp_identity::graph::{GraphView, OrderKey, ProfileSummary, TypeCounts};
use cdp_store::{Keyspace, Overlay};

use crate::records::{
    EvidenceId, EvidenceRecord, GraphEvidence, GraphNode, NodeKey, NodeRecord, ProfileRecord,
};
use crate::write::apply::Staged;
use crate::write::cache::RecordCache;
use crate::{Engine, EngineError};

/// Reads of the graph with a cache for the duration of one resolution. The cache is valid
/// because the engine's write lock is held and nothing is written until resolution ends.
pub(crate) struct StoreGraph<'a> {
    pub(crate) engine: &'a Engine,
    /// Reads see the writes staged earlier in the same request.
    pub(crate) view: &'a Overlay<'a>,
    /// Decoded records staged earlier in the request, then committed ones (ingest path only).
    staged: Option<&'a Staged>,
    cache: Option<&'a mut RecordCache>,
    nodes: BTreeMap<NodeKey, Option<NodeRecord>>,
    profiles: BTreeMap<ProfileId, (ProfileRecord, DataKey)>,
    evidence: BTreeMap<EvidenceId, Option<EvidenceRecord>>,
}

impl<'a> StoreGraph<'a> {
    pub(crate) fn new(engine: &'a Engine, view: &'a Overlay<'a>) -> Self {
        Self {
            engine,
            view,
            staged: None,
            cache: None,
            nodes: BTreeMap::new(),
            profiles: BTreeMap::new(),
            evidence: BTreeMap::new(),
        }
    }

    /// A graph view for writers: `staged` and `cache` answer before the store.
    pub(crate) fn with_cache(
        engine: &'a Engine,
        view: &'a Overlay<'a>,
        staged: &'a Staged,
        cache: &'a mut RecordCache,
    ) -> Self {
        let mut graph = Self::new(engine, view);
        graph.staged = Some(staged);
        graph.cache = Some(cache);
        graph
    }

    pub(crate) fn node(&mut self, key: &NodeKey) -> Result<Option<NodeRecord>, EngineError> {
        if let Some(cached) = self.nodes.get(key) {
            return Ok(cached.clone());
        }
        if let Some(record) = self.staged.and_then(|staged| staged.nodes.get(key)) {
            return Ok(Some(record.clone()));
        }
        if let Some(record) = self.cache.as_mut().and_then(|cache| cache.nodes.get(key)) {
            return Ok(Some(record.clone()));
        }
        if let Some(record) = self
            .cache
            .as_ref()
            .and_then(|cache| cache.unsealed_node(key))
        {
            return Ok(Some(record.clone()));
        }
        let record: Option<NodeRecord> = if self
            .cache
            .as_ref()
            .is_some_and(|cache| cache.absent.nodes.contains(key))
        {
            None
        } else {
            self.engine
                .get_system_in(self.view, Keyspace::Identifiers, key.0.as_bytes())?
        };
        self.nodes.insert(*key, record.clone());
        Ok(record)
    }

    /// A profile and its data key. A profile whose key is gone (erased) reads as absent.
    pub(crate) fn profile(
        &mut self,
        id: ProfileId,
    ) -> Result<Option<(ProfileRecord, DataKey)>, EngineError> {
        Ok(self
            .profile_ref(id)?
            .map(|(record, key)| (record.clone(), key.clone())))
    }

    /// The profile as [`Self::profile`] gives it, without a copy (a decoded profile with its
    /// identifiers and traits is a few hundred allocations to clone): from the request's
    /// staged records, the writer's cache or, loaded once, this view.
    fn profile_ref(
        &mut self,
        id: ProfileId,
    ) -> Result<Option<(&ProfileRecord, &DataKey)>, EngineError> {
        if self.profiles.contains_key(&id) {
            return Ok(self.profiles.get(&id).map(|(record, key)| (record, key)));
        }
        if let Some(staged) = self.staged.and_then(|staged| staged.profiles.get(&id)) {
            return Ok(staged.as_ref().map(|(record, key)| (record, key)));
        }
        if self
            .cache
            .as_ref()
            .is_some_and(|cache| cache.profiles.contains(&id))
        {
            return Ok(self
                .cache
                .as_mut()
                .and_then(|cache| cache.profiles.get(&id))
                .map(|(record, key)| (&**record, key)));
        }
        if let Some(unsealed) = self
            .cache
            .as_ref()
            .and_then(|cache| cache.unsealed_profile(&id))
        {
            return Ok(unsealed.map(|(record, key)| (&**record, key)));
        }
        let Some(loaded) = self.load_profile(id)? else {
            return Ok(None);
        };
        self.profiles.insert(id, loaded);
        Ok(self.profiles.get(&id).map(|(record, key)| (record, key)))
    }

    /// The profile, to be changed and written by the caller: moved out of this view or the
    /// writer's cache rather than copied (the request puts the new version in the cache when
    /// it commits; one that fails leaves a miss, never a stale entry).
    pub(crate) fn take_profile(
        &mut self,
        id: ProfileId,
    ) -> Result<Option<(ProfileRecord, DataKey)>, EngineError> {
        if let Some(loaded) = self.profiles.remove(&id) {
            return Ok(Some(loaded));
        }
        if let Some(staged) = self.staged.and_then(|staged| staged.profiles.get(&id)) {
            return Ok(staged.clone());
        }
        if let Some(cached) = self
            .cache
            .as_mut()
            .and_then(|cache| cache.profiles.pop(&id))
        {
            // Shared only while the indexer has not yet taken it from the hand-off (a person
            // writing again within a fraction of a second): then a copy.
            let (record, key) = cached;
            let record = Arc::try_unwrap(record).unwrap_or_else(|shared| (*shared).clone());
            return Ok(Some((record, key)));
        }
        if let Some(unsealed) = self
            .cache
            .as_ref()
            .and_then(|cache| cache.unsealed_profile(&id))
        {
            // Still being sealed by the request that wrote it: a copy.
            return Ok(unsealed.map(|(record, key)| ((**record).clone(), key.clone())));
        }
        self.load_profile(id)
    }

    fn load_profile(&self, id: ProfileId) -> Result<Option<(ProfileRecord, DataKey)>, EngineError> {
        let Some(wrapped) = self.view.get(Keyspace::Keys, id.as_bytes())? else {
            return Ok(None);
        };
        let key = self.engine.vault().unwrap_person_key(&id, wrapped)?;
        let Some(sealed) = self.view.get(Keyspace::Profiles, id.as_bytes())? else {
            return Ok(None);
        };
        let record: ProfileRecord =
            self.engine
                .open_person(&key, Keyspace::Profiles, id.as_bytes(), &sealed)?;
        Ok(Some((record, key)))
    }

    pub(crate) fn evidence(
        &mut self,
        id: &EvidenceId,
    ) -> Result<Option<EvidenceRecord>, EngineError> {
        if let Some(cached) = self.evidence.get(id) {
            return Ok(cached.clone());
        }
        if let Some(record) = self.staged.and_then(|staged| staged.evidence.get(id)) {
            return Ok(Some(record.clone()));
        }
        if let Some(record) = self.cache.as_mut().and_then(|cache| cache.evidence.get(id)) {
            return Ok(Some(record.clone()));
        }
        if let Some(record) = self
            .cache
            .as_ref()
            .and_then(|cache| cache.unsealed_evidence(id))
        {
            return Ok(Some(record.clone()));
        }
        let record: Option<EvidenceRecord> = if self
            .cache
            .as_ref()
            .is_some_and(|cache| cache.absent.evidence.contains(id))
        {
            None
        } else {
            self.engine
                .get_system_in(self.view, Keyspace::IdentityEdges, &id.0)?
        };
        self.evidence.insert(*id, record.clone());
        Ok(record)
    }

    /// Drops a cached evidence record (it is being changed).
    pub(crate) fn forget_evidence(&mut self, id: &EvidenceId) {
        self.evidence.remove(id);
    }

    pub(crate) fn mentions(&mut self, key: &NodeKey) -> Result<Vec<EvidenceId>, EngineError> {
        let mut ids = Vec::new();
        for (entry, _) in self
            .view
            .scan_prefix(Keyspace::Mentions, key.0.as_bytes())?
        {
            let id: [u8; 16] = entry[32..]
                .try_into()
                .map_err(|_| EngineError::Corrupt("mention".into()))?;
            ids.push(EvidenceId(id));
        }
        Ok(ids)
    }
}

pub(crate) fn summary_of(record: &ProfileRecord) -> ProfileSummary {
    let mut counts = TypeCounts::default();
    for identifier in &record.identifiers {
        // `first_seen` is when the identifier was linked to this profile (event time).
        counts.add(&identifier.kind, micros(identifier.first_seen));
    }
    ProfileSummary {
        counts,
        first_order: record.first_order,
        last_order: record.last_order,
    }
}

impl GraphView<NodeKey, EvidenceId> for StoreGraph<'_> {
    type Profile = ProfileId;
    type Error = EngineError;

    fn profile_of(&mut self, node: &GraphNode) -> Result<Option<ProfileId>, EngineError> {
        Ok(self.node(&node.key)?.and_then(|record| record.profile))
    }

    fn summary(&mut self, profile: ProfileId) -> Result<ProfileSummary, EngineError> {
        let (record, _) = self.profile_ref(profile)?.ok_or_else(|| {
            EngineError::Corrupt(format!("identifier points to missing profile {profile}"))
        })?;
        Ok(summary_of(record))
    }

    fn last_mention(&mut self, node: &GraphNode) -> Result<Option<OrderKey>, EngineError> {
        Ok(self.node(&node.key)?.map(|record| record.last_mention))
    }

    fn evidence_of_node(&mut self, node: &GraphNode) -> Result<Vec<GraphEvidence>, EngineError> {
        let mut out = Vec::new();
        for id in self.mentions(&node.key)? {
            if let Some(record) = self.evidence(&id)? {
                out.push(record.graph_evidence());
            }
        }
        Ok(out)
    }
}

/// Event time in microseconds, the unit of `OrderKey`.
pub(crate) fn micros(at: time::OffsetDateTime) -> i64 {
    i64::try_from(at.unix_timestamp_nanos() / 1_000).unwrap_or(i64::MAX)
}
