//! Where things live inside a data directory.

use std::path::{Path, PathBuf};

use crate::StoreError;

/// A data directory:
/// ```text
/// DIR/store/              sled files (db, conf, snap.*, blobs/)
/// DIR/lsm/                fjall's journals and tables (the default engine)
/// DIR/store.commit-mark   last durable sequence number (truncation detection)
/// DIR/store.damaged       damage a background verification found (later opens refuse)
/// DIR/keys/master.key     dev master key, created by `cdp serve` when no key is given
/// DIR/keys/token.key      token signing key (default location), created by `cdp serve`
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DataDir {
    root: PathBuf,
}

impl DataDir {
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self { root: root.into() }
    }

    /// Creates the directory readable by its owner only (it holds ciphertext, blind indexes
    /// and, in development, the key). An existing directory keeps its permissions.
    pub fn create(&self) -> Result<(), StoreError> {
        if self.root.exists() {
            return Ok(());
        }
        let mut builder = std::fs::DirBuilder::new();
        builder.recursive(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::DirBuilderExt;
            builder.mode(0o700);
        }
        builder.create(&self.root).map_err(|e| {
            StoreError::io(
                format!("cannot create data directory {}", self.root.display()),
                e,
            )
        })
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    pub fn store_dir(&self) -> PathBuf {
        self.root.join("store")
    }

    /// Whether the directory holds a store (of either engine).
    pub fn holds_store(&self) -> bool {
        self.store_dir().exists() || self.lsm_dir().exists()
    }

    /// Where the store's data lives, for error messages: the LSM directory, or sled's file.
    pub fn store_location(&self) -> PathBuf {
        if self.lsm_dir().exists() {
            self.lsm_dir()
        } else {
            self.store_file()
        }
    }

    /// The LSM store (the fjall backend): its journal, tables and metadata.
    pub fn lsm_dir(&self) -> PathBuf {
        self.root.join("lsm")
    }

    /// sled's log and page file: what is damaged when data goes missing.
    pub fn store_file(&self) -> PathBuf {
        self.store_dir().join("db")
    }

    /// The search index (derived from the store; `cdp reindex` rebuilds it).
    pub fn index_dir(&self) -> PathBuf {
        self.root.join("index")
    }

    /// The name this node goes by among the nodes that share a database (`node-` and 12 hex
    /// digits, made once and kept in `node.id`).
    pub fn node_name(&self) -> Result<String, StoreError> {
        let path = self.root.join("node.id");
        match std::fs::read_to_string(&path) {
            Ok(name) if !name.trim().is_empty() => return Ok(name.trim().to_string()),
            Ok(_) => {}
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => {}
            Err(error) => {
                return Err(StoreError::io(
                    format!("cannot read {}", path.display()),
                    error,
                ));
            }
        }
        self.create()?;
        let bytes = cdp_crypto::random_bytes::<6>()?;
        let name = format!(
            "node-{}",
            bytes.iter().map(|b| format!("{b:02x}")).collect::<String>()
        );
        std::fs::write(&path, format!("{name}\n"))
            .map_err(|e| StoreError::io(format!("cannot write {}", path.display()), e))?;
        Ok(name)
    }

    /// Export files, each sealed under its own data key.
    pub fn exports_dir(&self) -> PathBuf {
        self.root.join("exports")
    }

    /// Batches applied to sled since its last flush, replayed at open after a crash.
    pub fn journal(&self) -> PathBuf {
        self.root.join("store.journal")
    }

    pub fn commit_mark(&self) -> PathBuf {
        self.root.join("store.commit-mark")
    }

    /// Written when a verification after open finds damage; every later open refuses while it
    /// exists (cdp-store `damage.rs`).
    pub fn damage_report(&self) -> PathBuf {
        self.root.join("store.damaged")
    }

    pub fn keys_dir(&self) -> PathBuf {
        self.root.join("keys")
    }

    pub fn dev_key_file(&self) -> PathBuf {
        self.keys_dir().join("master.key")
    }

    /// Signs management-API tokens; created by the first `cdp serve`.
    pub fn token_key_file(&self) -> PathBuf {
        self.keys_dir().join("token.key")
    }
}
