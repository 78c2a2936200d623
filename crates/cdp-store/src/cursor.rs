//! Reading many records of one keyspace in ascending key order.
//!
//! A batch job that visits thousands of people (an export) reads their records in profile-id
//! order through one cursor per keyspace instead of one point lookup each: consecutive records
//! usually sit in the same tree node, which a cursor walks while a lookup descends from the root
//! every time. When the wanted keys are far apart the cursor seeks instead of walking, so a
//! sparse selection costs no more than point lookups.

use crate::{Keyspace, ScanIter, Store, StoreError};

/// A key and its value.
pub type Entry = (Vec<u8>, Vec<u8>);

/// Entries a cursor steps over before it seeks instead (a seek costs about as much as a few
/// steps, and every step copies a record it does not want).
const MAX_STEPS: usize = 4;

/// A forward cursor over one keyspace. Keys asked for must not descend.
pub struct Cursor<'a> {
    store: &'a dyn Store,
    keyspace: Keyspace,
    iter: Option<ScanIter<'a>>,
    /// The next entry the iterator gave and nobody took.
    peeked: Option<Entry>,
    /// The iterator reached the end of the keyspace.
    exhausted: bool,
}

impl std::fmt::Debug for Cursor<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cursor")
            .field("keyspace", &self.keyspace)
            .field("exhausted", &self.exhausted)
            .finish_non_exhaustive()
    }
}

impl<'a> Cursor<'a> {
    pub fn new(store: &'a dyn Store, keyspace: Keyspace) -> Self {
        Self {
            store,
            keyspace,
            iter: None,
            peeked: None,
            exhausted: false,
        }
    }

    /// Moves to the first entry whose key is `>= key` and leaves it peeked (or none at the end).
    fn advance_to(&mut self, key: &[u8]) -> Result<(), StoreError> {
        let mut steps = 0;
        loop {
            if let Some((next, _)) = &self.peeked {
                if next.as_slice() >= key {
                    return Ok(());
                }
                self.peeked = None;
            }
            if self.exhausted {
                return Ok(());
            }
            if self.iter.is_none() || steps >= MAX_STEPS {
                self.iter = Some(self.store.scan_from(self.keyspace, key));
                steps = 0;
            }
            steps += 1;
            match self.iter.as_mut().and_then(Iterator::next) {
                Some(entry) => self.peeked = Some(entry?),
                None => {
                    self.exhausted = true;
                    return Ok(());
                }
            }
        }
    }

    /// The value stored under exactly `key`.
    pub fn get(&mut self, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        self.advance_to(key)?;
        match self.peeked.take() {
            Some((found, value)) if found == key => Ok(Some(value)),
            other => {
                self.peeked = other;
                Ok(None)
            }
        }
    }

    /// Every entry whose key starts with `prefix`, in key order.
    pub fn prefix(&mut self, prefix: &[u8]) -> Result<Vec<Entry>, StoreError> {
        self.advance_to(prefix)?;
        let mut out = Vec::new();
        while let Some((key, _)) = &self.peeked {
            if !key.starts_with(prefix) {
                break;
            }
            out.extend(self.peeked.take());
            // Walk on without the step limit: these entries are all wanted.
            match self.iter.as_mut().and_then(Iterator::next) {
                Some(entry) => self.peeked = Some(entry?),
                None => self.exhausted = true,
            }
        }
        Ok(out)
    }
}
