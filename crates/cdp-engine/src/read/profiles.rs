//! Unaudited views of profiles and of the identity graph: what the purpose-bound reads
//! (`read::access`) are built from, and what the write paths resolve ids with.

use std::collections::BTreeMap;

use cdp_core::{Channel, IdentifierType, ProfileId};
use cdp_identity::graph::DropReason;
use cdp_identity::normalise::normalise;
use cdp_store::{Keyspace, Overlay};
use serde::Serialize;
use time::OffsetDateTime;

use crate::records::{
    ChannelSummary, EvidenceId, MergeLogEntry, NodeKey, ProfileRecord, Provenance, StoredEvent,
    TraitValue,
};
use crate::write::graph_store::StoreGraph;
use crate::{Engine, EngineError};

/// An identifier of a profile, as shown to an authorised reader.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct IdentifierView {
    #[serde(rename = "type")]
    pub kind: IdentifierType,
    pub value: String,
    pub source_id: String,
    pub channel: Channel,
    pub field: String,
    #[serde(with = "time::serde::rfc3339")]
    pub first_seen: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    pub last_seen: OffsetDateTime,
}

/// A profile as the API shows it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ProfileView {
    pub id: ProfileId,
    /// Set when the id asked for was absorbed by a merge: the id it resolves to is `id`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub resolved_from: Option<ProfileId>,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    pub identifiers: Vec<IdentifierView>,
    pub traits: BTreeMap<String, TraitValue>,
    pub channels: BTreeMap<Channel, ChannelSummary>,
    pub event_count: u64,
    pub merged_from: Vec<ProfileId>,
}

/// An identifier in an edge: its value only if it belongs to this profile.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LinkedNode {
    #[serde(rename = "type")]
    pub kind: IdentifierType,
    /// `None` for identifiers that belong to someone else or to nobody: this view must not
    /// reveal another person's identifiers.
    pub value: Option<String>,
    pub status: &'static str,
}

/// One evidence: identifiers seen together, with provenance.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct EdgeView {
    pub id: EvidenceId,
    pub identifiers: Vec<LinkedNode>,
    /// The first event (in event order) that carried these identifiers together (for a
    /// fuzzy link: the matching run or the operator's decision).
    pub first: Provenance,
    /// A fuzzy link's probability, weight and field contributions.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fuzzy: Option<crate::records::FuzzyLinkNote>,
}

/// "Why are these one person": identifiers, the evidence linking them, the merge log.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct IdentityView {
    pub id: ProfileId,
    pub identifiers: Vec<IdentifierViewBrief>,
    pub edges: Vec<EdgeView>,
    pub merge_log: Vec<MergeLogEntry>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct IdentifierViewBrief {
    #[serde(rename = "type")]
    pub kind: IdentifierType,
    pub value: String,
}

const MAX_ALIAS_HOPS: usize = 64;

impl Engine {
    /// The id `id` resolves to (itself, or the survivor of the merges that absorbed it).
    pub fn resolve_id(&self, id: ProfileId) -> Result<ProfileId, EngineError> {
        let mut current = id;
        for _ in 0..MAX_ALIAS_HOPS {
            match self.store().get(Keyspace::Aliases, current.as_bytes())? {
                Some(next) => {
                    let bytes: [u8; 16] = next
                        .as_slice()
                        .try_into()
                        .map_err(|_| EngineError::Corrupt("alias".into()))?;
                    current = ProfileId::from_bytes(bytes);
                }
                None => return Ok(current),
            }
        }
        Err(EngineError::Corrupt(format!(
            "alias chain from {id} is too long"
        )))
    }

    pub(crate) fn load_profile(&self, id: ProfileId) -> Result<Option<ProfileRecord>, EngineError> {
        Ok(self.load_profile_with_key(id)?.map(|(record, _)| record))
    }

