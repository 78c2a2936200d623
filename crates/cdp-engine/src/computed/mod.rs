//! Computed traits for precise marketing (精准营销): RFM, value tier, lifecycle, CLV, churn
//! risk, interests, hesitation.
//!
//! Two halves. [`Activity`] is what a profile keeps of its events (orders, refunds, product
//! views, daily event counts), updated incrementally as each event is applied (also on replay
//! after merges and splits). [`compute`] turns it into [`ComputedTraits`] *as of* a time, with
//! the thresholds of [`ComputedRules`] and the population's RFM quintiles; the index calls it
//! when a person changes and on its scheduled refresh (time moves on without events).
//!
//! Segment e-commerce spec: `Order Completed` (`revenue`, else `total`; `products[].category`),
//! `Order Refunded` (`revenue`/`total`), `Product Viewed` and `Product Added` (`product_id`,
//! `category`).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

mod activity;

pub use activity::{Activity, OrderFact, event_key};

const DAY: i64 = 86_400;

/// Thresholds of the computed traits (config `[computed]`, defaults documented in
/// deploy/cdp.toml).
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct ComputedRules {
    /// Hesitating: viewed one product at least this many times...
    pub hesitating_views: u32,
    /// ...within this many days, without ordering since.
    pub hesitating_days: u32,
    /// Interests: categories whose weight is at least this (views 1, adds 2, orders 3).
    pub interest_min_weight: u32,
    /// At most this many interests, strongest first.
    pub max_interests: usize,
    /// Lifecycle: a first order within this many days is `acquisition`.
    pub acquisition_days: u32,
    /// Lifecycle: at least this many orders in 365 days is `maturity` (fewer: `growth`).
    pub maturity_orders: u64,
    /// Lifecycle: no order for this many days is `churned`.
    pub churned_days: u32,
    /// Churn risk: recency over the person's own purchase cycle at which risk reaches 1.
    pub churn_cycles: f64,
    /// Purchase cycle assumed for people with one order.
    pub default_cycle_days: f64,
    /// CLV prediction horizon, years.
    pub clv_years: f64,
    /// Value tier: RFM score (R+F+M) at least this is `vip`.
    pub vip_rfm: u32,
    /// Value tier: M score at least this with F at most 2 is `high_potential`.
    pub high_potential_m: u32,
    /// Value tier: churn risk at least this is `churn_warning` (for buyers).
    pub churn_warning_risk: f64,
}

impl Default for ComputedRules {
    fn default() -> Self {
        Self {
            hesitating_views: 3,
            hesitating_days: 7,
            interest_min_weight: 3,
            max_interests: 5,
            acquisition_days: 30,
            maturity_orders: 4,
            churned_days: 365,
            churn_cycles: 3.0,
            default_cycle_days: 90.0,
            clv_years: 3.0,
            vip_rfm: 13,
            high_potential_m: 4,
            churn_warning_risk: 0.7,
        }
    }
}

/// Population quintile boundaries (four cut points each), recomputed on the index's schedule.
/// Empty: every score is 3.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Quintiles {
    /// Days since the last order (lower is better).
    pub recency_days: Vec<f64>,
    pub frequency_365d: Vec<f64>,
    pub monetary_365d: Vec<f64>,
}

impl Quintiles {
    /// Cut points of `values` at 20/40/60/80 %.
    pub fn cuts(mut values: Vec<f64>) -> Vec<f64> {
        values.retain(|v| v.is_finite());
        if values.len() < 5 {
            return Vec::new();
        }
        values.sort_by(f64::total_cmp);
        (1..5).map(|q| values[values.len() * q / 5]).collect()
    }

    /// 1..5: how many cut points `value` reaches (`higher_is_better`) or stays under.
    fn score(cuts: &[f64], value: f64, higher_is_better: bool) -> u32 {
        if cuts.len() != 4 {
            return 3;
        }
        let above = cuts.iter().filter(|cut| value >= **cut).count();
        let above = u32::try_from(above).unwrap_or(4);
        if higher_is_better {
            1 + above
        } else {
            5 - above.min(4)
        }
    }
}

