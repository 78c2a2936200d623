//! The application layer: what the CDP does, independent of HTTP. Built only by
//! [`Engine::open`]; one folder per flow (docs/ARCHITECTURE.md has the map).
//!
//! - `write/`: [`Engine::ingest`] (Segment messages -> identifiers, normalised and
//!   blind-indexed -> identity resolution -> profiles with provenance and sealed events, one
//!   atomic store batch per request, acknowledged after the group-commit flush) and
//!   [`Engine::split`] (unmerge).
//! - `read/`: [`Engine::read_profile`] and the other `read_*`: purpose-bound reads, decided by
//!   the policies (`cdp-policy`), audited, masked; audiences.
//! - `consent/`: [`Engine::record_consent`]; `exports/`, `requests/`, `indexer/`.
//! - [`Engine::audit`], [`Engine::verify_audit`]: the hash-chained audit log.
//!
//! Identity changes are serialised by one write lock (the graph must not change between
//! resolving an event and applying the result); durability waits happen outside it.

pub mod accounts;
pub mod activity;
pub mod audit;
pub mod campaign_facts;
pub mod campaign_results;
pub mod campaign_schedule;
pub mod campaigns;
mod codec;
pub mod computed;
mod config;
pub mod consent;
pub mod contact;
pub(crate) mod contact_ledger;
pub mod derived;
pub mod destinations;
pub mod engagement;
mod error;
pub mod exports;
pub mod fuzzy;
pub mod indexer;
pub mod jobs;
pub mod matching;
pub mod read;
pub mod recipients;
pub mod records;
pub mod requests;
pub mod rewrap;
pub mod sources;
mod suspects;
mod write;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard, RwLock};

use cdp_core::segment::MessageLimits;
use cdp_index::PersonIndex;
use cdp_policy::PolicySet;
use cdp_store::{Keyspace, Overlay, Store, StoreHealth, StoreStats, Vault, WriteTurn};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::computed::Quintiles;

pub use accounts::{AccountRecord, NewAccount, SessionRecord, SignInRefusal, SignedIn};
pub use audit::{AuditEntry, AuditProblem, AuditRecord, AuditVerification};
pub use campaign_results::{ArmResult, CampaignResults, Uplift};
pub use campaign_schedule::{CampaignSchedule, CampaignScheduleInput};
pub use campaigns::{
    CampaignChannel, CampaignCost, CampaignInput, CampaignPatch, CampaignRecord, CampaignSend,
    CampaignView, Conversion, Variant,
};
pub use config::{DedupSettings, EngineConfig, EngineRules, IndexMode};
pub use consent::record::{ConsentInput, ConsentReceipt, ConsentSubject, ConsentsView};
pub use destinations::{
    BatchState, BatchStatus, DeadLetter, DeliveryRecord, DeliveryState, DestinationInput,
    DestinationKind, DestinationTest, DestinationView,
};
pub use error::EngineError;
pub use exports::schedules::{ScheduleInput, SchedulePatch, ScheduleView};
pub use exports::{ExportFormat, ExportRecord, ExportRequest, ExportStatus, Manifest};
pub use indexer::{IndexProgress, Indexer, IndexerOptions};
pub use read::access::{Access, Audited, EvaluateSubject, PolicyNote, ProfileRead};
pub use read::audiences::{
    AudienceCount, AudiencePatch, AudienceQuery, AudienceRecord, AudienceView, MembersPage,
};
pub use read::profiles::{
    EdgeView, IdentifierView, IdentifierViewBrief, IdentityView, LinkedNode, ProfileView,
};
pub use recipients::{RecipientInput, RecipientPatch, RecipientRecord, SuppressionEntry};
pub use requests::retention::RetentionReport;
pub use requests::{RequestOptions, RequestRecord, RequestStatus, RequestSubject, RequestType};
pub use suspects::{SuspectDecision, SuspectStatus, SuspectView};
pub use write::ingest::{IngestReport, IngestWarning};
pub use write::split::{SplitReport, SplitRequest};
pub use write::survivorship::{Survivorship, SurvivorshipRules};

/// The engine's write lock held within a write turn of the store: the writer's state.
pub(crate) struct WriteSection<'a> {
    cache: MutexGuard<'a, write::cache::RecordCache>,
    _turn: WriteTurn,
    /// When the section was entered, and where its length is added on leaving
    /// ([`Engine::writer_busy`]).
    entered: std::time::Instant,
    busy_nanos: &'a std::sync::atomic::AtomicU64,
    /// A writer other than ingestion: its place in the commit order, done on leaving.
    direct: Option<(&'a write::pipeline::Pipeline, u64)>,
}

