//! What the engine stores, and under which keys. Every record that concerns a person is sealed:
//! profiles and events under the person's data key, graph records (identifier nodes, evidence,
//! merge log) under the system record key, so that a recompute across people needs no
//! per-person key. Erasure deletes the latter explicitly (issue 7).

use std::collections::{BTreeMap, BTreeSet};

use cdp_core::segment::Message;
use cdp_core::{Channel, IdentifierType, ProfileId};
use cdp_crypto::BlindIndex;
use cdp_identity::graph::{DropReason, OrderKey};
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

/// Hex forms of fixed-size ids inside records.
pub(crate) use cdp_core::hex;

/// An evidence id: a digest of the set of identifiers an event carried. Events with the same
/// set share one evidence record (the graph only needs one).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct EvidenceId(pub [u8; 16]);

impl Serialize for EvidenceId {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        if serializer.is_human_readable() {
            serializer.serialize_str(&hex::encode(&self.0))
        } else {
            serializer.serialize_bytes(&self.0)
        }
    }
}

impl<'de> Deserialize<'de> for EvidenceId {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer
            .deserialize_any(FixedBytes::<16>("evidence id: 32 hex digits or 16 bytes"))
            .map(EvidenceId)
    }
}

/// Accepts `N` bytes as hex text (JSON) or raw bytes (MessagePack). Both forms are accepted
/// whatever the format says it is: serde's buffering of tagged enums does not always pass
/// `is_human_readable` on.
struct FixedBytes<const N: usize>(&'static str);

impl<const N: usize> serde::de::Visitor<'_> for FixedBytes<N> {
    type Value = [u8; N];

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.0)
    }

    fn visit_str<E: serde::de::Error>(self, text: &str) -> Result<[u8; N], E> {
        hex::decode::<N>(text).ok_or_else(|| E::custom(self.0))
    }

    fn visit_bytes<E: serde::de::Error>(self, bytes: &[u8]) -> Result<[u8; N], E> {
        bytes.try_into().map_err(|_| E::custom(self.0))
    }
}

impl std::fmt::Display for EvidenceId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&hex::encode(&self.0))
    }
}

/// A node key in records: a blind index as hex.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct NodeKey(pub BlindIndex);

impl Serialize for NodeKey {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        if serializer.is_human_readable() {
            serializer.serialize_str(&hex::encode(self.0.as_bytes()))
        } else {
            serializer.serialize_bytes(self.0.as_bytes())
        }
    }
}

impl<'de> Deserialize<'de> for NodeKey {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer
            .deserialize_any(FixedBytes::<32>("blind index: 64 hex digits or 32 bytes"))
            .map(|bytes| NodeKey(BlindIndex::from_bytes(bytes)))
    }
}

/// An event order in records: `(µs, digest)`, the digest as bytes in MessagePack (16 numbers
/// in JSON, as older stores hold it; both read).
pub(crate) mod order_key {
    use super::{FixedBytes, OrderKey};
    use serde::de::{Error as _, SeqAccess, Visitor};
    use serde::ser::SerializeTuple as _;
    use serde::{Deserializer, Serializer};

    pub fn serialize<S: Serializer>(order: &OrderKey, serializer: S) -> Result<S::Ok, S::Error> {
        if serializer.is_human_readable() {
            return serde::Serialize::serialize(order, serializer);
        }
        let mut tuple = serializer.serialize_tuple(2)?;
        tuple.serialize_element(&order.0)?;
        tuple.serialize_element(&BytesRef(&order.1))?;
        tuple.end()
    }

