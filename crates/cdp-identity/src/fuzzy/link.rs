//! From encoded records to people: candidate pairs from blocking keys, a trained model,
//! links in descending weight under exclusivity limits, a review band, and the quality of a
//! partition against a known truth.

use std::collections::HashMap;

use super::FuzzyRecord;
use super::model::{Contribution, Model, Pattern, Training, compare};

/// Thresholds and limits of one linking run.
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct LinkSettings {
    /// At or above this match probability a pair is linked without review.
    pub link_probability: f64,
    /// At or above this (and below the other) a pair goes to the review queue.
    pub review_probability: f64,
    /// Blocks larger than this are skipped (a blocking key shared by thousands is no key:
    /// an empty surname's code, a default postcode).
    pub max_block: usize,
    /// Random pairs drawn to estimate u.
    pub random_pairs: u64,
    pub em_iterations: usize,
}

impl Default for LinkSettings {
    fn default() -> Self {
        Self {
            link_probability: 0.99,
            review_probability: 0.5,
            max_block: 1_000,
            random_pairs: 1_000_000,
            em_iterations: 100,
        }
    }
}

/// A candidate pair `(i, j)`, `i < j`, and the blocking passes that found it (bit `p`: pass
/// `p`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Candidate {
    pub a: u32,
    pub b: u32,
    pub passes: u64,
}

/// The candidate pairs of records sharing a blocking key, each once with every pass that
/// found it, for which `allowed(i, j)` holds (a one-to-one linkage allows only pairs across
/// sources).
pub fn candidates(
    records: &[FuzzyRecord],
    max_block: usize,
    allowed: impl Fn(usize, usize) -> bool,
) -> Vec<Candidate> {
    let mut blocks: HashMap<(u8, [u8; 16]), Vec<u32>> = HashMap::new();
    for (index, record) in records.iter().enumerate() {
        for key in &record.blocks {
            blocks.entry(*key).or_default().push(index as u32);
        }
    }
    candidates_of_blocks(
        blocks
            .into_iter()
            .map(|((pass, _), members)| (pass, members)),
        max_block,
        allowed,
    )
}

/// The candidate pairs of blocks given as (pass, the records holding one blocking key of
/// it): from [`candidates`], or from a blind index read in key order (cdp-engine
/// `matching/`).
pub fn candidates_of_blocks(
    blocks: impl IntoIterator<Item = (u8, Vec<u32>)>,
    max_block: usize,
    allowed: impl Fn(usize, usize) -> bool,
) -> Vec<Candidate> {
    let mut pairs: Vec<(u64, u64)> = Vec::new();
    for (pass, members) in blocks {
        if members.len() < 2 || members.len() > max_block {
            continue;
        }
        for (n, &i) in members.iter().enumerate() {
            for &j in &members[n + 1..] {
                let (a, b) = if i < j { (i, j) } else { (j, i) };
                if a != b && allowed(a as usize, b as usize) {
                    pairs.push(((u64::from(a) << 32) | u64::from(b), 1 << (pass % 64)));
                }
            }
        }
    }
    pairs.sort_unstable();
    let mut out: Vec<Candidate> = Vec::with_capacity(pairs.len());
    for (pair, pass) in pairs {
        let (a, b) = ((pair >> 32) as u32, pair as u32);
        match out.last_mut() {
            Some(last) if (last.a, last.b) == (a, b) => last.passes |= pass,
            _ => out.push(Candidate { a, b, passes: pass }),
        }
    }
    out
}

/// A scored candidate pair.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Scored {
    pub a: u32,
    pub b: u32,
    pub pattern: Pattern,
    pub weight: f64,
    pub probability: f64,
}

impl Scored {
    /// Each field's part of the weight, for the identity explanation and the review queue.
    pub fn explain(&self, model: &Model) -> Vec<Contribution> {
        model.explain(self.pattern)
    }
}

