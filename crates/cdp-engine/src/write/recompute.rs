//! Recompute of an identity component: its profiles are replaced by the groups of the
//! canonical partition (`cdp_identity::graph::recompute`), for a late event
//! ([`Engine::recompute_for_event`]) or a split ([`Engine::recompute_for_split`]).
//!
//! Ids survive where they can (the oldest profile of a group keeps its id); identifiers,
//! evidence, events and consent records are reattributed; traits and channel activity are
//! rebuilt by replaying the events in event order; old ids that did not survive become aliases
//! of the group holding most of their identifiers.

use std::collections::{BTreeMap, BTreeSet};

use cdp_core::ProfileId;
use cdp_crypto::DataKey;
use cdp_identity::graph::{OrderKey, Partition, PartitionGroup};
use cdp_store::Keyspace;
use time::OffsetDateTime;

use crate::consent::record::{ConsentOrigin, ConsentRecord, consent_key, key_suffix};
use crate::records::{
    DroppedNode, EvidenceId, EvidenceRecord, IdentifierEntry, MergeLogEntry, NodeKey, NodeRecord,
    ProfileRecord, Provenance, StoredEvent, event_key, event_key_suffix,
};
use crate::write::apply::Changes;
use crate::write::graph_store::StoreGraph;
use crate::write::message::EventToResolve;
use crate::write::profile_update::apply_event_to_profile;
use crate::{Engine, EngineError};

/// Everything the old profiles of a component hold, taken out of them.
#[derive(Default)]
struct Component {
    old: BTreeMap<ProfileId, (ProfileRecord, DataKey)>,
    entries: BTreeMap<NodeKey, IdentifierEntry>,
    /// (key suffix, event).
    events: Vec<(Vec<u8>, StoredEvent)>,
    /// (old owner, key suffix, record).
    consents: Vec<(ProfileId, [u8; 16], ConsentRecord)>,
    /// The evidence of the event that caused the recompute (not in the store yet).
    new_evidence: Option<EvidenceRecord>,
    /// (old owner, contact record): contact records, given to every new profile
    /// (`contact_ledger::redistribute_ledgers`).
    ledgers: Vec<(ProfileId, crate::contact_ledger::StoredLedger)>,
}

/// Which profile each group, identifier and evidence went to.
struct Assignment {
    /// Groups in event order.
    groups: Vec<PartitionGroup<NodeKey, EvidenceId>>,
    /// The profile of each group, in the same order.
    group_ids: Vec<ProfileId>,
    /// Old profiles that kept their id.
    used: BTreeSet<ProfileId>,
    node_group: BTreeMap<NodeKey, ProfileId>,
    evidence_group: BTreeMap<EvidenceId, ProfileId>,
}

/// What the merge log says of a recompute.
struct RecomputeLog<'a> {
    kind: &'static str,
    rule: &'static str,
    cause: Option<&'a Provenance>,
}

impl Engine {
    /// A late event: its component is re-resolved in event order, the event included.
    pub(crate) fn recompute_for_event(
        &self,
        graph: &mut StoreGraph<'_>,
        changes: &mut Changes,
        old_profiles: &[ProfileId],
        partition: Partition<NodeKey, EvidenceId>,
        event: EventToResolve<'_>,
    ) -> Result<(), EngineError> {
        let mut component = self.take_component(graph, changes, old_profiles)?;
        let EventToResolve {
            evidence,
            event,
            digest,
            identifiers,
            provenance,
            ..
        } = event;
        for (node, identifier) in identifiers {
            component
                .entries
                .entry(*node)
                .or_insert_with(|| IdentifierEntry {
                    kind: identifier.kind.clone(),
                    value: identifier.value.clone(),
                    node: *node,
                    source_id: provenance.source_id.clone(),
                    channel: provenance.channel,
                    field: identifier.field.clone(),
                    first_seen: provenance.at,
                    last_seen: provenance.at,
                });
        }
        if let Some(event) = event {
            component.events.push((digest[..8].to_vec(), event));
        }
        component.new_evidence = Some(evidence);
        let log = RecomputeLog {
            kind: "recompute",
            rule: "a late event arrived; its component was re-resolved in event order",
            cause: Some(&provenance),
        };
        self.redistribute(graph, changes, component, partition, &log)
    }

