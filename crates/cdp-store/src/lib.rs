//! The store: everything the CDP keeps, behind the [`Store`] trait, with two embedded
//! backends (sled, and fjall's LSM tree) chosen by [`open_store`].
//!
//! - [`Keyspace`]s of architecture.md; every key lives in exactly one.
//! - [`WriteBatch`]es are atomic across keyspaces and get a sequence number; each one also
//!   appends an entry to the change feed ([`Keyspace::Changes`]), which derived views (the
//!   search index) follow.
//! - A write is acknowledged only once flushed: [`CommitTicket::durable`] resolves after a
//!   group commit (one flush shared by every writer waiting at that moment).
//! - A commit mark outside sled records the last durable sequence number, so a store file that
//!   lost acknowledged writes (truncated, damaged) is refused at open instead of served.
//! - [`Vault`] puts the keyring on top: per-person data keys, sealed records, blind indexes, and
//!   the bookkeeping of which master key versions the data needs.

mod absent;
mod batch;
mod commit_mark;
mod commit_queue;
mod copy;
mod cursor;
mod damage;
mod durability;
mod encoding;
mod error;
mod fjall_store;
mod in_flight;
mod journal;
mod keyspace;
mod layout;
mod meta;
mod open;
mod overlay;
mod postgres_store;
mod sled_store;
mod store;
mod vault;

pub use batch::{MAX_KEY_LEN, MAX_VALUE_LEN, WriteBatch};
pub use copy::{CopyReport, KeyspaceSummary, copy_store, store_summary};
pub use cursor::Cursor;
pub use damage::{Verification, clear_damage_report, damage_report, record_damage};
pub use durability::CommitTicket;
pub use error::StoreError;
pub use fjall_store::{FjallStore, FjallStoreOptions};
pub use keyspace::Keyspace;
pub use layout::DataDir;
pub use meta::{SCHEMA_VERSION, SchemaVersion};
pub use open::{StoreEngine, StoreOptions, engine_of, open_store};
pub use overlay::{Overlay, Staging};
pub use postgres_store::{
    PostgresStore, PostgresStoreOptions, is_postgres_url, postgres_database_bytes,
};
pub use sled_store::{SledStore, SledStoreOptions};
pub use store::{
    Change, ChangeOp, ScanIter, Store, StoreHealth, StoreStats, TurnRelease, WriteTurn,
};
pub use vault::Vault;
