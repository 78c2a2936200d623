//! What a campaign send did, measured against its holdout: per arm the members, the
//! conversions (the campaign's conversion event within its window after the send), revenue,
//! average order value; per variant the uplift in conversion rate over the holdout with its
//! 95 % confidence interval and a two-sided test, the incremental revenue, ROI against the
//! cost and CAC over the new customers it converted.
//!
//! Aggregates only: an arm below the minimum audience size has its figures withheld (`null`),
//! and no list of people ever comes out. Members are those the send assigned
//! (`campaign-arms/<export>`), whatever has happened to them since; a member who was erased
//! since has no events left to read and counts as not converted (the figures of a send are
//! therefore stable only until erasures: docs/campaigns.md says so). Reading events follows
//! merges, so a member merged into another profile is measured on that profile.

use std::collections::HashMap;

use cdp_core::ProfileId;
use cdp_store::Keyspace;
use serde::Serialize;
use time::OffsetDateTime;

use crate::campaigns::{ARM_MASK, ORDERED_BEFORE};
use crate::exports::ExportStatus;
use crate::{Engine, EngineError};

/// One arm's figures (`None`: withheld below the minimum audience size).
#[derive(Debug, Clone, Serialize)]
pub struct ArmResult {
    pub arm: String,
    pub members: Option<u64>,
    pub conversions: Option<u64>,
    pub conversion_rate: Option<f64>,
    pub revenue: Option<f64>,
    /// Revenue per conversion.
    pub average_order_value: Option<f64>,
    /// Members who converted without having ordered before the send.
    pub new_customers: Option<u64>,
    /// Members contacted (the variants' members; 0 for the holdout).
    pub sent: Option<u64>,
    /// Members with a delivery, open, click or unsubscribe event naming the campaign after
    /// the send (an open or click implies the delivery).
    pub delivered: Option<u64>,
    pub opened: Option<u64>,
    pub clicked: Option<u64>,
    pub unsubscribed: Option<u64>,
    /// Converted members whose conversion was a repeat purchase (they had ordered before the
    /// send, or converted more than once in the window), over the converted members.
    pub repurchase_rate: Option<f64>,
    /// Conversions the attribution model credits to this campaign (the first or last contact
    /// within the attribution window before the conversion was this campaign's).
    pub attributed_conversions: Option<u64>,
    pub attributed_revenue: Option<f64>,
    /// Against the holdout (variants only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub uplift: Option<Uplift>,
}

/// A variant's effect over the holdout.
#[derive(Debug, Clone, Serialize)]
pub struct Uplift {
    /// Conversion rate minus the holdout's, in percentage points.
    pub points: f64,
    /// The 95 % confidence interval of `points`.
    pub ci95: [f64; 2],
    /// Two-sided p-value of the two-proportion z-test.
    pub p_value: f64,
    pub significant: bool,
    /// (Revenue per member minus the holdout's) times the variant's members.
    pub incremental_revenue: f64,
}

/// A send's results.
#[derive(Debug, Clone, Serialize)]
pub struct CampaignResults {
    pub campaign: String,
    pub export_id: String,
    #[serde(with = "time::serde::rfc3339")]
    pub sent_at: OffsetDateTime,
    pub conversion_event: String,
    pub window_days: u32,
    /// The end of the conversion window (results are final after it).
    #[serde(with = "time::serde::rfc3339")]
    pub window_ends: OffsetDateTime,
    pub arms: Vec<ArmResult>,
    /// The send's cost: the total, or per contact times the people contacted.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cost: Option<f64>,
    pub currency: String,
    /// (Incremental revenue of all variants minus the cost) / the cost.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub roi: Option<f64>,
    /// The cost per new customer the treated arms converted.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cac: Option<f64>,
    /// Arms below this many members have their figures withheld.
    pub suppressed_below: u64,
    /// Eligible people the send did not contact for contact pressure, before the arms were
    /// drawn: `frequency_cap` and `quiet_hours` (as the manifest counts them).
    pub held_back: std::collections::BTreeMap<String, u64>,
    /// How conversions were credited across campaigns (`attributed_*` of each variant).
    pub attribution: crate::campaigns::Attribution,
    /// How many sends the figures cover (several with `export=all`: every member once, in
    /// their arm, converted within the window from the first send to the last one's end).
    pub sends: usize,
}

