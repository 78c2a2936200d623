//! Fuzzy identity matching over the store (issue 20): people who share no identifier (a CRM
//! record, a POS member, an online account) are linked from keyed encodings of their names,
//! birth date, gender, phone and address.
//!
//! A run ([`Engine::run_matching`]):
//! 1. **Encodes** each person who may take part (every jurisdiction that applies to them is
//!    enabled in `[matching] jurisdictions`, their processing is not restricted, and they are
//!    not a minor under the policies) into
//!    keyed Bloom filters and tokens (`fuzzy.rs`), sealed with their data key, and their
//!    blocking keys as blind indexes (`encodings.rs`); unchanged values are not encoded again,
//!    and the encodings of people who no longer take part (or no longer exist) are removed.
//! 2. **Finds candidates** by reading the blind index in key order: people sharing a blocking
//!    key of a pass are candidates (blocks larger than `max_block` are no key and skipped).
//! 3. **Estimates** u from random pairs and m and λ by EM (cdp-identity `fuzzy/link.rs`) and
//!    scores every candidate pair (a Fellegi-Sunter weight with each field's part).
//! 4. **Decides**: at or above `link_probability` the pair is linked as a fuzzy link in the
//!    identity graph (`write/fuzzy_link.rs`: merge protection applies, the explanation shows
//!    it, a split cuts it and it is not made again); between `review_probability` and that, a
//!    suggestion waits for an operator (`suggestions.rs`).
//!
//! Off until configured: a DPO names the jurisdictions where matching may run. Runs are
//! serialised on a node, audited, and on a shared database run once across the nodes (the
//! scheduler claims a lease).

pub(crate) mod encodings;
pub mod suggestions;

use std::collections::HashMap;

use cdp_core::ProfileId;
use cdp_identity::fuzzy::FuzzyRecord;
use cdp_identity::fuzzy::link::{
    LinkSettings, Outcome, candidates_of_blocks, link, train_and_link,
};
use cdp_identity::fuzzy::model::{Model, Training, compare};
use cdp_store::{Keyspace, WriteBatch};
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use crate::audit::AuditRecord;
use crate::fuzzy::FuzzySchema;
use crate::records::{FieldContribution, FuzzyLinkNote, ProfileRecord};
use crate::write::fuzzy_link::FuzzyLinkOutcome;
use crate::{Engine, EngineError};
use encodings::{BLOCK_PREFIX, ENCODING_PREFIX, parse_block_key};
use suggestions::{Suggestion, SuggestionStatus, suggestion_id};

/// `[matching]` of the configuration.
#[derive(Debug, Clone, PartialEq)]
pub struct MatchingRules {
    /// Jurisdictions (policy names, e.g. `pipl`, `gdpr`; `*`: all) whose people take part. A
    /// person takes part only if every jurisdiction that applies to them is named. Empty: off.
    pub jurisdictions: Vec<String>,
    pub schema: FuzzySchema,
    pub link: LinkSettings,
    /// How often the scheduler runs matching (`None`: only on demand).
    pub interval: Option<std::time::Duration>,
}

impl Default for MatchingRules {
    fn default() -> Self {
        Self {
            jurisdictions: Vec::new(),
            schema: FuzzySchema::standard(),
            link: LinkSettings::default(),
            interval: None,
        }
    }
}

impl MatchingRules {
    pub fn enabled(&self) -> bool {
        !self.jurisdictions.is_empty()
    }

    fn allows(&self, jurisdictions: &[&str]) -> bool {
        self.jurisdictions.iter().any(|j| j == "*")
            || jurisdictions
                .iter()
                .all(|j| self.jurisdictions.iter().any(|enabled| enabled == j))
    }
}

/// `[matching]` as the configuration file writes it (deploy/cdp.toml); every key optional.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MatchingFile {
    pub jurisdictions: Option<Vec<String>>,
    pub link_probability: Option<f64>,
    pub review_probability: Option<f64>,
    pub max_block: Option<usize>,
    /// 0 or absent: runs only on demand.
    pub interval_minutes: Option<u64>,
    /// The compared fields and blocking passes (both or neither; default: the standard
    /// schema of `fuzzy.rs`).
    pub fields: Option<Vec<crate::fuzzy::FuzzyField>>,
    pub passes: Option<Vec<crate::fuzzy::BlockingPass>>,
}

