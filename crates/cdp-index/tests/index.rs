#![allow(clippy::unwrap_used, clippy::expect_used)]
// Residues read better than is_multiple_of in the expected-count formulas.
#![allow(clippy::manual_is_multiple_of)]
//! The index through its public API: documents, the audience language, policy filtering,
//! paging, persistence.

use std::collections::BTreeMap;

use cdp_index::query::parse_text;
use cdp_index::{IndexDoc, PersonIndex};

fn purposes() -> Vec<String> {
    ["marketing", "marketing.sms", "analytics"]
        .iter()
        .map(|p| (*p).to_string())
        .collect()
}

fn doc(i: u64) -> IndexDoc {
    let mut events = BTreeMap::new();
    if i % 4 != 0 {
        events.insert(
            "order_completed".to_string(),
            BTreeMap::from([(7, i % 2), (30, i % 4), (90, i % 4), (365, i % 4)]),
        );
    }
    IndexDoc {
        id: cdp_index::id_of_keys(i * 7 + 3, i),
        keywords: vec![
            ("tier", if i % 10 == 0 { "vip" } else { "ordinary" }.into()),
            ("city", if i % 3 == 0 { "上海" } else { "北京" }.into()),
            ("channel", "web".into()),
            ("channel", if i % 2 == 0 { "pos" } else { "ios" }.into()),
            ("hesitating", (i % 5 == 0).to_string()),
        ],
        numbers: vec![
            ("monetary_90d", i as f64 * 10.0),
            ("rfm_r", (i % 5 + 1) as f64),
        ],
        consent: vec![(
            "marketing.sms".into(),
            if i % 2 == 0 { "granted" } else { "withdrawn" }.into(),
        )],
        traits: vec![(
            "plan".into(),
            if i % 3 == 0 { "gold" } else { "basic" }.into(),
        )],
        allowed: if i % 2 == 0 {
            vec!["marketing.sms".into(), "analytics".into()]
        } else {
            vec!["analytics".into()]
        },
        events,
    }
}

fn count(index: &PersonIndex, text: &str, purpose: Option<&str>) -> (u64, u64) {
    let condition = parse_text(text, &purposes()).unwrap();
    index.count(&condition, &purposes(), purpose).unwrap()
}

fn brute(predicate: impl Fn(u64) -> bool) -> u64 {
    (0..300).filter(|i| predicate(*i)).count() as u64
}

#[test]
fn the_audience_language_counts_what_it_says() {
    let index = PersonIndex::in_memory().unwrap();
    index
        .upsert(&(0..300).map(doc).collect::<Vec<_>>())
        .unwrap();
    index.commit("{\"seq\":1}").unwrap();
    assert_eq!(index.len(), 300);
    let cases: Vec<(&str, u64)> = vec![
        ("tier:vip", brute(|i| i % 10 == 0)),
        (
            "tier:vip AND city:上海",
            brute(|i| i % 10 == 0 && i % 3 == 0),
        ),
        (
            "city:(上海,北京) AND NOT channel:pos",
            brute(|i| i % 2 == 1),
        ),
        ("monetary_90d>=1000", brute(|i| i * 10 >= 1000)),
        (
            "monetary_90d>1000 AND monetary_90d<=1500",
            brute(|i| i * 10 > 1000 && i * 10 <= 1500),
        ),
        ("consent.marketing_sms:granted", brute(|i| i % 2 == 0)),
        (
            "consent.marketing_sms:(withdrawn,denied)",
            brute(|i| i % 2 == 1),
        ),
        (
            "hesitating:true OR rfm_r=5",
            brute(|i| i % 5 == 0 || i % 5 == 4),
        ),
        ("events.order_completed.30d>=2", brute(|i| i % 4 >= 2)),
        ("events.order_completed.30d=0", brute(|i| i % 4 == 0)),
        ("events.order_completed.30d<2", brute(|i| i % 4 < 2)),
        (
            "events.order_completed.7d:*",
            brute(|i| i % 4 != 0 && i % 2 == 1),
        ),
        ("events.page.30d>=1", 0),
        ("rfm_r:*", 300),
        ("traits.plan:gold", brute(|i| i % 3 == 0)),
        ("traits.plan:*", 300),
        ("traits.gender:*", 0),
        ("recency_days:*", 0),
        (
            "tier:ordinary AND city:北京 AND channel:web AND monetary_90d>=500 AND consent.marketing_sms:granted",
            brute(|i| i % 10 != 0 && i % 3 != 0 && i * 10 >= 500 && i % 2 == 0),
        ),
    ];
    for (text, expected) in cases {
        assert_eq!(count(&index, text, None).0, expected, "{text}");
    }
    // Policy filtering: matched and allowed for the purpose.
    let (matched, allowed) = count(&index, "tier:vip", Some("marketing.sms"));
    assert_eq!(matched, brute(|i| i % 10 == 0));
    assert_eq!(allowed, brute(|i| i % 10 == 0 && i % 2 == 0));
    // The same with a range clause (one pass checks the allowed column per match).
    let (matched, allowed) = count(
        &index,
        "monetary_90d>=1000 OR tier:vip",
        Some("marketing.sms"),
    );
    assert_eq!(matched, brute(|i| i * 10 >= 1000 || i % 10 == 0));
    assert_eq!(
        allowed,
        brute(|i| (i * 10 >= 1000 || i % 10 == 0) && i % 2 == 0)
    );
    // JSON trees compile the same.
    let tree: cdp_index::Condition = serde_json::from_value(serde_json::json!({
        "all": [{"field": "tier", "op": "eq", "value": "vip"},
                {"field": "city", "op": "in", "values": ["上海"]}]
    }))
    .unwrap();
    assert_eq!(
        index.count(&tree, &purposes(), None).unwrap().0,
        brute(|i| i % 10 == 0 && i % 3 == 0)
    );
}

