//! Copying a whole store between backends (`cdp store copy`): the sealed bytes as they are,
//! keyspace by keyspace, with no key needed; verified by counts and digests at the end.

use std::collections::BTreeMap;

use crate::meta::RESERVED_PREFIX;
use crate::{Keyspace, Store, StoreError, WriteBatch};

/// Bytes of keys and values per committed batch while copying.
const BATCH_BYTES: usize = 4 * 1024 * 1024;

/// What a copy moved: per keyspace, equal in the source and the target when it returns.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CopyReport {
    pub keyspaces: BTreeMap<&'static str, KeyspaceSummary>,
    pub entries: u64,
    pub bytes: u64,
}

/// One keyspace's entries, the bytes of their keys and values (sealed, as stored), and a
/// SHA-256 of its `key | value` pairs in key order. Computed without any key: it names no one.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KeyspaceSummary {
    pub entries: u64,
    pub key_bytes: u64,
    pub value_bytes: u64,
    pub sha256: String,
}

/// The keyspaces a copy moves: all but the change feed (the target's own feed lists what it
/// received, and its index is rebuilt from it) and the store's own bookkeeping in meta.
fn copied(keyspace: Keyspace) -> bool {
    keyspace != Keyspace::Changes
}

fn copied_key(keyspace: Keyspace, key: &[u8]) -> bool {
    copied(keyspace) && !(keyspace == Keyspace::Meta && key.starts_with(RESERVED_PREFIX))
}

/// The summary of each keyspace a copy moves (`cdp store stats` shows it; a copy compares
/// the source's with the target's).
pub fn store_summary(
    store: &dyn Store,
) -> Result<BTreeMap<&'static str, KeyspaceSummary>, StoreError> {
    let mut out = BTreeMap::new();
    for keyspace in Keyspace::ALL.into_iter().filter(|k| copied(*k)) {
        let mut hash = cdp_crypto::Sha256Stream::default();
        let mut summary = KeyspaceSummary::default();
        for item in store.scan_from(keyspace, &[]) {
            let (key, value) = item?;
            if !copied_key(keyspace, &key) {
                continue;
            }
            hash.update(&(key.len() as u32).to_be_bytes());
            hash.update(&key);
            hash.update(&(value.len() as u32).to_be_bytes());
            hash.update(&value);
            summary.entries += 1;
            summary.key_bytes += key.len() as u64;
            summary.value_bytes += value.len() as u64;
        }
        summary.sha256 = hash.finish_hex();
        out.insert(keyspace.name(), summary);
    }
    Ok(out)
}

/// Copies every entry of `from` into `to`, which must hold nothing yet; `progress` hears the
/// entries copied so far. Durable when it returns; verified against the source.
pub fn copy_store(
    from: &dyn Store,
    to: &dyn Store,
    mut progress: impl FnMut(u64),
) -> Result<CopyReport, StoreError> {
    for keyspace in Keyspace::ALL.into_iter().filter(|k| copied(*k)) {
        for item in to.scan_from(keyspace, &[]) {
            let (key, _) = item?;
            if copied_key(keyspace, &key) {
                return Err(StoreError::NotEmpty {
                    keyspace: keyspace.name(),
                });
            }
        }
    }
    let mut report = CopyReport::default();
    let mut batch = WriteBatch::new();
    let mut batch_bytes = 0usize;
    let mut last = None;
    for keyspace in Keyspace::ALL.into_iter().filter(|k| copied(*k)) {
        for item in from.scan_from(keyspace, &[]) {
            let (key, value) = item?;
            if !copied_key(keyspace, &key) {
                continue;
            }
            batch_bytes += key.len() + value.len();
            report.entries += 1;
            report.bytes += (key.len() + value.len()) as u64;
            batch.put(keyspace, key, value);
            if batch_bytes >= BATCH_BYTES {
                last = Some(to.commit(std::mem::take(&mut batch))?);
                batch_bytes = 0;
                progress(report.entries);
            }
        }
    }
    if batch_bytes > 0 {
        last = Some(to.commit(batch)?);
    }
    if let Some(ticket) = last {
        // Tickets resolve in order: the last one durable means every one is.
        ticket.wait_durable()?;
    }
    progress(report.entries);
    let source = store_summary(from)?;
    let target = store_summary(to)?;
    if source != target {
        let differing: Vec<&str> = source
            .iter()
            .filter(|(name, value)| target.get(*name) != Some(value))
            .map(|(name, _)| *name)
            .collect();
        return Err(StoreError::CopyMismatch {
            keyspaces: differing.join(", "),
        });
    }
    report.keyspaces = source;
    Ok(report)
}