/// What linking decided.
#[derive(Clone, Debug, Default)]
pub struct Outcome {
    /// Pairs linked, in the order they were (descending weight).
    pub links: Vec<Scored>,
    /// Pairs in the review band whose records ended in different people.
    pub review: Vec<Scored>,
    /// Pairs above the link threshold refused because linking them would put two records
    /// sharing an exclusivity key into one person.
    pub refused_by_limits: u64,
    /// The person (a representative record index) of each record.
    pub people: Vec<u32>,
}

/// Counts of one run.
#[derive(Clone, Debug, Default, PartialEq, serde::Serialize)]
pub struct RunCounts {
    pub records: usize,
    pub candidate_pairs: u64,
    pub comparisons: u64,
    pub training: Option<Training>,
}

/// Estimates the model on `records` and their candidates, then links. `model` comes with its
/// fields; its probabilities are replaced by the estimates. `pass_fields[p]`: the fields
/// blocking pass `p` is made of.
///
/// As Splink does, m is estimated pass by pass with the pass's own fields left out: the
/// candidates of "same surname code and birth year" agree on the surname because they were
/// chosen for it, not because they are matches, and an EM that saw that agreement would take
/// the surname's namesakes for matches. Each field's m is the mean over the passes that did
/// not use it (and observed it); the match share is then estimated over all candidates with m and u held.
pub fn train_and_link(
    model: &mut Model,
    records: &[FuzzyRecord],
    pairs: &[Candidate],
    pass_fields: &[Vec<usize>],
    settings: &LinkSettings,
) -> (Outcome, RunCounts) {
    let random = model.estimate_u(records, settings.random_pairs, 0x5eed);
    let patterns: Vec<Pattern> = pairs
        .iter()
        .map(|c| compare(&records[c.a as usize], &records[c.b as usize]))
        .collect();
    let fields = model.fields.len();
    let mut m_sums: Vec<Vec<f64>> = model.m.iter().map(|m| vec![0.0; m.len()]).collect();
    let mut m_passes = vec![0usize; fields];
    let mut iterations = 0;
    let mut converged = true;
    for (pass, masked) in pass_fields.iter().enumerate().take(64) {
        let mut counts: HashMap<Pattern, u64> = HashMap::new();
        for (candidate, pattern) in pairs.iter().zip(&patterns) {
            if candidate.passes & (1 << pass) != 0 {
                *counts.entry(pattern.masked(masked)).or_insert(0) += 1;
            }
        }
        if counts.is_empty() {
            continue;
        }
        let mut trial = Model::new(model.fields.clone());
        trial.u = model.u.clone();
        let training = trial.train(&counts, settings.em_iterations);
        iterations += training.iterations;
        converged &= training.converged;
        // A field no candidate of this pass has on both sides taught this pass nothing: its
        // m here is the starting value and stays out of the mean.
        let observed = |field: usize| {
            counts
                .keys()
                .any(|pattern| pattern.level(field) != super::model::NULL)
        };
        for field in (0..fields).filter(|f| !masked.contains(f) && observed(*f)) {
            for (sum, m) in m_sums[field].iter_mut().zip(&trial.m[field]) {
                *sum += m;
            }
            m_passes[field] += 1;
        }
    }
    for field in 0..fields {
        if m_passes[field] > 0 {
            model.m[field] = m_sums[field]
                .iter()
                .map(|s| s / m_passes[field] as f64)
                .collect();
        }
    }
    let mut counts: HashMap<Pattern, u64> = HashMap::new();
    for pattern in &patterns {
        *counts.entry(*pattern).or_insert(0) += 1;
    }
    let mut training = model.train_match_share(&counts, settings.em_iterations);
    training.random_pairs = random;
    training.iterations += iterations;
    training.converged &= converged;
    let outcome = link(model, records, pairs, &patterns, settings);
    let run = RunCounts {
        records: records.len(),
        candidate_pairs: pairs.len() as u64,
        comparisons: random + pairs.len() as u64,
        training: Some(training),
    };
    (outcome, run)
}

