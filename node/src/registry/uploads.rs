//! Blob pushes: `POST /v2/<name>/blobs/uploads/` (session, monolithic, mount),
//! `PATCH`/`PUT`/`GET`/`DELETE /v2/<name>/blobs/uploads/<id>`.
//!
//! Bodies are streamed into the store chunk by chunk, so an upload of any size
//! takes bounded memory. Data-carrying requests take a slot from a semaphore;
//! when none is free the client gets `TOO_MANY_REQUESTS` rather than a queue.

use axum::body::Body;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use futures_util::StreamExt;
use shoal_protocol::{Digest, RepoName};
use tokio::sync::OwnedSemaphorePermit;

use super::RegistryState;
use super::blobs::header_value;
use super::error::{ErrorCode, RegistryError, RegistryResult, upload_range_value};
use super::path::parse_digest;
use super::request::RequestParts;
use crate::store::{BlobInfo, UploadAppender, UploadId};

pub async fn start(
    state: &RegistryState,
    name: &RepoName,
    req: &RequestParts,
    body: Body,
) -> RegistryResult<Response> {
    if let Some(mount) = req.query("mount") {
        let digest = parse_digest(mount)?;
        if state.store.blob_size(&digest)?.is_some() {
            return Ok(blob_created(name, &digest));
        }
        // Not here: fall through to an ordinary session, as the spec says.
    } else if let Some(raw) = req.query("digest") {
        let digest = parse_digest(raw)?;
        let _slot = upload_slot(state)?;
        let mut writer = state.store.blob_writer()?;
        let mut stream = body.into_data_stream();
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.map_err(body_error)?;
            writer.write(&chunk).await?;
        }
        check_length(req, writer.written())?;
        let info = writer.commit(&digest).await?;
        return Ok(blob_created(name, &info.digest));
    }
    let id = state.store.create_upload(name)?;
    Ok(upload_accepted(name, &id, 0, StatusCode::ACCEPTED))
}

pub fn status(state: &RegistryState, name: &RepoName, id: &str) -> RegistryResult<Response> {
    let (id, offset) = session(state, name, id)?;
    Ok(upload_accepted(name, &id, offset, StatusCode::NO_CONTENT))
}

pub async fn patch(
    state: &RegistryState,
    name: &RepoName,
    id: &str,
    req: &RequestParts,
    body: Body,
) -> RegistryResult<Response> {
    let (id, offset) = session(state, name, id)?;
    let _slot = upload_slot(state)?;
    let new_offset = append(state, &id, offset, req, body).await?;
    Ok(upload_accepted(name, &id, new_offset, StatusCode::ACCEPTED))
}

pub async fn finish(
    state: &RegistryState,
    name: &RepoName,
    id: &str,
    req: &RequestParts,
    body: Body,
) -> RegistryResult<Response> {
    let raw = req.query("digest").ok_or_else(|| {
        RegistryError::new(
            ErrorCode::DigestInvalid,
            "digest query parameter is required",
        )
    })?;
    let digest = parse_digest(raw)?;
    let (id, offset) = session(state, name, id)?;
    let _slot = upload_slot(state)?;
    append(state, &id, offset, req, body).await?;
    let info: BlobInfo = state.store.complete_upload(&id, &digest).await?;
    Ok(blob_created(name, &info.digest))
}

pub async fn cancel(state: &RegistryState, name: &RepoName, id: &str) -> RegistryResult<Response> {
    let (id, _) = session(state, name, id)?;
    if state.store.cancel_upload(&id).await? {
        Ok(StatusCode::NO_CONTENT.into_response())
    } else {
        Err(unknown_upload(&id.to_string()))
    }
}

/// Appends a request body at the session's end, checking `Content-Range` (the
/// chunk must start where the upload ends: 416 otherwise) and the length.
async fn append(
    state: &RegistryState,
    id: &UploadId,
    offset: u64,
    req: &RequestParts,
    body: Body,
) -> RegistryResult<u64> {
    let range = match req.header("content-range") {
        Some(v) => Some(parse_content_range(v)?),
        None => None,
    };
    if let Some((start, end)) = range {
        if start != offset {
            return Err(RegistryError::new(
                ErrorCode::BlobUploadInvalid,
                format!("chunk starts at {start} but the upload is at {offset}"),
            )
            .with_status(StatusCode::RANGE_NOT_SATISFIABLE)
            .with_header(header::RANGE, upload_range_value(offset)));
        }
        if let Some(len) = req.content_length()
            && len != end - start + 1
        {
            return Err(RegistryError::new(
                ErrorCode::SizeInvalid,
                format!("Content-Range {start}-{end} does not match Content-Length {len}"),
            ));
        }
    }
    let mut appender: UploadAppender = state.store.upload_appender(id, offset).await?;
    let mut stream = body.into_data_stream();
    let mut failure = None;
    while let Some(chunk) = stream.next().await {
        match chunk {
            Ok(chunk) => appender.write(&chunk).await?,
            Err(e) => {
                failure = Some(body_error(e));
                break;
            }
        }
    }
    // Record what arrived even when the client went away mid-body: those bytes
    // came in order, and a client resuming asks for the offset first.
    let new_offset = appender.finish().await?;
    if let Some(err) = failure {
        return Err(err);
    }
    if let Some((start, end)) = range
        && new_offset - offset != end - start + 1
    {
        return Err(RegistryError::new(
            ErrorCode::SizeInvalid,
            format!(
                "Content-Range {start}-{end} announced {} bytes, {} arrived",
                end - start + 1,
                new_offset - offset
            ),
        ));
    }
    Ok(new_offset)
}

