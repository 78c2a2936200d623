use super::*;

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
pub(super) fn synthetic_doc(i: u64, rng: &mut Rng) -> cdp_index::IndexDoc {
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
        // Random like profile ids (the index's sort key is the id's first half); the person's
        // number in the first bytes of the second half keeps ids distinct.
        id: cdp_index::id_of_keys(rng.next(), i << 32 | (rng.next() & 0xffff_ffff)),
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

// Long by design: a benchmark's script (set up, measure, print), read top to bottom.
pub(super) fn run(args: AudienceArgs) -> anyhow::Result<()> {
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

    let bench = BenchDir::create(Some(root), "freshness")?;
    let engine = bench.open_engine(
        StoreEngine::default(),
        StoreOptions::default().cache_capacity,
    )?;
    let index = engine
        .search_index_handle()
        .context("the engine has no search index")?
        .clone();
    let indexer = Arc::new(cdp_engine::Indexer::new(
        engine.clone(),
        Default::default(),
    )?);
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
        ingest_durably(
            &engine,
            &source,
            &body,
            Some(cdp_core::segment::MessageType::Identify),
        )?;
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
    engine.close()?;
    Ok(out)
}
