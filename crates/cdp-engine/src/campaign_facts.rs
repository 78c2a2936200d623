//! Campaign facts: the events campaign results need, indexed by kind and time as they are
//! ingested, so that the results of a send over a million members read the few facts in its
//! window instead of every member's events.
//!
//! A fact is written beside its event, in the same batch, for conversion events (`Order
//! Completed` and the conversion event of any campaign) and for engagement events that name
//! a campaign. Its key is `facts/<tag>/<event time>/<profile id>/<event digest>` in
//! `Keyspace::Exports`; the tag is a keyed digest (a subkey of the master key) of the event
//! name, and for engagement of the name and the campaign, so that the keys say nothing
//! guessable about what a person did. Its value (a conversion's revenue) is sealed with the
//! person's own key: erasure shreds it, and also deletes it.
//!
//! Facts follow their events: a merge re-keys and re-seals the absorbed person's facts under
//! the survivor (`move_facts`), erasure deletes them (`delete_facts`). A split leaves them on
//! the profile they were on (docs/campaigns.md).

use std::collections::BTreeSet;
use std::sync::RwLock;

use cdp_core::ProfileId;
use cdp_store::{Keyspace, Overlay, WriteBatch};
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use crate::records::StoredEvent;
use crate::{Engine, EngineError};

/// The conversion event every store indexes, whatever its campaigns.
pub const ORDER_COMPLETED: &str = "Order Completed";

/// A fact's value.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub(crate) struct CampaignFact {
    /// A conversion's `revenue` (else `total`) property.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) revenue: Option<f64>,
}

/// What the engine needs to write facts: the tag key and the conversion events watched.
pub(crate) struct FactState {
    key: cdp_crypto::PseudonymKey,
    conversions: RwLock<BTreeSet<String>>,
}

impl std::fmt::Debug for FactState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FactState").finish_non_exhaustive()
    }
}

impl FactState {
    pub(crate) fn new(vault: &cdp_store::Vault) -> Result<Self, EngineError> {
        Ok(Self {
            key: vault.pseudonym_key("campaign-facts")?,
            conversions: RwLock::new(BTreeSet::from([ORDER_COMPLETED.to_string()])),
        })
    }

    /// The tag of an event name (conversions) or of a name and a campaign (engagement).
    pub(crate) fn tag(&self, name: &str, campaign: Option<&str>) -> [u8; 8] {
        let token = self
            .key
            .pseudonym_of_value(name, campaign.unwrap_or_default());
        u64::from_str_radix(&token[..16], 16)
            .unwrap_or_default()
            .to_be_bytes()
    }

    /// Also index `event` from now on (a campaign's conversion event).
    pub(crate) fn watch(&self, event: &str) {
        self.conversions
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .insert(event.to_string());
    }

    /// The tags of the facts an event makes, and its fact's value.
    pub(crate) fn facts_of(&self, event: &StoredEvent) -> Vec<([u8; 8], CampaignFact)> {
        let message = &event.message;
        let Some(name) = message.event.as_deref() else {
            return Vec::new();
        };
        let mut out = Vec::new();
        let watched = self
            .conversions
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .contains(name);
        if watched {
            let revenue = ["revenue", "total"].iter().find_map(|p| {
                message
                    .properties
                    .get(*p)
                    .and_then(serde_json::Value::as_f64)
            });
            out.push((self.tag(name, None), CampaignFact { revenue }));
        }
        if crate::engagement::engagement_of(name).is_some()
            && let Some(campaign) = crate::engagement::campaign_of(&message.properties)
        {
            out.push((self.tag(name, Some(campaign)), CampaignFact::default()));
        }
        out
    }
}

/// Micros since the epoch, order-preserving as bytes.
fn time_bytes(at: OffsetDateTime) -> [u8; 8] {
    let micros = i64::try_from(at.unix_timestamp_nanos() / 1_000).unwrap_or(i64::MAX);
    ((micros as u64) ^ (1 << 63)).to_be_bytes()
}

