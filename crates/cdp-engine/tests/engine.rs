//! The engine through its public API: ingestion, identity resolution, profiles, split.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::sync::Arc;

use cdp_core::segment::{MessageLimits, MessageType, parse_body};
use cdp_core::{Channel, IdentifierType, ProfileId};
use cdp_crypto::Keyring;
use cdp_engine::{Engine, EngineConfig, EngineError, EngineRules, IndexMode, SplitRequest};
use common::{harness, lookup, open_engine, parsed, people, policies, random_world, send, source};
use serde_json::json;
use time::OffsetDateTime;

#[test]
fn cross_channel_events_resolve_to_one_profile_with_provenance() {
    let h = harness();
    let web = source(&h.engine, "web shop", Channel::Web, Some("CN"));
    let crm = source(&h.engine, "crm", Channel::Crm, Some("CN"));
    send(
        &h.engine,
        &web,
        json!([
            {"type":"page","anonymousId":"anon-1","name":"Home","messageId":"w1","timestamp":"2026-11-01T10:00:00Z"},
            {"type":"identify","anonymousId":"anon-1","userId":"u-1","messageId":"w2","timestamp":"2026-11-01T10:05:00Z",
             "traits":{"email":"Zhang.Wei@Example.com","name":"张伟","city":"上海"}},
        ]),
    );
    send(
        &h.engine,
        &crm,
        json!([
            {"type":"identify","userId":"u-1","messageId":"c1","timestamp":"2026-11-02T09:00:00Z",
             "traits":{"phone":"138 1234 5678","city":"杭州"}},
        ]),
    );
    let by_email = lookup(&h.engine, IdentifierType::Email, "zhang.wei@example.com").unwrap();
    let by_phone = lookup(&h.engine, IdentifierType::Phone, "+8613812345678").unwrap();
    let by_anon = lookup(&h.engine, IdentifierType::AnonymousId, "anon-1").unwrap();
    assert_eq!(by_email, by_phone);
    assert_eq!(by_email, by_anon);
    let profile = h.engine.unaudited_profile(by_email).unwrap().unwrap();
    assert_eq!(profile.event_count, 3);
    assert_eq!(profile.channels.len(), 2);
    assert_eq!(profile.channels[&Channel::Web].events, 2);
    // Most recent wins by default, with its provenance.
    assert_eq!(profile.traits["city"].value, "杭州");
    assert_eq!(profile.traits["city"].source_id, crm.id);
    assert_eq!(profile.traits["name"].channel, Channel::Web);
    let kinds: Vec<&str> = profile
        .identifiers
        .iter()
        .map(|i| i.kind.as_str())
        .collect();
    for kind in ["anonymous_id", "user_id", "email", "phone"] {
        assert!(kinds.contains(&kind), "{kinds:?}");
    }
    assert_eq!(h.engine.unaudited_events(by_email, 100).unwrap().len(), 3);
}

#[test]
fn merge_protection_keeps_two_users_apart() {
    let h = harness();
    let web = source(&h.engine, "web", Channel::Web, None);
    send(
        &h.engine,
        &web,
        json!([
            {"type":"identify","userId":"u-1","messageId":"m1","timestamp":"2026-11-01T10:00:00Z","traits":{"email":"family@example.com"}},
            {"type":"identify","userId":"u-2","messageId":"m2","timestamp":"2026-11-01T11:00:00Z","traits":{"email":"family@example.com"}},
        ]),
    );
    let u1 = lookup(&h.engine, IdentifierType::UserId, "u-1").unwrap();
    let u2 = lookup(&h.engine, IdentifierType::UserId, "u-2").unwrap();
    assert_ne!(
        u1, u2,
        "a shared e-mail must not merge two user ids (limit 1)"
    );
    assert_eq!(
        lookup(&h.engine, IdentifierType::Email, "family@example.com"),
        Some(u1)
    );
    let identity = h.engine.unaudited_identity(u2).unwrap().unwrap();
    let edge = &identity.edges[0];
    let email = edge
        .identifiers
        .iter()
        .find(|n| n.kind == IdentifierType::Email)
        .unwrap();
    assert_eq!(email.status, "dropped_merge_would_exceed_limit");
    assert_eq!(
        email.value, None,
        "another person's identifier is never shown"
    );
    assert_eq!(edge.first.message_id, "m2");
}

