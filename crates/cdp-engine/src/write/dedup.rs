//! De-duplication of retried messages within a time window.
//!
//! An SDK that did not see an acknowledgement sends the batch again with the same messageIds;
//! a message whose (source, messageId) arrived within the window is counted as a duplicate and
//! changes nothing. Segment de-duplicates within a window of about a day, not forever; so does
//! this: the store no longer keeps one key per message for ever (it was one of the records
//! every event wrote), and the window is answered from memory.
//!
//! Stored in [`Keyspace::Messages`]: one record per ingest request, key = the arrival minute
//! (u32, big-endian, minutes since 1970: a bulk load of millions of messages in one hour can
//! still leave its oldest minutes first) and 8 random bytes, value = the 16-byte digests of the
//! request's messages (no personal data: digests of source id and messageId). Records of minutes
//! that left the window are deleted in the batch of a later request. At open, the window's
//! records are read into memory; a store written before this kept one key per digest (16-byte
//! key, empty value): those are packed into records of the current minute at open.
//!
//! Memory: a map of digest to minute, about 40 bytes per message in the window (10M messages:
//! about 400 MB), bounded by `max_messages`: past it the oldest minutes leave early, with a
//! warning (a retry older than that is then accepted again, as after the window).

use std::collections::{BTreeSet, HashMap};
use std::hash::{BuildHasherDefault, Hasher};
use std::time::Duration;

use cdp_store::{Keyspace, Store, WriteBatch};
use time::OffsetDateTime;

use crate::EngineError;

/// Digests per record when old per-message keys are packed at open (1 MiB values).
const PACK: usize = 65_536;

/// The digests are uniform (SHA-256 prefixes): their low 64 bits are a hash already.
#[derive(Default)]
pub(crate) struct DigestHasher(u64);

impl Hasher for DigestHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for byte in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(*byte);
        }
    }

    fn write_u128(&mut self, value: u128) {
        self.0 = value as u64;
    }
}

type DigestMap = HashMap<u128, u32, BuildHasherDefault<DigestHasher>>;

/// The minute of `at`, as the window counts (minutes since 1970).
pub(crate) fn minute_of(at: OffsetDateTime) -> u32 {
    u32::try_from(at.unix_timestamp().max(0) / 60).unwrap_or(u32::MAX)
}

fn record_key(minute: u32) -> Result<Vec<u8>, EngineError> {
    let mut key = minute.to_be_bytes().to_vec();
    key.extend_from_slice(&cdp_crypto::random_bytes::<8>()?);
    Ok(key)
}

/// Messages seen within the window, as committed.
#[derive(Debug)]
pub(crate) struct MessageWindow {
    minutes: u32,
    max_messages: usize,
    seen: DigestMap,
    /// Minutes before this one are gone from memory and from the store.
    kept_from: u32,
}

impl MessageWindow {
    /// The window of `store` as of `now`. Packs the per-message keys of older stores into
    /// records and deletes expired ones, in batches of at most [`PACK`] keys (each atomic:
    /// a digest moves from its key to a record in one batch), durable when this returns.
    pub(crate) fn open(
        store: &dyn Store,
        window: Duration,
        max_messages: usize,
        now: OffsetDateTime,
    ) -> Result<Self, EngineError> {
        let minutes = u32::try_from(window.as_secs().div_ceil(60).max(1)).unwrap_or(u32::MAX);
        let current = minute_of(now);
        let mut this = Self {
            minutes,
            max_messages: max_messages.max(1),
            seen: DigestMap::default(),
            kept_from: current.saturating_sub(minutes - 1),
        };
        let mut expired = Vec::new();
        let mut legacy = Vec::new();
        for item in store.scan_from(Keyspace::Messages, &[]) {
            let (key, value) = item?;
            match key.len() {
                16 if value.is_empty() => legacy.push(digest_of(&key)?),
                12 => {
                    let minute = u32::from_be_bytes(key[..4].try_into().unwrap_or_default());
                    if minute < this.kept_from {
                        expired.push(key);
                        continue;
                    }
                    for digest in value.chunks_exact(16) {
                        this.seen.insert(digest_of(digest)?, minute);
                    }
                }
                _ => return Err(EngineError::Corrupt("message de-duplication record".into())),
            }
        }
        let mut last = None;
        for chunk in expired.chunks(PACK) {
            let mut batch = WriteBatch::new();
            for key in chunk {
                batch.delete(Keyspace::Messages, key.clone());
            }
            last = Some(store.commit(batch)?);
        }
        for chunk in legacy.chunks(PACK) {
            let mut batch = WriteBatch::new();
            let value: Vec<u8> = chunk.iter().flat_map(|d| d.to_be_bytes()).collect();
            batch.put(Keyspace::Messages, record_key(current)?, value);
            for digest in chunk {
                batch.delete(Keyspace::Messages, digest.to_be_bytes().to_vec());
                this.seen.insert(*digest, current);
            }
            last = Some(store.commit(batch)?);
        }
        if let Some(ticket) = last {
            // Tickets resolve in order: the last one durable means every one is.
            ticket.wait_durable()?;
        }
        this.bound();
        Ok(this)
    }

