//! What comes back from a campaign: delivery and engagement events from the processors that
//! sent it (Segment's e-mail and push specs, and the same shape for SMS and WeChat), naming the
//! campaign in `properties.campaign_id`; and unsubscribes, which are consent withdrawals.

use cdp_core::segment::{Message, MessageType};
use cdp_policy::ConsentStatus;
use serde_json::Value;

use crate::write::message::ConsentSignal;
use crate::{Engine, EngineError};

/// A step of a member's engagement with a send.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Engagement {
    Delivered,
    Opened,
    Clicked,
    Unsubscribed,
}

/// The engagement events, by their Segment names (e-mail and push from Segment's specs; SMS
/// and WeChat in the same shape). A tapped notification is opened and clicked at once.
pub const ENGAGEMENT_EVENTS: [(&str, Engagement); 12] = [
    ("Email Delivered", Engagement::Delivered),
    ("Push Notification Received", Engagement::Delivered),
    ("SMS Delivered", Engagement::Delivered),
    ("WeChat Message Delivered", Engagement::Delivered),
    ("Email Opened", Engagement::Opened),
    ("WeChat Message Opened", Engagement::Opened),
    ("Email Link Clicked", Engagement::Clicked),
    ("Push Notification Tapped", Engagement::Clicked),
    ("SMS Link Clicked", Engagement::Clicked),
    ("WeChat Message Clicked", Engagement::Clicked),
    ("Unsubscribed", Engagement::Unsubscribed),
    ("Email Marked as Spam", Engagement::Unsubscribed),
];

/// The engagement an event reports, by its Segment name.
pub fn engagement_of(event: &str) -> Option<Engagement> {
    ENGAGEMENT_EVENTS
        .iter()
        .find(|(name, _)| *name == event)
        .map(|(_, engagement)| *engagement)
}

/// The campaign an event names (`properties.campaign_id`).
pub fn campaign_of(properties: &serde_json::Map<String, Value>) -> Option<&str> {
    properties
        .get("campaign_id")
        .and_then(Value::as_str)
        .filter(|id| id.len() == 20 && id.starts_with("cmp_"))
}

impl Engine {
    /// An `Unsubscribed` event as a consent withdrawal, recorded with the event (so at once,
    /// and durable when the event is): for the purpose of the campaign it names, else the
    /// purpose it names, else the marketing purpose of its channel, else all marketing (an
    /// objection whose scope is unknown is taken at its widest).
    pub(crate) fn unsubscribe_signal(
        &self,
        message: &Message,
    ) -> Result<Option<ConsentSignal>, EngineError> {
        // A spam complaint is an objection too.
        if message.kind != MessageType::Track
            || !matches!(
                message.event.as_deref(),
                Some("Unsubscribed" | "Email Marked as Spam")
            )
        {
            return Ok(None);
        }
        let purposes = &self.policies().taxonomy.purposes;
        let properties = &message.properties;
        let mut evidence = serde_json::json!({ "event": message.event });
        let campaign = match campaign_of(properties) {
            Some(id) => match self.campaign(id) {
                Ok(record) => Some(record),
                Err(EngineError::NotFound(_)) => None,
                Err(error) => return Err(error),
            },
            None => None,
        };
        let named = properties
            .get("purpose")
            .and_then(Value::as_str)
            .filter(|p| purposes.contains_key(*p));
        let channel = properties
            .get("channel")
            .and_then(Value::as_str)
            .map(|c| format!("marketing.{}", c.trim().to_ascii_lowercase()))
            .filter(|p| purposes.contains_key(p));
        let purpose = match (&campaign, named, channel) {
            (Some(record), _, _) => {
                evidence["campaign_id"] = Value::String(record.id.clone());
                record.purpose.clone()
            }
            (None, Some(named), _) => named.to_string(),
            (None, None, Some(channel)) => channel,
            (None, None, None) => "marketing".to_string(),
        };
        // Every unsubscribe is recorded, also a second one after a new grant.
        evidence["message_id"] = Value::String(message.message_id.clone());
        Ok(Some(ConsentSignal {
            via: "ingest:unsubscribed",
            purposes: vec![(purpose, ConsentStatus::Withdrawn)],
            evidence,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn engagement_events_by_their_spec_names() {
        assert_eq!(engagement_of("Email Opened"), Some(Engagement::Opened));
        assert_eq!(
            engagement_of("Push Notification Tapped"),
            Some(Engagement::Clicked)
        );
        assert_eq!(engagement_of("SMS Delivered"), Some(Engagement::Delivered));
        assert_eq!(engagement_of("Order Completed"), None);
    }
}