#[test]
fn merges_keep_the_oldest_id_and_absorbed_ids_resolve_to_it() {
    let h = harness();
    let app = source(&h.engine, "app", Channel::Ios, None);
    send(
        &h.engine,
        &app,
        json!([
            {"type":"track","anonymousId":"a-1","event":"Product Viewed","messageId":"m1","timestamp":"2026-11-01T10:00:00Z"},
            {"type":"identify","userId":"u-9","messageId":"m2","timestamp":"2026-11-01T11:00:00Z"},
            {"type":"alias","previousId":"a-1","userId":"u-9","messageId":"m3","timestamp":"2026-11-01T12:00:00Z"},
        ]),
    );
    let survivor = lookup(&h.engine, IdentifierType::UserId, "u-9").unwrap();
    assert_eq!(
        lookup(&h.engine, IdentifierType::AnonymousId, "a-1"),
        Some(survivor)
    );
    let profile = h.engine.unaudited_profile(survivor).unwrap().unwrap();
    assert_eq!(profile.event_count, 3);
    assert_eq!(profile.merged_from.len(), 1);
    let absorbed = profile.merged_from[0];
    let via_alias = h.engine.unaudited_profile(absorbed).unwrap().unwrap();
    assert_eq!(via_alias.id, survivor);
    assert_eq!(via_alias.resolved_from, Some(absorbed));
    let identity = h.engine.unaudited_identity(survivor).unwrap().unwrap();
    assert!(
        identity
            .merge_log
            .iter()
            .any(|entry| entry.kind == "merge" && entry.absorbed == vec![absorbed])
    );
}

#[test]
fn retried_messages_change_nothing() {
    let h = harness();
    let web = source(&h.engine, "web", Channel::Web, None);
    let batch = json!([{"type":"track","userId":"u-1","event":"Order Completed","messageId":"m1","properties":{"revenue":10}}]);
    assert_eq!(send(&h.engine, &web, batch.clone()).accepted, 1);
    let retry = send(&h.engine, &web, batch);
    assert_eq!((retry.accepted, retry.duplicates), (0, 1));
    let profile = lookup(&h.engine, IdentifierType::UserId, "u-1").unwrap();
    assert_eq!(h.engine.unaudited_events(profile, 10).unwrap().len(), 1);
}

/// The de-duplication window is in memory and in the store: a retry is recognised within its
/// batch, after a restart, and only for the same source.
#[test]
fn retries_are_recognised_within_a_batch_and_after_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let keyring = Arc::new(Keyring::generate().unwrap());
    let open = || {
        Engine::open(
            EngineConfig::new(dir.path(), keyring.clone(), policies())
                .with_index(IndexMode::InMemory),
        )
        .unwrap()
    };
    let batch = json!([
        {"type":"track","userId":"u-1","event":"A","messageId":"m1"},
        {"type":"track","userId":"u-1","event":"A","messageId":"m1"},
        {"type":"track","userId":"u-1","event":"B","messageId":"m2"}
    ]);
    let engine = open();
    let web = source(&engine, "web", Channel::Web, None);
    let first = send(&engine, &web, batch.clone());
    assert_eq!((first.accepted, first.duplicates), (2, 1));
    engine.close().unwrap();
    drop(engine);

    let engine = open();
    let again = send(&engine, &web, batch);
    assert_eq!((again.accepted, again.duplicates), (0, 3));
    let profile = lookup(&engine, IdentifierType::UserId, "u-1").unwrap();
    assert_eq!(engine.unaudited_events(profile, 10).unwrap().len(), 2);
    // The same messageId from another source is another message.
    let app = source(&engine, "app", Channel::Ios, None);
    let other = send(
        &engine,
        &app,
        json!([{"type":"track","userId":"u-1","event":"A","messageId":"m1"}]),
    );
    assert_eq!((other.accepted, other.duplicates), (1, 0));
}

