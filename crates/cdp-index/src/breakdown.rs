//! Aggregates of an audience for charts: the most frequent values of a keyword field, and a
//! grid of two numeric fields (the RFM heat map) counted in one pass over the people the
//! policies allow.

use std::collections::BTreeMap;

use tantivy::query::EnableScoring;

use crate::query::{self, Condition};
use crate::{IndexError, IndexView, tv};

/// `((x, y), people)`: one cell of a grid.
pub type GridCells = Vec<((i64, i64), u64)>;

impl IndexView<'_> {
    /// The `limit` values of keyword field `field` held by the most people (in the whole
    /// index, by document frequency: deleted documents not yet merged away are counted
    /// too, which only orders the candidates; their counts are made exactly by the caller).
    pub fn top_terms(&self, field: &str, limit: usize) -> Result<Vec<String>, IndexError> {
        let Some(field) = self
            .index
            .named
            .get(field)
            .copied()
            .filter(|_| crate::KEYWORD_FIELDS.contains(&field))
        else {
            return Err(IndexError::Query(query::QueryError {
                at: field.to_string(),
                message: format!("{field:?} is not a keyword field of the index"),
            }));
        };
        let searcher = &self.searcher;
        let mut frequency: BTreeMap<Vec<u8>, u64> = BTreeMap::new();
        for segment in searcher.segment_readers() {
            let inverted = tv(segment.inverted_index(field))?;
            let mut terms = inverted
                .terms()
                .stream()
                .map_err(|error| IndexError::Tantivy(error.to_string()))?;
            while terms.advance() {
                *frequency.entry(terms.key().to_vec()).or_default() +=
                    u64::from(terms.value().doc_freq);
            }
        }
        let mut ranked: Vec<(Vec<u8>, u64)> = frequency.into_iter().collect();
        ranked.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
        Ok(ranked
            .into_iter()
            .take(limit)
            .filter_map(|(bytes, _)| String::from_utf8(bytes).ok())
            .collect())
    }

    /// People who match `condition` and whom the policies allow for `purpose`, counted by
    /// the (rounded) values of numeric fields `x` and `y`: `((x, y), people)`. People without
    /// a value in either are left out.
    pub fn grid(
        &self,
        condition: &Condition,
        purposes: &[String],
        purpose: &str,
        x: &str,
        y: &str,
    ) -> Result<GridCells, IndexError> {
        query::validate(condition, purposes)?;
        let searcher = &self.searcher;
        let compiled = self
            .index
            .with_purpose(self.index.compile(condition, purposes)?, purpose);
        let collector = Grid {
            x: x.to_string(),
            y: y.to_string(),
        };
        let cells = tv(searcher.search_with_executor(
            &compiled,
            &collector,
            &self.index.executor,
            EnableScoring::disabled_from_searcher(searcher),
        ))?;
        Ok(cells.into_iter().collect())
    }
}

struct Grid {
    x: String,
    y: String,
}

struct GridSegment {
    columns: Option<(
        tantivy::columnar::Column<f64>,
        tantivy::columnar::Column<f64>,
    )>,
    cells: BTreeMap<(i64, i64), u64>,
}

impl tantivy::collector::Collector for Grid {
    type Fruit = BTreeMap<(i64, i64), u64>;
    type Child = GridSegment;

    fn for_segment(
        &self,
        _segment: tantivy::SegmentOrdinal,
        reader: &tantivy::SegmentReader,
    ) -> tantivy::Result<Self::Child> {
        let x = reader.fast_fields().column_opt::<f64>(&self.x)?;
        let y = reader.fast_fields().column_opt::<f64>(&self.y)?;
        Ok(GridSegment {
            columns: x.zip(y),
            cells: BTreeMap::new(),
        })
    }

    fn requires_scoring(&self) -> bool {
        false
    }

    fn merge_fruits(&self, fruits: Vec<Self::Fruit>) -> tantivy::Result<Self::Fruit> {
        let mut out = BTreeMap::new();
        for fruit in fruits {
            for (cell, people) in fruit {
                *out.entry(cell).or_default() += people;
            }
        }
        Ok(out)
    }
}

impl tantivy::collector::SegmentCollector for GridSegment {
    type Fruit = BTreeMap<(i64, i64), u64>;

    fn collect(&mut self, doc: tantivy::DocId, _score: tantivy::Score) {
        if let Some((x, y)) = &self.columns
            && let (Some(x), Some(y)) = (x.first(doc), y.first(doc))
        {
            *self
                .cells
                .entry((x.round() as i64, y.round() as i64))
                .or_default() += 1;
        }
    }

    fn harvest(self) -> Self::Fruit {
        self.cells
    }
}
