//! The compression dictionary of sealed records (version 1).
//!
//! Most records are small (an event is 150-400 bytes of MessagePack) and spend half their
//! bytes on field names: `message_id`, `anonymous_id`, `received_at`, `source_id`, `context`...
//! LZ4 finds no repeats inside one such record, so it stored them as they were. With an
//! external dictionary holding records of the same shapes, each field name (and each common
//! value: `track`, `Order Completed`, `analytics.js`, `zh-CN`, timestamps' `2026-`) becomes a
//! back-reference of three bytes: the demo's events went from 344 to about 140 bytes.
//!
//! The dictionary holds **no personal data**: it is the MessagePack of made-up records (the
//! values are placeholders on example.com). It is part of the storage format: a record
//! compressed with it can only be read with the same bytes, so the file is frozen (its SHA-256
//! is pinned below) and a better dictionary would be version 2 with its own marker byte, both
//! read for ever. [`write_dictionary`] is how version 1 was made (`cargo test -p cdp-engine
//! write_dictionary -- --ignored` writes it again into the target directory, to compare).

/// Version 1, made on 2026-12-02 by [`write_dictionary`].
pub(super) const DICTIONARY_1: &[u8] = include_bytes!("dictionary-1.bin");

#[cfg(test)]
mod tests {
    use super::*;
    use crate::records::{EvidenceRecord, NodeRecord, ProfileRecord, StoredEvent};
    use serde::Serialize;
    use serde_json::json;

    /// SHA-256 of `dictionary-1.bin` behind its length (`cdp_crypto::sha256_parts`: 8 bytes
    /// big-endian, then the file): records on disk depend on every byte. By hand:
    /// `(printf '%016x' $(stat -c %s dictionary-1.bin) | xxd -r -p; cat dictionary-1.bin) | sha256sum`.
    const DICTIONARY_1_SHA256: &str =
        "d55020ee789db5afe49379148f425aa7fab01465093c9f5e0ba67412bd25104d";

    fn msgpack<T: Serialize>(value: &T) -> Vec<u8> {
        let mut out = Vec::new();
        value
            .serialize(&mut rmp_serde::Serializer::new(&mut out).with_struct_map())
            .unwrap();
        out
    }

    fn event(message: serde_json::Value, source: &str, channel: &str) -> Vec<u8> {
        let mut message = message;
        let object = message.as_object_mut().unwrap();
        for field in [
            "user_id",
            "anonymous_id",
            "previous_id",
            "group_id",
            "event",
            "name",
        ] {
            object.entry(field).or_insert(serde_json::Value::Null);
        }
        for field in ["traits", "properties", "context"] {
            object.entry(field).or_insert(json!({}));
        }
        object.entry("generated_message_id").or_insert(json!(false));
        let event: StoredEvent = serde_json::from_value(json!({
            "message": message,
            "source_id": source,
            "channel": channel,
            "evidence": "00".repeat(16),
        }))
        .unwrap();
        msgpack(&event)
    }

