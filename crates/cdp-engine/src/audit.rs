//! The audit log: every decision about personal data, hash-chained.
//!
//! Entry `n` stores `hash_n = HMAC(audit key, hash_{n-1} || canonical JSON of entry n)`; the
//! audit key is derived from the master key, so someone who can write the store but does not
//! hold the key cannot forge a chain. Entries are keyed by their sequence number and sealed
//! (AES-GCM, bound to that key), and the head (last sequence number and hash) is kept in the
//! meta keyspace. [`Engine::verify_audit`] detects a changed, removed, inserted or reordered
//! entry. Rolling back the head *and* cutting the tail together is invisible to a check of the
//! store alone: anchor the head hash outside (it is in every verify answer).
//!
//! Entries hold no personal data of customers: the person is a pseudonym (HMAC of the profile
//! id under the audit key), so an erased person leaves only that.

use std::sync::Mutex;

use cdp_core::ProfileId;
use cdp_store::{CommitTicket, Keyspace, WriteBatch};
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use crate::records::hex;
use crate::{Engine, EngineError};

const HEAD_KEY: &[u8] = b"audit.head";

/// One audit entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditEntry {
    pub seq: u64,
    #[serde(with = "time::serde::rfc3339")]
    pub at: OffsetDateTime,
    /// Who: the token subject, or `ingest:<source id>` for ingestion.
    pub actor: String,
    /// What: `profile.read`, `consent.record`, `policy.evaluate`...
    pub action: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub purpose: Option<String>,
    /// About whom: a pseudonym of the person (`ps_` + 32 hex), never the profile id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub person: Option<String>,
    /// `allow`, `deny`, or `done` for actions that are not decisions.
    pub decision: String,
    pub policy_version: String,
    /// The rules that spoke (ids, no values).
    #[serde(default)]
    pub rules: Vec<String>,
    /// `hash_{n-1}`, hex.
    pub prev: String,
    /// `hash_n`, hex.
    pub hash: String,
}

/// The purpose (taxonomy) under which the platform links and unlinks people's records:
/// matching runs, the review of its suggestions and of suspect identifiers, splits. Their
/// audit entries carry it, so that the log says why those operations touched personal data.
pub const IDENTITY_PURPOSE: &str = "essential.identity";

/// What a caller wants recorded (the engine numbers and chains it).
#[derive(Debug, Clone)]
pub struct AuditRecord {
    pub actor: String,
    pub action: String,
    pub purpose: Option<String>,
    pub person: Option<ProfileId>,
    pub decision: String,
    pub rules: Vec<String>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct Head {
    seq: u64,
    hash: String,
}

/// The in-memory head, loaded on first use (and again after another node on the same
/// database appended: the generation of the store's write turns it was loaded in); its lock
/// orders appends.
#[derive(Debug, Default)]
pub(crate) struct AuditState {
    head: Mutex<Option<(Head, u64)>>,
}

/// The result of checking the chain.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AuditVerification {
    pub ok: bool,
    pub entries: u64,
    /// The hash of the last entry: anchor it outside the store to detect a rollback.
    pub head_hash: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub problem: Option<AuditProblem>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AuditProblem {
    /// The first sequence number where the chain breaks.
    pub seq: u64,
    /// `changed`, `missing`, `reordered`, `unreadable` or `truncated`.
    pub kind: String,
    pub message: String,
}

fn genesis() -> String {
    hex::encode(&[0u8; 32])
}

fn seq_key(seq: u64) -> [u8; 8] {
    seq.to_be_bytes()
}

/// The bytes the chain MAC covers: the entry without its own hash.
fn chained_bytes(entry: &AuditEntry) -> Result<Vec<u8>, EngineError> {
    let mut unsigned = entry.clone();
    unsigned.hash = String::new();
    serde_json::to_vec(&unsigned).map_err(|_| EngineError::Corrupt("audit entry".into()))
}

impl Engine {
    /// The pseudonym of a person in the audit log.
    pub fn audit_pseudonym(&self, profile: &ProfileId) -> Result<String, EngineError> {
        let key = self.vault().audit_key()?;
        let tag = key.mac(&[b"person\0".as_slice(), profile.as_bytes()].concat());
        Ok(format!("ps_{}", hex::encode(&tag[..16])))
    }

    fn load_head(&self) -> Result<Head, EngineError> {
        Ok(self
            .get_system::<Head>(Keyspace::Meta, HEAD_KEY)?
            .unwrap_or(Head {
                seq: 0,
                hash: genesis(),
            }))
    }

    /// Appends `records` to the chain inside `batch` and commits it: the audit entries and
    /// whatever else the batch holds become durable together. Appends are serialised.
    pub(crate) fn commit_audited(
        &self,
        mut batch: WriteBatch,
        records: &[AuditRecord],
    ) -> Result<CommitTicket, EngineError> {
        // The turn first (nested when the caller holds one): the head read below stays the
        // chain's head until this batch is committed, whichever node appends next.
        let turn = self.store().write_turn()?;
        let mut guard = self
            .audit
            .head
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let mut head = match guard.as_ref() {
            Some((head, generation)) if *generation == turn.generation() => head.clone(),
            _ => self.load_head()?,
        };
        let key = self.vault().audit_key()?;
        let now = OffsetDateTime::now_utc();
        for record in records {
            let mut entry = AuditEntry {
                seq: head.seq + 1,
                at: now,
                actor: record.actor.clone(),
                action: record.action.clone(),
                purpose: record.purpose.clone(),
                person: record
                    .person
                    .as_ref()
                    .map(|p| self.audit_pseudonym(p))
                    .transpose()?,
                decision: record.decision.clone(),
                policy_version: self.policies().version.clone(),
                rules: record.rules.clone(),
                prev: head.hash.clone(),
                hash: String::new(),
            };
            let tag = key.mac(&[head.hash.as_bytes(), &chained_bytes(&entry)?].concat());
            entry.hash = hex::encode(&tag);
            let sealed = self.seal_system(Keyspace::Audit, &seq_key(entry.seq), &entry)?;
            batch.put(Keyspace::Audit, seq_key(entry.seq).to_vec(), sealed);
            head = Head {
                seq: entry.seq,
                hash: entry.hash,
            };
        }
        let sealed_head = self.seal_system(Keyspace::Meta, HEAD_KEY, &head)?;
        batch.put(Keyspace::Meta, HEAD_KEY.to_vec(), sealed_head);
        let ticket = self.store().commit(batch);
        match ticket {
            Ok(ticket) => {
                *guard = Some((head, turn.generation()));
                Ok(ticket)
            }
            Err(error) => {
                // Nothing was written: reload the head from the store next time.
                *guard = None;
                Err(error.into())
            }
        }
    }