    /// Another node's record of a request's messages (key and value as stored).
    pub(crate) fn absorb(&mut self, key: &[u8], value: &[u8]) -> Result<(), EngineError> {
        if key.len() != 12 {
            return Err(EngineError::Corrupt("message de-duplication record".into()));
        }
        let minute = u32::from_be_bytes(key[..4].try_into().unwrap_or_default());
        if minute < self.kept_from {
            return Ok(());
        }
        for digest in value.chunks_exact(16) {
            self.seen.insert(digest_of(digest)?, minute);
        }
        self.bound();
        Ok(())
    }

    /// Reads every record of the window again (after other nodes wrote more than the change
    /// feed still lists).
    pub(crate) fn reload(&mut self, store: &dyn Store) -> Result<(), EngineError> {
        for item in store.scan_from(Keyspace::Messages, &self.kept_from.to_be_bytes()) {
            let (key, value) = item?;
            if key.len() == 12 {
                self.absorb(&key, &value)?;
            }
        }
        Ok(())
    }

    /// Whether a message with this digest arrived within the window.
    pub(crate) fn contains(&self, digest: &[u8; 16]) -> bool {
        self.seen.contains_key(&u128::from_be_bytes(*digest))
    }

    /// Stages the record of a request's messages (arrived in `minute`) and the deletion of the
    /// minutes that left the window; [`MessageWindow::committed`] once the batch is committed.
    pub(crate) fn stage(
        &self,
        store: &dyn Store,
        batch: &mut WriteBatch,
        minute: u32,
        digests: &[[u8; 16]],
    ) -> Result<(), EngineError> {
        if !digests.is_empty() {
            batch.put(Keyspace::Messages, record_key(minute)?, digests.concat());
        }
        let kept_from = minute.saturating_sub(self.minutes - 1);
        if kept_from > self.kept_from {
            for item in store.scan_from(Keyspace::Messages, &[]) {
                let (key, _) = item?;
                if key.len() != 12 || key[..4] >= kept_from.to_be_bytes()[..] {
                    break;
                }
                batch.delete(Keyspace::Messages, key);
            }
        }
        Ok(())
    }

    /// What a committed request changed: its messages, and the minutes that left the window.
    pub(crate) fn committed(&mut self, minute: u32, digests: &[[u8; 16]]) {
        let kept_from = minute.saturating_sub(self.minutes - 1);
        if kept_from > self.kept_from {
            self.kept_from = kept_from;
            self.seen.retain(|_, seen| *seen >= kept_from);
        }
        for digest in digests {
            self.seen.insert(u128::from_be_bytes(*digest), minute);
        }
        self.bound();
    }

