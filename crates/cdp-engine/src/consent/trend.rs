//! Consent coverage over time (`GET /v1/consents/trend`, the console's consents page): a
//! tally of the consent states the search index holds per purpose, taken every
//! `[consent] trend_every_secs` (once across the nodes of a database, by whichever node
//! claims it) and kept [`TALLY_KEEP`].
//!
//! Why tallies of the index rather than counters kept by the write path: a person's state
//! for a purpose is not a function of the last record alone (a newer notice makes a grant
//! stale, a parent purpose covers its children, a merge joins two ledgers, an erasure
//! removes one), and the index already holds the reduced state of everyone. Counting it
//! costs a few term counts per purpose (milliseconds at a million people) and nothing on
//! the write path. The price is resolution: the trend starts with the first tally and has
//! one point per interval.
//!
//! Tallies are counts of the whole population (no condition, no purpose filter), sealed at
//! rest like every system record; counts below the minimum audience size are withheld when
//! they are read, as in every other aggregate.

use std::collections::BTreeMap;

use cdp_store::{Keyspace, WriteBatch};
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use crate::read::breakdown::{COVERAGE_PURPOSES, equals};
use crate::{Engine, EngineError};

/// How long tallies are kept.
pub const TALLY_KEEP: time::Duration = time::Duration::days(400);
/// The longest trend one request reads.
pub const MAX_TREND_DAYS: u32 = 400;
/// The states of a purpose a tally counts, in the order charts draw them.
pub const TALLY_STATES: &[&str] = &["granted", "stale", "denied", "withdrawn", "none"];
const TALLY_PREFIX: &[u8] = b"consent-tally/";

/// One tally as stored: people per consent state per purpose at `at`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ConsentTally {
    #[serde(with = "time::serde::rfc3339")]
    pub at: OffsetDateTime,
    pub people: u64,
    /// purpose -> state -> people.
    pub purposes: BTreeMap<String, BTreeMap<String, u64>>,
}

/// One point of a trend as answered: counts below the minimum audience size are `None`.
#[derive(Debug, Clone, Serialize)]
pub struct TrendPoint {
    #[serde(with = "time::serde::rfc3339")]
    pub at: OffsetDateTime,
    pub people: Option<u64>,
    pub purposes: BTreeMap<String, BTreeMap<String, Option<u64>>>,
    /// Counted for this answer (the last point), not a stored tally.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub live: bool,
}

/// Which tallies a trend shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TrendStep {
    /// The last tally of each day (UTC).
    Day,
    /// Every tally.
    Tally,
}

#[derive(Debug, Clone, Serialize)]
pub struct ConsentTrend {
    pub days: u32,
    /// Counts below this are withheld (`null`).
    pub suppressed_below: u64,
    /// Stored tallies, oldest first, then the live count of now.
    pub points: Vec<TrendPoint>,
}

fn tally_key(at: OffsetDateTime) -> Vec<u8> {
    // Zero-padded hex seconds: keys sort in time order.
    let seconds = u64::try_from(at.unix_timestamp()).unwrap_or(0);
    [TALLY_PREFIX, format!("{seconds:016x}").as_bytes()].concat()
}

impl Engine {
    /// Counts the consent states of everyone in the index for the main purposes.
    pub fn count_consent_states(&self) -> Result<ConsentTally, EngineError> {
        let index = self.search_index()?;
        let known = self.purposes();
        let mut purposes = BTreeMap::new();
        for purpose in COVERAGE_PURPOSES
            .iter()
            .filter(|p| known.iter().any(|k| k == *p))
        {
            let field = format!("consent.{}", purpose.replace('.', "_"));
            let mut states = BTreeMap::new();
            for state in TALLY_STATES {
                let (people, _) = index
                    .count(&equals(&field, state), &known, None)
                    .map_err(crate::indexer::index_error)?;
                states.insert((*state).to_string(), people);
            }
            purposes.insert((*purpose).to_string(), states);
        }
        Ok(ConsentTally {
            at: OffsetDateTime::now_utc(),
            people: index.len(),
            purposes,
        })
    }