/// The `export` that asks for the results of every finished send of a campaign together.
pub const ALL_SENDS: &str = "all";

/// A fact's key and sealed value.
type SealedFact = (Vec<u8>, Vec<u8>);

/// What the facts of one converted member came to.
struct Converted {
    /// The member's index in [`SendOutcomes::arms`].
    n: usize,
    /// The first conversion in the window.
    first: OffsetDateTime,
    orders: u32,
    revenue: f64,
    /// Every campaign contact of the member (any channel), oldest first (treated members
    /// only: attribution needs them).
    contacts: Vec<crate::contact_ledger::ContactEntry>,
}

impl Converted {
    /// Whether the campaign's attribution model credits the conversion at `at` to it: of the
    /// member's contacts within the window before the conversion, the first or the last.
    fn credited_to(&self, campaign: &crate::campaigns::CampaignRecord, at: OffsetDateTime) -> bool {
        let (at, window) = (
            at.unix_timestamp(),
            i64::from(campaign.attribution.window_days) * 86_400,
        );
        let mut touches = self
            .contacts
            .iter()
            .filter(|c| c.at <= at && c.at >= at - window);
        let touch = match campaign.attribution.model {
            crate::campaigns::TouchModel::FirstTouch => touches.next(),
            crate::campaigns::TouchModel::LastTouch => touches.next_back(),
        };
        touch.is_some_and(|c| c.campaign == campaign.id)
    }
}

/// One entry per member: a member split after the send has facts under two profile ids.
fn merge_converted(mut converted: Vec<Converted>) -> Vec<Converted> {
    converted.sort_by_key(|c| c.n);
    let mut out: Vec<Converted> = Vec::with_capacity(converted.len());
    for member in converted {
        match out.last_mut() {
            Some(last) if last.n == member.n => {
                last.first = last.first.min(member.first);
                last.orders += member.orders;
                last.revenue += member.revenue;
                // Both sides carry the member's ledgers (copied at the split): each contact once.
                last.contacts.extend(member.contacts);
                last.contacts.sort_by(|a, b| {
                    (a.order(), &a.campaign, &a.export).cmp(&(b.order(), &b.campaign, &b.export))
                });
                last.contacts.dedup();
            }
            _ => out.push(member),
        }
    }
    out
}

/// Engagement bits of a member in [`SendOutcomes::engaged`].
const DELIVERED: u8 = 1;
const OPENED: u8 = 2;
const CLICKED: u8 = 4;
const UNSUBSCRIBED: u8 = 8;

/// What became of a send's members: every member's arm and engagement, and the members who
/// converted (a small share of a million: kept apart, each member once). Flat arrays by
/// member index rather than maps: at 1M members, hashing and growing maps of a few hundred
/// thousand outcomes was a tenth of the results' time.
struct SendOutcomes {
    /// Each member's arm byte (`ARM_MASK`, `ORDERED_BEFORE`), in ascending id order.
    arms: Vec<u8>,
    /// Each member's engagement bits (same order).
    engaged: Vec<u8>,
    converted: Vec<Converted>,
}

/// A converting member's facts in the window, as found: (profile id, member index, facts).
type FoundFacts = (ProfileId, usize, Vec<SealedFact>);

#[derive(Default, Clone, Copy)]
struct Tally {
    members: u64,
    conversions: u64,
    revenue: f64,
    new_customers: u64,
    delivered: u64,
    opened: u64,
    clicked: u64,
    unsubscribed: u64,
    repeat_buyers: u64,
    attributed: u64,
    attributed_revenue: f64,
}

/// The standard normal's cumulative distribution (Abramowitz-Stegun 7.1.26, error < 1.5e-7).
fn normal_cdf(x: f64) -> f64 {
    let t = 1.0 / (1.0 + 0.327_591_1 * x.abs() / std::f64::consts::SQRT_2);
    let poly = t
        * (0.254_829_592
            + t * (-0.284_496_736
                + t * (1.421_413_741 + t * (-1.453_152_027 + t * 1.061_405_429))));
    let erf = 1.0 - poly * (-(x * x) / 2.0).exp();
    if x >= 0.0 {
        (1.0 + erf) / 2.0
    } else {
        (1.0 - erf) / 2.0
    }
}