#[test]
fn junk_identifiers_never_merge_people() {
    let h = harness();
    let web = source(&h.engine, "web", Channel::Web, None);
    let report = send(
        &h.engine,
        &web,
        json!([
            {"type":"track","userId":"undefined","event":"x","messageId":"m0"},
            {"type":"track","userId":"u-1","event":"x","messageId":"m1","context":{"device":{"id":"00000000-0000-0000-0000-000000000000"}}},
            {"type":"track","userId":"u-2","event":"x","messageId":"m2","context":{"device":{"id":"00000000-0000-0000-0000-000000000000"}}},
        ]),
    );
    assert_eq!(report.unattributed, 1);
    assert_ne!(
        lookup(&h.engine, IdentifierType::UserId, "u-1"),
        lookup(&h.engine, IdentifierType::UserId, "u-2")
    );
}

/// Junk detection through the store: a placeholder user id that merge protection keeps from
/// joining ten people's e-mails is quarantined, and stays so after a restart (issue 17 item 8).
#[test]
fn a_placeholder_user_id_is_quarantined_and_stays_so_after_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let keyring = Arc::new(Keyring::generate().unwrap());
    let open = || {
        Engine::open(
            EngineConfig::new(dir.path(), keyring.clone(), policies())
                .with_index(IndexMode::InMemory),
        )
        .unwrap()
    };
    let engine = open();
    let web = source(&engine, "web", Channel::Web, None);
    // A broken integration sends every shopper as "guest-user": after five e-mails (the
    // limit), each new one is refused, and with more than eight distinct refusals the id is
    // quarantined.
    let batch: Vec<serde_json::Value> = (0..15)
        .map(|i| {
            json!({"type": "identify", "userId": "guest-user", "messageId": format!("g{i}"),
                        "timestamp": format!("2026-01-01T00:00:{i:02}Z"),
                        "traits": {"email": format!("shopper.{i}@example.cn")}})
        })
        .collect();
    send(&engine, &web, json!(batch));
    engine.close().unwrap();
    drop(engine);

    let engine = open();
    let report = send(
        &engine,
        &web,
        json!([{"type": "track", "userId": "guest-user", "event": "x", "messageId": "after"}]),
    );
    // Its only identifier links nobody now: the event cannot be attributed.
    assert_eq!((report.accepted, report.unattributed), (0, 1));
}

#[test]
fn an_invalid_message_refuses_the_whole_request() {
    let h = harness();
    let web = source(&h.engine, "web", Channel::Web, None);
    let messages = parsed(&json!({"batch":[
        {"type":"identify","userId":"u-1","messageId":"m1"},
        {"type":"identify","userId":"u-2","messageId":"m2","context":{"externalIds":[{"id":"o1","type":"wechat_openid"}]}},
    ]}));
    let error = h.engine.ingest(&web, messages, true).unwrap_err();
    match error {
        EngineError::InvalidMessage { index, field, .. } => {
            assert_eq!(index, Some(1));
            assert_eq!(field, "batch[1].context.externalIds[0]");
        }
        other => panic!("{other}"),
    }
    assert_eq!(
        lookup(&h.engine, IdentifierType::UserId, "u-1"),
        None,
        "nothing of the request is stored"
    );
}

#[test]
fn wechat_openids_are_scoped_by_app() {
    let h = harness();
    let mini = source(&h.engine, "mini program", Channel::MiniProgram, None);
    send(
        &h.engine,
        &mini,
        json!([
            {"type":"identify","anonymousId":"x1","messageId":"m1","context":{"externalIds":[{"id":"oABC","type":"wechat_openid","collection":"wxapp1"}]}},
            {"type":"identify","anonymousId":"x2","messageId":"m2","context":{"externalIds":[{"id":"oABC","type":"wechat_openid","collection":"wxapp2"}]}},
        ]),
    );
    assert_ne!(
        lookup(&h.engine, IdentifierType::AnonymousId, "x1"),
        lookup(&h.engine, IdentifierType::AnonymousId, "x2")
    );
    assert!(lookup(&h.engine, IdentifierType::WechatOpenId, "wxapp1:oABC").is_some());
}

