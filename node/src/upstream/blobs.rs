//! Blobs from upstream, streamed: whole, from an offset (to resume), or a
//! fixed range (to split a blob among nodes).
//!
//! The bytes are not checked here: a blob is only known good once all of it
//! has been hashed, which is the store's job when it commits.

use std::fmt;
use std::pin::Pin;

use bytes::Bytes;
use futures_util::stream::{self, Stream, StreamExt};
use reqwest::header::{self, HeaderMap, HeaderValue};
use reqwest::{Method, Response, StatusCode};
use shoal_protocol::Digest;
use shoal_protocol::name::RepoName;

use super::client::{ApiCall, UpstreamClient};
use super::error::{UpstreamError, Wanted};
use crate::error_chain::error_chain;
use crate::limits::RateLimiter;

/// The bytes of a blob as they arrive.
pub type BlobStream = Pin<Box<dyn Stream<Item = Result<Bytes, UpstreamError>> + Send>>;

/// A blob (or part of one) on its way from upstream.
pub struct UpstreamBlob {
    /// The whole blob's size, when the upstream said.
    pub size: Option<u64>,
    /// Offset of the first byte the stream yields.
    pub start: u64,
    /// How many bytes the stream yields, when known.
    pub len: Option<u64>,
    pub stream: BlobStream,
}

impl fmt::Debug for UpstreamBlob {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("UpstreamBlob")
            .field("size", &self.size)
            .field("start", &self.start)
            .field("len", &self.len)
            .finish_non_exhaustive()
    }
}

impl UpstreamClient {
    /// `GET /v2/<repo>/blobs/<digest>` from byte `offset` to the end.
    pub async fn blob(
        &self,
        host: &str,
        repo: &RepoName,
        digest: &Digest,
        offset: u64,
    ) -> Result<UpstreamBlob, UpstreamError> {
        self.blob_part(host, repo, digest, offset, None).await
    }

    /// Bytes `start..=end` of a blob (fewer if the blob ends sooner).
    pub async fn blob_range(
        &self,
        host: &str,
        repo: &RepoName,
        digest: &Digest,
        start: u64,
        end_inclusive: u64,
    ) -> Result<UpstreamBlob, UpstreamError> {
        if end_inclusive < start {
            return Err(UpstreamError::RangeNotSatisfiable {
                host: host.to_owned(),
                start,
            });
        }
        self.blob_part(host, repo, digest, start, Some(end_inclusive))
            .await
    }

    /// A blob's size, from `HEAD /v2/<repo>/blobs/<digest>` (no byte of it
    /// is sent).
    pub async fn blob_size(
        &self,
        host: &str,
        repo: &RepoName,
        digest: &Digest,
    ) -> Result<u64, UpstreamError> {
        let response = self
            .send(ApiCall {
                host,
                repo,
                method: Method::HEAD,
                tail: format!("blobs/{digest}"),
                headers: HeaderMap::new(),
                whole_timeout: None,
                wanted: Wanted::Blob,
                what: digest.to_string(),
            })
            .await?;
        // The header, not the body's length: a HEAD response has no body.
        response
            .headers()
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse().ok())
            .filter(|_| response.status() == StatusCode::OK)
            .ok_or_else(|| UpstreamError::BadResponse {
                host: host.to_owned(),
                reason: format!("answered {} with no size to a blob HEAD", response.status()),
            })
    }

    async fn blob_part(
        &self,
        host: &str,
        repo: &RepoName,
        digest: &Digest,
        start: u64,
        end: Option<u64>,
    ) -> Result<UpstreamBlob, UpstreamError> {
        let mut headers = HeaderMap::new();
        if start > 0 || end.is_some() {
            let range = match end {
                Some(end) => format!("bytes={start}-{end}"),
                None => format!("bytes={start}-"),
            };
            if let Ok(value) = HeaderValue::from_str(&range) {
                headers.insert(header::RANGE, value);
            }
        }
        let response = self
            .send(ApiCall {
                host,
                repo,
                method: Method::GET,
                tail: format!("blobs/{digest}"),
                headers,
                whole_timeout: None,
                wanted: Wanted::Blob,
                what: digest.to_string(),
            })
            .await?;
        let bad = |reason: String| UpstreamError::BadResponse {
            host: host.to_owned(),
            reason,
        };
        let wanted_len = end.map(|end| end - start + 1);
        match response.status() {
            StatusCode::PARTIAL_CONTENT => {
                let range = content_range(response.headers())
                    .ok_or_else(|| bad("a 206 without a usable Content-Range".into()))?;
                if range.first != start || end.is_some_and(|end| range.last > end) {
                    return Err(bad(format!(
                        "asked for bytes from {start}, got {}-{}",
                        range.first, range.last
                    )));
                }
                let len = range.last - range.first + 1;
                Ok(UpstreamBlob {
                    size: range.total,
                    start,
                    len: Some(len),
                    stream: body(host, response, 0, Some(len), &self.download_limit),
                })
            }
            StatusCode::OK => {
                // The upstream ignored the range: skip what was not asked for.
                let size = response.content_length();
                if size.is_some_and(|size| start > 0 && start >= size) {
                    return Err(UpstreamError::RangeNotSatisfiable {
                        host: host.to_owned(),
                        start,
                    });
                }
                let len = size.map(|size| {
                    let rest = size - start;
                    wanted_len.map_or(rest, |wanted| rest.min(wanted))
                });
                Ok(UpstreamBlob {
                    size,
                    start,
                    len,
                    stream: body(host, response, start, wanted_len, &self.download_limit),
                })
            }
            StatusCode::RANGE_NOT_SATISFIABLE => Err(UpstreamError::RangeNotSatisfiable {
                host: host.to_owned(),
                start,
            }),
            status => Err(bad(format!("answered {status} to a blob GET"))),
        }
    }
}

