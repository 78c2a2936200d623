//! Writes staged on top of the store, readable before they are committed.
//!
//! One sled `apply_batch` costs a synchronous log write (sled seals its IO buffer and waits for
//! `sync_file_range`), so the engine commits a whole request as one batch. Its messages depend
//! on each other (the second event of a person must see the profile the first created), so
//! their writes are staged here and every read of the request goes through the overlay.

use std::collections::BTreeMap;
use std::sync::Arc;

use crate::batch::BatchOp;
use crate::{CommitTicket, Keyspace, Store, StoreError, WriteBatch};

/// Key-value pairs of a prefix scan.
pub type Entries = Vec<(Vec<u8>, Vec<u8>)>;

/// Values per keyspace (indexed by tag), so a lookup needs no allocation; `None` deletes.
type PerKeyspace = Vec<BTreeMap<Vec<u8>, Option<Vec<u8>>>>;

/// The writes an overlay staged, each key once with its final value, taken out of it by
/// [`Overlay::into_staging`]: another overlay reads through them ([`Overlay::with_layers`])
/// until they are committed, and [`Staging::batch`] commits them.
#[derive(Debug, Default)]
pub struct Staging {
    values: PerKeyspace,
}

impl Staging {
    fn get(&self, keyspace: Keyspace, key: &[u8]) -> Option<&Option<Vec<u8>>> {
        self.values.get(usize::from(keyspace.tag()))?.get(key)
    }

    /// The staged writes as one batch (each key once), followed by `then`'s operations (a
    /// later operation on the same key wins when the batch is committed).
    pub fn batch(&self, then: WriteBatch) -> WriteBatch {
        let mut ops = Vec::new();
        for (keyspace, staged) in Keyspace::ALL.iter().zip(&self.values) {
            for (key, value) in staged {
                ops.push(BatchOp {
                    keyspace: *keyspace,
                    key: key.clone(),
                    value: value.clone(),
                });
            }
        }
        ops.extend(then.ops);
        WriteBatch { ops }
    }
}

/// Staged writes over a store.
pub struct Overlay<'a> {
    base: &'a dyn Store,
    /// Writes of earlier overlays not committed yet, oldest first: read before the store.
    layers: Vec<Arc<Staging>>,
    pending: PerKeyspace,
    ops: Vec<BatchOp>,
}

impl std::fmt::Debug for Overlay<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Overlay")
            .field("staged", &self.ops.len())
            .finish_non_exhaustive()
    }
}

impl<'a> Overlay<'a> {
    pub fn new(base: &'a dyn Store) -> Self {
        Self::with_layers(base, Vec::new())
    }

    /// An overlay that reads through `layers` (the staged writes of earlier overlays that are
    /// not committed yet, oldest first) before the store: their commits must come before this
    /// overlay's, in the same order.
    pub fn with_layers(base: &'a dyn Store, layers: Vec<Arc<Staging>>) -> Self {
        Self {
            base,
            layers,
            pending: vec![BTreeMap::new(); Keyspace::ALL.len()],
            ops: Vec::new(),
        }
    }

    /// A value as it will be once the staged writes are committed.
    pub fn get(&self, keyspace: Keyspace, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        if let Some(staged) = self.pending[usize::from(keyspace.tag())].get(key) {
            return Ok(staged.clone());
        }
        for layer in self.layers.iter().rev() {
            if let Some(staged) = layer.get(keyspace, key) {
                return Ok(staged.clone());
            }
        }
        self.base.get(keyspace, key)
    }

    /// Entries under a prefix, staged writes included, in key order.
    pub fn scan_prefix(&self, keyspace: Keyspace, prefix: &[u8]) -> Result<Entries, StoreError> {
        let mut merged: BTreeMap<Vec<u8>, Vec<u8>> = BTreeMap::new();
        for item in self.base.scan_prefix(keyspace, prefix) {
            let (key, value) = item?;
            merged.insert(key, value);
        }
        let tag = usize::from(keyspace.tag());
        let staged = self
            .layers
            .iter()
            .filter_map(|layer| layer.values.get(tag))
            .chain(std::iter::once(&self.pending[tag]));
        for values in staged {
            for (key, value) in values.range(prefix.to_vec()..) {
                if !key.starts_with(prefix) {
                    break;
                }
                match value {
                    Some(value) => merged.insert(key.clone(), value.clone()),
                    None => merged.remove(key),
                };
            }
        }
        Ok(merged.into_iter().collect())
    }

    /// Stages a batch; nothing reaches the store until [`Overlay::commit`].
    pub fn stage(&mut self, batch: WriteBatch) -> Result<(), StoreError> {
        batch.validate()?;
        for op in batch.ops {
            self.pending[usize::from(op.keyspace.tag())].insert(op.key.clone(), op.value.clone());
            self.ops.push(op);
        }
        Ok(())
    }

    pub fn is_empty(&self) -> bool {
        self.ops.is_empty()
    }

    /// Takes the staged writes out, to be committed later ([`Staging::batch`]) and read
    /// meanwhile by later overlays.
    pub fn into_staging(self) -> Staging {
        Staging {
            values: self.pending,
        }
    }

    /// Commits everything staged as one atomic batch, each key once with its final value.
    /// `None` when nothing was staged.
    pub fn commit(self) -> Result<Option<CommitTicket>, StoreError> {
        if self.ops.is_empty() {
            return Ok(None);
        }
        let mut ops = Vec::with_capacity(self.ops.len());
        for (keyspace, staged) in Keyspace::ALL.iter().zip(self.pending) {
            for (key, value) in staged {
                ops.push(BatchOp {
                    keyspace: *keyspace,
                    key,
                    value,
                });
            }
        }
        Ok(Some(self.base.commit(WriteBatch { ops })?))
    }
}
