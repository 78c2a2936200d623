//! How an event changes a profile: a new profile, an event recorded in a loaded profile, and
//! the counters, channel activity and traits one event contributes.

use cdp_core::ProfileId;
use cdp_core::segment::MessageType;
use cdp_identity::graph::OrderKey;
use time::OffsetDateTime;

use crate::records::{ChannelSummary, ProfileRecord, StoredEvent, TraitValue, event_key};
use crate::write::apply::Changes;
use crate::write::message::MessageIdentifiers;
use crate::write::survivorship::SurvivorshipRules;
use crate::{Engine, EngineError};

impl Engine {
    pub(crate) fn new_profile(
        &self,
        changes: &mut Changes,
        at: OffsetDateTime,
        order: OrderKey,
    ) -> Result<ProfileId, EngineError> {
        let id = cdp_crypto::random_profile_id()?;
        let key = self.vault().create_person_key(&id, &mut changes.batch)?;
        let record = ProfileRecord::new(id, at, order);
        changes.profiles.insert(id, (record, key));
        Ok(id)
    }

    /// Records an event in a loaded profile: the event itself, counters, channel activity,
    /// identifier last-seen times and, for `identify`, traits.
    pub(crate) fn add_event(
        &self,
        changes: &mut Changes,
        profile: ProfileId,
        event: StoredEvent,
        digest: &[u8; 16],
        identifiers: &MessageIdentifiers,
        order: OrderKey,
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
        for (tag, fact) in self.facts.facts_of(&event) {
            changes.facts.push(crate::campaign_facts::PendingFact {
                tag,
                at: event.message.timestamp,
                profile,
                // As the event's key ends (`records::event_key_suffix`).
                digest: digest[..8].to_vec(),
                fact,
            });
        }
        let key = event_key(&profile, event.message.timestamp, digest);
        changes.events.insert(key, (profile, event));
        Ok(())
    }
}

pub(crate) fn merge_channel(into: &mut ChannelSummary, other: &ChannelSummary) {
    into.first_seen = into.first_seen.min(other.first_seen);
    into.last_seen = into.last_seen.max(other.last_seen);
    into.events += other.events;
}

/// Counters, channel activity and (for `identify`) traits from one event.
pub(crate) fn apply_event_to_profile(
    rules: &SurvivorshipRules,
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
        // `context.cdp` (what the Sensors protocol's profile_set_once, profile_unset and
        // profile_delete become; any client may send it): `setOnce` keeps traits the profile
        // has; `unset` / `unsetAll` remove traits, but only those this source set (a write
        // key is public: it may not erase what a CRM or another channel recorded).
        let directives = event.message.context.get("cdp");
        let flag = |name: &str| {
            directives.and_then(|d| d.get(name)) == Some(&serde_json::Value::Bool(true))
        };
        let set_once = flag("setOnce");
        let ours = |trait_value: &TraitValue| trait_value.source_id == event.source_id;
        if flag("unsetAll") {
            record.traits.retain(|_, value| !ours(value));
        }
        if let Some(serde_json::Value::Array(names)) = directives.and_then(|d| d.get("unset")) {
            for name in names.iter().filter_map(serde_json::Value::as_str) {
                if record.traits.get(name).is_some_and(ours) {
                    record.traits.remove(name);
                }
            }
        }
        for (name, value) in &event.message.traits {
            if set_once && record.traits.contains_key(name) {
                continue;
            }
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
