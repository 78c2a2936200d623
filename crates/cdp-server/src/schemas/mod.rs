//! The shapes of the API's answers, for the OpenAPI document only: the routes answer the
//! engine's types (serialized as JSON), and these say what that JSON is, with enums and id
//! formats, so that generated clients get typed models. They are never built: a test
//! (`e2e sdk::a_client_generated_from_the_openapi_document_runs_the_tour`) checks real answers
//! against the document, so a shape here that drifts from the engine's fails it.

// Documentation types: constructed by nobody, read by utoipa's derive.
#![allow(dead_code)]

/// An RFC 3339 time.
type Time = String;

mod exports;
mod people;
mod segment;

pub(crate) use exports::*;
pub(crate) use people::*;
pub(crate) use segment::*;
