//! The sled backend through the conformance suite (`conformance/`).

// Tests fail by panicking; helpers unwrap like the tests they serve.
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[macro_use]
mod conformance;

use std::path::Path;
use std::sync::Arc;

use cdp_store::{DataDir, SledStore, SledStoreOptions, Store, StoreError};

struct Sled;

impl conformance::Backend for Sled {
    fn open(dir: &Path) -> Result<Arc<dyn Store>, StoreError> {
        let store: Arc<dyn Store> =
            SledStore::open(&DataDir::new(dir), &SledStoreOptions::default())?;
        Ok(store)
    }

    fn poke_raw(dir: &Path, key: &[u8], value: &[u8]) {
        let db = sled::open(dir.join("store")).unwrap();
        db.insert(key, value).unwrap();
        db.flush().unwrap();
    }

    fn read_raw(dir: &Path, key: &[u8]) -> Option<Vec<u8>> {
        let db = sled::open(dir.join("store")).unwrap();
        db.get(key).unwrap().map(|v| v.to_vec())
    }

    fn main_file(dir: &Path) -> std::path::PathBuf {
        dir.join("store/db")
    }

    fn main_file_name() -> &'static str {
        "store/db"
    }
}

mod sled_store {
    use super::Sled;

    conformance_suite!(Sled);
}
