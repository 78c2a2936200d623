//! Benchmarks run small: they work and print sane figures (they are not timed tests).

use crate::support::{cdp, run, text};

#[test]
fn bench_crypto_reports_rates() {
    let output = run(cdp().args(["bench", "crypto", "--records", "2000", "--json"]));
    assert!(output.status.success(), "{}", text(&output.stderr));
    let report: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    let results = report["results"].as_array().unwrap();
    assert_eq!(results.len(), 5);
    for result in results {
        assert!(result["per_second"].as_f64().unwrap() > 0.0, "{result}");
    }
    let table = run(cdp().args(["bench", "crypto", "--records", "1000"]));
    assert!(
        text(&table.stdout).contains("seal (AES-256-GCM"),
        "{}",
        text(&table.stdout)
    );
}

#[test]
fn bench_store_reports_group_commit() {
    let output = run(cdp().args([
        "bench",
        "store",
        "--writers",
        "8",
        "--batches",
        "10",
        "--json",
    ]));
    assert!(output.status.success(), "{}", text(&output.stderr));
    let report: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(report["batches"].as_f64().unwrap(), 80.0);
    assert!(report["flushes"].as_u64().unwrap() >= 1);
}

#[test]
fn bench_store_at_scale_reports_insert_and_read_costs() {
    let output = run(cdp().args([
        "bench",
        "store",
        "--preload",
        "2500",
        "--reads",
        "300",
        "--random-keys",
        "--writers",
        "2",
        "--batches",
        "3",
        "--json",
    ]));
    assert!(output.status.success(), "{}", text(&output.stderr));
    let report: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(report["random_keys"], true, "{report}");
    assert_eq!(report["records"].as_f64().unwrap(), 60.0, "{report}");
    let preload = &report["preload"];
    assert_eq!(preload["records"], 2500, "{report}");
    // Batches of 1,000: the last million-chunk is the whole preload, ending at 2,500.
    let rates = preload["load_rates"].as_array().unwrap();
    assert_eq!(rates.len(), 1, "{report}");
    assert_eq!(rates[0]["upto"], 2500, "{report}");
    assert!(rates[0]["records_per_second"].as_f64().unwrap() > 0.0);
    // Every read found its record (the bench fails otherwise) and was timed.
    assert_eq!(preload["reads"], 300, "{report}");
    assert!(preload["read_p50_us"].as_f64().unwrap() > 0.0);
    assert!(
        preload["disk_bytes"].as_u64().unwrap() > 2500 * 512,
        "{report}"
    );
}

#[test]
fn bench_ingest_reports_throughput_and_quality() {
    let output = run(cdp().args([
        "bench",
        "ingest",
        "--people",
        "150",
        "--clients",
        "2",
        "--json",
    ]));
    assert!(output.status.success(), "{}", text(&output.stderr));
    let report: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert!(report["events"].as_u64().unwrap() >= 150 * 5, "{report}");
    assert!(report["events_per_second"].as_f64().unwrap() > 0.0);
    // Where the run's time went: the process's cores and the writer's serial part (a share of
    // the wall time, so between 0 and 1; some of it is always spent under the lock).
    let writer = report["writer_busy_share"].as_f64().unwrap();
    assert!(writer > 0.0 && writer <= 1.0, "{report}");
    assert!(report["cores_busy"].as_f64().unwrap() > 0.0, "{report}");
    // Deterministic rules on this data: few false merges (household devices), some people
    // left split where nothing links their identifiers.
    assert!(report["precision"].as_f64().unwrap() > 0.95, "{report}");
    assert!(report["recall"].as_f64().unwrap() > 0.8, "{report}");
    assert_eq!(
        report["unresolved"], 0,
        "every identifier the events carried resolves"
    );
}

/// `--dir` keeps the store with its development key: `store stats` counts what the run
/// wrote (no key needed) and `bench lookup` reads it over HTTP, each read audited.
#[test]
fn a_kept_ingest_store_is_counted_and_read_back() {
    let dir = crate::support::temp_dir();
    let output = run(cdp()
        .args([
            "bench",
            "ingest",
            "--people",
            "60",
            "--clients",
            "2",
            "--json",
            "--dir",
        ])
        .arg(dir.path()));
    assert!(output.status.success(), "{}", text(&output.stderr));
    let ingest: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    let data_dir = dir.path().join("bench-ingest");

    let output = run(cdp()
        .args(["store", "stats", "--json", "--data-dir"])
        .arg(&data_dir));
    assert!(output.status.success(), "{}", text(&output.stderr));
    let stats: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    // One stored event per message some identifier attributes (a few carry only junk ids),
    // one profile per person found.
    assert_eq!(stats["engine"], "fjall", "{stats}");
    let sent = ingest["events"].as_u64().unwrap();
    let stored = stats["keyspaces"]["events"]["entries"].as_u64().unwrap();
    assert!(stored <= sent && stored * 100 >= sent * 95, "{stats}");
    assert_eq!(
        stats["keyspaces"]["profiles"]["entries"], ingest["indexed"],
        "{stats}"
    );
    assert!(stats["bytes_on_disk"].as_u64().unwrap() > 0, "{stats}");
    // Retries are recognised through one record per request, not one per message.
    let messages = stats["keyspaces"]["messages"]["entries"].as_u64().unwrap();
    assert!(
        messages >= 1 && messages <= ingest["batches"].as_u64().unwrap(),
        "{stats}"
    );
    let table = run(cdp().args(["store", "stats", "--data-dir"]).arg(&data_dir));
    assert!(
        text(&table.stdout).contains("events"),
        "{}",
        text(&table.stdout)
    );

    let output = run(cdp()
        .args([
            "bench",
            "lookup",
            "--clients",
            "2",
            "--seconds",
            "1",
            "--json",
            "--data-dir",
        ])
        .arg(&data_dir));
    assert!(output.status.success(), "{}", text(&output.stderr));
    let lookup: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert!(lookup["reads"].as_u64().unwrap() > 0, "{lookup}");
    assert_eq!(lookup["failures"], 0, "{lookup}");
    assert_eq!(lookup["profiles_sampled"], ingest["indexed"], "{lookup}");
    let rows = lookup["latency"].as_array().unwrap();
    assert_eq!(rows.len(), 3, "{lookup}");
    // The server's time with the flush is never below its time before it.
    assert!(
        rows[1]["p50_ms"].as_f64() >= rows[0]["p50_ms"].as_f64(),
        "{lookup}"
    );
}

