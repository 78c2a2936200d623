//! Unmerge: an identifier or an edge is cut out of a profile and its component re-resolved
//! from the remaining evidence (`recompute`); events and traits follow.

use std::collections::{BTreeMap, BTreeSet};

use cdp_core::{IdentifierType, ProfileId};
use cdp_identity::graph::recompute;
use cdp_identity::normalise::normalise;
use cdp_store::Overlay;
use serde::Serialize;

use crate::records::{
    EvidenceId, EvidenceRecord, GraphEvidence, GraphNode, NodeKey, ProfileRecord,
};
use crate::write::apply::{Changes, Staged};
use crate::write::graph_store::StoreGraph;
use crate::{Engine, EngineError};

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

impl Engine {
    /// Removes an identifier or an edge from a profile and re-resolves its component from the
    /// remaining evidence: events and traits follow. Returns the profiles the component became.
    pub fn split(
        &self,
        id: ProfileId,
        request: &SplitRequest,
    ) -> Result<(SplitReport, Option<cdp_store::CommitTicket>), EngineError> {
        let mut cache = self.write_lock()?;
        let resolved = self.resolve_id(id)?;
        let mut overlay = Overlay::new(self.store().as_ref());
        let mut staged = Staged::default();
        let (batch, survivors) = self.split_batch(&overlay, &mut staged, id, resolved, request)?;
        overlay.stage(batch)?;
        overlay.stage(staged.seal_graph(self)?)?;
        let ticket = overlay.commit()?;
        // Committed: keep the ingest cache equal to the store (what it lets go of is freed
        // after the lock).
        let released = cache.apply(staged);
        drop(cache);
        drop(released);
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
            purpose: Some(crate::audit::IDENTITY_PURPOSE.into()),
            person: report.profiles.first().copied(),
            decision: "done".into(),
            rules: Vec::new(),
        }])?;
        Ok((report, Some(ticket)))
    }

    fn split_batch(
        &self,
        view: &Overlay<'_>,
        staged: &mut Staged,
        id: ProfileId,
        resolved: ProfileId,
        request: &SplitRequest,
    ) -> Result<(cdp_store::WriteBatch, Vec<ProfileId>), EngineError> {
        let mut graph = StoreGraph::new(self, view);
        let Some((record, _)) = graph.profile(resolved)? else {
            return Err(EngineError::NotFound(format!("profile {id}")));
        };
        let mut changes = Changes::default();
        let start = match request {
            SplitRequest::Identifier { kind, value } => {
                self.sever_identifier(&mut graph, &mut changes, &record, kind, value)?
            }
            SplitRequest::Edge(evidence_id) => {
                self.sever_edge(&mut graph, &mut changes, &record, evidence_id)?
            }
        };
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
        self.recompute_for_split(&mut graph, &mut changes, &profiles, partition)?;
        let survivors: Vec<ProfileId> = changes
            .profiles
            .keys()
            .filter(|id| !changes.deleted_profiles.contains(id))
            .copied()
            .collect();
        Ok((changes.into_staged_batch(self, staged)?, survivors))
    }

    /// Removes an identifier from every evidence that links it to others; returns the nodes
    /// the recompute starts from.
    fn sever_identifier(
        &self,
        graph: &mut StoreGraph<'_>,
        changes: &mut Changes,
        record: &ProfileRecord,
        kind: &IdentifierType,
        value: &str,
    ) -> Result<Vec<GraphNode>, EngineError> {
        let normalised = normalise(kind, value, None, &self.config.identity).map_err(|_| {
            EngineError::InvalidRequest("identifier: not a valid value of its type".into())
        })?;
        let key = NodeKey(self.vault().blind_index(kind, &normalised));
        if !record.identifiers.iter().any(|e| e.node == key) {
            return Err(EngineError::NotFound(format!(
                "that {kind} in profile {}",
                record.id
            )));
        }
        let node = GraphNode {
            kind: kind.clone(),
            key,
        };
        let mut touched = vec![node];
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
        Ok(touched)
    }

    /// Cuts an evidence's links: it keeps only its strongest identifier; returns the nodes the
    /// recompute starts from.
    fn sever_edge(
        &self,
        graph: &mut StoreGraph<'_>,
        changes: &mut Changes,
        record: &ProfileRecord,
        evidence_id: &EvidenceId,
    ) -> Result<Vec<GraphNode>, EngineError> {
        if !record.evidence.contains(evidence_id) {
            return Err(EngineError::NotFound(format!(
                "edge {evidence_id} in profile {}",
                record.id
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
        graph.forget_evidence(evidence_id);
        changes.evidence.insert(*evidence_id, evidence);
        Ok(ordered)
    }
}

/// The graph during a split: changed evidence replaces stored, removed mentions are gone.
struct SplitView<'a, 'b> {
    graph: &'a mut StoreGraph<'b>,
    changed: &'a BTreeMap<EvidenceId, EvidenceRecord>,
    removed: &'a BTreeSet<(NodeKey, EvidenceId)>,
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

    fn evidence_of_node(&mut self, node: &GraphNode) -> Result<Vec<GraphEvidence>, EngineError> {
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
