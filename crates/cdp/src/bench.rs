//! `cdp bench ...`: figures to compare with the budgets of performance.md. Benchmarks print
//! measurements; they do not pass or fail (CI runs them small to show they work).

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use cdp_core::IdentifierType;
use cdp_crypto::{DataKey, KeyVersion, Keyring, RecordAad, open, seal};
use cdp_store::{DataDir, Keyspace, SledStore, SledStoreOptions, Store, Vault, WriteBatch};
use clap::{Args, Subcommand};

#[derive(Debug, Subcommand)]
pub enum BenchCommand {
    /// Seal/open rates of 512-byte records, blind-index and key-wrap rates.
    Crypto(CryptoArgs),
    /// Durable commit throughput of the store under concurrent writers (group commit).
    Store(StoreArgs),
    /// Ingestion over HTTP batches (identity resolution, encryption, durable acknowledgement)
    /// of synthetic cross-channel events, and the precision/recall of "same person".
    Ingest(IngestArgs),
    /// Policy decisions per second (one thread): the per-person check every audience and
    /// export makes.
    Policy(PolicyArgs),
    /// Audience count latency (1 to 5 clauses, with policy filtering) over a synthetic index
    /// of N people, and index freshness after an acknowledged write.
    Audience(AudienceArgs),
    /// Export throughput: a real store of N people (ingested through the engine), an export
    /// job deciding each member, pseudonymising, hashing and sealing the file.
    Export(ExportArgs),
}

#[derive(Debug, Args)]
pub struct ExportArgs {
    /// People in the store (all in the audience).
    #[arg(long, default_value_t = 100_000)]
    profiles: u64,
    /// Directory for the store (default: a temporary directory).
    #[arg(long)]
    dir: Option<std::path::PathBuf>,
    /// sled page cache in MiB (the `[store] cache_capacity_mb` of the configuration).
    #[arg(long, default_value_t = 256)]
    cache_mb: u64,
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Args)]
pub struct AudienceArgs {
    /// People in the synthetic index.
    #[arg(long, default_value_t = 1_000_000)]
    profiles: u64,
    /// Counts per query shape.
    #[arg(long, default_value_t = 200)]
    queries: usize,
    /// Freshness samples (ingest one event, wait until a count shows it).
    #[arg(long, default_value_t = 20)]
    freshness_samples: usize,
    #[arg(long, default_value_t = 42)]
    seed: u64,
    /// Directory for the index and store (default: a temporary directory).
    #[arg(long)]
    dir: Option<std::path::PathBuf>,
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Args)]
pub struct PolicyArgs {
    /// Decisions per measurement.
    #[arg(long, default_value_t = 200_000)]
    decisions: u64,
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Args)]
pub struct IngestArgs {
    /// People to generate (each has 5 to 15 events).
    #[arg(long, default_value_t = 10_000)]
    people: u64,
    /// Exactly this many events per person instead of 5 to 15 (large stores in less time).
    #[arg(long)]
    events_per_person: Option<u64>,
    #[arg(long, default_value_t = 42)]
    seed: u64,
    /// Messages per HTTP batch.
    #[arg(long, default_value_t = 100)]
    batch_size: usize,
    /// Concurrent HTTP clients.
    #[arg(long, default_value_t = 8)]
    clients: usize,
    /// Directory to create the benchmark store in (default: a temporary directory).
    #[arg(long)]
    dir: Option<std::path::PathBuf>,
    /// sled page cache in MiB (the `[store] cache_capacity_mb` of the configuration).
    #[arg(long, default_value_t = 256)]
    cache_mb: u64,
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Args)]
pub struct CryptoArgs {
    /// Operations per measurement.
    #[arg(long, default_value_t = 1_000_000)]
    records: u64,
    /// Record size in bytes.
    #[arg(long, default_value_t = 512)]
    record_bytes: usize,
    /// Print one JSON object instead of a table.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Args)]
pub struct StoreArgs {
    /// Concurrent writers.
    #[arg(long, default_value_t = 64)]
    writers: u64,
    /// Batches per writer.
    #[arg(long, default_value_t = 200)]
    batches: u64,
    /// Sealed 512-byte records per batch.
    #[arg(long, default_value_t = 10)]
    records_per_batch: u64,
    /// Directory to create the benchmark store in (default: a temporary directory).
    #[arg(long)]
    dir: Option<std::path::PathBuf>,
    /// Records put into the store before measuring, under random keys (the engine's keys are
    /// random profile ids, blind indexes and digests), in batches of 1,000: what a write and a
    /// point read cost once the store is large. Their rate is reported per million.
    #[arg(long, default_value_t = 0)]
    preload: u64,
    /// Point reads of preloaded records, at random, on one thread (with `--preload`).
    #[arg(long, default_value_t = 100_000)]
    reads: u64,
    /// Measured records under random keys, instead of one batch's records next to each other.
    #[arg(long)]
    random_keys: bool,
    /// sled page cache in MiB (the `[store] cache_capacity_mb` of the configuration).
    #[arg(long, default_value_t = 256)]
    cache_mb: u64,
    #[arg(long)]
    json: bool,
}

pub fn run(command: BenchCommand) -> anyhow::Result<()> {
    match command {
        BenchCommand::Crypto(args) => crypto(args),
        BenchCommand::Store(args) => store(args),
        BenchCommand::Ingest(args) => ingest(args),
        BenchCommand::Policy(args) => policy(args),
        BenchCommand::Audience(args) => audience(args),
        BenchCommand::Export(args) => export(args),
    }
}

/// Synthetic people for the policy benchmark: residency, age and a few consent records.
fn policy_subjects(count: usize) -> Vec<cdp_policy::SubjectFacts> {
    use cdp_policy::{ConsentFact, ConsentStatus, SubjectFacts};
    let at = time::macros::datetime!(2026-01-10 0:00 UTC);
    (0..count)
        .map(|i| {
            let status = if i % 5 == 0 {
                ConsentStatus::Withdrawn
            } else {
                ConsentStatus::Granted
            };
            let fact = |purpose: &str, status, origin: &str, separate, recipient: Option<&str>| {
                ConsentFact {
                    purpose: purpose.into(),
                    status,
                    recipient: recipient.map(str::to_string),
                    separate,
                    guardian: false,
                    notice_version: Some("2026-01".into()),
                    origin: origin.into(),
                    at,
                }
            };
            SubjectFacts {
                residency: Some(if i % 3 == 0 { "DE" } else { "CN" }.into()),
                regions: vec!["CN".into()],
                age: Some(18 + (i % 50) as u32),
                restricted: false,
                consents: vec![
                    fact("marketing.sms", status, "phone:1", false, None),
                    fact(
                        "analytics",
                        ConsentStatus::Granted,
                        "user_id:2",
                        false,
                        None,
                    ),
                    fact(
                        "personalization",
                        ConsentStatus::Granted,
                        "profile",
                        false,
                        None,
                    ),
                    fact(
                        "marketing.sms",
                        ConsentStatus::Granted,
                        "profile",
                        true,
                        Some("r_sms"),
                    ),
                ],
            }
        })
        .collect()
}

fn policy(args: PolicyArgs) -> anyhow::Result<()> {
    use cdp_policy::{Action, DecisionRequest, RecipientFacts, RecipientRole};
    anyhow::ensure!(args.decisions > 0, "--decisions must be at least 1");
    let policies = crate::policy::load(None)?;
    let subjects = policy_subjects(1024);
    let export = DecisionRequest {
        action: Action::Export,
        purpose: "marketing.sms".into(),
        caller: Some(cdp_policy::CallerFacts {
            roles: vec!["marketer".into()],
            purposes: Vec::new(),
        }),
        recipient: Some(RecipientFacts {
            id: "r_sms".into(),
            role: RecipientRole::Processor,
            region: "CN".into(),
            transfer_mechanism: "none".into(),
            allowed_purposes: vec!["marketing.sms".into()],
        }),
        fields: vec![
            "identifiers.phone".into(),
            "traits.city".into(),
            "traits.health_conditions".into(),
        ],
    };
    let audience = DecisionRequest {
        action: Action::Audience,
        purpose: "marketing.advertising.first_party".into(),
        caller: None,
        recipient: None,
        fields: Vec::new(),
    };
    let mut allowed = 0u64;
    let rates = [
        measure(
            "export decision (recipient, 3 fields)",
            args.decisions,
            ">= 100k profiles/s for exports",
            |i| {
                let decision = policies.decide(&export, &subjects[(i % 1024) as usize]);
                allowed += u64::from(decision.allowed());
            },
        ),
        measure("audience decision (no fields)", args.decisions, "-", |i| {
            std::hint::black_box(policies.decide(&audience, &subjects[(i % 1024) as usize]));
        }),
    ];
    anyhow::ensure!(
        allowed > 0 && allowed < args.decisions,
        "the synthetic subjects should be partly allowed, partly denied"
    );
    if args.json {
        let entries = rates_json(&rates);
        println!(
            "{{\"policy_version\":\"{}\",\"allowed_share\":{:.3},\"results\":[{}]}}",
            policies.version,
            allowed as f64 / args.decisions as f64,
            entries
        );
    } else {
        println!(
            "cdp bench policy: {} decisions each, one thread, policies {}",
            args.decisions, policies.version
        );
        println!(
            "{:<40} {:>14} {:>10}   performance.md reference",
            "decision", "ops/s", "ns/op"
        );
        for rate in &rates {
            println!(
                "{:<40} {:>14.0} {:>10.1}   {}",
                rate.name,
                rate.per_second(),
                rate.nanos(),
                rate.budget
            );
        }
    }
    Ok(())
}

struct Rate {
    name: &'static str,
    ops: u64,
    elapsed: Duration,
    budget: &'static str,
}

impl Rate {
    fn per_second(&self) -> f64 {
        self.ops as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }

