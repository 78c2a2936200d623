//! Which embedded engine a data directory uses, and opening it.

use std::sync::Arc;

use crate::{
    DataDir, FjallStore, FjallStoreOptions, PostgresStore, PostgresStoreOptions, SledStore,
    SledStoreOptions, Store, StoreError, Verification,
};

/// The embedded storage engines.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum StoreEngine {
    /// sled 0.34 (B-tree; `DATA_DIR/store`, with the store's own journal). Data directories
    /// made before fjall keep it.
    Sled,
    /// fjall 3 (LSM tree; `DATA_DIR/lsm`): the default for new data directories (measured:
    /// docs/performance.md, "Storage engines").
    #[default]
    Fjall,
}

impl StoreEngine {
    pub fn as_str(self) -> &'static str {
        match self {
            StoreEngine::Sled => "sled",
            StoreEngine::Fjall => "fjall",
        }
    }
}

impl std::str::FromStr for StoreEngine {
    type Err = String;

    fn from_str(name: &str) -> Result<Self, Self::Err> {
        match name {
            "sled" => Ok(StoreEngine::Sled),
            "fjall" => Ok(StoreEngine::Fjall),
            other => Err(format!(
                "unknown store engine {other:?}; engines are sled, fjall"
            )),
        }
    }
}

/// How to open the store of a data directory.
#[derive(Debug, Clone)]
pub struct StoreOptions {
    /// `None`: the engine of the store the directory holds (a new directory gets the default
    /// engine). `Some`: that engine, and a directory holding the other one is refused.
    pub engine: Option<StoreEngine>,
    /// The engine's cache, in bytes.
    pub cache_capacity: u64,
    /// When every entry is read, so that the engine checks every page or block's checksum
    /// (sled: at open unless `Off`).
    pub verification: Verification,
    /// A PostgreSQL database instead of the data directory's embedded store
    /// (`postgres://...`; the data directory keeps the keys, the search index and export
    /// files).
    pub postgres: Option<PostgresStoreOptions>,
}

impl Default for StoreOptions {
    fn default() -> Self {
        Self {
            engine: None,
            cache_capacity: 256 * 1024 * 1024,
            verification: Verification::InBackground,
            postgres: None,
        }
    }
}

/// The engine whose store `data_dir` holds, if any.
pub fn engine_of(data_dir: &DataDir) -> Option<StoreEngine> {
    if data_dir.lsm_dir().exists() {
        Some(StoreEngine::Fjall)
    } else if data_dir.store_dir().exists() {
        Some(StoreEngine::Sled)
    } else {
        None
    }
}

/// Opens (or creates) the store of `data_dir`. A directory that holds the other engine's store
/// than the one configured is refused, never opened empty beside it.
pub fn open_store(
    data_dir: &DataDir,
    options: &StoreOptions,
) -> Result<Arc<dyn Store>, StoreError> {
    let existing = engine_of(data_dir);
    if let Some(postgres) = &options.postgres {
        // An embedded store left beside it would silently stop being the truth.
        if let Some(found) = existing {
            return Err(StoreError::EmbeddedBesideDatabase {
                path: data_dir.root().to_path_buf(),
                found: found.as_str(),
            });
        }
        return Ok(PostgresStore::open(postgres)?);
    }
    let engine = match (options.engine, existing) {
        (Some(configured), Some(found)) if configured != found => {
            return Err(StoreError::OtherEngine {
                path: data_dir.root().to_path_buf(),
                found: found.as_str(),
                configured: configured.as_str(),
            });
        }
        (Some(configured), _) => configured,
        (None, Some(found)) => found,
        (None, None) => StoreEngine::default(),
    };
    Ok(match engine {
        StoreEngine::Sled => SledStore::open(
            data_dir,
            &SledStoreOptions {
                cache_capacity: options.cache_capacity,
                verify_on_open: options.verification != Verification::Off,
            },
        )?,
        StoreEngine::Fjall => FjallStore::open(
            data_dir,
            &FjallStoreOptions {
                cache_capacity: options.cache_capacity,
                verification: options.verification,
            },
        )?,
    })
}
