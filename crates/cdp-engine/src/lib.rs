//! The application layer: what the CDP does, independent of HTTP.
//!
//! - [`Engine::create_source`] / [`Engine::source_for_write_key`]: ingestion sources.
//! - [`Engine::ingest`]: Segment messages -> identifiers (normalised, blind-indexed) -> identity
//!   resolution (`cdp-identity`) -> profiles with provenance and encrypted events, one atomic
//!   store batch per message, acknowledged after the group-commit flush.
//! - [`Engine::profile`], [`Engine::lookup`], [`Engine::identity`], [`Engine::split`]: reads
//!   and the unmerge of the identity graph.
//!
//! - [`Engine::record_consent`]: the consent ledger; consent signals also arrive with events.
//! - [`Engine::read_profile`] and the other `read_*`: purpose-bound reads, decided by the
//!   policies (`cdp-policy`), audited, masked.
//! - [`Engine::audit`], [`Engine::verify_audit`]: the hash-chained audit log.
//!
//! Identity changes are serialised by one write lock (the graph must not change between
//! resolving an event and applying the result); durability waits happen outside it.

pub mod audit;
mod codec;
pub mod computed;
pub mod consent;
mod error;
pub mod exports;
pub mod indexer;
pub mod read;
pub mod recipients;
pub mod records;
pub mod requests;
mod sources;
mod write;

use std::sync::{Arc, Mutex, MutexGuard};

use cdp_core::segment::MessageLimits;
use cdp_identity::IdentityRules;
use cdp_policy::PolicySet;
use cdp_store::{Keyspace, Overlay, Store, Vault};
use serde::Serialize;
use serde::de::DeserializeOwned;

pub use audit::{AuditEntry, AuditProblem, AuditRecord, AuditVerification};
pub use consent::record::{ConsentInput, ConsentReceipt, ConsentSubject, ConsentsView};
pub use error::EngineError;
pub use exports::{ExportFormat, ExportRecord, ExportRequest, ExportStatus, Manifest};
pub use indexer::{IndexProgress, Indexer, IndexerOptions};
pub use read::access::{Access, EvaluateSubject, PolicyNote, ProfileRead};
pub use read::audiences::{
    AudienceCount, AudienceQuery, AudienceRecord, AudienceView, MembersPage,
};
pub use read::profiles::{
    EdgeView, IdentifierView, IdentifierViewBrief, IdentityView, LinkedNode, ProfileView,
};
pub use recipients::{RecipientInput, RecipientRecord};
pub use requests::retention::RetentionReport;
pub use requests::{RequestOptions, RequestRecord, RequestStatus, RequestSubject, RequestType};
pub use write::ingest::IngestReport;
pub use write::split::{SplitReport, SplitRequest};
pub use write::survivorship::{Survivorship, SurvivorshipRules};

/// Settings of the engine.
#[derive(Debug, Clone, Default)]
pub struct EngineConfig {
    pub identity: IdentityRules,
    pub computed: computed::ComputedRules,
    pub survivorship: SurvivorshipRules,
    pub limits: MessageLimits,
    pub exports: exports::ExportSettings,
}

/// The application. Cheap to share (`Arc`).
#[derive(Debug)]
pub struct Engine {
    vault: Arc<Vault>,
    config: EngineConfig,
    policies: Arc<PolicySet>,
    /// Serialises changes to the identity graph; guards the cache of committed records.
    write_lock: Mutex<write::cache::RecordCache>,
    /// The audit chain's head; its lock orders appends (taken after `write_lock`, never
    /// before it).
    audit: audit::AuditState,
    /// The search index, once attached (audiences).
    index: std::sync::OnceLock<Arc<cdp_index::PersonIndex>>,
    /// Where export files are written (sealed).
    exports_dir: std::sync::OnceLock<std::path::PathBuf>,
    /// Source id -> default region (sources never change once created).
    source_regions: Mutex<std::collections::HashMap<String, Option<String>>>,
}

impl Engine {
    pub fn new(vault: Arc<Vault>, config: EngineConfig, policies: Arc<PolicySet>) -> Self {
        Self {
            vault,
            config,
            policies,
            write_lock: Mutex::new(write::cache::RecordCache::default()),
            audit: audit::AuditState::default(),
            index: std::sync::OnceLock::new(),
            exports_dir: std::sync::OnceLock::new(),
            source_regions: Mutex::new(std::collections::HashMap::new()),
        }
    }

    /// The policies every decision uses.
    pub fn policies(&self) -> &Arc<PolicySet> {
        &self.policies
    }

    pub fn vault(&self) -> &Arc<Vault> {
        &self.vault
    }

    pub fn store(&self) -> &Arc<dyn Store> {
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

    pub(crate) fn write_lock(&self) -> MutexGuard<'_, write::cache::RecordCache> {
        // The guarded state is the store, which stays consistent: a panic mid-batch never
        // commits a partial batch.
        self.write_lock.lock().unwrap_or_else(|p| p.into_inner())
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
        let plain = self.vault.open_person(key, keyspace, record, sealed)?;
        codec::decode(&plain)
            .map_err(|_| EngineError::Corrupt(format!("{} record", keyspace.name())))
    }
}