/// Links scored pairs in descending weight (ties by record order, so the result does not
/// depend on the order pairs came in), never joining two people who hold the same
/// exclusivity key.
pub fn link(
    model: &Model,
    records: &[FuzzyRecord],
    pairs: &[Candidate],
    patterns: &[Pattern],
    settings: &LinkSettings,
) -> Outcome {
    let mut scored: Vec<Scored> = pairs
        .iter()
        .zip(patterns)
        .map(|(c, &pattern)| {
            let weight = model.weight(pattern);
            Scored {
                a: c.a,
                b: c.b,
                pattern,
                weight,
                probability: model.probability(weight),
            }
        })
        .filter(|s| s.probability >= settings.review_probability)
        .collect();
    scored.sort_by(|x, y| {
        y.weight
            .total_cmp(&x.weight)
            .then((x.a, x.b).cmp(&(y.a, y.b)))
    });
    let mut people = People::new(records);
    let mut outcome = Outcome::default();
    let mut in_review = Vec::new();
    for pair in scored {
        let (a, b) = (people.find(pair.a), people.find(pair.b));
        if a == b {
            continue;
        }
        if pair.probability < settings.link_probability {
            in_review.push(pair);
            continue;
        }
        if people.conflict(a, b) {
            outcome.refused_by_limits += 1;
            continue;
        }
        people.union(a, b);
        outcome.links.push(pair);
    }
    // A review pair whose records were joined by stronger links since is no question.
    outcome.review = in_review
        .into_iter()
        .filter(|p| people.find(p.a) != people.find(p.b))
        .collect();
    outcome.people = (0..records.len() as u32).map(|r| people.find(r)).collect();
    outcome
}

/// Union-find over records, with each person's exclusivity keys.
struct People {
    parent: Vec<u32>,
    exclusive: Vec<Vec<u64>>,
}

impl People {
    fn new(records: &[FuzzyRecord]) -> Self {
        Self {
            parent: (0..records.len() as u32).collect(),
            exclusive: records
                .iter()
                .map(|r| {
                    let mut keys = r.exclusive.clone();
                    keys.sort_unstable();
                    keys.dedup();
                    keys
                })
                .collect(),
        }
    }

    fn find(&mut self, mut x: u32) -> u32 {
        while self.parent[x as usize] != x {
            let grand = self.parent[self.parent[x as usize] as usize];
            self.parent[x as usize] = grand;
            x = grand;
        }
        x
    }

    fn conflict(&self, a: u32, b: u32) -> bool {
        let (x, y) = (&self.exclusive[a as usize], &self.exclusive[b as usize]);
        x.iter().any(|k| y.binary_search(k).is_ok())
    }

    /// Joins two roots; the smaller index stays the root (stable representatives).
    fn union(&mut self, a: u32, b: u32) {
        let (root, child) = if a < b { (a, b) } else { (b, a) };
        self.parent[child as usize] = root;
        let moved = std::mem::take(&mut self.exclusive[child as usize]);
        let keys = &mut self.exclusive[root as usize];
        keys.extend(moved);
        keys.sort_unstable();
        keys.dedup();
    }
}

/// Pairwise quality of a partition against the truth: of the pairs put in one person, how
/// many are one (precision); of the true pairs, how many were found (recall).
#[derive(Clone, Copy, Debug, Default, PartialEq, serde::Serialize)]
pub struct Quality {
    pub predicted_pairs: u64,
    pub true_pairs: u64,
    pub correct_pairs: u64,
    pub precision: f64,
    pub recall: f64,
    pub f1: f64,
}