#[test]
fn late_events_give_the_same_people_as_events_in_order() {
    let events = vec![
        json!({"type":"identify","userId":"u-1","messageId":"m1","timestamp":"2026-11-01T10:00:00Z","traits":{"email":"shared@example.com"}}),
        json!({"type":"identify","userId":"u-2","messageId":"m2","timestamp":"2026-11-01T11:00:00Z","traits":{"email":"shared@example.com"}}),
        json!({"type":"identify","anonymousId":"a-1","messageId":"m3","timestamp":"2026-11-01T12:00:00Z","traits":{"email":"shared@example.com"}}),
        json!({"type":"track","anonymousId":"a-1","userId":"u-2","event":"x","messageId":"m4","timestamp":"2026-11-01T13:00:00Z"}),
    ];
    let ids = [
        ("u-1", IdentifierType::UserId),
        ("u-2", IdentifierType::UserId),
        ("a-1", IdentifierType::AnonymousId),
        ("shared@example.com", IdentifierType::Email),
    ];
    let in_order = harness();
    let web = source(&in_order.engine, "web", Channel::Web, None);
    for event in &events {
        send(&in_order.engine, &web, json!([event]));
    }
    let expected = people(&in_order, &ids);
    for order in [[3, 2, 1, 0], [1, 3, 0, 2], [2, 0, 3, 1]] {
        let h = harness();
        let web = source(&h.engine, "web", Channel::Web, None);
        for index in order {
            send(&h.engine, &web, json!([events[index]]));
        }
        assert_eq!(people(&h, &ids), expected, "arrival order {order:?}");
        // Every event is stored exactly once, in some profile.
        let total: usize = people(&h, &ids)
            .iter()
            .filter_map(|values| values.iter().next())
            .map(|value| {
                let kind = ids.iter().find(|(v, _)| v == value).unwrap().1.clone();
                h.engine
                    .unaudited_events(lookup(&h.engine, kind, value).unwrap(), 100)
                    .unwrap()
                    .len()
            })
            .sum();
        assert_eq!(total, 4, "arrival order {order:?}");
    }
}

#[test]
fn random_worlds_give_the_same_people_in_any_arrival_order() {
    for seed in 1..=6u64 {
        let (mut events, ids) = random_world(seed);
        let ids: Vec<(&str, IdentifierType)> =
            ids.iter().map(|(v, k)| (v.as_str(), k.clone())).collect();
        events.sort_by_key(|e| e["timestamp"].as_str().unwrap().to_string());
        let in_order = harness();
        let web = source(&in_order.engine, "web", Channel::Web, None);
        for event in &events {
            send(&in_order.engine, &web, json!([event]));
        }
        let expected = people(&in_order, &ids);
        let mut shuffle_state = seed;
        for round in 0..4 {
            // Fisher-Yates with a seeded generator: a reproducible arrival order.
            let mut shuffled = events.clone();
            for i in (1..shuffled.len()).rev() {
                shuffle_state = shuffle_state
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                let j = (shuffle_state >> 33) as usize % (i + 1);
                shuffled.swap(i, j);
            }
            let h = harness();
            let web = source(&h.engine, "web", Channel::Web, None);
            // Half the rounds one event per request, half in requests of seven.
            let size = if round % 2 == 0 { 1 } else { 7 };
            for chunk in shuffled.chunks(size) {
                send(&h.engine, &web, json!(chunk));
            }
            assert_eq!(people(&h, &ids), expected, "seed {seed}, round {round}");
        }
    }
}

