//! Profiles the writer just committed, handed to the indexer so that it need not read them
//! back from the store.
//!
//! Under ingestion nearly every change-feed entry the indexer follows is a profile the writer
//! has just decoded, changed, sealed and committed; reading it back (a store read, unwrapping
//! the data key, opening and decoding the record) was about half of the indexer's own work.
//! The writer leaves a copy here with the sequence number of the commit that wrote it.
//!
//! Correctness rests on that number: the indexer uses a copy only when no change to the
//! person in the entries it applies is newer than the copy ([`WrittenProfiles::take`]). Writes
//! that do not leave a copy (erasure, edits, splits, consent changes) are therefore never
//! hidden by an older copy; the indexer then reads the store, as it always did. The map is
//! bounded: when the indexer falls behind (or runs in another process), copies are not kept
//! and nothing but the saving is lost.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

use cdp_core::ProfileId;
use cdp_crypto::DataKey;

use crate::records::ProfileRecord;

/// Copies kept at most: a quarter of a second of ingestion at 20,000 events/s is 5,000.
const CAPACITY: usize = 20_000;

/// A profile as committed, with its data key (consents are sealed under it).
#[derive(Clone)]
pub(crate) struct WrittenProfile {
    /// Sequence number of the commit that wrote this version.
    pub(crate) seq: u64,
    pub(crate) record: Arc<ProfileRecord>,
    pub(crate) key: DataKey,
}

/// The hand-off between the writer and the indexer (one lock, held for a map operation).
#[derive(Default)]
pub(crate) struct WrittenProfiles {
    map: Mutex<HashMap<ProfileId, WrittenProfile>>,
}

impl std::fmt::Debug for WrittenProfiles {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WrittenProfiles")
            .field("len", &self.lock().len())
            .finish()
    }
}

impl WrittenProfiles {
    fn lock(&self) -> MutexGuard<'_, HashMap<ProfileId, WrittenProfile>> {
        self.map.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Records what the commit `seq` wrote: a new version of each profile, or its removal
    /// (`None`: merged away).
    ///
    /// The record is shared, not copied: a copy made under the writer's lock (a decoded profile
    /// is hundreds of allocations) cost more ingestion throughput than reading it back saved.
    pub(crate) fn publish<'a>(
        &self,
        seq: u64,
        profiles: impl IntoIterator<Item = (&'a ProfileId, Option<&'a (Arc<ProfileRecord>, DataKey)>)>,
    ) {
        let mut map = self.lock();
        for (id, profile) in profiles {
            match profile {
                Some((record, key)) if map.len() < CAPACITY || map.contains_key(id) => {
                    map.insert(
                        *id,
                        WrittenProfile {
                            seq,
                            record: record.clone(),
                            key: key.clone(),
                        },
                    );
                }
                // No room, or gone: a copy left from before must not outlive this write.
                _ => {
                    map.remove(id);
                }
            }
        }
    }

    /// The copy of `id` if it is at least as new as `newest_change`, the sequence number of
    /// the newest change to the person the indexer applies. The copy leaves the map either
    /// way: a later pass reads the store unless the writer leaves a newer copy.
    pub(crate) fn take(&self, id: &ProfileId, newest_change: u64) -> Option<WrittenProfile> {
        self.lock()
            .remove(id)
            .filter(|written| written.seq >= newest_change)
    }

    /// Drops every copy (an erasure or edit: no decrypted copy of a person outlives it).
    pub(crate) fn clear(&self) {
        self.lock().clear();
    }

    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.lock().len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn profile(n: u8) -> (ProfileId, (Arc<ProfileRecord>, DataKey)) {
        let id = ProfileId::from_bytes([n; 16]);
        let record = ProfileRecord::new(id, time::OffsetDateTime::UNIX_EPOCH, (0, [0; 16]));
        (id, (Arc::new(record), DataKey::generate().unwrap()))
    }

    #[test]
    fn a_copy_older_than_a_change_is_not_used() {
        let written = WrittenProfiles::default();
        let (id, record) = profile(1);
        written.publish(10, [(&id, Some(&record))]);
        // A change at 11 (an erasure, an edit) left no copy: the store must be read.
        assert!(written.take(&id, 11).is_none());
        // Taken either way.
        written.publish(12, [(&id, Some(&record))]);
        assert_eq!(written.take(&id, 12).map(|w| w.seq), Some(12));
        assert!(written.take(&id, 12).is_none());
    }

    #[test]
    fn a_removal_drops_the_copy_and_the_map_is_bounded() {
        let written = WrittenProfiles::default();
        let (id, record) = profile(2);
        written.publish(1, [(&id, Some(&record))]);
        written.publish(2, [(&id, None)]);
        assert!(written.take(&id, 0).is_none());
        for n in 0..(CAPACITY + 10) {
            let id = ProfileId::from_bytes(u128::try_from(n).unwrap().to_be_bytes());
            written.publish(3, [(&id, Some(&record))]);
        }
        assert_eq!(written.len(), CAPACITY);
        written.clear();
        assert_eq!(written.len(), 0);
    }
}
