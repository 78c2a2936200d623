//! A point-in-time view of the index and the counts asked through it: how many match a
//! condition and how many of them the policies allow for a purpose.

use tantivy::collector::Count;

use crate::query::{self, Condition, FieldKind, Op};
use crate::{IndexError, PersonIndex, tv};

/// One point in time of the index (a tantivy searcher held open): the counts of a breakdown
/// asked through one view see the same people, so its parts add up while the indexer commits.
pub struct IndexView<'a> {
    pub(crate) index: &'a PersonIndex,
    pub(crate) searcher: tantivy::Searcher,
}

impl std::fmt::Debug for IndexView<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IndexView")
            .field("people", &self.searcher.num_docs())
            .finish()
    }
}

impl IndexView<'_> {
    /// How many people match, and how many of them the policies allow for `purpose`.
    pub fn count(
        &self,
        condition: &Condition,
        purposes: &[String],
        purpose: Option<&str>,
    ) -> Result<(u64, u64), IndexError> {
        query::validate(condition, purposes)?;
        let searcher = &self.searcher;
        let index = self.index;
        let compiled = index.compile(condition, purposes)?;
        let scoring = tantivy::query::EnableScoring::disabled_from_searcher(searcher);
        let Some(purpose) = purpose else {
            let matched =
                tv(searcher.search_with_executor(&compiled, &Count, &index.executor, scoring))?;
            return Ok((matched as u64, matched as u64));
        };
        if has_scan(condition, purposes) {
            // Range clauses scan columns: one pass counts every match and checks it against
            // the `allowed` column, instead of scanning twice.
            let collector = MatchedAndAllowed {
                purpose: Some(purpose.to_string()),
            };
            return tv(searcher.search_with_executor(
                &compiled,
                &collector,
                &index.executor,
                scoring,
            ));
        }
        // Term clauses only: two counts over postings are cheaper than a check per match.
        let matched =
            tv(searcher.search_with_executor(&compiled, &Count, &index.executor, scoring))?;
        let allowed = tv(searcher.search_with_executor(
            &index.with_purpose(compiled, purpose),
            &Count,
            &index.executor,
            scoring,
        ))?;
        Ok((matched as u64, allowed as u64))
    }
}

/// Whether a condition has a clause that scans a column (numeric ranges, event counts).
fn has_scan(condition: &Condition, purposes: &[String]) -> bool {
    match condition {
        Condition::All { all: items } | Condition::Any { any: items } => {
            items.iter().any(|c| has_scan(c, purposes))
        }
        Condition::Not { not } => has_scan(not, purposes),
        Condition::Leaf(leaf) => {
            leaf.op != Op::Exists
                && matches!(
                    query::resolve_field(&leaf.field, purposes),
                    Ok(FieldKind::Numeric(_) | FieldKind::EventCount { .. })
                )
        }
    }
}

/// Counts matches, and matches whose `allowed` column holds the purpose.
struct MatchedAndAllowed {
    purpose: Option<String>,
}

struct MatchedAndAllowedSegment {
    /// The `allowed` column and the purpose's ordinal in it, if any document has it.
    allowed: Option<(tantivy::columnar::StrColumn, u64)>,
    matched: u64,
    hits: u64,
}

impl tantivy::collector::Collector for MatchedAndAllowed {
    type Fruit = (u64, u64);
    type Child = MatchedAndAllowedSegment;

    fn for_segment(
        &self,
        _segment: tantivy::SegmentOrdinal,
        reader: &tantivy::SegmentReader,
    ) -> tantivy::Result<Self::Child> {
        let mut allowed = None;
        if let Some(purpose) = &self.purpose
            && let Some(column) = reader.fast_fields().str("allowed")?
            && let Some(ord) = column.dictionary().term_ord(purpose.as_bytes())?
        {
            allowed = Some((column, ord));
        }
        Ok(MatchedAndAllowedSegment {
            allowed,
            matched: 0,
            hits: 0,
        })
    }

    fn requires_scoring(&self) -> bool {
        false
    }

    fn merge_fruits(&self, fruits: Vec<(u64, u64)>) -> tantivy::Result<(u64, u64)> {
        Ok(fruits
            .into_iter()
            .fold((0, 0), |acc, f| (acc.0 + f.0, acc.1 + f.1)))
    }
}

impl tantivy::collector::SegmentCollector for MatchedAndAllowedSegment {
    type Fruit = (u64, u64);

    fn collect(&mut self, doc: tantivy::DocId, _score: tantivy::Score) {
        self.matched += 1;
        if let Some((column, ord)) = &self.allowed
            && column.term_ords(doc).any(|o| o == *ord)
        {
            self.hits += 1;
        }
    }

    fn harvest(self) -> (u64, u64) {
        (self.matched, self.hits)
    }
}