fn uplift(treated: Tally, control: Tally) -> Option<Uplift> {
    if treated.members == 0 || control.members == 0 {
        return None;
    }
    let (nt, nc) = (treated.members as f64, control.members as f64);
    let (pt, pc) = (
        treated.conversions as f64 / nt,
        control.conversions as f64 / nc,
    );
    let diff = pt - pc;
    let se = (pt * (1.0 - pt) / nt + pc * (1.0 - pc) / nc).sqrt();
    let pooled = (treated.conversions + control.conversions) as f64 / (nt + nc);
    let se0 = (pooled * (1.0 - pooled) * (1.0 / nt + 1.0 / nc)).sqrt();
    let p_value = if se0 > 0.0 {
        2.0 * (1.0 - normal_cdf((diff / se0).abs()))
    } else if diff == 0.0 {
        1.0
    } else {
        0.0
    };
    let round = |x: f64| (x * 10_000.0).round() / 10_000.0;
    Some(Uplift {
        points: round(diff * 100.0),
        ci95: [
            round((diff - 1.96 * se) * 100.0),
            round((diff + 1.96 * se) * 100.0),
        ],
        p_value: round(p_value),
        significant: p_value < 0.05,
        incremental_revenue: round((treated.revenue / nt - control.revenue / nc) * nt),
    })
}

