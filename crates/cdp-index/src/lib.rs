//! The search index of people (tantivy): one document per person, pseudonymous attributes only,
//! and the audience language compiled to tantivy queries.
//!
//! A document holds the profile id (random, not derived from anything personal), a sort key,
//! keyword attributes (tier, lifecycle, age band, region, city, channels, interests, tags,
//! jurisdictions, flags), numbers (computed traits), consent state per purpose, the purposes
//! the policies allow for audiences, and event counts per window. Never an e-mail, phone, name
//! or other identifier: the engine builds documents from pseudonymous fields only, and a test
//! scans the index directory for marker values.
//!
//! One writer per index (tantivy's lock): [`PersonIndex`] owns it behind a mutex; readers reload
//! after each commit ([`PersonIndex::commit`]), so a count sees a change once it returns.

mod breakdown;
pub mod query;
mod view;

use std::collections::BTreeMap;
use std::ops::Bound;
use std::path::Path;
use std::sync::Mutex;

use tantivy::collector::{Count, TopDocs};
use tantivy::directory::MmapDirectory;
use tantivy::query::{AllQuery, BooleanQuery, ExistsQuery, Occur, Query, RangeQuery, TermQuery};
use tantivy::schema::{FAST, Field, INDEXED, IndexRecordOption, OwnedValue, STRING, Schema, Value};
use tantivy::{Index, IndexReader, IndexWriter, Order, ReloadPolicy, TantivyDocument, Term};

pub use query::{Condition, FieldKind, Leaf, Op, QueryError};
pub use view::IndexView;

/// Keyword attributes an audience can test.
pub const KEYWORD_FIELDS: &[&str] = &[
    "tier",
    "lifecycle",
    "age_band",
    "region",
    "city",
    "jurisdiction",
    "channel",
    "interest",
    "tag",
    "hesitating",
    "repurchase",
    "minor",
    // `purpose|category` of each separate consent naming a sensitive category (the engine adds
    // it to audiences that select by what reveals the category).
    "sensitive_consent",
];

/// Numeric attributes (computed traits) an audience can compare.
pub const NUMERIC_FIELDS: &[&str] = &[
    "recency_days",
    "frequency_30d",
    "frequency_90d",
    "frequency_365d",
    "monetary_30d",
    "monetary_90d",
    "monetary_365d",
    "average_order_value",
    "orders_total",
    "return_rate",
    "rfm_r",
    "rfm_f",
    "rfm_m",
    "rfm_score",
    "clv_historical",
    "clv_predicted",
    "churn_risk",
    "event_count",
];

/// Windows of event counts, in days.
pub const EVENT_WINDOWS: &[u32] = &[7, 30, 90, 365];

/// Bumped when the schema changes: an index of another version is rebuilt (3: `key_low`;
/// 4: numbers and event counts columnar only, without `present` terms; 5: `key` columnar
/// only; 6: `id` as 16 bytes, not stored; 7: `sensitive_consent`).
pub const SCHEMA_VERSION: u32 = 7;

/// A document's id: the profile id's 16 bytes. Its first and last 8 bytes, big-endian, are
/// the `key` and `key_low` columns ([`key_of`]).
pub type DocId = [u8; 16];

/// `(key, key_low)` of a document id: the sort key and the rest of the id, as numbers.
pub fn key_of(id: &DocId) -> (u64, u64) {
    let (high, low) = id.split_at(8);
    let number = |half: &[u8]| {
        let mut out = [0u8; 8];
        out.copy_from_slice(half);
        u64::from_be_bytes(out)
    };
    (number(high), number(low))
}

/// The document id of `(key, key_low)`.
pub fn id_of_keys(key: u64, key_low: u64) -> DocId {
    let mut id = [0u8; 16];
    id[..8].copy_from_slice(&key.to_be_bytes());
    id[8..].copy_from_slice(&key_low.to_be_bytes());
    id
}

const WRITER_BYTES: usize = 64 * 1024 * 1024;