impl Drop for WriteSection<'_> {
    fn drop(&mut self) {
        if let Some((pipeline, place)) = self.direct {
            pipeline.end_direct(place);
        }
        let nanos = u64::try_from(self.entered.elapsed().as_nanos()).unwrap_or(u64::MAX);
        self.busy_nanos
            .fetch_add(nanos, std::sync::atomic::Ordering::Relaxed);
    }
}

impl std::ops::Deref for WriteSection<'_> {
    type Target = write::cache::RecordCache;

    fn deref(&self) -> &Self::Target {
        &self.cache
    }
}

impl std::ops::DerefMut for WriteSection<'_> {
    fn deref_mut(&mut self) -> &mut Self::Target {
        &mut self.cache
    }
}

/// The application. Opened once per process with [`Engine::open`]; cheap to share (`Arc`).
#[derive(Debug)]
pub struct Engine {
    /// The store itself, for `close`, health and stats; everything else goes through the
    /// vault.
    store: Arc<dyn Store>,
    vault: Arc<Vault>,
    config: EngineRules,
    policies: Arc<PolicySet>,
    /// Serialises changes to the identity graph; guards the cache of committed records.
    write_lock: Mutex<write::cache::RecordCache>,
    /// Nanoseconds the write lock was held since the engine opened: ingestion's serial part,
    /// which bounds its rate whatever the cores (`cdp bench ingest` reports its share).
    writer_busy_nanos: std::sync::atomic::AtomicU64,
    /// What the writer's cache holds, readable without its lock (`write/presence.rs`).
    cached: write::presence::CachePresence,
    /// The order of ingestion's commits when they are made after the write lock
    /// (`write/pipeline.rs`).
    pipeline: write::pipeline::Pipeline,
    /// The audit chain's head; its lock orders appends (taken after `write_lock`, never
    /// before it).
    audit: audit::AuditState,
    /// The search index (audiences, exports); `None` for offline tools that need none.
    index: Option<Arc<PersonIndex>>,
    /// Where export files are written (sealed).
    exports_dir: PathBuf,
    /// Identifiers quarantined or blocked as junk (`suspects.rs`).
    suspects: suspects::SuspectState,
    /// Serialises rewrites of finished export files (erasure, retention); taken before
    /// `write_lock`, never after it.
    export_files: Mutex<()>,
    /// Fuzzy matching runs on this node (`matching/`).
    matching: matching::RunState,
    /// Serialises the check-and-save of running export jobs on this node (`exports/lease.rs`):
    /// a lease renewal that read a job before its finishing save and wrote after it would put
    /// the finished job back to running. Across the nodes of a shared database the store's
    /// write turn does the same; an embedded store's turn is no lock. Taken before the turn.
    job_saves: Mutex<()>,
    /// The population's RFM cut points as the index last computed them, so that exports
    /// score people as the index does.
    quintiles: RwLock<Arc<Quintiles>>,
    /// Unix seconds of the index's last full refresh: computed traits cut against the
    /// population (tiers, RFM scores) are as of then (0: never).
    traits_as_of: std::sync::atomic::AtomicI64,
    /// Source id -> default region (sources never change once created).
    source_regions: Mutex<HashMap<String, Option<String>>>,
    activity: activity::SourceActivity,
    /// Profiles just committed by ingestion, for the indexer (kept only with an index).
    written_profiles: indexer::WrittenProfiles,
    /// This node's name among the nodes of a shared database (`local` alone): leases of
    /// jobs name it (`jobs.rs`).
    node: String,
    /// The campaign facts the write path indexes (`campaign_facts.rs`).
    facts: campaign_facts::FactState,
}