/// The computed traits of one person, as of a time.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ComputedTraits {
    /// Days since the last order; `None` without orders.
    pub recency_days: Option<u32>,
    pub frequency_30d: u64,
    pub frequency_90d: u64,
    pub frequency_365d: u64,
    pub monetary_30d: f64,
    pub monetary_90d: f64,
    pub monetary_365d: f64,
    pub average_order_value: f64,
    pub orders_total: u64,
    pub repurchase: bool,
    /// Refunds over orders in 365 days.
    pub return_rate: f64,
    pub rfm_r: u32,
    pub rfm_f: u32,
    pub rfm_m: u32,
    /// `vip`, `high_potential`, `ordinary`, `churn_warning`.
    pub tier: String,
    /// `acquisition`, `growth`, `maturity`, `decline`, `churned`.
    pub lifecycle: String,
    pub clv_historical: f64,
    pub clv_predicted: f64,
    /// 0..1, from recency against the person's own purchase cycle.
    pub churn_risk: f64,
    /// Mean days between orders, if two or more.
    pub purchase_cycle_days: Option<f64>,
    pub interests: Vec<String>,
    pub hesitating: bool,
}

fn money(cents: i64) -> f64 {
    // Display money: f64 has ample precision below 2^53 cents.
    #[allow(clippy::cast_precision_loss)]
    let value = cents as f64 / 100.0;
    value
}

/// The computed traits of `activity` as of `now`.
pub fn compute(
    activity: &Activity,
    now: OffsetDateTime,
    rules: &ComputedRules,
    quintiles: &Quintiles,
) -> ComputedTraits {
    let now_s = now.unix_timestamp();
    let window = |days: i64| {
        activity
            .orders
            .iter()
            .filter(move |o| o.at > now_s - days * DAY && o.at <= now_s + DAY)
    };
    let frequency = |days| window(days).count() as u64;
    let monetary = |days| money(window(days).map(|o| o.cents).sum());
    let recency_days = activity
        .last_order_at
        .map(|last| u32::try_from(((now_s - last).max(0)) / DAY).unwrap_or(u32::MAX));
    let frequency_365d = frequency(365);
    let monetary_365d = monetary(365);
    #[allow(clippy::cast_precision_loss)]
    let average_order_value = if activity.lifetime_orders > 0 {
        money(activity.lifetime_cents) / activity.lifetime_orders as f64
    } else {
        0.0
    };
    let refunds_365d = activity
        .refunds
        .iter()
        .filter(|r| r.0 > now_s - 365 * DAY)
        .count();
    #[allow(clippy::cast_precision_loss)]
    let return_rate = if frequency_365d > 0 {
        (refunds_365d as f64 / frequency_365d as f64).min(1.0)
    } else {
        0.0
    };
    // The purchase cycle: mean gap between the kept orders.
    let purchase_cycle_days = (activity.orders.len() >= 2).then(|| {
        let first = activity.orders.first().map_or(0, |o| o.at);
        let last = activity.orders.last().map_or(0, |o| o.at);
        #[allow(clippy::cast_precision_loss)]
        let cycle = (last - first) as f64 / DAY as f64 / (activity.orders.len() - 1) as f64;
        cycle.max(1.0)
    });
    let cycle = purchase_cycle_days.unwrap_or(rules.default_cycle_days);
    let churn_risk = recency_days.map_or(0.0, |r| {
        (f64::from(r) / (cycle * rules.churn_cycles)).clamp(0.0, 1.0)
    });
    let (rfm_r, rfm_f, rfm_m) = if activity.lifetime_orders == 0 {
        (1, 1, 1)
    } else {
        #[allow(clippy::cast_precision_loss)]
        let scores = (
            Quintiles::score(
                &quintiles.recency_days,
                f64::from(recency_days.unwrap_or(u32::MAX)),
                false,
            ),
            Quintiles::score(&quintiles.frequency_365d, frequency_365d as f64, true),
            Quintiles::score(&quintiles.monetary_365d, monetary_365d, true),
        );
        scores
    };
    let tier = tier_of(activity, rules, churn_risk, (rfm_r, rfm_f, rfm_m));
    let lifecycle = lifecycle_of(
        activity,
        rules,
        now_s,
        recency_days,
        churn_risk,
        frequency_365d,
    );
    let clv_historical = money(activity.lifetime_cents);
    let orders_per_year = 365.0 / cycle;
    let clv_predicted = clv_historical
        + average_order_value * orders_per_year * rules.clv_years * (1.0 - churn_risk);
    let interests = interests_of(activity, rules);
    let hesitating = is_hesitating(activity, rules, now_s);
    ComputedTraits {
        recency_days,
        frequency_30d: frequency(30),
        frequency_90d: frequency(90),
        frequency_365d,
        monetary_30d: monetary(30),
        monetary_90d: monetary(90),
        monetary_365d,
        average_order_value,
        orders_total: activity.lifetime_orders,
        repurchase: activity.lifetime_orders >= 2,
        return_rate,
        rfm_r,
        rfm_f,
        rfm_m,
        tier: tier.into(),
        lifecycle: lifecycle.into(),
        clv_historical,
        clv_predicted,
        churn_risk,
        purchase_cycle_days,
        interests,
        hesitating,
    }
}

