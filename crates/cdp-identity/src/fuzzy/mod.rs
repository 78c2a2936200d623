//! Fuzzy matching of people from quasi-identifying traits (names, birth date, address,
//! postcode, phone as text), on keyed encodings only (issue 20).
//!
//! - [`prepare`]: normalised text, q-grams, Soundex and date parts: the clear steps before
//!   encoding, in memory only.
//! - [`FieldFilter`]: a 512-bit Bloom filter of one field's q-grams, built by
//!   `cdp_crypto::FuzzyKey` under a subkey of the master key (HMAC of each q-gram), and the
//!   Dice coefficient of two of them. Dates and small categories are keyed tokens instead.
//! - [`model`]: Fellegi-Sunter comparison levels per field, m and u probabilities estimated
//!   from the data (u from random pairs, m and the match share by EM, as Splink does), and a
//!   match weight per pair with each field's contribution.
//! - [`link`]: candidate pairs from keyed blocking keys, scoring, and linking in descending
//!   weight under exclusivity limits (two records of one source never in one person), with a
//!   review band between the thresholds; clusters and pairwise precision/recall/F1.
//!
//! The crate stays pure: the keyed hashing is the caller's (cdp-crypto), and so is storage.

pub mod link;
pub mod model;
pub mod prepare;

/// Bits in one field's Bloom filter.
pub const FILTER_BITS: usize = 512;

/// One field's Bloom filter: bit `i` is word `i / 64`, bit `i % 64`.
#[derive(
    Clone, Copy, PartialEq, Eq, Hash, Debug, Default, serde::Serialize, serde::Deserialize,
)]
pub struct FieldFilter(pub [u64; FILTER_BITS / 64]);

impl FieldFilter {
    pub fn set(&mut self, bit: usize) {
        let bit = bit % FILTER_BITS;
        self.0[bit / 64] |= 1 << (bit % 64);
    }

    pub fn ones(&self) -> u32 {
        self.0.iter().map(|w| w.count_ones()).sum()
    }

    /// Dice coefficient `2|A∩B| / (|A|+|B|)`: 1 for equal filters, 0 for disjoint or empty ones.
    pub fn dice(&self, other: &Self) -> f64 {
        let total = self.ones() + other.ones();
        if total == 0 {
            return 0.0;
        }
        let common: u32 = self
            .0
            .iter()
            .zip(&other.0)
            .map(|(a, b)| (a & b).count_ones())
            .sum();
        f64::from(2 * common) / f64::from(total)
    }

    /// The filter's bytes (little-endian words), as it is sealed with the person.
    pub fn to_bytes(&self) -> [u8; FILTER_BITS / 8] {
        let mut out = [0u8; FILTER_BITS / 8];
        for (chunk, word) in out.chunks_exact_mut(8).zip(&self.0) {
            chunk.copy_from_slice(&word.to_le_bytes());
        }
        out
    }

    pub fn from_bytes(bytes: &[u8; FILTER_BITS / 8]) -> Self {
        let mut words = [0u64; FILTER_BITS / 64];
        for (word, chunk) in words.iter_mut().zip(bytes.chunks_exact(8)) {
            let mut b = [0u8; 8];
            b.copy_from_slice(chunk);
            *word = u64::from_le_bytes(b);
        }
        Self(words)
    }
}

/// One field of a person as the matcher sees it: an encoding, never a clear value.
#[derive(Clone, Copy, PartialEq, Eq, Debug, serde::Serialize, serde::Deserialize)]
pub enum Encoded {
    /// Text (names, address lines, postcode, phone): the Bloom filter of its q-grams.
    Text(FieldFilter),
    /// A date as keyed tokens of its numbers, each keyed without its role so that a day and
    /// month written the other way round are recognised.
    Date { year: u64, month: u64, day: u64 },
    /// A small category (gender, state): one keyed token, compared for equality.
    Token(u64),
}

/// How a field is compared.
#[derive(Clone, Copy, PartialEq, Eq, Debug, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FieldKind {
    Text,
    Date,
    Exact,
}

/// A field of the model: its name (`surname`, `birthday`...) and how it is compared.
#[derive(Clone, PartialEq, Eq, Debug, serde::Serialize, serde::Deserialize)]
pub struct FieldSpec {
    pub name: String,
    pub kind: FieldKind,
}

/// A person (or a record of one) as the matcher sees them: one slot per field of the model
/// (`None`: missing), the keyed blocking keys, and exclusivity keys: two people may be linked
/// only if no key appears on both sides of the link (the source of a one-to-one linkage, or
/// an identifier type limited to one per person).
#[derive(Clone, Debug, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct FuzzyRecord {
    pub fields: Vec<Option<Encoded>>,
    /// (blocking pass, keyed blocking key): the pass tells training which fields made the
    /// candidates it found.
    pub blocks: Vec<(u8, [u8; 16])>,
    pub exclusive: Vec<u64>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dice_of_filters() {
        let mut a = FieldFilter::default();
        let mut b = FieldFilter::default();
        assert_eq!(a.dice(&b), 0.0);
        for bit in [1, 70, 300, 511] {
            a.set(bit);
            b.set(bit);
        }
        assert_eq!(a.dice(&b), 1.0);
        b.set(5);
        b.set(6);
        assert!((a.dice(&b) - 8.0 / 10.0).abs() < 1e-12);
        assert_eq!(FieldFilter::from_bytes(&a.to_bytes()), a);
    }
}
