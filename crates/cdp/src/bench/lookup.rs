//! `cdp bench lookup`: audited profile reads over HTTP from concurrent clients, as the service
//! desk makes them. Each answer's `Server-Timing` header splits the server's time into the
//! work before the audit entry is durable (decision, read, masking) and the wait for that
//! flush, which concurrent reads share.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use cdp_core::{Channel, ProfileId};

use super::*;

/// Server-side and client-side durations of one read.
#[derive(Default)]
struct Sample {
    work: Duration,
    audit: Duration,
    client: Duration,
}

/// `work;dur=0.21, audit;dur=1.30` -> (work, audit).
fn parse_server_timing(header: &str) -> Option<(Duration, Duration)> {
    let mut work = None;
    let mut audit = None;
    for part in header.split(',') {
        let (name, duration) = part.trim().split_once(";dur=")?;
        let millis: f64 = duration.parse().ok()?;
        let duration = Duration::from_secs_f64(millis / 1e3);
        match name {
            "work" => work = Some(duration),
            "audit" => audit = Some(duration),
            _ => {}
        }
    }
    Some((work?, audit?))
}

/// The ids of the store's profiles (a stride over the keys, at most `limit`): profile ids are
/// random and name no one; nothing is decrypted.
fn profile_ids(
    data_dir: &DataDir,
    postgres: Option<cdp_store::PostgresStoreOptions>,
    limit: usize,
) -> anyhow::Result<Vec<ProfileId>> {
    let store = cdp_store::open_store(
        data_dir,
        &StoreOptions {
            verification: cdp_store::Verification::Off,
            postgres,
            ..StoreOptions::default()
        },
    )?;
    let mut all = Vec::new();
    for item in store.scan_from(Keyspace::Profiles, &[]) {
        let (key, _) = item?;
        if let Ok(bytes) = <[u8; 16]>::try_from(key.as_slice()) {
            all.push(ProfileId::from_bytes(bytes));
        }
    }
    store.close()?;
    let stride = all.len().div_ceil(limit.max(1)).max(1);
    Ok(all.into_iter().step_by(stride).collect())
}

/// People with a phone, an e-mail and a city, ingested through the engine.
pub(super) fn load_people(engine: &cdp_engine::Engine, people: u64) -> anyhow::Result<()> {
    let (source, _, ticket) = engine.create_source("bench", Channel::Crm, Some("CN"))?;
    ticket.wait_durable()?;
    let mut sent = 0u64;
    while sent < people {
        let n = (people - sent).min(500);
        let batch: Vec<serde_json::Value> = (sent..sent + n)
            .map(|i| {
                serde_json::json!({"type": "identify", "userId": format!("b-{i}"), "messageId": format!("m-{i}"),
                    "traits": {"phone": format!("13{:09}", i), "email": format!("p{i}@example.cn"),
                               "address": {"country": "CN", "city": "上海"}}})
            })
            .collect();
        let body = serde_json::json!({ "batch": batch }).to_string();
        ingest_durably(engine, &source, &body, None)?;
        sent += n;
    }
    Ok(())
}