/// `vip`, `high_potential`, `ordinary` or `churn_warning` (people without orders: `ordinary`).
fn tier_of(
    activity: &Activity,
    rules: &ComputedRules,
    churn_risk: f64,
    (rfm_r, rfm_f, rfm_m): (u32, u32, u32),
) -> &'static str {
    if activity.lifetime_orders == 0 {
        "ordinary"
    } else if churn_risk >= rules.churn_warning_risk {
        "churn_warning"
    } else if rfm_r + rfm_f + rfm_m >= rules.vip_rfm {
        "vip"
    } else if rfm_m >= rules.high_potential_m && rfm_f <= 2 {
        "high_potential"
    } else {
        "ordinary"
    }
}

/// acquisition -> growth -> maturity -> decline -> churned.
fn lifecycle_of(
    activity: &Activity,
    rules: &ComputedRules,
    now_s: i64,
    recency_days: Option<u32>,
    churn_risk: f64,
    frequency_365d: u64,
) -> &'static str {
    match (activity.first_order_at, recency_days) {
        (None, _) | (_, None) => "acquisition",
        (Some(_), Some(r)) if r >= rules.churned_days => "churned",
        (Some(first), Some(_)) if now_s - first <= i64::from(rules.acquisition_days) * DAY => {
            "acquisition"
        }
        (Some(_), Some(_)) if churn_risk >= 0.5 => "decline",
        _ if frequency_365d >= rules.maturity_orders => "maturity",
        _ => "growth",
    }
}

/// The strongest categories of the person's views and orders, strongest first.
fn interests_of(activity: &Activity, rules: &ComputedRules) -> Vec<String> {
    let mut interests: Vec<(&String, &u32)> = activity
        .categories
        .iter()
        .filter(|(_, weight)| **weight >= rules.interest_min_weight)
        .collect();
    interests.sort_by(|a, b| b.1.cmp(a.1).then(a.0.cmp(b.0)));
    interests
        .into_iter()
        .take(rules.max_interests)
        .map(|(category, _)| category.clone())
        .collect()
}

