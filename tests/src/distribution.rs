//! A small OCI Distribution client over reqwest for tests that need to
//! control requests byte by byte (chunked uploads cut off mid-body). Every
//! error names the request and quotes the response, so a failure report
//! says exactly what the registry answered.

use std::time::Duration;

use bytes::Bytes;
use futures_util::StreamExt;
use reqwest::{Method, RequestBuilder, Response, StatusCode};
use sha2::{Digest as _, Sha256};

const REQUEST_TIMEOUT: Duration = Duration::from_secs(180);

#[derive(Debug, Clone)]
pub struct Client {
    http: reqwest::Client,
    base: String,
}

/// A blob read back: its length and the digest of what arrived.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fetched {
    pub len: u64,
    pub digest: String,
}

impl Client {
    /// A client for `http://host:port`.
    pub fn new(base: impl Into<String>) -> Result<Client, String> {
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(5))
            .timeout(REQUEST_TIMEOUT)
            .build()
            .map_err(|e| format!("building an HTTP client: {e}"))?;
        Ok(Client {
            http,
            base: base.into(),
        })
    }

    pub fn http(&self) -> &reqwest::Client {
        &self.http
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// Makes a `Location` header absolute.
    pub fn resolve(&self, location: &str) -> Result<String, String> {
        if location.starts_with("http://") || location.starts_with("https://") {
            Ok(location.to_owned())
        } else if location.starts_with('/') {
            Ok(self.url(location))
        } else {
            Err(format!("unusable Location {location:?}"))
        }
    }

    /// `POST /v2/<repo>/blobs/uploads/`: 202 and the session's URL.
    pub async fn start_upload(&self, repo: &str) -> Result<String, String> {
        let url = self.url(&format!("/v2/{repo}/blobs/uploads/"));
        let resp = send(self.http.post(&url), "POST", &url).await?;
        let resp = expect_status(resp, StatusCode::ACCEPTED, "POST", &url).await?;
        self.location(&resp, "POST", &url)
    }

    /// A `PATCH` of bytes `start..start+len` with the given body (which may
    /// be a stream), for callers that need to hold the request open.
    pub fn patch_request(
        &self,
        session: &str,
        start: u64,
        len: u64,
        body: reqwest::Body,
    ) -> RequestBuilder {
        let end = (start + len).saturating_sub(1);
        self.http
            .patch(session)
            .header("Content-Type", "application/octet-stream")
            .header("Content-Range", format!("{start}-{end}"))
            .header("Content-Length", len.to_string())
            .body(body)
    }

    /// One chunk: 202 with `Range: 0-<end>` and the next session URL.
    pub async fn patch_chunk(
        &self,
        session: &str,
        start: u64,
        chunk: Bytes,
    ) -> Result<String, String> {
        let len = chunk.len() as u64;
        let what = format!(
            "PATCH {session} (Content-Range {start}-{})",
            start + len - 1
        );
        let resp = send(
            self.patch_request(session, start, len, chunk.into()),
            &what,
            "",
        )
        .await?;
        let resp = expect_status(resp, StatusCode::ACCEPTED, &what, "").await?;
        let range = header(&resp, "Range");
        let want = format!("0-{}", start + len - 1);
        if range.as_deref() != Some(want.as_str()) {
            return Err(format!(
                "{what} answered Range {range:?}, expected {want:?}"
            ));
        }
        self.location(&resp, &what, "")
    }

    /// `PUT <session>?digest=<digest>` (optionally with the last bytes):
    /// 201 and the blob's URL.
    pub async fn finish_upload(
        &self,
        session: &str,
        digest: &str,
        last: Option<Bytes>,
    ) -> Result<String, String> {
        let sep = if session.contains('?') { '&' } else { '?' };
        let url = format!("{session}{sep}digest={digest}");
        let mut req = self
            .http
            .put(&url)
            .header("Content-Type", "application/octet-stream");
        req = match last {
            Some(bytes) => req
                .header("Content-Length", bytes.len().to_string())
                .body(bytes),
            None => req.header("Content-Length", "0"),
        };
        let resp = send(req, "PUT", &url).await?;
        let resp = expect_status(resp, StatusCode::CREATED, "PUT", &url).await?;
        self.location(&resp, "PUT", &url)
    }

    /// Uploads a whole blob in one POST + PUT; returns its digest.
    pub async fn push_blob(&self, repo: &str, bytes: Bytes) -> Result<String, String> {
        let digest = crate::oci::sha256_digest(&bytes);
        let session = self.start_upload(repo).await?;
        self.finish_upload(&session, &digest, Some(bytes)).await?;
        Ok(digest)
    }

    /// `GET <session>`: the raw response (204 with `Range`, or 404).
    pub async fn upload_status(&self, session: &str) -> Result<Response, String> {
        send(self.http.get(session), "GET", session).await
    }

    /// `DELETE <session>`.
    pub async fn cancel_upload(&self, session: &str) -> Result<Response, String> {
        send(self.http.delete(session), "DELETE", session).await
    }

    /// `HEAD /v2/<repo>/blobs/<digest>`: the raw response.
    pub async fn head_blob(&self, repo: &str, digest: &str) -> Result<Response, String> {
        let url = self.url(&format!("/v2/{repo}/blobs/{digest}"));
        send(self.http.head(&url), "HEAD", &url).await
    }

    /// `GET /v2/<repo>/blobs/<digest>` (200 expected), hashing the body as
    /// it streams in.
    pub async fn fetch_blob(&self, repo: &str, digest: &str) -> Result<Fetched, String> {
        let url = self.url(&format!("/v2/{repo}/blobs/{digest}"));
        let resp = send(self.http.get(&url), "GET", &url).await?;
        let resp = expect_status(resp, StatusCode::OK, "GET", &url).await?;
        let mut hasher = Sha256::new();
        let mut len = 0u64;
        let mut body = resp.bytes_stream();
        while let Some(chunk) = body.next().await {
            let chunk =
                chunk.map_err(|e| format!("GET {url}: body cut off after {len} bytes: {e}"))?;
            len += chunk.len() as u64;
            hasher.update(&chunk);
        }
        Ok(Fetched {
            len,
            digest: format!("sha256:{}", hex::encode(hasher.finalize())),
        })
    }

    /// `PUT /v2/<repo>/manifests/<reference>`: 201; returns the
    /// `Docker-Content-Digest` header.
    pub async fn put_manifest(
        &self,
        repo: &str,
        reference: &str,
        media_type: &str,
        body: Bytes,
    ) -> Result<String, String> {
        let url = self.url(&format!("/v2/{repo}/manifests/{reference}"));
        let req = self
            .http
            .put(&url)
            .header("Content-Type", media_type)
            .body(body);
        let resp = send(req, "PUT", &url).await?;
        let resp = expect_status(resp, StatusCode::CREATED, "PUT", &url).await?;
        header(&resp, "Docker-Content-Digest")
            .ok_or_else(|| format!("PUT {url}: no Docker-Content-Digest"))
    }

    /// `GET /v2/<repo>/manifests/<reference>` accepting `media_type`: 200
    /// and the body.
    pub async fn get_manifest(
        &self,
        repo: &str,
        reference: &str,
        media_type: &str,
    ) -> Result<Bytes, String> {
        let url = self.url(&format!("/v2/{repo}/manifests/{reference}"));
        let resp = send(
            self.http.get(&url).header("Accept", media_type),
            "GET",
            &url,
        )
        .await?;
        let resp = expect_status(resp, StatusCode::OK, "GET", &url).await?;
        resp.bytes()
            .await
            .map_err(|e| format!("GET {url}: reading the body: {e}"))
    }

    /// Any request, returning the raw response.
    pub async fn request(&self, method: Method, path: &str) -> Result<Response, String> {
        let url = self.url(path);
        send(
            self.http.request(method.clone(), &url),
            method.as_str(),
            &url,
        )
        .await
    }

    fn location(&self, resp: &Response, what: &str, url: &str) -> Result<String, String> {
        let location = header(resp, "Location")
            .ok_or_else(|| format!("{what} {url} answered {} without Location", resp.status()))?;
        self.resolve(&location)
    }
}

