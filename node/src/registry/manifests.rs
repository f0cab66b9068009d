//! `GET`/`HEAD`/`PUT`/`DELETE /v2/<name>/manifests/<reference>`.

use axum::body::Body;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use http_body_util::BodyExt;
use shoal_protocol::manifest::{ParsedManifest, parse_manifest};
use shoal_protocol::{Digest, RepoName, Tag};
use tokio::io::AsyncReadExt;

use super::RegistryState;
use super::blobs::{header_value, io_error};
use super::error::{ErrorCode, RegistryError, RegistryResult};
use super::mirror::TagFrom;
use super::path::parse_digest;
use super::request::RequestParts;
use crate::store::{ManifestPut, ManifestRecord};
use crate::transfer::UpstreamSource;

/// A manifest reference: a digest (contains ':') or a tag.
enum Reference {
    Digest(Digest),
    Tag(Tag),
}

fn parse_reference(raw: &str) -> RegistryResult<Reference> {
    if raw.contains(':') {
        return parse_digest(raw).map(Reference::Digest);
    }
    raw.parse::<Tag>().map(Reference::Tag).map_err(|e| {
        RegistryError::new(
            ErrorCode::ManifestInvalid,
            format!("invalid reference: {e}"),
        )
        .with_status(StatusCode::BAD_REQUEST)
    })
}

fn manifest_unknown(name: &RepoName, reference: &str) -> RegistryError {
    RegistryError::new(
        ErrorCode::ManifestUnknown,
        format!("manifest {reference} is unknown in {name}"),
    )
}

/// Finds the manifest a reference names in a repository: local, then
/// peers, then (for a mirrored name) upstream. A repository that holds
/// nothing is `NAME_UNKNOWN`, as the spec distinguishes. Also says where
/// the manifest came from, and the upstream the name maps to, if any.
async fn lookup(
    state: &RegistryState,
    name: &RepoName,
    reference: &str,
    req: &RequestParts,
) -> RegistryResult<(ManifestRecord, &'static str, Option<UpstreamSource>)> {
    let source = state.mirror.as_ref().and_then(|m| m.source(req, name));
    // `upstream_up`: the upstream answered for the tag a moment ago.
    let (digest, by_digest, upstream_up) = match parse_reference(reference)? {
        Reference::Digest(d) => (d, true, false),
        Reference::Tag(tag) => match state.store.resolve_tag(name, &tag)? {
            Some(d) => (d, false, false),
            None => match (&state.mirror, &source) {
                (Some(mirror), Some(source)) => {
                    let accept = accepted(req);
                    let accept: Vec<&str> = accept.iter().map(String::as_str).collect();
                    let (digest, from) = mirror
                        .resolve_tag(&state.store, state.fetcher.as_ref(), source, &tag, &accept)
                        .await?;
                    (digest, true, from == TagFrom::Upstream)
                }
                _ => return Err(missing(state, name, reference)?),
            },
        },
    };
    if let Some(record) = state.store.manifest(name, &digest)? {
        return Ok((record, "local", source));
    }
    // Content is global: a manifest asked for by digest that no local
    // repository holds may come from peers. (A local blob is not adopted, so
    // a deleted manifest stays deleted.)
    if by_digest && state.store.blob_size(&digest)?.is_none() {
        // A tag the upstream has just answered for: its manifest (a few KiB)
        // comes from there too, one request over a link known to work.
        // Asked of peers first, it waited out a whole provider lookup
        // (FIND_DEADLINE, 2 s) whenever nobody had it yet — at the start of
        // every rollout, on every host. Peers are the fallback.
        if upstream_up && let (Some(mirror), Some(source)) = (&state.mirror, &source) {
            match mirror.adopt(state, source, name, &digest).await {
                Ok(record) => return Ok((record, "upstream", Some(source.clone()))),
                Err(e) => {
                    tracing::info!(%digest, error = %e.message, "manifest not fetched upstream; asking peers");
                }
            }
        }
        if let Ok(record) = adopt_from_peers(state, name, &digest).await {
            return Ok((record, "peers", source));
        }
        if !upstream_up && let (Some(mirror), Some(source)) = (&state.mirror, source) {
            let record = mirror.adopt(state, &source, name, &digest).await?;
            return Ok((record, "upstream", Some(source)));
        }
        return Err(manifest_unknown(name, reference));
    }
    if by_digest && source.is_some() {
        // Pulled through before under another name: the bytes are here.
        if let Some(blob) = state.store.open_blob(&digest).await? {
            let bytes = read_manifest_blob(state, name, &digest, blob).await?;
            let record = record_manifest(state, name, &digest, bytes).await?;
            return Ok((record, "local", source));
        }
    }
    Err(missing(state, name, reference)?)
}

