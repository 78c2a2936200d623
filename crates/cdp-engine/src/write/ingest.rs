//! Ingestion: Segment messages into the identity graph, profiles and events.

use std::collections::BTreeMap;

use cdp_core::segment::{Message, MessageType};
use cdp_core::{IdentifierType, ProfileId};
use cdp_crypto::DataKey;
use cdp_identity::extract::{FoundIdentifier, extract};
use cdp_identity::graph::{Partition, Resolution, resolve};
use cdp_identity::normalise::normalise;
use cdp_store::{CommitTicket, Keyspace, Overlay, WriteBatch};
use time::OffsetDateTime;

use crate::write::apply::Changes;
use crate::write::cache::{RecordCache, Staged};
use crate::consent::ledger::{ConsentOrigin, ConsentRecord, ConsentSignal, consent_key, key_suffix};
use crate::write::graph_store::StoreGraph;
use crate::records::{
    ChannelSummary, DroppedNode, EvidenceId, EvidenceRecord, GraphEvidence, GraphNode,
    IdentifierEntry, MergeLogEntry, NodeKey, NodeRecord, ProfileRecord, Provenance, SourceRecord,
    StoredEvent, TraitValue, event_key, event_key_suffix, order_of,
};
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
}

/// An identifier of the current message, normalised.
pub(crate) struct MessageIdentifier {
    pub(crate) kind: IdentifierType,
    pub(crate) value: String,
    pub(crate) field: String,
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
        let mut prepared = Vec::with_capacity(messages.len());
        for (index, mut message) in messages.into_iter().enumerate() {
            let found = extract(&message).map_err(|error| EngineError::InvalidMessage {
                index: batched.then_some(index),
                field: if batched {
                    format!("batch[{index}].{}", error.field)
                } else {
                    error.field
                },
                problem: error.problem,
            })?;
            if message.generated_message_id {
                message.message_id = format!(
                    "cdp-{}",
                    crate::records::hex::encode(&cdp_crypto::random_bytes::<16>()?)
                );
            }
            let identifiers = self.normalised_identifiers(source, found);
            let signals = crate::consent::ledger::signals_of(self.policies(), &message);
            prepared.push((message, identifiers, signals));
        }
        let mut report = IngestReport::default();
        let mut cache = self.write_lock();
        // The whole request is one atomic batch: staged message by message, committed once.
        let mut overlay = Overlay::new(self.store().as_ref());
        let mut staged = Staged::default();
        for (message, identifiers, signals) in prepared {
            match self.ingest_one(
                &overlay,
                &mut staged,
                &mut cache,
                source,
                message,
                identifiers,
                signals,
            )? {
                Outcome::Staged(batch) => {
                    overlay.stage(batch)?;
                    report.accepted += 1;
                }
                Outcome::Duplicate => report.duplicates += 1,
                Outcome::Unattributed => report.unattributed += 1,
            }
        }
        report.ticket = overlay.commit()?;
        // Committed: the cache may now hold what the request wrote.
        cache.apply(staged);
        Ok(report)
    }

    #[allow(clippy::too_many_arguments)]
    fn ingest_one(
        &self,
        view: &Overlay<'_>,
        staged: &mut Staged,
        cache: &mut RecordCache,
        source: &SourceRecord,
        message: Message,
        identifiers: BTreeMap<NodeKey, MessageIdentifier>,
        signals: Vec<ConsentSignal>,
    ) -> Result<Outcome, EngineError> {
        let digest = cdp_crypto::digest16(&[source.id.as_bytes(), message.message_id.as_bytes()]);
        if !message.generated_message_id && view.get(Keyspace::Messages, &digest)?.is_some() {
            return Ok(Outcome::Duplicate);
        }
        if identifiers.is_empty() {
            return Ok(Outcome::Unattributed);
        }
        let nodes: Vec<GraphNode> = identifiers
            .iter()
            .map(|(key, identifier)| GraphNode {
                kind: identifier.kind.clone(),
                key: *key,
            })
            .collect();
        let evidence_id = evidence_id_of(&nodes);
        let order = order_of(&message, &digest);
        let message_id = message.message_id.clone();
        let provenance = Provenance {
            message_id: message.message_id.clone(),
            source_id: source.id.clone(),
            channel: source.channel,
            at: message.timestamp,
        };
        let event = StoredEvent {
            message,
            source_id: source.id.clone(),
            channel: source.channel,
            evidence: evidence_id,
        };
        let mut graph = StoreGraph::with_cache(self, view, staged, cache);
        let mut changes = Changes {
            message_digest: Some(digest),
            ..Changes::default()
        };
        let existing = graph.evidence(&evidence_id)?;
        match existing {
            // The same identifiers were seen together before: nothing new for the graph (the
            // evidence keeps the provenance of the first event that showed them).
            Some(existing) if existing.order <= order => {
                let (record, key) = graph.profile(existing.profile)?.ok_or_else(|| {
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
                self.stage_signals(
                    &mut graph,
                    &mut changes,
                    source,
                    &message_id,
                    provenance.at,
                    &identifiers,
                    signals,
                )?;
                drop(graph);
                return Ok(Outcome::Staged(changes.into_staged_batch(self, staged)?));
            }
            existing => {
                let graph_evidence = GraphEvidence {
                    id: evidence_id,
                    order,
                    nodes: match &existing {
                        // A late event with an identifier set seen before moves that evidence
                        // earlier in event order; severed identifiers stay severed.
                        Some(existing) => existing.graph_evidence().nodes,
                        None => nodes.clone(),
                    },
                };
                let resolution = resolve(&mut graph, &graph_evidence, &self.config.identity)?;
                let evidence = EvidenceRecord {
                    id: evidence_id,
                    nodes: graph_evidence
                        .nodes
                        .iter()
                        .map(|n| (n.kind.clone(), n.key))
                        .collect(),
                    severed: existing
                        .as_ref()
                        .map(|e| e.severed.clone())
                        .unwrap_or_default(),
                    order,
                    first: provenance.clone(),
                    profile: ProfileId::from_bytes([0; 16]),
                    dropped: Vec::new(),
                };
                match resolution {
                    Resolution::Incremental {
                        target,
                        merged,
                        attached,
                        dropped,
                    } => {
                        let target = match target {
                            Some(id) => {
                                let loaded = graph
                                    .profile(id)?
                                    .ok_or_else(|| EngineError::Corrupt(format!("profile {id}")))?;
                                changes.profiles.insert(id, loaded);
                                id
                            }
                            None => self.new_profile(&mut changes, provenance.at, order)?,
                        };
                        for absorbed in merged {
                            self.absorb(
                                &mut graph,
                                &mut changes,
                                target,
                                absorbed,
                                Some(evidence_id),
                                Some(&provenance),
                            )?;
                        }
                        for node in &attached {
                            let identifier = &identifiers[&node.key];
                            let entry = IdentifierEntry {
                                kind: identifier.kind.clone(),
                                value: identifier.value.clone(),
                                node: node.key,
                                source_id: source.id.clone(),
                                channel: source.channel,
                                field: identifier.field.clone(),
                                first_seen: provenance.at,
                                last_seen: provenance.at,
                            };
                            if let Some((record, _)) = changes.profiles.get_mut(&target) {
                                record.identifiers.push(entry);
                            }
                            let current = graph.node(&node.key)?;
                            let kind = node.kind.clone();
                            changes
                                .node_mut(node.key, || {
                                    current.unwrap_or(NodeRecord {
                                        kind,
                                        profile: None,
                                        last_mention: order,
                                    })
                                })
                                .profile = Some(target);
                        }
                        let mut evidence = evidence;
                        evidence.profile = target;
                        evidence.dropped = dropped
                            .into_iter()
                            .map(|(node, reason)| DroppedNode {
                                kind: node.kind,
                                node: node.key,
                                reason,
                            })
                            .collect();
                        if let Some((record, _)) = changes.profiles.get_mut(&target) {
                            record.evidence.insert(evidence_id);
                        }
                        changes.evidence.insert(evidence_id, evidence);
                        self.add_event(&mut changes, target, event, &digest, &identifiers, order)?;
                    }
                    Resolution::Recompute {
                        profiles,
                        partition,
                        truncated,
                    } => {
                        if truncated {
                            tracing::warn!(evidence = %evidence_id, "identity component too large to recompute whole; the result may depend on arrival order");
                        }
                        let new_event = Some(NewEvent {
                            evidence,
                            event,
                            digest,
                            identifiers: &identifiers,
                        });
                        self.apply_recompute(
                            &mut graph,
                            &mut changes,
                            &profiles,
                            partition,
                            new_event,
                            "recompute",
                            Some(&provenance),
                        )?;
                    }
                }
            }
        }
        // `last_mention` feeds the late check (`resolve`), which also compares the event with
        // the `last_order` of each identifier's profile. So an identifier needs its record
        // rewritten only when this evidence is anchored outside its profile (it was dropped,
        // or it has no profile); most events with a new identifier set rewrite no node.
        let anchor = changes
            .evidence
            .get(&evidence_id)
            .map(|record| record.profile);
        for node in &nodes {
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
        self.stage_signals(
            &mut graph,
            &mut changes,
            source,
            &message_id,
            provenance.at,
            &identifiers,
            signals,
        )?;
        drop(graph);
        Ok(Outcome::Staged(changes.into_staged_batch(self, staged)?))
    }

    /// The usable identifiers of a message: normalised (blocked and invalid ones left out) and
    /// blind-indexed.
    fn normalised_identifiers(
        &self,
        source: &SourceRecord,
        found: Vec<FoundIdentifier>,
    ) -> BTreeMap<NodeKey, MessageIdentifier> {
        let mut identifiers = BTreeMap::new();
        for item in found {
            let Ok(value) = normalise(
                &item.kind,
                &item.raw,
                source.default_region.as_deref(),
                &self.config.identity,
            ) else {
                continue;
            };
            let key = NodeKey(self.vault().blind_index(&item.kind, &value));
            identifiers.entry(key).or_insert(MessageIdentifier {
                kind: item.kind,
                value,
                field: item.field,
            });
        }
        identifiers
    }

    fn new_profile(
        &self,
        changes: &mut Changes,
        at: OffsetDateTime,
        order: cdp_identity::graph::OrderKey,
    ) -> Result<ProfileId, EngineError> {
        let id = cdp_crypto::random_profile_id()?;
        let key = self.vault().create_person_key(&id, &mut changes.batch)?;
        let record = ProfileRecord {
            id,
            created_at: at,
            identifiers: Vec::new(),
            traits: BTreeMap::new(),
            channels: BTreeMap::new(),
            evidence: Default::default(),
            first_order: order,
            last_order: order,
            event_count: 0,
            merged_from: Vec::new(),
            consent_marks: BTreeMap::new(),
            activity: Default::default(),
            restricted: false,
            tags_removed: Default::default(),
        };
        changes.profiles.insert(id, (record, key));
        Ok(id)
    }

    /// Records an event in a loaded profile: the event itself, counters, channel activity,
    /// identifier last-seen times and, for `identify`, traits.
    fn add_event(
        &self,
        changes: &mut Changes,
        profile: ProfileId,
        event: StoredEvent,
        digest: &[u8; 16],
        identifiers: &BTreeMap<NodeKey, MessageIdentifier>,
        order: cdp_identity::graph::OrderKey,
    ) -> Result<(), EngineError> {
        let (record, _) = changes
            .profiles
            .get_mut(&profile)
            .ok_or_else(|| EngineError::Corrupt(format!("profile {profile} not loaded")))?;
        record.first_order = record.first_order.min(order);
        record.last_order = record.last_order.max(order);
        for entry in &mut record.identifiers {
            // `first_seen` stays the time it was linked (windowed limits count from it).
            if identifiers.contains_key(&entry.node) {
                entry.last_seen = entry.last_seen.max(event.message.timestamp);
            }
        }
        apply_event_to_profile(&self.config.survivorship, record, &event);
        let key = event_key(&profile, event.message.timestamp, digest);
        changes.events.insert(key, (profile, event));
        Ok(())
    }

    /// Moves everything of `absorbed` into `target` (loaded in `changes`).
    pub(crate) fn absorb(
        &self,
        graph: &mut StoreGraph<'_>,
        changes: &mut Changes,
        target: ProfileId,
        absorbed: ProfileId,
        evidence: Option<EvidenceId>,
        cause: Option<&Provenance>,
    ) -> Result<(), EngineError> {
        let (old, old_key) = graph.profile(absorbed)?.ok_or_else(|| {
            EngineError::Corrupt(format!("profile {absorbed} to merge is missing"))
        })?;
        // Events move to the survivor, re-sealed under its key.
        for (key, sealed) in graph
            .view
            .scan_prefix(Keyspace::Events, absorbed.as_bytes())?
        {
            let stored: StoredEvent =
                self.open_person(&old_key, Keyspace::Events, &key, &sealed)?;
            let new_key = event_key(&target, stored.message.timestamp, event_key_suffix(&key));
            changes.deleted_events.insert(key);
            changes.events.insert(new_key, (target, stored));
        }
        // So do consent records: their origins keep the most-restrictive rule meaningful.
        for (key, sealed) in graph
            .view
            .scan_prefix(Keyspace::Consents, absorbed.as_bytes())?
        {
            let record: ConsentRecord =
                self.open_person(&old_key, Keyspace::Consents, &key, &sealed)?;
            let suffix = key_suffix(&key)
                .ok_or_else(|| EngineError::Corrupt("consent ledger key".into()))?;
            changes.deleted_consents.insert(key);
            changes
                .consents
                .insert(consent_key(&target, &suffix), (target, record));
        }
        for id in &old.evidence {
            if let Some(mut record) = match changes.evidence.remove(id) {
                Some(record) => Some(record),
                None => graph.evidence(id)?,
            } {
                record.profile = target;
                changes.evidence.insert(*id, record);
            }
        }
        for identifier in &old.identifiers {
            let current = graph.node(&identifier.node)?;
            let kind = identifier.kind.clone();
            changes
                .node_mut(identifier.node, || {
                    current.unwrap_or(NodeRecord {
                        kind,
                        profile: None,
                        last_mention: (i64::MIN, [0; 16]),
                    })
                })
                .profile = Some(target);
        }
        let (record, _) = changes
            .profiles
            .get_mut(&target)
            .ok_or_else(|| EngineError::Corrupt(format!("profile {target} not loaded")))?;
        for identifier in old.identifiers {
            if !record
                .identifiers
                .iter()
                .any(|entry| entry.node == identifier.node)
            {
                record.identifiers.push(identifier);
            }
        }
        for (name, value) in old.traits {
            let merged = match record.traits.get(&name) {
                Some(current) => self.config.survivorship.choose(&name, current, &value),
                None => value,
            };
            record.traits.insert(name, merged);
        }
        for (channel, summary) in old.channels {
            match record.channels.get_mut(&channel) {
                Some(existing) => merge_channel(existing, &summary),
                None => {
                    record.channels.insert(channel, summary);
                }
            }
        }
        record.evidence.extend(old.evidence);
        record.first_order = record.first_order.min(old.first_order);
        record.last_order = record.last_order.max(old.last_order);
        record.created_at = record.created_at.min(old.created_at);
        record.event_count += old.event_count;
        record.merged_from.push(absorbed);
        record.merged_from.extend(old.merged_from);
        record.consent_marks.extend(old.consent_marks);
        // A restriction or a deleted tag of either side holds for the merged person.
        record.restricted |= old.restricted;
        record.tags_removed.extend(old.tags_removed);
        record
            .activity
            .absorb(old.activity, OffsetDateTime::now_utc());
        changes.aliases.insert(absorbed, target);
        changes.deleted_profiles.insert(absorbed);
        changes.merge_log.push(MergeLogEntry {
            at: OffsetDateTime::now_utc(),
            kind: "merge".into(),
            survivor: target,
            absorbed: vec![absorbed],
            evidence,
            cause: cause.cloned(),
            rule: "an event carried identifiers of both profiles and the merged profile stays within every type limit".into(),
        });
        Ok(())
    }

    /// Replaces `old_profiles` by the groups of `partition`: ids survive where they can (the
    /// oldest profile of a group keeps its id), identifiers, evidence and events are
    /// reattributed, traits and channel activity are rebuilt from the events.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn apply_recompute(
        &self,
        graph: &mut StoreGraph<'_>,
        changes: &mut Changes,
        old_profiles: &[ProfileId],
        partition: Partition<NodeKey, EvidenceId>,
        new_event: Option<NewEvent<'_>>,
        kind: &str,
        cause: Option<&Provenance>,
    ) -> Result<(), EngineError> {
        // Everything the old profiles hold.
        let mut old: BTreeMap<ProfileId, (ProfileRecord, DataKey)> = BTreeMap::new();
        let mut entries: BTreeMap<NodeKey, IdentifierEntry> = BTreeMap::new();
        let mut events: Vec<(Vec<u8>, StoredEvent)> = Vec::new();
        let mut consents: Vec<(ProfileId, [u8; 16], ConsentRecord)> = Vec::new();
        for id in old_profiles {
            let Some((record, key)) = graph.profile(*id)? else {
                continue;
            };
            for (event_key_bytes, sealed) in
                graph.view.scan_prefix(Keyspace::Events, id.as_bytes())?
            {
                let stored: StoredEvent =
                    self.open_person(&key, Keyspace::Events, &event_key_bytes, &sealed)?;
                events.push((event_key_suffix(&event_key_bytes).to_vec(), stored));
                changes.deleted_events.insert(event_key_bytes);
            }
            for (ledger_key, sealed) in graph.view.scan_prefix(Keyspace::Consents, id.as_bytes())? {
                let record: ConsentRecord =
                    self.open_person(&key, Keyspace::Consents, &ledger_key, &sealed)?;
                let suffix = key_suffix(&ledger_key)
                    .ok_or_else(|| EngineError::Corrupt("consent ledger key".into()))?;
                consents.push((*id, suffix, record));
                changes.deleted_consents.insert(ledger_key);
            }
            for entry in &record.identifiers {
                entries.insert(entry.node, entry.clone());
            }
            old.insert(*id, (record, key));
        }
        let mut new_evidence = None;
        if let Some(NewEvent {
            evidence,
            event,
            digest,
            identifiers,
        }) = new_event
        {
            for (node, identifier) in identifiers {
                entries.entry(*node).or_insert_with(|| IdentifierEntry {
                    kind: identifier.kind.clone(),
                    value: identifier.value.clone(),
                    node: *node,
                    source_id: event.source_id.clone(),
                    channel: event.channel,
                    field: identifier.field.clone(),
                    first_seen: event.message.timestamp,
                    last_seen: event.message.timestamp,
                });
            }
            events.push((digest[..8].to_vec(), event));
            new_evidence = Some(evidence);
        }
        // Assign ids: groups in event order; each takes the oldest unused old profile that
        // shares identifiers with it.
        let mut groups = partition.groups;
        groups.sort_by_key(|group| group.first_order);
        let mut used = std::collections::BTreeSet::new();
        let mut group_ids = Vec::with_capacity(groups.len());
        for group in &groups {
            let survivor = old
                .iter()
                .filter(|(id, (record, _))| {
                    !used.contains(*id)
                        && record
                            .identifiers
                            .iter()
                            .any(|entry| group.nodes.iter().any(|n| n.key == entry.node))
                })
                .min_by_key(|(id, (record, _))| (record.first_order, **id))
                .map(|(id, _)| *id);
            let id = match survivor {
                Some(id) => {
                    used.insert(id);
                    let (record, key) = &old[&id];
                    let mut fresh = record.clone();
                    fresh.identifiers.clear();
                    fresh.traits.clear();
                    fresh.channels.clear();
                    fresh.evidence.clear();
                    fresh.event_count = 0;
                    fresh.activity = Default::default();
                    fresh.first_order = group.first_order;
                    fresh.last_order = group.last_order;
                    changes.profiles.insert(id, (fresh, key.clone()));
                    id
                }
                None => self.new_profile(changes, OffsetDateTime::now_utc(), group.first_order)?,
            };
            group_ids.push(id);
        }
        let mut evidence_group: BTreeMap<EvidenceId, ProfileId> = BTreeMap::new();
        let mut node_group: BTreeMap<NodeKey, ProfileId> = BTreeMap::new();
        for (group, id) in groups.iter().zip(&group_ids) {
            let (record, _) = changes
                .profiles
                .get_mut(id)
                .ok_or_else(|| EngineError::Corrupt(format!("profile {id} not loaded")))?;
            for node in &group.nodes {
                node_group.insert(node.key, *id);
                if let Some(entry) = entries.get(&node.key) {
                    let mut entry = entry.clone();
                    // Linked when the partition says (windowed limits count from it).
                    if let Some(linked) = group.linked_at.get(node).and_then(|m| {
                        OffsetDateTime::from_unix_timestamp_nanos(i128::from(*m) * 1_000).ok()
                    }) {
                        entry.first_seen = linked;
                    }
                    record.identifiers.push(entry);
                }
            }
            for evidence in &group.evidence {
                evidence_group.insert(*evidence, *id);
                record.evidence.insert(*evidence);
            }
            record.first_order = group.first_order;
            record.last_order = group.last_order;
        }
        // Events follow their evidence; replay in event order rebuilds traits and activity.
        events.sort_by(|a, b| {
            (a.1.message.timestamp, &a.1.message.message_id)
                .cmp(&(b.1.message.timestamp, &b.1.message.message_id))
        });
        for (suffix, event) in events {
            let Some(&owner) = evidence_group.get(&event.evidence) else {
                tracing::warn!(evidence = %event.evidence, "event whose evidence is in no group after recompute; kept out");
                continue;
            };
            if let Some((record, _)) = changes.profiles.get_mut(&owner) {
                apply_event_to_profile(&self.config.survivorship, record, &event);
            }
            let key = event_key(&owner, event.message.timestamp, &suffix);
            changes.events.insert(key, (owner, event));
        }
        // The newest evidence of the component that mentions each identifier. A node's
        // `last_mention` may leave out evidence anchored in its own profile (see the end of
        // `ingest_one`); once the node changes profile that evidence counts, so every node of
        // the component gets the newest mention of all (an over-estimate only costs a
        // recompute, never a wrong result).
        let mut newest_mention: BTreeMap<NodeKey, cdp_identity::graph::OrderKey> = BTreeMap::new();
        for id in evidence_group.keys() {
            let record = match (&new_evidence, changes.evidence.get(id)) {
                (Some(new), _) if new.id == *id => Some(new.clone()),
                (_, Some(record)) => Some(record.clone()),
                (_, None) => graph.evidence(id)?,
            };
            if let Some(record) = record {
                for (_, node) in &record.nodes {
                    let newest = newest_mention.entry(*node).or_insert(record.order);
                    *newest = (*newest).max(record.order);
                }
            }
        }
        // Nodes: in a group, or (identifiers that are no longer linked) in none.
        for node in entries.keys() {
            let current = graph.node(node)?;
            let kind = entries[node].kind.clone();
            let record = changes.node_mut(*node, || {
                current.unwrap_or(NodeRecord {
                    kind,
                    profile: None,
                    last_mention: (i64::MIN, [0; 16]),
                })
            });
            record.profile = node_group.get(node).copied();
            if let Some(newest) = newest_mention.get(node) {
                record.last_mention = record.last_mention.max(*newest);
            }
        }
        // Evidence records follow their group; dropped identifiers are as the partition says.
        let mut dropped: BTreeMap<EvidenceId, Vec<DroppedNode>> = BTreeMap::new();
        for (evidence, node, reason) in partition.dropped {
            dropped.entry(evidence).or_default().push(DroppedNode {
                kind: node.kind,
                node: node.key,
                reason,
            });
        }
        for (id, owner) in &evidence_group {
            let record = match (&new_evidence, changes.evidence.remove(id)) {
                (Some(new), _) if new.id == *id => Some(new.clone()),
                (_, Some(record)) => Some(record),
                (_, None) => graph.evidence(id)?,
            };
            if let Some(mut record) = record {
                record.profile = *owner;
                record.dropped = dropped.remove(id).unwrap_or_default();
                changes.evidence.insert(*id, record);
            }
        }
        // Old ids that did not survive resolve to the group holding most of their identifiers.
        for (id, (record, key)) in old {
            if used.contains(&id) {
                continue;
            }
            let mut votes: BTreeMap<ProfileId, usize> = BTreeMap::new();
            for entry in &record.identifiers {
                if let Some(owner) = node_group.get(&entry.node) {
                    *votes.entry(*owner).or_default() += 1;
                }
            }
            let heir = votes
                .into_iter()
                .max_by_key(|(owner, count)| (*count, std::cmp::Reverse(*owner)))
                .map(|(owner, _)| owner);
            if let Some(heir) = heir.or_else(|| group_ids.first().copied()) {
                changes.aliases.insert(id, heir);
                if let Some((heir_record, _)) = changes.profiles.get_mut(&heir) {
                    heir_record.merged_from.push(id);
                    heir_record
                        .merged_from
                        .extend(record.merged_from.iter().copied());
                }
            }
            changes.deleted_profiles.insert(id);
            changes.profiles.insert(id, (record, key));
        }
        // Consent records follow their identifier; decisions about the whole person stay with
        // the person's id (or its heir).
        for (old_id, suffix, mut record) in consents {
            let by_identifier = match &record.origin {
                ConsentOrigin::Identifier { node, .. } => {
                    let owner = node_group.get(node).copied();
                    // Its identifier is nobody's now: kept as evidence, no longer a grant.
                    record.detached = owner.is_none();
                    owner
                }
                ConsentOrigin::Profile => None,
            };
            let owner = by_identifier
                .or_else(|| used.contains(&old_id).then_some(old_id))
                .or_else(|| changes.aliases.get(&old_id).copied())
                .or_else(|| group_ids.first().copied());
            if let Some(owner) = owner {
                changes
                    .consents
                    .insert(consent_key(&owner, &suffix), (owner, record));
            }
        }
        for (group, id) in groups.iter().zip(&group_ids) {
            let absorbed: Vec<ProfileId> = changes
                .aliases
                .iter()
                .filter(|(_, heir)| *heir == id)
                .map(|(old, _)| *old)
                .collect();
            changes.merge_log.push(MergeLogEntry {
                at: OffsetDateTime::now_utc(),
                kind: kind.into(),
                survivor: *id,
                absorbed,
                evidence: group.evidence.first().copied(),
                cause: cause.cloned(),
                rule: match kind {
                    "split" => "an identifier or edge was removed; the component was re-resolved from its remaining evidence".into(),
                    _ => "a late event arrived; its component was re-resolved in event order".into(),
                },
            });
        }
        Ok(())
    }
}

/// The event being ingested when a late event triggers a recompute.
pub(crate) struct NewEvent<'a> {
    evidence: EvidenceRecord,
    event: StoredEvent,
    digest: [u8; 16],
    identifiers: &'a BTreeMap<NodeKey, MessageIdentifier>,
}

