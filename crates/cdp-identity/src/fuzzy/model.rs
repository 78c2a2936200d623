//! Fellegi-Sunter scoring of a pair of people: each field compared at a level (equal,
//! close, similar, different; missing on either side: no evidence), each level's probability
//! among true matches (m) and among non-matches (u), and the pair's match weight
//! `log2(λ/(1-λ)) + Σ log2(m/u)`.
//!
//! The probabilities come from the data, as Splink estimates them: u from random pairs (almost
//! all non-matches whatever the population), then m and the match share λ by
//! expectation-maximisation over the candidate pairs' comparison patterns, with u held.

use std::collections::HashMap;

use super::{Encoded, FieldKind, FieldSpec, FuzzyRecord};

/// The level of a field missing on either side: it weighs nothing.
pub const NULL: u8 = 0xF;

/// The most fields a model compares (a pattern packs four bits per field in a `u64`).
pub const MAX_FIELDS: usize = 16;

/// Dice thresholds of text levels 0, 1 and 2 (below the last: level 3, different). The top
/// level is "equal up to a character's grams" rather than exactly 1: Bloom filters of equal
/// texts are equal, and of texts one character apart rarely are.
const TEXT_LEVELS: [f64; 3] = [0.95, 0.85, 0.7];

/// Levels of a kind of field (excluding [`NULL`]).
pub fn levels(kind: FieldKind) -> usize {
    match kind {
        FieldKind::Text | FieldKind::Date => 4,
        FieldKind::Exact => 2,
    }
}

/// What a level of a kind of field means, as explanations show it.
pub fn level_label(kind: FieldKind, level: u8) -> &'static str {
    match (kind, level) {
        (_, NULL) => "missing",
        (FieldKind::Text, 0) => "equal (dice >= 0.95)",
        (FieldKind::Text, 1) => "close (dice >= 0.85)",
        (FieldKind::Text, 2) => "similar (dice >= 0.70)",
        (FieldKind::Date, 0) => "equal",
        (FieldKind::Date, 1) => "day and month transposed",
        (FieldKind::Date, 2) => "one part differs",
        (FieldKind::Exact, 0) => "equal",
        _ => "different",
    }
}

/// The level of one field of a pair.
pub fn compare_field(a: &Encoded, b: &Encoded) -> u8 {
    match (a, b) {
        (Encoded::Text(a), Encoded::Text(b)) => {
            let dice = a.dice(b);
            TEXT_LEVELS
                .iter()
                .position(|t| dice >= *t)
                .map_or(3, |l| l as u8)
        }
        (
            Encoded::Date {
                year: ya,
                month: ma,
                day: da,
            },
            Encoded::Date {
                year: yb,
                month: mb,
                day: db,
            },
        ) => {
            let same = u8::from(ya == yb) + u8::from(ma == mb) + u8::from(da == db);
            if same == 3 {
                0
            } else if ya == yb && ma == db && da == mb {
                1
            } else if same == 2 {
                2
            } else {
                3
            }
        }
        (Encoded::Token(a), Encoded::Token(b)) => u8::from(a != b),
        // Encodings of different kinds in one slot: the caller mixed fields up; no evidence.
        _ => NULL,
    }
}

/// A pair's comparison vector: four bits per field, [`NULL`] where one side lacks it.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Debug)]
pub struct Pattern(pub u64);

impl Pattern {
    pub fn level(self, field: usize) -> u8 {
        ((self.0 >> (4 * field)) & 0xF) as u8
    }

    /// The pattern with `fields` as missing.
    pub fn masked(self, fields: &[usize]) -> Self {
        let mut packed = self.0;
        for field in fields.iter().filter(|f| **f < MAX_FIELDS) {
            packed |= 0xF << (4 * field);
        }
        Self(packed)
    }
}

/// Compares two records field by field.
pub fn compare(a: &FuzzyRecord, b: &FuzzyRecord) -> Pattern {
    let mut packed = 0u64;
    for (field, (x, y)) in a.fields.iter().zip(&b.fields).enumerate().take(MAX_FIELDS) {
        let level = match (x, y) {
            (Some(x), Some(y)) => compare_field(x, y),
            _ => NULL,
        };
        packed |= u64::from(level) << (4 * field);
    }
    for field in a.fields.len().min(b.fields.len())..MAX_FIELDS {
        packed |= u64::from(NULL) << (4 * field);
    }
    Pattern(packed)
}

/// One field's part of a pair's weight.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct Contribution {
    pub field: String,
    pub level: &'static str,
    /// `log2(m/u)` of the level (0 when missing).
    pub weight: f64,
}

/// How training went.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Training {
    pub random_pairs: u64,
    pub candidate_pairs: u64,
    pub distinct_patterns: usize,
    pub iterations: usize,
    pub converged: bool,
    /// The estimated share of matches among the candidate pairs.
    pub match_share: f64,
}