/// `people[i]`: the person of record `i`; `truth[i]`: its true entity.
pub fn pairwise_quality(people: &[u32], truth: &[u64]) -> Quality {
    fn pairs(n: u64) -> u64 {
        n * n.saturating_sub(1) / 2
    }
    let (by_person, by_truth, by_both) = record_counts(people, truth);
    let predicted_pairs: u64 = by_person.values().map(|n| pairs(*n)).sum();
    let true_pairs: u64 = by_truth.values().map(|n| pairs(*n)).sum();
    let correct_pairs: u64 = by_both.values().map(|n| pairs(*n)).sum();
    let (precision, recall, f1) = precision_recall_f1(correct_pairs, predicted_pairs, true_pairs);
    Quality {
        predicted_pairs,
        true_pairs,
        correct_pairs,
        precision,
        recall,
        f1,
    }
}

/// Records per person found, per true entity, and per (person, entity).
type RecordCounts = (
    HashMap<u32, u64>,
    HashMap<u64, u64>,
    HashMap<(u32, u64), u64>,
);

fn record_counts(people: &[u32], truth: &[u64]) -> RecordCounts {
    let mut by_person: HashMap<u32, u64> = HashMap::new();
    let mut by_truth: HashMap<u64, u64> = HashMap::new();
    let mut by_both: HashMap<(u32, u64), u64> = HashMap::new();
    for (person, entity) in people.iter().zip(truth) {
        *by_person.entry(*person).or_insert(0) += 1;
        *by_truth.entry(*entity).or_insert(0) += 1;
        *by_both.entry((*person, *entity)).or_insert(0) += 1;
    }
    (by_person, by_truth, by_both)
}

/// Of `found` things, `right` were right, against `wanted` true ones (nothing to find or
/// nothing found counts as perfect on that side).
fn precision_recall_f1(right: u64, found: u64, wanted: u64) -> (f64, f64, f64) {
    let ratio = |a: u64, b: u64| if b == 0 { 1.0 } else { a as f64 / b as f64 };
    let (precision, recall) = (ratio(right, found), ratio(right, wanted));
    let f1 = if precision + recall == 0.0 {
        0.0
    } else {
        2.0 * precision * recall / (precision + recall)
    };
    (precision, recall, f1)
}

/// Cluster quality of a partition against the truth: a person found is right only when it
/// holds exactly the records of one true entity, no more and no fewer. Pairwise figures
/// forgive a person split in two halves (most pairs are still found); this does not, which
/// is what a service desk sees: one customer shown as one profile, or not.
#[derive(Clone, Copy, Debug, Default, PartialEq, serde::Serialize)]
pub struct ClusterQuality {
    /// People in the partition (singletons included).
    pub predicted_clusters: u64,
    /// True entities.
    pub true_clusters: u64,
    /// People whose records are exactly one entity's.
    pub exact_clusters: u64,
    pub precision: f64,
    pub recall: f64,
    pub f1: f64,
}