impl Engine {
    /// The results of a campaign's send (`export`, default its latest finished one).
    pub fn campaign_results(
        &self,
        id: &str,
        export: Option<&str>,
    ) -> Result<CampaignResults, EngineError> {
        let campaign = self.campaign(id)?;
        let jobs = self.measured_sends(&campaign, export)?;
        let (Some(first), Some(last)) = (jobs.first(), jobs.last()) else {
            return Err(EngineError::Conflict(format!(
                "campaign {id} has no finished send yet: POST /v1/campaigns/{id}/send"
            )));
        };
        let combined = export == Some(ALL_SENDS);
        let export_id = if combined {
            ALL_SENDS.to_string()
        } else {
            first.id.clone()
        };
        let sent_at = first.created_at;
        let window_ends =
            last.created_at + time::Duration::days(i64::from(campaign.conversion.within_days));
        // Engagement names the campaign, not the send: a recurring campaign's later send
        // starts its own count.
        let mut engaged_until = OffsetDateTime::now_utc().max(window_ends);
        if !combined
            && let Some(next) = campaign
                .sends
                .iter()
                .skip_while(|send| **send != first.id)
                .nth(1)
            && let Some(next) = self.export(next)?
        {
            engaged_until = next.created_at;
        }
        // Every send's members, each once, in the arm of the first send that had them (a
        // person's arm is the same at every send; whether they had ordered before is as of
        // their first send).
        let mut assigned = Vec::new();
        for job in &jobs {
            assigned.extend(self.send_arms(&job.id)?);
        }
        if jobs.len() > 1 {
            // Stable: each member's first send first.
            assigned.sort_by_key(|(id, _)| *id);
            assigned.dedup_by_key(|(id, _)| *id);
        }
        let mut tallies = vec![Tally::default(); campaign.variants.len() + 1];
        let outcomes =
            self.send_outcomes(&campaign, assigned, (sent_at, window_ends), engaged_until)?;
        for arm in &outcomes.arms {
            if let Some(tally) = tallies.get_mut(usize::from(arm & ARM_MASK)) {
                tally.members += 1;
            }
        }
        for (byte, engaged) in outcomes.arms.iter().zip(&outcomes.engaged) {
            if *engaged == 0 {
                continue;
            }
            let Some(tally) = tallies.get_mut(usize::from(byte & ARM_MASK)) else {
                continue;
            };
            tally.delivered += u64::from(engaged & DELIVERED != 0);
            tally.opened += u64::from(engaged & OPENED != 0);
            tally.clicked += u64::from(engaged & CLICKED != 0);
            tally.unsubscribed += u64::from(engaged & UNSUBSCRIBED != 0);
        }
        for member in &outcomes.converted {
            let Some(&byte) = outcomes.arms.get(member.n) else {
                continue;
            };
            let (arm, ordered_before) = (byte & ARM_MASK, byte & ORDERED_BEFORE != 0);
            let Some(tally) = tallies.get_mut(usize::from(arm)) else {
                continue;
            };
            tally.conversions += 1;
            tally.revenue += member.revenue;
            if !ordered_before {
                tally.new_customers += 1;
            }
            if ordered_before || member.orders > 1 {
                tally.repeat_buyers += 1;
            }
            if arm > 0 && member.credited_to(&campaign, member.first) {
                tally.attributed += 1;
                tally.attributed_revenue += member.revenue;
            }
        }
        let k = self.min_audience_size();
        let shown = |t: &Tally| t.members >= k;
        let holdout = tallies[0];
        let arm_result = |name: &str, t: &Tally, with_uplift: bool| {
            let visible = shown(t);
            let round = |x: f64| (x * 10_000.0).round() / 10_000.0;
            ArmResult {
                arm: name.to_string(),
                members: visible.then_some(t.members),
                conversions: visible.then_some(t.conversions),
                conversion_rate: (visible && t.members > 0)
                    .then(|| round(t.conversions as f64 / t.members as f64)),
                revenue: visible.then(|| round(t.revenue)),
                average_order_value: (visible && t.conversions > 0)
                    .then(|| round(t.revenue / t.conversions as f64)),
                new_customers: visible.then_some(t.new_customers),
                sent: visible.then_some(if with_uplift { t.members } else { 0 }),
                delivered: visible.then_some(t.delivered),
                opened: visible.then_some(t.opened),
                clicked: visible.then_some(t.clicked),
                unsubscribed: visible.then_some(t.unsubscribed),
                repurchase_rate: (visible && t.conversions > 0)
                    .then(|| round(t.repeat_buyers as f64 / t.conversions as f64)),
                attributed_conversions: (visible && with_uplift).then_some(t.attributed),
                attributed_revenue: (visible && with_uplift).then(|| round(t.attributed_revenue)),
                uplift: (with_uplift && visible && shown(&holdout))
                    .then(|| uplift(*t, holdout))
                    .flatten(),
            }
        };
        let mut arms = vec![arm_result("holdout", &holdout, false)];
        for (variant, tally) in campaign.variants.iter().zip(&tallies[1..]) {
            arms.push(arm_result(&variant.name, tally, true));
        }
        // Each send's cost: its total, or per contact times the people it contacted.
        let contacted: u64 = tallies[1..].iter().map(|t| t.members).sum();
        let cost = if combined {
            let per_send = jobs.iter().map(|job| {
                let included = job.counts_now().map_or(0, |c| c.included);
                campaign
                    .cost
                    .total
                    .or(campaign.cost.per_contact.map(|per| per * included as f64))
            });
            per_send.sum::<Option<f64>>()
        } else {
            campaign
                .cost
                .total
                .or(campaign.cost.per_contact.map(|per| per * contacted as f64))
        };
        let incremental: Option<f64> = arms[1..]
            .iter()
            .map(|a| a.uplift.as_ref().map(|u| u.incremental_revenue))
            .sum();
        let new_customers: u64 = tallies[1..].iter().map(|t| t.new_customers).sum();
        let every_arm_shown = tallies.iter().all(shown);
        Ok(CampaignResults {
            campaign: campaign.id.clone(),
            export_id,
            sent_at,
            conversion_event: campaign.conversion.event.clone(),
            window_days: campaign.conversion.within_days,
            window_ends,
            arms,
            cost,
            currency: campaign.cost.currency.clone(),
            roi: match (cost, incremental) {
                (Some(cost), Some(incremental)) if cost > 0.0 && every_arm_shown => {
                    Some(((incremental - cost) / cost * 10_000.0).round() / 10_000.0)
                }
                _ => None,
            },
            cac: match cost {
                Some(cost) if new_customers > 0 && every_arm_shown => {
                    Some((cost / new_customers as f64 * 100.0).round() / 100.0)
                }
                _ => None,
            },
            suppressed_below: k,
            held_back: ["frequency_cap", "quiet_hours"]
                .into_iter()
                .map(|reason| {
                    let n = jobs
                        .iter()
                        .filter_map(|job| job.counts_now()?.excluded.get(reason).copied())
                        .sum();
                    (reason.to_string(), n)
                })
                .collect(),
            attribution: campaign.attribution,
            sends: jobs.len(),
        })
    }

