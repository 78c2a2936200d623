//! Keyed encodings for fuzzy matching (cdp-identity `fuzzy`): Bloom filters of a field's
//! q-grams, tokens of dates and categories, and blocking keys, each under its own subkey.
//!
//! Without the key none can be computed, so a dictionary of names cannot be encoded and
//! matched against stolen filters (the attack on unkeyed Bloom-filter linkage). The bit
//! positions of a q-gram are drawn from its HMAC output rather than by double hashing
//! (`h1 + i*h2`), whose regular pattern lets an attacker recognise frequent q-grams from the
//! filters alone (Niedermeyer et al., 2014).

use ring::hmac;

/// The keys of [`crate::Keyring::fuzzy_key`].
pub struct FuzzyKey {
    filter: hmac::Key,
    token: hmac::Key,
    block: hmac::Key,
}

impl std::fmt::Debug for FuzzyKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("FuzzyKey(..)")
    }
}

/// The most bit positions one q-gram sets.
pub const MAX_POSITIONS: usize = 32;

impl FuzzyKey {
    pub(crate) fn new(filter: &[u8; 32], token: &[u8; 32], block: &[u8; 32]) -> Self {
        Self {
            filter: hmac::Key::new(hmac::HMAC_SHA256, filter),
            token: hmac::Key::new(hmac::HMAC_SHA256, token),
            block: hmac::Key::new(hmac::HMAC_SHA256, block),
        }
    }

    /// The Bloom filter of `grams` of the field `field`, `W` words of 64 bits, each gram
    /// setting `positions` bits (at most [`MAX_POSITIONS`]). The field is part of the hashed
    /// input, so one q-gram sets different bits in a surname and in a street.
    pub fn filter<const W: usize>(
        &self,
        field: &str,
        grams: impl IntoIterator<Item = impl AsRef<str>>,
        positions: usize,
    ) -> [u64; W] {
        const { assert!(W > 0 && (W * 64).is_power_of_two() && W * 64 <= 65_536) };
        let positions = positions.min(MAX_POSITIONS);
        let mut bits = [0u64; W];
        let field = field.as_bytes();
        for gram in grams {
            let mut set = 0;
            for round in 0u8.. {
                if set == positions {
                    break;
                }
                let mut context = hmac::Context::with_key(&self.filter);
                context.update(&[field.len().min(255) as u8]);
                context.update(&field[..field.len().min(255)]);
                context.update(&[round]);
                context.update(gram.as_ref().as_bytes());
                let tag = context.sign();
                // 16-bit positions: the filter's size divides 65,536, so every bit is as likely.
                for pair in tag.as_ref().chunks_exact(2) {
                    if set == positions {
                        break;
                    }
                    let bit = usize::from(u16::from_le_bytes([pair[0], pair[1]])) % (W * 64);
                    bits[bit / 64] |= 1 << (bit % 64);
                    set += 1;
                }
            }
        }
        bits
    }

    /// A keyed token of a value of a field (a date part, a gender), for equality only.
    pub fn token(&self, field: &str, value: &str) -> u64 {
        let tag = keyed(&self.token, field, value);
        u64::from_le_bytes(tag[..8].try_into().unwrap_or_default())
    }

    /// A blocking key: the blind index of one blocking pass's value (`soundex(surname) +
    /// birth year`), under which candidates are found without the value.
    pub fn blocking_key(&self, pass: &str, value: &str) -> [u8; 16] {
        let tag = keyed(&self.block, pass, value);
        let mut out = [0u8; 16];
        out.copy_from_slice(&tag[..16]);
        out
    }
}

fn keyed(key: &hmac::Key, label: &str, value: &str) -> [u8; 32] {
    let label = &label.as_bytes()[..label.len().min(255)];
    let mut context = hmac::Context::with_key(key);
    context.update(&[label.len() as u8]);
    context.update(label);
    context.update(value.as_bytes());
    let mut out = [0u8; 32];
    out.copy_from_slice(context.sign().as_ref());
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(seed: u8) -> FuzzyKey {
        FuzzyKey::new(&[seed; 32], &[seed + 1; 32], &[seed + 2; 32])
    }

    #[test]
    fn filters_are_keyed_per_field_and_deterministic() {
        let k = key(1);
        let a: [u64; 8] = k.filter("surname", ["_s", "sm", "mi"], 16);
        assert_eq!(a, k.filter::<8>("surname", ["_s", "sm", "mi"], 16));
        assert_ne!(a, k.filter::<8>("street", ["_s", "sm", "mi"], 16));
        assert_ne!(a, key(7).filter::<8>("surname", ["_s", "sm", "mi"], 16));
        let ones: u32 = a.iter().map(|w| w.count_ones()).sum();
        assert!((40..=48).contains(&ones), "{ones}");
        // More than one HMAC's worth of positions.
        let many: [u64; 8] = k.filter("surname", ["_s"], 30);
        let ones: u32 = many.iter().map(|w| w.count_ones()).sum();
        assert!((26..=30).contains(&ones), "{ones}");
        assert_eq!(k.filter::<8>("surname", Vec::<String>::new(), 16), [0; 8]);
    }

    #[test]
    fn tokens_and_blocking_keys_are_keyed() {
        let (a, b) = (key(1), key(9));
        assert_eq!(a.token("dob", "12"), a.token("dob", "12"));
        assert_ne!(a.token("dob", "12"), a.token("dob", "21"));
        assert_ne!(a.token("dob", "12"), b.token("dob", "12"));
        assert_ne!(a.token("dob", "12"), a.token("gender", "12"));
        assert_ne!(
            a.blocking_key("surname+year", "S530|1965"),
            b.blocking_key("surname+year", "S530|1965")
        );
    }
}
