//! Ingestion: Segment messages into the identity graph, profiles and events.
//!
//! A request is one atomic batch. Each message is prepared outside the write lock (identifiers
//! extracted, normalised and blind-indexed; consent signals read), then, under the lock, either
//! added to the profile that already holds its identifier set or resolved (`resolve`), and its
//! changes staged; the request commits once, on an embedded store after the lock with its
//! graph records sealed there (`pipeline`).

use std::sync::Arc;

use cdp_core::segment::Message;
use cdp_identity::extract::extract;
use cdp_store::{CommitTicket, Overlay, WriteBatch};

use crate::records::{
    EvidenceId, GraphNode, NodeKey, NodeRecord, Provenance, SourceRecord, StoredEvent, order_of,
};
use crate::write::apply::{Changes, Staged};
use crate::write::cache::RecordCache;
use crate::write::graph_store::StoreGraph;
use crate::write::message::{
    Arrival, EventToResolve, Incoming, PreparedMessage, evidence_id_of, graph_nodes,
};
use crate::write::pipeline::Unsealed;
use crate::{Engine, EngineError};

/// What an ingest call did.
#[derive(Debug, Default)]
pub struct IngestReport {
    pub accepted: usize,
    /// Messages whose messageId this source had already sent (retries): nothing changed.
    pub duplicates: usize,
    /// Messages none of whose identifiers survived normalisation (all blocked or invalid):
    /// they cannot be attributed to anybody and are not stored.
    pub unattributed: usize,
    /// Resolves when everything above is durable. `None` when nothing was written.
    pub ticket: Option<CommitTicket>,
    /// Identifiers left out as invalid and messages not stored for want of an identifier,
    /// by place in the batch (at most [`MAX_WARNINGS`]; names fields, never values).
    pub warnings: Vec<IngestWarning>,
}

/// The most warnings one request reports: a file of broken phone columns must not make
/// every answer larger than its request.
pub const MAX_WARNINGS: usize = 500;

/// Something of a message the platform did not use. The message itself was accepted (or,
/// with an empty `field`, not stored for want of a usable identifier).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IngestWarning {
    /// The message's place in the batch; `None` for a single message.
    pub index: Option<usize>,
    /// `traits.phone`, `context.externalIds[1]`; empty when the whole message is meant.
    pub field: String,
    pub problem: String,
}

enum Outcome {
    Staged(WriteBatch),
    Duplicate,
    Unattributed,
}

