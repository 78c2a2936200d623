//! What fuzzy matching compares of a person, and how a person's clear values become the
//! keyed encodings the matcher sees (cdp-identity `fuzzy`, issue 20).
//!
//! A [`FuzzySchema`] names the fields (a name, a kind, bits per q-gram) and the blocking
//! passes (which parts of which fields make a blocking key). [`FuzzySchema::encode`] turns a
//! record's clear values into a [`FuzzyRecord`]: Bloom filters and tokens under
//! [`cdp_crypto::FuzzyKey`], and blocking keys as blind indexes. The clear values are not kept.

use std::collections::BTreeMap;

use cdp_crypto::FuzzyKey;
use cdp_identity::fuzzy::prepare::{date_parts, normalise_text, qgrams, soundex};
use cdp_identity::fuzzy::{Encoded, FieldFilter, FieldKind, FieldSpec, FuzzyRecord};

/// Bits a q-gram sets in its field's 512-bit filter. With 5-15 bigrams in a name or an
/// address line, 16 bits each fill a quarter to a third of the filter: far enough from full
/// that unrelated values share few bits.
pub const DEFAULT_POSITIONS: usize = 16;

/// One compared field.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct FuzzyField {
    pub name: String,
    pub kind: FieldKind,
    #[serde(default = "default_positions")]
    pub positions: usize,
}

impl FuzzyField {
    /// A field with [`DEFAULT_POSITIONS`].
    pub fn new(name: &str, kind: FieldKind) -> Self {
        Self {
            name: name.into(),
            kind,
            positions: DEFAULT_POSITIONS,
        }
    }
}

fn default_positions() -> usize {
    DEFAULT_POSITIONS
}

/// A part of a blocking key.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case", tag = "use", content = "field")]
pub enum BlockPart {
    /// The normalised value.
    Whole(String),
    /// The Soundex code of the first word.
    Soundex(String),
    /// The year of a date.
    Year(String),
}

/// One blocking pass: records whose parts are all present and equal are candidates.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct BlockingPass {
    pub name: String,
    pub parts: Vec<BlockPart>,
}

impl BlockingPass {
    pub fn new(name: &str, parts: Vec<BlockPart>) -> Self {
        Self {
            name: name.into(),
            parts,
        }
    }
}

impl BlockPart {
    pub fn whole(field: &str) -> Self {
        Self::Whole(field.into())
    }

    pub fn soundex(field: &str) -> Self {
        Self::Soundex(field.into())
    }

    pub fn year(field: &str) -> Self {
        Self::Year(field.into())
    }

    /// The field the part is made of.
    pub fn field(&self) -> &str {
        let (Self::Whole(name) | Self::Soundex(name) | Self::Year(name)) = self;
        name
    }
}

/// The fields and blocking passes of fuzzy matching.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct FuzzySchema {
    pub fields: Vec<FuzzyField>,
    pub passes: Vec<BlockingPass>,
}

impl FuzzySchema {
    /// The fields of a profile fuzzy matching compares, by trait name: names, birth date,
    /// gender, phone (as text: a digit typed wrong still compares close), street, city and
    /// postcode; blocked by the surname's Soundex with the birth year, the given name's with
    /// the postcode, both names, the birth date, the phone, and the street with the city.
    pub fn standard() -> Self {
        use BlockPart as P;
        let field = FuzzyField::new;
        Self {
            fields: vec![
                field("first_name", FieldKind::Text),
                field("last_name", FieldKind::Text),
                field("birthday", FieldKind::Date),
                field("gender", FieldKind::Exact),
                field("phone", FieldKind::Text),
                field("address.street", FieldKind::Text),
                field("address.city", FieldKind::Text),
                field("address.postal_code", FieldKind::Text),
            ],
            passes: vec![
                BlockingPass::new(
                    "surname+year",
                    vec![P::soundex("last_name"), P::year("birthday")],
                ),
                BlockingPass::new(
                    "given+postcode",
                    vec![P::soundex("first_name"), P::whole("address.postal_code")],
                ),
                BlockingPass::new(
                    "given+surname",
                    vec![P::soundex("first_name"), P::soundex("last_name")],
                ),
                BlockingPass::new("birthday", vec![P::whole("birthday")]),
                BlockingPass::new("phone", vec![P::whole("phone")]),
                BlockingPass::new(
                    "street+city",
                    vec![P::whole("address.street"), P::whole("address.city")],
                ),
            ],
        }
    }

    /// The fields (indexes into `fields`) each blocking pass is made of.
    pub fn pass_fields(&self) -> Vec<Vec<usize>> {
        self.passes
            .iter()
            .map(|pass| {
                pass.parts
                    .iter()
                    .filter_map(|part| self.fields.iter().position(|f| f.name == part.field()))
                    .collect()
            })
            .collect()
    }