    /// The finished sends results are computed over: `export` (a send of the campaign), every
    /// finished send ([`ALL_SENDS`]), or the latest finished one.
    fn measured_sends(
        &self,
        campaign: &crate::campaigns::CampaignRecord,
        export: Option<&str>,
    ) -> Result<Vec<crate::exports::ExportRecord>, EngineError> {
        let id = &campaign.id;
        let done = |send: &str| -> Result<Option<crate::exports::ExportRecord>, EngineError> {
            Ok(self
                .export(send)?
                .filter(|job| job.status == ExportStatus::Done))
        };
        match export {
            Some(ALL_SENDS) => {
                let mut jobs = Vec::new();
                for send in &campaign.sends {
                    jobs.extend(done(send)?);
                }
                Ok(jobs)
            }
            Some(export) if campaign.sends.iter().any(|s| s == export) => {
                Ok(vec![self.finished_export(export, "send", "has results")?])
            }
            Some(export) => Err(EngineError::NotFound(format!(
                "send {export} of campaign {id}"
            ))),
            None => {
                for send in campaign.sends.iter().rev() {
                    if let Some(job) = done(send)? {
                        return Ok(vec![job]);
                    }
                }
                Ok(Vec::new())
            }
        }
    }

    /// What became of each member of a send, from the campaign facts in its conversion window
    /// and of its engagement until `engaged_until` (not from the members' events: a million
    /// members have few facts in a fortnight).
    fn send_outcomes(
        &self,
        campaign: &crate::campaigns::CampaignRecord,
        mut assigned: Vec<(ProfileId, u8)>,
        (sent_at, window_ends): (OffsetDateTime, OffsetDateTime),
        engaged_until: OffsetDateTime,
    ) -> Result<SendOutcomes, EngineError> {
        use crate::campaign_facts::{fact_range, parse_fact_key};
        // Members in ascending id order (a send assigns them so; sorted again if an older
        // store's were not): found by binary search, no map of a million entries.
        if !assigned.is_sorted_by_key(|(id, _)| *id) {
            assigned.sort_unstable_by_key(|(id, _)| *id);
        }
        let (members, arms): (Vec<ProfileId>, Vec<u8>) = assigned.into_iter().unzip();
        // Members merged into another profile since the send: their facts are the survivor's.
        // Few people are merged away: the aliases are walked, not the members.
        let mut aliases: HashMap<ProfileId, ProfileId> = HashMap::new();
        for item in self.store().scan_prefix(Keyspace::Aliases, b"") {
            let (absorbed, survivor) = item?;
            if let (Ok(a), Ok(s)) = (
                <[u8; 16]>::try_from(absorbed.as_slice()),
                <[u8; 16]>::try_from(survivor.as_slice()),
            ) {
                aliases.insert(ProfileId::from_bytes(a), ProfileId::from_bytes(s));
            }
        }
        let mut merged_into: HashMap<ProfileId, usize> = HashMap::new();
        let mut absorbed_members: Vec<(ProfileId, usize)> = aliases
            .keys()
            .filter_map(|id| members.binary_search(id).ok().map(|n| (*id, n)))
            .collect();
        // Two members merged into one are measured once, in the arm of the lower id (or the
        // survivor's own when the survivor was a member too).
        absorbed_members.sort_unstable_by_key(|(_, n)| *n);
        for (id, n) in absorbed_members {
            let mut current = id;
            for _ in 0..64 {
                match aliases.get(&current) {
                    Some(next) => current = *next,
                    None => break,
                }
            }
            if current != id && members.binary_search(&current).is_err() {
                merged_into.entry(current).or_insert(n);
            }
        }
        // Members split after the send: the side that did not keep the member's id is
        // measured as the member, in its arm (a split of a split too). Both sides' facts then
        // count once for the member (`merge_converted`).
        crate::contact_ledger::measure_heirs_as_members(
            self,
            &members,
            &mut merged_into,
            sent_at.unix_timestamp(),
        )?;
        let member_index = |id: &ProfileId| -> Option<usize> {
            members
                .binary_search(id)
                .ok()
                .or_else(|| merged_into.get(id).copied())
        };
        // Conversions within the window: the facts found first (a key range, in time order),
        // grouped per member in id order (their keys and ledgers are then read in key order),
        // then opened per member on both cores with the member's contacts when attribution
        // needs them (treated members only).
        let tag = self.facts.tag(&campaign.conversion.event, None);
        let (start, end) = fact_range(&tag, sent_at, window_ends);
        let mut facts: Vec<(ProfileId, usize, SealedFact)> = Vec::new();
        for item in self.store().scan_from(Keyspace::Exports, &start) {
            let (fact_key, sealed) = item?;
            if fact_key.as_slice() >= end.as_slice() {
                break;
            }
            let Some(id) = parse_fact_key(&fact_key) else {
                continue;
            };
            let Some(n) = member_index(&id) else {
                continue;
            };
            facts.push((id, n, (fact_key, sealed)));
        }
        // Stable: each member's facts stay in time order.
        facts.sort_by_key(|(id, _, _)| *id);
        let mut found: Vec<FoundFacts> = Vec::new();
        for (id, n, fact) in facts {
            match found.last_mut() {
                Some((last, _, sealed)) if *last == id => sealed.push(fact),
                _ => found.push((id, n, vec![fact])),
            }
        }
        let half = found.len().div_ceil(2).max(1);
        let parts: Vec<Result<Vec<Converted>, EngineError>> = std::thread::scope(|scope| {
            let workers: Vec<_> = found
                .chunks(half)
                .map(|part| {
                    let arms = &arms;
                    scope.spawn(move || self.open_conversions(part, arms, sent_at))
                })
                .collect();
            workers
                .into_iter()
                .map(|w| {
                    w.join().unwrap_or_else(|_| {
                        Err(EngineError::Job(
                            "a campaign results worker panicked".into(),
                        ))
                    })
                })
                .collect()
        });
        let mut converted = Vec::with_capacity(found.len());
        for part in parts {
            converted.extend(part?);
        }
        let converted = merge_converted(converted);
        // Engagement naming the campaign, from the send on.
        let mut engaged = vec![0u8; arms.len()];
        let mut engagements: Vec<(ProfileId, u8)> = Vec::new();
        for (name, engagement) in crate::engagement::ENGAGEMENT_EVENTS {
            use crate::engagement::Engagement;
            // An open or a click implies the delivery.
            let bits = match engagement {
                Engagement::Delivered => DELIVERED,
                Engagement::Opened => DELIVERED | OPENED,
                Engagement::Clicked => DELIVERED | OPENED | CLICKED,
                Engagement::Unsubscribed => DELIVERED | UNSUBSCRIBED,
            };
            let tag = self.facts.tag(name, Some(&campaign.id));
            let (start, end) = fact_range(&tag, sent_at, engaged_until);
            for item in self.store().scan_from(Keyspace::Exports, &start) {
                let (fact_key, _) = item?;
                if fact_key.as_slice() >= end.as_slice() {
                    break;
                }
                if let Some(id) = parse_fact_key(&fact_key) {
                    engagements.push((id, bits));
                }
            }
        }
        // Found in the members by one walk in id order: a binary search per fact among a
        // million members was a tenth of the results' time (cache misses at every step).
        engagements.sort_unstable_by_key(|(id, _)| *id);
        let mut next = 0;
        for (id, bits) in engagements {
            while members.get(next).is_some_and(|m| *m < id) {
                next += 1;
            }
            let n = match members.get(next) {
                Some(member) if *member == id => Some(next),
                _ => merged_into.get(&id).copied(),
            };
            if let Some(member) = n.and_then(|n| engaged.get_mut(n)) {
                *member |= bits;
            }
        }
        Ok(SendOutcomes {
            arms,
            engaged,
            converted,
        })
    }

