//! The ingestion protocol of Sensors Analytics (神策) SDKs (`sa-sdk-javascript`,
//! `sa-sdk-miniprogram`, `sensorsanalyticssdk` for Python, `sa-sdk-node`), turned into Segment
//! messages, so that they go through the same validation, limits, identity resolution,
//! consent, de-duplication and durability as everything else.
//!
//! **Transport.** `data` (one record) or `data_list` (an array), each base64 of JSON,
//! optionally gzipped (`gzip=1`, or recognised by gzip's magic bytes), in a form-encoded POST
//! body (whatever its content type: `sendBeacon` says `text/plain`) or in the query string of
//! a GET (`/sa.gif`, the web SDK's image requests).
//!
//! **Records.** `type` is `track` (`$pageview` becomes a page, `$AppViewScreen` and
//! `$MPViewScreen` a screen), `track_signup` (an alias of `original_id` to the login id,
//! then the `$SignUp` event), `profile_set`, `profile_set_once`, `profile_unset` and
//! `profile_delete` (identify; the last three through `context.cdp`: `setOnce`, `unset`,
//! `unsetAll`, which touch only traits this source set), `track_id_bind` (an identify that
//! carries every identity: they become one person). Ignored and counted: `track_id_unbind`
//! (splitting a person is an operator's decision, `POST /v1/profiles/{id}/split`: a write
//! key is public), `profile_increment` / `profile_append`, `item_set` / `item_delete`
//! (catalogue items, not people).
//!
//! **Identities.** `login_id`, `$identity_login_id`, or `distinct_id` with
//! `properties.$is_login_id` -> `userId`; `anonymous_id`, `$identity_anonymous_id`,
//! `$identity_cookie_id`, `$identity_mp_id`, or else `distinct_id` -> `anonymousId`;
//! `$identity_mp_<appid>_openid` and `$identity_mp_openid` -> `wechat_openid` (scoped by
//! that app id, or `$app_id`), `$identity_mp_unionid` -> `wechat_unionid`,
//! `$identity_mobile` / `$identity_phone` -> `phone`, `$identity_email` -> `email`, device
//! identities -> `device_id` / `advertising_id`, any other `$identity_<type>` -> that type:
//! all as `context.externalIds`.

use std::io::Read as _;

use base64::Engine as _;
use cdp_core::segment::{FieldError, Message, MessageLimits, parse_message};
use serde_json::{Map, Value, json};
use time::OffsetDateTime;

/// What a request held: its messages, and how many records were ignored (by type).
#[derive(Debug, Default)]
pub struct Converted {
    pub messages: Vec<Message>,
    pub ignored: usize,
}

/// A record or parameter that cannot be read, named by where it is (`data_list[3].type`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SensorsError {
    pub field: String,
    pub problem: String,
}

impl SensorsError {
    fn new(field: impl Into<String>, problem: impl Into<String>) -> Self {
        Self {
            field: field.into(),
            problem: problem.into(),
        }
    }
}

/// The records of a request from its parameters (query string and form body together).
pub fn records(
    params: &[(String, String)],
    limits: &MessageLimits,
) -> Result<Vec<Value>, SensorsError> {
    let find = |name: &str| {
        params
            .iter()
            .find(|(key, _)| key == name)
            .map(|(_, value)| value.as_str())
    };
    let (name, encoded, list) = match (find("data_list"), find("data")) {
        (Some(encoded), _) => ("data_list", encoded, true),
        (None, Some(encoded)) => ("data", encoded, false),
        (None, None) => {
            return Err(SensorsError::new(
                "data",
                "is required: base64 of a JSON record (`data`) or of an array of them (`data_list`)",
            ));
        }
    };
    // A `+` of the base64 alphabet that the sender did not percent-encode arrives as a space.
    let cleaned: String = encoded
        .chars()
        .filter(|c| *c != '\n' && *c != '\r')
        .map(|c| if c == ' ' { '+' } else { c })
        .collect();
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(cleaned.trim_end_matches('=').to_string() + padding(&cleaned))
        .map_err(|_| SensorsError::new(name, "is not base64"))?;
    let json = if bytes.starts_with(&[0x1f, 0x8b]) || find("gzip") == Some("1") {
        let mut decoded = Vec::new();
        flate2::read::MultiGzDecoder::new(&bytes[..])
            .take(limits.max_batch_bytes as u64 + 1)
            .read_to_end(&mut decoded)
            .map_err(|_| SensorsError::new(name, "is not gzip (gzip=1)"))?;
        decoded
    } else {
        bytes
    };
    if json.len() > limits.max_batch_bytes {
        return Err(SensorsError::new(
            name,
            format!("holds more than {} bytes", limits.max_batch_bytes),
        ));
    }
    let value: Value = serde_json::from_slice(&json)
        .map_err(|error| SensorsError::new(name, format!("is not JSON: {}", error_kind(&error))))?;
    let records = match (value, list) {
        (Value::Array(items), _) => items,
        (object @ Value::Object(_), false) => vec![object],
        _ => {
            return Err(SensorsError::new(
                name,
                "must hold a JSON object (data) or an array of them (data_list)",
            ));
        }
    };
    if records.is_empty() {
        return Err(SensorsError::new(name, "is empty"));
    }
    if records.len() > limits.max_batch_messages {
        return Err(SensorsError::new(
            name,
            format!("holds more than {} records", limits.max_batch_messages),
        ));
    }
    Ok(records)
}

