//! Contact ledgers as stored: what a person was sent, at every channel, one record per
//! contact (`contacts/<profile id>/<channel>/@<time><8 random bytes>` in `Keyspace::Exports`,
//! the entry sealed with the person's key), and how they follow the person through merges,
//! splits and erasure. The caps and quiet hours that read them are `contact.rs`.
//!
//! Why one record per contact: the time is in the key, so a send counts a member's recent
//! contacts by walking keys, without opening or decoding anything, and records a contact by
//! writing one small record instead of re-sealing a ledger that grows with every send (at 1M
//! members that read-modify-write was 1.5 s of deciding and 0.7 s of committing a send).
//! Stores written before this layout (December 6, 2026) hold one ledger record per person
//! and channel (`<channel>/self`, and `<channel>/<absorbed id in hex>` after a merge): still
//! read, and deleted once every entry in them is older than the longest window.
//!
//! What a key shows to someone reading the raw store: that a random profile id was contacted
//! at a channel at an instant. The campaign, the export and everything about the person stay
//! sealed, and erasure deletes the records with the person's key.

use cdp_core::ProfileId;
use cdp_store::{Keyspace, WriteBatch};
use serde::{Deserialize, Serialize};

use crate::{Engine, EngineError};

/// One contact of a person (the sealed value of a contact record; the entries of a ledger of
/// earlier stores).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct ContactEntry {
    /// Unix seconds.
    pub(crate) at: i64,
    /// Unix microseconds (contact records; ledgers of earlier stores have none): contacts of
    /// one second still come in the order of their sends, which first and last touch need.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) at_us: Option<i64>,
    pub(crate) campaign: String,
    pub(crate) export: String,
}

impl ContactEntry {
    /// Where the contact falls among a person's contacts (microseconds).
    pub(crate) fn order(&self) -> i64 {
        self.at_us
            .unwrap_or_else(|| self.at.saturating_mul(1_000_000))
    }
}

/// A person's contacts at one channel as stores before this layout kept them: one record.
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

/// The first byte of a contact record's part after `<channel>/` (a ledger of earlier stores
/// has `self` or hex digits there).
const CONTACT_MARK: u8 = b'@';

/// The key of one contact: `<prefix><channel>/@<time: 8 bytes, microseconds,
/// order-preserving><8 bytes unique in the send>` (`prefix`: [`person_ledgers_prefix`]
/// followed by the channel and `/`). The unique part keeps apart contacts of one instant: two
/// profiles contacted by one send and merged since (a send numbers its contacts from a random
/// start: `contact::ContactGate`).
pub(crate) fn contact_key(channel_prefix: &[u8], at_us: i64, unique: u64) -> Vec<u8> {
    let mut key = Vec::with_capacity(channel_prefix.len() + 17);
    key.extend_from_slice(channel_prefix);
    key.push(CONTACT_MARK);
    key.extend_from_slice(&((at_us as u64) ^ (1 << 63)).to_be_bytes());
    key.extend_from_slice(&unique.to_be_bytes());
    key
}

/// When a contact record's contact was, in Unix microseconds (`after_channel`: its key after
/// `<channel>/`); `None` for a ledger of earlier stores.
pub(crate) fn contact_micros(after_channel: &[u8]) -> Option<i64> {
    match after_channel {
        [CONTACT_MARK, rest @ ..] if rest.len() == 16 => {
            let bytes: [u8; 8] = rest[..8].try_into().ok()?;
            Some((u64::from_be_bytes(bytes) ^ (1 << 63)) as i64)
        }
        _ => None,
    }
}

/// Whether a record (`suffix`: its key after `contacts/<id>/`) is one contact, not a ledger
/// of earlier stores.
fn is_contact_record(suffix: &[u8]) -> bool {
    suffix
        .iter()
        .position(|b| *b == b'/')
        .is_some_and(|slash| contact_micros(&suffix[slash + 1..]).is_some())
}

/// Where a record of `from` (`suffix`: its key after `contacts/<from>/`) lives once it is
/// `to`'s: a contact record keeps its suffix (its random part keeps it apart from `to`'s
/// own); an earlier store's `<channel>/self` becomes `<channel>/<from's id>`, and an absorbed
/// ledger keeps its id.
fn rekeyed_ledger(from: &ProfileId, to: &ProfileId, suffix: &[u8]) -> Vec<u8> {
    let mut key = person_ledgers_prefix(to);
    match suffix.strip_suffix(b"/self") {
        Some(channel) if from != to && !is_contact_record(suffix) => {
            key.extend_from_slice(channel);
            key.push(b'/');
            key.extend_from_slice(crate::records::hex::encode(from.as_bytes()).as_bytes());
        }
        _ => key.extend_from_slice(suffix),
    }
    key
}

