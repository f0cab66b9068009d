//! `GET`/`HEAD`/`DELETE /v2/<name>/blobs/<digest>`.
//!
//! Blobs are content-addressed and shared by every repository: the name is
//! validated but any repository may read any blob it names by digest (the
//! global namespace shoal is built on). Bodies are streamed from the file with
//! bounded read-ahead (`blob_stream.rs`), never read whole.

use std::io::SeekFrom;

use axum::body::Body;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use shoal_protocol::{Digest, RepoName};
use tokio::io::AsyncSeekExt;

use super::RegistryState;
use super::blob_stream::blob_stream;
use super::error::{ErrorCode, RegistryError, RegistryResult};
use super::path::parse_digest;
use super::range::{RangeRequest, parse_range};
use super::request::RequestParts;
use crate::transfer::{FetchError, Finished, UpstreamSource};

pub async fn get(
    state: &RegistryState,
    name: &RepoName,
    digest: &str,
    req: &RequestParts,
) -> RegistryResult<Response> {
    let digest = parse_digest(digest)?;
    let blob = match state.store.open_blob(&digest).await? {
        Some(blob) => blob,
        None if req.is_head() => return head_from_peers(state, &digest).await,
        None if req.header("range").is_none() => {
            let source = state.mirror.as_ref().and_then(|m| m.source(req, name));
            if let Some(response) = stream_from_peers(state, &digest, source).await? {
                return Ok(response);
            }
            state
                .store
                .open_blob(&digest)
                .await?
                .ok_or_else(|| unknown(&digest))?
        }
        None => {
            // A range of a blob that is not here: the whole blob first.
            let source = state.mirror.as_ref().and_then(|m| m.source(req, name));
            match &state.fetcher {
                Some(fetcher) => match fetcher.begin(&digest, source).finished().await {
                    Finished::Committed(_) => {}
                    Finished::Failed { .. } => return Err(unknown(&digest)),
                },
                None => return Err(unknown(&digest)),
            }
            state
                .store
                .open_blob(&digest)
                .await?
                .ok_or_else(|| unknown(&digest))?
        }
    };
    let size = blob.size;
    let digest_header = header_value(&digest.to_string());
    let common = [
        (
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/octet-stream"),
        ),
        (
            header::HeaderName::from_static("docker-content-digest"),
            digest_header.clone(),
        ),
        (header::ETAG, header_value(&format!("\"{digest}\""))),
        (header::ACCEPT_RANGES, HeaderValue::from_static("bytes")),
        (
            header::HeaderName::from_static("x-shoal-source"),
            HeaderValue::from_static("local"),
        ),
    ];
    let (status, start, len) = match parse_range(req.header("range"), size) {
        RangeRequest::Whole => (StatusCode::OK, 0, size),
        RangeRequest::Partial { start, end } => {
            (StatusCode::PARTIAL_CONTENT, start, end - start + 1)
        }
        RangeRequest::Unsatisfiable => {
            return Err(RegistryError::new(
                ErrorCode::RangeInvalid,
                format!("range not satisfiable for a blob of {size} bytes"),
            )
            .with_header(
                header::CONTENT_RANGE,
                header_value(&format!("bytes */{size}")),
            ));
        }
    };
    let mut response = if req.is_head() {
        // Content-Length is set below; hyper sends no body for HEAD.
        (status, common).into_response()
    } else {
        let mut file = blob.file;
        if start > 0 {
            file.seek(SeekFrom::Start(start))
                .await
                .map_err(|e| io_error("seek blob", e))?;
        }
        let file = file.into_std().await;
        (status, common, Body::from_stream(blob_stream(file, len))).into_response()
    };
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_LENGTH, HeaderValue::from(len));
    if status == StatusCode::PARTIAL_CONTENT {
        let end = start + len - 1;
        headers.insert(
            header::CONTENT_RANGE,
            header_value(&format!("bytes {start}-{end}/{size}")),
        );
    }
    Ok(response)
}

fn unknown(digest: &Digest) -> RegistryError {
    RegistryError::new(ErrorCode::BlobUnknown, format!("blob {digest} is unknown"))
}