#[test]
fn one_request_in_any_order_gives_the_same_people() {
    // All events in one batch: later messages read what earlier ones staged (the overlay).
    let events = [
        json!({"type":"identify","userId":"u-1","messageId":"m1","timestamp":"2026-11-01T10:00:00Z","traits":{"email":"shared@example.com"}}),
        json!({"type":"identify","userId":"u-2","messageId":"m2","timestamp":"2026-11-01T11:00:00Z","traits":{"email":"shared@example.com"}}),
        json!({"type":"identify","anonymousId":"a-1","messageId":"m3","timestamp":"2026-11-01T12:00:00Z","traits":{"email":"shared@example.com"}}),
        json!({"type":"track","anonymousId":"a-1","userId":"u-2","event":"x","messageId":"m4","timestamp":"2026-11-01T13:00:00Z"}),
        json!({"type":"track","anonymousId":"a-2","event":"x","messageId":"m5","timestamp":"2026-11-01T09:00:00Z","context":{"device":{"id":"d-1"}}}),
        json!({"type":"track","userId":"u-1","event":"x","messageId":"m6","timestamp":"2026-11-01T14:00:00Z","context":{"device":{"id":"d-1"}}}),
    ];
    let ids = [
        ("u-1", IdentifierType::UserId),
        ("u-2", IdentifierType::UserId),
        ("a-1", IdentifierType::AnonymousId),
        ("a-2", IdentifierType::AnonymousId),
        ("shared@example.com", IdentifierType::Email),
    ];
    let mut outcomes = std::collections::BTreeSet::new();
    for order in [[0, 1, 2, 3, 4, 5], [5, 4, 3, 2, 1, 0], [3, 0, 5, 1, 4, 2]] {
        let h = harness();
        let web = source(&h.engine, "web", Channel::Web, None);
        let batch: Vec<_> = order.iter().map(|i| events[*i].clone()).collect();
        assert_eq!(send(&h.engine, &web, json!(batch)).accepted, 6);
        outcomes.insert(people(&h, &ids));
    }
    assert_eq!(outcomes.len(), 1, "{outcomes:?}");
}

#[test]
fn split_an_identifier_reattributes_events_and_traits() {
    let h = harness();
    let web = source(&h.engine, "web", Channel::Web, None);
    send(
        &h.engine,
        &web,
        json!([
            {"type":"identify","userId":"u-1","messageId":"m1","timestamp":"2026-11-01T10:00:00Z","traits":{"plan":"gold"}},
            // A shared tablet's device id linked a second browsing session to u-1.
            {"type":"track","userId":"u-1","event":"Viewed","messageId":"m2","timestamp":"2026-11-01T11:00:00Z","context":{"device":{"id":"store-ipad"}}},
            {"type":"identify","anonymousId":"walk-in","messageId":"m3","timestamp":"2026-11-01T12:00:00Z","traits":{"plan":"none"},"context":{"device":{"id":"store-ipad"}}},
        ]),
    );
    let u1 = lookup(&h.engine, IdentifierType::UserId, "u-1").unwrap();
    assert_eq!(
        lookup(&h.engine, IdentifierType::AnonymousId, "walk-in"),
        Some(u1)
    );
    assert_eq!(
        h.engine.unaudited_profile(u1).unwrap().unwrap().traits["plan"].value,
        "none"
    );

    let (report, ticket) = h
        .engine
        .split(
            u1,
            &SplitRequest::Identifier {
                kind: IdentifierType::DeviceId,
                value: "store-ipad".into(),
            },
        )
        .unwrap();
    ticket.unwrap().wait_durable().unwrap();
    assert!(report.profiles.len() >= 2, "{report:?}");
    let after_u1 = lookup(&h.engine, IdentifierType::UserId, "u-1").unwrap();
    let walk_in = lookup(&h.engine, IdentifierType::AnonymousId, "walk-in").unwrap();
    assert_ne!(after_u1, walk_in);
    assert_eq!(after_u1, u1, "the oldest profile keeps its id");
    let profile = h.engine.unaudited_profile(u1).unwrap().unwrap();
    assert_eq!(
        profile.traits["plan"].value, "gold",
        "traits are rebuilt from u-1's own events"
    );
    assert_eq!(profile.event_count, 2);
    assert_eq!(h.engine.unaudited_events(walk_in, 10).unwrap().len(), 1);
    let identity = h.engine.unaudited_identity(u1).unwrap().unwrap();
    assert!(identity.merge_log.iter().any(|entry| entry.kind == "split"));
    assert!(
        identity
            .edges
            .iter()
            .any(|edge| edge.identifiers.iter().any(|n| n.status == "severed"))
    );
    // The ingest path's cache follows the split: new events of the walk-in land in their
    // own profile, not in u-1's.
    send(
        &h.engine,
        &web,
        json!([{"type":"track","anonymousId":"walk-in","event":"Viewed","messageId":"m4","timestamp":"2026-11-01T13:00:00Z"}]),
    );
    assert_eq!(h.engine.unaudited_events(walk_in, 10).unwrap().len(), 2);
    assert_eq!(
        h.engine.unaudited_profile(u1).unwrap().unwrap().event_count,
        2
    );
    // Splitting something that is not there.
    let missing = h.engine.split(
        u1,
        &SplitRequest::Identifier {
            kind: IdentifierType::Email,
            value: "x@y.cn".into(),
        },
    );
    assert!(matches!(missing, Err(EngineError::NotFound(_))));
}