/// The padding a base64 text without it needs (some senders strip it).
fn padding(text: &str) -> &'static str {
    match text.trim_end_matches('=').len() % 4 {
        2 => "==",
        3 => "=",
        _ => "",
    }
}

/// Never quotes the input: a JSON error's category and position only.
fn error_kind(error: &serde_json::Error) -> String {
    format!(
        "{:?} at line {} column {}",
        error.classify(),
        error.line(),
        error.column()
    )
}

/// The Segment messages of `records`, parsed as the Segment routes parse theirs.
pub fn convert(
    records: &[Value],
    received_at: OffsetDateTime,
    limits: &MessageLimits,
) -> Result<Converted, SensorsError> {
    let mut out = Converted::default();
    for (index, record) in records.iter().enumerate() {
        let at = |field: &str| format!("data_list[{index}].{field}");
        let segment = to_segment(record)
            .map_err(|(field, problem)| SensorsError::new(at(&field), problem))?;
        match segment {
            None => out.ignored += 1,
            Some(messages) => {
                for message in messages {
                    let parsed = parse_message(&message, None, None, received_at, limits).map_err(
                        |error: FieldError| SensorsError::new(at(&error.field), error.problem),
                    )?;
                    out.messages.push(parsed);
                }
            }
        }
    }
    Ok(out)
}

fn text(value: Option<&Value>) -> Option<String> {
    match value {
        Some(Value::String(text)) if !text.trim().is_empty() => Some(text.clone()),
        Some(Value::Number(number)) => Some(number.to_string()),
        _ => None,
    }
}

/// Properties the protocol reserves (`$url`, `$os`...) that Segment keeps in `context`.
fn context_of(
    properties: &Map<String, Value>,
    lib: Option<&Map<String, Value>>,
) -> Map<String, Value> {
    let get = |name: &str| properties.get(name).filter(|v| !v.is_null()).cloned();
    let mut context = Map::new();
    let mut put = |path: &[&str], value: Option<Value>| {
        let Some(value) = value else { return };
        let mut node = &mut context;
        for key in &path[..path.len() - 1] {
            let entry = node
                .entry(key.to_string())
                .or_insert_with(|| Value::Object(Map::new()));
            // Every inner node is made here as an object; anything else is left alone.
            let Some(inner) = entry.as_object_mut() else {
                return;
            };
            node = inner;
        }
        node.insert(path[path.len() - 1].to_string(), value);
    };
    put(&["page", "url"], get("$url"));
    put(&["page", "title"], get("$title"));
    put(&["page", "referrer"], get("$referrer"));
    put(&["page", "path"], get("$url_path"));
    put(&["ip"], get("$ip"));
    put(&["userAgent"], get("$user_agent"));
    put(&["os", "name"], get("$os"));
    put(&["os", "version"], get("$os_version"));
    put(&["device", "model"], get("$model"));
    put(&["device", "manufacturer"], get("$manufacturer"));
    put(&["device", "id"], get("$device_id"));
    put(&["app", "version"], get("$app_version"));
    put(&["screen", "width"], get("$screen_width"));
    put(&["screen", "height"], get("$screen_height"));
    let library = lib
        .and_then(|lib| text(lib.get("$lib")))
        .or_else(|| text(properties.get("$lib")));
    let version = lib
        .and_then(|lib| text(lib.get("$lib_version")))
        .or_else(|| text(properties.get("$lib_version")));
    if let Some(library) = library {
        put(
            &["library", "name"],
            Some(json!(format!("sensors-{library}"))),
        );
        put(&["library", "version"], version.map(Value::String));
    }
    // The other reserved properties, kept apart from the event's own.
    let reserved: Map<String, Value> = properties
        .iter()
        .filter(|(name, _)| name.starts_with('$'))
        .filter(|(name, _)| {
            !matches!(
                name.as_str(),
                "$url"
                    | "$title"
                    | "$referrer"
                    | "$url_path"
                    | "$ip"
                    | "$user_agent"
                    | "$os"
                    | "$os_version"
                    | "$model"
                    | "$manufacturer"
                    | "$device_id"
                    | "$app_version"
                    | "$screen_width"
                    | "$screen_height"
                    | "$lib"
                    | "$lib_version"
                    | "$is_login_id"
            )
        })
        .map(|(name, value)| (name.clone(), value.clone()))
        .collect();
    if !reserved.is_empty() {
        context.insert("sensors".into(), Value::Object(reserved));
    }
    context
}