    /// A split: the component is re-resolved from its remaining evidence.
    pub(crate) fn recompute_for_split(
        &self,
        graph: &mut StoreGraph<'_>,
        changes: &mut Changes,
        old_profiles: &[ProfileId],
        partition: Partition<NodeKey, EvidenceId>,
    ) -> Result<(), EngineError> {
        let component = self.take_component(graph, changes, old_profiles)?;
        let log = RecomputeLog {
            kind: "split",
            rule: "an identifier or edge was removed; the component was re-resolved from its remaining evidence",
            cause: None,
        };
        self.redistribute(graph, changes, component, partition, &log)
    }

    /// Reads the old profiles with their events and consent records (whose stored copies
    /// are deleted: they are written again under their new owner).
    fn take_component(
        &self,
        graph: &mut StoreGraph<'_>,
        changes: &mut Changes,
        old_profiles: &[ProfileId],
    ) -> Result<Component, EngineError> {
        let mut component = Component::default();
        for id in old_profiles {
            let Some((record, key)) = graph.profile(*id)? else {
                continue;
            };
            for (event_key_bytes, sealed) in
                graph.view.scan_prefix(Keyspace::Events, id.as_bytes())?
            {
                let stored: StoredEvent =
                    self.open_person(&key, Keyspace::Events, &event_key_bytes, &sealed)?;
                // Its campaign facts are written again under its new owner (replay).
                self.delete_facts(
                    &mut changes.batch,
                    &stored,
                    id,
                    event_key_suffix(&event_key_bytes),
                );
                component
                    .events
                    .push((event_key_suffix(&event_key_bytes).to_vec(), stored));
                changes.deleted_events.insert(event_key_bytes);
            }
            for (ledger_key, sealed) in graph.view.scan_prefix(Keyspace::Consents, id.as_bytes())? {
                let record: ConsentRecord =
                    self.open_person(&key, Keyspace::Consents, &ledger_key, &sealed)?;
                let suffix = key_suffix(&ledger_key)
                    .ok_or_else(|| EngineError::Corrupt("consent ledger key".into()))?;
                component.consents.push((*id, suffix, record));
                changes.deleted_consents.insert(ledger_key);
            }
            for stored in crate::contact_ledger::read_ledgers(self, graph.view, id, &key)? {
                component.ledgers.push((*id, stored));
            }
            for entry in &record.identifiers {
                component.entries.insert(entry.node, entry.clone());
            }
            component.old.insert(*id, (record, key));
        }
        Ok(component)
    }