enum Outcome {
    Staged(WriteBatch),
    Duplicate,
    Unattributed,
}

/// The evidence id of a set of identifiers: a digest of their sorted (type, blind index).
pub(crate) fn evidence_id_of(nodes: &[GraphNode]) -> EvidenceId {
    let mut sorted: Vec<(&str, &[u8; 32])> = nodes
        .iter()
        .map(|n| (n.kind.as_str(), n.key.0.as_bytes()))
        .collect();
    sorted.sort();
    sorted.dedup();
    let parts: Vec<&[u8]> = sorted
        .iter()
        .flat_map(|(kind, key)| [kind.as_bytes(), key.as_slice()])
        .collect();
    EvidenceId(cdp_crypto::digest16(&parts))
}

fn merge_channel(into: &mut ChannelSummary, other: &ChannelSummary) {
    into.first_seen = into.first_seen.min(other.first_seen);
    into.last_seen = into.last_seen.max(other.last_seen);
    into.events += other.events;
}

/// Counters, channel activity and (for `identify`) traits from one event.
pub(crate) fn apply_event_to_profile(
    rules: &crate::SurvivorshipRules,
    record: &mut ProfileRecord,
    event: &StoredEvent,
) {
    let at = event.message.timestamp;
    record.event_count += 1;
    let summary = record
        .channels
        .entry(event.channel)
        .or_insert(ChannelSummary {
            first_seen: at,
            last_seen: at,
            events: 0,
        });
    summary.first_seen = summary.first_seen.min(at);
    summary.last_seen = summary.last_seen.max(at);
    summary.events += 1;
    record
        .activity
        .observe(&event.message, OffsetDateTime::now_utc());
    if event.message.kind == MessageType::Identify {
        for (name, value) in &event.message.traits {
            let incoming = TraitValue {
                value: value.clone(),
                source_id: event.source_id.clone(),
                channel: event.channel,
                at,
                first_seen: at,
            };
            let chosen = match record.traits.get(name) {
                Some(current) => rules.choose(name, current, &incoming),
                None => incoming,
            };
            record.traits.insert(name.clone(), chosen);
        }
    }
}
