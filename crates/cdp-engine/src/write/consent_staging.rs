//! Consent signals that arrive with events (Segment `context.consent.categoryPreferences`,
//! Global Privacy Control), staged into the ledger of the person the event went to.

use cdp_core::segment::Message;
use cdp_policy::{ConsentStatus, PolicySet};
use serde_json::Value;
use time::OffsetDateTime;

use crate::consent::record::{ConsentOrigin, ConsentRecord, consent_key, new_suffix};
use crate::records::hex;
use crate::write::apply::Changes;
use crate::write::graph_store::StoreGraph;
use crate::write::message::{ConsentSignal, Incoming};
use crate::{Engine, EngineError};

/// A yes/no signal as libraries send it: a JSON boolean, or the strings and numbers some send
/// instead (`"true"`, `"1"`, `1`; the GPC header's own value is `1`). Anything else is no
/// signal at all: an unreadable preference must not be taken as either answer.
fn flag(value: &Value) -> Option<bool> {
    match value {
        Value::Bool(flag) => Some(*flag),
        Value::String(text) => match text.trim().to_ascii_lowercase().as_str() {
            "true" | "1" => Some(true),
            "false" | "0" => Some(false),
            _ => None,
        },
        Value::Number(number) => match number.as_u64() {
            Some(1) => Some(true),
            Some(0) => Some(false),
            _ => None,
        },
        _ => None,
    }
}

/// The consent signals of a Segment message.
pub(crate) fn signals_of(policies: &PolicySet, message: &Message) -> Vec<ConsentSignal> {
    let mut signals = Vec::new();
    // Global Privacy Control: an objection to marketing (GDPR Art 21). The server sets
    // `context.gpc` for requests with `Sec-GPC: 1`.
    if message.context.get("gpc").and_then(flag) == Some(true) {
        signals.push(ConsentSignal {
            via: "ingest:gpc",
            purposes: vec![("marketing".into(), ConsentStatus::Denied)],
            evidence: serde_json::json!({ "signal": "Global Privacy Control" }),
        });
    }
    let preferences = message
        .context
        .get("consent")
        .and_then(|consent| consent.get("categoryPreferences"))
        .and_then(Value::as_object);
    if let Some(preferences) = preferences {
        let mut purposes = Vec::new();
        let mut seen = serde_json::Map::new();
        for (category, value) in preferences {
            let Some(granted) = flag(value) else {
                continue;
            };
            let Some(mapped) = policies
                .taxonomy
                .consent_categories
                .iter()
                .find(|(name, _)| name.eq_ignore_ascii_case(category))
            else {
                continue;
            };
            seen.insert(mapped.0.clone(), Value::Bool(granted));
            for purpose in mapped.1 {
                let status = if granted {
                    ConsentStatus::Granted
                } else {
                    ConsentStatus::Denied
                };
                purposes.push((purpose.clone(), status));
            }
        }
        if !purposes.is_empty() {
            signals.push(ConsentSignal {
                via: "ingest:consent_preferences",
                purposes,
                evidence: serde_json::json!({ "categoryPreferences": seen }),
            });
        }
    }
    signals
}

impl Engine {
    /// Records the consent signals of an ingested message in the ledger of the person its event
    /// went to, with the message's strongest identifier (of that person) as origin. A signal
    /// equal to the last one recorded from that origin is skipped.
    pub(crate) fn stage_signals(
        &self,
        graph: &mut StoreGraph<'_>,
        changes: &mut Changes,
        incoming: &Incoming<'_>,
        signals: Vec<ConsentSignal>,
    ) -> Result<(), EngineError> {
        if signals.is_empty() {
            return Ok(());
        }
        let Incoming {
            source,
            message_id,
            at,
            identifiers,
        } = *incoming;
        let Some(owner) = changes
            .events
            .values()
            .find(|(_, event)| {
                event.message.message_id == message_id && event.source_id == source.id
            })
            .map(|(profile, _)| *profile)
        else {
            return Ok(());
        };
        let mut candidates = Vec::new();
        for (key, identifier) in identifiers {
            let profile = match changes.nodes.get(key) {
                Some(node) => node.profile,
                None => graph.node(key)?.and_then(|node| node.profile),
            };
            if profile == Some(owner) {
                let priority = self.config.identity.rule(&identifier.kind).priority;
                candidates.push((priority, *key, identifier.kind.clone()));
            }
        }
        candidates.sort_by_key(|c| (c.0, c.1));
        let Some((_, node, kind)) = candidates.into_iter().next() else {
            // None of the message's identifiers is the person's (merge protection dropped
            // them all): the signal cannot be attributed to anyone's consent.
            return Ok(());
        };
        let origin = ConsentOrigin::Identifier { kind, node };
        let label = origin.label();
        let now = OffsetDateTime::now_utc();
        let (record, _) = changes
            .profiles
            .get_mut(&owner)
            .ok_or_else(|| EngineError::Corrupt(format!("profile {owner} not loaded")))?;
        let mut new_records = Vec::new();
        for signal in signals {
            let mark_key = format!("{label}|{}", signal.via);
            let mark = signal.mark();
            if record.consent_marks.get(&mark_key) == Some(&mark) {
                continue;
            }
            record.consent_marks.insert(mark_key, mark);
            for (purpose, status) in &signal.purposes {
                let suffix = new_suffix(now)?;
                let mut evidence = signal.evidence.clone();
                evidence["message_id"] = Value::String(message_id.to_string());
                new_records.push((
                    consent_key(&owner, &suffix),
                    ConsentRecord {
                        id: format!("c_{}", hex::encode(&suffix)),
                        purpose: purpose.clone(),
                        status: *status,
                        legal_basis: None,
                        notice_version: None,
                        source: source.name.clone(),
                        channel: Some(source.channel),
                        recipient: None,
                        scopes: Vec::new(),
                        categories: Vec::new(),
                        separate: false,
                        guardian: false,
                        evidence,
                        origin: origin.clone(),
                        via: signal.via.into(),
                        at,
                        recorded_at: now,
                        recorded_by: format!("ingest:{}", source.id),
                        detached: false,
                    },
                ));
            }
        }
        for (key, consent) in new_records {
            changes.consents.insert(key, (owner, consent));
        }
        Ok(())
    }
}
