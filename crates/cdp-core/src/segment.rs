//! Segment-spec messages: parsing, validation and clock-skew correction.
//!
//! Parsing works on `serde_json::Value` (not derive) so that every error names the field it is
//! about (`batch[3].userId`), and so that an unknown field never fails a message: Segment
//! clients send many optional fields, and we keep what we do not interpret inside `context`,
//! `properties` and `traits`. Errors never quote values (they may be personal).

use serde_json::{Map, Value};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

/// Size and shape limits of ingestion.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MessageLimits {
    /// One message, as JSON bytes (Segment: 32 KB).
    pub max_message_bytes: usize,
    /// One request body, decompressed (Segment: 500 KB).
    pub max_batch_bytes: usize,
    /// Messages in one batch.
    pub max_batch_messages: usize,
    /// Nesting of objects and arrays inside one message.
    pub max_depth: usize,
    /// userId, anonymousId, messageId, event names...
    pub max_id_bytes: usize,
}

impl Default for MessageLimits {
    fn default() -> Self {
        Self {
            max_message_bytes: 32 * 1024,
            max_batch_bytes: 500 * 1024,
            max_batch_messages: 2_500,
            max_depth: 16,
            max_id_bytes: 512,
        }
    }
}

/// The six Segment call types.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MessageType {
    Identify,
    Track,
    Page,
    Screen,
    Group,
    Alias,
}

impl MessageType {
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Identify => "identify",
            Self::Track => "track",
            Self::Page => "page",
            Self::Screen => "screen",
            Self::Group => "group",
            Self::Alias => "alias",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        Some(match text {
            "identify" => Self::Identify,
            "track" => Self::Track,
            "page" => Self::Page,
            "screen" => Self::Screen,
            "group" => Self::Group,
            "alias" => Self::Alias,
            _ => return None,
        })
    }
}

/// A validated message. Everything personal stays inside; it is sealed before storage.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Message {
    #[serde(rename = "type")]
    pub kind: MessageType,
    pub message_id: String,
    /// `true` when the client sent no messageId and the server made one up (no de-duplication).
    #[serde(default)]
    pub generated_message_id: bool,
    pub user_id: Option<String>,
    pub anonymous_id: Option<String>,
    /// `alias`: the id being linked to `user_id`.
    pub previous_id: Option<String>,
    pub group_id: Option<String>,
    /// `track`: the event name.
    pub event: Option<String>,
    /// `page` / `screen`: the name.
    pub name: Option<String>,
    /// Event time, corrected for client clock skew.
    #[serde(with = "time::serde::rfc3339")]
    pub timestamp: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    pub received_at: OffsetDateTime,
    /// `identify`/`group` traits, or `context.traits` for the other types.
    pub traits: Map<String, Value>,
    pub properties: Map<String, Value>,
    pub context: Map<String, Value>,
}

/// What is wrong with a message, and where.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {problem}")]
pub struct FieldError {
    /// JSON path, e.g. `batch[3].userId`.
    pub field: String,
    pub problem: String,
    /// Index of the message in its batch.
    pub index: Option<usize>,
}

impl FieldError {
    fn new(field: impl Into<String>, problem: impl Into<String>) -> Self {
        Self {
            field: field.into(),
            problem: problem.into(),
            index: None,
        }
    }

    fn in_batch(mut self, index: usize) -> Self {
        self.field = format!("batch[{index}].{}", self.field);
        self.index = Some(index);
        self
    }
}

/// A parsed request body: one message or a batch, plus a write key given in the body.
#[derive(Debug, Clone, PartialEq)]
pub struct ParsedBody {
    pub messages: Vec<Message>,
    pub write_key: Option<String>,
}

fn depth(value: &Value) -> usize {
    match value {
        Value::Object(map) => 1 + map.values().map(depth).max().unwrap_or(0),
        Value::Array(items) => 1 + items.iter().map(depth).max().unwrap_or(0),
        _ => 0,
    }
}

