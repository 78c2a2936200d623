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

use cdp_core::segment::{Message, MessageType};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use time::OffsetDateTime;

const DAY: i64 = 86_400;
/// Orders, refunds and daily counts older than this are folded into lifetime totals.
const KEEP_DAYS: i64 = 400;
/// Product views are kept this long (the hesitation window is at most this).
const VIEW_DAYS: i64 = 30;
const MAX_VIEWS: usize = 500;
const MAX_EVENT_NAMES: usize = 64;
const MAX_CATEGORIES: usize = 64;

/// One order.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OrderFact {
    /// Unix seconds.
    pub at: i64,
    /// In minor units (cents / 分).
    pub cents: i64,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub categories: Vec<String>,
}

/// What a profile keeps of its events for computed traits.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Activity {
    /// Orders of the last [`KEEP_DAYS`] days.
    #[serde(default)]
    pub orders: Vec<OrderFact>,
    /// Refunds of the last [`KEEP_DAYS`] days: (unix seconds, cents).
    #[serde(default)]
    pub refunds: Vec<(i64, i64)>,
    #[serde(default)]
    pub lifetime_orders: u64,
    #[serde(default)]
    pub lifetime_cents: i64,
    #[serde(default)]
    pub lifetime_refunds: u64,
    #[serde(default)]
    pub first_order_at: Option<i64>,
    #[serde(default)]
    pub last_order_at: Option<i64>,
    /// Product views and adds of the last [`VIEW_DAYS`] days: (unix seconds, product key).
    #[serde(default)]
    pub views: Vec<(i64, String)>,
    /// Interest weight per product category (views 1, adds 2, orders 3).
    #[serde(default)]
    pub categories: BTreeMap<String, u32>,
    /// Event key (`order_completed`, `page`...) -> unix day -> count.
    #[serde(default)]
    pub daily: BTreeMap<String, BTreeMap<i64, u32>>,
}

impl Activity {
    /// Nothing recorded (most profiles without orders or views): not stored at all.
    pub fn is_empty(&self) -> bool {
        *self == Self::default()
    }
}

fn amount_cents(properties: &serde_json::Map<String, Value>) -> Option<i64> {
    let value = properties
        .get("revenue")
        .or_else(|| properties.get("total"))?;
    let amount = match value {
        Value::Number(n) => n.as_f64()?,
        Value::String(s) => s.trim().parse::<f64>().ok()?,
        _ => return None,
    };
    if !amount.is_finite() || !(0.0..1e12).contains(&amount) {
        return None;
    }
    // Rounding to the nearest minor unit is the intent.
    #[allow(clippy::cast_possible_truncation)]
    Some((amount * 100.0).round() as i64)
}

fn category_of(value: &Value) -> Option<String> {
    let text = value.get("category")?.as_str()?.trim();
    (!text.is_empty() && text.len() <= 64).then(|| text.to_string())
}

/// The key of an event in daily counts: `track` names in snake case, other types by type.
pub fn event_key(message: &Message) -> Option<String> {
    match message.kind {
        MessageType::Track => {
            let name = message.event.as_deref()?;
            let mut key = String::with_capacity(name.len());
            for c in name.trim().chars() {
                if c.is_alphanumeric() {
                    key.extend(c.to_lowercase());
                } else if !key.ends_with('_') && !key.is_empty() {
                    key.push('_');
                }
            }
            let key = key.trim_end_matches('_').to_string();
            (!key.is_empty() && key.len() <= 64).then_some(key)
        }
        MessageType::Page => Some("page".into()),
        MessageType::Screen => Some("screen".into()),
        MessageType::Identify => Some("identify".into()),
        MessageType::Group => Some("group".into()),
        MessageType::Alias => None,
    }
}

impl Activity {
    /// Records one event. `now` bounds what is kept (older facts fold into totals).
    pub fn observe(&mut self, message: &Message, now: OffsetDateTime) {
        let at = message.timestamp.unix_timestamp();
        let now = now.unix_timestamp();
        if let Some(key) = event_key(message)
            && (self.daily.contains_key(&key) || self.daily.len() < MAX_EVENT_NAMES)
            && at > now - KEEP_DAYS * DAY
        {
            *self
                .daily
                .entry(key)
                .or_default()
                .entry(at.div_euclid(DAY))
                .or_default() += 1;
        }
        if message.kind == MessageType::Track {
            match message.event.as_deref() {
                Some("Order Completed") => self.order(message, at),
                Some("Order Refunded") => {
                    self.lifetime_refunds += 1;
                    let cents = amount_cents(&message.properties).unwrap_or(0);
                    self.refunds.push((at, cents));
                }
                Some("Product Viewed") => self.view(message, at, now, 1),
                Some("Product Added") => self.view(message, at, now, 2),
                _ => {}
            }
        }
        self.prune(now);
    }

    fn order(&mut self, message: &Message, at: i64) {
        let cents = amount_cents(&message.properties).unwrap_or(0);
        let mut categories = Vec::new();
        if let Some(products) = message.properties.get("products").and_then(Value::as_array) {
            for product in products.iter().take(100) {
                if let Some(category) = category_of(product)
                    && !categories.contains(&category)
                {
                    categories.push(category);
                }
            }
        }
        for category in &categories {
            self.bump_category(category, 3);
        }
        self.lifetime_orders += 1;
        self.lifetime_cents = self.lifetime_cents.saturating_add(cents);
        self.first_order_at = Some(self.first_order_at.map_or(at, |t| t.min(at)));
        self.last_order_at = Some(self.last_order_at.map_or(at, |t| t.max(at)));
        self.orders.push(OrderFact {
            at,
            cents,
            categories,
        });
        self.orders.sort_by_key(|o| o.at);
    }

