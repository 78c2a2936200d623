//! LZ4 block compression against the built-in dictionary, its hash table built once.
//!
//! `lz4_flex::block::compress_into_with_dict` allocates a zeroed 8 KB table and hashes the
//! whole 9 KB dictionary into it on every call, before compressing a record of a few hundred
//! bytes: under ingestion that was about 4% of all CPU (a profile and an event are encoded
//! per event), and under audited lookups most of each audit entry's encoding. Here the
//! dictionary's table is built once and copied per record (8 KB, no hashing).
//!
//! The output is a standard LZ4 block with an external dictionary, as lz4_flex writes it:
//! records are read back by `lz4_flex::block::decompress_into_with_dict`, whose checked decoder
//! refuses a malformed block, and records written before this compressor read as they were.
//! The search is LZ4's usual greedy one (one candidate per hash, extended both ways).

use std::cell::RefCell;
use std::sync::OnceLock;

use super::dictionary::DICTIONARY_1;

const HASH_LOG: u32 = 12;
const TABLE_SIZE: usize = 1 << HASH_LOG;
const MIN_MATCH: usize = 4;
/// The LZ4 block format ends with at least 5 literal bytes, and its last match starts at least
/// 12 bytes before the end.
const LAST_LITERALS: usize = 5;
const MATCH_FIND_LIMIT: usize = 12;
/// Positions (dictionary, then input) are kept as `u16`: both together must fit, which also
/// keeps every match offset within LZ4's 65,535.
const MAX_COMBINED: usize = u16::MAX as usize;

const _: () = assert!(DICTIONARY_1.len() >= HASHED && DICTIONARY_1.len() < MAX_COMBINED / 2);

/// Combined position (dictionary bytes first, then the input's) of the last 4-byte sequence
/// seen with each hash.
type Table = [u16; TABLE_SIZE];

/// Bytes read to hash a position; the hash covers the first five of them (lz4_flex's hash on
/// 64-bit machines: on records, five bytes pick far better candidates than four).
const HASHED: usize = 8;

/// The hash of the five bytes at `at` (`at + 8` within `bytes`).
fn hash_at(bytes: &[u8], at: usize) -> usize {
    let mut word = [0u8; HASHED];
    word.copy_from_slice(&bytes[at..at + HASHED]);
    let batch = u64::from_le_bytes(word);
    ((batch << 24).wrapping_mul(889_523_592_379) >> (64 - HASH_LOG)) as usize
}

fn read_u32(bytes: &[u8], at: usize) -> u32 {
    let mut word = [0u8; 4];
    word.copy_from_slice(&bytes[at..at + MIN_MATCH]);
    u32::from_le_bytes(word)
}

/// The dictionary's table: every position whose 8 hashed bytes lie in the dictionary.
fn dictionary_table() -> &'static Table {
    static TABLE: OnceLock<Box<Table>> = OnceLock::new();
    TABLE.get_or_init(|| {
        let mut table = Box::new([0u16; TABLE_SIZE]);
        for at in 0..=DICTIONARY_1.len() - HASHED {
            // Later positions win: nearer the input, and the same cost to encode.
            table[hash_at(DICTIONARY_1, at)] = at as u16;
        }
        table
    })
}

thread_local! {
    /// A copy of the dictionary's table per thread, refreshed for each record.
    static SCRATCH: RefCell<Box<Table>> = RefCell::new(Box::new([0u16; TABLE_SIZE]));
}

/// Appends `input` compressed against [`DICTIONARY_1`] to `out` as one LZ4 block. `false`
/// (nothing appended) when the input is too large for this compressor (64 KB with the
/// dictionary): the caller uses lz4_flex's.
pub(super) fn compress_with_dictionary(input: &[u8], out: &mut Vec<u8>) -> bool {
    if DICTIONARY_1.len() + input.len() > MAX_COMBINED {
        return false;
    }
    SCRATCH.with(|scratch| {
        let mut table = scratch.borrow_mut();
        table.copy_from_slice(dictionary_table().as_slice());
        compress(input, DICTIONARY_1, &mut table, out);
    });
    true
}