    /// Made-up records of every frequent shape, the most frequent (events) last.
    fn dictionary() -> Vec<u8> {
        let node = |n: u8| format!("{n:02x}").repeat(32);
        let mut out = Vec::new();
        let node_record: NodeRecord = serde_json::from_value(json!({
            "kind": "anonymous_id", "profile": "p_00000000000000000000000000000000",
            "last_mention": [1_767_225_600_000_000i64, vec![0u8; 16]],
        }))
        .unwrap();
        out.extend(msgpack(&node_record));
        let evidence: EvidenceRecord = serde_json::from_value(json!({
            "id": "00".repeat(16),
            "nodes": [["anonymous_id", node(1)], ["email", node(2)], ["phone", node(3)],
                      ["user_id", node(4)], ["device_id", node(5)], ["wechat_openid", node(6)]],
            "severed": [],
            "order": [1_767_225_600_000_000i64, vec![0u8; 16]],
            "first": {"message_id": "00000000-0000-4000-8000-000000000000",
                      "source_id": "src_0000000000000000", "channel": "web",
                      "at": "2026-01-01T00:00:00Z"},
            "profile": "p_00000000000000000000000000000000",
            "dropped": [{"kind": "device_id", "node": node(7), "reason": "type_limit_reached"}],
        }))
        .unwrap();
        out.extend(msgpack(&evidence));
        let identifier = |kind: &str, value: &str, field: &str, channel: &str| {
            json!({
                "kind": kind, "value": value, "node": node(8),
                "source_id": "src_0000000000000000", "channel": channel, "field": field,
                "first_seen": "2026-01-01T00:00:00Z", "last_seen": "2026-01-01T00:00:00.000000Z",
            })
        };
        let trait_value = |value: serde_json::Value| {
            json!({"value": value, "source_id": "src_0000000000000000", "channel": "crm",
                   "at": "2026-01-01T00:00:00Z", "first_seen": "2026-01-01T00:00:00Z"})
        };
        let channel = json!({"first_seen": "2026-01-01T00:00:00Z",
                             "last_seen": "2026-01-01T00:00:00Z", "events": 1});
        let profile: ProfileRecord = serde_json::from_value(json!({
            "id": "p_00000000000000000000000000000000",
            "created_at": "2026-01-01T00:00:00Z",
            "identifiers": [
                identifier("anonymous_id", "anon-0000", "anonymousId", "web"),
                identifier("user_id", "user-0000", "userId", "ios"),
                identifier("email", "name@example.com", "traits.email", "android"),
                identifier("phone", "+8613800000000", "traits.phone", "mini_program"),
                identifier("device_id", "device-0000", "context.device.id", "pos"),
                identifier("wechat_openid", "o0000000000000000000000000", "context.externalIds", "customer_service"),
                identifier("member_id", "member-0000", "traits.member_id", "crm"),
            ],
            "traits": {
                "address": trait_value(json!({"city": "Shanghai", "country": "CN", "postal_code": "200000", "street": "1 Example Road"})),
                "age": trait_value(json!(30)),
                "birthday": trait_value(json!("1990-01-01")),
                "city": trait_value(json!("北京")),
                "email": trait_value(json!("name@example.com")),
                "first_name": trait_value(json!("Name")),
                "gender": trait_value(json!("female")),
                "last_name": trait_value(json!("Name")),
                "member_level": trait_value(json!("gold")),
                "name": trait_value(json!("Name Name")),
                "phone": trait_value(json!("+8613800000000")),
                "tags": trait_value(json!(["vip"])),
            },
            "channels": {"web": channel, "ios": channel, "android": channel,
                         "mini_program": channel, "pos": channel, "crm": channel,
                         "customer_service": channel},
            "evidence": ["00".repeat(16), "01".repeat(16)],
            "first_order": [1_767_225_600_000_000i64, vec![0u8; 16]],
            "last_order": [1_767_225_600_000_000i64, vec![0u8; 16]],
            "event_count": 1,
            "merged_from": [],
            "consent_marks": {},
            "activity": {
                "orders": [{"at": 1_767_225_600i64, "cents": 10_000, "categories": ["Apparel"]}],
                "refunds": [], "lifetime_orders": 1, "lifetime_cents": 10_000,
                "lifetime_refunds": 0, "first_order_at": 1_767_225_600i64,
                "last_order_at": 1_767_225_600i64,
                "views": [[1_767_225_600i64, "Apparel"]],
                "categories": {"Apparel": 1},
                "daily": {"Product Viewed": {"20454": 1}},
            },
            "restricted": false,
            "tags_removed": [],
        }))
        .unwrap();
        out.extend(msgpack(&profile));

        let web_context = json!({
            "ip": "192.0.2.1",
            "library": {"name": "analytics.js", "version": "5.0.0"},
            "locale": "zh-CN",
            "page": {"path": "/products/0000", "referrer": "https://www.example.com/",
                     "search": "", "title": "Example", "url": "https://shop.example.com/products/0000"},
            "timezone": "Asia/Shanghai",
            "userAgent": "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 Safari/537.36",
            "campaign": {"medium": "cpc", "name": "campaign", "source": "baidu"},
        });
        let app_context = json!({
            "app": {"build": "100", "name": "Example", "namespace": "com.example.shop", "version": "1.0.0"},
            "device": {"id": "device-0000", "manufacturer": "Apple", "model": "iPhone15,2", "type": "ios",
                       "advertisingId": "00000000-0000-0000-0000-000000000000"},
            "library": {"name": "analytics-ios", "version": "4.1.0"},
            "locale": "zh-CN",
            "network": {"carrier": "China Mobile", "cellular": false, "wifi": true},
            "os": {"name": "iOS", "version": "17.0"},
            "screen": {"density": 3, "height": 844, "width": 390},
            "timezone": "Asia/Shanghai",
            "externalIds": [{"collection": "users", "encoding": "none", "id": "o0000000000000000000000000", "type": "wechat_openid"}],
        });
        let product = json!({"brand": "Example", "category": "Apparel", "currency": "CNY",
                             "name": "Product", "price": 99.0, "product_id": "sku-0000",
                             "quantity": 1, "sku": "sku-0000"});
        let times = json!({"timestamp": "2026-01-01T00:00:00Z",
                           "received_at": "2026-01-01T00:00:00.000000000Z"});
        let with_times = |mut message: serde_json::Value| {
            for (key, value) in times.as_object().unwrap() {
                message[key] = value.clone();
            }
            message
        };
        out.extend(event(
            with_times(json!({
                "type": "identify", "message_id": "00000000-0000-4000-8000-000000000000",
                "user_id": "user-0000", "anonymous_id": "anon-0000",
                "traits": {"city": "北京", "email": "name@example.com", "name": "Name",
                           "phone": "+8613800000000"},
                "context": web_context,
            })),
            "src_0000000000000000",
            "web",
        ));
        out.extend(event(
            with_times(json!({
                "type": "screen", "message_id": "demo-0-0", "name": "Home",
                "anonymous_id": "anon-0000", "context": app_context,
            })),
            "ios",
            "ios",
        ));
        out.extend(event(
            with_times(json!({
                "type": "page", "message_id": "00000000-0000-4000-8000-000000000000",
                "name": "Home", "anonymous_id": "anon-0000",
                "properties": {"path": "/", "referrer": "", "title": "Example", "url": "https://shop.example.com/"},
                "context": web_context,
            })),
            "web-shop",
            "web",
        ));
        out.extend(event(
            with_times(json!({
                "type": "track", "event": "Order Completed",
                "message_id": "00000000-0000-4000-8000-000000000000", "user_id": "user-0000",
                "properties": {"currency": "CNY", "discount": 0, "order_id": "order-0000",
                               "products": [product], "revenue": 99.0, "shipping": 0,
                               "tax": 0, "total": 99.0},
                "context": {"device": {"id": "device-0000"}, "traits": {"phone": "+8613800000000"}},
            })),
            "pos",
            "pos",
        ));
        out.extend(event(
            with_times(json!({
                "type": "track", "event": "Product Viewed", "message_id": "demo-0-0",
                "anonymous_id": "anon-0000", "properties": product,
                "context": {"device": {"id": "dev-0000"}},
            })),
            "mini_program",
            "mini_program",
        ));
        // The shapes of the demo generator's events (`cdp demo`, `cdp bench`).
        out.extend(event(
            with_times(json!({
                "type": "identify", "message_id": "demo-0-0", "anonymous_id": "anon-0-0",
                "traits": {"city": "上海", "email": "p0.0@mail0.example.com", "phone": "+8613800000000"},
                "context": {"device": {"id": "dev-0-0"}},
            })),
            "web-shop",
            "web",
        ));
        out.extend(event(
            with_times(json!({
                "type": "track", "event": "Order Completed", "message_id": "demo-0-0",
                "anonymous_id": "anon-0-0",
                "properties": {"products": [{"category": "tea"}], "revenue": 100},
                "context": {"device": {"id": "dev-0-0"}},
            })),
            "pos",
            "pos",
        ));
        out.extend(event(
            with_times(json!({
                "type": "track", "event": "Product Viewed", "message_id": "demo-0-0",
                "anonymous_id": "anon-0-0", "context": {"device": {"id": "dev-0-0"}},
            })),
            "mini_program",
            "mini_program",
        ));
        out
    }