    /// Seals `value` with the system key under `key` and commits it with one audit entry.
    pub(crate) fn put_system_audited<T: serde::Serialize>(
        &self,
        keyspace: Keyspace,
        key: Vec<u8>,
        value: &T,
        record: AuditRecord,
    ) -> Result<CommitTicket, EngineError> {
        let mut batch = WriteBatch::default();
        let sealed = self.seal_system(keyspace, &key, value)?;
        batch.put(keyspace, key, sealed);
        self.commit_audited(batch, &[record])
    }

    /// Records `records` on their own.
    pub fn audit(&self, records: &[AuditRecord]) -> Result<CommitTicket, EngineError> {
        self.commit_audited(WriteBatch::default(), records)
    }

    /// The last `limit` entries, oldest first, and the chain's length (from its head: no
    /// walk of the chain).
    pub fn latest_audit_entries(
        &self,
        limit: usize,
    ) -> Result<(Vec<AuditEntry>, u64), EngineError> {
        let head = self.load_head()?;
        let after = head.seq.saturating_sub(limit as u64);
        Ok((self.audit_entries(after, limit)?, head.seq))
    }

    /// Entries after `after`, at most `limit`, oldest first.
    pub fn audit_entries(&self, after: u64, limit: usize) -> Result<Vec<AuditEntry>, EngineError> {
        let mut out = Vec::new();
        for item in self
            .store()
            .scan_from(Keyspace::Audit, &seq_key(after.saturating_add(1)))
        {
            if out.len() >= limit {
                break;
            }
            let (key, sealed) = item?;
            out.push(self.open_system::<AuditEntry>(Keyspace::Audit, &key, &sealed)?);
        }
        Ok(out)
    }

    /// Checks the whole chain.
    // Long by design: one walk of the chain that checks sequence, link, MAC and head in turn
    // and names the first broken entry with the kind of break.
    pub fn verify_audit(&self) -> Result<AuditVerification, EngineError> {
        let key = self.vault().audit_key()?;
        let mut prev = genesis();
        let mut expected = 1u64;
        let fail = |seq: u64, kind: &str, message: String, entries: u64, hash: &str| {
            Ok(AuditVerification {
                ok: false,
                entries,
                head_hash: hash.to_string(),
                problem: Some(AuditProblem {
                    seq,
                    kind: kind.into(),
                    message,
                }),
            })
        };
        for item in self.store().scan_prefix(Keyspace::Audit, &[]) {
            let (stored_key, sealed) = item?;
            let Ok(bytes) = <[u8; 8]>::try_from(stored_key.as_slice()) else {
                return fail(
                    expected,
                    "changed",
                    "an entry has a malformed key".into(),
                    expected - 1,
                    &prev,
                );
            };
            let seq = u64::from_be_bytes(bytes);
            if seq != expected {
                let kind = if seq > expected {
                    "missing"
                } else {
                    "reordered"
                };
                return fail(
                    expected,
                    kind,
                    format!("expected entry {expected}, found {seq}"),
                    expected - 1,
                    &prev,
                );
            }
            let Ok(entry) = self.open_system::<AuditEntry>(Keyspace::Audit, &stored_key, &sealed)
            else {
                return fail(
                    seq,
                    "unreadable",
                    format!("entry {seq} does not decrypt under its key: it was changed or moved"),
                    expected - 1,
                    &prev,
                );
            };
            if entry.seq != seq {
                return fail(
                    seq,
                    "reordered",
                    format!("entry stored at {seq} says it is {}", entry.seq),
                    expected - 1,
                    &prev,
                );
            }
            if entry.prev != prev {
                return fail(
                    seq,
                    "reordered",
                    format!("entry {seq} does not follow entry {}", seq - 1),
                    expected - 1,
                    &prev,
                );
            }
            let tag = key.mac(&[prev.as_bytes(), &chained_bytes(&entry)?].concat());
            if hex::encode(&tag) != entry.hash {
                return fail(
                    seq,
                    "changed",
                    format!("entry {seq} does not match its hash"),
                    expected - 1,
                    &prev,
                );
            }
            prev = entry.hash;
            expected += 1;
        }
        let entries = expected - 1;
        let head = self.load_head()?;
        if head.seq != entries || head.hash != prev {
            return fail(
                entries + 1,
                "truncated",
                format!(
                    "the head says {} entries, the log holds {entries}",
                    head.seq
                ),
                entries,
                &prev,
            );
        }
        Ok(AuditVerification {
            ok: true,
            entries,
            head_hash: prev,
            problem: None,
        })
    }
}