    /// Bytes serialised as bytes (serde serialises arrays element by element otherwise).
    struct BytesRef<'a>(&'a [u8]);

    impl serde::Serialize for BytesRef<'_> {
        fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
            serializer.serialize_bytes(self.0)
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<OrderKey, D::Error> {
        deserializer.deserialize_seq(OrderVisitor)
    }

    struct OrderVisitor;

    impl<'de> Visitor<'de> for OrderVisitor {
        type Value = OrderKey;

        fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("an event order: [micros, digest]")
        }

        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<OrderKey, A::Error> {
            let micros: i64 = seq
                .next_element()?
                .ok_or_else(|| A::Error::invalid_length(0, &self))?;
            let digest = seq
                .next_element::<Digest>()?
                .ok_or_else(|| A::Error::invalid_length(1, &self))?;
            Ok((micros, digest.0))
        }
    }

    /// 16 bytes, as bytes or as a sequence of 16 numbers.
    struct Digest([u8; 16]);

    impl<'de> serde::Deserialize<'de> for Digest {
        fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
            deserializer.deserialize_any(DigestVisitor).map(Digest)
        }
    }

    struct DigestVisitor;

    impl<'de> Visitor<'de> for DigestVisitor {
        type Value = [u8; 16];

        fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("an order digest: 16 bytes")
        }

        fn visit_bytes<E: serde::de::Error>(self, bytes: &[u8]) -> Result<[u8; 16], E> {
            Visitor::visit_bytes(FixedBytes::<16>("an order digest: 16 bytes"), bytes)
        }

        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<[u8; 16], A::Error> {
            let mut out = [0u8; 16];
            for (index, byte) in out.iter_mut().enumerate() {
                *byte = seq
                    .next_element()?
                    .ok_or_else(|| A::Error::invalid_length(index, &self))?;
            }
            if seq.next_element::<serde::de::IgnoredAny>()?.is_some() {
                return Err(A::Error::invalid_length(17, &self));
            }
            Ok(out)
        }
    }
}

/// A time in the records read most (profiles, consents): in MessagePack, unix nanoseconds as
/// one integer when the offset is UTC (9 bytes, against 31 for RFC 3339 text), so that
/// sealing and opening a profile, with two times per identifier, trait and channel, neither
/// formats nor parses dates (a parse was 3 % of an export's CPU). JSON keeps RFC 3339, and
/// both forms are read whatever the format, so records written before (schema 2) still open.
/// A time with another offset, or beyond the integer's range (year 2262), stays text: its
/// offset survives.
pub(crate) mod instant {
    use serde::de::{Error, Visitor};
    use serde::{Deserializer, Serializer};
    use time::format_description::well_known::Rfc3339;
    use time::{OffsetDateTime, UtcOffset};

    pub fn serialize<S: Serializer>(at: &OffsetDateTime, serializer: S) -> Result<S::Ok, S::Error> {
        if !serializer.is_human_readable()
            && at.offset() == UtcOffset::UTC
            && let Ok(nanos) = i64::try_from(at.unix_timestamp_nanos())
        {
            return serializer.serialize_i64(nanos);
        }
        time::serde::rfc3339::serialize(at, serializer)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(
        deserializer: D,
    ) -> Result<OffsetDateTime, D::Error> {
        deserializer.deserialize_any(InstantVisitor)
    }

    struct InstantVisitor;

    impl Visitor<'_> for InstantVisitor {
        type Value = OffsetDateTime;

        fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("a time: RFC 3339 text or unix nanoseconds")
        }

        fn visit_str<E: Error>(self, text: &str) -> Result<OffsetDateTime, E> {
            OffsetDateTime::parse(text, &Rfc3339).map_err(E::custom)
        }

        fn visit_i64<E: Error>(self, nanos: i64) -> Result<OffsetDateTime, E> {
            OffsetDateTime::from_unix_timestamp_nanos(i128::from(nanos)).map_err(E::custom)
        }

        fn visit_u64<E: Error>(self, nanos: u64) -> Result<OffsetDateTime, E> {
            OffsetDateTime::from_unix_timestamp_nanos(i128::from(nanos)).map_err(E::custom)
        }
    }
}

pub type GraphNode = cdp_identity::graph::Node<NodeKey>;
pub type GraphEvidence = cdp_identity::graph::Evidence<NodeKey, EvidenceId>;

/// An ingestion source (Keyspace::Sources, `src/<id>`), sealed with the system key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SourceRecord {
    pub id: String,
    pub name: String,
    pub channel: Channel,
    /// ISO 3166 alpha-2 region for phone numbers written without a country code.
    pub default_region: Option<String>,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    /// When its write key was last replaced (`cdp sources rotate`).
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        with = "time::serde::rfc3339::option"
    )]
    pub key_rotated_at: Option<OffsetDateTime>,
    /// When it was revoked: its write key no longer ingests anything.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        with = "time::serde::rfc3339::option"
    )]
    pub revoked_at: Option<OffsetDateTime>,
    /// Web origins (`https://shop.example.cn`) whose pages may send with its write key: a
    /// request carrying an `Origin` header is refused unless it is listed, and only listed
    /// origins get CORS answers. Empty: no browser page may use the key.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub allowed_origins: Vec<String>,
}