impl Engine {
    /// Ingests messages of one request. Every message is checked before anything is written:
    /// one invalid message refuses the whole request. Acknowledge the caller only after
    /// [`IngestReport::ticket`] resolves.
    pub fn ingest(
        &self,
        source: &SourceRecord,
        messages: Vec<Message>,
        batched: bool,
    ) -> Result<IngestReport, EngineError> {
        // Everything that needs no store (extraction, normalisation, blind indexes) happens
        // before the write lock, so it runs in parallel with other requests.
        let seen = crate::activity::seen(&messages);
        let mut prepared = Vec::with_capacity(messages.len());
        for (index, message) in messages.into_iter().enumerate() {
            prepared.push(self.prepare(source, message, batched.then_some(index))?);
        }
        // What resolution will read, read and decoded beside the other requests' resolution.
        let ahead = self.read_ahead(&prepared)?;
        let mut report = IngestReport::default();
        let mut cache = self.write_lock_for_ingest()?;
        let read_ahead = ahead.map(|ahead| cache.take_read_ahead(ahead));
        self.prefetch(&mut cache, &prepared)?;
        // The whole request is one atomic batch: staged message by message, committed once.
        // Its reads see what the requests before it resolved and have not committed yet.
        let layers = cache
            .unsealed
            .iter()
            .map(|request| request.staging.clone())
            .collect();
        let mut overlay = Overlay::with_layers(self.store().as_ref(), layers);
        let mut staged = Staged::default();
        for (position, mut message) in prepared.into_iter().enumerate() {
            let index = batched.then_some(position);
            let invalid = std::mem::take(&mut message.invalid);
            let outcome = self.ingest_one(&overlay, &mut staged, &mut cache, source, message)?;
            let mut warn = |field: String, problem: String| {
                if report.warnings.len() < MAX_WARNINGS {
                    report.warnings.push(IngestWarning {
                        index,
                        field,
                        problem,
                    });
                }
            };
            if !matches!(outcome, Outcome::Duplicate) {
                for (field, kind) in invalid {
                    warn(
                        field,
                        format!("not a valid {}: left out", kind.as_str().replace('_', " ")),
                    );
                }
            }
            match outcome {
                Outcome::Staged(batch) => {
                    overlay.stage(batch)?;
                    report.accepted += 1;
                }
                Outcome::Duplicate => report.duplicates += 1,
                Outcome::Unattributed => {
                    warn(
                        String::new(),
                        "no usable identifier (all missing, blocked or invalid): not stored".into(),
                    );
                    report.unattributed += 1;
                }
            }
        }
        // The request's messages join the de-duplication window as one record.
        let minute = crate::write::dedup::minute_of(time::OffsetDateTime::now_utc());
        let digests: Vec<[u8; 16]> = staged.messages.iter().copied().collect();
        let mut window = WriteBatch::new();
        cache
            .messages
            .stage(self.store().as_ref(), &mut window, minute, &digests)?;
        if !window.is_empty() {
            overlay.stage(window)?;
        }
        let conflicts = std::mem::take(&mut staged.conflicts);
        let graph_changed =
            !(staged.nodes.is_empty() && staged.evidence.is_empty() && staged.profiles.is_empty());
        // Over a network the store answers every read, the next request's included, so the
        // commit stays under the lock there; locally the graph is sealed after it.
        if self.store().reads_are_remote() || (!graph_changed && overlay.is_empty()) {
            // The graph records the messages changed, each once in its final state.
            overlay.stage(staged.seal_graph(self)?)?;
            report.ticket = overlay.commit()?;
            // Committed: the cache may now hold what the request wrote, and the indexer may
            // take the profiles from here instead of reading them back.
            let profiles: Vec<_> = std::mem::take(&mut staged.profiles)
                .into_iter()
                .map(|(id, profile)| (id, profile.map(|(record, key)| (Arc::new(record), key))))
                .collect();
            if let (Some(ticket), Some(_)) = (&report.ticket, &self.index) {
                self.written_profiles.publish(
                    ticket.seq(),
                    profiles.iter().map(|(id, profile)| (id, profile.as_ref())),
                );
            }
            cache.messages.committed(minute, &digests);
            let mut released = cache.apply(staged);
            released.extend(cache.put_profiles(profiles));
            drop(cache);
            // Freed outside the lock (`Released`).
            drop(released);
            drop(read_ahead);
        } else {
            let place = self.pipeline.issue()?;
            let request = Arc::new(Unsealed {
                place: place.number(),
                staging: Arc::new(overlay.into_staging()),
                nodes: std::mem::take(&mut staged.nodes),
                evidence: std::mem::take(&mut staged.evidence),
                profiles: std::mem::take(&mut staged.profiles)
                    .into_iter()
                    .map(|(id, profile)| (id, profile.map(|(record, key)| (Arc::new(record), key))))
                    .collect(),
            });
            // The next request reads these before the commit: they are part of the writer's
            // state from here (a failed commit stops the pipeline).
            cache.messages.committed(minute, &digests);
            let released = cache.apply_unsealed(request.clone());
            drop(cache);
            drop(released);
            drop(read_ahead);
            let graph = request.seal_graph(self)?;
            let ticket = self.pipeline.commit_at(place, || {
                let ticket = self.store().commit(request.staging.batch(graph))?;
                if self.index.is_some() {
                    self.written_profiles.publish(
                        ticket.seq(),
                        request
                            .profiles
                            .iter()
                            .map(|(id, profile)| (id, profile.as_ref())),
                    );
                }
                Ok(ticket)
            })?;
            report.ticket = Some(ticket);
        }
        self.activity
            .record(&source.id, seen, report.accepted as u64);
        // Statistics for junk detection, after the request's own commit: a failure here
        // only delays a quarantine, it does not fail what was accepted.
        if let Err(error) = self.note_conflicts(conflicts) {
            tracing::error!(error = %error, "cannot note identity conflicts for junk detection");
        }
        Ok(report)
    }

