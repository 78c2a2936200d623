//! Resolution of an event's evidence: the graph decides (`cdp_identity::graph::resolve`) and
//! this file applies the incremental outcome (attach identifiers, absorb merged profiles); a
//! late event's outcome is a recompute of its component (`recompute`).

use cdp_core::ProfileId;
use cdp_identity::graph::{DropReason, Resolution, resolve};
use cdp_store::Keyspace;
use time::OffsetDateTime;

use crate::consent::record::{ConsentRecord, consent_key, key_suffix};
use crate::records::{
    DroppedNode, EvidenceId, GraphNode, IdentifierEntry, MergeLogEntry, NodeRecord, ProfileRecord,
    Provenance, StoredEvent, event_key, event_key_suffix,
};
use crate::write::apply::Changes;
use crate::write::graph_store::StoreGraph;
use crate::write::message::EventToResolve;
use crate::write::profile_update::merge_channel;
use crate::write::survivorship::SurvivorshipRules;
use crate::{Engine, EngineError};

/// What the graph decided for an event that links without a recompute.
struct Attachment {
    /// The profile the evidence joins (`None`: a new person).
    target: Option<ProfileId>,
    /// Profiles the event merges into the target.
    merged: Vec<ProfileId>,
    /// Identifiers new to the target.
    attached: Vec<GraphNode>,
    /// Identifiers merge protection kept out, with the reason.
    dropped: Vec<(GraphNode, DropReason)>,
}

/// What merged two profiles, as the merge log records it.
struct MergeCause<'a> {
    evidence: EvidenceId,
    provenance: &'a Provenance,
    rule: &'a str,
}

impl Engine {
    /// Resolves the evidence of an event and stages the outcome.
    pub(crate) fn resolve_event(
        &self,
        graph: &mut StoreGraph<'_>,
        changes: &mut Changes,
        event: EventToResolve<'_>,
    ) -> Result<(), EngineError> {
        match resolve(graph, &event.graph_evidence, &self.config.identity)? {
            Resolution::Incremental {
                target,
                merged,
                attached,
                dropped,
            } => {
                let attachment = Attachment {
                    target,
                    merged,
                    attached,
                    dropped,
                };
                self.attach(graph, changes, event, attachment)
            }
            Resolution::Recompute {
                profiles,
                partition,
                truncated,
            } => {
                if truncated {
                    tracing::warn!(evidence = %event.evidence.id, "identity component too large to recompute whole; the result may depend on arrival order");
                }
                self.recompute_for_event(graph, changes, &profiles, partition, event)
            }
        }
    }

