//! Manifests from upstream: fetched whole (they are small and capped),
//! checked against their digest before anyone sees them.

use std::time::Duration;

use bytes::Bytes;
use reqwest::header::{self, HeaderMap, HeaderValue};
use reqwest::{Method, Response, StatusCode};
use shoal_protocol::Digest;
use shoal_protocol::digest::Algorithm;
use shoal_protocol::name::{Reference, RepoName};

use super::auth::{ReadError, read_capped};
use super::client::{ApiCall, UpstreamClient};
use super::error::{UpstreamError, Wanted};

/// Largest manifest accepted: the distribution spec's suggested limit.
pub const MAX_MANIFEST_BYTES: usize = 4 * 1024 * 1024;

/// The digest header every registry sends on manifests.
const DOCKER_CONTENT_DIGEST: &str = "docker-content-digest";

/// A manifest as the upstream sent it, checked against its digest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UpstreamManifest {
    pub digest: Digest,
    pub media_type: String,
    pub bytes: Bytes,
}

/// What a `HEAD` says about a manifest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ManifestHead {
    pub digest: Digest,
    pub media_type: String,
    pub size: u64,
}

impl UpstreamClient {
    /// `GET /v2/<repo>/manifests/<reference>`. By digest, the body must hash
    /// to it; by tag, the digest is computed from the body and must match
    /// the `Docker-Content-Digest` the upstream sent, if any.
    pub async fn get_manifest(
        &self,
        host: &str,
        repo: &RepoName,
        reference: &Reference,
        accept: &[&str],
    ) -> Result<UpstreamManifest, UpstreamError> {
        let response = self
            .send(manifest_call(
                host,
                repo,
                reference,
                accept,
                Method::GET,
                self.request_timeout(),
            ))
            .await?;
        let host = host.to_owned();
        let bad = |reason: String| UpstreamError::BadResponse {
            host: host.clone(),
            reason,
        };
        if response.status() != StatusCode::OK {
            return Err(bad(format!(
                "answered {} to a manifest GET",
                response.status()
            )));
        }
        let headers = response.headers().clone();
        let bytes = read_capped(response, MAX_MANIFEST_BYTES)
            .await
            .map_err(|e| match e {
                ReadError::TooLarge => UpstreamError::TooLarge {
                    host: host.clone(),
                    wanted: Wanted::Manifest,
                    limit: MAX_MANIFEST_BYTES as u64,
                },
                ReadError::Transport(e) => UpstreamError::Unreachable {
                    host: host.clone(),
                    reason: format!(
                        "reading a manifest: {}",
                        crate::error_chain::error_chain(&e)
                    ),
                },
            })?;
        let header_digest = content_digest(&headers);
        let expected = match reference {
            Reference::Digest(d) => Some(d.clone()),
            Reference::Tag(_) => header_digest,
        };
        let algorithm = expected
            .as_ref()
            .map(Digest::algorithm)
            .unwrap_or(Algorithm::Sha256);
        let digest = Digest::compute(algorithm, &bytes);
        if let Some(expected) = expected
            && expected != digest
        {
            return Err(UpstreamError::DigestMismatch {
                host,
                expected,
                actual: digest,
            });
        }
        let media_type = media_type(&headers, &bytes)
            .ok_or_else(|| bad(format!("manifest {digest} has no media type")))?;
        Ok(UpstreamManifest {
            digest,
            media_type,
            bytes: Bytes::from(bytes),
        })
    }

    /// Resolves `reference` quickly with `HEAD`, within `timeout` overall;
    /// falls back to a `GET` when the upstream does not say the digest.
    pub async fn head_manifest(
        &self,
        host: &str,
        repo: &RepoName,
        reference: &Reference,
        accept: &[&str],
        timeout: Duration,
    ) -> Result<ManifestHead, UpstreamError> {
        let resolve = async {
            let response = self
                .send(manifest_call(
                    host,
                    repo,
                    reference,
                    accept,
                    Method::HEAD,
                    timeout,
                ))
                .await?;
            if let Some(head) = head_of(&response) {
                return Ok(head);
            }
            let manifest = self.get_manifest(host, repo, reference, accept).await?;
            Ok(ManifestHead {
                size: manifest.bytes.len() as u64,
                digest: manifest.digest,
                media_type: manifest.media_type,
            })
        };
        tokio::time::timeout(timeout, resolve)
            .await
            .unwrap_or_else(|_| {
                Err(UpstreamError::Unreachable {
                    host: host.to_owned(),
                    reason: format!("no answer about {repo}:{reference} within {timeout:?}"),
                })
            })
    }
}