/// A record's identities as Segment ids: (userId, anonymousId, externalIds).
fn identities(
    record: &Map<String, Value>,
    properties: &Map<String, Value>,
) -> (Option<String>, Option<String>, Vec<Value>) {
    let empty = Map::new();
    let identities = record
        .get("identities")
        .and_then(Value::as_object)
        .unwrap_or(&empty);
    let distinct_id = text(record.get("distinct_id"));
    let is_login = properties.get("$is_login_id") == Some(&Value::Bool(true));
    let user_id = text(identities.get("$identity_login_id"))
        .or_else(|| text(record.get("login_id")))
        .or_else(|| distinct_id.clone().filter(|_| is_login));
    let anonymous_id = text(record.get("anonymous_id"))
        .or_else(|| text(identities.get("$identity_anonymous_id")))
        .or_else(|| text(identities.get("$identity_cookie_id")))
        .or_else(|| text(identities.get("$identity_mp_id")))
        .or_else(|| distinct_id.filter(|id| !is_login && user_id.as_deref() != Some(id)));
    let app = text(properties.get("$app_id")).unwrap_or_else(|| "sensors".into());
    let mut external = Vec::new();
    for (key, value) in identities {
        let Some(id) = text(Some(value)) else {
            continue;
        };
        // The mini-program SDK names an OpenID by its app: `$identity_mp_<appid>_openid`.
        if let Some(app) = key
            .strip_prefix("$identity_mp_")
            .and_then(|rest| rest.strip_suffix("_openid"))
            .filter(|app| !app.is_empty())
        {
            external.push(json!({"type": "wechat_openid", "id": id, "collection": app}));
            continue;
        }
        let kind = match key.as_str() {
            // The mini-program's own random id (`$identity_mp_id`) is an anonymous id.
            "$identity_login_id"
            | "$identity_anonymous_id"
            | "$identity_cookie_id"
            | "$identity_mp_id" => continue,
            "$identity_mp_openid" => {
                external.push(json!({"type": "wechat_openid", "id": id, "collection": app}));
                continue;
            }
            "$identity_mp_unionid" | "$identity_unionid" => "wechat_unionid",
            "$identity_mobile" | "$identity_phone" => "phone",
            "$identity_email" => "email",
            "$identity_android_id" | "$identity_android_uuid" | "$identity_idfv" => "device_id",
            "$identity_idfa" | "$identity_android_oaid" => "advertising_id",
            other => match other.strip_prefix("$identity_") {
                Some(name)
                    if !name.is_empty()
                        && name
                            .chars()
                            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_') =>
                {
                    name
                }
                // A custom key the identity types cannot name: not an identifier here.
                _ => continue,
            },
        };
        external.push(json!({"type": kind, "id": id}));
    }
    (user_id, anonymous_id, external)
}