    /// Takes this interval's tally unless it was taken (by this node or another of the
    /// database): the interval is `now` rounded down to a multiple of `every`. Tallies older
    /// than [`TALLY_KEEP`] leave in the same batch. Answers the tally taken, if any, and
    /// when the next one is due (the caller need not ask before).
    pub fn tally_consents_if_due(
        &self,
        every: std::time::Duration,
    ) -> Result<(Option<ConsentTally>, OffsetDateTime), EngineError> {
        let every = every.as_secs().max(1);
        let now = OffsetDateTime::now_utc();
        let seconds = u64::try_from(now.unix_timestamp()).unwrap_or(0);
        let bucket = OffsetDateTime::from_unix_timestamp(
            i64::try_from(seconds - seconds % every).unwrap_or(0),
        )
        .unwrap_or(now);
        let next = bucket + time::Duration::seconds(i64::try_from(every).unwrap_or(3600));
        if self.tally_since(bucket)? {
            return Ok((None, next));
        }
        if !self.claim_singleton("consent-tally", crate::jobs::LEASE)? {
            // Another node takes it; look again a little later in case it dies first.
            return Ok((None, now + time::Duration::seconds(5)));
        }
        let tally = self.count_consent_states()?;
        let _turn = self.store().write_turn()?;
        // Another node may have taken it while this one counted (its lease had expired).
        if self.tally_since(bucket)? {
            return Ok((None, next));
        }
        let key = tally_key(tally.at);
        let mut batch = WriteBatch::default();
        batch.put(
            Keyspace::Meta,
            key.clone(),
            self.seal_system(Keyspace::Meta, &key, &tally)?,
        );
        let expired = tally_key(tally.at - TALLY_KEEP);
        for item in self.store().scan_prefix(Keyspace::Meta, TALLY_PREFIX) {
            let (key, _) = item?;
            if key >= expired {
                break;
            }
            batch.delete(Keyspace::Meta, key);
        }
        self.store().commit(batch)?.wait_durable()?;
        Ok((Some(tally), next))
    }

    /// Whether a tally was taken at or after `at` (keys are in time order: the first key
    /// from `at` on answers).
    fn tally_since(&self, at: OffsetDateTime) -> Result<bool, EngineError> {
        match self
            .store()
            .scan_from(Keyspace::Meta, &tally_key(at))
            .next()
        {
            Some(item) => Ok(item?.0.starts_with(TALLY_PREFIX)),
            None => Ok(false),
        }
    }

    /// `GET /v1/consents/trend`: the tallies of the last `days` days (the last of each day,
    /// or every one), then the live count of now; counts below the minimum audience size
    /// withheld.
    pub fn consent_trend(&self, days: u32, step: TrendStep) -> Result<ConsentTrend, EngineError> {
        if !(1..=MAX_TREND_DAYS).contains(&days) {
            return Err(EngineError::InvalidRequest(format!(
                "days must be between 1 and {MAX_TREND_DAYS}"
            )));
        }
        let k = self.min_audience_size();
        let shown = |people: u64| (people >= k || people == 0).then_some(people);
        let point = |tally: ConsentTally, live: bool| TrendPoint {
            at: tally.at,
            people: shown(tally.people),
            purposes: tally
                .purposes
                .into_iter()
                .map(|(purpose, states)| {
                    let states = states
                        .into_iter()
                        .map(|(state, people)| (state, shown(people)))
                        .collect();
                    (purpose, states)
                })
                .collect(),
            live,
        };
        let now = OffsetDateTime::now_utc();
        let from = tally_key(now - time::Duration::days(i64::from(days)));
        let mut tallies: Vec<ConsentTally> = Vec::new();
        for item in self.store().scan_from(Keyspace::Meta, &from) {
            let (key, sealed) = item?;
            if !key.starts_with(TALLY_PREFIX) {
                break;
            }
            let tally: ConsentTally = self.open_system(Keyspace::Meta, &key, &sealed)?;
            if step == TrendStep::Day
                && let Some(last) = tallies.last()
                && last.at.date() == tally.at.date()
            {
                // The last tally of a day stands for it.
                tallies.pop();
            }
            tallies.push(tally);
        }
        let mut points: Vec<TrendPoint> = tallies.into_iter().map(|t| point(t, false)).collect();
        points.push(point(self.count_consent_states()?, true));
        Ok(ConsentTrend {
            days,
            suppressed_below: k,
            points,
        })
    }
}
