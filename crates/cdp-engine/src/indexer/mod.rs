//! Keeps the search index (`cdp-index`) equal to the store, through the change feed.
//!
//! The index is derived (architecture invariant 5): [`Indexer::rebuild`] recreates it from the
//! profiles, and `cdp reindex` does that offline. While the server runs, [`Indexer::run`]
//! follows the store's change feed (durable entries only): every profile whose record,
//! consents or data key changed is re-indexed (or removed), committed, and the feed trimmed.
//! Once a day (configurable) it refreshes everything: computed traits move with time, and the
//! RFM quintiles are recomputed from the population.
//!
//! A document holds pseudonymous attributes only (see `cdp-index`), and the purposes whose
//! audience decision currently allows the person: audiences filter by policy with one term.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use cdp_core::ProfileId;
use cdp_index::PersonIndex;
use cdp_store::Keyspace;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use crate::computed::Quintiles;
use crate::{Engine, EngineError};

mod document;
mod handoff;

pub(crate) use document::{DecisionMemo, is_indexable, profile_of_keys};
pub(crate) use handoff::WrittenProfiles;

/// What the index has taken in, stored as its commit payload.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct IndexProgress {
    /// The last change-feed sequence number applied.
    pub seq: u64,
    pub schema_version: u32,
    pub policy_version: String,
    pub quintiles: Quintiles,
    /// Unix seconds of the last full refresh.
    pub refreshed_at: i64,
    /// People in the index at the last full refresh.
    #[serde(default)]
    pub people_at_refresh: u64,
    /// People changed by catch-ups since (counted once per pass).
    #[serde(default)]
    pub changed_since_refresh: u64,
}

impl IndexProgress {
    /// Whether so much of the population changed since the last refresh (a bulk load: more
    /// than a tenth of it, and at least [`BULK_CHANGE_MIN`] people) that tiers and RFM scores,
    /// cut against the population's quintiles, would be stale.
    fn population_moved(&self) -> bool {
        self.changed_since_refresh >= BULK_CHANGE_MIN.max(self.people_at_refresh / 10)
    }
}

/// People changed since the last refresh that can make a refresh due early. Small: a shop of a
/// few hundred customers (or the README's demo data) loaded into a new store must get tiers
/// and RFM scores at once, not at the next scheduled refresh; a refresh costs about as much as
/// indexing the population once, so a tenth of it changing bounds the extra work at ten times
/// the changes themselves, whatever the size.
const BULK_CHANGE_MIN: u64 = 50;
/// How long the change feed must be quiet before such an early refresh (not in the middle of a
/// load: a refresh pauses catch-ups, and the load would make it due again at once).
const QUIET_BEFORE_REFRESH: Duration = Duration::from_secs(5);

/// How the indexer behaves.
#[derive(Debug, Clone)]
pub struct IndexerOptions {
    /// Full refresh (time-dependent traits, quintiles) this often.
    pub refresh_every: Duration,
    /// How often the change feed is polled when idle.
    pub poll: Duration,
    /// While writes keep coming, at most one commit this often. Each commit makes a segment
    /// for tantivy to merge later; committing as fast as it could, the indexer spent about a
    /// quarter of the CPU of an ingestion run (`cdp bench ingest`). A write waits at most this
    /// plus one catch-up to be searchable (budget: 1 s).
    pub commit_every: Duration,
}

impl Default for IndexerOptions {
    fn default() -> Self {
        Self {
            refresh_every: Duration::from_secs(24 * 3600),
            poll: Duration::from_millis(50),
            commit_every: Duration::from_millis(250),
        }
    }
}

/// The follower of the change feed.
#[derive(Debug)]
pub struct Indexer {
    engine: Arc<Engine>,
    index: Arc<PersonIndex>,
    progress: Mutex<IndexProgress>,
    options: IndexerOptions,
    /// How long the last catch-up took, in microseconds (see `catch_up`).
    last_pass_micros: AtomicU64,
}

/// Documents handed to the index writer at a time during a catch-up.
const UPSERT_CHUNK: usize = 256;