    /// The model's view of the fields.
    pub fn specs(&self) -> Vec<FieldSpec> {
        self.fields
            .iter()
            .map(|f| FieldSpec {
                name: f.name.clone(),
                kind: f.kind,
            })
            .collect()
    }

    /// Encodes one record's clear values (field name -> value; absent or blank: missing).
    pub fn encode(&self, key: &FuzzyKey, values: &BTreeMap<String, String>) -> FuzzyRecord {
        let normalised: BTreeMap<&str, String> = values
            .iter()
            .map(|(k, v)| (k.as_str(), normalise_text(v)))
            .filter(|(_, v)| !v.is_empty())
            .collect();
        let fields = self
            .fields
            .iter()
            .map(|field| {
                let value = normalised.get(field.name.as_str())?;
                match field.kind {
                    FieldKind::Text => Some(Encoded::Text(FieldFilter(key.filter(
                        &field.name,
                        qgrams(value),
                        field.positions,
                    )))),
                    FieldKind::Date => {
                        let (year, month, day) = date_parts(values.get(&field.name)?)?;
                        // One label for every part: a day written as the month is the same
                        // token, which is how a transposition is recognised.
                        let token = |n: u64| key.token(&field.name, &n.to_string());
                        Some(Encoded::Date {
                            year: token(u64::from(year)),
                            month: token(u64::from(month)),
                            day: token(u64::from(day)),
                        })
                    }
                    FieldKind::Exact => Some(Encoded::Token(key.token(&field.name, value))),
                }
            })
            .collect();
        let blocks = self
            .passes
            .iter()
            .enumerate()
            .filter_map(|(index, pass)| {
                let parts: Option<Vec<String>> = pass
                    .parts
                    .iter()
                    .map(|part| match part {
                        BlockPart::Whole(f) => normalised.get(f.as_str()).cloned(),
                        BlockPart::Soundex(f) => normalised.get(f.as_str()).map(|v| soundex(v)),
                        BlockPart::Year(f) => values
                            .get(f)
                            .and_then(|v| date_parts(v))
                            .map(|(y, _, _)| y.to_string()),
                    })
                    .collect();
                Some((
                    u8::try_from(index).ok()?,
                    key.blocking_key(&pass.name, &parts?.join("|")),
                ))
            })
            .collect();
        FuzzyRecord {
            fields,
            blocks,
            exclusive: Vec::new(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn schema() -> FuzzySchema {
        FuzzySchema {
            fields: vec![
                FuzzyField::new("surname", FieldKind::Text),
                FuzzyField::new("dob", FieldKind::Date),
                FuzzyField::new("state", FieldKind::Exact),
            ],
            passes: vec![BlockingPass::new(
                "surname+year",
                vec![BlockPart::soundex("surname"), BlockPart::year("dob")],
            )],
        }
    }

    fn values(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn similar_records_compare_close_and_share_a_block() {
        let keyring = cdp_crypto::Keyring::generate().unwrap();
        let key = keyring.fuzzy_key(cdp_crypto::KeyVersion::FIRST).unwrap();
        let schema = schema();
        let a = schema.encode(
            &key,
            &values(&[
                ("surname", "Neumann"),
                ("dob", "19151111"),
                ("state", "NSW"),
            ]),
        );
        let b = schema.encode(
            &key,
            &values(&[("surname", "neuman "), ("dob", "1915-11-11"), ("state", "")]),
        );
        let (Some(Encoded::Text(x)), Some(Encoded::Text(y))) = (&a.fields[0], &b.fields[0]) else {
            panic!("{a:?}");
        };
        assert!(x.dice(y) > 0.8, "{}", x.dice(y));
        assert_eq!(a.fields[1], b.fields[1]);
        assert!(b.fields[2].is_none());
        assert_eq!(a.blocks, b.blocks);
        // A missing part leaves the pass out.
        let c = schema.encode(&key, &values(&[("surname", "neumann")]));
        assert!(c.blocks.is_empty());
        // Another key, other encodings.
        let other = cdp_crypto::Keyring::generate().unwrap();
        let other = other.fuzzy_key(cdp_crypto::KeyVersion::FIRST).unwrap();
        let d = schema.encode(
            &other,
            &values(&[
                ("surname", "Neumann"),
                ("dob", "19151111"),
                ("state", "NSW"),
            ]),
        );
        assert_ne!(a.fields[0], d.fields[0]);
        assert_ne!(a.blocks, d.blocks);
    }
}