/// `people[i]`: the person of record `i`; `truth[i]`: its true entity.
pub fn cluster_quality(people: &[u32], truth: &[u64]) -> ClusterQuality {
    let (by_person, by_truth, by_both) = record_counts(people, truth);
    // A person is exact when all its records are of one entity and that entity has no
    // record elsewhere: the three counts agree.
    let exact_clusters = by_both
        .iter()
        .filter(|((person, entity), n)| by_person[person] == **n && by_truth[entity] == **n)
        .count() as u64;
    let (predicted_clusters, true_clusters) = (by_person.len() as u64, by_truth.len() as u64);
    let (precision, recall, f1) =
        precision_recall_f1(exact_clusters, predicted_clusters, true_clusters);
    ClusterQuality {
        predicted_clusters,
        true_clusters,
        exact_clusters,
        precision,
        recall,
        f1,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fuzzy::{Encoded, FieldKind, FieldSpec};

    fn record(token: u64, block: u8, exclusive: u64) -> FuzzyRecord {
        FuzzyRecord {
            fields: vec![Some(Encoded::Token(token))],
            blocks: vec![(0, [block; 16])],
            exclusive: vec![exclusive],
        }
    }

    fn ab(pairs: &[Candidate]) -> Vec<(u32, u32, u64)> {
        pairs.iter().map(|c| (c.a, c.b, c.passes)).collect()
    }

    #[test]
    fn candidates_come_from_shared_blocks_once_and_as_allowed() {
        let mut records = vec![record(1, 1, 0), record(1, 1, 1), record(2, 1, 1)];
        records[0].blocks.push((1, [9; 16]));
        records[1].blocks.push((1, [9; 16]));
        // (0, 1) found by both passes.
        assert_eq!(
            ab(&candidates(&records, 10, |_, _| true)),
            [(0, 1, 0b11), (0, 2, 0b01), (1, 2, 0b01)]
        );
        assert_eq!(
            ab(&candidates(&records, 10, |a, b| {
                records[a].exclusive != records[b].exclusive
            })),
            [(0, 1, 0b11), (0, 2, 0b01)]
        );
        // A block over the limit is no key.
        assert_eq!(ab(&candidates(&records, 2, |_, _| true)), [(0, 1, 0b10)]);
    }

    #[test]
    fn links_respect_exclusivity_and_review_holds_the_middle() {
        let model = Model {
            fields: vec![FieldSpec {
                name: "t".into(),
                kind: FieldKind::Exact,
            }],
            m: vec![vec![0.99, 0.01]],
            u: vec![vec![0.001, 0.999]],
            lambda: 0.5,
        };
        // 0 (source 0) matches 1 and 2 (both source 1): only one link; 3 is different.
        let records = vec![
            record(1, 1, 0),
            record(1, 1, 1),
            record(1, 1, 1),
            record(2, 1, 0),
        ];
        let pairs = candidates(&records, 10, |_, _| true);
        let patterns: Vec<Pattern> = pairs
            .iter()
            .map(|c| compare(&records[c.a as usize], &records[c.b as usize]))
            .collect();
        let outcome = link(
            &model,
            &records,
            &pairs,
            &patterns,
            &LinkSettings::default(),
        );
        assert_eq!(outcome.links.len(), 1);
        assert_eq!((outcome.links[0].a, outcome.links[0].b), (0, 1));
        // (0, 2) and (1, 2): 2 would join a person who already has a record of its source.
        assert_eq!(outcome.refused_by_limits, 2);
        assert_eq!(outcome.people, [0, 0, 2, 3]);
        let quality = pairwise_quality(&outcome.people, &[7, 7, 7, 8]);
        assert_eq!(quality.correct_pairs, 1);
        assert_eq!(quality.true_pairs, 3);
        assert_eq!(quality.precision, 1.0);
        // People {0, 1}, {2}, {3} against entities {0, 1, 2}, {3}: only {3} is exact.
        let clusters = cluster_quality(&outcome.people, &[7, 7, 7, 8]);
        assert_eq!(
            (clusters.predicted_clusters, clusters.true_clusters),
            (3, 2)
        );
        assert_eq!(clusters.exact_clusters, 1);
        assert_eq!((clusters.precision, clusters.recall), (1.0 / 3.0, 0.5));
        assert!((clusters.f1 - 0.4).abs() < 1e-12);
        // A person holding two entities is no more exact than one split in two.
        let joined = cluster_quality(&[5, 5, 5, 5], &[7, 7, 7, 8]);
        assert_eq!((joined.exact_clusters, joined.f1), (0, 0.0));
        // The truth itself is exact everywhere.
        let perfect = cluster_quality(&[5, 5, 5, 9], &[7, 7, 7, 8]);
        assert_eq!((perfect.exact_clusters, perfect.f1), (2, 1.0));
        // With a threshold above every pair, the matches wait for review instead.
        let strict = LinkSettings {
            link_probability: 0.9999,
            ..LinkSettings::default()
        };
        let outcome = link(&model, &records, &pairs, &patterns, &strict);
        assert!(outcome.links.is_empty());
        assert_eq!(outcome.review.len(), 3);
    }
}