fn compress(input: &[u8], dictionary: &[u8], table: &mut Table, out: &mut Vec<u8>) {
    let base = dictionary.len();
    let length = input.len();
    let mut anchor = 0;
    if length > MATCH_FIND_LIMIT {
        let last_match_start = length - MATCH_FIND_LIMIT;
        let match_end_limit = length - LAST_LITERALS;
        let mut at = 0;
        let mut misses = 0usize;
        while at <= last_match_start {
            let sequence = read_u32(input, at);
            let slot = hash_at(input, at);
            let candidate = usize::from(table[slot]);
            let here = base + at;
            table[slot] = here as u16;
            let in_dictionary = candidate < base;
            let found = if in_dictionary {
                candidate + MIN_MATCH <= base && read_u32(dictionary, candidate) == sequence
            } else {
                candidate < here && read_u32(input, candidate - base) == sequence
            };
            if !found {
                // Through input that does not compress, look less often (LZ4's acceleration).
                misses += 1;
                at += 1 + (misses >> 6);
                continue;
            }
            misses = 0;
            // Forward, within the candidate's own part (a dictionary match stops at its end).
            let mut matched = MIN_MATCH;
            if in_dictionary {
                while at + matched < match_end_limit
                    && candidate + matched < base
                    && dictionary[candidate + matched] == input[at + matched]
                {
                    matched += 1;
                }
            } else {
                let source = candidate - base;
                while at + matched < match_end_limit
                    && input[source + matched] == input[at + matched]
                {
                    matched += 1;
                }
            }
            // Backward, over literals not yet written.
            let (mut start, mut source) = (at, candidate);
            let floor = if in_dictionary { 0 } else { base };
            while start > anchor && source > floor {
                let previous = if in_dictionary {
                    dictionary[source - 1]
                } else {
                    input[source - 1 - base]
                };
                if previous != input[start - 1] {
                    break;
                }
                start -= 1;
                source -= 1;
                matched += 1;
            }
            write_sequence(
                out,
                &input[anchor..start],
                (here - candidate) as u16,
                matched,
            );
            at = start + matched;
            anchor = at;
            // The position two back too, as the reference compressor does: the next record
            // of the same shape often repeats from there.
            if at - 2 + HASHED <= length {
                table[hash_at(input, at - 2)] = (base + at - 2) as u16;
            }
        }
    }
    write_last_literals(out, &input[anchor..]);
}

fn write_length(out: &mut Vec<u8>, mut rest: usize) {
    while rest >= 255 {
        out.push(255);
        rest -= 255;
    }
    out.push(rest as u8);
}

fn write_sequence(out: &mut Vec<u8>, literals: &[u8], offset: u16, matched: usize) {
    let extra = matched - MIN_MATCH;
    out.push(((literals.len().min(15) as u8) << 4) | extra.min(15) as u8);
    if literals.len() >= 15 {
        write_length(out, literals.len() - 15);
    }
    out.extend_from_slice(literals);
    out.extend_from_slice(&offset.to_le_bytes());
    if extra >= 15 {
        write_length(out, extra - 15);
    }
}

