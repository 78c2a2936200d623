//! What the engine's test files share: an engine over a temporary directory, sources,
//! requests, lookups and the seeded worlds the order tests replay.

// Each test file uses its own part of these.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;

use cdp_core::segment::{MessageLimits, parse_body};
use cdp_core::{Channel, IdentifierType, ProfileId};
use cdp_crypto::Keyring;
use cdp_engine::records::SourceRecord;
use cdp_engine::{Engine, EngineConfig, EngineRules, IndexMode};
use serde_json::json;
use time::OffsetDateTime;

pub fn policies() -> Arc<cdp_policy::PolicySet> {
    Arc::new(cdp_policy::PolicySet::builtin().unwrap())
}

pub struct Harness {
    pub engine: Engine,
    pub _dir: tempfile::TempDir,
}

pub fn harness() -> Harness {
    let dir = tempfile::tempdir().unwrap();
    Harness {
        engine: open_engine(dir.path(), EngineRules::default()),
        _dir: dir,
    }
}

/// The engine over `dir`, as every caller opens it (an in-memory index: nothing here searches).
pub fn open_engine(dir: &std::path::Path, rules: EngineRules) -> Engine {
    Engine::open(
        EngineConfig::new(dir, Arc::new(Keyring::generate().unwrap()), policies())
            .with_rules(rules)
            .with_index(IndexMode::InMemory),
    )
    .unwrap()
}

pub fn source(engine: &Engine, name: &str, channel: Channel, region: Option<&str>) -> SourceRecord {
    let (source, write_key, ticket) = engine.create_source(name, channel, region).unwrap();
    ticket.wait_durable().unwrap();
    assert_eq!(engine.source_for_write_key(&write_key).unwrap(), source);
    source
}

/// The messages of a request body, as the server parses them.
pub fn parsed(body: &serde_json::Value) -> Vec<cdp_core::segment::Message> {
    parse_body(
        body.to_string().as_bytes(),
        None,
        OffsetDateTime::now_utc(),
        &MessageLimits::default(),
    )
    .unwrap()
    .messages
}

pub fn send(
    engine: &Engine,
    source: &SourceRecord,
    messages: serde_json::Value,
) -> cdp_engine::IngestReport {
    let mut report = engine
        .ingest(source, parsed(&json!({ "batch": messages })), true)
        .unwrap();
    if let Some(ticket) = report.ticket.take() {
        ticket.wait_durable().unwrap();
    }
    report
}

pub fn lookup(engine: &Engine, kind: IdentifierType, value: &str) -> Option<ProfileId> {
    engine
        .unaudited_lookup(&kind, value, None)
        .unwrap()
        .map(|p| p.id)
}

/// People as sets of identifier values, for comparing outcomes.
pub fn people(
    h: &Harness,
    ids: &[(&str, IdentifierType)],
) -> std::collections::BTreeSet<std::collections::BTreeSet<String>> {
    let mut by_profile: std::collections::BTreeMap<ProfileId, std::collections::BTreeSet<String>> =
        Default::default();
    for (value, kind) in ids {
        if let Some(profile) = lookup(&h.engine, kind.clone(), value) {
            by_profile
                .entry(profile)
                .or_default()
                .insert((*value).to_string());
        }
    }
    by_profile.into_values().collect()
}

/// A small seeded random world with the cases that make resolution depend on order if it is
/// wrong: people sharing an e-mail (two user ids cannot merge: the e-mail is dropped for one),
/// a household device on several people, anonymous ids that meet their user id late.
pub fn random_world(seed: u64) -> (Vec<serde_json::Value>, Vec<(String, IdentifierType)>) {
    let mut state = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut next = move |n: u64| {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state % n
    };
    let people = 6;
    let mut events = Vec::new();
    let mut ids: Vec<(String, IdentifierType)> = vec![
        ("shared@example.com".into(), IdentifierType::Email),
        ("household".into(), IdentifierType::AnonymousId),
    ];
    for person in 0..people {
        let user = format!("u-{person}");
        let email = format!("p{person}@example.com");
        let anons = [format!("a-{person}-1"), format!("a-{person}-2")];
        ids.push((user.clone(), IdentifierType::UserId));
        ids.push((email.clone(), IdentifierType::Email));
        for anon in &anons {
            ids.push((anon.clone(), IdentifierType::AnonymousId));
        }
        for index in 0..5 {
            let mut message = serde_json::Map::new();
            let anon = if next(5) == 0 {
                "household".to_string()
            } else {
                anons[next(2) as usize].clone()
            };
            message.insert("anonymousId".into(), json!(anon));
            if next(2) == 0 {
                message.insert("userId".into(), json!(user));
            }
            let mut traits = serde_json::Map::new();
            match next(4) {
                0 => {
                    traits.insert("email".into(), json!("shared@example.com"));
                }
                1 | 2 => {
                    traits.insert("email".into(), json!(email));
                }
                _ => {}
            }
            message.insert("type".into(), json!("identify"));
            message.insert("traits".into(), serde_json::Value::Object(traits));
            message.insert("messageId".into(), json!(format!("m-{person}-{index}")));
            let minute = next(24 * 60);
            message.insert(
                "timestamp".into(),
                json!(format!(
                    "2026-11-01T{:02}:{:02}:00Z",
                    minute / 60,
                    minute % 60
                )),
            );
            events.push(serde_json::Value::Object(message));
        }
    }
    (events, ids)
}