/// Where a piece of data came from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Provenance {
    pub message_id: String,
    pub source_id: String,
    pub channel: Channel,
    /// Event time (clock-skew corrected).
    #[serde(with = "time::serde::rfc3339")]
    pub at: OffsetDateTime,
}

/// One identifier node (Keyspace::Identifiers, key = blind index), sealed with the system key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeRecord {
    pub kind: IdentifierType,
    /// The profile it belongs to; `None` for identifiers that were only ever dropped.
    pub profile: Option<ProfileId>,
    /// Event order of the newest evidence mentioning it.
    #[serde(with = "order_key")]
    pub last_mention: OrderKey,
}

/// An identifier the rules did not link, for one evidence.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DroppedNode {
    pub kind: IdentifierType,
    pub node: NodeKey,
    pub reason: DropReason,
}

/// One evidence (Keyspace::IdentityEdges, key = evidence id), sealed with the system key: the
/// identifiers that occurred together, and the provenance of the first event that showed it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EvidenceRecord {
    pub id: EvidenceId,
    pub nodes: Vec<(IdentifierType, NodeKey)>,
    /// Identifiers removed from this evidence by a split.
    #[serde(default)]
    pub severed: Vec<(IdentifierType, NodeKey)>,
    #[serde(with = "order_key")]
    pub order: OrderKey,
    /// The first event (in event order) that carried these identifiers together.
    pub first: Provenance,
    /// The profile it is anchored in (its strongest identifier's).
    pub profile: ProfileId,
    /// What the rules dropped when it was last resolved.
    #[serde(default)]
    pub dropped: Vec<DroppedNode>,
    /// Set when the evidence is a fuzzy match (cdp-engine `matching/`), not an event: why
    /// the two people were taken for one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fuzzy: Option<FuzzyLinkNote>,
}

/// Why fuzzy matching linked two people: the pair's match probability and weight, each
/// field's part of the weight, and who decided (the matcher above its threshold, or the
/// operator who accepted a suggestion).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FuzzyLinkNote {
    pub probability: f64,
    /// log2 of the likelihood ratio (Fellegi-Sunter match weight).
    pub weight: f64,
    pub fields: Vec<FieldContribution>,
    pub decided_by: String,
}

/// One field's part of a fuzzy match weight.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FieldContribution {
    pub field: String,
    /// The comparison level (`exact`, `close`, `different`, `missing`, ...).
    pub level: String,
    pub weight: f64,
}

impl EvidenceRecord {
    pub fn graph_evidence(&self) -> GraphEvidence {
        GraphEvidence {
            id: self.id,
            order: self.order,
            nodes: self
                .nodes
                .iter()
                .map(|(kind, key)| GraphNode {
                    kind: kind.clone(),
                    key: *key,
                })
                .collect(),
        }
    }
}

/// A person's identifier with its clear value (inside the sealed profile).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IdentifierEntry {
    pub kind: IdentifierType,
    pub value: String,
    pub node: NodeKey,
    pub source_id: String,
    pub channel: Channel,
    /// The message field it came from.
    pub field: String,
    /// When it was linked to the profile (event time of the evidence that linked it).
    #[serde(with = "instant")]
    pub first_seen: OffsetDateTime,
    #[serde(with = "instant")]
    pub last_seen: OffsetDateTime,
}

/// A trait value with its provenance.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TraitValue {
    pub value: serde_json::Value,
    pub source_id: String,
    pub channel: Channel,
    #[serde(with = "instant")]
    pub at: OffsetDateTime,
    #[serde(with = "instant")]
    pub first_seen: OffsetDateTime,
}

/// Activity of a person on one channel.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChannelSummary {
    #[serde(with = "instant")]
    pub first_seen: OffsetDateTime,
    #[serde(with = "instant")]
    pub last_seen: OffsetDateTime,
    pub events: u64,
}