impl MatchingRules {
    /// Checks the file's values; an error names the key.
    pub fn from_file(file: MatchingFile) -> Result<Self, String> {
        let defaults = LinkSettings::default();
        let link_probability = file.link_probability.unwrap_or(defaults.link_probability);
        let review_probability = file
            .review_probability
            .unwrap_or(defaults.review_probability);
        if !(0.5..=1.0).contains(&link_probability) {
            return Err("link_probability must be between 0.5 and 1".into());
        }
        if !(0.0..=link_probability).contains(&review_probability) {
            return Err("review_probability must be between 0 and link_probability".into());
        }
        let max_block = file.max_block.unwrap_or(defaults.max_block);
        if !(2..=100_000).contains(&max_block) {
            return Err("max_block must be between 2 and 100000".into());
        }
        let schema = match (file.fields, file.passes) {
            (None, None) => FuzzySchema::standard(),
            (Some(fields), Some(passes)) => FuzzySchema { fields, passes },
            _ => return Err("fields and passes are given together or not at all".into()),
        };
        if schema.fields.is_empty() || schema.fields.len() > cdp_identity::fuzzy::model::MAX_FIELDS
        {
            return Err(format!(
                "fields: between 1 and {} fields",
                cdp_identity::fuzzy::model::MAX_FIELDS
            ));
        }
        if schema.passes.is_empty() || schema.passes.len() > 64 {
            return Err("passes: between 1 and 64 blocking passes".into());
        }
        for pass in &schema.passes {
            for part in &pass.parts {
                if !schema.fields.iter().any(|f| f.name == part.field()) {
                    return Err(format!(
                        "pass {:?} uses {:?}, which is not one of the fields",
                        pass.name,
                        part.field()
                    ));
                }
            }
        }
        Ok(Self {
            jurisdictions: file.jurisdictions.unwrap_or_default(),
            schema,
            link: LinkSettings {
                link_probability,
                review_probability,
                max_block,
                ..defaults
            },
            interval: file
                .interval_minutes
                .filter(|m| *m > 0)
                .map(|m| std::time::Duration::from_secs(m.saturating_mul(60))),
        })
    }
}

/// What a run did.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MatchingReport {
    #[serde(with = "time::serde::rfc3339")]
    pub started_at: OffsetDateTime,
    /// People read.
    pub profiles: u64,
    /// People who took part (an enabled jurisdiction, not restricted, not a minor, something
    /// to compare).
    pub eligible: u64,
    /// People encoded anew this run (new or changed values).
    pub encoded: u64,
    /// Encodings and blocking keys removed (of people who no longer take part or no longer
    /// exist, or whose values changed).
    pub removed: u64,
    pub candidate_pairs: u64,
    /// Pairs compared: candidates and the random pairs that estimate u.
    pub comparisons: u64,
    /// The estimation, when this run trained the model (the first run, a changed schema, or
    /// asked to); otherwise the run scored with the model of an earlier run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub training: Option<Training>,
    /// Pairs linked as one person.
    pub linked: u64,
    /// Pairs above the threshold that merge protection refused (in the matcher, or in the
    /// graph), or that an operator had split before.
    pub refused: u64,
    /// New suggestions for review.
    pub suggested: u64,
    pub seconds: f64,
}

impl MatchingReport {
    fn new(started_at: OffsetDateTime) -> Self {
        Self {
            started_at,
            profiles: 0,
            eligible: 0,
            encoded: 0,
            removed: 0,
            candidate_pairs: 0,
            comparisons: 0,
            training: None,
            linked: 0,
            refused: 0,
            suggested: 0,
            seconds: 0.0,
        }
    }
}

/// The last run, and the model runs score with (`model` in `Keyspace::Matching`, sealed).
///
/// The model is estimated once and kept: a later run over a population whose duplicates
/// were linked has few matches left among its candidates, and an EM run on it would take
/// namesakes for matches. It is estimated again when the schema changes or when asked
/// (`{"retrain": true}`, e.g. after a large import of a new system).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct MatchingState {
    pub report: MatchingReport,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<Model>,
    /// Hex digest of the schema the model was estimated for.
    #[serde(default)]
    pub schema: String,
}

const STATE_KEY: &[u8] = b"model";

/// Writes of a run go in batches of about this many operations.
const BATCH_OPS: usize = 4_000;

/// The people of a run: their ids and encodings, by position.
#[derive(Default)]
struct Population {
    ids: Vec<ProfileId>,
    records: Vec<FuzzyRecord>,
    position: HashMap<ProfileId, u32>,
}

/// Runs of this node: one at a time, and what became of one started in the background.
#[derive(Debug, Default)]
pub(crate) struct RunState {
    /// Serialises runs and review decisions.
    lock: std::sync::Mutex<()>,
    /// A run started by [`Engine::start_matching`] has not finished.
    running: std::sync::atomic::AtomicBool,
    /// Why the last background run failed, if it did.
    last_error: std::sync::Mutex<Option<String>>,
}