#[test]
fn single_route_messages_and_sources() {
    let h = harness();
    let pos = source(&h.engine, "store 12", Channel::Pos, Some("CN"));
    assert!(matches!(
        h.engine.create_source("store 12", Channel::Pos, None),
        Err(EngineError::Conflict(_))
    ));
    assert!(matches!(
        h.engine.create_source("x", Channel::Pos, Some("ZZ")),
        Err(EngineError::InvalidRequest(_))
    ));
    assert!(matches!(
        h.engine.source_for_write_key("cdpwk_nope"),
        Err(EngineError::UnknownWriteKey)
    ));
    let body = br#"{"userId":"m-77","event":"Order Completed","properties":{"total":99}}"#;
    let parsed = parse_body(
        body,
        Some(MessageType::Track),
        OffsetDateTime::now_utc(),
        &MessageLimits::default(),
    )
    .unwrap();
    let report = h.engine.ingest(&pos, parsed.messages, false).unwrap();
    assert_eq!(report.accepted, 1);
    assert_eq!(h.engine.sources().unwrap().len(), 1);
}

#[test]
fn windowed_limits_through_the_store() {
    let dir = tempfile::tempdir().unwrap();
    let file: cdp_identity::IdentityRulesFile =
        toml::from_str("[types.device_id]\nlimit = 1\npriority = 30\nwindow_days = 7\n").unwrap();
    let rules = EngineRules {
        identity: cdp_identity::IdentityRules::from_file(file).unwrap(),
        ..EngineRules::default()
    };
    let engine = open_engine(dir.path(), rules);
    let app = source(&engine, "app", Channel::Ios, None);
    for (id, day, device) in [("m1", "01", "d1"), ("m2", "03", "d2"), ("m3", "12", "d3")] {
        send(
            &engine,
            &app,
            json!([{"type":"track","userId":"u-1","event":"Opened","messageId":id,
            "timestamp":format!("2026-11-{day}T10:00:00Z"),"context":{"device":{"id":device}}}]),
        );
    }
    let u1 = lookup(&engine, IdentifierType::UserId, "u-1").unwrap();
    assert_eq!(lookup(&engine, IdentifierType::DeviceId, "d1"), Some(u1));
    assert_eq!(
        lookup(&engine, IdentifierType::DeviceId, "d2"),
        None,
        "a second device within 7 days is dropped"
    );
    assert_eq!(
        lookup(&engine, IdentifierType::DeviceId, "d3"),
        Some(u1),
        "after 7 days a new device may join"
    );
}