/// Moves `from`'s contact records beside `to`'s (a merge), re-sealed under `to`'s key.
pub(crate) fn move_ledgers(
    engine: &Engine,
    view: &cdp_store::Overlay<'_>,
    batch: &mut WriteBatch,
    (from, from_key): (ProfileId, &cdp_crypto::DataKey),
    (to, to_key): (ProfileId, &cdp_crypto::DataKey),
) -> Result<(), EngineError> {
    for (key, suffix, plain) in read_ledgers(engine, view, &from, from_key)? {
        let new_key = rekeyed_ledger(&from, &to, &suffix);
        batch.delete(Keyspace::Exports, key);
        let sealed = engine
            .vault()
            .seal_person(to_key, Keyspace::Exports, &new_key, &plain)?;
        batch.put(Keyspace::Exports, new_key, sealed);
    }
    Ok(())
}

/// A contact record as stored: (its key, the key's suffix after `contacts/<id>/`, its value
/// opened but not decoded: moving it re-seals the same bytes).
pub(crate) type StoredLedger = (Vec<u8>, Vec<u8>, Vec<u8>);

/// A person's contact records (and ledgers of earlier stores).
pub(crate) fn read_ledgers(
    engine: &Engine,
    view: &cdp_store::Overlay<'_>,
    id: &ProfileId,
    key: &cdp_crypto::DataKey,
) -> Result<Vec<StoredLedger>, EngineError> {
    let prefix = person_ledgers_prefix(id);
    let mut out = Vec::new();
    for (stored, sealed) in view.scan_prefix(Keyspace::Exports, &prefix)? {
        let plain = engine
            .vault()
            .open_person(key, Keyspace::Exports, &stored, &sealed)?;
        let suffix = stored[prefix.len()..].to_vec();
        out.push((stored, suffix, plain));
    }
    Ok(out)
}

/// The contact records of a recomputed component (a split, or evidence that re-resolved
/// several profiles) given to its new profiles. Which of the old person's contacts reached
/// which of the new people is unknown (a message went to the merged person), so every new
/// profile gets every old profile's records: caps then count a contact against everyone it
/// may have reached, the careful side (a split never frees anyone from a cap). Old records not
/// rewritten under the same key are deleted.
pub(crate) fn redistribute_ledgers(
    engine: &Engine,
    batch: &mut WriteBatch,
    old: Vec<(ProfileId, StoredLedger)>,
    new: &[(ProfileId, &cdp_crypto::DataKey)],
) -> Result<(), EngineError> {
    let mut written = std::collections::BTreeSet::new();
    for (to, to_key) in new {
        for (from, (_, suffix, plain)) in &old {
            let new_key = rekeyed_ledger(from, to, suffix);
            let sealed = engine
                .vault()
                .seal_person(to_key, Keyspace::Exports, &new_key, plain)?;
            batch.put(Keyspace::Exports, new_key.clone(), sealed);
            written.insert(new_key);
        }
    }
    for (_, (stored, _, _)) in old {
        if !written.contains(&stored) {
            batch.delete(Keyspace::Exports, stored);
        }
    }
    Ok(())
}

/// Deletes a person's contact records (erasure; their key is destroyed too).
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