    /// A committed profile and its data key, read straight from the store (no graph, no
    /// copies): the read path of reads, the indexer and exports.
    pub(crate) fn load_profile_with_key(
        &self,
        id: ProfileId,
    ) -> Result<Option<(ProfileRecord, cdp_crypto::DataKey)>, EngineError> {
        let Some(key) = self.vault().person_key(&id)? else {
            return Ok(None);
        };
        let Some(sealed) = self.store().get(Keyspace::Profiles, id.as_bytes())? else {
            return Ok(None);
        };
        let record = self.open_person(&key, Keyspace::Profiles, id.as_bytes(), &sealed)?;
        Ok(Some((record, key)))
    }

    /// A profile by id (following merges).
    ///
    /// Unaudited: no purpose, no policy decision, no masking. The HTTP API reads people only
    /// through the `read_*` functions (`access.rs`); this one serves them, the engine's own
    /// work and tests (`tests/e2e/tidy.rs` keeps the server off it).
    #[cfg(feature = "test-support")]
    pub fn unaudited_profile(&self, id: ProfileId) -> Result<Option<ProfileView>, EngineError> {
        let resolved = self.resolve_id(id)?;
        let Some(record) = self.load_profile(resolved)? else {
            return Ok(None);
        };
        let mut view = view_of(record);
        if resolved != id {
            view.resolved_from = Some(id);
        }
        Ok(Some(view))
    }

    /// The profile an identifier belongs to. `region` is used for phone numbers without a
    /// country code.
    ///
    /// Unaudited: no purpose, no policy decision, no masking. The HTTP API reads people only
    /// through the `read_*` functions (`access.rs`); this one serves them, the engine's own
    /// work and tests (`tests/e2e/tidy.rs` keeps the server off it).
    #[cfg(feature = "test-support")]
    pub fn unaudited_lookup(
        &self,
        kind: &IdentifierType,
        value: &str,
        region: Option<&str>,
    ) -> Result<Option<ProfileView>, EngineError> {
        let Some(profile) = self.profile_of_identifier(kind, value, region)? else {
            return Ok(None);
        };
        self.unaudited_profile(profile)
    }

    /// The profile id an identifier resolves to (no profile read): for bulk checks.
    pub fn profile_of_identifier(
        &self,
        kind: &IdentifierType,
        value: &str,
        region: Option<&str>,
    ) -> Result<Option<ProfileId>, EngineError> {
        let Ok(normalised) = normalise(kind, value, region, &self.config.identity) else {
            return Ok(None);
        };
        let key = NodeKey(self.vault().blind_index(kind, &normalised));
        let view = Overlay::new(self.store().as_ref());
        let mut graph = StoreGraph::new(self, &view);
        Ok(graph.node(&key)?.and_then(|node| node.profile))
    }

    /// The profile an identifier resolves to, and the identifier's node.
    pub(crate) fn node_of_identifier(
        &self,
        kind: &IdentifierType,
        value: &str,
        region: Option<&str>,
    ) -> Result<Option<(ProfileId, NodeKey)>, EngineError> {
        let Ok(normalised) = normalise(kind, value, region, &self.config.identity) else {
            return Ok(None);
        };
        let key = NodeKey(self.vault().blind_index(kind, &normalised));
        let view = Overlay::new(self.store().as_ref());
        let mut graph = StoreGraph::new(self, &view);
        Ok(graph
            .node(&key)?
            .and_then(|node| node.profile)
            .map(|profile| (profile, key)))
    }

    /// The events of a profile, oldest first, at most `limit`.
    ///
    /// Unaudited: no purpose, no policy decision, no masking. The HTTP API reads people only
    /// through the `read_*` functions (`access.rs`); this one serves them, the engine's own
    /// work and tests (`tests/e2e/tidy.rs` keeps the server off it).
    pub(crate) fn events(
        &self,
        id: ProfileId,
        limit: usize,
    ) -> Result<Vec<StoredEvent>, EngineError> {
        let resolved = self.resolve_id(id)?;
        let Some(key) = self.vault().person_key(&resolved)? else {
            return Ok(Vec::new());
        };
        let mut events = Vec::new();
        for item in self
            .store()
            .scan_prefix(Keyspace::Events, resolved.as_bytes())
            .take(limit)
        {
            let (event_key, sealed) = item?;
            events.push(self.open_person(&key, Keyspace::Events, &event_key, &sealed)?);
        }
        Ok(events)
    }

