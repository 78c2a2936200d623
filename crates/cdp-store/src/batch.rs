//! Atomic write batches.

use crate::{Keyspace, StoreError};

/// Longest key a caller may write (ids and blind indexes are far shorter).
pub const MAX_KEY_LEN: usize = 512;
/// Largest value a caller may write; larger records are a design error upstream.
pub const MAX_VALUE_LEN: usize = 8 * 1024 * 1024;

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct BatchOp {
    pub(crate) keyspace: Keyspace,
    pub(crate) key: Vec<u8>,
    /// `None` deletes.
    pub(crate) value: Option<Vec<u8>>,
}

/// Puts and deletes applied all together or not at all, across keyspaces.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WriteBatch {
    pub(crate) ops: Vec<BatchOp>,
}

impl WriteBatch {
    pub fn new() -> Self {
        Self::default()
    }

    /// A batch with room for `ops` operations (a million contact records are not pushed
    /// through twenty reallocations).
    pub fn with_capacity(ops: usize) -> Self {
        Self {
            ops: Vec::with_capacity(ops),
        }
    }

    pub fn put(
        &mut self,
        keyspace: Keyspace,
        key: impl Into<Vec<u8>>,
        value: impl Into<Vec<u8>>,
    ) -> &mut Self {
        self.ops.push(BatchOp {
            keyspace,
            key: key.into(),
            value: Some(value.into()),
        });
        self
    }

    pub fn delete(&mut self, keyspace: Keyspace, key: impl Into<Vec<u8>>) -> &mut Self {
        self.ops.push(BatchOp {
            keyspace,
            key: key.into(),
            value: None,
        });
        self
    }

    pub fn len(&self) -> usize {
        self.ops.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ops.is_empty()
    }

    /// Appends another batch's operations after this one's.
    pub fn extend(&mut self, other: WriteBatch) {
        self.ops.extend(other.ops);
    }

    pub(crate) fn validate(&self) -> Result<(), StoreError> {
        for op in &self.ops {
            if op.keyspace == Keyspace::Changes {
                return Err(StoreError::Reserved(
                    "the change feed is written by the store",
                ));
            }
            if op.keyspace == Keyspace::Meta && op.key.starts_with(crate::meta::RESERVED_PREFIX) {
                return Err(StoreError::Reserved(
                    "meta keys under `store/` belong to the store",
                ));
            }
            if op.key.is_empty() || op.key.len() > MAX_KEY_LEN {
                return Err(StoreError::Limit {
                    what: "key length",
                    max: MAX_KEY_LEN,
                });
            }
            if op.value.as_ref().is_some_and(|v| v.len() > MAX_VALUE_LEN) {
                return Err(StoreError::Limit {
                    what: "value length",
                    max: MAX_VALUE_LEN,
                });
            }
        }
        Ok(())
    }
}