#[test]
fn consent_records_follow_their_identifier_through_a_split() {
    use cdp_engine::{Access, ConsentInput, ConsentSubject};
    use cdp_policy::{CallerFacts, ConsentStatus};
    let h = harness();
    let web = source(&h.engine, "web", Channel::Web, Some("CN"));
    send(
        &h.engine,
        &web,
        json!([{"type": "identify", "userId": "u-s", "messageId": "s1",
                "traits": {"email": "s@example.cn", "phone": "13700001111"}}]),
    );
    let person = lookup(&h.engine, IdentifierType::UserId, "u-s").unwrap();
    let record = |subject: ConsentSubject, purpose: &str| {
        let (_, ticket) = h
            .engine
            .record_consent(
                ConsentInput {
                    subject,
                    purpose: purpose.into(),
                    status: ConsentStatus::Granted,
                    legal_basis: None,
                    notice_version: Some("2026-01".into()),
                    source: "test".into(),
                    channel: None,
                    recipient: None,
                    separate: false,
                    guardian: false,
                    scopes: Vec::new(),
                    categories: Vec::new(),
                    evidence: json!({"test": true}),
                    at: None,
                },
                "tester",
            )
            .unwrap();
        ticket.wait_durable().unwrap();
    };
    record(
        ConsentSubject::Identifier {
            kind: IdentifierType::Phone,
            value: "13700001111".into(),
            region: Some("CN".into()),
        },
        "marketing.sms",
    );
    record(
        ConsentSubject::Identifier {
            kind: IdentifierType::Email,
            value: "s@example.cn".into(),
            region: None,
        },
        "marketing.email",
    );
    record(ConsentSubject::Profile(person), "analytics");
    let access = Access {
        actor: "tester".into(),
        caller: CallerFacts {
            roles: vec!["dpo".into()],
            purposes: Vec::new(),
        },
        purpose: Some("customer_service".into()),
    };
    let purposes_of = |id: ProfileId| -> Vec<String> {
        let view = h.engine.read_consents(id, &access).unwrap().unwrap();
        let mut purposes: Vec<String> = view
            .history
            .iter()
            .map(|r| r["purpose"].as_str().unwrap().to_string())
            .collect();
        purposes.sort();
        purposes
    };
    assert_eq!(
        purposes_of(person),
        ["analytics", "marketing.email", "marketing.sms"]
    );
    let (_, ticket) = h
        .engine
        .split(
            person,
            &SplitRequest::Identifier {
                kind: IdentifierType::Phone,
                value: "+8613700001111".into(),
            },
        )
        .unwrap();
    if let Some(ticket) = ticket {
        ticket.wait_durable().unwrap();
    }
    let phone_person = h
        .engine
        .profile_of_identifier(&IdentifierType::Phone, "+8613700001111", None)
        .unwrap();
    let survivor = lookup(&h.engine, IdentifierType::UserId, "u-s").unwrap();
    assert_eq!(survivor, person);
    // The phone only ever came with the others: it belongs to nobody now. Its record stays
    // with the person as evidence, detached: the grant no longer counts for them.
    assert_eq!(phone_person, None);
    let view = h.engine.read_consents(survivor, &access).unwrap().unwrap();
    let sms = view
        .history
        .iter()
        .find(|r| r["purpose"] == "marketing.sms")
        .unwrap();
    assert_eq!(sms["detached"], true);
    let state = |purpose: &str| {
        view.current
            .iter()
            .find(|c| c.purpose == purpose)
            .unwrap()
            .state
    };
    assert_eq!(state("marketing.sms"), cdp_policy::ConsentState::None);
    assert_eq!(state("marketing.email"), cdp_policy::ConsentState::Granted);
    let verification = h.engine.verify_audit().unwrap();
    assert!(verification.ok, "{verification:?}");
}

