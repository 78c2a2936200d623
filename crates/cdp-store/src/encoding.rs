//! The key layout every embedded backend shares: keyspaces as one-byte prefixes of one ordered
//! key space, and the change feed's encoding.

use crate::batch::BatchOp;
use crate::store::{Change, ChangeOp};
use crate::{Keyspace, StoreError};

pub(crate) fn prefixed(keyspace: Keyspace, key: &[u8]) -> Vec<u8> {
    let mut full = Vec::with_capacity(key.len() + 1);
    full.push(keyspace.tag());
    full.extend_from_slice(key);
    full
}

/// The first key after every key that starts with `prefix` (prefixes here start with a
/// keyspace tag, never 0xff, so one always exists).
pub(crate) fn prefix_end(prefix: &[u8]) -> Vec<u8> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < u8::MAX {
            end.push(last + 1);
            return end;
        }
    }
    vec![u8::MAX; prefix.len() + 1]
}

#[cfg(test)]
pub(crate) fn encode_change(ops: &[BatchOp]) -> Vec<u8> {
    encode_change_of(ops, Keyspace::followed)
}

/// The change-feed entry of a batch listing the keys of the keyspaces `listed` picks.
pub(crate) fn encode_change_of(ops: &[BatchOp], listed: impl Fn(Keyspace) -> bool) -> Vec<u8> {
    let mut out = Vec::with_capacity(ops.len() * 40);
    for op in ops.iter().filter(|op| listed(op.keyspace)) {
        out.push(op.keyspace.tag());
        out.push(u8::from(op.value.is_some()));
        // Keys are at most MAX_KEY_LEN (< 2^16).
        out.extend_from_slice(&(op.key.len() as u16).to_be_bytes());
        out.extend_from_slice(&op.key);
    }
    out
}

/// The entries a follower asked for, or [`StoreError::FeedTrimmed`] when the first one is not
/// the next after `after`: every commit has an entry, so a gap means entries were trimmed
/// before this follower read them.
pub(crate) fn contiguous(after: u64, changes: Vec<Change>) -> Result<Vec<Change>, StoreError> {
    match changes.first() {
        Some(first) if first.seq > after.saturating_add(1) => Err(StoreError::FeedTrimmed {
            after,
            trimmed: first.seq - 1,
        }),
        _ => Ok(changes),
    }
}

/// A change-feed entry as stored: its full key (keyspace tag, sequence number) and value.
pub(crate) fn decode_change_entry(full_key: &[u8], value: &[u8]) -> Result<Change, StoreError> {
    let seq = full_key
        .get(1..)
        .and_then(|seq| <[u8; 8]>::try_from(seq).ok())
        .map(u64::from_be_bytes)
        .ok_or_else(|| StoreError::Backend("change-feed key is malformed".into()))?;
    decode_change(seq, value)
}

pub(crate) fn decode_change(seq: u64, bytes: &[u8]) -> Result<Change, StoreError> {
    let malformed = || StoreError::Backend(format!("change-feed entry #{seq} is malformed"));
    let mut keys = Vec::new();
    let mut rest = bytes;
    while !rest.is_empty() {
        if rest.len() < 4 {
            return Err(malformed());
        }
        let keyspace = Keyspace::from_tag(rest[0]).ok_or_else(malformed)?;
        let op = if rest[1] == 1 {
            ChangeOp::Put
        } else {
            ChangeOp::Delete
        };
        let len = u16::from_be_bytes([rest[2], rest[3]]) as usize;
        let key = rest.get(4..4 + len).ok_or_else(malformed)?.to_vec();
        keys.push((keyspace, op, key));
        rest = &rest[4 + len..];
    }
    Ok(Change { seq, keys })
}

/// A scanned entry as the `Store` interface gives it: key without the keyspace tag.
pub(crate) fn unprefixed(
    item: Result<(Vec<u8>, sled::IVec), StoreError>,
) -> Result<(Vec<u8>, Vec<u8>), StoreError> {
    item.map(|(key, value)| (key[1..].to_vec(), value.to_vec()))
}
