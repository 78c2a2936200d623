//! Where things live inside a data directory.

use std::path::{Path, PathBuf};

/// A data directory:
/// ```text
/// DIR/store/              sled files (db, conf, snap.*, blobs/)
/// DIR/store.commit-mark   last durable sequence number (truncation detection)
/// DIR/keys/master.key     dev master key, created by `cdp serve` when no key is given
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DataDir {
    root: PathBuf,
}

impl DataDir {
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self { root: root.into() }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    pub fn store_dir(&self) -> PathBuf {
        self.root.join("store")
    }

    /// sled's log and page file: what is damaged when data goes missing.
    pub fn store_file(&self) -> PathBuf {
        self.store_dir().join("db")
    }

    pub fn commit_mark(&self) -> PathBuf {
        self.root.join("store.commit-mark")
    }

    pub fn keys_dir(&self) -> PathBuf {
        self.root.join("keys")
    }

    pub fn dev_key_file(&self) -> PathBuf {
        self.keys_dir().join("master.key")
    }
}
