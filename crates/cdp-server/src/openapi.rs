//! The OpenAPI document's frame; paths are added by `utoipa_axum::routes!` as routes are
//! registered, so the document cannot drift from the router.

use utoipa::OpenApi;

#[derive(OpenApi)]
#[openapi(
    info(
        title = "cdp: privacy-first customer data platform",
        description = "Segment-compatible ingestion, identity resolution, consent and policy-controlled access. Errors are `{\"error\": {\"code\", \"message\", \"details\"}}` with the codes listed in docs/API.md.",
        license(name = "Apache-2.0"),
    ),
    components(schemas(crate::ErrorBody, crate::ErrorDetail)),
    tags((name = "operations", description = "Health, readiness, metrics and this document.")),
)]
pub(crate) struct ApiDoc;