/// Viewed one product several times lately without ordering since the first of those views.
fn is_hesitating(activity: &Activity, rules: &ComputedRules, now_s: i64) -> bool {
    let hesitation_start = now_s - i64::from(rules.hesitating_days) * DAY;
    let mut views: BTreeMap<&str, (u32, i64)> = BTreeMap::new();
    for (at, product) in &activity.views {
        if *at > hesitation_start {
            let entry = views.entry(product.as_str()).or_insert((0, *at));
            entry.0 += 1;
            entry.1 = entry.1.min(*at);
        }
    }
    views.values().any(|(count, first_view)| {
        *count >= rules.hesitating_views
            && activity
                .last_order_at
                .is_none_or(|last| last <= *first_view)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use cdp_core::segment::{Message, MessageType};
    use serde_json::Value;
    use time::Duration;

    fn track(event: &str, at: OffsetDateTime, properties: Value) -> Message {
        Message {
            kind: MessageType::Track,
            message_id: "m".into(),
            generated_message_id: false,
            user_id: Some("u".into()),
            anonymous_id: None,
            previous_id: None,
            group_id: None,
            event: Some(event.into()),
            name: None,
            timestamp: at,
            received_at: at,
            traits: Default::default(),
            properties: properties.as_object().cloned().unwrap_or_default(),
            context: Default::default(),
        }
    }

    #[test]
    fn orders_refunds_views_and_traits() {
        let now = time::macros::datetime!(2026-06-01 12:00 UTC);
        let mut activity = Activity::default();
        for (days_ago, revenue) in [(200, 100.0), (100, 300.0), (10, 600.0)] {
            activity.observe(
                &track(
                    "Order Completed",
                    now - Duration::days(days_ago),
                    serde_json::json!({"revenue": revenue, "products": [{"category": "shoes"}, {"category": "bags"}]}),
                ),
                now,
            );
        }
        activity.observe(
            &track(
                "Order Refunded",
                now - Duration::days(5),
                serde_json::json!({"total": 600}),
            ),
            now,
        );
        for hours in [1, 2, 3] {
            activity.observe(
                &track(
                    "Product Viewed",
                    now - Duration::hours(hours),
                    serde_json::json!({"product_id": "sku-9", "category": "coats"}),
                ),
                now,
            );
        }
        let traits = compute(
            &activity,
            now,
            &ComputedRules::default(),
            &Quintiles::default(),
        );
        assert_eq!(traits.recency_days, Some(10));
        assert_eq!(traits.frequency_30d, 1);
        assert_eq!(traits.frequency_365d, 3);
        assert!((traits.monetary_90d - 600.0).abs() < 1e-9);
        assert!((traits.monetary_365d - 1000.0).abs() < 1e-9);
        assert!((traits.average_order_value - 1000.0 / 3.0).abs() < 1e-9);
        assert!(traits.repurchase);
        assert!((traits.return_rate - 1.0 / 3.0).abs() < 1e-9);
        assert_eq!(traits.purchase_cycle_days, Some(95.0));
        assert!(
            traits.hesitating,
            "three views of one product after the last order"
        );
        assert_eq!(traits.interests, ["bags", "shoes", "coats"]);
        assert_eq!(traits.lifecycle, "growth");
        assert_eq!(activity.count_within("order_completed", 30, now), 1);
        assert_eq!(activity.count_within("product_viewed", 7, now), 3);
        // A year later without orders: churned, at full churn risk.
        let later = now + Duration::days(400);
        let traits = compute(
            &activity,
            later,
            &ComputedRules::default(),
            &Quintiles::default(),
        );
        assert_eq!(traits.lifecycle, "churned");
        assert!((traits.churn_risk - 1.0).abs() < 1e-9);
        assert_eq!(traits.tier, "churn_warning");
    }

    #[test]
    fn quintile_scores() {
        let cuts = Quintiles::cuts((1..=100).map(f64::from).collect());
        assert_eq!(cuts, [21.0, 41.0, 61.0, 81.0]);
        assert_eq!(Quintiles::score(&cuts, 90.0, true), 5);
        assert_eq!(Quintiles::score(&cuts, 10.0, true), 1);
        assert_eq!(Quintiles::score(&cuts, 10.0, false), 5);
        assert_eq!(Quintiles::score(&[], 10.0, true), 3);
    }
}