/// The concrete media types an `Accept` header lists, to ask the upstream
/// for (every manifest type when it lists none).
fn accepted(req: &RequestParts) -> Vec<String> {
    let values: Vec<String> = accept_values(req)
        .into_iter()
        .filter(|v| v.contains('/') && !v.contains('*'))
        .map(String::from)
        .collect();
    if values.is_empty() {
        return super::mirror::ALL_MANIFESTS.map(String::from).to_vec();
    }
    values
}

fn manifest_put(
    digest: Digest,
    bytes: Bytes,
    parsed: ParsedManifest,
    tag: Option<Tag>,
) -> ManifestPut {
    ManifestPut {
        digest,
        media_type: parsed.media_type,
        bytes,
        references: parsed.references,
        subject: parsed.subject,
        artifact_type: parsed.artifact_type,
        annotations: parsed.annotations,
        tag,
    }
}

/// Fetches a manifest by digest from peers and records it in `name`.
async fn adopt_from_peers(
    state: &RegistryState,
    name: &RepoName,
    digest: &Digest,
) -> RegistryResult<ManifestRecord> {
    super::blobs::fetch_from_peers(state, digest).await?;
    let blob = state
        .store
        .open_blob(digest)
        .await?
        .ok_or_else(|| manifest_unknown(name, &digest.to_string()))?;
    let bytes = read_manifest_blob(state, name, digest, blob).await?;
    record_manifest(state, name, digest, bytes).await
}

async fn read_manifest_blob(
    state: &RegistryState,
    name: &RepoName,
    digest: &Digest,
    blob: crate::store::BlobReader,
) -> RegistryResult<Bytes> {
    if blob.size > state.limits.max_manifest_bytes as u64 {
        return Err(manifest_unknown(name, &digest.to_string()));
    }
    let mut bytes = Vec::with_capacity(blob.size as usize);
    let mut file = blob.file;
    file.read_to_end(&mut bytes)
        .await
        .map_err(|e| io_error("read manifest", e))?;
    Ok(Bytes::from(bytes))
}

/// Records a manifest whose bytes are a local blob in `name` (untagged).
pub(super) async fn record_manifest(
    state: &RegistryState,
    name: &RepoName,
    digest: &Digest,
    bytes: Bytes,
) -> RegistryResult<ManifestRecord> {
    let parsed = parse_manifest(&bytes, None)
        .map_err(|e| RegistryError::new(ErrorCode::ManifestInvalid, e.to_string()))?;
    state
        .store
        .put_manifest(name, manifest_put(digest.clone(), bytes, parsed, None))
        .await?;
    state
        .store
        .manifest(name, digest)?
        .ok_or_else(|| manifest_unknown(name, &digest.to_string()))
}

fn missing(
    state: &RegistryState,
    name: &RepoName,
    reference: &str,
) -> RegistryResult<RegistryError> {
    if state.store.repo_exists(name)? {
        Ok(manifest_unknown(name, reference))
    } else {
        Ok(RegistryError::new(
            ErrorCode::NameUnknown,
            format!("repository {name} is unknown"),
        ))
    }
}

/// The media types an `Accept` header lists, parameters dropped.
fn accept_values(req: &RequestParts) -> Vec<&str> {
    req.headers
        .get_all(header::ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|v| v.split(';').next().unwrap_or(v).trim())
        .filter(|v| !v.is_empty())
        .collect()
}

/// Whether an `Accept` header admits a media type. No header (or an empty
/// one) admits everything, as old clients send none.
fn accepts(req: &RequestParts, media_type: &str) -> bool {
    let values = accept_values(req);
    values.is_empty()
        || values
            .iter()
            .any(|v| *v == media_type || *v == "*/*" || *v == "application/*")
}

