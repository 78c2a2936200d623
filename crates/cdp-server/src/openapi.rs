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
    modifiers(&SecuritySchemes),
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
