//! Automatic junk detection (issue 17 item 8): identifiers that keep linking different people.
//!
//! A junk value that escapes the blocked list (a shop's checkout e-mail typed for every walk-in
//! customer, a placeholder user id of a broken SDK integration) shows itself the same way:
//! merge protection keeps refusing to link it, each time to another identifier. Every such
//! refusal is a *conflict* between the identifier it dropped and the event's anchor, noted
//! for both. An identifier whose conflicts involve more than `junk_threshold` distinct other
//! identifiers (`[identity] junk_threshold`, 8) is **quarantined**: from then on it links
//! nobody, as a blocked value would, until an administrator looks at it
//! (`GET /v1/identity/suspects`) and **blocks** it for good (it is also split off the
//! profile it joined, so the people it wrongly joined come apart) or **releases** it (it links
//! again and is never quarantined automatically again).
//!
//! Records live in `Keyspace::Suspects` (blind index -> record sealed with the system key;
//! the value is needed to judge it). Conflicts are noted after the ingest request committed,
//! in a batch of their own: they are statistics, and a lost one only delays a quarantine.

use std::collections::HashSet;
use std::sync::{Mutex, RwLock};

use cdp_core::{IdentifierType, ProfileId};
use cdp_store::{Keyspace, WriteBatch};
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use crate::audit::AuditRecord;
use crate::read::access::Access;
use crate::records::{NodeKey, NodeRecord, hex};
use crate::write::apply::Conflict;
use crate::write::split::SplitRequest;
use crate::{Engine, EngineError};

/// Where a suspect stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SuspectStatus {
    /// Conflicted, not (yet) past the threshold: it links as usual.
    Watching,
    /// Past the threshold: links nobody until an administrator decides.
    Quarantined,
    /// Confirmed junk: links nobody, for good.
    Blocked,
    /// Confirmed genuine: links as usual, never quarantined automatically again.
    Released,
}

impl SuspectStatus {
    fn links(self) -> bool {
        matches!(self, Self::Watching | Self::Released)
    }

    pub fn name(self) -> &'static str {
        match self {
            Self::Watching => "watching",
            Self::Quarantined => "quarantined",
            Self::Blocked => "blocked",
            Self::Released => "released",
        }
    }
}

impl std::str::FromStr for SuspectStatus {
    type Err = EngineError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        match text {
            "watching" => Ok(Self::Watching),
            "quarantined" => Ok(Self::Quarantined),
            "blocked" => Ok(Self::Blocked),
            "released" => Ok(Self::Released),
            other => Err(EngineError::InvalidRequest(format!(
                "status {} is not one of watching, quarantined, blocked, released",
                other.chars().take(32).collect::<String>()
            ))),
        }
    }
}

/// One suspect (`Keyspace::Suspects`, key = its blind index).
#[derive(Debug, Clone, Serialize, Deserialize)]
struct SuspectRecord {
    kind: IdentifierType,
    value: String,
    status: SuspectStatus,
    /// The first 8 bytes of the blind index of each distinct identifier it conflicted with
    /// (at most threshold + 1 kept: enough to decide).
    counterparts: Vec<[u8; 8]>,
    conflicts: u64,
    #[serde(with = "time::serde::rfc3339")]
    first_seen: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    last_seen: OffsetDateTime,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    decided_by: Option<String>,
}

/// A suspect as `GET /v1/identity/suspects` shows it.
#[derive(Debug, Clone, Serialize)]
pub struct SuspectView {
    /// The blind index, hex: the suspect's id in the API.
    pub id: String,
    #[serde(rename = "type")]
    pub kind: IdentifierType,
    pub value: String,
    pub status: SuspectStatus,
    /// Distinct identifiers merge protection kept it from linking.
    pub distinct_conflicts: usize,
    /// Arriving events in which it was kept from linking (a refusal that a late event moved
    /// to another evidence when it re-resolved the component counts among the distinct
    /// conflicts, not here).
    pub conflicts: u64,
    /// The profile that holds it, if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub profile: Option<ProfileId>,
    #[serde(with = "time::serde::rfc3339")]
    pub first_seen: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    pub last_seen: OffsetDateTime,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub decided_by: Option<String>,
}

/// What an administrator decides about a suspect.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SuspectDecision {
    Block,
    Release,
}

/// The engine's view of suspects: which identifiers must not link.
#[derive(Debug, Default)]
pub(crate) struct SuspectState {
    /// Quarantined and blocked identifiers.
    unlinkable: RwLock<HashSet<NodeKey>>,
    /// Serialises changes to suspect records.
    updates: Mutex<()>,
}

fn node_of(id: &str) -> Result<NodeKey, EngineError> {
    hex::decode::<32>(id)
        .map(|bytes| NodeKey(cdp_crypto::BlindIndex::from_bytes(bytes)))
        .ok_or_else(|| EngineError::InvalidRequest("a suspect id is 64 hex digits".into()))
}

