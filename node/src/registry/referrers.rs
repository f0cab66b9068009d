//! `GET /v2/<name>/referrers/<digest>[?artifactType=…]`: an OCI index of the
//! manifests in `<name>` whose `subject` is `<digest>`.

use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};
use shoal_protocol::RepoName;

use super::RegistryState;
use super::error::RegistryResult;
use super::path::parse_digest;
use super::request::RequestParts;
use shoal_protocol::manifest::OCI_INDEX;

pub fn list(
    state: &RegistryState,
    name: &RepoName,
    digest: &str,
    req: &RequestParts,
) -> RegistryResult<Response> {
    let subject = parse_digest(digest)?;
    let filter = req.query("artifactType").filter(|f| !f.is_empty());
    // An unknown subject or repository has no referrers: an empty index, as
    // the spec asks, not a 404.
    let descriptors: Vec<Value> = state
        .store
        .referrers(name, &subject)?
        .into_iter()
        .filter(|r| filter.is_none() || r.artifact_type.as_deref() == filter)
        .map(|r| {
            let mut d = json!({
                "mediaType": r.media_type,
                "digest": r.digest.to_string(),
                "size": r.size,
            });
            if let Some(at) = r.artifact_type {
                d["artifactType"] = json!(at);
            }
            if let Some(ann) = r.annotations {
                d["annotations"] = json!(ann);
            }
            d
        })
        .collect();
    let body = json!({ "schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": descriptors });
    let mut response = (
        StatusCode::OK,
        [(header::CONTENT_TYPE, OCI_INDEX)],
        body.to_string(),
    )
        .into_response();
    if filter.is_some() {
        response.headers_mut().insert(
            header::HeaderName::from_static("oci-filters-applied"),
            header::HeaderValue::from_static("artifactType"),
        );
    }
    Ok(response)
}