/// `facts/<tag>/`.
pub(crate) fn tag_prefix(tag: &[u8; 8]) -> Vec<u8> {
    let mut key = b"facts/".to_vec();
    key.extend_from_slice(tag);
    key
}

/// The key of a fact.
pub(crate) fn fact_key(
    tag: &[u8; 8],
    at: OffsetDateTime,
    profile: &ProfileId,
    digest: &[u8],
) -> Vec<u8> {
    let mut key = tag_prefix(tag);
    key.extend_from_slice(&time_bytes(at));
    key.extend_from_slice(profile.as_bytes());
    key.extend_from_slice(digest);
    key
}

/// The range of a tag's facts from `from` up to and including `to`.
pub(crate) fn fact_range(
    tag: &[u8; 8],
    from: OffsetDateTime,
    to: OffsetDateTime,
) -> (Vec<u8>, Vec<u8>) {
    let mut start = tag_prefix(tag);
    start.extend_from_slice(&time_bytes(from));
    let mut end = tag_prefix(tag);
    end.extend_from_slice(&time_bytes(to + time::Duration::microseconds(1)));
    (start, end)
}

/// The event time of a fact key.
pub(crate) fn parse_fact_time(key: &[u8]) -> Option<OffsetDateTime> {
    let bytes: [u8; 8] = key.get(14..22)?.try_into().ok()?;
    let micros = (u64::from_be_bytes(bytes) ^ (1 << 63)) as i64;
    OffsetDateTime::from_unix_timestamp_nanos(i128::from(micros) * 1_000).ok()
}

/// The profile id of a fact key.
pub(crate) fn parse_fact_key(key: &[u8]) -> Option<ProfileId> {
    let id: [u8; 16] = key.get(22..38)?.try_into().ok()?;
    Some(ProfileId::from_bytes(id))
}

/// A fact waiting to be sealed with its person's key (`write/apply.rs`).
#[derive(Debug, Clone)]
pub(crate) struct PendingFact {
    pub(crate) tag: [u8; 8],
    pub(crate) at: OffsetDateTime,
    pub(crate) profile: ProfileId,
    pub(crate) digest: Vec<u8>,
    pub(crate) fact: CampaignFact,
}

impl Engine {
    /// The conversion events of the campaigns in the store join the watched ones (at start,
    /// and now and then: campaigns made on other nodes of a shared database).
    pub fn watch_campaign_conversions(&self) -> Result<(), EngineError> {
        for campaign in self.campaigns()? {
            self.facts.watch(&campaign.conversion.event);
        }
        Ok(())
    }

    /// Re-keys and re-seals the facts of events moving from `from` to `to` (a merge).
    pub(crate) fn move_facts(
        &self,
        view: &Overlay<'_>,
        batch: &mut WriteBatch,
        event: &StoredEvent,
        digest: &[u8],
        (from, from_key): (ProfileId, &cdp_crypto::DataKey),
        (to, to_key): (ProfileId, &cdp_crypto::DataKey),
    ) -> Result<(), EngineError> {
        for (tag, _) in self.facts.facts_of(event) {
            let old = fact_key(&tag, event.message.timestamp, &from, digest);
            let Some(sealed) = view.get(Keyspace::Exports, &old)? else {
                continue;
            };
            let fact: CampaignFact =
                self.open_person(from_key, Keyspace::Exports, &old, &sealed)?;
            let new = fact_key(&tag, event.message.timestamp, &to, digest);
            batch.delete(Keyspace::Exports, old);
            let sealed = self.seal_person(to_key, Keyspace::Exports, &new, &fact)?;
            batch.put(Keyspace::Exports, new, sealed);
        }
        Ok(())
    }

    /// Deletes the facts of a person's event (erasure).
    pub(crate) fn delete_facts(
        &self,
        batch: &mut WriteBatch,
        event: &StoredEvent,
        profile: &ProfileId,
        digest: &[u8],
    ) {
        for (tag, _) in self.facts.facts_of(event) {
            batch.delete(
                Keyspace::Exports,
                fact_key(&tag, event.message.timestamp, profile, digest),
            );
        }
    }
}