/// Parses `Content-Range: <start>-<end>` (also accepting an HTTP-style
/// `bytes <start>-<end>/<total>`).
fn parse_content_range(value: &str) -> RegistryResult<(u64, u64)> {
    let invalid = || {
        RegistryError::new(
            ErrorCode::BlobUploadInvalid,
            format!(
                "invalid Content-Range {:?}",
                value.chars().take(64).collect::<String>()
            ),
        )
        .with_status(StatusCode::RANGE_NOT_SATISFIABLE)
    };
    let v = value.trim();
    let v = v.strip_prefix("bytes ").unwrap_or(v);
    let v = v.split('/').next().unwrap_or(v);
    let (s, e) = v.split_once('-').ok_or_else(invalid)?;
    let start: u64 = s.trim().parse().map_err(|_| invalid())?;
    let end: u64 = e.trim().parse().map_err(|_| invalid())?;
    if end < start {
        return Err(invalid());
    }
    Ok((start, end))
}

fn session(state: &RegistryState, name: &RepoName, id: &str) -> RegistryResult<(UploadId, u64)> {
    let upload_id = UploadId::parse(id).ok_or_else(|| unknown_upload(id))?;
    match state.store.upload(&upload_id)? {
        Some(s) if &s.repo == name => Ok((upload_id, s.offset)),
        _ => Err(unknown_upload(id)),
    }
}

fn unknown_upload(id: &str) -> RegistryError {
    let shown: String = id.chars().take(64).collect();
    RegistryError::new(
        ErrorCode::BlobUploadUnknown,
        format!("upload {shown:?} is unknown"),
    )
}

fn upload_slot(state: &RegistryState) -> RegistryResult<OwnedSemaphorePermit> {
    state.upload_slots.clone().try_acquire_owned().map_err(|_| {
        RegistryError::new(
            ErrorCode::TooManyRequests,
            "too many uploads in progress; retry later",
        )
    })
}

fn check_length(req: &RequestParts, written: u64) -> RegistryResult<()> {
    match req.content_length() {
        Some(len) if len != written => Err(RegistryError::new(
            ErrorCode::SizeInvalid,
            format!("Content-Length {len} but {written} bytes arrived"),
        )),
        _ => Ok(()),
    }
}

fn body_error(e: axum::Error) -> RegistryError {
    RegistryError::new(
        ErrorCode::BlobUploadInvalid,
        format!("request body ended early: {e}"),
    )
}

fn blob_created(name: &RepoName, digest: &Digest) -> Response {
    (
        StatusCode::CREATED,
        [
            (
                header::LOCATION,
                header_value(&format!("/v2/{name}/blobs/{digest}")),
            ),
            (
                header::HeaderName::from_static("docker-content-digest"),
                header_value(&digest.to_string()),
            ),
            (header::CONTENT_LENGTH, header_value("0")),
        ],
    )
        .into_response()
}

fn upload_accepted(name: &RepoName, id: &UploadId, offset: u64, status: StatusCode) -> Response {
    (
        status,
        [
            (
                header::LOCATION,
                header_value(&format!("/v2/{name}/blobs/uploads/{id}")),
            ),
            (header::RANGE, upload_range_value(offset)),
            (
                header::HeaderName::from_static("docker-upload-uuid"),
                header_value(&id.to_string()),
            ),
            (header::CONTENT_LENGTH, header_value("0")),
        ],
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::parse_content_range;

    #[test]
    fn content_range_forms() {
        assert_eq!(parse_content_range("0-99").ok(), Some((0, 99)));
        assert_eq!(
            parse_content_range("bytes 100-199/*").ok(),
            Some((100, 199))
        );
        assert!(parse_content_range("5-4").is_err());
        assert!(parse_content_range("x-4").is_err());
        assert!(parse_content_range("").is_err());
    }
}
