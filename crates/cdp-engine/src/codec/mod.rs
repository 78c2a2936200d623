//! The plaintext encoding of sealed records.
//!
//! Records are MessagePack with field names (structs as maps, so `#[serde(default)]` and
//! `skip_serializing_if` keep working as fields come and go), behind a marker byte. Stores
//! written before hold JSON, whose first byte is never the marker (`{`, `[` or `"`), so both
//! are read and every rewrite moves a record to the new form: no migration step.
//!
//! Why not JSON: decoding profile and consent records was about a third of an export's time
//! (`cdp bench export`); MessagePack has no escapes to scan and no numbers to parse from text.
//!
//! Records are LZ4-compressed against a built-in dictionary of made-up records of the same
//! shapes ([`dictionary`]) when that makes them smaller, which it does for nearly all: most
//! of a small record's bytes are field names and common values the dictionary holds (an
//! event of the demo: 344 bytes of MessagePack, about 140 compressed). A profile repeats its
//! field names, sources, channels and timestamps in every identifier and trait: about 2 KB
//! in MessagePack, and it is rewritten on every event. Records written before the dictionary
//! (LZ4 without it, from 192 bytes) keep their marker and are read as they are.
//!
//! Compression before encryption makes a sealed record's length depend on how repetitive its
//! content is. Lengths on disk are visible to whoever can read the data directory; to learn
//! something from them one would also have to add chosen content to the same person's record
//! and watch the length change record by record, with access to the files between writes.
//! Records were never length-hiding (a longer e-mail address already gave a longer record).

use serde::Serialize;
use serde::de::DeserializeOwned;

mod dictionary;
mod lz4;

/// First byte of a MessagePack record: 0xc1 is the one byte MessagePack never uses, and no
/// JSON text starts with it.
const MSGPACK: u8 = 0xc1;
/// First byte of an LZ4-compressed MessagePack record (the uncompressed length follows as 4
/// bytes little-endian, then the LZ4 block). MessagePack never starts a record without
/// [`MSGPACK`] here, and no JSON text starts with 0xc2 (a UTF-8 continuation lead for
/// U+0080..U+00BF, never valid outside a string).
const MSGPACK_LZ4: u8 = 0xc2;

/// First byte of a MessagePack record LZ4-compressed against [`dictionary::DICTIONARY_1`]
/// (then the uncompressed length as 4 bytes little-endian, then the block). No JSON text
/// starts with 0xc3 (a UTF-8 lead byte outside a string).
const MSGPACK_LZ4_DICT1: u8 = 0xc3;

/// Records shorter than this are stored uncompressed: nothing to gain (ids, empty values).
const COMPRESS_FROM: usize = 24;

/// Largest decompressed record accepted: above any record the store takes (a corrupted or
/// forged length must not make us allocate gigabytes).
const MAX_DECOMPRESSED: usize = 64 * 1024 * 1024;

/// Why a record could not be encoded or decoded (no content: it may be personal).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct CodecError;

pub(crate) fn encode<T: Serialize>(value: &T) -> Result<Vec<u8>, CodecError> {
    let mut out = Vec::with_capacity(512);
    out.push(MSGPACK);
    value
        .serialize(&mut rmp_serde::Serializer::new(&mut out).with_struct_map())
        .map_err(|_| CodecError)?;
    if out.len() > COMPRESS_FROM {
        let body = &out[1..];
        let length = u32::try_from(body.len()).map_err(|_| CodecError)?;
        let mut compressed = Vec::with_capacity(5 + body.len());
        compressed.push(MSGPACK_LZ4_DICT1);
        compressed.extend_from_slice(&length.to_le_bytes());
        if !lz4::compress_with_dictionary(body, &mut compressed) {
            // Above 55 KB: lz4_flex's compressor (it hashes the dictionary per call, which
            // a record this large amortises).
            let bound = lz4_flex::block::get_maximum_output_size(body.len());
            compressed.resize(5 + bound, 0);
            let written = lz4_flex::block::compress_into_with_dict(
                body,
                &mut compressed[5..],
                dictionary::DICTIONARY_1,
            )
            .map_err(|_| CodecError)?;
            compressed.truncate(5 + written);
        }
        if compressed.len() < out.len() {
            return Ok(compressed);
        }
    }
    Ok(out)
}