fn parse_time(value: &Value, field: &str) -> Result<Option<OffsetDateTime>, FieldError> {
    match value {
        Value::Null => Ok(None),
        Value::String(text) => OffsetDateTime::parse(text, &Rfc3339)
            .map(Some)
            .map_err(|_| FieldError::new(field, "must be an ISO-8601 date-time with a time zone")),
        _ => Err(FieldError::new(
            field,
            "must be a string (ISO-8601 date-time)",
        )),
    }
}

fn optional_id(
    object: &Map<String, Value>,
    field: &str,
    limits: &MessageLimits,
) -> Result<Option<String>, FieldError> {
    optional_string(
        object,
        field,
        limits,
        matches!(field, "userId" | "anonymousId"),
    )
}

fn optional_string(
    object: &Map<String, Value>,
    field: &str,
    limits: &MessageLimits,
    allow_integer: bool,
) -> Result<Option<String>, FieldError> {
    match object.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(text)) if text.len() > limits.max_id_bytes => Err(FieldError::new(
            field,
            format!("is longer than {} bytes", limits.max_id_bytes),
        )),
        Some(Value::String(text)) if text.trim().is_empty() => Ok(None),
        Some(Value::String(text)) => Ok(Some(text.clone())),
        // Segment libraries stringify numeric ids; accept integers the same way.
        Some(Value::Number(number)) if allow_integer && (number.is_i64() || number.is_u64()) => {
            Ok(Some(number.to_string()))
        }
        Some(_) => Err(FieldError::new(field, "must be a string")),
    }
}

fn optional_object(
    object: &Map<String, Value>,
    field: &str,
) -> Result<Map<String, Value>, FieldError> {
    match object.get(field) {
        None | Some(Value::Null) => Ok(Map::new()),
        Some(Value::Object(map)) => Ok(map.clone()),
        Some(_) => Err(FieldError::new(field, "must be an object")),
    }
}

/// Parses one message. `implied` is the type given by the route (`/v1/track`); batch members
/// carry their own `type`. `batch_sent_at` is the batch's `sentAt`, used when the message has none.
// Long by design: one pass over the Segment spec's common fields in the spec's order, each
// with its limit and its error naming the field.
pub fn parse_message(
    value: &Value,
    implied: Option<MessageType>,
    batch_sent_at: Option<OffsetDateTime>,
    received_at: OffsetDateTime,
    limits: &MessageLimits,
) -> Result<Message, FieldError> {
    let Value::Object(object) = value else {
        return Err(FieldError::new("(message)", "must be a JSON object"));
    };
    if depth(value) > limits.max_depth {
        return Err(FieldError::new(
            "(message)",
            format!(
                "nests objects/arrays deeper than {} levels",
                limits.max_depth
            ),
        ));
    }
    let kind = match (object.get("type"), implied) {
        (None | Some(Value::Null), Some(kind)) => kind,
        (Some(Value::String(text)), implied) => {
            let kind = MessageType::parse(text).ok_or_else(|| {
                FieldError::new(
                    "type",
                    "must be one of identify, track, page, screen, group, alias",
                )
            })?;
            if implied.is_some_and(|implied| implied != kind) {
                return Err(FieldError::new("type", "does not match the endpoint"));
            }
            kind
        }
        (None | Some(Value::Null), None) => return Err(FieldError::new("type", "is required")),
        (Some(_), _) => return Err(FieldError::new("type", "must be a string")),
    };
    let user_id = optional_id(object, "userId", limits)?;
    let anonymous_id = optional_id(object, "anonymousId", limits)?;
    if user_id.is_none() && anonymous_id.is_none() {
        return Err(FieldError::new(
            "userId",
            "either userId or anonymousId is required",
        ));
    }
    let (message_id, generated_message_id) = match optional_id(object, "messageId", limits)? {
        Some(id) => (id, false),
        None => (String::new(), true),
    };
    let previous_id = optional_id(object, "previousId", limits)?;
    let group_id = optional_id(object, "groupId", limits)?;
    let event = optional_id(object, "event", limits)?;
    let name = optional_id(object, "name", limits)?;
    match kind {
        MessageType::Track if event.is_none() => {
            return Err(FieldError::new("event", "is required for track"));
        }
        MessageType::Alias if previous_id.is_none() => {
            return Err(FieldError::new("previousId", "is required for alias"));
        }
        MessageType::Alias if user_id.is_none() => {
            return Err(FieldError::new("userId", "is required for alias"));
        }
        MessageType::Group if group_id.is_none() => {
            return Err(FieldError::new("groupId", "is required for group"));
        }
        _ => {}
    }
    let context = optional_object(object, "context")?;
    let properties = optional_object(object, "properties")?;
    let context_traits = match context.get("traits") {
        None | Some(Value::Null) => Map::new(),
        Some(Value::Object(map)) => map.clone(),
        Some(_) => return Err(FieldError::new("context.traits", "must be an object")),
    };
    let traits = match kind {
        // RudderStack's libraries send identify traits in context.traits only; Segment's at the
        // root. Take both, the root winning where they disagree.
        MessageType::Identify | MessageType::Group => {
            let mut traits = context_traits;
            traits.extend(optional_object(object, "traits")?);
            traits
        }
        _ => context_traits,
    };
    let sent_at =
        parse_time(object.get("sentAt").unwrap_or(&Value::Null), "sentAt")?.or(batch_sent_at);
    let original = match parse_time(
        object.get("originalTimestamp").unwrap_or(&Value::Null),
        "originalTimestamp",
    )? {
        Some(original) => Some(original),
        None => parse_time(object.get("timestamp").unwrap_or(&Value::Null), "timestamp")?,
    };
    let timestamp = corrected_timestamp(original, sent_at, received_at);
    Ok(Message {
        kind,
        message_id,
        generated_message_id,
        user_id,
        anonymous_id,
        previous_id,
        group_id,
        event,
        name,
        timestamp,
        received_at,
        traits,
        properties,
        context,
    })
}