    fn nanos(&self) -> f64 {
        self.elapsed.as_nanos() as f64 / self.ops.max(1) as f64
    }
}

/// The rates as JSON objects (name, ops, per_second, ns_per_op), joined with commas.
fn rates_json(rates: &[Rate]) -> String {
    rates
        .iter()
        .map(|r| {
            format!(
                "{{\"name\":\"{}\",\"ops\":{},\"per_second\":{:.0},\"ns_per_op\":{:.1}}}",
                r.name,
                r.ops,
                r.per_second(),
                r.nanos()
            )
        })
        .collect::<Vec<_>>()
        .join(",")
}

fn measure(name: &'static str, ops: u64, budget: &'static str, mut body: impl FnMut(u64)) -> Rate {
    let started = Instant::now();
    for index in 0..ops {
        body(index);
    }
    Rate {
        name,
        ops,
        elapsed: started.elapsed(),
        budget,
    }
}

fn crypto(args: CryptoArgs) -> anyhow::Result<()> {
    anyhow::ensure!(args.records > 0, "--records must be at least 1");
    let keyring = Keyring::generate()?;
    let dek = DataKey::generate()?;
    let key = dek.record_key()?;
    let plaintext = vec![0x5au8; args.record_bytes];
    let ids: Vec<[u8; 16]> = (0..1024u64).map(|i| u128::from(i).to_be_bytes()).collect();
    let sealed: Vec<Vec<u8>> = ids
        .iter()
        .map(|id| seal(&key, RecordAad::new("profiles", id), &plaintext))
        .collect::<Result<_, _>>()?;
    let blind = keyring.blind_index_key(KeyVersion::FIRST)?;
    let emails: Vec<String> = (0..1024)
        .map(|i| format!("customer{i:06}@example.com"))
        .collect();
    let wrap_ops = (args.records / 10).max(1);
    let wrapped = keyring.wrap_data_key(&dek, b"owner")?;

    let mut failures = 0u64;
    let rates = [
        measure(
            "seal (AES-256-GCM, per-person key)",
            args.records,
            "6.0M/s (167 ns)",
            |i| {
                let id = &ids[(i % 1024) as usize];
                failures +=
                    u64::from(seal(&key, RecordAad::new("profiles", id), &plaintext).is_err());
            },
        ),
        measure(
            "open (AES-256-GCM, per-person key)",
            args.records,
            "about seal's",
            |i| {
                let slot = (i % 1024) as usize;
                failures += u64::from(
                    open(&key, RecordAad::new("profiles", &ids[slot]), &sealed[slot]).is_err(),
                );
            },
        ),
        measure(
            "blind index (HMAC-SHA256, e-mail)",
            args.records,
            "4.9M/s (205 ns)",
            |i| {
                std::hint::black_box(
                    blind.index(&IdentifierType::Email, &emails[(i % 1024) as usize]),
                );
            },
        ),
        measure("data key wrap (new person)", wrap_ops, "-", |_| {
            failures += u64::from(keyring.wrap_data_key(&dek, b"owner").is_err());
        }),
        measure("data key unwrap (person read)", wrap_ops, "-", |_| {
            failures += u64::from(keyring.unwrap_data_key(&wrapped, b"owner").is_err());
        }),
    ];
    anyhow::ensure!(
        failures == 0,
        "{failures} operations failed during the benchmark"
    );
    if args.json {
        let entries = rates_json(&rates);
        println!(
            "{{\"record_bytes\":{},\"results\":[{}]}}",
            args.record_bytes, entries
        );
    } else {
        println!(
            "cdp bench crypto: {} ops each, {}-byte records, one thread",
            args.records, args.record_bytes
        );
        println!(
            "{:<38} {:>14} {:>10}   performance.md reference",
            "operation", "ops/s", "ns/op"
        );
        for rate in &rates {
            println!(
                "{:<38} {:>14.0} {:>10.1}   {}",
                rate.name,
                rate.per_second(),
                rate.nanos(),
                rate.budget
            );
        }
    }
    Ok(())
}

fn percentile(sorted: &[Duration], fraction: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let index = ((sorted.len() as f64 - 1.0) * fraction).round() as usize;
    sorted[index.min(sorted.len() - 1)]
}

/// A fresh store for a benchmark, in `dir` or a temporary directory removed on drop.
struct BenchStore {
    index_dir: std::path::PathBuf,
    sled: Arc<SledStore>,
    store: Arc<dyn Store>,
    vault: Arc<Vault>,
    _temporary: Option<tempfile::TempDir>,
}

impl BenchStore {
    fn create(dir: Option<&std::path::Path>, name: &str) -> anyhow::Result<Self> {
        Self::create_with_cache(dir, name, SledStoreOptions::default().cache_capacity)
    }