fn write_last_literals(out: &mut Vec<u8>, literals: &[u8]) {
    out.push((literals.len().min(15) as u8) << 4);
    if literals.len() >= 15 {
        write_length(out, literals.len() - 15);
    }
    out.extend_from_slice(literals);
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn round_trip(input: &[u8]) -> Vec<u8> {
        let mut block = Vec::new();
        assert!(compress_with_dictionary(input, &mut block));
        let mut back = vec![0u8; input.len()];
        let written = lz4_flex::block::decompress_into_with_dict(&block, &mut back, DICTIONARY_1)
            .expect("lz4_flex reads the block");
        assert_eq!(written, input.len());
        assert_eq!(back, input);
        block
    }

    /// Bytes that share runs with the dictionary and with themselves, like records do.
    fn recordlike() -> impl Strategy<Value = Vec<u8>> {
        let piece = prop_oneof![
            (0..DICTIONARY_1.len(), 1usize..64).prop_map(|(at, len)| {
                DICTIONARY_1[at..(at + len).min(DICTIONARY_1.len())].to_vec()
            }),
            proptest::collection::vec(any::<u8>(), 0..40),
            (any::<u8>(), 1usize..300).prop_map(|(byte, len)| vec![byte; len]),
        ];
        proptest::collection::vec(piece, 0..40).prop_map(|pieces| {
            let mut bytes = pieces.concat();
            // Repeat a part of itself, as a profile repeats its identifiers' shape.
            if bytes.len() > 20 {
                let copy = bytes[3..bytes.len() / 2].to_vec();
                bytes.extend_from_slice(&copy);
            }
            bytes
        })
    }

    proptest! {
        #[test]
        fn every_input_reads_back_through_lz4_flex(input in recordlike()) {
            round_trip(&input);
        }

        #[test]
        fn random_bytes_read_back(input in proptest::collection::vec(any::<u8>(), 0..3000)) {
            round_trip(&input);
        }
    }

    #[test]
    fn edges_read_back() {
        for length in 0..40 {
            round_trip(&vec![b'a'; length]);
            round_trip(&DICTIONARY_1[100..100 + length]);
        }
        round_trip(&DICTIONARY_1[DICTIONARY_1.len() - 500..]);
        round_trip(&vec![0u8; MAX_COMBINED - DICTIONARY_1.len()]);
        let mut out = Vec::new();
        assert!(!compress_with_dictionary(
            &vec![0u8; MAX_COMBINED - DICTIONARY_1.len() + 1],
            &mut out
        ));
        assert!(out.is_empty());
    }

    /// Events and profiles of the shapes the store holds, with values the dictionary lacks.
    fn records() -> Vec<Vec<u8>> {
        let mut records = Vec::new();
        for i in 0..50u32 {
            let name = ["Order Completed", "Product Viewed", "Checkout Started"][i as usize % 3];
            let evidence = vec![i as u8; 16];
            let event = serde_json::json!({
                "message": {
                    "type": "track", "event": name,
                    "message_id": format!("7f0c2a9e-51d4-4e8b-9a37-{i:012x}"),
                    "user_id": format!("u-{}", 93_810 + i * 7), "timestamp": format!("2027-03-14T09:{:02}:53.589Z", i % 60),
                    "properties": {"order_id": format!("A-{}", 77_120 + i), "revenue": 18.5 * f64::from(i), "currency": "CNY",
                                   "products": [{"sku": format!("SKU-{i}"), "price": 9.9, "quantity": i % 4}]},
                    "context": {"ip": format!("203.0.113.{i}"), "locale": "zh-CN",
                                "library": {"name": "analytics-python", "version": "2.3.3"}},
                },
                "source_id": "src_4f1e9b2c7d3a8e60", "channel": "web", "evidence": evidence.clone(),
            });
            records.push(rmp_serde::to_vec_named(&event).expect("msgpack"));
            let identifiers: Vec<_> = (0..(i % 6 + 1)).map(|k| {
                let kind = ["email", "phone", "user_id", "anonymous_id"][k as usize % 4];
                serde_json::json!({
                "kind": kind,
                "value": format!("person{i}.{k}@example.{k}.cn"),
                "source_id": "src_4f1e9b2c7d3a8e60", "channel": "app",
                "first_seen": format!("2027-01-{:02}T10:00:00Z", k + 1), "verified": k % 2 == 0,
            })}).collect();
            let profile = serde_json::json!({
                "id": evidence, "created_at": "2027-01-01T10:00:00Z", "identifiers": identifiers,
                "traits": {"city": "杭州", "gender": "female", "plan": format!("p{i}")},
                "event_count": i * 3, "activity": {"orders": [[i, 18.5], [i + 1, 99.0]], "views": {"shoes": i}},
            });
            records.push(rmp_serde::to_vec_named(&profile).expect("msgpack"));
        }
        records
    }

    #[test]
    fn compresses_records_as_well_as_lz4_flex() {
        let (mut ours, mut theirs, mut plain) = (0, 0, 0);
        for record in records() {
            ours += round_trip(&record).len();
            theirs += lz4_flex::block::compress_with_dict(&record, DICTIONARY_1).len();
            plain += record.len();
        }
        eprintln!("{plain} bytes: {ours} here, {theirs} with lz4_flex");
        assert!(
            ours <= theirs + theirs / 50,
            "{ours} bytes here, {theirs} with lz4_flex"
        );
        assert!(ours * 2 < plain, "{ours} of {plain}");
    }
}