/// Event times accepted as given: from the Unix epoch to a day after receipt. An event time
/// outside (after the skew correction) is replaced by the time of receipt: a clock that far
/// off says nothing about when the event happened, and a message is not refused for it
/// (an SDK drops a refused batch, losing its other events too). docs/API.md, "Event times".
pub const EARLIEST_EVENT_TIME: OffsetDateTime = time::macros::datetime!(1970-01-01 00:00 UTC);

/// How far after its receipt an event time may lie (clocks a little ahead, time zones).
pub const LATEST_EVENT_TIME_AHEAD: time::Duration = time::Duration::days(1);

/// Segment's clock-skew correction: the client's clock may be wrong, but the interval between
/// the event and the upload (`sentAt - originalTimestamp`) is measured on that same clock, so
/// `receivedAt - (sentAt - originalTimestamp)` is the event time on the server's clock.
/// Without `sentAt` the client's time is taken as given (server-side libraries, imports).
/// Either way a time outside [`EARLIEST_EVENT_TIME`] .. receipt + [`LATEST_EVENT_TIME_AHEAD`]
/// (or one the arithmetic cannot represent) becomes the time of receipt.
pub fn corrected_timestamp(
    original: Option<OffsetDateTime>,
    sent_at: Option<OffsetDateTime>,
    received_at: OffsetDateTime,
) -> OffsetDateTime {
    let corrected = match (original, sent_at) {
        // Both times lie within years 1-9999, so their difference is representable; the
        // subtraction from the time of receipt may leave the calendar's range.
        (Some(original), Some(sent_at)) => received_at.checked_sub(sent_at - original),
        (Some(original), None) => Some(original),
        (None, _) => None,
    };
    corrected
        .filter(|time| {
            *time >= EARLIEST_EVENT_TIME
                && received_at
                    .checked_add(LATEST_EVENT_TIME_AHEAD)
                    .is_none_or(|latest| *time <= latest)
        })
        .unwrap_or(received_at)
}

