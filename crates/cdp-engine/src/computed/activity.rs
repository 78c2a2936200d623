//! What a profile keeps of its events for computed traits: orders, refunds, product views,
//! category weights and daily event counts, updated as each event is applied, pruned to a
//! window and folded into lifetime totals beyond it.

use std::collections::BTreeMap;

use cdp_core::segment::{Message, MessageType};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use time::OffsetDateTime;

use super::DAY;

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