impl Engine {
    /// Opens the store (replaying its journal), the vault and the search index of a data
    /// directory. The only way to build an engine: `serve`, the offline commands, the
    /// benchmarks and the tests all come through here.
    pub fn open(config: EngineConfig) -> Result<Self, EngineError> {
        let EngineConfig {
            data_dir,
            keyring,
            policies,
            rules,
            store,
            index,
            exports_dir,
        } = config;
        let node = store
            .postgres
            .as_ref()
            .and_then(|options| options.cluster_node.clone())
            .unwrap_or_else(|| "local".to_string());
        let store = cdp_store::open_store(&data_dir, &store)?;
        let vault = Arc::new(Vault::open(store.clone(), keyring, &data_dir)?);
        // What the writer's state below reflects (other nodes may write after it).
        let synced_seq = store.stats().last_seq;
        let messages = write::dedup::MessageWindow::open(
            store.as_ref(),
            rules.dedup.window,
            rules.dedup.max_messages,
            time::OffsetDateTime::now_utc(),
        )?;
        let index = match index {
            IndexMode::OnDisk => {
                Some(PersonIndex::open(&data_dir.index_dir()).map_err(indexer::index_error)?)
            }
            IndexMode::Fresh => {
                let dir = data_dir.index_dir();
                if dir.exists() {
                    std::fs::remove_dir_all(&dir).map_err(|source| {
                        EngineError::io("cannot remove the search index", source)
                    })?;
                }
                Some(PersonIndex::open(&dir).map_err(indexer::index_error)?)
            }
            IndexMode::InMemory => Some(PersonIndex::in_memory().map_err(indexer::index_error)?),
            IndexMode::Absent => None,
        };
        let exports_dir = exports_dir.unwrap_or_else(|| data_dir.exports_dir());
        std::fs::create_dir_all(&exports_dir)
            .map_err(|source| EngineError::io("cannot create the export directory", source))?;
        let facts = campaign_facts::FactState::new(&vault)?;
        let cached = write::presence::CachePresence::new(
            write::cache::NODES,
            write::cache::EVIDENCE,
            write::cache::PROFILES,
        );
        let engine = Self {
            store,
            vault,
            config: rules,
            policies,
            write_lock: Mutex::new(write::cache::RecordCache::new(
                messages, synced_seq, &cached,
            )),
            cached,
            writer_busy_nanos: std::sync::atomic::AtomicU64::new(0),
            pipeline: write::pipeline::Pipeline::default(),
            audit: audit::AuditState::default(),
            index: index.map(Arc::new),
            exports_dir,
            export_files: Mutex::new(()),
            matching: matching::RunState::default(),
            job_saves: Mutex::new(()),
            suspects: suspects::SuspectState::default(),
            quintiles: RwLock::new(Arc::new(Quintiles::default())),
            traits_as_of: std::sync::atomic::AtomicI64::new(0),
            source_regions: Mutex::new(HashMap::new()),
            activity: activity::SourceActivity::default(),
            written_profiles: indexer::WrittenProfiles::default(),
            node,
            facts,
        };
        engine.load_suspects()?;
        engine.watch_campaign_conversions()?;
        Ok(engine)
    }

    /// Flushes and closes the store: every acknowledged write is in the store file and the
    /// journal is empty. Call once, after the last request.
    pub fn close(&self) -> Result<(), EngineError> {
        {
            // Requests resolved before the close commit first (a failed pipeline has
            // nothing more to commit).
            let _writer = self.write_lock.lock().unwrap_or_else(|p| p.into_inner());
            let _ = self.pipeline.drain();
        }
        Ok(self.store.close()?)
    }

    /// Whether the store takes writes, for `/healthz` and `/readyz`: a stopped ingestion
    /// pipeline (`write/pipeline.rs`) refuses them until the store is reopened, as a failed
    /// store does (and `cdp serve`'s recovery reopens it the same way).
    pub fn store_health(&self) -> StoreHealth {
        match self.store.health() {
            StoreHealth::Ready => match self.pipeline.failure() {
                Some(failure) => StoreHealth::Failed(failure),
                None => StoreHealth::Ready,
            },
            other => other,
        }
    }

    /// The newest durable (acknowledgeable) sequence number of the store's change feed.
    pub fn durable_seq(&self) -> u64 {
        *self.store.subscribe_durable().borrow()
    }

    /// Whether a store read is a network round trip (PostgreSQL) rather than a read of memory
    /// or the page cache: the server then keeps reads off its async workers.
    pub fn store_reads_are_remote(&self) -> bool {
        self.store.reads_are_remote()
    }

    /// Counters of the store, for `/metrics`.
    pub fn store_stats(&self) -> StoreStats {
        self.store.stats()
    }

    /// The public half of the key that signs export manifests and erasure receipts.
    pub fn signing_public_key(&self) -> Result<String, EngineError> {
        Ok(self.vault.signing_key()?.public_key_base64())
    }

    /// Whether the person's data key exists (false after erasure: without it nothing of theirs
    /// can be decrypted, wherever a copy of the store went).
    pub fn holds_data_key(&self, id: &cdp_core::ProfileId) -> Result<bool, EngineError> {
        Ok(self.vault.person_key(id)?.is_some())
    }

    /// The search index, if the engine was opened with one.
    pub fn search_index_handle(&self) -> Option<&Arc<PersonIndex>> {
        self.index.as_ref()
    }