/// Parses a request body: a single message (`implied` set by the route) or a batch
/// (`{"batch": [...], "sentAt"?, "context"?, "writeKey"?}`). Any invalid message refuses the
/// whole body: the error names the message's index and field.
pub fn parse_body(
    body: &[u8],
    implied: Option<MessageType>,
    received_at: OffsetDateTime,
    limits: &MessageLimits,
) -> Result<ParsedBody, FieldError> {
    if body.len() > limits.max_batch_bytes {
        return Err(FieldError::new(
            "(body)",
            format!("is larger than {} bytes", limits.max_batch_bytes),
        ));
    }
    let text =
        std::str::from_utf8(body).map_err(|_| FieldError::new("(body)", "is not valid UTF-8"))?;
    match implied {
        Some(kind) => {
            if body.len() > limits.max_message_bytes {
                return Err(FieldError::new(
                    "(message)",
                    format!("is larger than {} bytes", limits.max_message_bytes),
                ));
            }
            let value: Value = serde_json::from_str(text).map_err(json_error)?;
            let write_key = body_write_key(&value)?;
            let message = parse_message(&value, Some(kind), None, received_at, limits)?;
            Ok(ParsedBody {
                messages: vec![message],
                write_key,
            })
        }
        None => {
            #[derive(serde::Deserialize)]
            struct RawBatch<'a> {
                #[serde(borrow)]
                batch: Option<Vec<&'a serde_json::value::RawValue>>,
                #[serde(default, rename = "sentAt")]
                sent_at: Value,
                #[serde(default)]
                context: Value,
                #[serde(default, rename = "writeKey")]
                write_key: Value,
            }
            let raw: RawBatch<'_> = serde_json::from_str(text).map_err(json_error)?;
            let Some(batch) = raw.batch else {
                return Err(FieldError::new(
                    "batch",
                    "is required (an array of messages)",
                ));
            };
            if batch.is_empty() {
                return Err(FieldError::new("batch", "is empty"));
            }
            if batch.len() > limits.max_batch_messages {
                return Err(FieldError::new(
                    "batch",
                    format!("holds more than {} messages", limits.max_batch_messages),
                ));
            }
            let sent_at = parse_time(&raw.sent_at, "sentAt")?;
            let write_key = match raw.write_key {
                Value::Null => None,
                Value::String(key) => Some(key),
                _ => return Err(FieldError::new("writeKey", "must be a string")),
            };
            let shared_context = match raw.context {
                Value::Null => None,
                Value::Object(map) => Some(map),
                _ => return Err(FieldError::new("context", "must be an object")),
            };
            let mut messages = Vec::with_capacity(batch.len());
            for (index, raw_message) in batch.iter().enumerate() {
                if raw_message.get().len() > limits.max_message_bytes {
                    return Err(FieldError::new(
                        "(message)",
                        format!("is larger than {} bytes", limits.max_message_bytes),
                    )
                    .in_batch(index));
                }
                let value: Value = serde_json::from_str(raw_message.get())
                    .map_err(|e| json_error(e).in_batch(index))?;
                let mut message = parse_message(&value, None, sent_at, received_at, limits)
                    .map_err(|e| e.in_batch(index))?;
                // Batch-level context fills in what the message's own context lacks.
                if let Some(shared) = &shared_context {
                    for (key, value) in shared {
                        message
                            .context
                            .entry(key.clone())
                            .or_insert_with(|| value.clone());
                    }
                }
                messages.push(message);
            }
            Ok(ParsedBody {
                messages,
                write_key,
            })
        }
    }
}

fn body_write_key(value: &Value) -> Result<Option<String>, FieldError> {
    match value.get("writeKey") {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(key)) => Ok(Some(key.clone())),
        Some(_) => Err(FieldError::new("writeKey", "must be a string")),
    }
}

