//! Prometheus metrics: request counts and latency histograms per route.
//!
//! Hand-rolled rather than a metrics facade: the set is small, and owning it keeps the label
//! discipline in one place (route templates only, a fixed set of methods) so that no path,
//! query or personal value can become a label.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use cdp_store::StoreStats;

/// Upper bounds of the latency buckets, in seconds.
const BUCKETS: [f64; 14] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

#[derive(Debug, Default)]
struct RouteStats {
    statuses: Mutex<BTreeMap<u16, u64>>,
    buckets: [AtomicU64; BUCKETS.len()],
    count: AtomicU64,
    sum_nanos: AtomicU64,
}

/// Counters and histograms of HTTP requests, keyed by (method, route template).
#[derive(Debug, Default)]
pub struct HttpMetrics {
    routes: RwLock<BTreeMap<(&'static str, String), Arc<RouteStats>>>,
    /// Ingested messages by outcome: stored, retried duplicates, no usable identifier.
    ingest_accepted: AtomicU64,
    ingest_duplicates: AtomicU64,
    ingest_unattributed: AtomicU64,
}

/// Methods outside this list are counted as `OTHER` (bounded label values).
pub(crate) fn method_label(method: &axum::http::Method) -> &'static str {
    match method.as_str() {
        "GET" => "GET",
        "POST" => "POST",
        "PUT" => "PUT",
        "PATCH" => "PATCH",
        "DELETE" => "DELETE",
        "HEAD" => "HEAD",
        "OPTIONS" => "OPTIONS",
        _ => "OTHER",
    }
}

fn escape_label(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

impl HttpMetrics {
    pub fn new() -> Self {
        Self::default()
    }

    /// Counts the outcome of one ingestion request.
    pub(crate) fn record_ingest(&self, accepted: usize, duplicates: usize, unattributed: usize) {
        self.ingest_accepted
            .fetch_add(accepted as u64, Ordering::Relaxed);
        self.ingest_duplicates
            .fetch_add(duplicates as u64, Ordering::Relaxed);
        self.ingest_unattributed
            .fetch_add(unattributed as u64, Ordering::Relaxed);
    }

    pub(crate) fn record(&self, method: &'static str, route: &str, status: u16, elapsed: Duration) {
        let key = (method, route.to_string());
        let existing = self
            .routes
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(&key)
            .cloned();
        let stats = match existing {
            Some(stats) => stats,
            None => self
                .routes
                .write()
                .unwrap_or_else(|p| p.into_inner())
                .entry(key)
                .or_default()
                .clone(),
        };
        *stats
            .statuses
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(status)
            .or_default() += 1;
        let seconds = elapsed.as_secs_f64();
        for (bucket, bound) in stats.buckets.iter().zip(BUCKETS) {
            if seconds <= bound {
                bucket.fetch_add(1, Ordering::Relaxed);
            }
        }
        stats.count.fetch_add(1, Ordering::Relaxed);
        stats.sum_nanos.fetch_add(
            u64::try_from(elapsed.as_nanos()).unwrap_or(u64::MAX),
            Ordering::Relaxed,
        );
    }

    /// The Prometheus text exposition (format 0.0.4).
    // Long by design: the exposition metric by metric (HELP, TYPE, samples), in the order
    // scrapers show them.
    pub fn render(&self, store: &StoreStats, ready: bool) -> String {
        let mut out = String::with_capacity(4096);
        let routes = self.routes.read().unwrap_or_else(|p| p.into_inner());
        out.push_str(
            "# HELP cdp_http_requests_total HTTP requests by method, route template and status.\n",
        );
        out.push_str("# TYPE cdp_http_requests_total counter\n");
        for ((method, route), stats) in routes.iter() {
            let route = escape_label(route);
            for (status, count) in stats
                .statuses
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .iter()
            {
                let _ = writeln!(
                    out,
                    "cdp_http_requests_total{{method=\"{method}\",route=\"{route}\",status=\"{status}\"}} {count}"
                );
            }
        }
        out.push_str("# HELP cdp_http_request_duration_seconds Time from request to response head, by route.\n");
        out.push_str("# TYPE cdp_http_request_duration_seconds histogram\n");
        for ((method, route), stats) in routes.iter() {
            let route = escape_label(route);
            let labels = format!("method=\"{method}\",route=\"{route}\"");
            for (bucket, bound) in stats.buckets.iter().zip(BUCKETS) {
                let _ = writeln!(
                    out,
                    "cdp_http_request_duration_seconds_bucket{{{labels},le=\"{bound}\"}} {}",
                    bucket.load(Ordering::Relaxed)
                );
            }
            let count = stats.count.load(Ordering::Relaxed);
            let _ = writeln!(
                out,
                "cdp_http_request_duration_seconds_bucket{{{labels},le=\"+Inf\"}} {count}"
            );
            let sum = stats.sum_nanos.load(Ordering::Relaxed) as f64 / 1e9;
            let _ = writeln!(
                out,
                "cdp_http_request_duration_seconds_sum{{{labels}}} {sum}"
            );
            let _ = writeln!(
                out,
                "cdp_http_request_duration_seconds_count{{{labels}}} {count}"
            );
        }
        drop(routes);
        out.push_str("# HELP cdp_ingest_messages_total Segment messages by outcome: accepted (stored), duplicate (retried messageId), unattributed (no usable identifier, not stored).\n");
        out.push_str("# TYPE cdp_ingest_messages_total counter\n");
        for (outcome, counter) in [
            ("accepted", &self.ingest_accepted),
            ("duplicate", &self.ingest_duplicates),
            ("unattributed", &self.ingest_unattributed),
        ] {
            let _ = writeln!(
                out,
                "cdp_ingest_messages_total{{outcome=\"{outcome}\"}} {}",
                counter.load(Ordering::Relaxed)
            );
        }
        let gauges: [(&str, &str, &str, u64); 6] = [
            (
                "cdp_store_commits_total",
                "counter",
                "Batches committed to the store since start.",
                store.commits,
            ),
            (
                "cdp_store_flushes_total",
                "counter",
                "Group-commit flushes since start (each one fsync of the store and the commit mark).",
                store.flushes,
            ),
            (
                "cdp_store_last_seq",
                "gauge",
                "Sequence number of the newest committed batch.",
                store.last_seq,
            ),
            (
                "cdp_store_durable_seq",
                "gauge",
                "Sequence number of the newest batch known to be on disk.",
                store.durable_seq,
            ),
            (
                "cdp_store_verified",
                "gauge",
                "1 once every block of the store was read and found sound since start.",
                u64::from(store.verified),
            ),
            (
                "cdp_ready",
                "gauge",
                "1 when the server can take requests.",
                u64::from(ready),
            ),
        ];
        for (name, kind, help, value) in gauges {
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {value}"
            );
        }
        let _ = writeln!(
            out,
            "# HELP cdp_build_info Build of the running server.\n# TYPE cdp_build_info gauge\ncdp_build_info{{version=\"{}\"}} 1",
            env!("CARGO_PKG_VERSION")
        );
        out
    }
}