/// Index failures.
#[derive(Debug, thiserror::Error)]
pub enum IndexError {
    #[error("search index: {0}")]
    Tantivy(String),
    #[error("the search index was built with another schema; rebuild it (`cdp reindex`)")]
    SchemaChanged,
    #[error(transparent)]
    Query(#[from] QueryError),
}

impl From<tantivy::TantivyError> for IndexError {
    fn from(error: tantivy::TantivyError) -> Self {
        match error {
            tantivy::TantivyError::SchemaError(_) => Self::SchemaChanged,
            other => Self::Tantivy(other.to_string()),
        }
    }
}

impl From<tantivy::directory::error::OpenDirectoryError> for IndexError {
    fn from(error: tantivy::directory::error::OpenDirectoryError) -> Self {
        Self::Tantivy(error.to_string())
    }
}

/// One person's document.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct IndexDoc {
    /// The profile id. Its first 8 bytes are the sort key of paging, and with the last 8 it
    /// is stored as two columns, so that members are read from columns, never from stored
    /// documents ([`key_of`]).
    pub id: DocId,
    pub keywords: Vec<(&'static str, String)>,
    pub numbers: Vec<(&'static str, f64)>,
    /// (purpose, state).
    pub consent: Vec<(String, String)>,
    /// (trait name, value) of traits the engine deems non-identifying (gender, plan...).
    pub traits: Vec<(String, String)>,
    /// Purposes whose audience decision allows this person.
    pub allowed: Vec<String>,
    /// event key -> window days -> count (only counts above zero).
    pub events: BTreeMap<String, BTreeMap<u32, u64>>,
}

#[derive(Debug, Clone, Copy)]
struct Fields {
    id: Field,
    traits: Field,
    key: Field,
    key_low: Field,
    consent: Field,
    allowed: Field,
    present: Field,
    events: Field,
}

fn schema() -> (Schema, Fields, BTreeMap<&'static str, Field>) {
    let mut builder = Schema::builder();
    let fields = Fields {
        // 16 bytes, indexed only (deletes and replacements find a document by it; members
        // are read from the key columns). The only dictionary with one term per document:
        // building it at every commit and merge was the largest part of tantivy's work under
        // ingestion (as a 36-character text twice the bytes, and stored besides).
        id: builder.add_bytes_field("id", INDEXED),
        traits: builder.add_text_field("traits", STRING),
        // Columnar only: paging ranges read the column. As a term it was a second dictionary
        // of one unique term per document (beside `id`), built at every commit and merge.
        key: builder.add_u64_field("key", FAST),
        key_low: builder.add_u64_field("key_low", FAST),
        consent: builder.add_text_field("consent", STRING),
        // FAST too: a count checks it per matching document in the same pass.
        allowed: builder.add_text_field("allowed", STRING | FAST),
        present: builder.add_text_field("present", STRING),
        // Fast only, like the numbers below: a range over a fast field never reads the
        // inverted index (tantivy picks the columnar path), and indexing every count as a
        // term cost about a third of the index writer's time under ingestion.
        events: builder.add_json_field("events", FAST),
    };
    let mut named = BTreeMap::new();
    for name in KEYWORD_FIELDS {
        named.insert(*name, builder.add_text_field(name, STRING));
    }
    for name in NUMERIC_FIELDS {
        named.insert(*name, builder.add_f64_field(name, FAST));
    }
    (builder.build(), fields, named)
}

/// The index.
pub struct PersonIndex {
    /// Searches segments on both cores.
    executor: tantivy::Executor,
    index: Index,
    reader: IndexReader,
    writer: Mutex<IndexWriter>,
    fields: Fields,
    named: BTreeMap<&'static str, Field>,
}

impl std::fmt::Debug for PersonIndex {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PersonIndex").finish_non_exhaustive()
    }
}

fn tv<T>(result: tantivy::Result<T>) -> Result<T, IndexError> {
    result.map_err(IndexError::from)
}

impl PersonIndex {
    /// Opens the index in `dir`, creating it if missing.
    pub fn open(dir: &Path) -> Result<Self, IndexError> {
        std::fs::create_dir_all(dir).map_err(|e| IndexError::Tantivy(e.to_string()))?;
        let (schema, fields, named) = schema();
        let directory = MmapDirectory::open(dir)?;
        let index = tv(Index::open_or_create(directory, schema))?;
        Self::with_index(index, fields, named)
    }

    /// An index in memory (tests, benchmarks).
    pub fn in_memory() -> Result<Self, IndexError> {
        let (schema, fields, named) = schema();
        Self::with_index(Index::create_in_ram(schema), fields, named)
    }

