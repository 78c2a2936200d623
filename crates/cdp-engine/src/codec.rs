//! The plaintext encoding of sealed records.
//!
//! Records are MessagePack with field names (structs as maps, so `#[serde(default)]` and
//! `skip_serializing_if` keep working as fields come and go), behind a marker byte. Stores
//! written before hold JSON, whose first byte is never the marker (`{`, `[` or `"`), so both
//! are read and every rewrite moves a record to the new form: no migration step.
//!
//! Why not JSON: decoding profile and consent records was about a third of an export's time
//! (`cdp bench export`); MessagePack has no escapes to scan and no numbers to parse from text.

use serde::Serialize;
use serde::de::DeserializeOwned;

/// First byte of a MessagePack record: 0xc1 is the one byte MessagePack never uses, and no
/// JSON text starts with it.
const MSGPACK: u8 = 0xc1;

/// Why a record could not be encoded or decoded (no content: it may be personal).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct CodecError;

pub(crate) fn encode<T: Serialize>(value: &T) -> Result<Vec<u8>, CodecError> {
    let mut out = Vec::with_capacity(512);
    out.push(MSGPACK);
    value
        .serialize(&mut rmp_serde::Serializer::new(&mut out).with_struct_map())
        .map_err(|_| CodecError)?;
    Ok(out)
}

pub(crate) fn decode<T: DeserializeOwned>(plain: &[u8]) -> Result<T, CodecError> {
    match plain.split_first() {
        Some((&MSGPACK, body)) => rmp_serde::from_slice(body).map_err(|_| CodecError),
        _ => serde_json::from_slice(plain).map_err(|_| CodecError),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::consent::ConsentOrigin;
    use crate::records::{EvidenceId, NodeKey};
    use serde::Deserialize;

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    struct Sample {
        name: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        note: Option<String>,
        traits: serde_json::Value,
        node: NodeKey,
        evidence: EvidenceId,
        origin: ConsentOrigin,
        #[serde(with = "time::serde::rfc3339")]
        at: time::OffsetDateTime,
        #[serde(with = "crate::records::order_key")]
        order: cdp_identity::graph::OrderKey,
    }

    fn sample() -> Sample {
        Sample {
            name: "张三".into(),
            note: None,
            traits: serde_json::json!({"plan": "gold", "n": 3, "f": 1.5, "neg": -7, "deep": [{"a": null}]}),
            node: NodeKey(cdp_crypto::BlindIndex::from_bytes([7u8; 32])),
            evidence: EvidenceId([9u8; 16]),
            origin: ConsentOrigin::Identifier {
                kind: cdp_core::IdentifierType::Email,
                node: NodeKey(cdp_crypto::BlindIndex::from_bytes([3u8; 32])),
            },
            at: time::macros::datetime!(2026-11-23 04:05:06.123456789 UTC),
            order: (-1_700_000_000_000_000, [0xab; 16]),
        }
    }

    #[test]
    fn msgpack_round_trip_and_marker() {
        let bytes = encode(&sample()).unwrap();
        assert_eq!(bytes[0], MSGPACK);
        assert_eq!(decode::<Sample>(&bytes).unwrap(), sample());
    }

    #[test]
    fn json_records_of_older_stores_still_decode() {
        let json = serde_json::to_vec(&sample()).unwrap();
        // The JSON form is the one older stores hold: hex ids, orders as 16 numbers.
        let text = String::from_utf8(json.clone()).unwrap();
        assert!(text.contains(&"07".repeat(32)), "{text}");
        assert!(text.contains("[-1700000000000000,[171,171,"), "{text}");
        assert_eq!(decode::<Sample>(&json).unwrap(), sample());
    }

    #[test]
    fn a_profile_without_activity_stores_none_and_reads_back_equal() {
        use crate::records::ProfileRecord;
        let record = ProfileRecord {
            id: cdp_core::ProfileId::from_bytes([5; 16]),
            created_at: time::macros::datetime!(2026-11-23 00:00 UTC),
            identifiers: Vec::new(),
            traits: Default::default(),
            channels: Default::default(),
            evidence: Default::default(),
            first_order: (1, [1; 16]),
            last_order: (2, [2; 16]),
            event_count: 0,
            merged_from: Vec::new(),
            consent_marks: Default::default(),
            activity: Default::default(),
            restricted: false,
            tags_removed: Default::default(),
        };
        let bytes = encode(&record).unwrap();
        assert!(!bytes.windows(8).any(|w| w == b"activity"));
        assert_eq!(decode::<ProfileRecord>(&bytes).unwrap(), record);
        // As a version 1 store holds it: JSON with the activity written out.
        let mut json = serde_json::to_value(&record).unwrap();
        json["activity"] = serde_json::to_value(crate::computed::Activity::default()).unwrap();
        let json = serde_json::to_vec(&json).unwrap();
        assert_eq!(decode::<ProfileRecord>(&json).unwrap(), record);
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        for bad in [
            &[][..],
            &[MSGPACK][..],
            &[MSGPACK, 0xdf, 0xff, 0xff, 0xff, 0xff][..],
            b"{\"name\"",
        ] {
            assert_eq!(decode::<Sample>(bad), Err(CodecError));
        }
    }
}
