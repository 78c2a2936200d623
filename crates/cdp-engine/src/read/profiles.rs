//! Reading profiles, explaining the identity graph, and splitting it.

use std::collections::BTreeMap;

use cdp_core::{Channel, IdentifierType, ProfileId};
use cdp_identity::graph::{DropReason, recompute};
use cdp_identity::normalise::normalise;
use cdp_store::{Keyspace, Overlay};
use serde::Serialize;
use time::OffsetDateTime;

use crate::write::apply::Changes;
use crate::write::graph_store::StoreGraph;
use crate::records::{
    ChannelSummary, EvidenceId, GraphNode, MergeLogEntry, NodeKey, ProfileRecord, Provenance,
    StoredEvent, TraitValue,
};
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
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct EdgeView {
    pub id: EvidenceId,
    pub identifiers: Vec<LinkedNode>,
    /// The first event (in event order) that carried these identifiers together.
    pub first: Provenance,
}

/// "Why are these one person": identifiers, the evidence linking them, the merge log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
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

/// What to cut out of a profile.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SplitRequest {
    /// Remove this identifier from the profile: it no longer links to the others (its own
    /// events, if any carried it alone, become a profile of their own).
    Identifier { kind: IdentifierType, value: String },
    /// Remove this evidence's links: its events stay with its strongest identifier.
    Edge(EvidenceId),
}