    /// Replaces the component's old profiles by the groups of `partition`.
    fn redistribute(
        &self,
        graph: &mut StoreGraph<'_>,
        changes: &mut Changes,
        component: Component,
        partition: Partition<NodeKey, EvidenceId>,
        log: &RecomputeLog<'_>,
    ) -> Result<(), EngineError> {
        let Component {
            old,
            entries,
            events,
            consents,
            new_evidence,
            ledgers,
        } = component;
        let mut assignment = self.assign_ids(changes, &old, partition.groups)?;
        place_identifiers(changes, &mut assignment, &entries)?;
        self.replay_events(changes, events, &assignment.evidence_group);
        let newest_mention = newest_mentions(graph, changes, new_evidence.as_ref(), &assignment)?;
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
            // In a group, or (identifiers that are no longer linked) in none.
            record.profile = assignment.node_group.get(node).copied();
            if let Some(newest) = newest_mention.get(node) {
                record.last_mention = record.last_mention.max(*newest);
            }
        }
        place_evidence(graph, changes, new_evidence, partition.dropped, &assignment)?;
        // A profile born here (a split) remembers whose identifiers it took, so that a send
        // that recorded the old profile measures both people (campaign results).
        for (heir, parents) in split_heirs_of(&old, &assignment) {
            crate::contact_ledger::note_split_heir(self, &mut changes.batch, &heir, &parents)?;
        }
        retire_old_ids(changes, old, &assignment);
        move_consents(changes, consents, &assignment);
        if !ledgers.is_empty() {
            let new: Vec<(ProfileId, cdp_crypto::DataKey)> = assignment
                .group_ids
                .iter()
                .filter_map(|id| changes.profiles.get(id).map(|(_, key)| (*id, key.clone())))
                .collect();
            let new: Vec<(ProfileId, &cdp_crypto::DataKey)> =
                new.iter().map(|(id, key)| (*id, key)).collect();
            crate::contact_ledger::redistribute_ledgers(self, &mut changes.batch, ledgers, &new)?;
        }
        for (group, id) in assignment.groups.iter().zip(&assignment.group_ids) {
            let absorbed: Vec<ProfileId> = changes
                .aliases
                .iter()
                .filter(|(_, heir)| *heir == id)
                .map(|(old, _)| *old)
                .collect();
            changes.merge_log.push(MergeLogEntry {
                at: OffsetDateTime::now_utc(),
                kind: log.kind.into(),
                survivor: *id,
                absorbed,
                evidence: group.evidence.first().copied(),
                cause: log.cause.cloned(),
                rule: log.rule.into(),
            });
        }
        Ok(())
    }

    /// Gives each group (in event order) the oldest unused old profile that shares
    /// identifiers with it, or a new profile; the kept profiles start empty.
    fn assign_ids(
        &self,
        changes: &mut Changes,
        old: &BTreeMap<ProfileId, (ProfileRecord, DataKey)>,
        mut groups: Vec<PartitionGroup<NodeKey, EvidenceId>>,
    ) -> Result<Assignment, EngineError> {
        groups.sort_by_key(|group| group.first_order);
        let mut used = BTreeSet::new();
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
        Ok(Assignment {
            groups,
            group_ids,
            used,
            node_group: BTreeMap::new(),
            evidence_group: BTreeMap::new(),
        })
    }

    /// Events follow their evidence; replay in event order rebuilds traits and activity.
    fn replay_events(
        &self,
        changes: &mut Changes,
        mut events: Vec<(Vec<u8>, StoredEvent)>,
        evidence_group: &BTreeMap<EvidenceId, ProfileId>,
    ) {
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
            for (tag, fact) in self.facts.facts_of(&event) {
                changes.facts.push(crate::campaign_facts::PendingFact {
                    tag,
                    at: event.message.timestamp,
                    profile: owner,
                    digest: suffix.clone(),
                    fact,
                });
            }
            let key = event_key(&owner, event.message.timestamp, &suffix);
            changes.events.insert(key, (owner, event));
        }
    }
}

/// Each group's profile gets its identifiers (linked when the partition says: windowed limits
/// count from it) and its evidence.
fn place_identifiers(
    changes: &mut Changes,
    assignment: &mut Assignment,
    entries: &BTreeMap<NodeKey, IdentifierEntry>,
) -> Result<(), EngineError> {
    for (group, id) in assignment.groups.iter().zip(&assignment.group_ids) {
        let (record, _) = changes
            .profiles
            .get_mut(id)
            .ok_or_else(|| EngineError::Corrupt(format!("profile {id} not loaded")))?;
        for node in &group.nodes {
            assignment.node_group.insert(node.key, *id);
            if let Some(entry) = entries.get(&node.key) {
                let mut entry = entry.clone();
                if let Some(linked) = group.linked_at.get(node).and_then(|m| {
                    OffsetDateTime::from_unix_timestamp_nanos(i128::from(*m) * 1_000).ok()
                }) {
                    entry.first_seen = linked;
                }
                record.identifiers.push(entry);
            }
        }
        for evidence in &group.evidence {
            assignment.evidence_group.insert(*evidence, *id);
            record.evidence.insert(*evidence);
        }
        record.first_order = group.first_order;
        record.last_order = group.last_order;
    }
    Ok(())
}

