//! Requests that arrive at the same time: whatever the engine runs in parallel, concurrent
//! requests touching the same people must give the same people as the same events sent one
//! by one in time order, and store every event exactly once.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};

use cdp_core::{Channel, IdentifierType};
use common::{harness, lookup, people, random_world, send, source};
use serde_json::json;

#[test]
fn concurrent_requests_give_the_same_people_as_serial_ones() {
    for seed in 1..=6u64 {
        let (mut events, ids) = random_world(seed);
        let ids: Vec<(&str, IdentifierType)> =
            ids.iter().map(|(v, k)| (v.as_str(), k.clone())).collect();
        events.sort_by_key(|e| e["timestamp"].as_str().unwrap().to_string());
        let serial = harness();
        let web = source(&serial.engine, "web", Channel::Web, None);
        for event in &events {
            send(&serial.engine, &web, json!([event]));
        }
        let expected = people(&serial, &ids);

        for (threads, size) in [(2, 1), (4, 3), (8, 2)] {
            // Requests interleave the people: request k holds events k, k + n, k + 2n...
            // so that concurrent requests keep touching the same people.
            let requests = events.len().div_ceil(size);
            let batches: Vec<Vec<serde_json::Value>> = (0..requests)
                .map(|k| events.iter().skip(k).step_by(requests).cloned().collect())
                .collect();
            let h = harness();
            let web = source(&h.engine, "web", Channel::Web, None);
            let next = AtomicUsize::new(0);
            let accepted = AtomicUsize::new(0);
            std::thread::scope(|scope| {
                for _ in 0..threads {
                    scope.spawn(|| {
                        while let Some(batch) = batches.get(next.fetch_add(1, Ordering::Relaxed)) {
                            let report = send(&h.engine, &web, json!(batch));
                            accepted.fetch_add(report.accepted, Ordering::Relaxed);
                        }
                    });
                }
            });
            let context = format!("seed {seed}, {threads} threads, requests of {size}");
            assert_eq!(accepted.load(Ordering::Relaxed), events.len(), "{context}");
            assert_eq!(people(&h, &ids), expected, "{context}");
            // Every event is stored exactly once, in some profile.
            let stored: usize = people(&h, &ids)
                .iter()
                .map(|values| {
                    let value = values.iter().next().unwrap();
                    let kind = ids.iter().find(|(v, _)| v == value).unwrap().1.clone();
                    let profile = lookup(&h.engine, kind, value).unwrap();
                    h.engine.unaudited_events(profile, 1000).unwrap().len()
                })
                .sum();
            assert_eq!(stored, events.len(), "{context}");
        }
    }
}