/// One record as Segment messages; `None` for a record type that is not about people's
/// events or traits. Errors name the field of the record.
fn to_segment(record: &Value) -> Result<Option<Vec<Value>>, (String, String)> {
    let Value::Object(record) = record else {
        return Err(("(record)".into(), "must be a JSON object".into()));
    };
    let kind = match record.get("type") {
        Some(Value::String(kind)) => kind.as_str(),
        _ => return Err(("type".into(), "is required (track, profile_set...)".into())),
    };
    let empty = Map::new();
    let properties = match record.get("properties") {
        None | Some(Value::Null) => &empty,
        Some(Value::Object(properties)) => properties,
        Some(_) => return Err(("properties".into(), "must be an object".into())),
    };
    let own: Map<String, Value> = properties
        .iter()
        .filter(|(name, _)| !name.starts_with('$'))
        .map(|(name, value)| (name.clone(), value.clone()))
        .collect();
    let (user_id, anonymous_id, external) = identities(record, properties);
    let mut context = context_of(properties, record.get("lib").and_then(Value::as_object));
    if !external.is_empty() {
        context.insert("externalIds".into(), Value::Array(external));
    }
    // A retry sends the same record again (with a new `_flush_time`): the same message id,
    // so the de-duplication window recognises it.
    let mut identity = record.clone();
    identity.remove("_flush_time");
    let digest = cdp_crypto::digest16(&[
        b"sensors-record",
        Value::Object(identity).to_string().as_bytes(),
    ]);
    let message_id = format!("sa-{}", cdp_core::hex::encode(&digest));
    let timestamp = record
        .get("time")
        .and_then(Value::as_i64)
        .and_then(|millis| {
            OffsetDateTime::from_unix_timestamp_nanos(i128::from(millis) * 1_000_000).ok()
        })
        .and_then(|at| {
            at.format(&time::format_description::well_known::Rfc3339)
                .ok()
        });
    let base = |kind: &str, suffix: &str| {
        let mut message = Map::new();
        message.insert("type".into(), json!(kind));
        message.insert("messageId".into(), json!(format!("{message_id}{suffix}")));
        if let Some(user_id) = &user_id {
            message.insert("userId".into(), json!(user_id));
        }
        if let Some(anonymous_id) = &anonymous_id {
            message.insert("anonymousId".into(), json!(anonymous_id));
        }
        if let Some(timestamp) = &timestamp {
            message.insert("timestamp".into(), json!(timestamp));
        }
        message.insert("context".into(), Value::Object(context.clone()));
        message
    };
    let event = text(record.get("event"));
    let messages = match kind {
        "track" => {
            let event = event.ok_or(("event".to_string(), "is required for track".to_string()))?;
            let mut message;
            match event.as_str() {
                "$pageview" => {
                    message = base("page", "");
                    if let Some(title) = text(properties.get("$title")) {
                        message.insert("name".into(), json!(title));
                    }
                    let mut page = own.clone();
                    for (from, to) in [
                        ("$url", "url"),
                        ("$title", "title"),
                        ("$referrer", "referrer"),
                        ("$url_path", "path"),
                    ] {
                        if let Some(value) = properties.get(from) {
                            page.insert(to.into(), value.clone());
                        }
                    }
                    message.insert("properties".into(), Value::Object(page));
                }
                "$AppViewScreen" | "$MPViewScreen" => {
                    message = base("screen", "");
                    if let Some(name) = text(properties.get("$title"))
                        .or_else(|| text(properties.get("$screen_name")))
                        .or_else(|| text(properties.get("$url_path")))
                    {
                        message.insert("name".into(), json!(name));
                    }
                    message.insert("properties".into(), Value::Object(own));
                }
                _ => {
                    message = base("track", "");
                    message.insert("event".into(), json!(event));
                    message.insert("properties".into(), Value::Object(own));
                }
            }
            vec![message]
        }
        "track_signup" => {
            let original = text(record.get("original_id")).ok_or((
                "original_id".to_string(),
                "is required for track_signup".to_string(),
            ))?;
            let mut alias = base("alias", "-alias");
            alias.insert("previousId".into(), json!(original));
            alias.remove("anonymousId");
            if user_id.is_none() {
                // The login id is the record's distinct_id.
                let login = text(record.get("distinct_id")).ok_or((
                    "distinct_id".to_string(),
                    "is required for track_signup".to_string(),
                ))?;
                alias.insert("userId".into(), json!(login));
            }
            let mut signup = base("track", "");
            if !signup.contains_key("userId") {
                signup.insert("userId".into(), alias["userId"].clone());
            }
            signup.insert(
                "event".into(),
                json!(event.unwrap_or_else(|| "$SignUp".into())),
            );
            signup.insert("properties".into(), Value::Object(own));
            vec![alias, signup]
        }
        "profile_set" | "profile_set_once" | "profile_unset" | "profile_delete"
        | "track_id_bind" => {
            let mut identify = base("identify", "");
            let directive = match kind {
                "profile_set" | "track_id_bind" => None,
                "profile_set_once" => Some(json!({"setOnce": true})),
                "profile_unset" => Some(json!({"unset": own.keys().collect::<Vec<_>>()})),
                _ => Some(json!({"unsetAll": true})),
            };
            let traits = match kind {
                "profile_set" | "profile_set_once" => own,
                _ => Map::new(),
            };
            identify.insert("traits".into(), Value::Object(traits));
            if let Some(directive) = directive
                && let Some(Value::Object(context)) = identify.get_mut("context")
            {
                context.insert("cdp".into(), directive);
            }
            vec![identify]
        }
        "track_id_unbind" | "profile_increment" | "profile_append" | "item_set" | "item_delete" => {
            return Ok(None);
        }
        other => {
            return Err((
                "type".into(),
                format!(
                    "{:?} is not a record type of the protocol (track, track_signup, profile_set, profile_set_once, profile_unset, profile_delete, track_id_bind, track_id_unbind, profile_increment, profile_append, item_set, item_delete)",
                    other.chars().take(40).collect::<String>()
                ),
            ));
        }
    };
    Ok(Some(messages.into_iter().map(Value::Object).collect()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write as _;

    fn limits() -> MessageLimits {
        MessageLimits::default()
    }

    fn encode(value: &Value, gzip: bool) -> String {
        let bytes = value.to_string().into_bytes();
        let bytes = if gzip {
            let mut encoder =
                flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
            encoder.write_all(&bytes).unwrap();
            encoder.finish().unwrap()
        } else {
            bytes
        };
        base64::engine::general_purpose::STANDARD.encode(bytes)
    }

    fn convert_one(record: Value) -> Converted {
        let params = vec![("data".to_string(), encode(&record, false))];
        let records = records(&params, &limits()).unwrap();
        convert(&records, OffsetDateTime::now_utc(), &limits()).unwrap()
    }

    #[test]
    fn a_web_pageview_becomes_a_page_with_its_context() {
        let converted = convert_one(json!({
            "type": "track", "event": "$pageview", "distinct_id": "18c-anon", "time": 1_764_700_000_000i64,
            "lib": {"$lib": "js", "$lib_version": "1.27.11"},
            "properties": {"$url": "https://shop.example.cn/tea", "$title": "Tea", "$is_first_day": true, "campaign": "winter"},
            "identities": {"$identity_cookie_id": "18c-anon"}, "_flush_time": 1
        }));
        let page = &converted.messages[0];
        assert_eq!(page.kind, cdp_core::segment::MessageType::Page);
        assert_eq!(page.anonymous_id.as_deref(), Some("18c-anon"));
        assert_eq!(page.name.as_deref(), Some("Tea"));
        assert_eq!(page.properties["campaign"], "winter");
        assert_eq!(page.context["page"]["url"], "https://shop.example.cn/tea");
        assert_eq!(page.context["library"]["name"], "sensors-js");
        assert_eq!(page.context["sensors"]["$is_first_day"], true);
        assert_eq!(page.timestamp.unix_timestamp(), 1_764_700_000);
    }

    #[test]
    fn identities_become_segment_ids_and_external_ids() {
        let converted = convert_one(json!({
            "type": "track_id_bind", "event": "$BindID", "distinct_id": "u-1",
            "properties": {"$is_login_id": true, "$app_id": "wx123"},
            "identities": {"$identity_login_id": "u-1", "$identity_mp_openid": "o-9",
                           "$identity_mp_unionid": "un-9", "$identity_mobile": "13800138000",
                           "$identity_email": "a@example.cn", "$identity_crm_id": "c-7", "$identity_Bad Key": "x"}
        }));
        let bind = &converted.messages[0];
        assert_eq!(bind.kind, cdp_core::segment::MessageType::Identify);
        assert_eq!(bind.user_id.as_deref(), Some("u-1"));
        assert_eq!(bind.anonymous_id, None);
        let ids = bind.context["externalIds"].as_array().unwrap();
        assert!(
            ids.contains(&json!({"type": "wechat_openid", "id": "o-9", "collection": "wx123"}))
        );
        assert!(ids.contains(&json!({"type": "wechat_unionid", "id": "un-9"})));
        assert!(ids.contains(&json!({"type": "phone", "id": "13800138000"})));
        assert!(ids.contains(&json!({"type": "email", "id": "a@example.cn"})));
        assert!(ids.contains(&json!({"type": "crm_id", "id": "c-7"})));
        assert_eq!(ids.len(), 5, "{ids:?}");
        let mini = convert_one(json!({
            "type": "track", "event": "BuyTea", "distinct_id": "mp-anon",
            "identities": {"$identity_mp_id": "mp-anon", "$identity_mp_wx42_openid": "o-1"}
        }));
        let track = &mini.messages[0];
        assert_eq!(track.anonymous_id.as_deref(), Some("mp-anon"));
        assert_eq!(
            track.context["externalIds"],
            json!([{"type": "wechat_openid", "id": "o-1", "collection": "wx42"}])
        );
    }

    #[test]
    fn signup_aliases_the_anonymous_id_and_keeps_the_event() {
        let converted = convert_one(json!({
            "type": "track_signup", "event": "$SignUp", "distinct_id": "member-1", "original_id": "anon-1",
            "properties": {"$is_login_id": true}
        }));
        assert_eq!(converted.messages.len(), 2);
        let alias = &converted.messages[0];
        assert_eq!(alias.kind, cdp_core::segment::MessageType::Alias);
        assert_eq!(alias.previous_id.as_deref(), Some("anon-1"));
        assert_eq!(alias.user_id.as_deref(), Some("member-1"));
        assert_eq!(converted.messages[1].event.as_deref(), Some("$SignUp"));
        assert_ne!(alias.message_id, converted.messages[1].message_id);
    }

    #[test]
    fn profile_records_become_identify_with_their_directives() {
        let set_once = convert_one(
            json!({"type": "profile_set_once", "distinct_id": "u", "properties": {"$is_login_id": true, "city": "上海"}}),
        );
        assert_eq!(set_once.messages[0].traits["city"], "上海");
        assert_eq!(
            set_once.messages[0].context["cdp"],
            json!({"setOnce": true})
        );
        let unset = convert_one(
            json!({"type": "profile_unset", "distinct_id": "u", "properties": {"$is_login_id": true, "city": true}}),
        );
        assert!(unset.messages[0].traits.is_empty());
        assert_eq!(unset.messages[0].context["cdp"], json!({"unset": ["city"]}));
        let delete = convert_one(
            json!({"type": "profile_delete", "distinct_id": "u", "properties": {"$is_login_id": true}}),
        );
        assert_eq!(delete.messages[0].context["cdp"], json!({"unsetAll": true}));
        let item = convert_one(
            json!({"type": "item_set", "item_type": "tea", "item_id": "t1", "properties": {}}),
        );
        assert!(item.messages.is_empty());
        assert_eq!(item.ignored, 1);
    }

    #[test]
    fn a_gzipped_list_decodes_and_a_retry_keeps_its_message_id() {
        let record = json!({"type": "track", "event": "Buy", "distinct_id": "d", "time": 1_764_700_000_000i64, "_flush_time": 5});
        let mut retried = record.clone();
        retried["_flush_time"] = json!(9);
        let params = vec![
            (
                "data_list".to_string(),
                encode(&json!([record, retried]), true),
            ),
            ("gzip".to_string(), "1".to_string()),
        ];
        let records = records(&params, &limits()).unwrap();
        let converted = convert(&records, OffsetDateTime::now_utc(), &limits()).unwrap();
        assert_eq!(converted.messages.len(), 2);
        assert_eq!(
            converted.messages[0].message_id,
            converted.messages[1].message_id
        );
    }

    #[test]
    fn bad_requests_name_the_parameter_or_field_never_the_value() {
        let bad = |params: Vec<(&str, String)>| {
            let params: Vec<(String, String)> = params
                .into_iter()
                .map(|(k, v)| (k.to_string(), v))
                .collect();
            match records(&params, &limits()) {
                Err(error) => error,
                Ok(records) => convert(&records, OffsetDateTime::now_utc(), &limits()).unwrap_err(),
            }
        };
        assert_eq!(bad(vec![]).field, "data");
        assert_eq!(bad(vec![("data", "***".into())]).problem, "is not base64");
        let secret = "13812345678";
        let error = bad(vec![(
            "data",
            base64::engine::general_purpose::STANDARD.encode(format!("{{\"phone\": {secret}")),
        )]);
        assert!(!error.problem.contains(secret), "{error:?}");
        let error = bad(vec![(
            "data",
            encode(&json!({"type": "track", "distinct_id": "d"}), false),
        )]);
        assert_eq!(error.field, "data_list[0].event");
        let error = bad(vec![(
            "data",
            encode(&json!({"type": "hack", "distinct_id": "d"}), false),
        )]);
        assert_eq!(error.field, "data_list[0].type");
        let error = bad(vec![(
            "data",
            encode(&json!({"type": "track", "event": "E"}), false),
        )]);
        assert_eq!(error.field, "data_list[0].userId", "{error:?}");
    }
}