impl Engine {
    /// Reads which identifiers are quarantined or blocked (at open).
    pub(crate) fn load_suspects(&self) -> Result<(), EngineError> {
        let mut unlinkable = HashSet::new();
        for item in self.store().scan_prefix(Keyspace::Suspects, &[]) {
            let (key, sealed) = item?;
            let record: SuspectRecord = self.open_system(Keyspace::Suspects, &key, &sealed)?;
            if !record.status.links()
                && let Ok(bytes) = <[u8; 32]>::try_from(key.as_slice())
            {
                unlinkable.insert(NodeKey(cdp_crypto::BlindIndex::from_bytes(bytes)));
            }
        }
        *self
            .suspects
            .unlinkable
            .write()
            .unwrap_or_else(|p| p.into_inner()) = unlinkable;
        Ok(())
    }

    /// Whether an identifier is quarantined or blocked (it links nobody).
    pub(crate) fn is_unlinkable(&self, node: &NodeKey) -> bool {
        let unlinkable = self
            .suspects
            .unlinkable
            .read()
            .unwrap_or_else(|p| p.into_inner());
        !unlinkable.is_empty() && unlinkable.contains(node)
    }

    pub(crate) fn set_unlinkable(&self, node: NodeKey, unlinkable: bool) {
        let mut set = self
            .suspects
            .unlinkable
            .write()
            .unwrap_or_else(|p| p.into_inner());
        if unlinkable {
            set.insert(node);
        } else {
            set.remove(&node);
        }
    }

    /// Notes the conflicts of a committed ingest request; quarantines what passed the
    /// threshold (audited, logged without the value).
    pub(crate) fn note_conflicts(&self, conflicts: Vec<Conflict>) -> Result<(), EngineError> {
        if conflicts.is_empty() {
            return Ok(());
        }
        // The turn before the lock (the engine's lock order): the records read below stay
        // as read until this node commits, whichever node writes next.
        let _turn = self.store().write_turn()?;
        let _updates = self
            .suspects
            .updates
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        let threshold = self.config.identity.junk_threshold();
        let now = OffsetDateTime::now_utc();
        let mut records: std::collections::BTreeMap<NodeKey, SuspectRecord> = Default::default();
        for conflict in conflicts {
            let record = match records.entry(conflict.node) {
                std::collections::btree_map::Entry::Occupied(entry) => entry.into_mut(),
                std::collections::btree_map::Entry::Vacant(entry) => {
                    let stored = self.get_system::<SuspectRecord>(
                        Keyspace::Suspects,
                        conflict.node.0.as_bytes(),
                    )?;
                    entry.insert(stored.unwrap_or(SuspectRecord {
                        kind: conflict.kind.clone(),
                        value: conflict.value.clone(),
                        status: SuspectStatus::Watching,
                        counterparts: Vec::new(),
                        conflicts: 0,
                        first_seen: now,
                        last_seen: now,
                        decided_by: None,
                    }))
                }
            };
            if conflict.this_event {
                record.conflicts += 1;
            }
            record.last_seen = now;
            let mut counterpart = [0u8; 8];
            counterpart.copy_from_slice(&conflict.counterpart.0.as_bytes()[..8]);
            if record.counterparts.len() <= threshold && !record.counterparts.contains(&counterpart)
            {
                record.counterparts.push(counterpart);
            }
        }
        let mut batch = WriteBatch::default();
        let mut audit = Vec::new();
        for (node, record) in &mut records {
            if record.status == SuspectStatus::Watching && record.counterparts.len() > threshold {
                record.status = SuspectStatus::Quarantined;
                let id = hex::encode(node.0.as_bytes());
                tracing::warn!(suspect = %id, kind = %record.kind, distinct = record.counterparts.len(), "identifier quarantined as junk: it kept linking different people (GET /v1/identity/suspects)");
                audit.push(AuditRecord {
                    actor: "junk-detection".into(),
                    action: "identity.quarantined".into(),
                    purpose: Some(crate::audit::IDENTITY_PURPOSE.into()),
                    person: None,
                    decision: "done".into(),
                    rules: vec![record.kind.to_string(), id],
                });
            }
            let key = node.0.as_bytes();
            batch.put(
                Keyspace::Suspects,
                key.to_vec(),
                self.seal_system(Keyspace::Suspects, key, record)?,
            );
        }
        if audit.is_empty() {
            // Counts only: durable with the next flush, nobody waits on them.
            let _pending = self.store().commit(batch)?;
        } else {
            self.commit_audited(batch, &audit)?.wait_durable()?;
        }
        for (node, record) in &records {
            if !record.status.links() {
                self.set_unlinkable(*node, true);
            }
        }
        Ok(())
    }