/// `GET /v1/identity/matching`: whether matching is on and where, its thresholds, whether a
/// run is under way, and the last run with its model.
#[derive(Debug, Clone, Serialize)]
pub struct MatchingOverview {
    pub enabled: bool,
    pub jurisdictions: Vec<String>,
    pub link_probability: f64,
    pub review_probability: f64,
    pub fields: Vec<String>,
    pub running: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_run: Option<MatchingState>,
}

impl Engine {
    pub(crate) fn matching_lock(&self) -> std::sync::MutexGuard<'_, ()> {
        self.matching.lock.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// `GET /v1/identity/matching`.
    pub fn matching_overview(&self) -> Result<MatchingOverview, EngineError> {
        let rules = &self.config.matching;
        Ok(MatchingOverview {
            enabled: rules.enabled(),
            jurisdictions: rules.jurisdictions.clone(),
            link_probability: rules.link.link_probability,
            review_probability: rules.link.review_probability,
            fields: rules.schema.fields.iter().map(|f| f.name.clone()).collect(),
            running: self
                .matching
                .running
                .load(std::sync::atomic::Ordering::SeqCst),
            last_error: self
                .matching
                .last_error
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .clone(),
            last_run: self.get_system(Keyspace::Matching, STATE_KEY)?,
        })
    }

    /// `POST /v1/identity/matching/run`: starts a run on a thread of its own (a run over
    /// millions of people outlasts an HTTP request); `GET /v1/identity/matching` follows it.
    pub fn start_matching(
        self: &std::sync::Arc<Self>,
        actor: &str,
        retrain: bool,
    ) -> Result<(), EngineError> {
        if !self.config.matching.enabled() {
            return Err(matching_off());
        }
        if self
            .matching
            .running
            .swap(true, std::sync::atomic::Ordering::SeqCst)
        {
            return Err(EngineError::Conflict(
                "a matching run is under way: follow it at GET /v1/identity/matching".into(),
            ));
        }
        let engine = self.clone();
        let actor = actor.to_string();
        let spawned = std::thread::Builder::new()
            .name("cdp-matching-run".into())
            .spawn(move || {
                let outcome = engine
                    .run_matching(&actor, retrain)
                    .err()
                    .map(|e| e.to_string());
                if let Some(error) = &outcome {
                    tracing::error!(error = %error, "fuzzy matching run failed");
                }
                *engine
                    .matching
                    .last_error
                    .lock()
                    .unwrap_or_else(|p| p.into_inner()) = outcome;
                engine
                    .matching
                    .running
                    .store(false, std::sync::atomic::Ordering::SeqCst);
            });
        if let Err(error) = spawned {
            self.matching
                .running
                .store(false, std::sync::atomic::Ordering::SeqCst);
            return Err(EngineError::Job(format!(
                "cannot start a matching run: {error}"
            )));
        }
        Ok(())
    }

