//! The OpenAPI document's frame; paths are added by `utoipa_axum::routes!` as routes are
//! registered, so the document cannot drift from the router.

use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityScheme};
use utoipa::{Modify, OpenApi};

#[derive(OpenApi)]
#[openapi(
    info(
        title = "cdp: privacy-first customer data platform",
        description = "Segment-compatible ingestion, identity resolution, consent and policy-controlled access. Errors are `{\"error\": {\"code\", \"message\", \"details\"}}` with the codes listed in docs/API.md.",
        license(name = "Apache-2.0"),
    ),
    components(schemas(crate::ErrorBody, crate::ErrorDetail)),
    tags(
        (name = "operations", description = "Health, readiness, metrics and this document."),
        (name = "ingestion", description = "Segment-compatible event ingestion, authenticated by a source's write key (HTTP Basic user name)."),
        (name = "accounts", description = "Named operator accounts and console sessions (a `cdp_session` cookie; requests that change something also send `X-CSRF-Token`)."),
        (name = "sources", description = "Ingestion sources and their write keys."),
        (name = "profiles", description = "Profiles, their identity graph, and unmerge."),
    ),
    modifiers(&SecuritySchemes, &StandardErrors),
)]
pub(crate) struct ApiDoc;

struct SecuritySchemes;

impl Modify for SecuritySchemes {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        let mut bearer = Http::new(HttpAuthScheme::Bearer);
        bearer.bearer_format = Some("JWT".into());
        components.add_security_scheme("bearer", SecurityScheme::Http(bearer));
        components.add_security_scheme(
            "write_key",
            SecurityScheme::Http(Http::new(HttpAuthScheme::Basic)),
        );
    }
}

/// The error answers every operation can give, added where a route does not declare them
/// itself, so that a client generated from the document knows each status and its body:
/// 400 for a malformed body, parameter or id; 401 and 403 behind credentials; 404 for a
/// resource named in the path; 413 for a body over its limit; 503 while the store or the index
/// cannot answer. (A route that gives 409 or 429 declares it.)
struct StandardErrors;

impl StandardErrors {
    fn error(description: &str) -> utoipa::openapi::RefOr<utoipa::openapi::Response> {
        utoipa::openapi::ResponseBuilder::new()
            .description(description)
            .content(
                "application/json",
                utoipa::openapi::ContentBuilder::new()
                    .schema(Some(utoipa::openapi::Ref::from_schema_name("ErrorBody")))
                    .build(),
            )
            .build()
            .into()
    }
}

impl Modify for StandardErrors {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        for (path, item) in openapi.paths.paths.iter_mut() {
            let operations = [
                item.get.as_mut(),
                item.put.as_mut(),
                item.post.as_mut(),
                item.delete.as_mut(),
                item.patch.as_mut(),
            ];
            for operation in operations.into_iter().flatten() {
                let secured: Vec<String> = operation
                    .security
                    .iter()
                    .flatten()
                    .filter_map(|requirement| serde_json::to_value(requirement).ok())
                    .filter_map(|value| {
                        value
                            .as_object()
                            .map(|o| o.keys().cloned().collect::<Vec<_>>())
                    })
                    .flatten()
                    .collect();
                let mut add = |status: &str, description: &str| {
                    operation
                        .responses
                        .responses
                        .entry(status.to_string())
                        .or_insert_with(|| Self::error(description));
                };
                let takes_input = path.contains('{') || path.contains("/v1/");
                if takes_input {
                    add(
                        "400",
                        "The request is malformed: the error names the field, parameter or id.",
                    );
                }
                if !secured.is_empty() {
                    add("401", "Credentials are missing or invalid.");
                }
                if secured.iter().any(|s| s == "bearer") {
                    add(
                        "403",
                        "The credentials do not allow this request (role, purpose or policy).",
                    );
                }
                if path.contains('{') {
                    add("404", "The resource named in the path does not exist.");
                }
                if operation.request_body.is_some() {
                    add("413", "The body exceeds its size limit.");
                }
                if path.starts_with("/v1/") {
                    add(
                        "503",
                        "The store or the search index cannot answer now; retry later.",
                    );
                }
            }
        }
    }
}
