//! Segment messages as the ingestion routes take them.

use std::collections::BTreeMap;

use serde::Serialize;
use utoipa::ToSchema;

use super::*;
/// Fields every Segment message may carry (the Segment spec's common fields). Other fields
/// are accepted and ignored, as Segment does.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub(crate) struct SegmentCommon {
    /// Who the user is in your systems; a message needs it or `anonymousId`.
    pub user_id: Option<String>,
    /// A device or browser id, before the user is known.
    pub anonymous_id: Option<String>,
    /// Deduplicates retries (the same id from the same source is stored once).
    pub message_id: Option<String>,
    /// When it happened (RFC 3339); default: when it arrived.
    pub timestamp: Option<Time>,
    pub sent_at: Option<Time>,
    /// Device, page, locale, IP, `consent.categoryPreferences`...
    pub context: Option<serde_json::Value>,
    pub integrations: Option<serde_json::Value>,
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub(crate) enum SegmentType {
    Identify,
    Track,
    Page,
    Screen,
    Group,
    Alias,
}

/// identify: who the user is, with traits (email, phone, name, address...).
#[derive(Serialize, ToSchema)]
pub(crate) struct SegmentIdentify {
    #[serde(flatten)]
    pub common: SegmentCommon,
    pub traits: Option<BTreeMap<String, serde_json::Value>>,
}

/// track: an action the user performed (`Order Completed` with `revenue`, `products`...).
#[derive(Serialize, ToSchema)]
pub(crate) struct SegmentTrack {
    #[serde(flatten)]
    pub common: SegmentCommon,
    pub event: String,
    pub properties: Option<BTreeMap<String, serde_json::Value>>,
}

/// page or screen: a view.
#[derive(Serialize, ToSchema)]
pub(crate) struct SegmentView {
    #[serde(flatten)]
    pub common: SegmentCommon,
    pub name: Option<String>,
    pub category: Option<String>,
    pub properties: Option<BTreeMap<String, serde_json::Value>>,
}

/// group: the user belongs to a group (account, household).
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub(crate) struct SegmentGroup {
    #[serde(flatten)]
    pub common: SegmentCommon,
    pub group_id: String,
    pub traits: Option<BTreeMap<String, serde_json::Value>>,
}

/// alias: `previousId` and `userId` are the same person.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub(crate) struct SegmentAlias {
    #[serde(flatten)]
    pub common: SegmentCommon,
    pub previous_id: String,
}

/// One message of a batch: its `type` says which.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub(crate) struct SegmentMessage {
    #[serde(rename = "type")]
    pub kind: SegmentType,
    #[serde(flatten)]
    pub common: SegmentCommon,
    pub traits: Option<BTreeMap<String, serde_json::Value>>,
    pub event: Option<String>,
    pub name: Option<String>,
    pub properties: Option<BTreeMap<String, serde_json::Value>>,
    pub group_id: Option<String>,
    pub previous_id: Option<String>,
}

/// A batch of messages, accepted or refused whole (at most 500 KB).
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub(crate) struct SegmentBatch {
    pub batch: Vec<SegmentMessage>,
    /// Applied to every message that has none of its own.
    pub context: Option<serde_json::Value>,
    pub sent_at: Option<Time>,
}