    /// Runs fuzzy matching over everyone who may take part (see the module documentation);
    /// `retrain`: estimate the model again even if one for the schema is kept.
    pub fn run_matching(&self, actor: &str, retrain: bool) -> Result<MatchingReport, EngineError> {
        let rules = &self.config.matching;
        if !rules.enabled() {
            return Err(matching_off());
        }
        let _run = self.matching_lock();
        let started = std::time::Instant::now();
        let mut report = MatchingReport::new(OffsetDateTime::now_utc());
        let schema = schema_digest(&rules.schema);
        let kept = self
            .get_system::<MatchingState>(Keyspace::Matching, STATE_KEY)?
            .filter(|state| state.schema == schema && !retrain)
            .and_then(|state| state.model);
        let population = self.encode_population(&mut report)?;
        let pairs = self.candidates_from_index(&population, &mut report)?;
        let mut model = Model::new(rules.schema.specs());
        if population.records.len() >= 2 && !pairs.is_empty() {
            let outcome: Outcome = match kept {
                Some(kept) => {
                    model = kept;
                    let patterns: Vec<_> = pairs
                        .iter()
                        .map(|c| {
                            compare(
                                &population.records[c.a as usize],
                                &population.records[c.b as usize],
                            )
                        })
                        .collect();
                    report.candidate_pairs = pairs.len() as u64;
                    report.comparisons = pairs.len() as u64;
                    link(&model, &population.records, &pairs, &patterns, &rules.link)
                }
                None => {
                    let (outcome, counts) = train_and_link(
                        &mut model,
                        &population.records,
                        &pairs,
                        &rules.schema.pass_fields(),
                        &rules.link,
                    );
                    report.candidate_pairs = counts.candidate_pairs;
                    report.comparisons = counts.comparisons;
                    report.training = counts.training;
                    outcome
                }
            };
            report.refused = outcome.refused_by_limits;
            let note = |pair: &cdp_identity::fuzzy::link::Scored, by: &str| FuzzyLinkNote {
                probability: pair.probability,
                weight: pair.weight,
                fields: contributions(pair, &model),
                decided_by: by.to_string(),
            };
            let mut last_ticket = None;
            for pair in &outcome.links {
                let (a, b) = (
                    population.ids[pair.a as usize],
                    population.ids[pair.b as usize],
                );
                match self.link_fuzzy(a, b, note(pair, "fuzzy-matching"))? {
                    (FuzzyLinkOutcome::Linked(_), ticket) => {
                        report.linked += 1;
                        last_ticket = ticket.or(last_ticket);
                    }
                    (FuzzyLinkOutcome::AlreadyOne, _) => {}
                    (FuzzyLinkOutcome::Refused(_), _) => report.refused += 1,
                }
            }
            if let Some(ticket) = last_ticket {
                ticket.wait_durable()?;
            }
            let mut batch = WriteBatch::new();
            for pair in &outcome.review {
                let (a, b) = (
                    population.ids[pair.a as usize],
                    population.ids[pair.b as usize],
                );
                let (a, b) = (self.resolve_id(a)?, self.resolve_id(b)?);
                let id = suggestion_id(&a, &b);
                if a == b || self.suggested_before(&id)? {
                    continue;
                }
                let base = note(pair, "");
                self.stage_suggestion(
                    &Suggestion {
                        id,
                        profiles: [a, b],
                        probability: base.probability,
                        weight: base.weight,
                        fields: base.fields,
                        status: SuggestionStatus::Pending,
                        suggested_at: OffsetDateTime::now_utc(),
                        decided_by: None,
                        refused: None,
                    },
                    &mut batch,
                )?;
                report.suggested += 1;
            }
            if !batch.is_empty() {
                self.store().commit(batch)?.wait_durable()?;
            }
        }
        report.seconds = started.elapsed().as_secs_f64();
        let state = MatchingState {
            report: report.clone(),
            model: (!pairs.is_empty()).then_some(model),
            schema,
        };
        let mut batch = WriteBatch::new();
        batch.put(
            Keyspace::Matching,
            STATE_KEY.to_vec(),
            self.seal_system(Keyspace::Matching, STATE_KEY, &state)?,
        );
        self.commit_audited(
            batch,
            &[AuditRecord {
                actor: actor.to_string(),
                action: "identity.matching".into(),
                purpose: Some(crate::audit::IDENTITY_PURPOSE.into()),
                person: None,
                decision: "done".into(),
                rules: vec![
                    format!("eligible={}", report.eligible),
                    format!("encoded={}", report.encoded),
                    format!("candidate_pairs={}", report.candidate_pairs),
                    format!("linked={}", report.linked),
                    format!("refused={}", report.refused),
                    format!("suggested={}", report.suggested),
                ],
            }],
        )?
        .wait_durable()?;
        tracing::info!(
            eligible = report.eligible,
            candidate_pairs = report.candidate_pairs,
            linked = report.linked,
            suggested = report.suggested,
            seconds = report.seconds,
            "fuzzy matching run"
        );
        Ok(report)
    }