    /// The identity graph of a profile and its merge log.
    ///
    /// Unaudited: no purpose, no policy decision, no masking. The HTTP API reads people only
    /// through the `read_*` functions (`access.rs`); this one serves them, the engine's own
    /// work and tests (`tests/e2e/tidy.rs` keeps the server off it).
    pub(crate) fn identity(&self, id: ProfileId) -> Result<Option<IdentityView>, EngineError> {
        let resolved = self.resolve_id(id)?;
        let view = Overlay::new(self.store().as_ref());
        let mut graph = StoreGraph::new(self, &view);
        let Some((record, _)) = graph.profile(resolved)? else {
            return Ok(None);
        };
        let values: BTreeMap<NodeKey, (&IdentifierType, &String)> = record
            .identifiers
            .iter()
            .map(|e| (e.node, (&e.kind, &e.value)))
            .collect();
        let mut edges = Vec::new();
        for evidence_id in &record.evidence {
            let Some(evidence) = graph.evidence(evidence_id)? else {
                continue;
            };
            let dropped: BTreeMap<NodeKey, DropReason> = evidence
                .dropped
                .iter()
                .map(|d| (d.node, d.reason))
                .collect();
            let mut identifiers = Vec::new();
            let linked = evidence
                .nodes
                .iter()
                .map(|(kind, node)| (kind.clone(), *node, false));
            let severed = evidence
                .severed
                .iter()
                .map(|(kind, node)| (kind.clone(), *node, true));
            for (kind, node, is_severed) in linked.chain(severed) {
                let status = match (is_severed, dropped.get(&node)) {
                    (true, _) => "severed",
                    (false, Some(DropReason::MergeWouldExceedLimit)) => {
                        "dropped_merge_would_exceed_limit"
                    }
                    (false, Some(DropReason::TypeLimitReached)) => "dropped_type_limit_reached",
                    (false, None) => "linked",
                };
                identifiers.push(LinkedNode {
                    value: values.get(&node).map(|(_, value)| (*value).clone()),
                    kind,
                    status,
                });
            }
            edges.push(EdgeView {
                id: evidence.id,
                identifiers,
                first: evidence.first,
                fuzzy: evidence.fuzzy,
            });
        }
        edges.sort_by_key(|edge| edge.first.at);
        let mut merge_log = Vec::new();
        for item in self
            .store()
            .scan_prefix(Keyspace::MergeLog, resolved.as_bytes())
        {
            let (key, sealed) = item?;
            merge_log.push(self.open_system::<MergeLogEntry>(Keyspace::MergeLog, &key, &sealed)?);
        }
        Ok(Some(IdentityView {
            id: resolved,
            identifiers: record
                .identifiers
                .iter()
                .map(|e| IdentifierViewBrief {
                    kind: e.kind.clone(),
                    value: e.value.clone(),
                })
                .collect(),
            edges,
            merge_log,
        }))
    }
}

#[cfg(feature = "test-support")]
fn view_of(record: ProfileRecord) -> ProfileView {
    ProfileView {
        id: record.id,
        resolved_from: None,
        created_at: record.created_at,
        identifiers: record
            .identifiers
            .into_iter()
            .map(|e| IdentifierView {
                kind: e.kind,
                value: e.value,
                source_id: e.source_id,
                channel: e.channel,
                field: e.field,
                first_seen: e.first_seen,
                last_seen: e.last_seen,
            })
            .collect(),
        traits: record.traits,
        channels: record.channels,
        event_count: record.event_count,
        merged_from: record.merged_from,
    }
}