    /// `GET /v1/identity/suspects`: the suspects in `status` (default: quarantined), most
    /// conflicted first. Shows identifier values: audited.
    pub fn suspects(
        &self,
        status: Option<SuspectStatus>,
        access: &Access,
    ) -> Result<Vec<SuspectView>, EngineError> {
        let status = status.unwrap_or(SuspectStatus::Quarantined);
        let mut out = Vec::new();
        for item in self.store().scan_prefix(Keyspace::Suspects, &[]) {
            let (key, sealed) = item?;
            let record: SuspectRecord = self.open_system(Keyspace::Suspects, &key, &sealed)?;
            if record.status == status {
                out.push(self.suspect_view(&key, record)?);
            }
        }
        out.sort_by(|a, b| {
            (b.distinct_conflicts, b.conflicts).cmp(&(a.distinct_conflicts, a.conflicts))
        });
        self.audit(&[AuditRecord {
            actor: access.actor.clone(),
            action: "identity.suspects".into(),
            purpose: Some(crate::audit::IDENTITY_PURPOSE.into()),
            person: None,
            decision: "done".into(),
            rules: vec![
                format!("status={}", status.name()),
                format!("listed={}", out.len()),
            ],
        }])?
        .wait_durable()?;
        Ok(out)
    }

    fn suspect_view(&self, key: &[u8], record: SuspectRecord) -> Result<SuspectView, EngineError> {
        let profile = self
            .get_system::<NodeRecord>(Keyspace::Identifiers, key)?
            .and_then(|node| node.profile);
        Ok(SuspectView {
            id: hex::encode(key),
            kind: record.kind,
            value: record.value,
            status: record.status,
            distinct_conflicts: record.counterparts.len(),
            conflicts: record.conflicts,
            profile,
            first_seen: record.first_seen,
            last_seen: record.last_seen,
            decided_by: record.decided_by,
        })
    }

    /// `POST /v1/identity/suspects/{id}`: blocks a suspect for good (and splits it off the
    /// profile that holds it) or releases it.
    pub fn decide_suspect(
        &self,
        id: &str,
        decision: SuspectDecision,
        access: &Access,
    ) -> Result<SuspectView, EngineError> {
        let node = node_of(id)?;
        let turn = self.store().write_turn()?;
        let updates = self
            .suspects
            .updates
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        let key = node.0.as_bytes();
        let mut record: SuspectRecord = self
            .get_system(Keyspace::Suspects, key)?
            .ok_or_else(|| EngineError::NotFound(format!("suspect {id}")))?;
        record.status = match decision {
            SuspectDecision::Block => SuspectStatus::Blocked,
            SuspectDecision::Release => SuspectStatus::Released,
        };
        record.decided_by = Some(access.actor.clone());
        let mut batch = WriteBatch::default();
        batch.put(
            Keyspace::Suspects,
            key.to_vec(),
            self.seal_system(Keyspace::Suspects, key, &record)?,
        );
        self.commit_audited(
            batch,
            &[AuditRecord {
                actor: access.actor.clone(),
                action: match decision {
                    SuspectDecision::Block => "identity.suspect_blocked",
                    SuspectDecision::Release => "identity.suspect_released",
                }
                .into(),
                purpose: Some(crate::audit::IDENTITY_PURPOSE.into()),
                person: None,
                decision: "done".into(),
                rules: vec![record.kind.to_string(), id.to_string()],
            }],
        )?
        .wait_durable()?;
        self.set_unlinkable(node, !record.status.links());
        drop(updates);
        // Before the split below takes the write lock (which comes before a turn).
        drop(turn);
        if decision == SuspectDecision::Block
            && let Some(profile) = self
                .get_system::<NodeRecord>(Keyspace::Identifiers, key)?
                .and_then(|node| node.profile)
        {
            // The people it joined come apart: it is severed from every evidence that linked
            // it, and the component is resolved again without it.
            let request = SplitRequest::Identifier {
                kind: record.kind.clone(),
                value: record.value.clone(),
            };
            match self.split_audited(profile, &request, &access.actor) {
                Ok((_, ticket)) => {
                    if let Some(ticket) = ticket {
                        ticket.wait_durable()?;
                    }
                }
                // Nothing to sever (it was the profile's only identifier).
                Err(EngineError::InvalidRequest(_) | EngineError::Conflict(_)) => {}
                Err(error) => return Err(error),
            }
        }
        self.suspect_view(key, record)
    }

    /// Erasure: the suspect records of the person's identifiers go with them (a blocked one is
    /// junk, not theirs, and stays blocked). Answers the nodes to make linkable again once the
    /// batch committed.
    pub(crate) fn stage_suspect_erasure(
        &self,
        nodes: &std::collections::BTreeSet<NodeKey>,
        batch: &mut WriteBatch,
    ) -> Result<Vec<NodeKey>, EngineError> {
        let mut released = Vec::new();
        for node in nodes {
            let key = node.0.as_bytes();
            if let Some(record) = self.get_system::<SuspectRecord>(Keyspace::Suspects, key)?
                && record.status != SuspectStatus::Blocked
            {
                batch.delete(Keyspace::Suspects, key.to_vec());
                released.push(*node);
            }
        }
        Ok(released)
    }
}