/// The body as a stream, dropping the first `skip` bytes and ending after
/// `take` more (when given). Every piece received is paid for at `limit`
/// before the next is read, so a limited node reads (and the upstream
/// sends, once TCP's window is full) no faster than the limit.
fn body(
    host: &str,
    response: Response,
    skip: u64,
    take: Option<u64>,
    limit: &RateLimiter,
) -> BlobStream {
    let host: std::sync::Arc<str> = host.into();
    let limit = limit.clone();
    let chunks = response.bytes_stream().then(move |item| {
        let (host, limit) = (host.clone(), limit.clone());
        async move {
            let bytes = item.map_err(|e| UpstreamError::Unreachable {
                host: host.to_string(),
                reason: format!("blob stream broke: {}", error_chain(&e)),
            })?;
            limit.acquire(bytes.len() as u64).await;
            Ok(bytes)
        }
    });
    if skip == 0 && take.is_none() {
        return Box::pin(chunks);
    }
    let window = Window {
        skip,
        left: take.unwrap_or(u64::MAX),
    };
    Box::pin(stream::unfold(
        (Box::pin(chunks), window),
        |(mut chunks, mut window)| async move {
            loop {
                if window.left == 0 {
                    return None;
                }
                match chunks.next().await? {
                    Err(e) => return Some((Err(e), (chunks, window))),
                    Ok(chunk) => {
                        if let Some(part) = window.cut(chunk) {
                            return Some((Ok(part), (chunks, window)));
                        }
                    }
                }
            }
        },
    ))
}

/// Which bytes of a stream to keep: after `skip`, at most `left`.
#[derive(Debug, Clone, Copy)]
struct Window {
    skip: u64,
    left: u64,
}

impl Window {
    /// The part of `chunk` inside the window; `None` when nothing is.
    fn cut(&mut self, mut chunk: Bytes) -> Option<Bytes> {
        let skipped = self.skip.min(chunk.len() as u64);
        self.skip -= skipped;
        let _ = chunk.split_to(skipped as usize);
        let kept = self.left.min(chunk.len() as u64);
        self.left -= kept;
        chunk.truncate(kept as usize);
        (!chunk.is_empty()).then_some(chunk)
    }
}

/// `Content-Range: bytes <first>-<last>/<total or *>`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct ContentRange {
    first: u64,
    last: u64,
    total: Option<u64>,
}

fn content_range(headers: &HeaderMap) -> Option<ContentRange> {
    let value = headers.get(header::CONTENT_RANGE)?.to_str().ok()?;
    parse_content_range(value)
}

fn parse_content_range(value: &str) -> Option<ContentRange> {
    let rest = value.trim().strip_prefix("bytes ")?;
    let (span, total) = rest.split_once('/')?;
    let (first, last) = span.split_once('-')?;
    let first: u64 = first.trim().parse().ok()?;
    let last: u64 = last.trim().parse().ok()?;
    let total = match total.trim() {
        "*" => None,
        n => Some(n.parse::<u64>().ok()?),
    };
    let valid = first <= last && total.is_none_or(|t| last < t);
    valid.then_some(ContentRange { first, last, total })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_ranges() {
        assert_eq!(
            parse_content_range("bytes 10-19/100"),
            Some(ContentRange {
                first: 10,
                last: 19,
                total: Some(100)
            })
        );
        assert_eq!(
            parse_content_range("bytes 0-0/*"),
            Some(ContentRange {
                first: 0,
                last: 0,
                total: None
            })
        );
        for bad in [
            "bytes 5-4/10",
            "bytes 0-10/10",
            "bytes */10",
            "items 0-1/2",
            "bytes 0-1",
            "bytes a-b/c",
            "",
        ] {
            assert_eq!(parse_content_range(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn windows_skip_and_stop() {
        let data: Vec<u8> = (0..100).collect();
        for (skip, take) in [
            (0, 100),
            (0, 1),
            (1, 99),
            (37, 20),
            (99, 1),
            (50, 1000),
            (100, 5),
        ] {
            for chunk_size in [1, 7, 50, 100] {
                let mut window = Window { skip, left: take };
                let mut out = Vec::new();
                for chunk in data.chunks(chunk_size) {
                    if let Some(part) = window.cut(Bytes::copy_from_slice(chunk)) {
                        out.extend_from_slice(&part);
                    }
                }
                let from = (skip as usize).min(100);
                let to = (from + take as usize).min(100);
                assert_eq!(
                    out,
                    &data[from..to],
                    "skip {skip} take {take} chunk {chunk_size}"
                );
            }
        }
    }
}