/// A response header as text.
pub fn header(resp: &Response, name: &str) -> Option<String> {
    resp.headers()
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
}

async fn send(req: RequestBuilder, what: &str, url: &str) -> Result<Response, String> {
    req.send()
        .await
        .map_err(|e| format!("{what} {url}: no response: {e}"))
}

/// The response if its status is `want`; otherwise an error quoting the
/// status, headers and body.
pub async fn expect_status(
    resp: Response,
    want: StatusCode,
    what: &str,
    url: &str,
) -> Result<Response, String> {
    if resp.status() == want {
        return Ok(resp);
    }
    Err(describe_unexpected(resp, &format!("{want}"), what, url).await)
}

/// Renders an unexpected response for a failure message.
pub async fn describe_unexpected(resp: Response, want: &str, what: &str, url: &str) -> String {
    let status = resp.status();
    let headers: Vec<String> = resp
        .headers()
        .iter()
        .map(|(k, v)| format!("{k}: {}", v.to_str().unwrap_or("<binary>")))
        .collect();
    let body = resp
        .text()
        .await
        .unwrap_or_else(|e| format!("<unreadable body: {e}>"));
    let body: String = body.chars().take(2000).collect();
    format!(
        "{what} {url}: expected {want}, got {status}\n{}\n\n{body}",
        headers.join("\n")
    )
}
