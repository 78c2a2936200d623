//! A fuzzy match applied to the identity graph (issue 20). The link is an evidence like an
//! event's, between the strongest identifier of each of the two people, carrying the match's
//! probability and field contributions instead of an event: merge protection decides it the
//! way it decides an event (a link that would exceed a type limit is refused, nothing is
//! written), the identity explanation shows it, and a split by edge cuts it like any other.
//! A split link is remembered (its evidence keeps the severed identifier), so the next
//! matching run does not make it again.

use cdp_core::ProfileId;
use cdp_store::{CommitTicket, Overlay};
use time::OffsetDateTime;

use crate::records::{
    EvidenceId, EvidenceRecord, FuzzyLinkNote, GraphEvidence, GraphNode, Provenance,
};
use crate::write::apply::{Changes, Staged};
use crate::write::graph_store::StoreGraph;
use crate::write::message::{EventToResolve, MessageIdentifiers};
use crate::{Engine, EngineError};

/// The merge log's rule for a merge by a fuzzy match.
const FUZZY_MERGE_RULE: &str = "fuzzy matching found the two people to be one (match probability at or above the threshold, or accepted by an operator) and the merged profile stays within every type limit";

/// The source a fuzzy link's provenance names.
pub(crate) const FUZZY_SOURCE: &str = "fuzzy-matching";

/// What became of a fuzzy link.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum FuzzyLinkOutcome {
    /// The two are one profile now.
    Linked(ProfileId),
    /// They already were (an earlier link or event joined them).
    AlreadyOne,
    /// Not linked, and why (merge protection, a split by an operator, a person gone).
    Refused(String),
}

impl Engine {
    /// Links the people `a` and `b` resolve to as one, if merge protection allows.
    pub(crate) fn link_fuzzy(
        &self,
        a: ProfileId,
        b: ProfileId,
        note: FuzzyLinkNote,
    ) -> Result<(FuzzyLinkOutcome, Option<CommitTicket>), EngineError> {
        let mut cache = self.write_lock()?;
        let (a, b) = (self.resolve_id(a)?, self.resolve_id(b)?);
        if a == b {
            return Ok((FuzzyLinkOutcome::AlreadyOne, None));
        }
        let mut overlay = Overlay::new(self.store().as_ref());
        let mut staged = Staged::default();
        let no_identifiers = MessageIdentifiers::new();
        let mut changes = Changes::default();
        let mut graph = StoreGraph::with_cache(self, &overlay, &staged, &mut cache);
        let mut anchors = Vec::new();
        let mut last_order = (i64::MIN, [0u8; 16]);
        let mut channel = None;
        for id in [a, b] {
            let Some((record, _)) = graph.profile(id)? else {
                return Ok((
                    FuzzyLinkOutcome::Refused(format!("profile {id} no longer exists")),
                    None,
                ));
            };
            let Some(entry) = record.identifiers.iter().min_by(|x, y| {
                (
                    self.config.identity.rule(&x.kind).priority,
                    &x.kind,
                    &x.node,
                )
                    .cmp(&(
                        self.config.identity.rule(&y.kind).priority,
                        &y.kind,
                        &y.node,
                    ))
            }) else {
                return Ok((
                    FuzzyLinkOutcome::Refused(format!("profile {id} holds no identifier")),
                    None,
                ));
            };
            anchors.push(GraphNode {
                kind: entry.kind.clone(),
                key: entry.node,
            });
            channel = Some(entry.channel);
            last_order = last_order.max(record.last_order);
            for node in &anchors {
                if let Some(stored) = graph.node(&node.key)? {
                    last_order = last_order.max(stored.last_mention);
                }
            }
        }
        let id = fuzzy_evidence_id(&anchors);
        if let Some(existing) = graph.evidence(&id)? {
            let reason = if existing.severed.is_empty() {
                "this link exists already".to_string()
            } else {
                "an operator split this link off before: it is not made again".to_string()
            };
            return Ok((FuzzyLinkOutcome::Refused(reason), None));
        }
        // Newest in event order, so the graph applies it on top of the current state.
        let now = OffsetDateTime::now_utc();
        let micros = crate::write::graph_store::micros(now).max(last_order.0.saturating_add(1));
        let order = (micros, id.0);
        let provenance = Provenance {
            message_id: format!("fuzzy-match-{id}"),
            source_id: FUZZY_SOURCE.into(),
            channel: channel.unwrap_or(cdp_core::Channel::Crm),
            at: now,
        };
        let evidence = EvidenceRecord {
            id,
            nodes: anchors.iter().map(|n| (n.kind.clone(), n.key)).collect(),
            severed: Vec::new(),
            order,
            first: provenance.clone(),
            // Set once resolution has placed it.
            profile: ProfileId::from_bytes([0; 16]),
            dropped: Vec::new(),
            fuzzy: Some(note),
        };
        let to_resolve = EventToResolve {
            evidence,
            graph_evidence: GraphEvidence {
                id,
                order,
                nodes: anchors.clone(),
            },
            event: None,
            digest: id.0,
            identifiers: &no_identifiers,
            provenance,
            order,
            merge_rule: FUZZY_MERGE_RULE,
        };
        self.resolve_event(&mut graph, &mut changes, to_resolve)?;
        let placed = changes
            .evidence
            .get(&id)
            .ok_or_else(|| EngineError::Corrupt(format!("fuzzy link {id} was not placed")))?;
        if let Some(dropped) = placed.dropped.first() {
            return Ok((
                FuzzyLinkOutcome::Refused(format!(
                    "merge protection: the merged profile would exceed the limit of {} identifiers",
                    dropped.kind
                )),
                None,
            ));
        }
        let survivor = placed.profile;
        Self::note_mentions(&mut graph, &mut changes, &anchors, id, order)?;
        drop(graph);
        let batch = changes.into_staged_batch(self, &mut staged)?;
        overlay.stage(batch)?;
        overlay.stage(staged.seal_graph(self)?)?;
        let ticket = overlay.commit()?;
        // Committed: keep the ingest cache equal to the store (what it lets go of is freed
        // after the lock).
        let released = cache.apply(staged);
        drop(cache);
        drop(released);
        Ok((FuzzyLinkOutcome::Linked(survivor), ticket))
    }
}

/// A fuzzy link's evidence id: apart from any event's (an event carrying both identifiers
/// has its own evidence), the same for the same two identifiers.
fn fuzzy_evidence_id(nodes: &[GraphNode]) -> EvidenceId {
    let mut keys: Vec<&[u8; 32]> = nodes.iter().map(|n| n.key.0.as_bytes()).collect();
    keys.sort();
    let mut parts: Vec<&[u8]> = vec![b"fuzzy-link".as_slice()];
    parts.extend(keys.iter().map(|k| k.as_slice()));
    EvidenceId(cdp_crypto::digest16(&parts))
}
