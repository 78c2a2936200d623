//! Contact ledgers as stored: what a person was sent, at every channel
//! (`contacts/<profile id>/<channel>/self|<absorbed id>` in `Keyspace::Exports`, sealed with the
//! person's key), and how they follow the person through merges, splits and erasure. The caps
//! and quiet hours that read them are `contact.rs`.

use cdp_core::ProfileId;
use cdp_store::{Keyspace, WriteBatch};
use serde::{Deserialize, Serialize};

use crate::{Engine, EngineError};

/// One contact of a person.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct ContactEntry {
    /// Unix seconds.
    pub(crate) at: i64,
    pub(crate) campaign: String,
    pub(crate) export: String,
}

/// A person's contacts at one channel (sealed with their key).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub(crate) struct ContactLedger {
    pub(crate) entries: Vec<ContactEntry>,
}

/// `contacts/<profile id>/`: the prefix of a person's ledgers at every channel (ids are 16
/// bytes: one person's prefix is never another's).
pub(crate) fn person_ledgers_prefix(id: &ProfileId) -> Vec<u8> {
    let mut key = b"contacts/".to_vec();
    key.extend_from_slice(id.as_bytes());
    key.push(b'/');
    key
}

/// Where a ledger of `from` (`suffix`: its key after `contacts/<from>/`) lives once it is
/// `to`'s: `<channel>/self` becomes `<channel>/<from's id>`; an absorbed ledger keeps its id.
fn rekeyed_ledger(from: &ProfileId, to: &ProfileId, suffix: &[u8]) -> Vec<u8> {
    let mut key = person_ledgers_prefix(to);
    match suffix.strip_suffix(b"/self") {
        Some(channel) if from != to => {
            key.extend_from_slice(channel);
            key.push(b'/');
            key.extend_from_slice(crate::records::hex::encode(from.as_bytes()).as_bytes());
        }
        _ => key.extend_from_slice(suffix),
    }
    key
}

/// Moves `from`'s contact ledgers beside `to`'s (a merge), re-sealed under `to`'s key.
pub(crate) fn move_ledgers(
    engine: &Engine,
    view: &cdp_store::Overlay<'_>,
    batch: &mut WriteBatch,
    (from, from_key): (ProfileId, &cdp_crypto::DataKey),
    (to, to_key): (ProfileId, &cdp_crypto::DataKey),
) -> Result<(), EngineError> {
    for (key, suffix, ledger) in read_ledgers(engine, view, &from, from_key)? {
        let new_key = rekeyed_ledger(&from, &to, &suffix);
        batch.delete(Keyspace::Exports, key);
        batch.put(
            Keyspace::Exports,
            new_key.clone(),
            engine.seal_person(to_key, Keyspace::Exports, &new_key, &ledger)?,
        );
    }
    Ok(())
}

/// A contact ledger as stored: (its key, the key's suffix after `contacts/<id>/`, the ledger).
pub(crate) type StoredLedger = (Vec<u8>, Vec<u8>, ContactLedger);

/// A person's contact ledgers.
pub(crate) fn read_ledgers(
    engine: &Engine,
    view: &cdp_store::Overlay<'_>,
    id: &ProfileId,
    key: &cdp_crypto::DataKey,
) -> Result<Vec<StoredLedger>, EngineError> {
    let prefix = person_ledgers_prefix(id);
    let mut out = Vec::new();
    for (stored, sealed) in view.scan_prefix(Keyspace::Exports, &prefix)? {
        let ledger: ContactLedger = engine.open_person(key, Keyspace::Exports, &stored, &sealed)?;
        let suffix = stored[prefix.len()..].to_vec();
        out.push((stored, suffix, ledger));
    }
    Ok(out)
}

/// The contact ledgers of a recomputed component (a split, or evidence that re-resolved
/// several profiles) given to its new profiles. Which of the old person's contacts reached
/// which of the new people is unknown (a message went to the merged person), so every new
/// profile gets every old profile's ledgers: caps then count a contact against everyone it may
/// have reached, the careful side (a split never frees anyone from a cap). Old ledgers not
/// rewritten under the same key are deleted.
pub(crate) fn redistribute_ledgers(
    engine: &Engine,
    batch: &mut WriteBatch,
    old: Vec<(ProfileId, Vec<u8>, Vec<u8>, ContactLedger)>,
    new: &[(ProfileId, &cdp_crypto::DataKey)],
) -> Result<(), EngineError> {
    let mut written = std::collections::BTreeSet::new();
    for (to, to_key) in new {
        for (from, _, suffix, ledger) in &old {
            let new_key = rekeyed_ledger(from, to, suffix);
            batch.put(
                Keyspace::Exports,
                new_key.clone(),
                engine.seal_person(to_key, Keyspace::Exports, &new_key, ledger)?,
            );
            written.insert(new_key);
        }
    }
    for (_, stored, _, _) in old {
        if !written.contains(&stored) {
            batch.delete(Keyspace::Exports, stored);
        }
    }
    Ok(())
}