    fn view(&mut self, message: &Message, at: i64, now: i64, weight: u32) {
        if let Some(category) = category_of(&Value::Object(message.properties.clone())) {
            self.bump_category(&category, weight);
        }
        let product = message
            .properties
            .get("product_id")
            .or_else(|| message.properties.get("sku"))
            .and_then(|v| match v {
                Value::String(s) => Some(s.clone()),
                Value::Number(n) => Some(n.to_string()),
                _ => None,
            });
        if weight == 1
            && let Some(product) = product.filter(|p| p.len() <= 128)
            && at > now - VIEW_DAYS * DAY
        {
            self.views.push((at, product));
        }
    }

    fn bump_category(&mut self, category: &str, weight: u32) {
        if self.categories.contains_key(category) || self.categories.len() < MAX_CATEGORIES {
            *self.categories.entry(category.to_string()).or_default() += weight;
        }
    }

    fn prune(&mut self, now: i64) {
        let horizon = now - KEEP_DAYS * DAY;
        self.orders.retain(|o| o.at > horizon);
        self.refunds.retain(|r| r.0 > horizon);
        let day_horizon = horizon.div_euclid(DAY);
        for days in self.daily.values_mut() {
            days.retain(|day, _| *day > day_horizon);
        }
        self.daily.retain(|_, days| !days.is_empty());
        let view_horizon = now - VIEW_DAYS * DAY;
        self.views.retain(|v| v.0 > view_horizon);
        if self.views.len() > MAX_VIEWS {
            self.views.sort_by_key(|v| v.0);
            let excess = self.views.len() - MAX_VIEWS;
            self.views.drain(..excess);
        }
    }

    /// Folds another profile's activity in (a merge).
    pub fn absorb(&mut self, other: Activity, now: OffsetDateTime) {
        self.orders.extend(other.orders);
        self.orders.sort_by_key(|o| o.at);
        self.refunds.extend(other.refunds);
        self.lifetime_orders += other.lifetime_orders;
        self.lifetime_cents = self.lifetime_cents.saturating_add(other.lifetime_cents);
        self.lifetime_refunds += other.lifetime_refunds;
        self.first_order_at = match (self.first_order_at, other.first_order_at) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        self.last_order_at = match (self.last_order_at, other.last_order_at) {
            (Some(a), Some(b)) => Some(a.max(b)),
            (a, b) => a.or(b),
        };
        self.views.extend(other.views);
        for (category, weight) in other.categories {
            if self.categories.contains_key(&category) || self.categories.len() < MAX_CATEGORIES {
                *self.categories.entry(category).or_default() += weight;
            }
        }
        for (key, days) in other.daily {
            if self.daily.contains_key(&key) || self.daily.len() < MAX_EVENT_NAMES {
                let mine = self.daily.entry(key).or_default();
                for (day, count) in days {
                    *mine.entry(day).or_default() += count;
                }
            }
        }
        self.prune(now.unix_timestamp());
    }

    /// Events with `key` in the `days` days up to `now`.
    pub fn count_within(&self, key: &str, days: i64, now: OffsetDateTime) -> u64 {
        let today = now.unix_timestamp().div_euclid(DAY);
        self.daily.get(key).map_or(0, |counts| {
            counts
                .range(today - days + 1..=today)
                .map(|(_, c)| u64::from(*c))
                .sum()
        })
    }
}

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
    let tier = if activity.lifetime_orders == 0 {
        "ordinary"
    } else if churn_risk >= rules.churn_warning_risk {
        "churn_warning"
    } else if rfm_r + rfm_f + rfm_m >= rules.vip_rfm {
        "vip"
    } else if rfm_m >= rules.high_potential_m && rfm_f <= 2 {
        "high_potential"
    } else {
        "ordinary"
    };
    let lifecycle = match (activity.first_order_at, recency_days) {
        (None, _) | (_, None) => "acquisition",
        (Some(_), Some(r)) if r >= rules.churned_days => "churned",
        (Some(first), Some(_)) if now_s - first <= i64::from(rules.acquisition_days) * DAY => {
            "acquisition"
        }
        (Some(_), Some(_)) if churn_risk >= 0.5 => "decline",
        _ if frequency_365d >= rules.maturity_orders => "maturity",
        _ => "growth",
    };
    let clv_historical = money(activity.lifetime_cents);
    let orders_per_year = 365.0 / cycle;
    let clv_predicted = clv_historical
        + average_order_value * orders_per_year * rules.clv_years * (1.0 - churn_risk);
    let mut interests: Vec<(&String, &u32)> = activity
        .categories
        .iter()
        .filter(|(_, weight)| **weight >= rules.interest_min_weight)
        .collect();
    interests.sort_by(|a, b| b.1.cmp(a.1).then(a.0.cmp(b.0)));
    let interests = interests
        .into_iter()
        .take(rules.max_interests)
        .map(|(category, _)| category.clone())
        .collect();
    let hesitation_start = now_s - i64::from(rules.hesitating_days) * DAY;
    let mut views: BTreeMap<&str, (u32, i64)> = BTreeMap::new();
    for (at, product) in &activity.views {
        if *at > hesitation_start {
            let entry = views.entry(product.as_str()).or_insert((0, *at));
            entry.0 += 1;
            entry.1 = entry.1.min(*at);
        }
    }
    let hesitating = views.values().any(|(count, first_view)| {
        *count >= rules.hesitating_views
            && activity
                .last_order_at
                .is_none_or(|last| last <= *first_view)
    });
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

#[cfg(test)]
mod tests {
    use super::*;
    use cdp_core::segment::MessageType;
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