pub async fn get(
    state: &RegistryState,
    name: &RepoName,
    reference: &str,
    req: &RequestParts,
) -> RegistryResult<Response> {
    let (record, from, source) = lookup(state, name, reference, req).await?;
    if !accepts(req, &record.media_type) {
        // No conversion between formats: converting would change the digest.
        return Err(RegistryError::new(
            ErrorCode::ManifestUnknown,
            format!(
                "manifest {reference} is {} which the Accept header does not admit",
                record.media_type
            ),
        ));
    }
    let headers = [
        (header::CONTENT_TYPE, header_value(&record.media_type)),
        (
            header::HeaderName::from_static("docker-content-digest"),
            header_value(&record.digest.to_string()),
        ),
        (
            header::ETAG,
            header_value(&format!("\"{}\"", record.digest)),
        ),
        (
            header::CONTENT_LENGTH,
            header_value(&record.size.to_string()),
        ),
        (
            header::HeaderName::from_static("x-shoal-source"),
            header::HeaderValue::from_static(from),
        ),
    ];
    if req.is_head() {
        return Ok((StatusCode::OK, headers).into_response());
    }
    let Some(blob) = state.store.open_blob(&record.digest).await? else {
        return Err(manifest_unknown(name, reference));
    };
    // Manifests are at most a few MiB (bounded on push): read whole.
    let mut bytes = Vec::with_capacity(usize::try_from(blob.size).unwrap_or(0));
    let mut file = blob.file;
    file.read_to_end(&mut bytes)
        .await
        .map_err(|e| io_error("read manifest", e))?;
    let bytes = Bytes::from(bytes);
    if let Some(source) = &source {
        super::mirror::prefetch(state, source, &bytes);
    }
    Ok((StatusCode::OK, headers, bytes).into_response())
}

pub async fn put(
    state: &RegistryState,
    name: &RepoName,
    reference: &str,
    req: &RequestParts,
    body: Body,
) -> RegistryResult<Response> {
    let reference = parse_reference(reference)?;
    let limit = state.limits.max_manifest_bytes;
    let too_big = || {
        RegistryError::new(
            ErrorCode::SizeInvalid,
            format!("manifest is larger than the {limit}-byte limit"),
        )
        .with_status(StatusCode::PAYLOAD_TOO_LARGE)
    };
    if req.content_length().is_some_and(|len| len > limit as u64) {
        return Err(too_big());
    }
    let bytes: Bytes = http_body_util::Limited::new(body, limit)
        .collect()
        .await
        .map_err(|e| {
            if e.downcast_ref::<http_body_util::LengthLimitError>()
                .is_some()
            {
                too_big()
            } else {
                RegistryError::new(ErrorCode::ManifestInvalid, format!("reading manifest: {e}"))
            }
        })?
        .to_bytes();
    let parsed = parse_manifest(&bytes, req.header("content-type"))
        .map_err(|e| RegistryError::new(ErrorCode::ManifestInvalid, e.to_string()))?;
    let digest = match &reference {
        Reference::Digest(expected) => {
            let actual = Digest::compute(expected.algorithm(), &bytes);
            if &actual != expected {
                return Err(RegistryError::new(
                    ErrorCode::DigestInvalid,
                    format!("manifest digest is {actual}, not {expected}"),
                ));
            }
            actual
        }
        Reference::Tag(_) => Digest::sha256_of(&bytes),
    };
    for referenced in &parsed.references {
        // A client that saw the blob through HEAD (answered from peers) did
        // not upload it: make it local from the peers that hold it.
        if state.store.blob_size(referenced)?.is_none()
            && super::blobs::fetch_from_peers(state, referenced)
                .await
                .is_err()
        {
            return Err(RegistryError::new(
                ErrorCode::ManifestBlobUnknown,
                format!("manifest references unknown blob {referenced}"),
            )
            .with_detail(serde_json::json!({ "digest": referenced.to_string() })));
        }
    }
    let subject = parsed.subject.clone();
    let tag = match reference {
        Reference::Tag(t) => Some(t),
        Reference::Digest(_) => None,
    };
    state
        .store
        .put_manifest(name, manifest_put(digest.clone(), bytes, parsed, tag))
        .await?;
    let mut response = (
        StatusCode::CREATED,
        [
            (
                header::LOCATION,
                header_value(&format!("/v2/{name}/manifests/{digest}")),
            ),
            (
                header::HeaderName::from_static("docker-content-digest"),
                header_value(&digest.to_string()),
            ),
            (header::CONTENT_LENGTH, header_value("0")),
        ],
    )
        .into_response();
    if let Some(subject) = subject {
        // Tells the client this registry indexes referrers itself, so it
        // need not maintain a fallback tag.
        response.headers_mut().insert(
            header::HeaderName::from_static("oci-subject"),
            header_value(&subject.to_string()),
        );
    }
    Ok(response)
}

pub async fn delete(
    state: &RegistryState,
    name: &RepoName,
    reference: &str,
) -> RegistryResult<Response> {
    let deleted = match parse_reference(reference)? {
        Reference::Digest(d) => state.store.delete_manifest(name, &d).await?,
        Reference::Tag(t) => state.store.delete_tag(name, &t).await?,
    };
    if deleted {
        Ok(StatusCode::ACCEPTED.into_response())
    } else {
        Err(missing(state, name, reference)?)
    }
}