/// Starts (or joins) the fetch of a blob from peers and streams it to the
/// client as its chunks are checked, in order; the last chunk only once
/// the whole blob has its digest — if it never does, the body ends in an
/// error and the connection is cut, so a client never gets a complete
/// wrong blob. `None` when the blob became local meanwhile (serve it from
/// the store); `BLOB_UNKNOWN` when no peer has it.
async fn stream_from_peers(
    state: &RegistryState,
    digest: &Digest,
    source: Option<UpstreamSource>,
) -> RegistryResult<Option<Response>> {
    let Some(fetcher) = &state.fetcher else {
        return Err(unknown(digest));
    };
    let download = fetcher.begin(digest, source);
    let progress = download.started().await;
    let size = match (&progress.finished, progress.size) {
        (Some(Finished::Committed(_)), _) => return Ok(None),
        (Some(Finished::Failed { reason, not_found }), _) => {
            tracing::info!(%digest, %reason, "not available from peers or upstream");
            if *not_found || !reason.starts_with("upstream") {
                return Err(unknown(digest));
            }
            return Err(RegistryError::new(ErrorCode::Unknown, reason.clone())
                .with_status(StatusCode::BAD_GATEWAY));
        }
        (None, Some(size)) => size,
        (None, None) => return Err(unknown(digest)),
    };
    let digest_header = header_value(&digest.to_string());
    let mut response = (
        StatusCode::OK,
        [
            (
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/octet-stream"),
            ),
            (
                header::HeaderName::from_static("docker-content-digest"),
                digest_header,
            ),
            (header::ETAG, header_value(&format!("\"{digest}\""))),
            (header::ACCEPT_RANGES, HeaderValue::from_static("bytes")),
            (
                header::HeaderName::from_static("x-shoal-source"),
                HeaderValue::from_static(progress.source.unwrap_or("peers")),
            ),
        ],
        Body::from_stream(download.body()),
    )
        .into_response();
    response
        .headers_mut()
        .insert(header::CONTENT_LENGTH, HeaderValue::from(size));
    Ok(Some(response))
}

/// Makes a blob local from peers; `BLOB_UNKNOWN` when none has it. The
/// fetch checks every chunk and the whole blob before anything is stored.
pub async fn fetch_from_peers(state: &RegistryState, digest: &Digest) -> RegistryResult<()> {
    let Some(fetcher) = &state.fetcher else {
        return Err(unknown(digest));
    };
    match fetcher.fetch(digest).await {
        Ok(_) => Ok(()),
        Err(FetchError::Store(e)) => Err(e.into()),
        Err(e) => {
            tracing::info!(%digest, error = %e, "not available from peers");
            Err(unknown(digest))
        }
    }
}

/// `HEAD` of a blob that is not local: a provider's size, nothing downloaded.
async fn head_from_peers(state: &RegistryState, digest: &Digest) -> RegistryResult<Response> {
    let size = match &state.fetcher {
        Some(fetcher) => fetcher.remote_size(digest).await,
        None => None,
    };
    let size = size.ok_or_else(|| unknown(digest))?;
    Ok((
        StatusCode::OK,
        [
            (
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/octet-stream"),
            ),
            (
                header::HeaderName::from_static("docker-content-digest"),
                header_value(&digest.to_string()),
            ),
            (header::CONTENT_LENGTH, HeaderValue::from(size)),
        ],
    )
        .into_response())
}

pub async fn delete(state: &RegistryState, digest: &str) -> RegistryResult<Response> {
    let digest = parse_digest(digest)?;
    if state.store.delete_blob(&digest).await? {
        Ok(StatusCode::ACCEPTED.into_response())
    } else {
        Err(RegistryError::new(
            ErrorCode::BlobUnknown,
            format!("blob {digest} is unknown"),
        ))
    }
}

/// Header values built from validated digests and numbers are always valid;
/// the fallback only guards against a future caller passing something else.
pub fn header_value(s: &str) -> HeaderValue {
    HeaderValue::from_str(s).unwrap_or(HeaderValue::from_static("invalid"))
}

pub fn io_error(op: &str, e: std::io::Error) -> RegistryError {
    RegistryError::new(ErrorCode::Unknown, format!("{op}: {e}"))
}
