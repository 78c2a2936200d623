//! Attributes derived from a profile, computed in one place for the index, exports, reads and
//! the policy facts: age and its band, country of residence, city, tags, and the RFM score.
//! (Before this file each consumer derived its own, and they drifted: the export's city was
//! not trimmed, the age band was formatted three times, the export scored RFM against no
//! population while the index used the population's quintiles.)

use std::collections::BTreeMap;

use serde_json::Value;
use time::OffsetDateTime;

use crate::computed::ComputedTraits;
use crate::records::{ProfileRecord, TraitValue};

/// Longest city, tag or indexed text value, in bytes.
pub const MAX_TEXT_VALUE: usize = 64;
/// Most tags kept of a person.
const MAX_TAGS: usize = 50;

/// The derived attributes of one person, as of a time: each computed when asked (an index
/// pass or an export asks for a few of them for millions of people).
#[derive(Debug, Clone, Copy)]
pub struct DerivedAttributes<'r> {
    record: &'r ProfileRecord,
    now: OffsetDateTime,
}

impl<'r> DerivedAttributes<'r> {
    pub fn of(record: &'r ProfileRecord, now: OffsetDateTime) -> Self {
        Self { record, now }
    }

    /// Age in years, from the `age` trait or else the `birthday` trait (`YYYY-MM-DD...`).
    pub fn age(&self) -> Option<u32> {
        age_of(&self.record.traits, self.now)
    }

    /// `30-39` for 30 to 39 (the policies' `generalise:band10`).
    pub fn age_band(&self) -> Option<String> {
        self.age().map(age_band)
    }

    /// ISO 3166 alpha-2 code of the country of residence (`address.country` or `country`).
    pub fn residency(&self) -> Option<String> {
        address_part(self.record, "country").and_then(country_code)
    }

    /// `address.city` or `city`, trimmed, 1 to 64 bytes.
    pub fn city(&self) -> Option<String> {
        address_part(self.record, "city")
            .map(str::trim)
            .filter(|c| !c.is_empty() && c.len() <= MAX_TEXT_VALUE)
            .map(str::to_string)
    }

    /// The `tags` trait less the ones the person deleted (at most 50 of 1 to 64 bytes).
    pub fn tags(&self) -> Vec<String> {
        let record = self.record;
        let Some(Value::Array(tags)) = record.traits.get("tags").map(|t| &t.value) else {
            return Vec::new();
        };
        tags.iter()
            .filter_map(Value::as_str)
            .filter(|tag| {
                !tag.is_empty()
                    && tag.len() <= MAX_TEXT_VALUE
                    && !record.tags_removed.contains(*tag)
            })
            .take(MAX_TAGS)
            .map(str::to_string)
            .collect()
    }
}

/// The RFM score: the sum of the three quintile scores (3 to 15; 0 without orders).
pub fn rfm_score(traits: &ComputedTraits) -> u32 {
    traits.rfm_r + traits.rfm_f + traits.rfm_m
}

/// The ten-year band of an age: `30-39` (the policies' `generalise:band10`).
pub fn age_band(age: u32) -> String {
    cdp_policy::transform::decade_band(age)
}

fn age_of(traits: &BTreeMap<String, TraitValue>, now: OffsetDateTime) -> Option<u32> {
    if let Some(age) = traits.get("age").and_then(|t| match &t.value {
        Value::Number(n) => n.as_u64(),
        Value::String(s) => s.trim().parse::<u64>().ok(),
        _ => None,
    }) {
        return u32::try_from(age).ok().filter(|a| *a < 130);
    }
    let birthday = traits.get("birthday")?.value.as_str()?;
    let mut parts = birthday.get(..10)?.split('-');
    let year: i32 = parts.next()?.parse().ok()?;
    let month: u8 = parts.next()?.parse().ok()?;
    let day: u8 = parts.next()?.parse().ok()?;
    let (now_year, now_month, now_day) = (now.year(), u8::from(now.month()), now.day());
    let mut age = now_year - year;
    if (now_month, now_day) < (month, day) {
        age -= 1;
    }
    u32::try_from(age).ok().filter(|a| *a < 130)
}

/// A text value of the profile: `address.<field>` first, then the trait `<field>`.
fn address_part<'r>(record: &'r ProfileRecord, field: &str) -> Option<&'r str> {
    record
        .traits
        .get("address")
        .and_then(|a| a.value.get(field))
        .and_then(Value::as_str)
        .or_else(|| record.traits.get(field).and_then(|t| t.value.as_str()))
}

/// An ISO 3166 alpha-2 code from a code or a common country name.
fn country_code(text: &str) -> Option<String> {
    let trimmed = text.trim();
    if trimmed.len() == 2 && trimmed.chars().all(|c| c.is_ascii_alphabetic()) {
        return Some(trimmed.to_ascii_uppercase());
    }
    let known = [
        ("china", "CN"),
        ("中国", "CN"),
        ("prc", "CN"),
        ("people's republic of china", "CN"),
        ("germany", "DE"),
        ("deutschland", "DE"),
        ("france", "FR"),
        ("italy", "IT"),
        ("spain", "ES"),
        ("netherlands", "NL"),
        ("ireland", "IE"),
        ("united states", "US"),
        ("usa", "US"),
        ("united kingdom", "GB"),
    ];
    let lower = trimmed.to_lowercase();
    known
        .iter()
        .find(|(name, _)| *name == lower)
        .map(|(_, code)| (*code).to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use cdp_core::ProfileId;

    fn trait_of(value: Value, now: OffsetDateTime) -> TraitValue {
        TraitValue {
            value,
            source_id: "s".into(),
            channel: cdp_core::Channel::Web,
            at: now,
            first_seen: now,
        }
    }

    #[test]
    fn countries_and_ages() {
        assert_eq!(country_code(" cn ").as_deref(), Some("CN"));
        assert_eq!(country_code("中国").as_deref(), Some("CN"));
        assert_eq!(country_code("Atlantis"), None);
        let now = time::macros::datetime!(2026-06-01 0:00 UTC);
        let mut traits = BTreeMap::new();
        traits.insert(
            "birthday".into(),
            trait_of(Value::String("2014-06-02".into()), now),
        );
        assert_eq!(age_of(&traits, now), Some(11));
        traits.insert("age".into(), trait_of(serde_json::json!(30), now));
        assert_eq!(age_of(&traits, now), Some(30));
        assert_eq!(age_band(30), "30-39");
        assert_eq!(age_band(9), "0-9");
    }

    #[test]
    fn city_is_trimmed_and_bounded_wherever_it_comes_from() {
        let now = time::macros::datetime!(2026-06-01 0:00 UTC);
        let mut record = ProfileRecord::new(ProfileId::from_bytes([1; 16]), now, (0, [0; 16]));
        record.traits.insert(
            "address".into(),
            trait_of(
                serde_json::json!({"city": "  Shanghai ", "country": "中国"}),
                now,
            ),
        );
        record.traits.insert(
            "tags".into(),
            trait_of(serde_json::json!(["vip", "", "gone"]), now),
        );
        record.tags_removed.insert("gone".into());
        let derived = DerivedAttributes::of(&record, now);
        assert_eq!(derived.city().as_deref(), Some("Shanghai"));
        assert_eq!(derived.residency().as_deref(), Some("CN"));
        assert_eq!(derived.tags(), vec!["vip".to_string()]);
        assert_eq!(derived.age_band(), None);
        record.traits.insert(
            "address".into(),
            trait_of(serde_json::json!({"city": "x".repeat(65)}), now),
        );
        assert_eq!(DerivedAttributes::of(&record, now).city(), None);
    }
}