fn json_error(error: serde_json::Error) -> FieldError {
    // Line and column only: serde's message can quote the offending input.
    let problem = match error.classify() {
        serde_json::error::Category::Io | serde_json::error::Category::Eof => "ends too early",
        serde_json::error::Category::Syntax => "is not valid JSON",
        serde_json::error::Category::Data => "has a field of the wrong type",
    };
    FieldError::new(
        "(body)",
        format!(
            "{problem} (line {}, column {})",
            error.line(),
            error.column()
        ),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    fn now() -> OffsetDateTime {
        datetime!(2026-11-22 12:00:00 UTC)
    }

    fn parse(body: &str, implied: Option<MessageType>) -> Result<ParsedBody, FieldError> {
        parse_body(body.as_bytes(), implied, now(), &MessageLimits::default())
    }

    /// Any time `time` can parse from RFC 3339 (years 0-9999, any offset).
    fn any_time() -> impl proptest::strategy::Strategy<Value = OffsetDateTime> {
        use proptest::prelude::*;
        let first = datetime!(0000-01-01 00:00 UTC).unix_timestamp();
        let last = datetime!(9999-12-31 23:59:59 UTC).unix_timestamp();
        (first..=last, 0u32..1_000_000_000).prop_map(|(seconds, nanos)| {
            OffsetDateTime::from_unix_timestamp(seconds).unwrap()
                + time::Duration::nanoseconds(i64::from(nanos))
        })
    }

    proptest::proptest! {
        /// Over the whole range RFC 3339 can name, the correction never panics and always
        /// gives a time inside the accepted window (which the stores can encode); inside the
        /// window it is Segment's arithmetic exactly.
        #[test]
        fn event_times_stay_in_the_accepted_window(
            original in proptest::option::of(any_time()),
            sent_at in proptest::option::of(any_time()),
            received_at in any_time(),
        ) {
            let time = corrected_timestamp(original, sent_at, received_at);
            let latest = received_at.checked_add(LATEST_EVENT_TIME_AHEAD);
            proptest::prop_assert!(time == received_at || time >= EARLIEST_EVENT_TIME);
            proptest::prop_assert!(latest.is_none_or(|latest| time <= latest));
            let exact = match (original, sent_at) {
                (Some(original), Some(sent_at)) => received_at.checked_sub(sent_at - original),
                (Some(original), None) => Some(original),
                (None, _) => None,
            };
            if let Some(exact) = exact.filter(|t| *t >= EARLIEST_EVENT_TIME && latest.is_none_or(|l| *t <= l)) {
                proptest::prop_assert_eq!(time, exact);
            } else {
                proptest::prop_assert_eq!(time, received_at);
            }
        }
    }

    #[test]
    fn absurd_client_clocks_give_the_time_of_receipt() {
        for (timestamp, sent_at) in [
            ("9999-12-31T23:59:59Z", Some("0001-01-01T00:00:00Z")),
            ("0001-01-01T00:00:00Z", Some("9999-12-31T23:59:59Z")),
            ("9999-12-31T23:59:59Z", None),
            ("0001-01-01T00:00:00Z", None),
            ("1969-12-31T23:59:59Z", None),
        ] {
            let sent_at = sent_at.map_or(String::new(), |s| format!(r#","sentAt":"{s}""#));
            let body =
                format!(r#"{{"userId":"u1","event":"e","timestamp":"{timestamp}"{sent_at}}}"#);
            let message = &parse(&body, Some(MessageType::Track)).unwrap().messages[0];
            assert_eq!(message.timestamp, now(), "{body}");
        }
        // A clock a few years off, with a sane interval, is corrected as Segment does.
        let body = r#"{"userId":"u1","event":"e","timestamp":"2001-01-01T00:00:00Z","sentAt":"2001-01-01T00:01:00Z"}"#;
        let message = &parse(body, Some(MessageType::Track)).unwrap().messages[0];
        assert_eq!(message.timestamp, now() - time::Duration::minutes(1));
        // Imports keep their history; an event up to a day ahead is kept.
        let body = r#"{"userId":"u1","event":"e","timestamp":"1999-05-01T08:00:00+08:00"}"#;
        let message = &parse(body, Some(MessageType::Track)).unwrap().messages[0];
        assert_eq!(message.timestamp, datetime!(1999-05-01 00:00 UTC));
    }

    #[test]
    fn track_with_skew_correction() {
        let body = r#"{"userId":"u1","event":"Order Completed","messageId":"m1",
            "timestamp":"2026-11-22T11:00:00Z","sentAt":"2026-11-22T11:00:10Z",
            "properties":{"revenue":12.5},"context":{"traits":{"email":"a@b.cn"}}}"#;
        let parsed = parse(body, Some(MessageType::Track)).unwrap();
        let message = &parsed.messages[0];
        assert_eq!(message.kind, MessageType::Track);
        // The client clock ran an hour behind: the event happened 10 s before receipt.
        assert_eq!(message.timestamp, datetime!(2026-11-22 11:59:50 UTC));
        assert_eq!(message.traits["email"], "a@b.cn");
    }

    #[test]
    fn identify_traits_come_from_the_root_and_from_context() {
        let body = r#"{"userId":"u1","traits":{"plan":"gold"},"context":{"traits":{"email":"a@b.cn","plan":"silver"}}}"#;
        let message = &parse(body, Some(MessageType::Identify)).unwrap().messages[0];
        assert_eq!(message.traits["email"], "a@b.cn");
        assert_eq!(message.traits["plan"], "gold");
    }

    #[test]
    fn batch_errors_name_index_and_field() {
        let body =
            r#"{"batch":[{"type":"track","userId":"u","event":"e"},{"type":"track","event":"e"}]}"#;
        let error = parse(body, None).unwrap_err();
        assert_eq!(error.index, Some(1));
        assert_eq!(error.field, "batch[1].userId");
        let error = parse(r#"{"batch":[{"type":"bogus","userId":"u"}]}"#, None).unwrap_err();
        assert_eq!(error.field, "batch[0].type");
        let error = parse(
            r#"{"batch":[{"type":"identify","userId":"u","traits":[1]}]}"#,
            None,
        )
        .unwrap_err();
        assert_eq!(error.field, "batch[0].traits");
        let error = parse(r#"{"batch":[{"type":"identify","userId":{"a":1}}]}"#, None).unwrap_err();
        assert!(error.to_string().contains("userId: must be a string"));
    }

    #[test]
    fn malformed_bodies() {
        assert!(
            parse("{", Some(MessageType::Track))
                .unwrap_err()
                .problem
                .contains("ends too early")
        );
        assert!(
            parse("nope", Some(MessageType::Track))
                .unwrap_err()
                .problem
                .contains("not valid JSON")
        );
        let error = parse_body(
            &[0xff, 0xfe],
            Some(MessageType::Track),
            now(),
            &MessageLimits::default(),
        )
        .unwrap_err();
        assert!(error.problem.contains("UTF-8"));
        let deep = format!(
            "{}{}",
            "{\"a\":".repeat(100),
            "1".to_string() + &"}".repeat(100)
        );
        let body = format!(r#"{{"userId":"u","traits":{deep}}}"#);
        assert!(
            parse(&body, Some(MessageType::Identify))
                .unwrap_err()
                .problem
                .contains("deeper")
        );
        let big = format!(
            r#"{{"userId":"u","traits":{{"x":"{}"}}}}"#,
            "a".repeat(40_000)
        );
        assert!(
            parse(&big, Some(MessageType::Identify))
                .unwrap_err()
                .problem
                .contains("larger than")
        );
    }

    #[test]
    fn errors_never_quote_values() {
        let error = parse(
            r#"{"userId":"secret@example.com","timestamp":"secret-time"}"#,
            Some(MessageType::Identify),
        )
        .unwrap_err();
        assert!(!error.to_string().contains("secret"), "{error}");
        let error = parse(
            r#"{"userId": secret@example.com}"#,
            Some(MessageType::Identify),
        )
        .unwrap_err();
        assert!(!error.to_string().contains("secret"), "{error}");
    }
}