    /// The links merge protection refused, for junk detection: in each evidence this change
    /// wrote (this event's, and the others of its component when it was resolved again), each
    /// dropped identifier against that evidence's anchor (its strongest identifier that was
    /// not dropped), noted for both where this message gives the value. Counting distinct
    /// identifiers makes noting a refusal twice harmless; only this event's own refusals count
    /// as events.
    fn conflicts_of(
        &self,
        changes: &Changes,
        evidence_id: EvidenceId,
        identifiers: &crate::write::message::MessageIdentifiers,
    ) -> Vec<crate::write::apply::Conflict> {
        let mut out = Vec::new();
        for (id, evidence) in &changes.evidence {
            if evidence.dropped.is_empty() {
                continue;
            }
            let dropped: Vec<NodeKey> = evidence.dropped.iter().map(|d| d.node).collect();
            let Some((anchor_kind, anchor)) = evidence
                .nodes
                .iter()
                .filter(|(_, key)| !dropped.contains(key))
                .min_by_key(|(kind, key)| (self.config.identity.rule(kind).priority, *key))
            else {
                continue;
            };
            let this_event = *id == evidence_id;
            let conflict =
                |kind: &cdp_core::IdentifierType, node: NodeKey, counterpart: NodeKey| {
                    identifiers
                        .get(&node)
                        .map(|identifier| crate::write::apply::Conflict {
                            node,
                            kind: kind.clone(),
                            value: identifier.value.clone(),
                            counterpart,
                            this_event,
                        })
                };
            for node in &evidence.dropped {
                out.extend(conflict(&node.kind, node.node, *anchor));
                out.extend(conflict(anchor_kind, *anchor, node.node));
            }
        }
        out
    }

    /// Extraction, message id, normalisation, blind indexes and consent signals of one message
    /// (`index`: its place in a batch, for the error).
    fn prepare(
        &self,
        source: &SourceRecord,
        mut message: Message,
        index: Option<usize>,
    ) -> Result<PreparedMessage, EngineError> {
        let found = extract(&message).map_err(|error| EngineError::InvalidMessage {
            index,
            field: match index {
                Some(index) => format!("batch[{index}].{}", error.field),
                None => error.field,
            },
            problem: error.problem,
        })?;
        if message.generated_message_id {
            message.message_id = format!(
                "cdp-{}",
                crate::records::hex::encode(&cdp_crypto::random_bytes::<16>()?)
            );
        }
        let (identifiers, invalid) = self.normalised_identifiers(source, found);
        let mut signals = crate::write::consent_staging::signals_of(self.policies(), &message);
        signals.extend(self.unsubscribe_signal(&message)?);
        Ok(PreparedMessage {
            message,
            identifiers,
            signals,
            invalid,
        })
    }