/// An export through the engine (no HTTP): people with SMS consent, an audience, a processor.
/// Above the minimum audience size the file reads back whole and its manifest verifies; a
/// purpose nobody consented to leaves too few people, and the job is refused without a file.
#[test]
fn exports_finish_with_a_signed_manifest_or_are_refused_without_a_file() {
    use cdp_engine::{
        Access, AudienceQuery, ConsentInput, ConsentSubject, ExportFormat, ExportRequest,
        ExportStatus, RecipientInput,
    };

    let dir = tempfile::tempdir().unwrap();
    let engine = Arc::new(open_engine(dir.path(), EngineRules::default()));
    let indexer = cdp_engine::Indexer::new(engine.clone(), Default::default()).unwrap();
    indexer.start().unwrap();
    let shop = source(&engine, "shop", Channel::Web, Some("CN"));
    let people: Vec<serde_json::Value> = (0..24)
        .map(|i| {
            json!({"type": "identify", "userId": format!("e-{i}"), "messageId": format!("e-{i}"),
            "traits": {"phone": format!("139{i:08}"), "address": {"country": "CN"}}})
        })
        .collect();
    send(&engine, &shop, json!(people));
    for i in 0..24 {
        let input = ConsentInput {
            subject: ConsentSubject::Identifier {
                kind: IdentifierType::UserId,
                value: format!("e-{i}"),
                region: None,
            },
            purpose: "marketing.sms".into(),
            status: cdp_policy::ConsentStatus::Granted,
            legal_basis: None,
            notice_version: Some("2026-01".into()),
            source: "app".into(),
            channel: None,
            recipient: None,
            separate: false,
            guardian: false,
            scopes: Vec::new(),
            categories: Vec::new(),
            evidence: json!({"screen": "sms"}),
            at: None,
        };
        let (_, ticket) = engine.record_consent(input, "test").unwrap();
        ticket.wait_durable().unwrap();
    }
    indexer.catch_up().unwrap();
    let marketer = Access {
        actor: "marketer-1".into(),
        caller: cdp_policy::CallerFacts {
            roles: vec!["marketer".into()],
            purposes: Vec::new(),
        },
        purpose: None,
    };
    let (recipient, ticket) = engine
        .create_recipient(
            RecipientInput {
                name: "SMS gateway".into(),
                contact: "dpo@sms.example.cn".into(),
                role: cdp_policy::RecipientRole::Processor,
                region: "CN".into(),
                transfer_mechanism: "none".into(),
                allowed_purposes: vec!["marketing".into()],
            },
            "admin-1",
        )
        .unwrap();
    ticket.wait_durable().unwrap();
    let (audience, ticket) = engine
        .create_audience(
            "everyone",
            "marketing.sms",
            &AudienceQuery::Text("channel:web".into()),
            &marketer,
        )
        .unwrap();
    ticket.wait_durable().unwrap();
    // An export serves its audience's purpose: e-mail marketing has its own audience.
    let (email_audience, ticket) = engine
        .create_audience(
            "everyone by e-mail",
            "marketing.email",
            &AudienceQuery::Text("channel:web".into()),
            &marketer,
        )
        .unwrap();
    ticket.wait_durable().unwrap();
    let finished = |purpose: &str| {
        let audience = if purpose == "marketing.email" {
            &email_audience
        } else {
            &audience
        };
        let job = engine
            .start_export(
                ExportRequest {
                    audience: audience.audience.id.clone(),
                    purpose: purpose.into(),
                    recipient: recipient.id.clone(),
                    fields: vec!["pseudonym".into(), "phone_sha256_google".into()],
                    format: ExportFormat::Csv,
                    destination: None,
                    schedule: None,
                    campaign: None,
                },
                &marketer,
            )
            .unwrap();
        for _ in 0..1000 {
            let record = engine.export(&job.id).unwrap().unwrap();
            if record.status != ExportStatus::Running {
                return record;
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        panic!("export {} did not finish", job.id);
    };
    let done = finished("marketing.sms");
    assert_eq!(done.status, ExportStatus::Done, "{:?}", done.reason);
    let manifest = done.manifest.clone().unwrap();
    assert_eq!(manifest.counts.included, 24);
    let (_, file) = engine.export_file(&done.id, &marketer).unwrap();
    assert_eq!(file.len() as u64, manifest.file_bytes);
    assert_eq!(String::from_utf8(file).unwrap().lines().count(), 25);
    assert!(cdp_crypto::verify_signature(
        &manifest.signing_key,
        &manifest.signed_bytes(),
        manifest.signature.as_deref().unwrap()
    ));
    assert_eq!(manifest.signing_key, engine.signing_public_key().unwrap());

    // Nobody consented to e-mail marketing: fewer than the minimum audience size remain.
    let refused = finished("marketing.email");
    assert_eq!(refused.status, ExportStatus::Refused);
    assert!(refused.reason.unwrap().contains("minimum audience size"));
    let file = dir
        .path()
        .join("exports")
        .join(format!("{}.sealed", refused.id));
    assert!(!file.exists(), "a refused export left {}", file.display());
    assert!(matches!(
        engine.export_file(&refused.id, &marketer),
        Err(EngineError::Conflict(_))
    ));
}