    /// Applies an incremental resolution: the target (loaded or new) absorbs the merged
    /// profiles, gains the attached identifiers, the evidence and the event.
    fn attach(
        &self,
        graph: &mut StoreGraph<'_>,
        changes: &mut Changes,
        event: EventToResolve<'_>,
        attachment: Attachment,
    ) -> Result<(), EngineError> {
        let EventToResolve {
            mut evidence,
            event,
            digest,
            identifiers,
            provenance,
            order,
            merge_rule,
            ..
        } = event;
        let evidence_id = evidence.id;
        let target = match attachment.target {
            Some(id) => {
                let loaded = graph
                    .take_profile(id)?
                    .ok_or_else(|| EngineError::Corrupt(format!("profile {id}")))?;
                changes.profiles.insert(id, loaded);
                id
            }
            None => self.new_profile(changes, provenance.at, order)?,
        };
        for absorbed in attachment.merged {
            let cause = MergeCause {
                evidence: evidence_id,
                provenance: &provenance,
                rule: merge_rule,
            };
            self.absorb(graph, changes, target, absorbed, &cause)?;
        }
        for node in &attachment.attached {
            let identifier = identifiers.get(&node.key).ok_or_else(|| {
                EngineError::Corrupt(format!(
                    "identifier {} of the evidence has no value",
                    node.kind
                ))
            })?;
            let entry = IdentifierEntry {
                kind: identifier.kind.clone(),
                value: identifier.value.clone(),
                node: node.key,
                source_id: provenance.source_id.clone(),
                channel: provenance.channel,
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
        evidence.profile = target;
        evidence.dropped = attachment
            .dropped
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
        match event {
            Some(event) => self.add_event(changes, target, event, &digest, identifiers, order),
            None => Ok(()),
        }
    }

    /// Moves everything of `absorbed` into `target` (loaded in `changes`).
    fn absorb(
        &self,
        graph: &mut StoreGraph<'_>,
        changes: &mut Changes,
        target: ProfileId,
        absorbed: ProfileId,
        cause: &MergeCause<'_>,
    ) -> Result<(), EngineError> {
        let (old, old_key) = graph.profile(absorbed)?.ok_or_else(|| {
            EngineError::Corrupt(format!("profile {absorbed} to merge is missing"))
        })?;
        self.move_person_records(graph, changes, absorbed, &old_key, target)?;
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
        merge_into(&self.config.survivorship, record, old, absorbed);
        changes.aliases.insert(absorbed, target);
        changes.deleted_profiles.insert(absorbed);
        changes.merge_log.push(MergeLogEntry {
            at: OffsetDateTime::now_utc(),
            kind: "merge".into(),
            survivor: target,
            absorbed: vec![absorbed],
            evidence: Some(cause.evidence),
            cause: Some(cause.provenance.clone()),
            rule: cause.rule.into(),
        });
        Ok(())
    }

    /// Moves the events and consent records of `from` to `to`, re-sealed under `to`'s key
    /// (consent records keep their origins: the most-restrictive rule stays meaningful).
    fn move_person_records(
        &self,
        graph: &mut StoreGraph<'_>,
        changes: &mut Changes,
        from: ProfileId,
        from_key: &cdp_crypto::DataKey,
        to: ProfileId,
    ) -> Result<(), EngineError> {
        let to_key = changes
            .profiles
            .get(&to)
            .map(|(_, key)| key.clone())
            .ok_or_else(|| EngineError::Corrupt(format!("merge into unloaded profile {to}")))?;
        // Events move to the survivor, re-sealed under its key, and their campaign facts.
        for (key, sealed) in graph.view.scan_prefix(Keyspace::Events, from.as_bytes())? {
            let stored: StoredEvent =
                self.open_person(from_key, Keyspace::Events, &key, &sealed)?;
            self.move_facts(
                graph.view,
                &mut changes.batch,
                &stored,
                event_key_suffix(&key),
                (from, from_key),
                (to, &to_key),
            )?;
            let new_key = event_key(&to, stored.message.timestamp, event_key_suffix(&key));
            changes.deleted_events.insert(key);
            changes.events.insert(new_key, (to, stored));
        }
        // So do consent records: their origins keep the most-restrictive rule meaningful.
        for (key, sealed) in graph
            .view
            .scan_prefix(Keyspace::Consents, from.as_bytes())?
        {
            let record: ConsentRecord =
                self.open_person(from_key, Keyspace::Consents, &key, &sealed)?;
            let suffix = key_suffix(&key)
                .ok_or_else(|| EngineError::Corrupt("consent ledger key".into()))?;
            changes.deleted_consents.insert(key);
            changes
                .consents
                .insert(consent_key(&to, &suffix), (to, record));
        }
        // And contact ledgers: the merged person's frequency caps count both people's
        // contacts.
        crate::contact_ledger::move_ledgers(
            self,
            graph.view,
            &mut changes.batch,
            (from, from_key),
            (to, &to_key),
        )?;
        Ok(())
    }
}

/// The absorbed profile's identifiers, traits (survivorship decides), channels, evidence,
/// counters and flags, merged into the survivor's record.
fn merge_into(
    rules: &SurvivorshipRules,
    record: &mut ProfileRecord,
    old: ProfileRecord,
    absorbed: ProfileId,
) {
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
            Some(current) => rules.choose(&name, current, &value),
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
}
