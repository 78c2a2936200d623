//! The writer's cache (`write/cache.rs`) stays equal to the store while it evicts and loads
//! profiles all the time: the engine's tests keep two decoded profiles (`test-support`), so
//! nearly every profile an event changes was let go of (and freed after the write lock) and
//! is read back: a version lost on the way would lose counts and traits here.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use cdp_core::{Channel, IdentifierType};
use common::{harness, lookup, send, source};
use serde_json::json;

#[test]
fn profiles_evicted_and_read_back_keep_every_event_through_merges() {
    let h = harness();
    let web = source(&h.engine, "web shop", Channel::Web, Some("CN"));
    let people = 8;
    let rounds = 4;
    for round in 0..rounds {
        // One request per round with everybody in it, then one request per person: the
        // decoded cache (two profiles) is left behind at once.
        let batch: Vec<_> = (0..people)
            .map(|person| {
                json!({"type":"identify","userId":format!("u-{person}"),
                       "messageId":format!("b-{round}-{person}"),
                       "timestamp":format!("2026-11-0{}T10:00:0{person}Z", round + 1),
                       "traits":{"plan":format!("round {round}")}})
            })
            .collect();
        send(&h.engine, &web, json!(batch));
        for person in 0..people {
            send(
                &h.engine,
                &web,
                json!([{"type":"track","userId":format!("u-{person}"),"event":"Viewed",
                        "messageId":format!("t-{round}-{person}"),
                        "timestamp":format!("2026-11-0{}T11:00:0{person}Z", round + 1)}]),
            );
        }
    }
    for person in 0..people {
        let id = lookup(&h.engine, IdentifierType::UserId, &format!("u-{person}")).unwrap();
        let profile = h.engine.unaudited_profile(id).unwrap().unwrap();
        assert_eq!(profile.event_count, 2 * rounds, "person {person}");
        assert_eq!(profile.traits["plan"].value, json!("round 3"));
    }

    // Two devices' anonymous profiles, evicted by the others' events, are absorbed by u-0's
    // profile; the survivor, read back, takes the next event of a device, and a new e-mail
    // seen with the other device joins it (resolved through the devices' identifier nodes).
    send(
        &h.engine,
        &web,
        json!([
            {"type":"page","anonymousId":"a-1","messageId":"p1","timestamp":"2026-11-10T10:00:00Z"},
            {"type":"page","anonymousId":"a-2","messageId":"p2","timestamp":"2026-11-10T10:00:01Z"},
        ]),
    );
    // One request per person from `first` on: evicts the devices' profiles and u-0's.
    let view_each = |first: usize, tag: &str, at: &str| {
        for n in first..people {
            send(
                &h.engine,
                &web,
                json!([{"type":"track","userId":format!("u-{n}"),"event":"Viewed",
                        "messageId":format!("{tag}-{n}"),"timestamp":at}]),
            );
        }
    };
    view_each(0, "x", "2026-11-10T10:00:02Z");
    send(
        &h.engine,
        &web,
        json!([{"type":"page","anonymousId":"a-1","userId":"u-0","messageId":"p3",
                "timestamp":"2026-11-10T10:00:03Z"},
               {"type":"page","anonymousId":"a-2","userId":"u-0","messageId":"p4",
                "timestamp":"2026-11-10T10:00:04Z"}]),
    );
    view_each(1, "y", "2026-11-10T10:00:05Z");
    send(
        &h.engine,
        &web,
        json!([{"type":"page","anonymousId":"a-2","messageId":"p5","timestamp":"2026-11-10T10:00:06Z"},
               {"type":"identify","anonymousId":"a-1","messageId":"p6","timestamp":"2026-11-10T10:00:07Z",
                "traits":{"email":"zero@example.com"}}]),
    );
    let survivor = lookup(&h.engine, IdentifierType::UserId, "u-0").unwrap();
    assert_eq!(
        lookup(&h.engine, IdentifierType::AnonymousId, "a-1"),
        Some(survivor)
    );
    assert_eq!(
        lookup(&h.engine, IdentifierType::AnonymousId, "a-2"),
        Some(survivor)
    );
    assert_eq!(
        lookup(&h.engine, IdentifierType::Email, "zero@example.com"),
        Some(survivor)
    );
    let profile = h.engine.unaudited_profile(survivor).unwrap().unwrap();
    // 8 of the rounds, x-0, the two anonymous pages, p3, p4, p5 and p6.
    assert_eq!(profile.event_count, 2 * rounds + 7);
    assert_eq!(h.engine.unaudited_events(survivor, 100).unwrap().len(), 15);
    for n in 1..people {
        let id = lookup(&h.engine, IdentifierType::UserId, &format!("u-{n}")).unwrap();
        assert_eq!(
            h.engine.unaudited_profile(id).unwrap().unwrap().event_count,
            2 * rounds + 2
        );
    }
}