impl Indexer {
    /// The indexer of the engine's search index; call [`Indexer::start`] before serving.
    pub fn new(engine: Arc<Engine>, options: IndexerOptions) -> Result<Self, EngineError> {
        let index = engine.index.clone().ok_or_else(|| {
            EngineError::Index("the engine was opened without a search index".into())
        })?;
        Ok(Self {
            engine,
            index,
            progress: Mutex::new(IndexProgress::default()),
            last_pass_micros: AtomicU64::new(0),
            options,
        })
    }

    pub fn index(&self) -> &Arc<PersonIndex> {
        &self.index
    }

    fn progress(&self) -> std::sync::MutexGuard<'_, IndexProgress> {
        self.progress.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The progress the index holds (its last commit).
    pub fn current(&self) -> IndexProgress {
        self.progress().clone()
    }

    /// Loads the index's progress; rebuilds when the index is new, of another schema or
    /// policy version, or ahead of the store (restored from another copy).
    pub fn start(&self) -> Result<(), EngineError> {
        let stored: Option<IndexProgress> = self
            .index
            .payload()
            .map_err(index_error)?
            .and_then(|text| serde_json::from_str(&text).ok());
        let durable = *self.engine.store().subscribe_durable().borrow();
        let usable = stored.filter(|p| {
            p.schema_version == cdp_index::SCHEMA_VERSION
                && p.policy_version == self.engine.policies().version
                && p.seq <= durable
        });
        match usable {
            Some(progress) => {
                self.engine
                    .set_quintiles(progress.quintiles.clone(), progress.refreshed_at);
                *self.progress() = progress;
                match self.catch_up() {
                    Err(EngineError::Store(cdp_store::StoreError::FeedTrimmed { .. })) => {
                        tracing::info!(
                            "the change feed was trimmed past the search index; rebuilding it"
                        );
                        self.rebuild()?;
                    }
                    other => {
                        other?;
                    }
                }
            }
            None => {
                tracing::info!("building the search index from the store");
                self.rebuild()?;
            }
        }
        Ok(())
    }

    /// Recreates the index from every profile (as of now, with quintiles of the population).
    /// An index without quintiles yet (a first build) is built twice: the first pass gives the
    /// population the second pass scores against.
    pub fn rebuild(&self) -> Result<u64, EngineError> {
        let count = self.rebuild_pass()?;
        if self.current().quintiles.monetary_365d.is_empty() {
            let buyers: Vec<f64> = self
                .index
                .numeric_values("monetary_365d")
                .map_err(index_error)?
                .into_iter()
                .filter(|v| *v > 0.0)
                .collect();
            let cuts = Quintiles::cuts(buyers);
            if !cuts.is_empty() {
                return self.rebuild_pass();
            }
        }
        Ok(count)
    }

    fn rebuild_pass(&self) -> Result<u64, EngineError> {
        let started = Instant::now();
        // The feed position first: changes after it are applied by the next catch-up.
        let seq = *self.engine.store().subscribe_durable().borrow();
        let quintiles = {
            // Quintiles of the buyers in the index as it stands (none on a first build: every
            // score is 3). Recency exists for buyers only; zero frequency or spend is not
            // buying, so it does not shape the cut points.
            let read = |name| -> Result<Vec<f64>, EngineError> {
                let values = self.index.numeric_values(name).map_err(index_error)?;
                Ok(values.into_iter().filter(|v| *v > 0.0).collect())
            };
            Quintiles {
                recency_days: Quintiles::cuts(
                    self.index
                        .numeric_values("recency_days")
                        .map_err(index_error)?,
                ),
                frequency_365d: Quintiles::cuts(read("frequency_365d")?),
                monetary_365d: Quintiles::cuts(read("monetary_365d")?),
            }
        };
        self.index.clear().map_err(index_error)?;
        let now = OffsetDateTime::now_utc();
        let mut batch = Vec::with_capacity(1024);
        let mut count = 0u64;
        let mut decisions = DecisionMemo::default();
        for item in self.engine.store().scan_prefix(Keyspace::Profiles, &[]) {
            let (key, _) = item?;
            let Ok(bytes) = <[u8; 16]>::try_from(key.as_slice()) else {
                continue;
            };
            let id = ProfileId::from_bytes(bytes);
            if let Some((record, consents)) = self.engine.profile_with_consents(id)? {
                batch.push(self.engine.index_doc(
                    &record,
                    &consents,
                    &quintiles,
                    now,
                    &mut decisions,
                )?);
                count += 1;
            }
            if batch.len() >= 1024 {
                self.index.upsert(&batch).map_err(index_error)?;
                batch.clear();
            }
        }
        self.index.upsert(&batch).map_err(index_error)?;
        let progress = IndexProgress {
            seq,
            schema_version: cdp_index::SCHEMA_VERSION,
            policy_version: self.engine.policies().version.clone(),
            quintiles,
            refreshed_at: now.unix_timestamp(),
            people_at_refresh: count,
            changed_since_refresh: 0,
        };
        self.commit(progress)?;
        tracing::info!(
            profiles = count,
            seconds = started.elapsed().as_secs_f64(),
            "search index rebuilt"
        );
        Ok(count)
    }