    fn with_index(
        index: Index,
        fields: Fields,
        named: BTreeMap<&'static str, Field>,
    ) -> Result<Self, IndexError> {
        let writer = tv(index.writer_with_num_threads(1, WRITER_BYTES))?;
        let reader = tv(index
            .reader_builder()
            .reload_policy(ReloadPolicy::Manual)
            .try_into())?;
        Ok(Self {
            executor: tv(tantivy::Executor::multi_thread(2, "cdp-search-"))?,
            index,
            reader,
            writer: Mutex::new(writer),
            fields,
            named,
        })
    }

    fn writer(&self) -> std::sync::MutexGuard<'_, IndexWriter> {
        self.writer.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn document(&self, doc: &IndexDoc) -> TantivyDocument {
        let mut out = TantivyDocument::new();
        let (key, key_low) = key_of(&doc.id);
        out.add_bytes(self.fields.id, &doc.id);
        out.add_u64(self.fields.key, key);
        out.add_u64(self.fields.key_low, key_low);
        for (name, value) in &doc.keywords {
            if let Some(field) = self.named.get(name) {
                out.add_text(*field, value);
                out.add_text(self.fields.present, name);
            }
        }
        for (name, value) in &doc.numbers {
            if let Some(field) = self.named.get(name)
                && value.is_finite()
            {
                // No `present` term: existence is read from the column (`ExistsQuery`).
                out.add_f64(*field, *value);
            }
        }
        for (purpose, state) in &doc.consent {
            out.add_text(self.fields.consent, format!("{purpose}={state}"));
        }
        for (name, value) in &doc.traits {
            out.add_text(self.fields.traits, format!("{name}={value}"));
            out.add_text(self.fields.present, format!("traits.{name}"));
        }
        for purpose in &doc.allowed {
            out.add_text(self.fields.allowed, purpose);
        }
        let mut events = BTreeMap::new();
        for (event, windows) in &doc.events {
            let mut counts = BTreeMap::new();
            for (days, count) in windows {
                // Only counts above zero are stored: "no value" is a count of zero.
                if *count > 0 {
                    counts.insert(format!("d{days}"), OwnedValue::U64(*count));
                }
            }
            if !counts.is_empty() {
                events.insert(
                    event.clone(),
                    OwnedValue::Object(counts.into_iter().collect()),
                );
            }
        }
        if !events.is_empty() {
            out.add_object(self.fields.events, events);
        }
        out
    }

    /// Adds or replaces documents (by id). Visible after [`PersonIndex::commit`].
    pub fn upsert(&self, docs: &[IndexDoc]) -> Result<(), IndexError> {
        let writer = self.writer();
        for doc in docs {
            writer.delete_term(Term::from_field_bytes(self.fields.id, &doc.id));
            tv(writer.add_document(self.document(doc)))?;
        }
        Ok(())
    }

    /// Removes documents by id.
    pub fn delete(&self, ids: &[DocId]) {
        let writer = self.writer();
        for id in ids {
            writer.delete_term(Term::from_field_bytes(self.fields.id, id));
        }
    }

    /// Removes every document (before a rebuild).
    pub fn clear(&self) -> Result<(), IndexError> {
        tv(self.writer().delete_all_documents())?;
        Ok(())
    }

    /// Commits with `payload` (the indexer's progress) and makes the changes searchable.
    pub fn commit(&self, payload: &str) -> Result<(), IndexError> {
        let mut writer = self.writer();
        let mut prepared = tv(writer.prepare_commit())?;
        prepared.set_payload(payload);
        tv(prepared.commit())?;
        tv(self.reader.reload())?;
        Ok(())
    }

    /// The payload of the last commit.
    pub fn payload(&self) -> Result<Option<String>, IndexError> {
        Ok(tv(self.index.load_metas())?.payload)
    }