/// The m and u probabilities per field and level, and the match share λ among candidates.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Model {
    pub fields: Vec<FieldSpec>,
    pub m: Vec<Vec<f64>>,
    pub u: Vec<Vec<f64>>,
    pub lambda: f64,
}

/// No probability is ever exactly 0 or 1: a level never seen in training must not make a
/// weight infinite.
const FLOOR: f64 = 1e-6;

impl Model {
    /// A model before training: m favours agreement, u is uniform.
    pub fn new(fields: Vec<FieldSpec>) -> Self {
        let m = fields
            .iter()
            .map(|f| {
                let n = levels(f.kind);
                (0..n)
                    .map(|l| if l == 0 { 0.9 } else { 0.1 / (n - 1) as f64 })
                    .collect()
            })
            .collect();
        let u = fields
            .iter()
            .map(|f| vec![1.0 / levels(f.kind) as f64; levels(f.kind)])
            .collect();
        Self {
            fields,
            m,
            u,
            lambda: 0.01,
        }
    }

    /// Estimates u from `pairs` random pairs of `records` (a deterministic draw from `seed`).
    pub fn estimate_u(&mut self, records: &[FuzzyRecord], pairs: u64, seed: u64) -> u64 {
        let mut counts: Vec<Vec<u64>> = self
            .fields
            .iter()
            .map(|f| vec![0; levels(f.kind)])
            .collect();
        if records.len() < 2 {
            return 0;
        }
        let mut rng = SplitMix(seed);
        let n = records.len() as u64;
        let mut drawn = 0;
        for _ in 0..pairs {
            let i = rng.next() % n;
            let j = rng.next() % n;
            if i == j {
                continue;
            }
            drawn += 1;
            let pattern = compare(&records[i as usize], &records[j as usize]);
            for (field, count) in counts.iter_mut().enumerate() {
                let level = pattern.level(field);
                if level != NULL {
                    count[usize::from(level)] += 1;
                }
            }
        }
        for (u, count) in self.u.iter_mut().zip(&counts) {
            let total: u64 = count.iter().sum();
            for (p, c) in u.iter_mut().zip(count) {
                // Laplace smoothing: a level random pairs never reach keeps a small share.
                *p = ((*c as f64 + 1.0) / (total as f64 + count.len() as f64)).max(FLOOR);
            }
        }
        drawn
    }

    /// Estimates m and λ by EM over the candidates' patterns (pattern -> pairs), u held.
    pub fn train(&mut self, patterns: &HashMap<Pattern, u64>, max_iterations: usize) -> Training {
        self.expectation_maximisation(patterns, max_iterations, true)
    }

    /// Estimates λ alone, m and u held: the share of matches among candidates once the
    /// fields' probabilities are known.
    pub fn train_match_share(
        &mut self,
        patterns: &HashMap<Pattern, u64>,
        max_iterations: usize,
    ) -> Training {
        self.expectation_maximisation(patterns, max_iterations, false)
    }

    fn expectation_maximisation(
        &mut self,
        patterns: &HashMap<Pattern, u64>,
        max_iterations: usize,
        fit_m: bool,
    ) -> Training {
        let total: u64 = patterns.values().sum();
        let mut training = Training {
            random_pairs: 0,
            candidate_pairs: total,
            distinct_patterns: patterns.len(),
            iterations: 0,
            converged: false,
            match_share: self.lambda,
        };
        if total == 0 {
            return training;
        }
        let mut ordered: Vec<(Pattern, u64)> = patterns.iter().map(|(p, c)| (*p, *c)).collect();
        ordered.sort_unstable();
        for iteration in 1..=max_iterations {
            let mut matched = 0.0;
            let mut m_sums: Vec<Vec<f64>> = self.m.iter().map(|m| vec![0.0; m.len()]).collect();
            for (pattern, count) in &ordered {
                let posterior = self.probability(self.weight(*pattern));
                let share = posterior * *count as f64;
                matched += share;
                for (field, sums) in m_sums.iter_mut().enumerate() {
                    let level = pattern.level(field);
                    if level != NULL {
                        sums[usize::from(level)] += share;
                    }
                }
            }
            let mut change: f64 = 0.0;
            let lambda = (matched / total as f64).clamp(FLOOR, 1.0 - FLOOR);
            change = change.max((lambda - self.lambda).abs());
            self.lambda = lambda;
            for (m, sums) in self.m.iter_mut().zip(&m_sums).filter(|_| fit_m) {
                let sum: f64 = sums.iter().sum();
                if sum <= 0.0 {
                    continue;
                }
                for (p, s) in m.iter_mut().zip(sums) {
                    let next = (s / sum).clamp(FLOOR, 1.0 - FLOOR);
                    change = change.max((next - *p).abs());
                    *p = next;
                }
            }
            training.iterations = iteration;
            if change < 1e-7 {
                training.converged = true;
                break;
            }
        }
        training.match_share = self.lambda;
        training
    }