    fn ingest_one(
        &self,
        view: &Overlay<'_>,
        staged: &mut Staged,
        cache: &mut RecordCache,
        source: &SourceRecord,
        prepared: PreparedMessage,
    ) -> Result<Outcome, EngineError> {
        let PreparedMessage {
            message,
            identifiers,
            signals,
            invalid: _,
        } = prepared;
        let digest = cdp_crypto::digest16(&[source.id.as_bytes(), message.message_id.as_bytes()]);
        // A server-made messageId cannot come again: only the caller's are remembered.
        let remembered = !message.generated_message_id;
        if remembered && (cache.messages.contains(&digest) || staged.messages.contains(&digest)) {
            return Ok(Outcome::Duplicate);
        }
        if identifiers.is_empty() {
            return Ok(Outcome::Unattributed);
        }
        let nodes = graph_nodes(&identifiers);
        let evidence_id = evidence_id_of(&nodes);
        let order = order_of(&message, &digest);
        let message_id = message.message_id.clone();
        let provenance = Provenance {
            message_id: message.message_id.clone(),
            source_id: source.id.clone(),
            channel: source.channel,
            at: message.timestamp,
        };
        let incoming = Incoming {
            source,
            message_id: &message_id,
            at: provenance.at,
            identifiers: &identifiers,
        };
        let event = StoredEvent {
            message,
            source_id: source.id.clone(),
            channel: source.channel,
            evidence: evidence_id,
        };
        let mut graph = StoreGraph::with_cache(self, view, staged, cache);
        let mut changes = Changes::default();
        let mut conflicts = Vec::new();
        match graph.evidence(&evidence_id)? {
            // The same identifiers were seen together before: nothing new for the graph (the
            // evidence keeps the provenance of the first event that showed them).
            Some(existing) if existing.order <= order => {
                let (record, key) = graph.take_profile(existing.profile)?.ok_or_else(|| {
                    EngineError::Corrupt(format!(
                        "evidence {evidence_id} points to a missing profile"
                    ))
                })?;
                changes.profiles.insert(record.id, (record, key));
                self.add_event(
                    &mut changes,
                    existing.profile,
                    event,
                    &digest,
                    &identifiers,
                    order,
                )?;
            }
            existing => {
                let to_resolve = EventToResolve::new(
                    &nodes,
                    existing,
                    Arrival {
                        event,
                        digest,
                        identifiers: &identifiers,
                        provenance,
                        order,
                    },
                );
                self.resolve_event(&mut graph, &mut changes, to_resolve)?;
                Self::note_mentions(&mut graph, &mut changes, &nodes, evidence_id, order)?;
                conflicts = self.conflicts_of(&changes, evidence_id, &identifiers);
            }
        }
        self.stage_signals(&mut graph, &mut changes, &incoming, signals)?;
        drop(graph);
        let batch = changes.into_staged_batch(self, staged)?;
        staged.conflicts.extend(conflicts);
        if remembered {
            staged.messages.insert(digest);
        }
        Ok(Outcome::Staged(batch))
    }

    /// Records that the evidence mentions each of its identifiers.
    ///
    /// `last_mention` feeds the late check (`resolve`), which also compares the event with
    /// the `last_order` of each identifier's profile. So an identifier needs its record
    /// rewritten only when this evidence is anchored outside its profile (it was dropped,
    /// or it has no profile); most events with a new identifier set rewrite no node.
    pub(crate) fn note_mentions(
        graph: &mut StoreGraph<'_>,
        changes: &mut Changes,
        nodes: &[GraphNode],
        evidence_id: EvidenceId,
        order: cdp_identity::graph::OrderKey,
    ) -> Result<(), EngineError> {
        let anchor = changes
            .evidence
            .get(&evidence_id)
            .map(|record| record.profile);
        for node in nodes {
            changes.mentions.insert((node.key, evidence_id));
            let staged = changes.nodes.get(&node.key).map(|record| record.profile);
            let current = graph.node(&node.key)?;
            let profile = match staged {
                Some(profile) => profile,
                None => current.as_ref().and_then(|record| record.profile),
            };
            if anchor.is_some() && profile == anchor {
                continue;
            }
            let kind = node.kind.clone();
            let record = changes.node_mut(node.key, || {
                current.unwrap_or(NodeRecord {
                    kind,
                    profile: None,
                    last_mention: order,
                })
            });
            record.last_mention = record.last_mention.max(order);
        }
        Ok(())
    }
}