/// One client: reads random profiles of `ids` until `stop`; the samples of answered reads.
fn read_profiles(
    addr: std::net::SocketAddr,
    token: &str,
    ids: &[ProfileId],
    seed: u64,
    (stop, failures): (&AtomicBool, &AtomicUsize),
) -> Vec<Sample> {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .build()
        .into();
    let authorization = format!("Bearer {token}");
    let mut rng = Rng(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1);
    let mut samples = Vec::new();
    while !stop.load(Ordering::Relaxed) {
        let id = ids[rng.below(ids.len() as u64) as usize];
        let url = format!("http://{addr}/v1/profiles/{id}?purpose=customer_service");
        let begun = Instant::now();
        match agent
            .get(&url)
            .header("Authorization", &authorization)
            .call()
        {
            Ok(mut response) if response.status().as_u16() == 200 => {
                let timing = response
                    .headers()
                    .get("server-timing")
                    .and_then(|value| value.to_str().ok())
                    .and_then(parse_server_timing);
                let _ = response.body_mut().read_to_vec();
                let client = begun.elapsed();
                match timing {
                    Some((work, audit)) => samples.push(Sample {
                        work,
                        audit,
                        client,
                    }),
                    None => {
                        failures.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
            _ => {
                failures.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
    samples
}

#[allow(clippy::print_stdout)]
pub(super) fn run(args: LookupArgs) -> anyhow::Result<()> {
    anyhow::ensure!(
        args.clients > 0 && args.seconds > 0,
        "--clients and --seconds must be at least 1"
    );
    // An existing store (e.g. `bench ingest --dir`), or a new one of `--profiles` people.
    let (bench, data_dir) = match &args.data_dir {
        Some(dir) => (None, DataDir::new(dir)),
        None => {
            let bench = BenchDir::create(args.dir.as_deref(), "bench-lookup")?;
            let engine = bench.open_engine(StoreEngine::Fjall, 256 * 1024 * 1024)?;
            load_people(&engine, args.profiles)?;
            engine.close()?;
            let data_dir = bench.data_dir.clone();
            (Some(bench), data_dir)
        }
    };
    let postgres = crate::config::postgres_options(args.store_url.clone(), None, None, None)?;
    anyhow::ensure!(
        postgres.is_some() || data_dir.holds_store(),
        "{} holds no store",
        data_dir.root().display()
    );
    let ids = profile_ids(&data_dir, postgres.clone(), 200_000)?;
    anyhow::ensure!(!ids.is_empty(), "the store holds no profile");
    let opened_at = Instant::now();
    let engine = match &bench {
        Some(bench) => bench.open_engine(StoreEngine::Fjall, 256 * 1024 * 1024)?,
        None => BenchDir::open_existing(&data_dir, postgres)?,
    };
    let ready = opened_at.elapsed();
    let server = Server::start(engine.clone())?;
    // A store this benchmark just loaded is still compacting its million records (fjall's
    // workers were a quarter of the process's samples during reads) and the start's
    // background verification reads it all: timed reads wait until the process is quiet, as
    // the export benchmarks do. An existing data directory is read at once: its start is
    // part of what that measures.
    let settled = match &bench {
        Some(_) => settle(Duration::from_secs(300)),
        None => Duration::ZERO,
    };
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    let token = server
        .token_key
        .issue(
            "bench-service-desk",
            &["customer_service".to_string()],
            &[],
            now,
            3600,
        )
        .map_err(|e| anyhow::anyhow!("cannot issue a token: {e}"))?;
    let stop = AtomicBool::new(false);
    let failures = AtomicUsize::new(0);
    let started = Instant::now();
    let mut samples: Vec<Sample> = std::thread::scope(|scope| {
        let clients: Vec<_> = (0..args.clients)
            .map(|client| {
                let (token, ids, stop, failures) = (&token, &ids, &stop, &failures);
                scope.spawn(move || {
                    read_profiles(server.addr, token, ids, client as u64 + 1, (stop, failures))
                })
            })
            .collect();
        std::thread::sleep(Duration::from_secs(args.seconds));
        stop.store(true, Ordering::Relaxed);
        clients
            .into_iter()
            .flat_map(|client| client.join().unwrap_or_default())
            .collect()
    });
    let elapsed = started.elapsed();
    // The server's memory while it still holds everything it loaded (this process is the
    // server; its clients' share is small).
    let (rss, peak_rss) = (process_memory("VmRSS"), process_memory("VmHWM"));
    server.stop();
    let stats = engine.store_stats();
    engine.close()?;
    let failures = failures.load(Ordering::Relaxed);
    anyhow::ensure!(
        !samples.is_empty(),
        "no read was answered ({failures} failed)"
    );

    let per_second = samples.len() as f64 / elapsed.as_secs_f64();
    let sorted = |pick: fn(&Sample) -> Duration| {
        let mut values: Vec<Duration> = samples.iter().map(pick).collect();
        values.sort();
        values
    };
    let work = sorted(|s| s.work);
    let server_total = sorted(|s| s.work + s.audit);
    let client = sorted(|s| s.client);
    let reads = samples.len();
    samples.clear();
    let flushes = stats.flushes;
    let figures = [
        ("work before the audit flush", &work),
        ("server, with the flush", &server_total),
        ("client, over HTTP", &client),
    ];
    if args.json {
        let rows: Vec<serde_json::Value> = figures
            .iter()
            .map(|(name, values)| {
                serde_json::json!({
                    "name": name,
                    "p50_ms": ms(percentile(values, 0.5)),
                    "p99_ms": ms(percentile(values, 0.99)),
                    "max_ms": ms(values.last().copied().unwrap_or_default()),
                })
            })
            .collect();
        let out = serde_json::json!({
            "profiles_sampled": ids.len(),
            "clients": args.clients,
            "reads": reads,
            "reads_per_second": per_second,
            "failures": failures,
            "store_flushes": flushes,
            "ready_ms": ms(ready),
            "settled_seconds": settled.as_secs_f64(),
            "rss_bytes": rss,
            "peak_rss_bytes": peak_rss,
            "latency": rows,
        });
        println!("{out}");
        return Ok(());
    }
    println!(
        "{reads} audited profile reads in {:.1} s from {} clients over {} profiles: {per_second:.0} reads/s (budget >= 5,000), {failures} failed; engine ready in {:.2} s; {flushes} store flushes ({:.1} reads per flush)",
        elapsed.as_secs_f64(),
        args.clients,
        ids.len(),
        ready.as_secs_f64(),
        reads as f64 / flushes.max(1) as f64
    );
    if !settled.is_zero() {
        println!(
            "  waited {:.0} s for the new store's compactions and verification to end before timing",
            settled.as_secs_f64()
        );
    }
    println!(
        "{:<30} {:>9} {:>9} {:>9}",
        "latency (ms)", "p50", "p99", "max"
    );
    for (name, values) in figures {
        println!(
            "{name:<30} {:>9.3} {:>9.3} {:>9.3}",
            ms(percentile(values, 0.5)),
            ms(percentile(values, 0.99)),
            ms(values.last().copied().unwrap_or_default())
        );
    }
    println!("budget: p50 <= 0.3 ms before the flush, p99 <= 3 ms with it (server side)");
    let mb =
        |bytes: Option<u64>| bytes.map_or_else(|| "?".into(), |b| format!("{} MB", b / 1_000_000));
    println!(
        "process memory after the reads: {} resident, {} at peak (budget <= 1.5 GB per million profiles)",
        mb(rss),
        mb(peak_rss)
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_timing_is_read_in_milliseconds() {
        assert_eq!(
            parse_server_timing("work;dur=0.250, audit;dur=1.500"),
            Some((Duration::from_micros(250), Duration::from_micros(1500)))
        );
        assert_eq!(parse_server_timing("work;dur=0.250"), None);
        assert_eq!(parse_server_timing("garbage"), None);
    }
}