/// A person's contacts at every channel (for attribution), in the order they were made.
pub(crate) fn contacts_of(
    engine: &Engine,
    key: &cdp_crypto::DataKey,
    id: &ProfileId,
) -> Result<Vec<ContactEntry>, EngineError> {
    let prefix = person_ledgers_prefix(id);
    let mut out = Vec::new();
    for item in engine.store().scan_prefix(Keyspace::Exports, &prefix) {
        let (stored, sealed) = item?;
        if is_contact_record(&stored[prefix.len()..]) {
            out.push(engine.open_person(key, Keyspace::Exports, &stored, &sealed)?);
        } else {
            let ledger: ContactLedger =
                engine.open_person(key, Keyspace::Exports, &stored, &sealed)?;
            out.extend(ledger.entries);
        }
    }
    // Stable: a ledger's entries of one second keep their order.
    out.sort_by_key(ContactEntry::order);
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::contact::{CampaignChannel, CampaignContact, ContactGate, ContactRules, HeldBack};

    fn or_panic<T, E: std::fmt::Display>(result: Result<T, E>) -> T {
        result.unwrap_or_else(|e| panic!("{e}"))
    }

    fn engine(dir: &std::path::Path) -> Engine {
        or_panic(Engine::open(
            crate::EngineConfig::new(
                dir,
                std::sync::Arc::new(or_panic(cdp_crypto::Keyring::generate())),
                std::sync::Arc::new(or_panic(cdp_policy::PolicySet::builtin())),
            )
            .with_index(crate::IndexMode::InMemory),
        ))
    }

    fn commit(engine: &Engine, writes: Vec<crate::contact::ContactWrite>) {
        let mut batch = WriteBatch::default();
        for (key, sealed) in writes {
            match sealed {
                Some(sealed) => batch.put(Keyspace::Exports, key, sealed),
                None => batch.delete(Keyspace::Exports, key),
            };
        }
        or_panic(or_panic(engine.store().commit(batch)).wait_durable());
    }

    fn keys_of(engine: &Engine, id: &ProfileId) -> Vec<Vec<u8>> {
        engine
            .store()
            .scan_prefix(Keyspace::Exports, &person_ledgers_prefix(id))
            .map(|item| or_panic(item).0)
            .collect()
    }

    /// A send writes one record per contact and counts them by their keys; a ledger of an
    /// earlier store still counts (and attribution still reads it); contacts past keeping,
    /// in either form, are deleted with the person's next contact.
    #[test]
    fn contacts_are_records_of_their_own_and_earlier_ledgers_still_count() {
        let dir = or_panic(tempfile::tempdir());
        let engine = engine(dir.path());
        // Noon in Shanghai, the default zone: outside the SMS quiet hours.
        let now = or_panic(time::OffsetDateTime::from_unix_timestamp(1_796_616_000));
        let day = 86_400;
        let (id, key) = (
            or_panic(cdp_crypto::random_profile_id()),
            or_panic(cdp_crypto::DataKey::generate()),
        );
        let record = crate::records::ProfileRecord::new(id, now, (0, [0; 16]));
        let gate = |export: &str, at: time::OffsetDateTime| {
            or_panic(ContactGate::new(
                &ContactRules::default(),
                CampaignChannel::Sms,
                &CampaignContact::default(),
                "campaign-a",
                export,
                at,
            ))
        };
        let check = |gate: &ContactGate| {
            let mut cursor = cdp_store::Cursor::new(engine.store().as_ref(), Keyspace::Exports);
            or_panic(gate.check(&engine, &mut cursor, &key, &record, None))
        };
        let entry = |at: i64, export: &str| ContactEntry {
            at,
            at_us: None,
            campaign: "campaign-a".into(),
            export: export.into(),
        };

        // An earlier store's ledger: one contact two days ago, one 400 days ago.
        let mut legacy = crate::contact::ledger_prefix(CampaignChannel::Sms, &id);
        legacy.extend_from_slice(b"self");
        let ledger = ContactLedger {
            entries: vec![
                entry(now.unix_timestamp() - 400 * day, "old"),
                entry(now.unix_timestamp() - 2 * day, "legacy"),
            ],
        };
        let sealed = or_panic(engine.seal_person(&key, Keyspace::Exports, &legacy, &ledger));
        // And a contact record past keeping (the SMS cap is 2 a week).
        let ancient = contact_key(
            &crate::contact::ledger_prefix(CampaignChannel::Sms, &id),
            (now.unix_timestamp() - 367 * day) * 1_000_000,
            7,
        );
        let ancient_sealed = or_panic(engine.seal_person(
            &key,
            Keyspace::Exports,
            &ancient,
            &entry(now.unix_timestamp() - 367 * day, "ancient"),
        ));
        commit(
            &engine,
            vec![
                (legacy.clone(), Some(sealed)),
                (ancient.clone(), Some(ancient_sealed)),
            ],
        );

        // One recent contact: the person may be contacted; the record past keeping goes, the
        // ledger (with a recent entry) stays.
        let first = gate("send-1", now);
        let verdict = check(&first);
        assert_eq!(verdict.held_back, None);
        let mut writes = Vec::new();
        or_panic(first.record_contact(&engine, &key, &id, verdict, &mut writes));
        assert_eq!(writes.len(), 2);
        assert!(writes.contains(&(ancient.clone(), None)));
        let new_key = writes
            .iter()
            .find_map(|(k, v)| v.is_some().then(|| k.clone()))
            .unwrap_or_else(|| panic!("no contact record written"));
        let prefix = crate::contact::ledger_prefix(CampaignChannel::Sms, &id);
        assert_eq!(
            contact_micros(&new_key[prefix.len()..]),
            Some(now.unix_timestamp() * 1_000_000)
        );
        commit(&engine, writes);
        assert_eq!(keys_of(&engine, &id), vec![new_key.clone(), legacy.clone()]);

        // Two within the week now (the ledger's and the record's): the cap holds.
        assert_eq!(
            check(&gate("send-2", now)).held_back,
            Some(HeldBack::FrequencyCap)
        );
        // Attribution reads both forms in the order of the contacts, down to contacts of one
        // second (a record written half a second after the first, whatever its random part).
        let half_second = gate("send-2", now + time::Duration::milliseconds(500));
        let mut writes = Vec::new();
        let verdict = check(&half_second);
        or_panic(half_second.record_contact(&engine, &key, &id, verdict, &mut writes));
        commit(&engine, writes);
        let contacts = or_panic(contacts_of(&engine, &key, &id));
        let exports: Vec<&str> = contacts.iter().map(|e| e.export.as_str()).collect();
        assert_eq!(exports, ["old", "legacy", "send-1", "send-2"]);
        assert_eq!(contacts[2].at, contacts[3].at, "one second");

        // A year on, both are past keeping and go with the next contact.
        let year_on = gate("send-3", now + time::Duration::days(370));
        let verdict = check(&year_on);
        assert_eq!(verdict.held_back, None);
        let mut writes = Vec::new();
        or_panic(year_on.record_contact(&engine, &key, &id, verdict, &mut writes));
        commit(&engine, writes);
        let left = keys_of(&engine, &id);
        assert_eq!(left.len(), 1, "only the newest contact stays");
        assert!(!left.contains(&legacy) && !left.contains(&new_key));
    }
}