    /// Documents in the index.
    pub fn len(&self) -> u64 {
        self.reader.searcher().num_docs()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Whether a document for `id` exists.
    pub fn contains(&self, id: &DocId) -> Result<bool, IndexError> {
        let query = TermQuery::new(
            Term::from_field_bytes(self.fields.id, id),
            IndexRecordOption::Basic,
        );
        Ok(tv(self.reader.searcher().search(&query, &Count))? > 0)
    }

    fn term(&self, field: Field, text: &str) -> Box<dyn Query> {
        Box::new(TermQuery::new(
            Term::from_field_text(field, text),
            IndexRecordOption::Basic,
        ))
    }

    fn any_of(mut queries: Vec<Box<dyn Query>>) -> Box<dyn Query> {
        if queries.len() == 1 {
            // A lone clause stays itself: intersections can then seek it directly.
            return queries.remove(0);
        }
        Box::new(BooleanQuery::new(
            queries.into_iter().map(|q| (Occur::Should, q)).collect(),
        ))
    }

    fn not(query: Box<dyn Query>) -> Box<dyn Query> {
        Box::new(BooleanQuery::new(vec![
            (Occur::Must, Box::new(AllQuery)),
            (Occur::MustNot, query),
        ]))
    }

    fn keyword_text(value: &serde_json::Value) -> String {
        match value {
            serde_json::Value::String(s) => s.clone(),
            other => other.to_string(),
        }
    }

    /// The tantivy query of a (validated) condition.
    pub fn compile(
        &self,
        condition: &Condition,
        purposes: &[String],
    ) -> Result<Box<dyn Query>, IndexError> {
        Ok(match condition {
            Condition::All { all } => Box::new(BooleanQuery::new(
                all.iter()
                    .map(|c| Ok((Occur::Must, self.compile(c, purposes)?)))
                    .collect::<Result<_, IndexError>>()?,
            )),
            Condition::Any { any } => Self::any_of(
                any.iter()
                    .map(|c| self.compile(c, purposes))
                    .collect::<Result<_, _>>()?,
            ),
            Condition::Not { not } => Self::not(self.compile(not, purposes)?),
            Condition::Leaf(leaf) => self.compile_leaf(leaf, purposes)?,
        })
    }

    // Long by design: one arm per field kind and operator, the table from the audience
    // language to tantivy queries; split, the table would be spread over as many functions.
    fn compile_leaf(&self, leaf: &Leaf, purposes: &[String]) -> Result<Box<dyn Query>, IndexError> {
        let kind = query::resolve_field(&leaf.field, purposes).map_err(|message| QueryError {
            at: "field".into(),
            message,
        })?;
        let values: Vec<&serde_json::Value> = match leaf.op {
            Op::Eq => leaf.value.iter().collect(),
            Op::In => leaf.values.iter().flatten().collect(),
            _ => Vec::new(),
        };
        Ok(match kind {
            FieldKind::Keyword(name) => {
                let field = self.named[name];
                match leaf.op {
                    Op::Exists => self.term(self.fields.present, name),
                    _ => Self::any_of(
                        values
                            .iter()
                            .map(|v| self.term(field, &Self::keyword_text(v)))
                            .collect(),
                    ),
                }
            }
            FieldKind::Trait(name) => match leaf.op {
                Op::Exists => self.term(self.fields.present, &format!("traits.{name}")),
                _ => Self::any_of(
                    values
                        .iter()
                        .map(|v| {
                            self.term(
                                self.fields.traits,
                                &format!("{name}={}", Self::keyword_text(v)),
                            )
                        })
                        .collect(),
                ),
            },
            FieldKind::Consent(purpose) => {
                let states: Vec<String> = match leaf.op {
                    Op::Exists => ["granted", "denied", "withdrawn", "stale"]
                        .iter()
                        .map(|s| (*s).to_string())
                        .collect(),
                    _ => values.iter().map(|v| Self::keyword_text(v)).collect(),
                };
                Self::any_of(
                    states
                        .iter()
                        .map(|state| self.term(self.fields.consent, &format!("{purpose}={state}")))
                        .collect(),
                )
            }
            FieldKind::Numeric(name) => {
                let field = self.named[name];
                let range = |lower: Bound<f64>, upper: Bound<f64>| -> Box<dyn Query> {
                    Box::new(RangeQuery::new(
                        lower.map(|v| Term::from_field_f64(field, v)),
                        upper.map(|v| Term::from_field_f64(field, v)),
                    ))
                };
                match leaf.op {
                    Op::Exists => Box::new(ExistsQuery::new((*name).to_string(), false)),
                    Op::Range => {
                        let (lower, upper) = bounds(leaf);
                        range(lower, upper)
                    }
                    _ => Self::any_of(
                        values
                            .iter()
                            .filter_map(|v| v.as_f64())
                            .map(|v| range(Bound::Included(v), Bound::Included(v)))
                            .collect(),
                    ),
                }
            }
            FieldKind::EventCount { event, days } => {
                let path = format!("{event}.d{days}");
                let range = |lower: u64, upper: Option<u64>| -> Box<dyn Query> {
                    let term = |v: u64| {
                        let mut term = Term::from_field_json_path(self.fields.events, &path, false);
                        term.append_type_and_fast_value(v);
                        term
                    };
                    Box::new(RangeQuery::new(
                        Bound::Included(term(lower)),
                        upper.map_or(Bound::Unbounded, |u| Bound::Included(term(u))),
                    ))
                };
                // Counts are whole numbers: turn the bounds into an inclusive integer range.
                let (low, high) = match leaf.op {
                    Op::Exists => (1.0, f64::INFINITY),
                    Op::Range => {
                        let (lower, upper) = bounds(leaf);
                        let low = match lower {
                            Bound::Included(v) => v.ceil(),
                            Bound::Excluded(v) => v.floor() + 1.0,
                            Bound::Unbounded => 0.0,
                        };
                        let high = match upper {
                            Bound::Included(v) => v.floor(),
                            Bound::Excluded(v) => v.ceil() - 1.0,
                            Bound::Unbounded => f64::INFINITY,
                        };
                        (low.max(0.0), high)
                    }
                    _ => {
                        let queries = values
                            .iter()
                            .filter_map(|v| v.as_f64())
                            .map(|v| Self::event_range(v, v, &range))
                            .collect();
                        return Ok(Self::any_of(queries));
                    }
                };
                Self::event_range(low, high, &range)
            }
        })
    }

    /// Documents whose count is in `low..=high`; people without the event have count 0.
    fn event_range(
        low: f64,
        high: f64,
        range: &dyn Fn(u64, Option<u64>) -> Box<dyn Query>,
    ) -> Box<dyn Query> {
        if high < low || high < 0.0 {
            return Self::not(Box::new(AllQuery));
        }
        // Whole, non-negative bounds after the checks above.
        #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
        let (low_u, high_u) = (low.max(0.0) as u64, high.is_finite().then_some(high as u64));
        let positive = range(low_u.max(1), high_u);
        if low_u == 0 {
            // Zero means "no such event": those people have no value at all.
            Self::any_of(vec![positive, Self::not(range(1, None))])
        } else {
            positive
        }
    }

    fn with_purpose(&self, query: Box<dyn Query>, purpose: &str) -> Box<dyn Query> {
        Box::new(BooleanQuery::new(vec![
            (Occur::Must, query),
            (Occur::Must, self.term(self.fields.allowed, purpose)),
        ]))
    }

    /// How many people match, and how many of them the policies allow for `purpose`.
    pub fn count(
        &self,
        condition: &Condition,
        purposes: &[String],
        purpose: Option<&str>,
    ) -> Result<(u64, u64), IndexError> {
        self.view().count(condition, purposes, purpose)
    }

    /// The index as it is now, for several questions that must see the same people.
    pub fn view(&self) -> IndexView<'_> {
        IndexView {
            index: self,
            searcher: self.reader.searcher(),
        }
    }