/// The profiles a split left.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SplitReport {
    pub profiles: Vec<ProfileId>,
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
    pub fn profile(&self, id: ProfileId) -> Result<Option<ProfileView>, EngineError> {
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
    pub fn lookup(
        &self,
        kind: &IdentifierType,
        value: &str,
        region: Option<&str>,
    ) -> Result<Option<ProfileView>, EngineError> {
        let Some(profile) = self.profile_of_identifier(kind, value, region)? else {
            return Ok(None);
        };
        self.profile(profile)
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
    pub fn events(&self, id: ProfileId, limit: usize) -> Result<Vec<StoredEvent>, EngineError> {
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
    pub fn identity(&self, id: ProfileId) -> Result<Option<IdentityView>, EngineError> {
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

    /// Removes an identifier or an edge from a profile and re-resolves its component from the
    /// remaining evidence: events and traits follow. Returns the profiles the component became.
    pub fn split(
        &self,
        id: ProfileId,
        request: &SplitRequest,
    ) -> Result<(SplitReport, Option<cdp_store::CommitTicket>), EngineError> {
        let mut cache = self.write_lock();
        let resolved = self.resolve_id(id)?;
        let mut overlay = Overlay::new(self.store().as_ref());
        let mut staged = crate::write::cache::Staged::default();
        let (batch, survivors) = self.split_batch(&overlay, &mut staged, id, resolved, request)?;
        overlay.stage(batch)?;
        let ticket = overlay.commit()?;
        // Committed: keep the ingest cache equal to the store.
        cache.apply(staged);
        Ok((
            SplitReport {
                profiles: survivors,
            },
            ticket,
        ))
    }

    /// [`Engine::split`], recorded in the audit log as `identity.split` by `actor`.
    pub fn split_audited(
        &self,
        id: ProfileId,
        request: &SplitRequest,
        actor: &str,
    ) -> Result<(SplitReport, Option<cdp_store::CommitTicket>), EngineError> {
        let (report, _) = self.split(id, request)?;
        // The audit commit comes after the split's: once it is durable, so is the split.
        let ticket = self.audit(&[crate::AuditRecord {
            actor: actor.to_string(),
            action: "identity.split".into(),
            purpose: None,
            person: report.profiles.first().copied(),
            decision: "done".into(),
            rules: Vec::new(),
        }])?;
        Ok((report, Some(ticket)))
    }

    fn split_batch(
        &self,
        view: &Overlay<'_>,
        staged: &mut crate::write::cache::Staged,
        id: ProfileId,
        resolved: ProfileId,
        request: &SplitRequest,
    ) -> Result<(cdp_store::WriteBatch, Vec<ProfileId>), EngineError> {
        let mut graph = StoreGraph::new(self, view);
        let Some((record, _)) = graph.profile(resolved)? else {
            return Err(EngineError::NotFound(format!("profile {id}")));
        };
        let mut changes = Changes::default();
        let start: Vec<GraphNode>;
        match request {
            SplitRequest::Identifier { kind, value } => {
                let normalised =
                    normalise(kind, value, None, &self.config.identity).map_err(|_| {
                        EngineError::InvalidRequest(
                            "identifier: not a valid value of its type".into(),
                        )
                    })?;
                let key = NodeKey(self.vault().blind_index(kind, &normalised));
                if !record.identifiers.iter().any(|e| e.node == key) {
                    return Err(EngineError::NotFound(format!(
                        "that {kind} in profile {resolved}"
                    )));
                }
                let node = GraphNode {
                    kind: kind.clone(),
                    key,
                };
                let mut touched = vec![node.clone()];
                for evidence_id in graph.mentions(&key)? {
                    let Some(mut evidence) = graph.evidence(&evidence_id)? else {
                        continue;
                    };
                    if evidence.nodes.len() <= 1 {
                        continue;
                    }
                    evidence.nodes.retain(|(_, n)| *n != key);
                    evidence.severed.push((kind.clone(), key));
                    touched.extend(evidence.nodes.iter().map(|(k, n)| GraphNode {
                        kind: k.clone(),
                        key: *n,
                    }));
                    changes.removed_mentions.insert((key, evidence_id));
                    graph.forget_evidence(&evidence_id);
                    changes.evidence.insert(evidence_id, evidence);
                }
                start = touched;
            }
            SplitRequest::Edge(evidence_id) => {
                if !record.evidence.contains(evidence_id) {
                    return Err(EngineError::NotFound(format!(
                        "edge {evidence_id} in profile {resolved}"
                    )));
                }
                let Some(mut evidence) = graph.evidence(evidence_id)? else {
                    return Err(EngineError::NotFound(format!("edge {evidence_id}")));
                };
                let ordered = cdp_identity::graph::ordered_nodes(
                    &evidence.graph_evidence().nodes,
                    &self.config.identity,
                );
                let Some((anchor, rest)) = ordered.split_first() else {
                    return Err(EngineError::InvalidRequest(
                        "that edge links nothing".into(),
                    ));
                };
                if rest.is_empty() {
                    return Err(EngineError::InvalidRequest(
                        "that edge has a single identifier: split the identifier instead".into(),
                    ));
                }
                for node in rest {
                    changes.removed_mentions.insert((node.key, *evidence_id));
                    evidence.severed.push((node.kind.clone(), node.key));
                }
                evidence.nodes = vec![(anchor.kind.clone(), anchor.key)];
                start = ordered.clone();
                graph.forget_evidence(evidence_id);
                changes.evidence.insert(*evidence_id, evidence);
            }
        }
        // Recompute with the changed evidence in place of the stored.
        let mut view = SplitView {
            graph: &mut graph,
            changed: &changes.evidence,
            removed: &changes.removed_mentions,
        };
        let (profiles, partition, truncated) =
            recompute(&mut view, &start, None, &self.config.identity)?;
        if truncated {
            tracing::warn!(profile = %resolved, "split component too large to recompute whole");
        }
        let cause = None;
        self.apply_recompute(
            &mut graph,
            &mut changes,
            &profiles,
            partition,
            None,
            "split",
            cause,
        )?;
        let survivors: Vec<ProfileId> = changes
            .profiles
            .keys()
            .filter(|id| !changes.deleted_profiles.contains(id))
            .copied()
            .collect();
        Ok((changes.into_staged_batch(self, staged)?, survivors))
    }
}

/// The graph during a split: changed evidence replaces stored, removed mentions are gone.
struct SplitView<'a, 'b> {
    graph: &'a mut StoreGraph<'b>,
    changed: &'a BTreeMap<EvidenceId, crate::records::EvidenceRecord>,
    removed: &'a std::collections::BTreeSet<(NodeKey, EvidenceId)>,
}

impl cdp_identity::graph::GraphView<NodeKey, EvidenceId> for SplitView<'_, '_> {
    type Profile = ProfileId;
    type Error = EngineError;

    fn profile_of(&mut self, node: &GraphNode) -> Result<Option<ProfileId>, EngineError> {
        self.graph.profile_of(node)
    }

    fn summary(
        &mut self,
        profile: ProfileId,
    ) -> Result<cdp_identity::graph::ProfileSummary, EngineError> {
        self.graph.summary(profile)
    }

    fn last_mention(
        &mut self,
        node: &GraphNode,
    ) -> Result<Option<cdp_identity::graph::OrderKey>, EngineError> {
        self.graph.last_mention(node)
    }

    fn evidence_of_node(
        &mut self,
        node: &GraphNode,
    ) -> Result<Vec<crate::records::GraphEvidence>, EngineError> {
        let mut out = Vec::new();
        for id in self.graph.mentions(&node.key)? {
            if self.removed.contains(&(node.key, id)) {
                continue;
            }
            let record = match self.changed.get(&id) {
                Some(changed) => Some(changed.clone()),
                None => self.graph.evidence(&id)?,
            };
            if let Some(record) = record {
                out.push(record.graph_evidence());
            }
        }
        Ok(out)
    }
}

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