    /// Opens the conversion facts of converting members (ascending ids): what each came to.
    fn open_conversions(
        &self,
        found: &[FoundFacts],
        arms: &[u8],
        sent_at: OffsetDateTime,
    ) -> Result<Vec<Converted>, EngineError> {
        let mut out = Vec::with_capacity(found.len());
        for (id, n, facts) in found {
            // Erased since: the key is gone, the facts unreadable: not converted.
            let Some(key) = self.vault().person_key(id)? else {
                continue;
            };
            let mut member = Converted {
                n: *n,
                // A member's facts are in time order (grouped by a stable sort of the scan).
                first: facts
                    .first()
                    .and_then(|(fact_key, _)| crate::campaign_facts::parse_fact_time(fact_key))
                    .unwrap_or(sent_at),
                orders: 0,
                revenue: 0.0,
                contacts: Vec::new(),
            };
            for (fact_key, sealed) in facts {
                let fact: crate::campaign_facts::CampaignFact =
                    self.open_person(&key, Keyspace::Exports, fact_key, sealed)?;
                member.orders += 1;
                member.revenue += fact.revenue.unwrap_or(0.0);
            }
            if arms.get(*n).is_some_and(|a| a & ARM_MASK > 0) {
                member.contacts = crate::contact_ledger::contacts_of(self, &key, id)?;
            }
            out.push(member);
        }
        Ok(out)
    }