    /// The RFM cut points the index last computed.
    pub(crate) fn quintiles(&self) -> Arc<Quintiles> {
        self.quintiles
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    pub(crate) fn set_quintiles(&self, quintiles: Quintiles, refreshed_at: i64) {
        *self.quintiles.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(quintiles);
        self.traits_as_of
            .store(refreshed_at, std::sync::atomic::Ordering::Relaxed);
    }

    /// When the population's quintiles (tiers, RFM scores) were last computed, if ever.
    pub(crate) fn traits_as_of(&self) -> Option<time::OffsetDateTime> {
        let at = self.traits_as_of.load(std::sync::atomic::Ordering::Relaxed);
        (at > 0)
            .then(|| time::OffsetDateTime::from_unix_timestamp(at).ok())
            .flatten()
    }

    /// The policies every decision uses.
    pub fn policies(&self) -> &Arc<PolicySet> {
        &self.policies
    }

    pub(crate) fn vault(&self) -> &Arc<Vault> {
        &self.vault
    }

    pub(crate) fn store(&self) -> &Arc<dyn Store> {
        self.vault.store()
    }

    pub fn limits(&self) -> &MessageLimits {
        &self.config.limits
    }

    /// A source's default region, cached.
    pub(crate) fn source_region(&self, id: &str) -> Result<Option<String>, EngineError> {
        if let Some(region) = self
            .source_regions
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(id)
        {
            return Ok(region.clone());
        }
        let region = self.source(id)?.and_then(|s| s.default_region);
        self.source_regions
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(id.to_string(), region.clone());
        Ok(region)
    }

    /// How long the write lock has been held in all since the engine opened.
    pub fn writer_busy(&self) -> std::time::Duration {
        std::time::Duration::from_nanos(
            self.writer_busy_nanos
                .load(std::sync::atomic::Ordering::Relaxed),
        )
    }

    /// The write lock, within a write turn of the store (several nodes on one database take
    /// turns; `cdp-store` `WriteTurn`). Take it before any other lock of the engine but
    /// `export_files_lock`: a turn waits for the node's other writers to finish.
    pub(crate) fn write_lock(&self) -> Result<WriteSection<'_>, EngineError> {
        let mut section = self.write_lock_for_ingest()?;
        // Everything ingestion resolved is in the store before a writer that reads the store
        // directly goes on.
        self.pipeline.drain()?;
        section.committed_through(u64::MAX);
        let place = self.pipeline.begin_direct();
        section.written.everything_at(place);
        section.direct = Some((&self.pipeline, place));
        Ok(section)
    }