#[test]
fn members_page_by_key_and_respect_the_purpose() {
    let index = PersonIndex::in_memory().unwrap();
    index
        .upsert(&(0..300).map(doc).collect::<Vec<_>>())
        .unwrap();
    index.commit("{}").unwrap();
    let condition = parse_text("channel:web", &purposes()).unwrap();
    let mut seen = Vec::new();
    let mut after = None;
    loop {
        let page = index
            .members(&condition, &purposes(), "marketing.sms", after, 40)
            .unwrap();
        if page.is_empty() {
            break;
        }
        after = page.last().map(|(key, _)| *key);
        seen.extend(page);
    }
    assert_eq!(seen.len() as u64, brute(|i| i % 2 == 0));
    assert!(seen.windows(2).all(|w| w[0].0 < w[1].0));
    // The whole id comes back, read from the columns: doc(i) has key 7i+3 and key_low i.
    assert!(seen.iter().all(|(key, id)| {
        let (high, i) = cdp_index::key_of(id);
        high == *key && *key == i * 7 + 3 && i % 2 == 0
    }));

    // All members at once from the key columns: the same people, also after an upsert spread
    // them over two segments.
    let expected = |seen: &[(u64, cdp_index::DocId)]| {
        let mut keys: Vec<(u64, u64)> = seen.iter().map(|(_, id)| cdp_index::key_of(id)).collect();
        keys.sort_unstable();
        keys
    };
    let mut keys = index
        .member_keys(&condition, &purposes(), "marketing.sms")
        .unwrap();
    keys.sort_unstable();
    assert_eq!(keys, expected(&seen));
    index
        .upsert(&(300..310).map(doc).collect::<Vec<_>>())
        .unwrap();
    index.commit("{}").unwrap();
    let mut keys = index
        .member_keys(&condition, &purposes(), "marketing.sms")
        .unwrap();
    keys.sort_unstable();
    assert_eq!(keys.len(), 155);
    assert!(
        keys.iter()
            .all(|(key, low)| *key == low * 7 + 3 && low % 2 == 0)
    );
    let other_purpose = index
        .member_keys(&condition, &purposes(), "analytics")
        .unwrap();
    assert_eq!(
        other_purpose.len() as u64,
        index
            .count(&condition, &purposes(), Some("analytics"))
            .unwrap()
            .1
    );
}

#[test]
fn upserts_replace_deletes_remove_and_commits_persist() {
    let dir = tempfile::tempdir().unwrap();
    {
        let index = PersonIndex::open(dir.path()).unwrap();
        index.upsert(&(0..10).map(doc).collect::<Vec<_>>()).unwrap();
        let mut changed = doc(1);
        changed.keywords[0] = ("tier", "vip".into());
        index.upsert(&[changed]).unwrap();
        index.delete(&[doc(2).id]);
        index.commit("{\"seq\":42}").unwrap();
        assert_eq!(index.len(), 9);
        assert!(!index.contains(&doc(2).id).unwrap());
        assert_eq!(count(&index, "tier:vip", None).0, 2);
    }
    let index = PersonIndex::open(dir.path()).unwrap();
    assert_eq!(index.payload().unwrap().as_deref(), Some("{\"seq\":42}"));
    assert_eq!(index.len(), 9);
    let mut values = index.numeric_values("monetary_90d").unwrap();
    values.sort_by(f64::total_cmp);
    assert_eq!(values.len(), 9);
    assert_eq!(values[0], 0.0);
    index.clear().unwrap();
    index.commit("{}").unwrap();
    assert!(index.is_empty());
}
