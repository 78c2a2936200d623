use super::*;

// Long by design: a benchmark's script (set up, measure, print), read top to bottom.
pub(super) fn run(args: StoreArgs) -> anyhow::Result<()> {
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