/// A small record written by the million whose fields never change (a contact record): its
/// fields by position (a MessagePack array, which a struct decodes from as well as from a
/// map) and uncompressed. For an 80-byte record, field names and an LZ4 pass that gained
/// nothing were most of what sealing it cost.
pub(crate) fn encode_positional<T: Serialize>(fields: &T) -> Result<Vec<u8>, CodecError> {
    let mut out = vec![MSGPACK];
    fields
        .serialize(&mut rmp_serde::Serializer::new(&mut out))
        .map_err(|_| CodecError)?;
    Ok(out)
}

pub(crate) fn decode<T: DeserializeOwned>(plain: &[u8]) -> Result<T, CodecError> {
    match msgpack_body(plain)? {
        Some(body) => rmp_serde::from_slice(&body).map_err(|_| CodecError),
        None => serde_json::from_slice(plain).map_err(|_| CodecError),
    }
}

/// Decodes a record with a seed: a reader that decodes only what one job needs of each record
/// (`exports::batch_profile`), borrowing strings from the decoded bytes where it can.
pub(crate) fn decode_seed<T, S>(plain: &[u8], seed: S) -> Result<T, CodecError>
where
    S: for<'de> serde::de::DeserializeSeed<'de, Value = T>,
{
    match msgpack_body(plain)? {
        Some(body) => seed
            .deserialize(&mut rmp_serde::Deserializer::from_read_ref(&body[..]))
            .map_err(|_| CodecError),
        None => {
            let mut json = serde_json::Deserializer::from_slice(plain);
            let value = seed.deserialize(&mut json).map_err(|_| CodecError)?;
            json.end().map_err(|_| CodecError)?;
            Ok(value)
        }
    }
}

/// The MessagePack body of a record (decompressed), or `None` for a JSON record of an earlier
/// store.
fn msgpack_body(plain: &[u8]) -> Result<Option<std::borrow::Cow<'_, [u8]>>, CodecError> {
    use std::borrow::Cow;
    Ok(match plain.split_first() {
        Some((&MSGPACK, body)) => Some(Cow::Borrowed(body)),
        Some((&MSGPACK_LZ4, rest)) => Some(Cow::Owned(decompress(rest, b"")?)),
        Some((&MSGPACK_LZ4_DICT1, rest)) => {
            Some(Cow::Owned(decompress(rest, dictionary::DICTIONARY_1)?))
        }
        _ => None,
    })
}

