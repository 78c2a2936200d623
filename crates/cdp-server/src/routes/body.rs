//! The JSON request bodies of the management API: always one JSON object.
//!
//! serde's derived structs also deserialise from a JSON array (their fields in order), so
//! with axum's `Json<T>` a body of `[]` read as a struct with every field at its default:
//! `POST /v1/retention/run` with `[]` ran a real sweep. [`JsonBody`] refuses anything but an
//! object before the fields are read. It never rejects on its own: the handler checks the
//! caller's permission first and then takes the body ([`JsonBody::parse`]), so a caller
//! without the right gets 403 whatever it sent.

use axum::Json;
use axum::extract::rejection::JsonRejection;
use axum::extract::{FromRequest, Request};
use serde::de::DeserializeOwned;

use crate::{ApiError, ErrorCode};

/// A request body that must be a JSON object of the shape `T`.
pub(crate) struct JsonBody<T>(Result<T, ApiError>);

impl<T> JsonBody<T> {
    /// The body, or the 400 that says what is wrong with it.
    pub(crate) fn parse(self) -> Result<T, ApiError> {
        self.0
    }
}

impl<S, T> FromRequest<S> for JsonBody<T>
where
    S: Send + Sync,
    T: DeserializeOwned,
{
    type Rejection = std::convert::Infallible;

    async fn from_request(request: Request, state: &S) -> Result<Self, Self::Rejection> {
        let value = match Json::<serde_json::Value>::from_request(request, state).await {
            Ok(Json(value)) => value,
            Err(rejection) => return Ok(Self(Err(json_rejection(rejection)))),
        };
        if !value.is_object() {
            return Ok(Self(Err(ApiError::new(
                ErrorCode::InvalidJson,
                "the body must be a JSON object",
            ))));
        }
        Ok(Self(
            serde_path_to_error::deserialize(value)
                .map_err(|error| data_error(error.inner(), error.path())),
        ))
    }
}

/// The 400 for a body that could not be read as JSON.
pub(crate) fn json_rejection(rejection: JsonRejection) -> ApiError {
    // The rejection's own text can quote input; say what kind of problem it is.
    let message = match rejection {
        JsonRejection::MissingJsonContentType(_) => "Content-Type must be application/json",
        JsonRejection::JsonSyntaxError(_) => "the body is not valid JSON",
        JsonRejection::JsonDataError(_) => {
            "the body has a missing field, an unknown field or a field of the wrong type"
        }
        _ => "the body cannot be read",
    };
    ApiError::new(ErrorCode::InvalidJson, message)
}

/// Where a value is, as `schedule.at` or `batch[3].timestamp`: field names and indices only
/// (a map's keys are the caller's and are left out unless plain names); `None` at the top.
fn field_path(path: &serde_path_to_error::Path) -> Option<String> {
    use serde_path_to_error::Segment;
    let plain = |name: &str| {
        name.len() <= 64
            && name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '$'))
    };
    let mut out = String::new();
    for segment in path.iter() {
        match segment {
            Segment::Seq { index } => out.push_str(&format!("[{index}]")),
            Segment::Map { key } if plain(key) => {
                if !out.is_empty() {
                    out.push('.');
                }
                out.push_str(key);
            }
            Segment::Map { .. } => out.push_str(".(key)"),
            Segment::Enum { .. } | Segment::Unknown => {}
        }
    }
    (!out.is_empty()).then_some(out)
}

/// The 400 for a JSON object of the wrong shape. A missing or unknown field is named (serde
/// writes it between backticks); other problems are described without serde's text, which
/// can quote the value (personal data must not come back in errors or go to logs).
fn data_error(error: &serde_json::Error, path: &serde_path_to_error::Path) -> ApiError {
    let text = error.to_string();
    let named = |prefix: &str| {
        let rest = text.strip_prefix(prefix)?.strip_prefix('`')?;
        let name = &rest[..rest.find('`')?];
        let plain = name.len() <= 64
            && name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'));
        plain.then(|| name.to_string())
    };
    let message = if let Some(field) = named("missing field ") {
        format!("the body is missing the field {field}")
    } else if let Some(field) = named("unknown field ") {
        format!("the body has an unknown field {field}")
    } else if let Some(expected) = text
        .strip_prefix("unknown variant `")
        .and_then(|rest| rest.split_once("`, expected "))
        .map(|(_, expected)| expected.split(" at line").next().unwrap_or(expected))
    {
        // The allowed values are ours (an enum's names), safe to repeat; the given one is not.
        format!(
            "the body has a value that is not allowed there: expected {}",
            expected.replace('`', "")
        )
    } else {
        match field_path(path) {
            Some(path) => format!("the body's field {path} has the wrong type or value"),
            None => "the body has a field of the wrong type or value".to_string(),
        }
    };
    ApiError::new(ErrorCode::InvalidJson, message)
}