fn manifest_call<'a>(
    host: &'a str,
    repo: &'a RepoName,
    reference: &Reference,
    accept: &[&str],
    method: Method,
    timeout: Duration,
) -> ApiCall<'a> {
    let mut headers = HeaderMap::new();
    if let Ok(value) = HeaderValue::from_str(&accept.join(", "))
        && !accept.is_empty()
    {
        headers.insert(header::ACCEPT, value);
    }
    ApiCall {
        host,
        repo,
        method,
        tail: format!("manifests/{reference}"),
        headers,
        whole_timeout: Some(timeout),
        wanted: Wanted::Manifest,
        what: format!("{repo}:{reference}"),
    }
}

/// The answer to a `HEAD`, when it says everything needed.
fn head_of(response: &Response) -> Option<ManifestHead> {
    if response.status() != StatusCode::OK {
        return None;
    }
    let headers = response.headers();
    let size = headers
        .get(header::CONTENT_LENGTH)?
        .to_str()
        .ok()?
        .parse()
        .ok()?;
    Some(ManifestHead {
        digest: content_digest(headers)?,
        media_type: declared_media_type(headers)?,
        size,
    })
}

fn content_digest(headers: &HeaderMap) -> Option<Digest> {
    let value = headers.get(DOCKER_CONTENT_DIGEST)?.to_str().ok()?;
    value.trim().parse().ok()
}

/// `Content-Type` without parameters, unless it is a generic type that says
/// nothing about the manifest.
fn declared_media_type(headers: &HeaderMap) -> Option<String> {
    let value = headers.get(header::CONTENT_TYPE)?.to_str().ok()?;
    let essence = value.split(';').next()?.trim();
    let generic = [
        "",
        "application/octet-stream",
        "application/json",
        "text/plain",
    ];
    (!generic.contains(&essence)).then(|| essence.to_owned())
}

/// The declared type, else the body's own `mediaType` field.
fn media_type(headers: &HeaderMap, body: &[u8]) -> Option<String> {
    declared_media_type(headers).or_else(|| {
        #[derive(serde::Deserialize)]
        struct MediaTypeOnly {
            #[serde(rename = "mediaType")]
            media_type: Option<String>,
        }
        serde_json::from_slice::<MediaTypeOnly>(body)
            .ok()?
            .media_type
            .filter(|m| !m.is_empty())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.insert(*name, HeaderValue::from_str(value).expect("value"));
        }
        map
    }

    #[test]
    fn media_type_from_header_or_body() {
        let oci = "application/vnd.oci.image.manifest.v1+json";
        let body = format!(r#"{{"mediaType":"{oci}","schemaVersion":2}}"#);
        assert_eq!(
            media_type(
                &headers(&[("content-type", &format!("{oci}; charset=utf-8"))]),
                b"{}"
            ),
            Some(oci.to_owned())
        );
        assert_eq!(
            media_type(
                &headers(&[("content-type", "application/json")]),
                body.as_bytes()
            ),
            Some(oci.to_owned())
        );
        assert_eq!(
            media_type(&HeaderMap::new(), body.as_bytes()),
            Some(oci.to_owned())
        );
        assert_eq!(media_type(&HeaderMap::new(), b"{}"), None);
        assert_eq!(media_type(&HeaderMap::new(), b"not json"), None);
    }

    #[test]
    fn digest_header() {
        let d = Digest::sha256_of(b"x");
        assert_eq!(
            content_digest(&headers(&[(DOCKER_CONTENT_DIGEST, &d.to_string())])),
            Some(d)
        );
        assert_eq!(
            content_digest(&headers(&[(DOCKER_CONTENT_DIGEST, "sha256:nope")])),
            None
        );
    }
}