    /// Past `max_messages`, the oldest minutes leave early.
    fn bound(&mut self) {
        if self.seen.len() <= self.max_messages {
            return;
        }
        let mut per_minute: Vec<(u32, usize)> = Vec::new();
        for minute in self.seen.values() {
            match per_minute.binary_search_by_key(minute, |(h, _)| *h) {
                Ok(at) => per_minute[at].1 += 1,
                Err(at) => per_minute.insert(at, (*minute, 1)),
            }
        }
        // The newest minute always stays.
        let newest = per_minute
            .last()
            .map_or(self.kept_from, |(minute, _)| *minute);
        let mut remaining = self.seen.len();
        let mut kept_from = self.kept_from;
        for (minute, count) in per_minute {
            if remaining <= self.max_messages || minute == newest {
                break;
            }
            remaining -= count;
            kept_from = minute + 1;
        }
        tracing::warn!(
            max_messages = self.max_messages,
            kept_minutes = newest.saturating_sub(kept_from) + 1,
            "the message de-duplication window holds more messages than its limit: retries of messages that arrived before the minutes kept are accepted again"
        );
        self.kept_from = kept_from;
        self.seen.retain(|_, seen| *seen >= kept_from);
    }

    /// Erasure: the records of the window that hold any of `digests`, rewritten without
    /// them (so that the person's events, sent again, make a new person);
    /// [`MessageWindow::forget`] once committed.
    pub(crate) fn stage_forget(
        &self,
        store: &dyn Store,
        batch: &mut WriteBatch,
        digests: &BTreeSet<[u8; 16]>,
    ) -> Result<(), EngineError> {
        if !digests.iter().any(|digest| self.contains(digest)) {
            return Ok(());
        }
        for item in store.scan_from(Keyspace::Messages, &[]) {
            let (key, value) = item?;
            let kept: Vec<u8> = value
                .chunks_exact(16)
                .filter(|digest| !digests.iter().any(|d| d.as_slice() == *digest))
                .flatten()
                .copied()
                .collect();
            if kept.len() == value.len() {
                continue;
            }
            if kept.is_empty() {
                batch.delete(Keyspace::Messages, key);
            } else {
                batch.put(Keyspace::Messages, key, kept);
            }
        }
        Ok(())
    }