    /// Step 1: everyone's encodings up to date in the store, and in memory for the run.
    fn encode_population(&self, report: &mut MatchingReport) -> Result<Population, EngineError> {
        let rules = &self.config.matching;
        let vault = self.vault();
        let key = vault.keyring().fuzzy_key(vault.pinned_version())?;
        let schema_digest = cdp_crypto::digest16(&[
            b"fuzzy-schema/v1",
            &serde_json::to_vec(&rules.schema).unwrap_or_default(),
        ]);
        let mut population = Population::default();
        let mut batch = WriteBatch::new();
        for item in self.store().scan_prefix(Keyspace::Profiles, &[]) {
            let (id_bytes, sealed) = item?;
            let Ok(id) = <[u8; 16]>::try_from(id_bytes.as_slice()).map(ProfileId::from_bytes)
            else {
                continue;
            };
            // Erased since the scan began: nothing to read.
            let Some(data_key) = vault.person_key(&id)? else {
                continue;
            };
            let record: ProfileRecord =
                self.open_person(&data_key, Keyspace::Profiles, &id_bytes, &sealed)?;
            report.profiles += 1;
            let facts =
                self.subject_facts(&record, &[] as &[crate::consent::record::ConsentRecord])?;
            let (jurisdictions, _) = self.policies.jurisdictions_for(&facts);
            let names: Vec<&str> = jurisdictions
                .iter()
                .map(|j| j.jurisdiction.as_str())
                .collect();
            // Minors' records are not joined by inference: their data is sensitive (PIPL Art
            // 28 and 31, GDPR Art 8), and a guardian consented to what was collected, not to
            // profiling it.
            let takes_part =
                !record.restricted && !self.policies.is_minor(&facts) && rules.allows(&names);
            let encoded = if takes_part {
                self.encode_person(
                    (&rules.schema, &schema_digest, &key),
                    (&record, &data_key),
                    &mut batch,
                )?
            } else {
                if let Some(old) = self.stored_encoding(&id, &data_key)? {
                    self.stage_encoding_removal(&id, &old, &mut batch);
                    report.removed += 1;
                }
                None
            };
            if let Some(mut encoded) = encoded {
                report.eligible += 1;
                report.encoded += u64::from(encoded.changed);
                // Merge protection inside the matcher: two people who each hold an
                // identifier of a type limited to one per person are never linked.
                encoded.record.exclusive = record
                    .identifiers
                    .iter()
                    .filter(|entry| self.config.identity.rule(&entry.kind).limit == 1)
                    .map(|entry| {
                        let digest = cdp_crypto::digest16(&[entry.kind.as_str().as_bytes()]);
                        u64::from_le_bytes(digest[..8].try_into().unwrap_or_default())
                    })
                    .collect();
                population.position.insert(id, population.ids.len() as u32);
                population.ids.push(id);
                population.records.push(encoded.record);
            }
            if batch.len() >= BATCH_OPS {
                // Durable with the last batch below, which the run waits for.
                let _pending = self.store().commit(std::mem::take(&mut batch))?;
            }
        }
        // Encodings of people who no longer exist (merged away, erased during a run).
        for item in self
            .store()
            .scan_prefix(Keyspace::Matching, ENCODING_PREFIX)
        {
            let (key, _) = item?;
            let id = key[ENCODING_PREFIX.len()..]
                .try_into()
                .map(ProfileId::from_bytes);
            if id.is_ok_and(|id| vault.person_key(&id).ok().flatten().is_none()) {
                batch.delete(Keyspace::Matching, key);
                report.removed += 1;
            }
        }
        // The candidate search below reads the blind index as just written.
        self.store().commit(batch)?.wait_durable()?;
        Ok(population)
    }

    /// Step 2: candidate pairs from the blind index of blocking keys, read in key order (one
    /// block after the other); keys of people not in the run are removed.
    fn candidates_from_index(
        &self,
        population: &Population,
        report: &mut MatchingReport,
    ) -> Result<Vec<cdp_identity::fuzzy::link::Candidate>, EngineError> {
        let mut blocks: Vec<(u8, Vec<u32>)> = Vec::new();
        let mut current: Option<(u8, [u8; 16])> = None;
        let mut stale = WriteBatch::new();
        for item in self.store().scan_prefix(Keyspace::Matching, BLOCK_PREFIX) {
            let (key, _) = item?;
            let Some((block, id)) = parse_block_key(&key) else {
                continue;
            };
            let Some(&position) = population.position.get(&id) else {
                stale.delete(Keyspace::Matching, key);
                continue;
            };
            if current != Some(block) {
                current = Some(block);
                blocks.push((block.0, Vec::new()));
            }
            if let Some((_, members)) = blocks.last_mut() {
                members.push(position);
            }
        }
        if !stale.is_empty() {
            report.removed += stale.len() as u64;
            let _pending = self.store().commit(stale)?;
        }
        Ok(candidates_of_blocks(
            blocks,
            self.config.matching.link.max_block,
            |_, _| true,
        ))
    }
}

/// Hex digest naming a schema (kept with the model it was estimated for).
fn schema_digest(schema: &FuzzySchema) -> String {
    crate::records::hex::encode(&cdp_crypto::digest16(&[
        b"fuzzy-schema/v1",
        &serde_json::to_vec(schema).unwrap_or_default(),
    ]))
}

fn matching_off() -> EngineError {
    EngineError::Conflict(
        "fuzzy matching is off: name the jurisdictions where it may run in [matching] jurisdictions of the configuration".into(),
    )
}

/// Each field's part of a pair's weight, as the explanation and the review queue show it.
fn contributions(
    pair: &cdp_identity::fuzzy::link::Scored,
    model: &Model,
) -> Vec<FieldContribution> {
    pair.explain(model)
        .into_iter()
        .map(|c| FieldContribution {
            field: c.field,
            level: c.level.to_string(),
            weight: c.weight,
        })
        .collect()
}