/// The newest evidence of the component that mentions each identifier. A node's
/// `last_mention` may leave out evidence anchored in its own profile (see
/// `Engine::note_mentions`); once the node changes profile that evidence counts, so every node
/// of the component gets the newest mention of all (an over-estimate only costs a recompute,
/// never a wrong result).
fn newest_mentions(
    graph: &mut StoreGraph<'_>,
    changes: &Changes,
    new_evidence: Option<&EvidenceRecord>,
    assignment: &Assignment,
) -> Result<BTreeMap<NodeKey, OrderKey>, EngineError> {
    let mut newest_mention: BTreeMap<NodeKey, OrderKey> = BTreeMap::new();
    for id in assignment.evidence_group.keys() {
        let record = match (new_evidence, changes.evidence.get(id)) {
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
    Ok(newest_mention)
}

/// Evidence records follow their group; dropped identifiers are as the partition says.
fn place_evidence(
    graph: &mut StoreGraph<'_>,
    changes: &mut Changes,
    new_evidence: Option<EvidenceRecord>,
    partition_dropped: Vec<(
        EvidenceId,
        crate::records::GraphNode,
        cdp_identity::graph::DropReason,
    )>,
    assignment: &Assignment,
) -> Result<(), EngineError> {
    let mut dropped: BTreeMap<EvidenceId, Vec<DroppedNode>> = BTreeMap::new();
    for (evidence, node, reason) in partition_dropped {
        dropped.entry(evidence).or_default().push(DroppedNode {
            kind: node.kind,
            node: node.key,
            reason,
        });
    }
    for (id, owner) in &assignment.evidence_group {
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
    Ok(())
}

/// The new profiles of a recomputed component (ids none of its old profiles had), each with
/// the old profiles it took identifiers from.
fn split_heirs_of(
    old: &BTreeMap<ProfileId, (ProfileRecord, DataKey)>,
    assignment: &Assignment,
) -> BTreeMap<ProfileId, Vec<ProfileId>> {
    let mut heirs: BTreeMap<ProfileId, Vec<ProfileId>> = BTreeMap::new();
    for (id, (record, _)) in old {
        for entry in &record.identifiers {
            if let Some(owner) = assignment.node_group.get(&entry.node)
                && !old.contains_key(owner)
            {
                let parents = heirs.entry(*owner).or_default();
                if !parents.contains(id) {
                    parents.push(*id);
                }
            }
        }
    }
    heirs
}

/// Old ids that did not survive resolve to the group holding most of their identifiers.
fn retire_old_ids(
    changes: &mut Changes,
    old: BTreeMap<ProfileId, (ProfileRecord, DataKey)>,
    assignment: &Assignment,
) {
    for (id, (record, key)) in old {
        if assignment.used.contains(&id) {
            continue;
        }
        let mut votes: BTreeMap<ProfileId, usize> = BTreeMap::new();
        for entry in &record.identifiers {
            if let Some(owner) = assignment.node_group.get(&entry.node) {
                *votes.entry(*owner).or_default() += 1;
            }
        }
        let heir = votes
            .into_iter()
            .max_by_key(|(owner, count)| (*count, std::cmp::Reverse(*owner)))
            .map(|(owner, _)| owner);
        if let Some(heir) = heir.or_else(|| assignment.group_ids.first().copied()) {
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
}

/// Consent records follow their identifier; decisions about the whole person stay with the
/// person's id (or its heir).
fn move_consents(
    changes: &mut Changes,
    consents: Vec<(ProfileId, [u8; 16], ConsentRecord)>,
    assignment: &Assignment,
) {
    for (old_id, suffix, mut record) in consents {
        let by_identifier = match &record.origin {
            ConsentOrigin::Identifier { node, .. } => {
                let owner = assignment.node_group.get(node).copied();
                // Its identifier is nobody's now: kept as evidence, no longer a grant.
                record.detached = owner.is_none();
                owner
            }
            ConsentOrigin::Profile => None,
        };
        let owner = by_identifier
            .or_else(|| assignment.used.contains(&old_id).then_some(old_id))
            .or_else(|| changes.aliases.get(&old_id).copied())
            .or_else(|| assignment.group_ids.first().copied());
        if let Some(owner) = owner {
            changes
                .consents
                .insert(consent_key(&owner, &suffix), (owner, record));
        }
    }
}