    fn commit(&self, progress: IndexProgress) -> Result<(), EngineError> {
        let payload = serde_json::to_string(&progress)
            .map_err(|_| EngineError::Corrupt("index progress".into()))?;
        self.index.commit(&payload).map_err(index_error)?;
        // Every follower (only this one) has the entries up to here.
        self.engine.store().trim_changes(progress.seq)?;
        self.engine
            .set_quintiles(progress.quintiles.clone(), progress.refreshed_at);
        *self.progress() = progress;
        Ok(())
    }

    /// Applies durable change-feed entries not yet indexed. Returns how many people changed.
    pub fn catch_up(&self) -> Result<usize, EngineError> {
        let started = Instant::now();
        let durable = *self.engine.store().subscribe_durable().borrow();
        let mut progress = self.current();
        if durable <= progress.seq {
            return Ok(0);
        }
        // Each person changed, with the newest change to them in this pass.
        let mut touched: BTreeMap<ProfileId, u64> = BTreeMap::new();
        let mut last = progress.seq;
        loop {
            let changes = self.engine.store().changes_after(last, 1000)?;
            let mut done = true;
            for change in changes {
                if change.seq > durable {
                    break;
                }
                done = false;
                last = change.seq;
                for (keyspace, _, key) in &change.keys {
                    let id = match keyspace {
                        Keyspace::Profiles | Keyspace::Keys | Keyspace::Aliases => {
                            key.as_slice().try_into().ok()
                        }
                        Keyspace::Consents => key.get(..16).and_then(|k| k.try_into().ok()),
                        _ => None,
                    };
                    if let Some(bytes) = id {
                        touched.insert(ProfileId::from_bytes(bytes), change.seq);
                    }
                }
            }
            if done || last >= durable {
                break;
            }
        }
        let now = OffsetDateTime::now_utc();
        let ids: Vec<(ProfileId, u64)> = touched.iter().map(|(id, seq)| (*id, *seq)).collect();
        // Chunks of documents go to tantivy's indexing thread as they are built, so that it
        // indexes one chunk while the next is read and decrypted. Under a stream of writes
        // both cores are busy and a pass grows with the ingest rate (freshness reached 1.2 s
        // at 7,000 events/s with one thread building all documents first): once a pass takes
        // longer than the commit interval, the next builds on two threads. Not always: that
        // takes about 15% of ingestion's throughput when passes are short anyway.
        let parallel = Duration::from_micros(self.last_pass_micros.load(Ordering::Relaxed))
            >= self.options.commit_every;
        let next = AtomicUsize::new(0);
        let build = || -> Result<Vec<cdp_index::DocId>, EngineError> {
            let mut gone = Vec::new();
            let mut decisions = DecisionMemo::default();
            loop {
                let start = next.fetch_add(UPSERT_CHUNK, Ordering::Relaxed);
                let end = start.saturating_add(UPSERT_CHUNK).min(ids.len());
                let Some(chunk) = ids.get(start..end).filter(|chunk| !chunk.is_empty()) else {
                    return Ok(gone);
                };
                let mut docs = Vec::with_capacity(chunk.len());
                for (id, newest_change) in chunk {
                    // The writer's copy when it is current, else the store's.
                    let profile = match self.engine.written_profiles.take(id, *newest_change) {
                        Some(written) => {
                            let consents = self.engine.consent_records_with(id, &written.key)?;
                            Some((written.record, consents))
                        }
                        None => self
                            .engine
                            .profile_with_consents(*id)?
                            .map(|(record, consents)| (Arc::new(record), consents)),
                    };
                    match profile {
                        Some((record, consents)) => docs.push(self.engine.index_doc(
                            &record,
                            &consents,
                            &progress.quintiles,
                            now,
                            &mut decisions,
                        )?),
                        None => gone.push(*id.as_bytes()),
                    }
                }
                self.index.upsert(&docs).map_err(index_error)?;
            }
        };
        let mut gone = Vec::new();
        if !parallel || ids.len() <= UPSERT_CHUNK {
            gone = build()?;
        } else {
            let results: Vec<Result<Vec<cdp_index::DocId>, EngineError>> =
                std::thread::scope(|scope| {
                    let workers: Vec<_> = (0..2).map(|_| scope.spawn(build)).collect();
                    workers
                        .into_iter()
                        .map(|worker| {
                            worker.join().unwrap_or_else(|_| {
                                Err(EngineError::Job("an indexing thread panicked".into()))
                            })
                        })
                        .collect()
                });
            for result in results {
                gone.extend(result?);
            }
        }
        self.index.delete(&gone);
        progress.seq = last;
        progress.changed_since_refresh += touched.len() as u64;
        self.commit(progress)?;
        self.last_pass_micros.store(
            u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX),
            Ordering::Relaxed,
        );
        Ok(touched.len())
    }

    /// Follows the change feed until `stop` is set: catch-up as soon as entries are durable,
    /// full refresh when due. Errors are logged and retried.
    pub fn run(&self, stop: &AtomicBool) {
        // The same failure is logged once a minute, not once a second (a full disk would
        // otherwise flood the log); a new one at once.
        let mut last_logged: Option<(String, Instant)> = None;
        let mut last_change = Instant::now();
        while !stop.load(Ordering::Relaxed) {
            let started = Instant::now();
            let due = {
                let progress = self.progress();
                let age = OffsetDateTime::now_utc().unix_timestamp() - progress.refreshed_at;
                age >= i64::try_from(self.options.refresh_every.as_secs()).unwrap_or(i64::MAX)
                    || (progress.population_moved()
                        && last_change.elapsed() >= QUIET_BEFORE_REFRESH)
            };
            let result = if due {
                self.rebuild().map(|_| 0)
            } else {
                match self.catch_up() {
                    // Entries this index had not read were trimmed (another node's indexer
                    // went on while this one was stopped for long): rebuild from the store.
                    Err(EngineError::Store(cdp_store::StoreError::FeedTrimmed { .. })) => {
                        tracing::warn!(
                            "the change feed was trimmed past this index; rebuilding it"
                        );
                        self.rebuild().map(|_| 0)
                    }
                    other => other,
                }
            };
            if matches!(result, Ok(changed) if changed > 0) {
                last_change = Instant::now();
            }
            match result {
                Ok(0) => std::thread::sleep(self.options.poll),
                Ok(_) => {
                    let spent = started.elapsed();
                    if spent < self.options.commit_every {
                        std::thread::sleep(self.options.commit_every - spent);
                    }
                }
                Err(error) => {
                    let text = error.to_string();
                    let repeated = last_logged.as_ref().is_some_and(|(previous, at)| {
                        *previous == text && at.elapsed() < Duration::from_secs(60)
                    });
                    if !repeated {
                        tracing::error!(error = %text, "search index update failed; retrying (the same failure is logged once a minute)");
                        last_logged = Some((text, Instant::now()));
                    }
                    std::thread::sleep(Duration::from_secs(1));
                }
            }
        }
    }
}

pub(crate) fn index_error(error: cdp_index::IndexError) -> EngineError {
    match error {
        cdp_index::IndexError::Query(error) => EngineError::InvalidQuery(error),
        other => EngineError::Index(other.to_string()),
    }
}