    /// The write lock for ingestion, whose reads see what the requests before it resolved and
    /// have not committed yet (`write/pipeline.rs`).
    pub(crate) fn write_lock_for_ingest(&self) -> Result<WriteSection<'_>, EngineError> {
        // The guarded state is the store, which stays consistent: a panic mid-batch never
        // commits a partial batch.
        let mut cache = self.write_lock.lock().unwrap_or_else(|p| p.into_inner());
        cache.committed_through(self.pipeline.done());
        cache.absent.nodes.clear();
        cache.absent.evidence.clear();
        let turn = self.store().write_turn()?;
        if turn.generation() != cache.generation {
            self.sync_with_other_nodes(&mut cache, &turn)?;
        }
        Ok(WriteSection {
            cache,
            _turn: turn,
            entered: std::time::Instant::now(),
            busy_nanos: &self.writer_busy_nanos,
            direct: None,
        })
    }

    /// Another node wrote the shared database since this one's last turn: the records of
    /// the graph it rewrote leave the writer's cache (the change feed of a shared store lists
    /// them; when it no longer does, the whole cache goes), its messages join the
    /// de-duplication window, and the quarantined identifiers are read again if it changed
    /// them.
    fn sync_with_other_nodes(
        &self,
        cache: &mut write::cache::RecordCache,
        turn: &WriteTurn,
    ) -> Result<(), EngineError> {
        let store = self.store().as_ref();
        let mut after = cache.synced_seq;
        let mut records = Vec::new();
        let mut suspects_changed = false;
        'feed: while after < turn.synced_seq() {
            let changes = match store.changes_after(after, 1000) {
                Ok(changes) => changes,
                Err(cdp_store::StoreError::FeedTrimmed { .. }) => {
                    records.clear();
                    cache.clear_records();
                    cache.messages.reload(store)?;
                    suspects_changed = true;
                    break 'feed;
                }
                Err(error) => return Err(error.into()),
            };
            if changes.is_empty() {
                break;
            }
            for change in changes {
                if change.seq > turn.synced_seq() {
                    break 'feed;
                }
                after = change.seq;
                for (keyspace, op, key) in change.keys {
                    match keyspace {
                        Keyspace::Messages if op == cdp_store::ChangeOp::Put => records.push(key),
                        Keyspace::Suspects => suspects_changed = true,
                        _ => cache.forget(keyspace, &key),
                    }
                }
            }
        }
        for key in records {
            if let Some(value) = store.get(Keyspace::Messages, &key)? {
                cache.messages.absorb(&key, &value)?;
            }
        }
        if suspects_changed {
            self.load_suspects()?;
        }
        cache.generation = turn.generation();
        cache.synced_seq = turn.synced_seq();
        Ok(())
    }

    pub(crate) fn export_files_lock(&self) -> MutexGuard<'_, ()> {
        self.export_files.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub(crate) fn seal_system<T: Serialize>(
        &self,
        keyspace: Keyspace,
        key: &[u8],
        value: &T,
    ) -> Result<Vec<u8>, EngineError> {
        let plain =
            codec::encode(value).map_err(|_| EngineError::Corrupt(keyspace.name().into()))?;
        Ok(self.vault.seal_system(keyspace, key, &plain)?)
    }

    pub(crate) fn open_system<T: DeserializeOwned>(
        &self,
        keyspace: Keyspace,
        key: &[u8],
        sealed: &[u8],
    ) -> Result<T, EngineError> {
        let plain = self.vault.open_system(keyspace, key, sealed)?;
        codec::decode(&plain)
            .map_err(|_| EngineError::Corrupt(format!("{} record", keyspace.name())))
    }

    pub(crate) fn get_system<T: DeserializeOwned>(
        &self,
        keyspace: Keyspace,
        key: &[u8],
    ) -> Result<Option<T>, EngineError> {
        match self.store().get(keyspace, key)? {
            Some(sealed) => Ok(Some(self.open_system(keyspace, key, &sealed)?)),
            None => Ok(None),
        }
    }

    pub(crate) fn get_system_in<T: DeserializeOwned>(
        &self,
        view: &Overlay<'_>,
        keyspace: Keyspace,
        key: &[u8],
    ) -> Result<Option<T>, EngineError> {
        match view.get(keyspace, key)? {
            Some(sealed) => Ok(Some(self.open_system(keyspace, key, &sealed)?)),
            None => Ok(None),
        }
    }

    pub(crate) fn seal_person<T: Serialize>(
        &self,
        key: &cdp_crypto::DataKey,
        keyspace: Keyspace,
        record: &[u8],
        value: &T,
    ) -> Result<Vec<u8>, EngineError> {
        let plain =
            codec::encode(value).map_err(|_| EngineError::Corrupt(keyspace.name().into()))?;
        Ok(self.vault.seal_person(key, keyspace, record, &plain)?)
    }

    pub(crate) fn open_person<T: DeserializeOwned>(
        &self,
        key: &cdp_crypto::DataKey,
        keyspace: Keyspace,
        record: &[u8],
        sealed: &[u8],
    ) -> Result<T, EngineError> {
        self.open_person_with(key, keyspace, record, sealed, codec::decode)
    }

    /// Opens a record sealed with a person's key and decodes it with `decode` (a reader that
    /// takes only part of it).
    pub(crate) fn open_person_with<T>(
        &self,
        key: &cdp_crypto::DataKey,
        keyspace: Keyspace,
        record: &[u8],
        sealed: &[u8],
        decode: impl FnOnce(&[u8]) -> Result<T, codec::CodecError>,
    ) -> Result<T, EngineError> {
        let plain = self.vault.open_person(key, keyspace, record, sealed)?;
        decode(&plain).map_err(|_| EngineError::Corrupt(format!("{} record", keyspace.name())))
    }
}

/// Unaudited reads of people, for the tests of the engine and the server only (feature
/// `test-support`, which neither the server nor the binary enables): everywhere else a read of
/// a person states a purpose, is decided and audited (`read::access`). `unaudited_profile` and
/// `unaudited_lookup` are in `read/profiles.rs`.
#[cfg(feature = "test-support")]
impl Engine {
    pub fn unaudited_events(
        &self,
        id: cdp_core::ProfileId,
        limit: usize,
    ) -> Result<Vec<records::StoredEvent>, EngineError> {
        self.events(id, limit)
    }

    pub fn unaudited_identity(
        &self,
        id: cdp_core::ProfileId,
    ) -> Result<Option<IdentityView>, EngineError> {
        self.identity(id)
    }
}