#[test]
fn bench_lookup_builds_its_own_store() {
    let output = run(cdp().args([
        "bench",
        "lookup",
        "--profiles",
        "40",
        "--clients",
        "2",
        "--seconds",
        "1",
        "--json",
    ]));
    assert!(output.status.success(), "{}", text(&output.stderr));
    let lookup: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(lookup["profiles_sampled"], 40, "{lookup}");
    assert!(lookup["rss_bytes"].as_u64().unwrap() > 0, "{lookup}");
    assert!(
        lookup["reads_per_second"].as_f64().unwrap() > 0.0,
        "{lookup}"
    );
}

#[test]
fn demo_generate_writes_channel_files_and_truth() {
    let dir = crate::support::temp_dir();
    let output = run(cdp()
        .args(["demo", "generate", "--people", "40", "--seed", "7", "--out"])
        .arg(dir.path()));
    assert!(output.status.success(), "{}", text(&output.stderr));
    let truth = std::fs::read_to_string(dir.path().join("truth.csv")).unwrap();
    assert!(truth.starts_with("type,value,person\n") && truth.lines().count() > 40);
    let web = std::fs::read_to_string(dir.path().join("web.jsonl")).unwrap();
    for line in web.lines() {
        let message: serde_json::Value = serde_json::from_str(line).unwrap();
        assert!(message["messageId"].is_string() && message["type"].is_string());
    }
    // Same seed, same data.
    let again = crate::support::temp_dir();
    run(cdp()
        .args(["demo", "generate", "--people", "40", "--seed", "7", "--out"])
        .arg(again.path()));
    assert_eq!(
        std::fs::read_to_string(again.path().join("web.jsonl")).unwrap(),
        web
    );
}

#[test]
fn bench_policy_reports_decision_rates() {
    let output = run(cdp().args(["bench", "policy", "--decisions", "2000", "--json"]));
    assert!(output.status.success(), "{}", text(&output.stderr));
    let report: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    let results = report["results"].as_array().unwrap();
    assert_eq!(results.len(), 2, "{report}");
    for result in results {
        assert!(result["per_second"].as_f64().unwrap() > 0.0, "{report}");
    }
    let share = report["allowed_share"].as_f64().unwrap();
    assert!(share > 0.0 && share < 1.0, "{report}");
}

#[test]
fn bench_audience_reports_latency_and_freshness() {
    let output = run(cdp().args([
        "bench",
        "audience",
        "--profiles",
        "3000",
        "--queries",
        "5",
        "--freshness-samples",
        "2",
        "--json",
    ]));
    assert!(output.status.success(), "{}", text(&output.stderr));
    let report: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    let counts = report["counts"].as_array().unwrap();
    assert_eq!(counts.len(), 5, "{report}");
    for shape in counts {
        assert!(shape["p50_ms"].as_f64().unwrap() > 0.0, "{report}");
    }
    assert!(
        report["freshness_p50_ms"].as_f64().unwrap() < 1000.0,
        "{report}"
    );
}

#[test]
fn bench_export_reports_throughput() {
    let output = run(cdp().args(["bench", "export", "--profiles", "300", "--json"]));
    assert!(output.status.success(), "{}", text(&output.stderr));
    let report: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(report["included"], 300, "{report}");
    assert!(
        report["profiles_per_second"].as_f64().unwrap() > 0.0,
        "{report}"
    );
}

/// `bench console` loads every page's requests with a session cookie and reports each page.
#[test]
fn bench_console_reports_each_page() {
    let output = run(cdp().args([
        "bench",
        "console",
        "--profiles",
        "3000",
        "--loads",
        "3",
        "--json",
    ]));
    assert!(output.status.success(), "{}", text(&output.stderr));
    let report: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    let pages = report["pages"].as_array().unwrap();
    for page in [
        "overview",
        "audiences",
        "profile lookup",
        "consents",
        "requests",
        "audit log",
        "exports",
    ] {
        let row = pages
            .iter()
            .find(|row| row["page"] == page)
            .unwrap_or_else(|| panic!("no {page} in {report}"));
        assert!(row["p50_ms"].as_f64().unwrap() > 0.0, "{report}");
    }
}