    fn create_with_cache(
        dir: Option<&std::path::Path>,
        name: &str,
        cache_capacity: u64,
    ) -> anyhow::Result<Self> {
        let temporary = match dir {
            Some(_) => None,
            None => Some(tempfile::tempdir().context("cannot create a temporary directory")?),
        };
        let root = dir
            .or(temporary.as_ref().map(|t| t.path()))
            .context("no directory")?;
        let data_dir = DataDir::new(root.join(name));
        anyhow::ensure!(
            !data_dir.root().exists(),
            "{} already exists",
            data_dir.root().display()
        );
        // Nothing to verify in a new store; the benchmark measures ingestion, not start-up.
        let options = SledStoreOptions {
            verify_on_open: false,
            cache_capacity,
        };
        let index_dir = data_dir.index_dir();
        let sled = SledStore::open(&data_dir, &options)?;
        let store: Arc<dyn Store> = sled.clone();
        let vault = Arc::new(Vault::open(
            store.clone(),
            Arc::new(Keyring::generate()?),
            &data_dir,
        )?);
        Ok(Self {
            index_dir,
            sled,
            store,
            vault,
            _temporary: temporary,
        })
    }
}

fn store(args: StoreArgs) -> anyhow::Result<()> {
    anyhow::ensure!(
        args.writers > 0 && args.batches > 0,
        "--writers and --batches must be at least 1"
    );
    let bench = BenchStore::create_with_cache(
        args.dir.as_deref(),
        "bench-store",
        args.cache_mb.max(16) * 1024 * 1024,
    )?;
    let (sled, store, vault) = (bench.sled.clone(), bench.store.clone(), bench.vault.clone());
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let scale = if args.preload > 0 {
        Some(store_at_scale(
            &runtime,
            &vault,
            sled.data_dir().root(),
            &args,
        )?)
    } else {
        None
    };
    let started = Instant::now();
    let latencies: Vec<Duration> = runtime.block_on(async {
        let mut tasks = Vec::new();
        for _ in 0..args.writers {
            let vault = vault.clone();
            let records = args.records_per_batch;
            let batches = args.batches;
            let random_keys = args.random_keys;
            tasks.push(tokio::spawn(async move {
                let mut latencies = Vec::with_capacity(batches as usize);
                let payload = vec![0x42u8; 512];
                for _ in 0..batches {
                    let begun = Instant::now();
                    let profile = cdp_crypto::random_profile_id()?;
                    let mut batch = WriteBatch::new();
                    let key = vault.create_person_key(&profile, &mut batch)?;
                    for record in 0..records {
                        let id = if random_keys {
                            cdp_crypto::random_bytes::<16>()?.to_vec()
                        } else {
                            [profile.as_bytes().as_slice(), &record.to_be_bytes()].concat()
                        };
                        let sealed = vault.seal_person(&key, Keyspace::Events, &id, &payload)?;
                        batch.put(Keyspace::Events, id, sealed);
                    }
                    vault.store().commit(batch)?.durable().await?;
                    latencies.push(begun.elapsed());
                }
                anyhow::Ok(latencies)
            }));
        }
        let mut all = Vec::new();
        for task in tasks {
            all.extend(task.await??);
        }
        anyhow::Ok(all)
    })?;
    let elapsed = started.elapsed();
    let stats = store.stats();
    sled.close()?;
    let mut sorted = latencies;
    sorted.sort();
    let batches = sorted.len() as f64;
    let records = batches * args.records_per_batch as f64;
    let seconds = elapsed.as_secs_f64();
    let (p50, p99) = (percentile(&sorted, 0.5), percentile(&sorted, 0.99));
    if args.json {
        let scale_json = scale.as_ref().map_or_else(String::new, |scale| {
            format!(",\"preload\":{}", scale.json())
        });
        println!(
            "{{\"writers\":{},\"batches\":{},\"records\":{},\"seconds\":{seconds:.3},\"batches_per_second\":{:.0},\"records_per_second\":{:.0},\"flushes\":{},\"p50_ms\":{:.3},\"p99_ms\":{:.3},\"random_keys\":{}{scale_json}}}",
            args.writers,
            batches,
            records,
            batches / seconds,
            records / seconds,
            stats.flushes,
            p50.as_secs_f64() * 1e3,
            p99.as_secs_f64() * 1e3,
            args.random_keys
        );
    } else {
        if let Some(scale) = &scale {
            scale.print();
        }
        println!(
            "cdp bench store: {} writers x {} batches x {} sealed 512-byte records{}, durable acknowledgement",
            args.writers,
            args.batches,
            args.records_per_batch,
            if args.random_keys {
                " under random keys"
            } else {
                " (a batch's records next to each other)"
            }
        );
        println!("  {batches:.0} batches, {records:.0} records in {seconds:.2} s");
        println!(
            "  {:.0} durable batches/s, {:.0} records/s",
            batches / seconds,
            records / seconds
        );
        println!(
            "  {} flushes for {} commits: {:.1} commits per fsync (group commit)",
            stats.flushes,
            stats.commits,
            stats.commits as f64 / stats.flushes.max(1) as f64
        );
        println!(
            "  commit latency p50 {:.2} ms, p99 {:.2} ms",
            p50.as_secs_f64() * 1e3,
            p99.as_secs_f64() * 1e3
        );
    }
    Ok(())
}

/// The key of preloaded record `index`: 16 bytes spread like a random id, computable again
/// for reads (SplitMix64 of the index, twice).
fn preload_key(index: u64) -> [u8; 16] {
    fn mix(mut z: u64) -> u64 {
        z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    let mut key = [0u8; 16];
    key[..8].copy_from_slice(&mix(index).to_be_bytes());
    key[8..].copy_from_slice(&mix(index ^ 0x5555_5555_5555_5555).to_be_bytes());
    key
}

/// What the store costs per key once it is large (`cdp bench store --preload N`).
struct StoreAtScale {
    records: u64,
    /// Records per second while loading each successive million (the last chunk may be
    /// smaller): the applier's rate of random inserts as the tree grows.
    load_rates: Vec<(u64, f64)>,
    load_seconds: f64,
    reads: Vec<Duration>,
    read_seconds: f64,
    disk_bytes: u64,
}

impl StoreAtScale {
    fn read_rate(&self) -> f64 {
        self.reads.len() as f64 / self.read_seconds.max(f64::EPSILON)
    }

    fn print(&self) {
        println!(
            "cdp bench store --preload: {} sealed 512-byte records under random keys, batches of 1,000, loaded in {:.1} s",
            self.records, self.load_seconds
        );
        for (upto, rate) in &self.load_rates {
            println!(
                "  inserts up to {upto:>10} records: {rate:>8.0} records/s ({:.1} us per insert)",
                1e6 / rate.max(f64::EPSILON)
            );
        }
        println!(
            "  point reads of random records (one thread): {:.0}/s, p50 {:.1} us, p99 {:.1} us",
            self.read_rate(),
            percentile(&self.reads, 0.5).as_secs_f64() * 1e6,
            percentile(&self.reads, 0.99).as_secs_f64() * 1e6
        );
        println!(
            "  data directory: {:.1} GiB",
            self.disk_bytes as f64 / (1u64 << 30) as f64
        );
    }

    fn json(&self) -> String {
        let rates: Vec<String> = self
            .load_rates
            .iter()
            .map(|(upto, rate)| format!("{{\"upto\":{upto},\"records_per_second\":{rate:.0}}}"))
            .collect();
        format!(
            "{{\"records\":{},\"load_seconds\":{:.3},\"load_rates\":[{}],\"reads\":{},\"reads_per_second\":{:.0},\"read_p50_us\":{:.2},\"read_p99_us\":{:.2},\"disk_bytes\":{}}}",
            self.records,
            self.load_seconds,
            rates.join(","),
            self.reads.len(),
            self.read_rate(),
            percentile(&self.reads, 0.5).as_secs_f64() * 1e6,
            percentile(&self.reads, 0.99).as_secs_f64() * 1e6,
            self.disk_bytes
        )
    }
}

/// Bytes of the files under `dir`.
fn disk_usage(dir: &std::path::Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    entries
        .flatten()
        .map(|entry| match entry.metadata() {
            Ok(meta) if meta.is_dir() => disk_usage(&entry.path()),
            Ok(meta) => meta.len(),
            Err(_) => 0,
        })
        .sum()
}

/// Loads `--preload` records under random keys (one writer: commits queue without waiting,
/// so the rate is the store's own, its applier's), then times random point reads.
fn store_at_scale(
    runtime: &tokio::runtime::Runtime,
    vault: &Arc<Vault>,
    root: &std::path::Path,
    args: &StoreArgs,
) -> anyhow::Result<StoreAtScale> {
    const BATCH: u64 = 1_000;
    const CHUNK: u64 = 1_000_000;
    let payload = vec![0x42u8; 512];
    let key = DataKey::generate()?;
    let store = vault.store();
    let started = Instant::now();
    let mut load_rates = Vec::new();
    let mut chunk_started = Instant::now();
    let mut chunk_first = 0u64;
    let mut index = 0u64;
    while index < args.preload {
        let mut batch = WriteBatch::new();
        for _ in 0..BATCH.min(args.preload - index) {
            let id = preload_key(index);
            let sealed = vault.seal_person(&key, Keyspace::Events, &id, &payload)?;
            batch.put(Keyspace::Events, id.to_vec(), sealed);
            index += 1;
        }
        let ticket = store.commit(batch)?;
        if index - chunk_first >= CHUNK || index == args.preload {
            // The chunk counts once the applier has written it (durable = applied to sled).
            runtime.block_on(ticket.durable())?;
            let seconds = chunk_started.elapsed().as_secs_f64();
            load_rates.push((index, (index - chunk_first) as f64 / seconds));
            chunk_first = index;
            chunk_started = Instant::now();
        }
    }
    let load_seconds = started.elapsed().as_secs_f64();
    let mut rng = Rng(0x2545_F491_4F6C_DD1D);
    let mut reads = Vec::with_capacity(args.reads as usize);
    let read_started = Instant::now();
    for _ in 0..args.reads {
        let id = preload_key(rng.below(args.preload));
        let begun = Instant::now();
        let found = store.get(Keyspace::Events, &id)?;
        reads.push(begun.elapsed());
        anyhow::ensure!(found.is_some(), "a preloaded record is missing");
    }
    let read_seconds = read_started.elapsed().as_secs_f64();
    reads.sort();
    Ok(StoreAtScale {
        records: args.preload,
        load_rates,
        load_seconds,
        reads,
        read_seconds,
        disk_bytes: disk_usage(root),
    })
}

fn ingest(args: IngestArgs) -> anyhow::Result<()> {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use base64::Engine as _;
    use cdp_core::Channel;

    anyhow::ensure!(
        args.people > 0 && args.batch_size > 0 && args.clients > 0,
        "--people, --batch-size and --clients must be at least 1"
    );
    let bench = BenchStore::create_with_cache(
        args.dir.as_deref(),
        "bench-ingest",
        args.cache_mb.max(16) * 1024 * 1024,
    )?;
    let (sled, store, vault) = (bench.sled.clone(), bench.store.clone(), bench.vault.clone());
    let engine = Arc::new(cdp_engine::Engine::new(
        vault,
        cdp_engine::EngineConfig::default(),
        Arc::new(crate::policy::load(None)?),
    ));
    // The indexer follows the change feed as in `serve`: its work competes for the cores.
    let index = Arc::new(cdp_index::PersonIndex::open(&bench.index_dir)?);
    engine.attach_index(index.clone());
    let indexer = Arc::new(cdp_engine::Indexer::new(
        engine.clone(),
        index.clone(),
        Default::default(),
    ));
    indexer.start()?;
    let stop_indexer = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let indexer_thread = {
        let (indexer, stop) = (indexer.clone(), stop_indexer.clone());
        std::thread::spawn(move || indexer.run(&stop))
    };
    let mut write_keys = std::collections::BTreeMap::new();
    for channel in Channel::ALL {
        let (_, key, ticket) = engine.create_source(channel.as_str(), channel, Some("CN"))?;
        ticket.wait_durable()?;
        let header = format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(format!("{key}:"))
        );
        write_keys.insert(channel, header);
    }

    let generated_at = Instant::now();
    let generated = crate::demo::generate(args.people, args.seed, args.events_per_person);
    let generation = generated_at.elapsed();
    // Batches per channel, in event-time order (a source sends its events roughly in order).
    let mut pending: std::collections::BTreeMap<Channel, Vec<serde_json::Value>> =
        Default::default();
    let mut batches: Vec<(Channel, String, usize)> = Vec::new();
    let total_events = generated.events.len();
    for event in generated.events {
        let list = pending.entry(event.channel).or_default();
        list.push(event.message);
        if list.len() >= args.batch_size {
            let batch = std::mem::take(list);
            batches.push((
                event.channel,
                serde_json::json!({ "batch": batch }).to_string(),
                batch.len(),
            ));
        }
    }
    for (channel, list) in pending {
        if !list.is_empty() {
            let count = list.len();
            batches.push((
                channel,
                serde_json::json!({ "batch": list }).to_string(),
                count,
            ));
        }
    }

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let token_key = Arc::new(
        cdp_crypto::TokenKey::hs256(&cdp_crypto::random_bytes::<32>()?, "cdp", "cdp-api")
            .map_err(|e| anyhow::anyhow!(e))?,
    );
    let app = cdp_server::router(
        engine.clone(),
        token_key,
        Arc::new(cdp_server::HttpMetrics::new()),
        &cdp_server::ServerConfig::default(),
    );
    let listener = runtime.block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))?;
    let addr = listener.local_addr()?;
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let server = runtime.spawn(cdp_server::serve(
        listener,
        app,
        async move {
            let _ = stop_rx.await;
        },
        std::time::Duration::from_secs(10),
    ));

    let next = AtomicUsize::new(0);
    let failures = AtomicUsize::new(0);
    let sending = std::sync::atomic::AtomicBool::new(true);
    let acknowledged = AtomicUsize::new(0);
    let started = Instant::now();
    let (mut latencies, elapsed, (mut freshness, progress)) = std::thread::scope(|scope| {
        // Freshness under load: every 50 ms, the newest durable (acknowledgeable) sequence
        // number; its lag is the time until the index has taken it in.
        let monitor = scope.spawn(|| {
            let durable = store.subscribe_durable();
            let mut waiting: std::collections::VecDeque<(u64, Instant)> = Default::default();
            let mut lags = Vec::new();
            // (seconds since the start, events acknowledged): the rate late in the run, when
            // the store is largest.
            let mut progress: Vec<(f64, usize)> = Vec::new();
            let mut last_sample = Instant::now();
            while sending.load(Ordering::Relaxed) || !waiting.is_empty() {
                let indexed = indexer.current().seq;
                while waiting.front().is_some_and(|(seq, _)| *seq <= indexed) {
                    if let Some((_, at)) = waiting.pop_front() {
                        lags.push(at.elapsed());
                    }
                }
                if sending.load(Ordering::Relaxed)
                    && last_sample.elapsed() >= Duration::from_millis(50)
                {
                    let seq = *durable.borrow();
                    if seq > indexed {
                        waiting.push_back((seq, Instant::now()));
                    }
                    progress.push((
                        started.elapsed().as_secs_f64(),
                        acknowledged.load(Ordering::Relaxed),
                    ));
                    last_sample = Instant::now();
                }
                if waiting
                    .front()
                    .is_some_and(|(_, at)| at.elapsed() > Duration::from_secs(600))
                {
                    break;
                }
                std::thread::sleep(Duration::from_millis(2));
            }
            (lags, progress)
        });
        let workers: Vec<_> = (0..args.clients)
            .map(|_| {
                scope.spawn(|| {
                    let agent: ureq::Agent = ureq::Agent::config_builder()
                        .http_status_as_error(false)
                        .build()
                        .into();
                    let url = format!("http://{addr}/v1/batch");
                    let mut latencies = Vec::new();
                    loop {
                        let index = next.fetch_add(1, Ordering::Relaxed);
                        let Some((channel, body, count)) = batches.get(index) else {
                            break;
                        };
                        let begun = Instant::now();
                        let result = agent
                            .post(&url)
                            .header("Authorization", &write_keys[channel])
                            .header("Content-Type", "application/json")
                            .send(body.as_bytes());
                        match result {
                            Ok(response) if response.status().as_u16() == 200 => {
                                latencies.push(begun.elapsed());
                                acknowledged.fetch_add(*count, Ordering::Relaxed);
                            }
                            _ => {
                                failures.fetch_add(1, Ordering::Relaxed);
                            }
                        }
                    }
                    latencies
                })
            })
            .collect();
        let latencies: Vec<Duration> = workers
            .into_iter()
            .flat_map(|worker| worker.join().unwrap_or_default())
            .collect();
        let elapsed = started.elapsed();
        sending.store(false, Ordering::Relaxed);
        (latencies, elapsed, monitor.join().unwrap_or_default())
    });
    freshness.sort();
    // Events per second over the last fifth of the run.
    let last_fifth = {
        let from = elapsed.as_secs_f64() * 0.8;
        match progress.iter().find(|(at, _)| *at >= from) {
            Some((at, acked)) if elapsed.as_secs_f64() > *at => {
                (total_events - acked) as f64 / (elapsed.as_secs_f64() - at)
            }
            _ => total_events as f64 / elapsed.as_secs_f64(),
        }
    };
    let (fresh_p50, fresh_p99, fresh_max) = (
        percentile(&freshness, 0.5),
        percentile(&freshness, 0.99),
        freshness.last().copied().unwrap_or_default(),
    );
    let _ = stop_tx.send(());
    let _ = runtime.block_on(server);
    // How long after the last acknowledgement the index holds everything.
    let last_seq = *store.subscribe_durable().borrow();
    while indexer.current().seq < last_seq {
        anyhow::ensure!(
            started.elapsed() < elapsed + Duration::from_secs(600),
            "the index did not catch up within 10 minutes"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    let index_lag = started.elapsed().saturating_sub(elapsed);
    stop_indexer.store(true, std::sync::atomic::Ordering::Relaxed);
    let _ = indexer_thread.join();
    let indexed = index.len();
    let failures = failures.load(Ordering::Relaxed);
    anyhow::ensure!(failures == 0, "{failures} batches were not acknowledged");

    let evaluated_at = Instant::now();
    let mut assignments = Vec::with_capacity(generated.truth.len());
    for (kind, value, person) in &generated.truth {
        let kind: cdp_core::IdentifierType = kind
            .parse()
            .map_err(|_| anyhow::anyhow!("bad truth type"))?;
        let profile = engine
            .profile_of_identifier(&kind, value, Some("CN"))?
            .map(|p| p.to_string());
        assignments.push((*person, profile));
    }
    let evaluation = evaluated_at.elapsed();
    let quality = crate::demo::quality(&assignments);
    let stats = store.stats();
    sled.close()?;
    latencies.sort();
    let per_second = total_events as f64 / elapsed.as_secs_f64();
    let (p50, p99) = (percentile(&latencies, 0.5), percentile(&latencies, 0.99));
    if args.json {
        println!(
            "{{\"people\":{},\"events\":{total_events},\"batches\":{},\"seconds\":{:.3},\"events_per_second\":{per_second:.0},\"p50_ms\":{:.2},\"p99_ms\":{:.2},\"commits\":{},\"flushes\":{},\"precision\":{:.5},\"recall\":{:.5},\"f1\":{:.5},\"profiles\":{},\"true_people\":{},\"largest_profile\":{},\"unresolved\":{},\"indexed\":{indexed},\"index_lag_ms\":{:.0},\"freshness_p50_ms\":{:.0},\"freshness_p99_ms\":{:.0},\"freshness_max_ms\":{:.0},\"last_fifth_events_per_second\":{last_fifth:.0}}}",
            args.people,
            batches.len(),
            elapsed.as_secs_f64(),
            p50.as_secs_f64() * 1e3,
            p99.as_secs_f64() * 1e3,
            stats.commits,
            stats.flushes,
            quality.precision,
            quality.recall,
            quality.f1,
            quality.predicted_profiles,
            quality.true_people,
            quality.largest_profile,
            quality.unresolved,
            index_lag.as_secs_f64() * 1e3,
            fresh_p50.as_secs_f64() * 1e3,
            fresh_p99.as_secs_f64() * 1e3,
            fresh_max.as_secs_f64() * 1e3
        );
    } else {
        println!(
            "cdp bench ingest: {} people, {total_events} events, {} batches of <= {} over HTTP, {} clients",
            args.people,
            batches.len(),
            args.batch_size,
            args.clients
        );
        println!(
            "  generated in {:.2} s; ingested in {:.2} s",
            generation.as_secs_f64(),
            elapsed.as_secs_f64()
        );
        println!(
            "  {per_second:.0} events/s with identity resolution, encryption and durable acknowledgement (budget >= 20,000); {last_fifth:.0} events/s over the last fifth of the run (largest store)"
        );
        println!(
            "  search index (following the change feed meanwhile): {indexed} people, complete {:.0} ms after the last acknowledgement",
            index_lag.as_secs_f64() * 1e3
        );
        println!(
            "  index freshness under load (durable write -> searchable, {} samples): p50 {:.0} ms, p99 {:.0} ms, max {:.0} ms (budget <= 1,000)",
            freshness.len(),
            fresh_p50.as_secs_f64() * 1e3,
            fresh_p99.as_secs_f64() * 1e3,
            fresh_max.as_secs_f64() * 1e3
        );
        println!(
            "  batch latency p50 {:.1} ms, p99 {:.1} ms; {} commits, {} flushes",
            p50.as_secs_f64() * 1e3,
            p99.as_secs_f64() * 1e3,
            stats.commits,
            stats.flushes
        );
        println!(
            "  same-person pairs: precision {:.4}, recall {:.4}, F1 {:.4} ({} profiles for {} people; largest profile {} identifiers; {} identifiers unresolved; evaluated in {:.1} s)",
            quality.precision,
            quality.recall,
            quality.f1,
            quality.predicted_profiles,
            quality.true_people,
            quality.largest_profile,
            quality.unresolved,
            evaluation.as_secs_f64()
        );
    }
    Ok(())
}

/// A small deterministic generator (xorshift64*): benchmarks must not depend on a seedless RNG.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }

    fn pick<'a>(&mut self, items: &'a [&'a str]) -> &'a str {
        items[self.below(items.len() as u64) as usize]
    }
}

const BENCH_CITIES: &[&str] = &[
    "上海", "北京", "广州", "深圳", "杭州", "成都", "武汉", "南京", "重庆", "西安", "苏州", "天津",
    "长沙", "郑州", "青岛", "沈阳", "宁波", "厦门", "合肥", "福州",
];
const BENCH_CATEGORIES: &[&str] = &[
    "shoes", "bags", "coats", "tea", "beauty", "toys", "home", "sports",
];
const BENCH_PURPOSES: &[&str] = &[
    "marketing.sms",
    "marketing.email",
    "analytics",
    "personalization",
];

/// A synthetic person as the engine would index them.
fn synthetic_doc(i: u64, rng: &mut Rng) -> cdp_index::IndexDoc {
    let buyer = rng.below(10) < 7;
    let orders = if buyer { 1 + rng.below(12) } else { 0 };
    let monetary_365 = orders as f64 * (50.0 + rng.below(800) as f64);
    let share_90 = rng.below(100) as f64 / 100.0;
    let tier = [
        "vip",
        "high_potential",
        "ordinary",
        "ordinary",
        "ordinary",
        "churn_warning",
    ];
    let lifecycle = ["acquisition", "growth", "maturity", "decline", "churned"];
    let mut keywords: Vec<(&'static str, String)> = vec![
        ("tier", rng.pick(&tier).to_string()),
        ("lifecycle", rng.pick(&lifecycle).to_string()),
        ("city", rng.pick(BENCH_CITIES).to_string()),
        ("region", "CN".into()),
        ("jurisdiction", "pipl".into()),
        (
            "channel",
            rng.pick(&["web", "ios", "android", "mini_program", "pos"])
                .to_string(),
        ),
        (
            "age_band",
            format!(
                "{}-{}",
                10 * (1 + rng.below(7)),
                10 * (1 + rng.below(7)) + 9
            ),
        ),
        ("hesitating", (rng.below(20) == 0).to_string()),
        ("repurchase", (orders >= 2).to_string()),
        ("minor", (rng.below(50) == 0).to_string()),
    ];
    for _ in 0..rng.below(3) {
        keywords.push(("interest", rng.pick(BENCH_CATEGORIES).to_string()));
    }
    let mut numbers = vec![
        ("frequency_365d", orders as f64),
        ("frequency_90d", (orders as f64 * share_90).floor()),
        ("monetary_365d", monetary_365),
        ("monetary_90d", monetary_365 * share_90),
        ("orders_total", orders as f64),
        ("rfm_r", (1 + rng.below(5)) as f64),
        ("rfm_f", (1 + rng.below(5)) as f64),
        ("rfm_m", (1 + rng.below(5)) as f64),
        ("churn_risk", rng.below(100) as f64 / 100.0),
        ("clv_predicted", monetary_365 * 2.5),
        ("event_count", (orders * 5 + rng.below(40)) as f64),
    ];
    if buyer {
        numbers.push(("recency_days", rng.below(400) as f64));
    }
    let mut consent = Vec::new();
    let mut allowed = Vec::new();
    for purpose in BENCH_PURPOSES {
        let state = rng.pick(&["granted", "granted", "none", "denied", "withdrawn"]);
        consent.push(((*purpose).to_string(), state.to_string()));
        if state == "granted" {
            allowed.push((*purpose).to_string());
        }
    }
    let mut events = std::collections::BTreeMap::new();
    if buyer {
        let recent = rng.below(3);
        events.insert(
            "order_completed".to_string(),
            std::collections::BTreeMap::from([(30, recent), (90, recent + 1), (365, orders)])
                .into_iter()
                .filter(|(_, c)| *c > 0)
                .collect(),
        );
    }
    cdp_index::IndexDoc {
        id: format!("p_{:032x}", u128::from(i) << 64 | u128::from(rng.next())),
        key: rng.next(),
        key_low: rng.next(),
        keywords,
        numbers,
        consent,
        traits: vec![(
            "plan".into(),
            rng.pick(&["gold", "silver", "basic"]).to_string(),
        )],
        allowed,
        events,
    }
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn audience(args: AudienceArgs) -> anyhow::Result<()> {
    anyhow::ensure!(
        args.profiles > 0 && args.queries > 0,
        "--profiles and --queries must be at least 1"
    );
    let root = match &args.dir {
        Some(dir) => {
            std::fs::create_dir_all(dir)?;
            tempfile::Builder::new()
                .prefix("bench-audience")
                .tempdir_in(dir)?
        }
        None => tempfile::Builder::new()
            .prefix("bench-audience")
            .tempdir()?,
    };
    let index = cdp_index::PersonIndex::open(&root.path().join("index"))?;
    let mut rng = Rng(args.seed.max(1));
    let build_started = Instant::now();
    let mut batch = Vec::with_capacity(10_000);
    for i in 0..args.profiles {
        batch.push(synthetic_doc(i, &mut rng));
        if batch.len() == 10_000 {
            index.upsert(&batch)?;
            batch.clear();
        }
    }
    index.upsert(&batch)?;
    index.commit("{}")?;
    let build = build_started.elapsed();
    let purposes: Vec<String> = crate::policy::load(None)?
        .taxonomy
        .purposes
        .keys()
        .cloned()
        .collect();

    // 1 to 5 clauses, each run with varied values; counted with the policy filter as the API
    // does (two searches per count).
    let mut shapes = Vec::new();
    for clauses in 1..=5usize {
        let mut latencies = Vec::with_capacity(args.queries);
        let mut last = (0, 0);
        for _ in 0..args.queries {
            let parts = [
                format!("tier:{}", rng.pick(&["vip", "ordinary", "high_potential"])),
                format!("city:{}", rng.pick(BENCH_CITIES)),
                "consent.marketing_sms:granted".to_string(),
                format!("monetary_90d>={}", 100 + rng.below(2000)),
                format!("events.order_completed.30d>={}", 1 + rng.below(2)),
            ];
            let text = parts[..clauses].join(" AND ");
            let condition = cdp_index::query::parse_text(&text, &purposes)?;
            let started = Instant::now();
            last = index.count(&condition, &purposes, Some("marketing.sms"))?;
            latencies.push(started.elapsed());
        }
        latencies.sort();
        shapes.push((
            clauses,
            percentile(&latencies, 0.5),
            percentile(&latencies, 0.99),
            last,
        ));
    }
    let freshness = audience_freshness(root.path(), args.freshness_samples)?;

    if args.json {
        let entries: Vec<String> = shapes
            .iter()
            .map(|(clauses, p50, p99, _)| {
                format!(
                    "{{\"clauses\":{clauses},\"p50_ms\":{:.3},\"p99_ms\":{:.3}}}",
                    ms(*p50),
                    ms(*p99)
                )
            })
            .collect();
        println!(
            "{{\"profiles\":{},\"build_seconds\":{:.2},\"counts\":[{}],\"freshness_p50_ms\":{:.1},\"freshness_max_ms\":{:.1}}}",
            args.profiles,
            build.as_secs_f64(),
            entries.join(","),
            ms(percentile(&freshness, 0.5)),
            ms(freshness.last().copied().unwrap_or_default())
        );
    } else {
        println!(
            "cdp bench audience: {} people indexed in {:.1} s ({:.0} docs/s); {} counts per shape, policy-filtered",
            args.profiles,
            build.as_secs_f64(),
            args.profiles as f64 / build.as_secs_f64().max(1e-9),
            args.queries
        );
        println!(
            "{:<8} {:>10} {:>10} {:>12} {:>12}   budget p50 <= 5 ms, p99 <= 20 ms",
            "clauses", "p50 ms", "p99 ms", "matched", "allowed"
        );
        for (clauses, p50, p99, (matched, allowed)) in &shapes {
            println!(
                "{clauses:<8} {:>10.3} {:>10.3} {matched:>12} {allowed:>12}",
                ms(*p50),
                ms(*p99)
            );
        }
        println!(
            "index freshness after an acknowledged write ({} samples): p50 {:.1} ms, max {:.1} ms (budget 1 s)",
            freshness.len(),
            ms(percentile(&freshness, 0.5)),
            ms(freshness.last().copied().unwrap_or_default())
        );
    }
    Ok(())
}

/// Ingest one identify at a time through the engine (durable), with the indexer thread
/// running as in `serve`; time until a count shows the person.
fn audience_freshness(root: &std::path::Path, samples: usize) -> anyhow::Result<Vec<Duration>> {
    use std::sync::atomic::{AtomicBool, Ordering};

    use cdp_core::Channel;

    let bench = BenchStore::create(Some(root), "freshness")?;
    let engine = Arc::new(cdp_engine::Engine::new(
        bench.vault.clone(),
        cdp_engine::EngineConfig::default(),
        Arc::new(crate::policy::load(None)?),
    ));
    let index = Arc::new(cdp_index::PersonIndex::open(&root.join("freshness-index"))?);
    engine.attach_index(index.clone());
    let indexer = Arc::new(cdp_engine::Indexer::new(
        engine.clone(),
        index.clone(),
        Default::default(),
    ));
    indexer.start()?;
    let stop = Arc::new(AtomicBool::new(false));
    let thread = {
        let (indexer, stop) = (indexer.clone(), stop.clone());
        std::thread::spawn(move || indexer.run(&stop))
    };
    let (source, _, ticket) = engine.create_source("bench", Channel::Web, Some("CN"))?;
    ticket.wait_durable()?;
    let purposes: Vec<String> = engine
        .policies()
        .taxonomy
        .purposes
        .keys()
        .cloned()
        .collect();
    let mut out = Vec::with_capacity(samples);
    for sample in 0..samples {
        let tag = format!("fresh{sample}");
        let body = serde_json::json!({"type": "identify", "userId": format!("f-{sample}"),
            "traits": {"tags": [tag.clone()]}})
        .to_string();
        let parsed = cdp_core::segment::parse_body(
            body.as_bytes(),
            Some(cdp_core::segment::MessageType::Identify),
            time::OffsetDateTime::now_utc(),
            engine.limits(),
        )
        .map_err(|e| anyhow::anyhow!("{e}"))?;
        let mut report = engine.ingest(&source, parsed.messages, false)?;
        if let Some(ticket) = report.ticket.take() {
            ticket.wait_durable()?;
        }
        let acknowledged = Instant::now();
        let condition = cdp_index::query::parse_text(&format!("tag:{tag}"), &purposes)?;
        loop {
            if index.count(&condition, &purposes, None)?.0 > 0 {
                break;
            }
            anyhow::ensure!(
                acknowledged.elapsed() < Duration::from_secs(10),
                "the index did not show an acknowledged write within 10 s"
            );
            std::thread::sleep(Duration::from_millis(1));
        }
        out.push(acknowledged.elapsed());
    }
    stop.store(true, Ordering::Relaxed);
    let _ = thread.join();
    drop(indexer);
    out.sort();
    let _ = &bench.store;
    Ok(out)
}

fn export(args: ExportArgs) -> anyhow::Result<()> {
    use cdp_core::Channel;

    anyhow::ensure!(
        args.profiles >= 20,
        "--profiles must be at least 20 (the minimum audience size)"
    );
    let bench = BenchStore::create_with_cache(
        args.dir.as_deref(),
        "bench-export",
        args.cache_mb.max(16) * 1024 * 1024,
    )?;
    let engine = Arc::new(cdp_engine::Engine::new(
        bench.vault.clone(),
        cdp_engine::EngineConfig::default(),
        Arc::new(crate::policy::load(None)?),
    ));
    engine.set_exports_dir(bench.index_dir.with_file_name("exports"));
    let index = Arc::new(cdp_index::PersonIndex::open(&bench.index_dir)?);
    engine.attach_index(index.clone());
    let (source, _, ticket) = engine.create_source("bench", Channel::Web, Some("CN"))?;
    ticket.wait_durable()?;

    // People with a phone, an e-mail, a city and the consent category "push" from their app.
    let load_started = Instant::now();
    let mut sent = 0u64;
    while sent < args.profiles {
        let n = (args.profiles - sent).min(500);
        let batch: Vec<serde_json::Value> = (sent..sent + n)
            .map(|i| {
                serde_json::json!({"type": "identify", "userId": format!("b-{i}"), "messageId": format!("m-{i}"),
                    "traits": {"phone": format!("13{:09}", i), "email": format!("p{i}@example.cn"),
                               "address": {"country": "CN", "city": "上海"}, "birthday": "1990-01-01"},
                    "context": {"consent": {"categoryPreferences": {"push": true}}}})
            })
            .collect();
        let body = serde_json::json!({ "batch": batch }).to_string();
        let parsed = cdp_core::segment::parse_body(
            body.as_bytes(),
            None,
            time::OffsetDateTime::now_utc(),
            engine.limits(),
        )
        .map_err(|e| anyhow::anyhow!("{e}"))?;
        let mut report = engine.ingest(&source, parsed.messages, true)?;
        if let Some(ticket) = report.ticket.take() {
            ticket.wait_durable()?;
        }
        sent += n;
    }
    let load = load_started.elapsed();
    let indexer = cdp_engine::Indexer::new(engine.clone(), index, Default::default());
    indexer.start()?;

    let access = cdp_engine::Access {
        actor: "bench".into(),
        caller: cdp_policy::CallerFacts {
            roles: vec!["marketer".into()],
            purposes: Vec::new(),
        },
        purpose: Some("marketing.push".into()),
    };
    let (recipient, ticket) = engine.create_recipient(
        cdp_engine::RecipientInput {
            name: "push provider".into(),
            contact: "dpo@push.example.cn".into(),
            role: cdp_policy::RecipientRole::Processor,
            region: "CN".into(),
            transfer_mechanism: "none".into(),
            allowed_purposes: vec!["marketing.push".into()],
        },
        "bench",
    )?;
    ticket.wait_durable()?;
    let (audience, ticket) = engine.create_audience(
        "everyone in 上海",
        "marketing.push",
        &cdp_engine::AudienceQuery::Text("city:上海".into()),
        &access,
    )?;
    ticket.wait_durable()?;
    let started = Instant::now();
    let job = engine.start_export(
        cdp_engine::ExportRequest {
            audience: audience.audience.id.clone(),
            purpose: "marketing.push".into(),
            recipient: recipient.id.clone(),
            fields: [
                "pseudonym",
                "phone_sha256_meta",
                "email_sha256_google",
                "identifiers.email",
                "age_band",
            ]
            .iter()
            .map(|f| (*f).to_string())
            .collect(),
            format: cdp_engine::ExportFormat::Csv,
        },
        &access,
    )?;
    let record = loop {
        let record = engine
            .export(&job.id)?
            .context("the export job disappeared")?;
        if record.status != cdp_engine::ExportStatus::Running {
            break record;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let elapsed = started.elapsed();
    anyhow::ensure!(
        record.status == cdp_engine::ExportStatus::Done,
        "the export ended {:?}: {:?}",
        record.status,
        record.reason
    );
    let manifest = record.manifest.context("no manifest")?;
    let rate = manifest.counts.considered as f64 / elapsed.as_secs_f64().max(1e-9);
    if args.json {
        println!(
            "{{\"profiles\":{},\"included\":{},\"seconds\":{:.3},\"profiles_per_second\":{rate:.0},\"file_bytes\":{},\"cache_mb\":{}}}",
            args.profiles,
            manifest.counts.included,
            elapsed.as_secs_f64(),
            manifest.file_bytes,
            args.cache_mb.max(16)
        );
    } else {
        println!(
            "cdp bench export: {} people loaded in {:.1} s; export of {} considered, {} included ({} bytes) in {:.2} s",
            args.profiles,
            load.as_secs_f64(),
            manifest.counts.considered,
            manifest.counts.included,
            manifest.file_bytes,
            elapsed.as_secs_f64()
        );
        println!(
            "  {rate:.0} profiles/s with a policy decision, store read and decrypt, pseudonym, two platform hashes and sealing per person (budget >= 100,000; sled cache {} MiB)",
            args.cache_mb.max(16)
        );
    }
    bench.sled.close()?;
    Ok(())
}
