//! What the engine is opened with ([`EngineConfig`]) and the rules it applies
//! ([`EngineRules`]).

use std::path::PathBuf;
use std::sync::Arc;

use cdp_core::segment::MessageLimits;
use cdp_crypto::Keyring;
use cdp_identity::IdentityRules;
use cdp_policy::PolicySet;
use cdp_store::{DataDir, StoreOptions};

use crate::computed::ComputedRules;
use crate::exports::ExportSettings;
use crate::write::survivorship::SurvivorshipRules;

/// The rules the engine applies (from the config file; the defaults are the documented ones).
#[derive(Debug, Clone, Default)]
pub struct EngineRules {
    pub identity: IdentityRules,
    pub computed: ComputedRules,
    pub survivorship: SurvivorshipRules,
    pub limits: MessageLimits,
    pub exports: ExportSettings,
    pub dedup: DedupSettings,
    /// Frequency caps and quiet hours of campaigns (`contact.rs`).
    pub contact: crate::contact::ContactRules,
    /// Fuzzy identity matching (`matching/`): off until jurisdictions are named.
    pub matching: crate::matching::MatchingRules,
}

/// How long a (source, messageId) is remembered to recognise retries (`write/dedup.rs`).
#[derive(Debug, Clone, Copy)]
pub struct DedupSettings {
    /// Segment de-duplicates within about a day.
    pub window: std::time::Duration,
    /// At most this many messages in the window (about 40 bytes of memory each); past it the
    /// oldest minutes leave early.
    pub max_messages: usize,
}

impl Default for DedupSettings {
    fn default() -> Self {
        Self {
            window: std::time::Duration::from_secs(24 * 3600),
            max_messages: 5_000_000,
        }
    }
}

/// Where the search index lives.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum IndexMode {
    /// `<data dir>/index`, as it is (the indexer brings it up to date at start).
    #[default]
    OnDisk,
    /// `<data dir>/index` removed and created empty (`cdp reindex`: also recovers from a
    /// damaged or foreign index).
    Fresh,
    /// In memory (tests).
    InMemory,
    /// None: audiences and exports answer that the index is unavailable (offline tools that
    /// need no search, such as `cdp audit verify`).
    Absent,
}

/// Everything [`crate::Engine::open`] needs. Built with [`EngineConfig::new`] and the
/// `with_*` methods; the defaults are those of `cdp serve` without a config file.
#[derive(Debug, Clone)]
pub struct EngineConfig {
    pub data_dir: DataDir,
    pub keyring: Arc<Keyring>,
    pub policies: Arc<PolicySet>,
    pub rules: EngineRules,
    pub store: StoreOptions,
    pub index: IndexMode,
    /// Where export files are written (sealed); default `<data dir>/exports`. Nodes that
    /// share a PostgreSQL store share this directory too (a volume every node mounts), so
    /// that any node serves a file another one wrote.
    pub exports_dir: Option<PathBuf>,
}

impl EngineConfig {
    pub fn new(
        data_dir: impl Into<PathBuf>,
        keyring: Arc<Keyring>,
        policies: Arc<PolicySet>,
    ) -> Self {
        Self {
            data_dir: DataDir::new(data_dir),
            keyring,
            policies,
            rules: EngineRules::default(),
            store: StoreOptions::default(),
            index: IndexMode::default(),
            exports_dir: None,
        }
    }

    #[must_use]
    pub fn with_exports_dir(mut self, dir: Option<PathBuf>) -> Self {
        self.exports_dir = dir;
        self
    }

    #[must_use]
    pub fn with_rules(mut self, rules: EngineRules) -> Self {
        self.rules = rules;
        self
    }

    #[must_use]
    pub fn with_store(mut self, store: StoreOptions) -> Self {
        self.store = store;
        self
    }

    #[must_use]
    pub fn with_index(mut self, index: IndexMode) -> Self {
        self.index = index;
        self
    }
}