    /// Who a campaign send assigned where: (profile id, arm), 0 the holdout.
    fn send_arms(&self, export: &str) -> Result<Vec<(ProfileId, u8)>, EngineError> {
        let mut out = Vec::new();
        for n in 0.. {
            let key = crate::exports::campaign_arms_key(export, n);
            let Some(sealed) = self.store().get(Keyspace::Exports, &key)? else {
                break;
            };
            let plain = self.vault().open_system(Keyspace::Exports, &key, &sealed)?;
            if plain.len() % 17 != 0 {
                return Err(EngineError::Corrupt(format!("campaign arms of {export}")));
            }
            for entry in plain.chunks_exact(17) {
                let id: [u8; 16] = entry[..16]
                    .try_into()
                    .map_err(|_| EngineError::Corrupt(format!("campaign arms of {export}")))?;
                out.push((ProfileId::from_bytes(id), entry[16]));
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_sides_of_a_split_member_count_once() {
        let contact = |at| crate::contact_ledger::ContactEntry {
            at,
            at_us: None,
            campaign: "cmp_1".into(),
            export: "exp_1".into(),
        };
        let side = |n, day, contacts| Converted {
            n,
            first: OffsetDateTime::UNIX_EPOCH + time::Duration::days(day),
            orders: 1,
            revenue: 10.0,
            contacts,
        };
        let merged = merge_converted(vec![
            side(3, 2, vec![contact(5), contact(9)]),
            side(1, 4, vec![]),
            side(3, 1, vec![contact(9)]),
        ]);
        assert_eq!(merged.iter().map(|c| c.n).collect::<Vec<_>>(), [1, 3]);
        let member = &merged[1];
        assert_eq!((member.orders, member.revenue), (2, 20.0));
        assert_eq!(
            member.first,
            OffsetDateTime::UNIX_EPOCH + time::Duration::days(1)
        );
        assert_eq!(member.contacts, [contact(5), contact(9)]);
    }

    #[test]
    fn the_normal_cdf_matches_known_values() {
        for (x, expected) in [
            (0.0, 0.5),
            (1.96, 0.975_002),
            (-1.0, 0.158_655),
            (3.0, 0.998_650),
        ] {
            assert!(
                (normal_cdf(x) - expected).abs() < 1e-5,
                "{x}: {}",
                normal_cdf(x)
            );
        }
    }

    #[test]
    fn uplift_of_a_known_difference() {
        let treated = Tally {
            members: 1000,
            conversions: 130,
            revenue: 13_000.0,
            ..Tally::default()
        };
        let control = Tally {
            members: 1000,
            conversions: 100,
            revenue: 10_000.0,
            ..Tally::default()
        };
        let u = uplift(treated, control).unwrap_or_else(|| panic!("no uplift"));
        assert!((u.points - 3.0).abs() < 1e-9, "{u:?}");
        // SE = sqrt(.13*.87/1000 + .1*.9/1000) = 0.014251; CI = 3 +- 2.7932 points.
        assert!(
            (u.ci95[0] - 0.2068).abs() < 1e-3 && (u.ci95[1] - 5.7932).abs() < 1e-3,
            "{u:?}"
        );
        assert!(
            u.significant && u.p_value < 0.05 && u.p_value > 0.02,
            "{u:?}"
        );
        assert!((u.incremental_revenue - 3000.0).abs() < 1e-6, "{u:?}");
        let none = uplift(control, control).unwrap_or_else(|| panic!("no uplift"));
        assert!(!none.significant && none.points == 0.0 && (none.p_value - 1.0).abs() < 1e-9);
    }
}
