//! A person's fuzzy encodings in the store (`Keyspace::Matching`): `enc/<profile id>` holds
//! the encodings sealed with the person's data key (crypto-shredded with them), and each
//! blocking key is a blind index `blk/<pass><key><profile id>` with no value, read in key
//! order for candidate search. The clear values they come from are never stored here.

use std::collections::BTreeMap;

use cdp_core::ProfileId;
use cdp_crypto::{DataKey, FuzzyKey};
use cdp_identity::fuzzy::FuzzyRecord;
use cdp_store::{Keyspace, WriteBatch};
use serde::{Deserialize, Serialize};

use crate::fuzzy::FuzzySchema;
use crate::records::ProfileRecord;
use crate::{Engine, EngineError};

pub(crate) const ENCODING_PREFIX: &[u8] = b"enc/";
pub(crate) const BLOCK_PREFIX: &[u8] = b"blk/";

/// One person's encodings (`enc/<profile id>`, sealed with their data key).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct StoredEncoding {
    /// A digest of the schema and the values encoded: unchanged values are not encoded again.
    pub(crate) inputs: [u8; 16],
    pub(crate) record: FuzzyRecord,
}

pub(crate) fn encoding_key(id: &ProfileId) -> Vec<u8> {
    [ENCODING_PREFIX, id.as_bytes().as_slice()].concat()
}

pub(crate) fn block_key(pass: u8, key: &[u8; 16], id: &ProfileId) -> Vec<u8> {
    let mut out = Vec::with_capacity(BLOCK_PREFIX.len() + 33);
    out.extend_from_slice(BLOCK_PREFIX);
    out.push(pass);
    out.extend_from_slice(key);
    out.extend_from_slice(id.as_bytes());
    out
}

/// A block key's parts: (pass, blocking key) and the profile.
pub(crate) fn parse_block_key(key: &[u8]) -> Option<((u8, [u8; 16]), ProfileId)> {
    let rest = key.strip_prefix(BLOCK_PREFIX)?;
    if rest.len() != 33 {
        return None;
    }
    let block: [u8; 16] = rest[1..17].try_into().ok()?;
    let id: [u8; 16] = rest[17..].try_into().ok()?;
    Some(((rest[0], block), ProfileId::from_bytes(id)))
}

/// The clear values of a person that the schema compares: a trait by name (`address.city`
/// is the `city` of the `address` trait, as Segment nests it, or a flat trait of that name),
/// else an identifier of a type of that name (`phone`, normalised). Numbers count as text.
pub(crate) fn values_of(schema: &FuzzySchema, record: &ProfileRecord) -> BTreeMap<String, String> {
    let mut values = BTreeMap::new();
    for field in &schema.fields {
        let name = field.name.as_str();
        let from_trait = record.traits.get(name).map(|t| &t.value).or_else(|| {
            let (outer, inner) = name.split_once('.')?;
            record.traits.get(outer)?.value.get(inner)
        });
        let text = match from_trait {
            Some(serde_json::Value::String(text)) => Some(text.clone()),
            Some(serde_json::Value::Number(number)) => Some(number.to_string()),
            _ => record
                .identifiers
                .iter()
                .find(|entry| entry.kind.as_str() == name)
                .map(|entry| entry.value.clone()),
        };
        if let Some(text) = text.filter(|t| !t.trim().is_empty()) {
            values.insert(field.name.clone(), text);
        }
    }
    values
}

/// What encoding a person left: their record, and whether it was written anew.
pub(crate) struct Encoded {
    pub(crate) record: FuzzyRecord,
    pub(crate) changed: bool,
}

impl Engine {
    /// Brings a person's stored encodings up to date with their values (staged in `batch`):
    /// `None` when they have nothing to compare (their old encodings, if any, are removed).
    pub(crate) fn encode_person(
        &self,
        (schema, schema_digest, key): (&FuzzySchema, &[u8; 16], &FuzzyKey),
        (record, data_key): (&ProfileRecord, &DataKey),
        batch: &mut WriteBatch,
    ) -> Result<Option<Encoded>, EngineError> {
        let values = values_of(schema, record);
        let stored = self.stored_encoding(&record.id, data_key)?;
        if values.is_empty() {
            if let Some(old) = stored {
                self.stage_encoding_removal(&record.id, &old, batch);
            }
            return Ok(None);
        }
        let mut parts: Vec<&[u8]> = vec![schema_digest.as_slice()];
        for (name, value) in &values {
            parts.push(name.as_bytes());
            parts.push(value.as_bytes());
        }
        let inputs = cdp_crypto::digest16(&parts);
        if let Some(old) = stored {
            if old.inputs == inputs {
                return Ok(Some(Encoded {
                    record: old.record,
                    changed: false,
                }));
            }
            self.stage_encoding_removal(&record.id, &old, batch);
        }
        let encoded = StoredEncoding {
            inputs,
            record: schema.encode(key, &values),
        };
        for (pass, block) in &encoded.record.blocks {
            batch.put(
                Keyspace::Matching,
                block_key(*pass, block, &record.id),
                Vec::new(),
            );
        }
        let key = encoding_key(&record.id);
        batch.put(
            Keyspace::Matching,
            key.clone(),
            self.seal_person(data_key, Keyspace::Matching, &key, &encoded)?,
        );
        Ok(Some(Encoded {
            record: encoded.record,
            changed: true,
        }))
    }

    /// A person's stored encodings, if any and readable under their key.
    pub(crate) fn stored_encoding(
        &self,
        id: &ProfileId,
        data_key: &DataKey,
    ) -> Result<Option<StoredEncoding>, EngineError> {
        let key = encoding_key(id);
        match self.store().get(Keyspace::Matching, &key)? {
            Some(sealed) => Ok(Some(self.open_person(
                data_key,
                Keyspace::Matching,
                &key,
                &sealed,
            )?)),
            None => Ok(None),
        }
    }

    pub(crate) fn stage_encoding_removal(
        &self,
        id: &ProfileId,
        old: &StoredEncoding,
        batch: &mut WriteBatch,
    ) {
        // A block key the new encodings keep is put again after this in the same batch.
        for (pass, block) in &old.record.blocks {
            batch.delete(Keyspace::Matching, block_key(*pass, block, id));
        }
        batch.delete(Keyspace::Matching, encoding_key(id));
    }

    /// Erasure: the person's encodings and blocking keys go (read under their key before it
    /// is destroyed), and so do the suggestions that name them.
    pub(crate) fn stage_matching_erasure(
        &self,
        record: &ProfileRecord,
        data_key: &DataKey,
        batch: &mut WriteBatch,
    ) -> Result<u64, EngineError> {
        let mut removed = 0;
        if let Some(old) = self.stored_encoding(&record.id, data_key)? {
            self.stage_encoding_removal(&record.id, &old, batch);
            removed += 1;
        }
        let mut ids = record.merged_from.clone();
        ids.push(record.id);
        removed += self.stage_suggestion_erasure(&ids, batch)?;
        Ok(removed)
    }
}
