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