    /// Members the policies allow for `purpose`, by sort key after `after`, at most `limit`:
    /// (key, document id).
    pub fn members(
        &self,
        condition: &Condition,
        purposes: &[String],
        purpose: &str,
        after: Option<u64>,
        limit: usize,
    ) -> Result<Vec<(u64, DocId)>, IndexError> {
        query::validate(condition, purposes)?;
        let searcher = self.reader.searcher();
        let mut query = self.with_purpose(self.compile(condition, purposes)?, purpose);
        if let Some(after) = after {
            query = Box::new(BooleanQuery::new(vec![
                (Occur::Must, query),
                (
                    Occur::Must,
                    Box::new(RangeQuery::new(
                        Bound::Excluded(Term::from_field_u64(self.fields.key, after)),
                        Bound::Unbounded,
                    )),
                ),
            ]));
        }
        let top = tv(searcher.search(
            &query,
            &TopDocs::with_limit(limit.max(1)).order_by_u64_field("key", Order::Asc),
        ))?;
        let mut key_low_columns = BTreeMap::new();
        let mut out = Vec::with_capacity(top.len());
        for (key, address) in top {
            let column = match key_low_columns.entry(address.segment_ord) {
                std::collections::btree_map::Entry::Occupied(entry) => entry.into_mut(),
                std::collections::btree_map::Entry::Vacant(entry) => entry.insert(tv(searcher
                    .segment_reader(address.segment_ord)
                    .fast_fields()
                    .u64("key_low"))?),
            };
            if let (Some(key), Some(key_low)) = (key, column.first(address.doc_id)) {
                out.push((key, id_of_keys(key, key_low)));
            }
        }
        Ok(out)
    }