/// A profile (Keyspace::Profiles, key = profile id), sealed with the person's data key.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ProfileRecord {
    pub id: ProfileId,
    #[serde(with = "instant")]
    pub created_at: OffsetDateTime,
    pub identifiers: Vec<IdentifierEntry>,
    pub traits: BTreeMap<String, TraitValue>,
    pub channels: BTreeMap<Channel, ChannelSummary>,
    pub evidence: BTreeSet<EvidenceId>,
    #[serde(with = "order_key")]
    pub first_order: OrderKey,
    #[serde(with = "order_key")]
    pub last_order: OrderKey,
    pub event_count: u64,
    /// Profile ids absorbed by merges (they resolve to this one).
    #[serde(default)]
    pub merged_from: Vec<ProfileId>,
    /// (origin, signal) -> digest of the consent signal last recorded from events, so that a
    /// preference repeated on every event is recorded once.
    #[serde(default)]
    pub consent_marks: BTreeMap<String, String>,
    /// What computed traits need of the events (orders, views, daily counts).
    #[serde(default, skip_serializing_if = "crate::computed::Activity::is_empty")]
    pub activity: crate::computed::Activity,
    /// Processing restricted to storage by a data-subject request (PIPL Art 44, GDPR Art 18).
    #[serde(default)]
    pub restricted: bool,
    /// Tags the person deleted (PIPL Art 24): never shown or indexed again.
    #[serde(default)]
    pub tags_removed: BTreeSet<String>,
}

impl ProfileRecord {
    /// A person with no identifiers, traits or events yet, created at `at` by the event of
    /// order `order`.
    pub fn new(id: ProfileId, at: OffsetDateTime, order: OrderKey) -> Self {
        Self {
            id,
            created_at: at,
            identifiers: Vec::new(),
            traits: BTreeMap::new(),
            channels: BTreeMap::new(),
            evidence: BTreeSet::new(),
            first_order: order,
            last_order: order,
            event_count: 0,
            merged_from: Vec::new(),
            consent_marks: BTreeMap::new(),
            activity: Default::default(),
            restricted: false,
            tags_removed: BTreeSet::new(),
        }
    }
}

/// An event (Keyspace::Events), sealed with the person's data key.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StoredEvent {
    pub message: Message,
    pub source_id: String,
    pub channel: Channel,
    pub evidence: EvidenceId,
}

/// One entry of the merge log (Keyspace::MergeLog, key = profile id + sequence), sealed with
/// the system key: why profiles became one, or were split.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MergeLogEntry {
    #[serde(with = "time::serde::rfc3339")]
    pub at: OffsetDateTime,
    /// `merge`, `recompute` (a late event re-ran the rules on its component) or `split`.
    pub kind: String,
    pub survivor: ProfileId,
    pub absorbed: Vec<ProfileId>,
    /// The evidence that linked them, when there is one.
    pub evidence: Option<EvidenceId>,
    pub cause: Option<Provenance>,
    pub rule: String,
}

/// Store key of an event: profile id, event time (µs, order-preserving), 8 bytes of the
/// message digest (kept when an event moves to another profile).
pub fn event_key(profile: &ProfileId, at: OffsetDateTime, digest: &[u8]) -> Vec<u8> {
    let micros = i64::try_from(at.unix_timestamp_nanos() / 1_000).unwrap_or(i64::MAX);
    // Flip the sign bit so that big-endian bytes sort like the signed value.
    let sortable = (micros as u64) ^ (1 << 63);
    let mut key = Vec::with_capacity(40);
    key.extend_from_slice(profile.as_bytes());
    key.extend_from_slice(&sortable.to_be_bytes());
    key.extend_from_slice(&digest[..8.min(digest.len())]);
    key
}

/// The digest suffix of an event key (see [`event_key`]).
pub fn event_key_suffix(key: &[u8]) -> &[u8] {
    &key[key.len().saturating_sub(8)..]
}

/// The event order of a message: time in µs, then a digest of (source, messageId).
pub fn order_of(message: &Message, digest: &[u8; 16]) -> OrderKey {
    let micros =
        i64::try_from(message.timestamp.unix_timestamp_nanos() / 1_000).unwrap_or(i64::MAX);
    (micros, *digest)
}