/// Deletes a person's contact ledgers (erasure; their key is destroyed too).
pub(crate) fn delete_ledgers(
    engine: &Engine,
    id: &ProfileId,
    batch: &mut WriteBatch,
) -> Result<u64, EngineError> {
    let mut n = 0;
    for item in engine
        .store()
        .scan_prefix(Keyspace::Exports, &person_ledgers_prefix(id))
    {
        let (key, _) = item?;
        batch.delete(Keyspace::Exports, key);
        n += 1;
    }
    Ok(n)
}

/// A person's contacts at every channel (for attribution), newest last.
pub(crate) fn contacts_of(
    engine: &Engine,
    key: &cdp_crypto::DataKey,
    id: &ProfileId,
) -> Result<Vec<ContactEntry>, EngineError> {
    let mut out = Vec::new();
    for item in engine
        .store()
        .scan_prefix(Keyspace::Exports, &person_ledgers_prefix(id))
    {
        let (ledger_key, sealed) = item?;
        let ledger: ContactLedger =
            engine.open_person(key, Keyspace::Exports, &ledger_key, &sealed)?;
        out.extend(ledger.entries);
    }
    out.sort_by_key(|e| e.at);
    Ok(out)
}

/// `split-heirs/<profile id>`: the profiles a profile born of a split (or of a recomputed
/// component) took its identifiers from. A send recorded its members by profile id; the
/// results read these to measure both sides of a member who was split after the send, in the
/// member's arm, holdout and treated alike (a contact ledger would say it only of the treated).
/// System-sealed: pseudonymous ids, no values.
pub(crate) fn split_heir_key(id: &ProfileId) -> Vec<u8> {
    let mut key = SPLIT_HEIRS.to_vec();
    key.extend_from_slice(id.as_bytes());
    key
}

const SPLIT_HEIRS: &[u8] = b"split-heirs/";

/// A profile born of a split: when (Unix seconds), and whose identifiers it took.
pub(crate) struct SplitHeir {
    pub(crate) at: i64,
    pub(crate) parents: Vec<ProfileId>,
}

/// Records that `heir` (a new profile) took identifiers from each of `parents`, now.
pub(crate) fn note_split_heir(
    engine: &Engine,
    batch: &mut WriteBatch,
    heir: &ProfileId,
    parents: &[ProfileId],
) -> Result<(), EngineError> {
    let key = split_heir_key(heir);
    let ids: Vec<[u8; 16]> = parents.iter().map(|p| *p.as_bytes()).collect();
    let at = time::OffsetDateTime::now_utc().unix_timestamp();
    batch.put(
        Keyspace::Exports,
        key.clone(),
        engine.seal_system(Keyspace::Exports, &key, &(at, ids))?,
    );
    Ok(())
}

/// Every profile born of a split (few: splits are rare).
fn split_heirs(
    engine: &Engine,
) -> Result<std::collections::HashMap<ProfileId, SplitHeir>, EngineError> {
    let mut out = std::collections::HashMap::new();
    for item in engine.store().scan_prefix(Keyspace::Exports, SPLIT_HEIRS) {
        let (key, sealed) = item?;
        let heir: [u8; 16] = key[SPLIT_HEIRS.len()..]
            .try_into()
            .map_err(|_| EngineError::Corrupt("split heir key".into()))?;
        let (at, parents): (i64, Vec<[u8; 16]>) =
            engine.open_system(Keyspace::Exports, &key, &sealed)?;
        out.insert(
            ProfileId::from_bytes(heir),
            SplitHeir {
                at,
                parents: parents.into_iter().map(ProfileId::from_bytes).collect(),
            },
        );
    }
    Ok(out)
}

/// Campaign results: each profile born of a split after the send (`since`, Unix seconds) that
/// is not a member itself is measured as the member it came from (through a split of a
/// split too), added to `measured_as` (profile -> member index; `members` ascending).
pub(crate) fn measure_heirs_as_members(
    engine: &Engine,
    members: &[ProfileId],
    measured_as: &mut std::collections::HashMap<ProfileId, usize>,
    since: i64,
) -> Result<(), EngineError> {
    let heirs = split_heirs(engine)?;
    for (heir, born) in &heirs {
        if born.at < since || members.binary_search(heir).is_ok() || measured_as.contains_key(heir)
        {
            continue;
        }
        let mut generation = born.parents.clone();
        for _ in 0..8 {
            let found = generation
                .iter()
                .filter_map(|p| {
                    members
                        .binary_search(p)
                        .ok()
                        .or_else(|| measured_as.get(p).copied())
                })
                .min();
            if let Some(n) = found {
                measured_as.insert(*heir, n);
                break;
            }
            generation = generation
                .iter()
                .filter_map(|p| heirs.get(p))
                .filter(|older| older.at >= since)
                .flat_map(|older| older.parents.iter().copied())
                .collect();
            if generation.is_empty() {
                break;
            }
        }
    }
    Ok(())
}