    pub(crate) fn forget(&mut self, digests: &BTreeSet<[u8; 16]>) {
        for digest in digests {
            self.seen.remove(&u128::from_be_bytes(*digest));
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.seen.len()
    }
}

fn digest_of(bytes: &[u8]) -> Result<u128, EngineError> {
    let digest: [u8; 16] = bytes
        .try_into()
        .map_err(|_| EngineError::Corrupt("message de-duplication key".into()))?;
    Ok(u128::from_be_bytes(digest))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store() -> (tempfile::TempDir, std::sync::Arc<dyn Store>) {
        let dir = tempfile::tempdir().unwrap();
        let store =
            cdp_store::open_store(&cdp_store::DataDir::new(dir.path()), &Default::default())
                .unwrap();
        (dir, store)
    }

    fn at(minute: i64) -> OffsetDateTime {
        OffsetDateTime::from_unix_timestamp(minute * 60).unwrap()
    }

    fn commit(store: &dyn Store, batch: WriteBatch) {
        store.commit(batch).unwrap().wait_durable().unwrap();
    }

    fn records(store: &dyn Store) -> usize {
        store.scan_from(Keyspace::Messages, &[]).count()
    }

    /// One record per request; minutes that leave the window leave memory and the store.
    #[test]
    fn messages_leave_with_their_minute() {
        let (_dir, store) = store();
        let window = Duration::from_secs(10 * 60);
        let mut messages = MessageWindow::open(store.as_ref(), window, 1_000, at(1_000)).unwrap();
        let (a, b, c) = ([1u8; 16], [2u8; 16], [3u8; 16]);
        let mut batch = WriteBatch::new();
        messages
            .stage(store.as_ref(), &mut batch, 1_000, &[a, b])
            .unwrap();
        commit(store.as_ref(), batch);
        messages.committed(1_000, &[a, b]);
        assert!(messages.contains(&a) && messages.contains(&b) && !messages.contains(&c));
        assert_eq!(records(store.as_ref()), 1);

        // Reopened: the window comes back from the store.
        let reopened = MessageWindow::open(store.as_ref(), window, 1_000, at(1_005)).unwrap();
        assert!(reopened.contains(&a));

        // Ten minutes on, minute 1,000 has left: the next request's batch deletes it.
        let mut batch = WriteBatch::new();
        messages
            .stage(store.as_ref(), &mut batch, 1_010, &[c])
            .unwrap();
        commit(store.as_ref(), batch);
        messages.committed(1_010, &[c]);
        assert!(!messages.contains(&a) && messages.contains(&c));
        assert_eq!(records(store.as_ref()), 1);
        // An open past the window finds nothing of minute 1,000 either.
        let reopened = MessageWindow::open(store.as_ref(), window, 1_000, at(1_012)).unwrap();
        assert!(!reopened.contains(&a) && reopened.contains(&c));
    }

    /// Stores written before kept one key per message: packed into the current minute at open.
    #[test]
    fn per_message_keys_of_older_stores_are_packed_at_open() {
        let (_dir, store) = store();
        let mut batch = WriteBatch::new();
        for n in 0..100u8 {
            batch.put(Keyspace::Messages, vec![n; 16], Vec::new());
        }
        commit(store.as_ref(), batch);
        let window = Duration::from_secs(3600);
        let messages = MessageWindow::open(store.as_ref(), window, 1_000, at(50)).unwrap();
        assert!((0..100u8).all(|n| messages.contains(&[n; 16])));
        assert_eq!(records(store.as_ref()), 1);
        let again = MessageWindow::open(store.as_ref(), window, 1_000, at(51)).unwrap();
        assert!(again.contains(&[42u8; 16]));
        assert_eq!(records(store.as_ref()), 1);
        // An open past the window deletes the packed record.
        let later = MessageWindow::open(store.as_ref(), window, 1_000, at(200)).unwrap();
        assert!(!later.contains(&[42u8; 16]));
        assert_eq!(records(store.as_ref()), 0);
    }

    /// Past its limit the window drops its oldest minutes, never the newest one.
    #[test]
    fn the_window_is_bounded_by_its_oldest_minutes() {
        let (_dir, store) = store();
        let mut messages =
            MessageWindow::open(store.as_ref(), Duration::from_secs(3600), 3, at(100)).unwrap();
        messages.committed(100, &[[1; 16], [2; 16]]);
        messages.committed(101, &[[3; 16], [4; 16]]);
        assert!(!messages.contains(&[1; 16]) && messages.contains(&[4; 16]));
        messages.committed(102, &[[5; 16], [6; 16], [7; 16], [8; 16]]);
        assert_eq!(messages.len(), 4);
        assert!(messages.contains(&[8; 16]) && !messages.contains(&[4; 16]));
    }

    /// Erasure takes a person's messages out of the records that hold them.
    #[test]
    fn forgotten_messages_leave_their_records() {
        let (_dir, store) = store();
        let mut messages =
            MessageWindow::open(store.as_ref(), Duration::from_secs(3600), 100, at(7)).unwrap();
        for digests in [vec![[1u8; 16], [2; 16]], vec![[3; 16]]] {
            let mut batch = WriteBatch::new();
            messages
                .stage(store.as_ref(), &mut batch, 7, &digests)
                .unwrap();
            commit(store.as_ref(), batch);
            messages.committed(7, &digests);
        }
        let gone: BTreeSet<[u8; 16]> = [[2u8; 16], [3; 16]].into();
        let mut batch = WriteBatch::new();
        messages
            .stage_forget(store.as_ref(), &mut batch, &gone)
            .unwrap();
        commit(store.as_ref(), batch);
        messages.forget(&gone);
        assert!(messages.contains(&[1; 16]) && !messages.contains(&[2; 16]));
        assert_eq!(records(store.as_ref()), 1);
        let reopened =
            MessageWindow::open(store.as_ref(), Duration::from_secs(3600), 100, at(8)).unwrap();
        assert!(reopened.contains(&[1; 16]) && !reopened.contains(&[3; 16]));
    }
}