    /// The pair's match weight (log2 of the odds of a match).
    pub fn weight(&self, pattern: Pattern) -> f64 {
        let mut weight = (self.lambda / (1.0 - self.lambda)).log2();
        for field in 0..self.fields.len().min(MAX_FIELDS) {
            let level = pattern.level(field);
            if level != NULL {
                let l = usize::from(level);
                weight += (self.m[field][l] / self.u[field][l]).log2();
            }
        }
        weight
    }

    /// The probability of a match of a weight.
    pub fn probability(&self, weight: f64) -> f64 {
        1.0 / (1.0 + (-weight).exp2())
    }

    /// Each field's part of a pair's weight.
    pub fn explain(&self, pattern: Pattern) -> Vec<Contribution> {
        self.fields
            .iter()
            .enumerate()
            .map(|(field, spec)| {
                let level = pattern.level(field);
                let weight = if level == NULL {
                    0.0
                } else {
                    let l = usize::from(level);
                    (self.m[field][l] / self.u[field][l]).log2()
                };
                Contribution {
                    field: spec.name.clone(),
                    level: level_label(spec.kind, level),
                    weight,
                }
            })
            .collect()
    }
}

/// SplitMix64: a small deterministic generator for sampling (not for anything secret).
pub(crate) struct SplitMix(pub u64);

impl SplitMix {
    pub(crate) fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fuzzy::FieldFilter;

    fn text(bits: &[usize]) -> Encoded {
        let mut f = FieldFilter::default();
        for b in bits {
            f.set(*b);
        }
        Encoded::Text(f)
    }

    #[test]
    fn levels_of_each_kind() {
        let a = text(&(0..20).collect::<Vec<_>>());
        assert_eq!(compare_field(&a, &a), 0);
        assert_eq!(compare_field(&a, &text(&(2..22).collect::<Vec<_>>())), 1);
        assert_eq!(compare_field(&a, &text(&(100..120).collect::<Vec<_>>())), 3);
        let date = |year, month, day| Encoded::Date { year, month, day };
        assert_eq!(compare_field(&date(1, 2, 3), &date(1, 2, 3)), 0);
        assert_eq!(compare_field(&date(1, 2, 3), &date(1, 3, 2)), 1);
        assert_eq!(compare_field(&date(1, 2, 3), &date(1, 2, 9)), 2);
        assert_eq!(compare_field(&date(1, 2, 3), &date(7, 8, 9)), 3);
        assert_eq!(compare_field(&Encoded::Token(4), &Encoded::Token(4)), 0);
        assert_eq!(compare_field(&Encoded::Token(4), &Encoded::Token(5)), 1);
        assert_eq!(compare_field(&Encoded::Token(4), &a), NULL);
    }

    #[test]
    fn em_recovers_planted_m_probabilities() {
        // Two exact fields; matches agree on each with probability 0.9 (0.95 for the
        // second), non-matches with 0.1 and 0.05: 1,000 matches among 10,000 pairs.
        let fields = vec![
            FieldSpec {
                name: "a".into(),
                kind: FieldKind::Exact,
            },
            FieldSpec {
                name: "b".into(),
                kind: FieldKind::Exact,
            },
        ];
        let mut model = Model::new(fields);
        model.u = vec![vec![0.1, 0.9], vec![0.05, 0.95]];
        let mut patterns = HashMap::new();
        let mut rng = SplitMix(7);
        let mut draw = |p: f64| u64::from(rng.next() as f64 / u64::MAX as f64 >= p);
        for pair in 0..10_000 {
            let (pa, pb) = if pair < 1_000 {
                (0.9, 0.95)
            } else {
                (0.1, 0.05)
            };
            let packed = draw(pa) | (draw(pb) << 4) | (u64::MAX << 8);
            *patterns.entry(Pattern(packed)).or_insert(0) += 1;
        }
        let training = model.train(&patterns, 200);
        assert!(training.converged, "{training:?}");
        assert!((model.lambda - 0.1).abs() < 0.02, "{}", model.lambda);
        assert!((model.m[0][0] - 0.9).abs() < 0.05, "{:?}", model.m);
        assert!((model.m[1][0] - 0.95).abs() < 0.05, "{:?}", model.m);
        let agree = model.weight(Pattern(u64::MAX << 8));
        let disagree = model.weight(Pattern(0x11 | (u64::MAX << 8)));
        assert!(agree > 3.0 && disagree < -3.0, "{agree} {disagree}");
        let explained = model.explain(Pattern(0x10 | (u64::MAX << 8)));
        assert_eq!(explained[0].level, "equal");
        assert_eq!(explained[1].level, "different");
        assert!(explained[0].weight > 0.0 && explained[1].weight < 0.0);
    }
}