    /// `(key, key_low)` of every member the policies allow for `purpose`, in no particular
    /// order: all of an audience at once, from two columns (an export; the paged `members`
    /// sorts).
    pub fn member_keys(
        &self,
        condition: &Condition,
        purposes: &[String],
        purpose: &str,
    ) -> Result<Vec<(u64, u64)>, IndexError> {
        query::validate(condition, purposes)?;
        let searcher = self.reader.searcher();
        let query = self.with_purpose(self.compile(condition, purposes)?, purpose);
        let scoring = tantivy::query::EnableScoring::disabled_from_searcher(&searcher);
        tv(searcher.search_with_executor(&query, &MemberKeys, &self.executor, scoring))
    }

    /// The (key, low) columns of everyone who matches, whatever the policies allow (an
    /// export decides each of them itself, to account for every person it leaves out).
    pub fn matched_keys(
        &self,
        condition: &Condition,
        purposes: &[String],
    ) -> Result<Vec<(u64, u64)>, IndexError> {
        query::validate(condition, purposes)?;
        let searcher = self.reader.searcher();
        let query = self.compile(condition, purposes)?;
        let scoring = tantivy::query::EnableScoring::disabled_from_searcher(&searcher);
        tv(searcher.search_with_executor(&query, &MemberKeys, &self.executor, scoring))
    }

    /// Every value of a numeric field (for population quintiles).
    pub fn numeric_values(&self, name: &str) -> Result<Vec<f64>, IndexError> {
        let searcher = self.reader.searcher();
        let mut out = Vec::new();
        for segment in searcher.segment_readers() {
            let Some(column) = tv(segment.fast_fields().column_opt::<f64>(name))? else {
                continue;
            };
            let alive = segment.alive_bitset();
            for doc in 0..segment.max_doc() {
                if alive.is_some_and(|bits| !bits.is_alive(doc)) {
                    continue;
                }
                out.extend(column.values_for_doc(doc));
            }
        }
        Ok(out)
    }
}

/// Collects `(key, key_low)` of every matching document.
struct MemberKeys;

struct MemberKeysSegment {
    key: tantivy::columnar::Column<u64>,
    key_low: tantivy::columnar::Column<u64>,
    out: Vec<(u64, u64)>,
}

impl tantivy::collector::Collector for MemberKeys {
    type Fruit = Vec<(u64, u64)>;
    type Child = MemberKeysSegment;

    fn for_segment(
        &self,
        _segment: tantivy::SegmentOrdinal,
        reader: &tantivy::SegmentReader,
    ) -> tantivy::Result<Self::Child> {
        Ok(MemberKeysSegment {
            key: reader.fast_fields().u64("key")?,
            key_low: reader.fast_fields().u64("key_low")?,
            out: Vec::new(),
        })
    }

    fn requires_scoring(&self) -> bool {
        false
    }

    fn merge_fruits(&self, fruits: Vec<Vec<(u64, u64)>>) -> tantivy::Result<Vec<(u64, u64)>> {
        Ok(fruits.concat())
    }
}

impl tantivy::collector::SegmentCollector for MemberKeysSegment {
    type Fruit = Vec<(u64, u64)>;

    fn collect(&mut self, doc: tantivy::DocId, _score: tantivy::Score) {
        // Every document has both values (`document` always writes them).
        if let (Some(key), Some(low)) = (self.key.first(doc), self.key_low.first(doc)) {
            self.out.push((key, low));
        }
    }

    fn harvest(self) -> Vec<(u64, u64)> {
        self.out
    }
}

/// The bounds of a range leaf.
fn bounds(leaf: &Leaf) -> (Bound<f64>, Bound<f64>) {
    let lower = match (leaf.gte, leaf.gt) {
        (Some(a), Some(b)) if b >= a => Bound::Excluded(b),
        (Some(a), _) => Bound::Included(a),
        (None, Some(b)) => Bound::Excluded(b),
        (None, None) => Bound::Unbounded,
    };
    let upper = match (leaf.lte, leaf.lt) {
        (Some(a), Some(b)) if b <= a => Bound::Excluded(b),
        (Some(a), _) => Bound::Included(a),
        (None, Some(b)) => Bound::Excluded(b),
        (None, None) => Bound::Unbounded,
    };
    (lower, upper)
}