    #[test]
    #[ignore = "writes the dictionary into target/ (how version 1 was made)"]
    fn write_dictionary() {
        let path =
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/dictionary-1.bin");
        std::fs::write(&path, dictionary()).unwrap();
        eprintln!("wrote {}", path.display());
    }

    /// An event with values the dictionary does not hold still loses two fifths of its bytes
    /// (472 to 241): what it saves are the field names and the shapes.
    #[test]
    fn an_event_unlike_the_dictionarys_values_loses_two_fifths() {
        let plain = event(
            json!({
                "type": "track", "event": "Checkout Started", "message_id": "7f0c2a9e-51d4-4e8b-9a37-2c1d5e6f7a8b",
                "user_id": "u-93810", "timestamp": "2027-03-14T09:26:53.589Z",
                "received_at": "2027-03-14T09:26:54.102938475Z",
                "properties": {"order_id": "A-77120", "revenue": 318.5, "currency": "CNY"},
                "context": {"ip": "203.0.113.77", "locale": "en-GB",
                            "library": {"name": "analytics-python", "version": "2.3.3"}},
            }),
            "src_4f1e9b2c7d3a8e60",
            "web",
        );
        let mut record = vec![super::super::MSGPACK];
        record.extend(&plain);
        let encoded =
            super::super::encode(&super::super::decode::<StoredEvent>(&record).unwrap()).unwrap();
        assert_eq!(encoded[0], super::super::MSGPACK_LZ4_DICT1);
        assert!(
            encoded.len() * 5 < plain.len() * 3,
            "{} of {}",
            encoded.len(),
            plain.len()
        );
    }

    #[test]
    fn dictionary_1_is_frozen() {
        let digest = cdp_crypto::sha256_parts(&[DICTIONARY_1]);
        assert_eq!(crate::records::hex::encode(&digest), DICTIONARY_1_SHA256);
        assert!(
            DICTIONARY_1.len() <= 64 * 1024,
            "LZ4 reaches back 64 KiB at most"
        );
    }
}
