//! An upstream registry behind a slow uplink, for the tests of fetching
//! from upstream together: it serves blobs (with single `Range` requests)
//! at a fixed pace and counts every byte it sends, as the origin link's
//! counter would.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use shoal_protocol::Digest;

/// Bytes sent between two pauses.
const PIECE: usize = 64 * 1024;

struct Origin {
    blobs: HashMap<String, Bytes>,
    bytes_per_sec: u64,
    sent: AtomicU64,
    /// The byte ranges (inclusive) of every blob GET, in order.
    asked: std::sync::Mutex<Vec<(u64, u64)>>,
}

pub struct SlowOrigin {
    pub url: String,
    origin: Arc<Origin>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for SlowOrigin {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl SlowOrigin {
    /// Serves `blobs` (under any repository) at `bytes_per_sec`.
    pub async fn start(blobs: &[Vec<u8>], bytes_per_sec: u64) -> SlowOrigin {
        let origin = Arc::new(Origin {
            blobs: blobs
                .iter()
                .map(|b| (Digest::sha256_of(b).to_string(), Bytes::from(b.clone())))
                .collect(),
            bytes_per_sec,
            sent: AtomicU64::new(0),
            asked: std::sync::Mutex::new(Vec::new()),
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        let router = Router::new().fallback(handle).with_state(origin.clone());
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, router).await;
        });
        SlowOrigin {
            url: format!("http://{addr}"),
            origin,
            task,
        }
    }

    /// The byte ranges (first, last) blob GETs asked for so far.
    pub fn asked(&self) -> Vec<(u64, u64)> {
        self.origin
            .asked
            .lock()
            .map(|a| a.clone())
            .unwrap_or_default()
    }

    /// Blob bytes sent so far, to everyone.
    pub fn sent(&self) -> u64 {
        self.origin.sent.load(Ordering::SeqCst)
    }

    /// Returns once the origin has sent `bytes` blob bytes; fails the test
    /// if that takes more than a minute.
    pub async fn wait_until_sent(&self, bytes: usize) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
        while (self.sent() as usize) < bytes {
            assert!(
                tokio::time::Instant::now() < deadline,
                "the origin sent {} of the {bytes} bytes waited for",
                self.sent()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

async fn handle(
    State(origin): State<Arc<Origin>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
) -> Response {
    let path = uri.path();
    if path == "/v2/" {
        return StatusCode::OK.into_response();
    }
    let Some((_, digest)) = path.rsplit_once("/blobs/") else {
        return StatusCode::NOT_FOUND.into_response();
    };
    let Some(blob) = origin.blobs.get(digest).cloned() else {
        return StatusCode::NOT_FOUND.into_response();
    };
    let len = blob.len() as u64;
    let range = headers
        .get(header::RANGE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("bytes="))
        .and_then(|v| v.split_once('-'))
        .and_then(|(a, b)| {
            let start = a.parse::<u64>().ok()?;
            let end = if b.is_empty() {
                len - 1
            } else {
                b.parse::<u64>().ok()?.min(len - 1)
            };
            (start <= end).then_some((start, end))
        });
    let (status, start, end) = match range {
        Some((s, e)) => (StatusCode::PARTIAL_CONTENT, s, e),
        None => (StatusCode::OK, 0, len.saturating_sub(1)),
    };
    let body_len = if len == 0 { 0 } else { end - start + 1 };
    let mut response_headers = vec![
        (header::CONTENT_LENGTH, body_len.to_string()),
        (header::CONTENT_TYPE, "application/octet-stream".to_owned()),
        (
            header::HeaderName::from_static("docker-content-digest"),
            digest.to_owned(),
        ),
    ];
    if status == StatusCode::PARTIAL_CONTENT {
        response_headers.push((header::CONTENT_RANGE, format!("bytes {start}-{end}/{len}")));
    }
    let mut response = (status, Body::empty()).into_response();
    for (name, value) in response_headers {
        response
            .headers_mut()
            .insert(name, value.parse().expect("header value"));
    }
    if method == Method::HEAD || body_len == 0 {
        return response;
    }
    if let Ok(mut asked) = origin.asked.lock() {
        asked.push((start, end));
    }
    let slice = blob.slice(start as usize..=end as usize);
    let pause = Duration::from_secs_f64(PIECE as f64 / origin.bytes_per_sec as f64);
    let stream = futures_util::stream::unfold((slice, origin), move |(rest, origin)| async move {
        if rest.is_empty() {
            return None;
        }
        tokio::time::sleep(pause).await;
        let n = rest.len().min(PIECE);
        let piece = rest.slice(..n);
        origin.sent.fetch_add(n as u64, Ordering::SeqCst);
        Some((Ok::<_, std::io::Error>(piece), (rest.slice(n..), origin)))
    });
    *response.body_mut() = Body::from_stream(stream);
    response
}