/// The body of a compressed record: 4 bytes of uncompressed length, then an LZ4 block made
/// with `dictionary` (empty: none). The length must be exactly what the block holds.
fn decompress(rest: &[u8], dictionary: &[u8]) -> Result<Vec<u8>, CodecError> {
    let (length, block) = rest.split_first_chunk::<4>().ok_or(CodecError)?;
    let length = usize::try_from(u32::from_le_bytes(*length)).map_err(|_| CodecError)?;
    if length > MAX_DECOMPRESSED {
        return Err(CodecError);
    }
    let mut body = vec![0u8; length];
    let written = lz4_flex::block::decompress_into_with_dict(block, &mut body, dictionary)
        .map_err(|_| CodecError)?;
    if written != length {
        return Err(CodecError);
    }
    Ok(body)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::consent::record::ConsentOrigin;
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
        assert!([MSGPACK, MSGPACK_LZ4_DICT1].contains(&bytes[0]));
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
    fn large_records_are_compressed_and_every_form_reads_back() {
        let mut large = sample();
        large.traits = serde_json::json!({
            "identifiers": (0..40).map(|n| serde_json::json!({
                "kind": "email", "source_id": "src_6908ebf60b25d2b8", "channel": "crm",
                "first_seen": "2026-06-14T01:08:32Z", "value": format!("p{n}@example.com"),
            })).collect::<Vec<_>>(),
        });
        let compressed = encode(&large).unwrap();
        assert_eq!(compressed[0], MSGPACK_LZ4_DICT1);
        let mut plain = vec![MSGPACK];
        large
            .serialize(&mut rmp_serde::Serializer::new(&mut plain).with_struct_map())
            .unwrap();
        // As stores written before the dictionary hold large records: LZ4 without it.
        let mut without_dictionary = vec![MSGPACK_LZ4];
        without_dictionary.extend(u32::try_from(plain.len() - 1).unwrap().to_le_bytes());
        without_dictionary.extend(lz4_flex::block::compress(&plain[1..]));
        assert_eq!(decode::<Sample>(&without_dictionary).unwrap(), large);
        // Read with the wrong dictionary (or none), a block is an error, not another record.
        let mut wrong_marker = compressed.clone();
        wrong_marker[0] = MSGPACK_LZ4;
        assert_eq!(decode::<Sample>(&wrong_marker), Err(CodecError));
        assert!(
            compressed.len() * 3 < plain.len(),
            "{} of {}",
            compressed.len(),
            plain.len()
        );
        assert_eq!(decode::<Sample>(&compressed).unwrap(), large);
        // Records written before compression (and small ones now) are plain MessagePack.
        assert_eq!(decode::<Sample>(&plain).unwrap(), large);
        let small = EvidenceId([1; 16]);
        let bytes = encode(&small).unwrap();
        assert_eq!(bytes[0], MSGPACK);
        assert_eq!(decode::<EvidenceId>(&bytes).unwrap(), small);

        // A damaged block, a cut block, a length that lies: errors, never a panic or a huge
        // allocation.
        let mut flipped = compressed.clone();
        let last = flipped.len() - 1;
        flipped[last] ^= 0xff;
        flipped[10] ^= 0x5a;
        assert_eq!(decode::<Sample>(&flipped), Err(CodecError));
        assert_eq!(
            decode::<Sample>(&compressed[..compressed.len() / 2]),
            Err(CodecError)
        );
        let mut lying = compressed.clone();
        lying[1..5].copy_from_slice(&u32::MAX.to_le_bytes());
        assert_eq!(decode::<Sample>(&lying), Err(CodecError));
        let mut short = compressed;
        let claimed = u32::from_le_bytes(short[1..5].try_into().unwrap());
        short[1..5].copy_from_slice(&(claimed - 1).to_le_bytes());
        assert_eq!(decode::<Sample>(&short), Err(CodecError));
    }

    #[test]
    fn times_are_integers_in_messagepack_and_records_with_text_times_still_read() {
        #[derive(Debug, PartialEq, Serialize, Deserialize)]
        struct Times {
            #[serde(with = "crate::records::instant")]
            utc: time::OffsetDateTime,
            #[serde(with = "crate::records::instant")]
            shanghai: time::OffsetDateTime,
            #[serde(with = "crate::records::instant")]
            far: time::OffsetDateTime,
        }
        #[derive(Serialize)]
        struct AsSchema2 {
            #[serde(with = "time::serde::rfc3339")]
            utc: time::OffsetDateTime,
            #[serde(with = "time::serde::rfc3339")]
            shanghai: time::OffsetDateTime,
            #[serde(with = "time::serde::rfc3339")]
            far: time::OffsetDateTime,
        }
        let times = Times {
            utc: time::macros::datetime!(2026-11-23 04:05:06.123456789 UTC),
            shanghai: time::macros::datetime!(2026-11-23 12:05:06 +08:00),
            far: time::macros::datetime!(2300-01-01 00:00 UTC),
        };
        let mut msgpack = Vec::new();
        times
            .serialize(&mut rmp_serde::Serializer::new(&mut msgpack).with_struct_map())
            .unwrap();
        let text = String::from_utf8_lossy(&msgpack);
        // UTC as an integer; another offset, or beyond the integer's range, as text.
        assert!(!text.contains("2026-11-23T04:05:06"), "{text}");
        assert!(text.contains("2026-11-23T12:05:06+08:00"), "{text}");
        assert!(text.contains("2300-01-01T00:00:00Z"), "{text}");
        let back = decode::<Times>(&encode(&times).unwrap()).unwrap();
        assert_eq!(back, times);
        assert_eq!(back.shanghai.offset(), times.shanghai.offset());
        // As schema 2 wrote them (text in MessagePack), and in JSON: the same times.
        let old = AsSchema2 {
            utc: times.utc,
            shanghai: times.shanghai,
            far: times.far,
        };
        let mut plain = vec![MSGPACK];
        old.serialize(&mut rmp_serde::Serializer::new(&mut plain).with_struct_map())
            .unwrap();
        assert_eq!(decode::<Times>(&plain).unwrap(), times);
        let json = serde_json::to_vec(&times).unwrap();
        assert!(String::from_utf8_lossy(&json).contains("2026-11-23T04:05:06.123456789Z"));
        assert_eq!(decode::<Times>(&json).unwrap(), times);
        // Every integer is a time (within year 2554); text that is no time is an error.
        let mut huge = vec![MSGPACK];
        serde_json::json!({"utc": u64::MAX, "shanghai": "yesterday", "far": 0})
            .serialize(&mut rmp_serde::Serializer::new(&mut huge).with_struct_map())
            .unwrap();
        assert_eq!(decode::<Times>(&huge), Err(CodecError));
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        for bad in [
            &[][..],
            &[MSGPACK][..],
            &[MSGPACK, 0xdf, 0xff, 0xff, 0xff, 0xff][..],
            &[MSGPACK_LZ4][..],
            &[MSGPACK_LZ4, 3, 0, 0][..],
            &[MSGPACK_LZ4, 3, 0, 0, 0, 0xff][..],
            &[MSGPACK_LZ4_DICT1][..],
            &[MSGPACK_LZ4_DICT1, 3, 0, 0, 0, 0xff][..],
            &[MSGPACK_LZ4_DICT1, 3, 0, 0, 0, 0x30, 0xff, 0xff][..],
            b"{\"name\"",
        ] {
            assert_eq!(decode::<Sample>(bad), Err(CodecError));
        }
    }

    /// What an export reads of a consent equals what the whole record holds for decisions, in
    /// both stored forms, and the fields it skips come back empty (profiles:
    /// `exports::batch_profile`).
    #[test]
    fn batch_readers_keep_what_decisions_and_rows_use() {
        use crate::consent::record::{ConsentForBatch, ConsentRecord};
        use cdp_core::Channel;
        let at = time::macros::datetime!(2026-11-23 04:05:06 UTC);
        let node = NodeKey(cdp_crypto::BlindIndex::from_bytes([7; 32]));
        let consent = ConsentRecord {
            id: "cns_1".into(),
            purpose: "marketing.email".into(),
            status: cdp_policy::ConsentStatus::Granted,
            legal_basis: None,
            notice_version: Some("2026-01".into()),
            source: "newsletter sign-up".into(),
            channel: Some(Channel::Web),
            recipient: Some("rcp_1".into()),
            separate: true,
            guardian: false,
            scopes: Vec::new(),
            categories: vec!["user.health".into()],
            evidence: serde_json::json!({"double_opt_in": true}),
            origin: ConsentOrigin::Identifier {
                kind: cdp_core::IdentifierType::Email,
                node,
            },
            via: "api".into(),
            at,
            recorded_at: at,
            recorded_by: "dpo".into(),
            detached: false,
        };
        for consent_bytes in [
            encode(&consent).unwrap(),
            serde_json::to_vec(&consent).unwrap(),
        ] {
            let counted = decode::<ConsentForBatch>(&consent_bytes).unwrap();
            let counted: &ConsentRecord = std::borrow::Borrow::borrow(&counted);
            assert_eq!(counted.fact(), consent.fact());
            assert_eq!(
                (&counted.id, counted.recorded_at),
                (&consent.id, consent.recorded_at)
            );
            assert_eq!(counted.evidence, serde_json::Value::Null);
        }
        // A detached grant does not count, read either way.
        let detached = ConsentRecord {
            detached: true,
            ..consent
        };
        let counted = decode::<ConsentForBatch>(&encode(&detached).unwrap()).unwrap();
        assert_eq!(
            std::borrow::Borrow::<ConsentRecord>::borrow(&counted).fact(),
            None
        );
    }
}
