//! A message as resolution sees it: its identifiers (normalised, blind-indexed), the evidence
//! id of their set, and the parts of the event that the later steps carry along.

use std::collections::BTreeMap;

use cdp_core::IdentifierType;
use cdp_core::segment::Message;
use cdp_identity::extract::FoundIdentifier;
use cdp_identity::graph::OrderKey;
use cdp_identity::normalise::{Rejection, normalise};
use cdp_policy::ConsentStatus;
use serde_json::Value;
use time::OffsetDateTime;

use crate::Engine;
use crate::records::hex;
use crate::records::{
    EvidenceId, EvidenceRecord, GraphEvidence, GraphNode, NodeKey, Provenance, SourceRecord,
    StoredEvent,
};

/// An identifier of the current message, normalised.
pub(crate) struct MessageIdentifier {
    pub(crate) kind: IdentifierType,
    pub(crate) value: String,
    pub(crate) field: String,
}

/// The identifiers of a message by blind index.
pub(crate) type MessageIdentifiers = BTreeMap<NodeKey, MessageIdentifier>;

/// Consent signals carried by a message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ConsentSignal {
    pub(crate) via: &'static str,
    pub(crate) purposes: Vec<(String, ConsentStatus)>,
    pub(crate) evidence: Value,
}

impl ConsentSignal {
    /// A digest of what the signal says, to skip repeating it on every event.
    pub(crate) fn mark(&self) -> String {
        let mut parts: Vec<Vec<u8>> = self
            .purposes
            .iter()
            .map(|(purpose, status)| format!("{purpose}={}", status.as_str()).into_bytes())
            .collect();
        parts.sort();
        let refs: Vec<&[u8]> = parts.iter().map(Vec::as_slice).collect();
        hex::encode(&cdp_crypto::digest16(&refs)[..8])
    }
}

/// A message with everything done that needs no store (done before the write lock).
pub(crate) struct PreparedMessage {
    pub(crate) message: Message,
    pub(crate) identifiers: MessageIdentifiers,
    pub(crate) signals: Vec<ConsentSignal>,
    /// Where the message sent identifiers that are not valid values of their type (a phone
    /// that does not parse, an e-mail without a domain): left out, reported to the caller.
    pub(crate) invalid: Vec<(String, IdentifierType)>,
}

/// What the steps after resolution need to know of the message being ingested.
#[derive(Clone, Copy)]
pub(crate) struct Incoming<'a> {
    pub(crate) source: &'a SourceRecord,
    pub(crate) message_id: &'a str,
    pub(crate) at: OffsetDateTime,
    pub(crate) identifiers: &'a MessageIdentifiers,
}

/// An event whose identifier set is new to the graph (or arrives earlier in event order than
/// the evidence that holds it): its evidence has to be resolved.
pub(crate) struct EventToResolve<'a> {
    /// The evidence record to write (its `profile` is set once resolution has placed it).
    pub(crate) evidence: EvidenceRecord,
    /// What resolution sees of it.
    pub(crate) graph_evidence: GraphEvidence,
    /// `None` for a link that is no event (a fuzzy match, `write/fuzzy_link.rs`).
    pub(crate) event: Option<StoredEvent>,
    pub(crate) digest: [u8; 16],
    pub(crate) identifiers: &'a MessageIdentifiers,
    pub(crate) provenance: Provenance,
    pub(crate) order: OrderKey,
    /// What the merge log says when this evidence merges profiles.
    pub(crate) merge_rule: &'static str,
}

/// The merge log's rule for a merge by an event.
pub(crate) const EVENT_MERGE_RULE: &str = "an event carried identifiers of both profiles and the merged profile stays within every type limit";

/// An event as it arrives, with what resolution needs to place it.
pub(crate) struct Arrival<'a> {
    pub(crate) event: StoredEvent,
    pub(crate) digest: [u8; 16],
    pub(crate) identifiers: &'a MessageIdentifiers,
    pub(crate) provenance: Provenance,
    pub(crate) order: OrderKey,
}

impl<'a> EventToResolve<'a> {
    /// The event's evidence over `nodes`. `existing`: the stored evidence of the same
    /// identifier set, when this event comes earlier in event order: it moves earlier, and
    /// identifiers severed from it stay severed.
    pub(crate) fn new(
        nodes: &[GraphNode],
        existing: Option<EvidenceRecord>,
        arrival: Arrival<'a>,
    ) -> Self {
        let Arrival {
            event,
            digest,
            identifiers,
            provenance,
            order,
        } = arrival;
        let id = event.evidence;
        let graph_evidence = GraphEvidence {
            id,
            order,
            nodes: match &existing {
                Some(existing) => existing.graph_evidence().nodes,
                None => nodes.to_vec(),
            },
        };
        let evidence = EvidenceRecord {
            id,
            nodes: graph_evidence
                .nodes
                .iter()
                .map(|n| (n.kind.clone(), n.key))
                .collect(),
            severed: existing.map(|e| e.severed).unwrap_or_default(),
            order,
            first: provenance.clone(),
            // Set once resolution has placed it.
            profile: cdp_core::ProfileId::from_bytes([0; 16]),
            dropped: Vec::new(),
            fuzzy: None,
        };
        Self {
            evidence,
            graph_evidence,
            event: Some(event),
            digest,
            identifiers,
            provenance,
            order,
            merge_rule: EVENT_MERGE_RULE,
        }
    }
}

impl Engine {
    /// The usable identifiers of a message: normalised (blocked, quarantined and invalid ones
    /// left out) and blind-indexed.
    /// Also the fields of identifiers that are not valid values of their type (junk from the
    /// blocked list is left out silently: it is expected, not a mistake of the sender).
    pub(crate) fn normalised_identifiers(
        &self,
        source: &SourceRecord,
        found: Vec<FoundIdentifier>,
    ) -> (MessageIdentifiers, Vec<(String, IdentifierType)>) {
        let mut identifiers = BTreeMap::new();
        let mut invalid = Vec::new();
        for item in found {
            let value = match normalise(
                &item.kind,
                &item.raw,
                source.default_region.as_deref(),
                &self.config.identity,
            ) {
                Ok(value) => value,
                Err(Rejection::Invalid) => {
                    invalid.push((item.field, item.kind));
                    continue;
                }
                Err(Rejection::Blocked) => continue,
            };
            let key = NodeKey(self.vault().blind_index(&item.kind, &value));
            // Quarantined or blocked as junk (`suspects.rs`): it links nobody.
            if self.is_unlinkable(&key) {
                continue;
            }
            identifiers.entry(key).or_insert(MessageIdentifier {
                kind: item.kind,
                value,
                field: item.field,
            });
        }
        (identifiers, invalid)
    }
}

/// The evidence id of a set of identifiers: a digest of their sorted (type, blind index).
/// A message's identifiers as the graph's nodes (the order of their keys).
pub(crate) fn graph_nodes(identifiers: &MessageIdentifiers) -> Vec<GraphNode> {
    identifiers
        .iter()
        .map(|(key, identifier)| GraphNode {
            kind: identifier.kind.clone(),
            key: *key,
        })
        .collect()
}

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
