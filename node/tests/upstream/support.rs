//! A fake registry on `127.0.0.1:0`, scripted per test, and the client
//! settings the tests use.

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use futures_util::StreamExt;
use shoal_node::upstream::{UpstreamBlob, UpstreamClient, UpstreamSettings};
use shoal_protocol::Digest;

pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";

/// Settings for a test: the registry at `base` is the default upstream, over
/// plain HTTP, with short timeouts and fast retries.
pub fn settings_for(base: &str) -> UpstreamSettings {
    let mut settings = UpstreamSettings::for_url(base).expect("valid upstream URL");
    settings.connect_timeout = Duration::from_secs(2);
    settings.request_timeout = Duration::from_secs(5);
    settings.retries = 2;
    settings
}

pub fn client_for(base: &str) -> UpstreamClient {
    UpstreamClient::new(&settings_for(base)).expect("client")
}

pub fn client_with_credentials(base: &str, user: &str, password: &str) -> UpstreamClient {
    let mut settings = settings_for(base);
    let entry = settings
        .registries
        .first_mut()
        .expect("the upstream's entry");
    entry.username = Some(user.to_owned());
    entry.password = Some(password.to_owned());
    UpstreamClient::new(&settings).expect("client")
}

/// Everything a blob stream yields.
pub async fn collect(blob: UpstreamBlob) -> Vec<u8> {
    let mut stream = blob.stream;
    let mut out = Vec::new();
    while let Some(chunk) = stream.next().await {
        out.extend_from_slice(&chunk.expect("blob chunk"));
    }
    out
}

/// Deterministic bytes that are not all alike.
pub fn pattern(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u32).wrapping_mul(2_654_435_761).to_be_bytes()[0] ^ seed)
        .collect()
}

/// A minimal OCI image manifest naming a config and one layer.
pub fn image_manifest(config: &[u8], layer: &[u8]) -> Vec<u8> {
    serde_json::json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": {
            "mediaType": "application/vnd.oci.image.config.v1+json",
            "digest": Digest::sha256_of(config).to_string(),
            "size": config.len(),
        },
        "layers": [{
            "mediaType": "application/vnd.oci.image.layer.v1.tar",
            "digest": Digest::sha256_of(layer).to_string(),
            "size": layer.len(),
        }],
    })
    .to_string()
    .into_bytes()
}

/// How the fake registry wants clients to authenticate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FakeAuth {
    None,
    /// 401 with a Bearer challenge pointing at its own `/token`, which
    /// wants these basic credentials (`None`: hands out anonymous tokens).
    Bearer {
        credentials: Option<(String, String)>,
        expires_in: Option<u64>,
    },
    /// 401 with a Basic challenge unless these credentials come.
    Basic {
        header: String,
    },
}

/// One scripted answer that takes the place of the real one.
#[derive(Debug, Clone)]
pub struct Scripted {
    pub status: StatusCode,
    pub retry_after: Option<String>,
}

#[derive(Debug)]
pub struct FakeState {
    pub auth: FakeAuth,
    /// `repo:reference` → (media type, body).
    pub manifests: Mutex<HashMap<String, (String, Vec<u8>)>>,
    /// A `Docker-Content-Digest` to send instead of the true one.
    pub lying_digest_header: Mutex<Option<String>>,
    pub blobs: Mutex<HashMap<String, Vec<u8>>>,
    /// Answer `Range` requests with the whole blob (200).
    pub ignore_range: bool,
    /// Send blob GETs to `<this>/storage/<digest>` with a 307.
    pub redirect_blobs_to: Mutex<Option<String>>,
    /// Answers given, in order, before the real ones.
    pub script: Mutex<VecDeque<Scripted>>,
    /// API requests received (not counting `/token`).
    pub api_hits: AtomicUsize,
    pub token_hits: AtomicUsize,
    /// The query strings `/token` was called with.
    pub token_queries: Mutex<Vec<String>>,
    /// What `/storage/…` received: (Authorization present, Range).
    pub storage_requests: Mutex<Vec<(bool, Option<String>)>>,
    issued: Mutex<Vec<String>>,
    addr: Mutex<Option<SocketAddr>>,
}

impl FakeState {
    pub fn new(auth: FakeAuth) -> FakeState {
        FakeState {
            auth,
            manifests: Mutex::default(),
            lying_digest_header: Mutex::default(),
            blobs: Mutex::default(),
            ignore_range: false,
            redirect_blobs_to: Mutex::default(),
            script: Mutex::default(),
            api_hits: AtomicUsize::new(0),
            token_hits: AtomicUsize::new(0),
            token_queries: Mutex::default(),
            storage_requests: Mutex::default(),
            issued: Mutex::default(),
            addr: Mutex::default(),
        }
    }

    pub fn add_manifest(&self, repo: &str, tag: &str, media_type: &str, body: &[u8]) -> Digest {
        let digest = Digest::sha256_of(body);
        let mut manifests = self.manifests.lock().expect("lock");
        for reference in [tag.to_owned(), digest.to_string()] {
            manifests.insert(
                format!("{repo}:{reference}"),
                (media_type.to_owned(), body.to_vec()),
            );
        }
        digest
    }

    pub fn add_blob(&self, body: &[u8]) -> Digest {
        let digest = Digest::sha256_of(body);
        self.blobs
            .lock()
            .expect("lock")
            .insert(digest.to_string(), body.to_vec());
        digest
    }

    pub fn script(&self, answers: &[(StatusCode, Option<&str>)]) {
        let mut script = self.script.lock().expect("lock");
        for (status, retry_after) in answers {
            script.push_back(Scripted {
                status: *status,
                retry_after: retry_after.map(str::to_owned),
            });
        }
    }
}

/// A running fake registry; stops when dropped.
#[derive(Debug)]
pub struct FakeRegistry {
    pub base: String,
    pub host: String,
    pub state: Arc<FakeState>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for FakeRegistry {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl FakeRegistry {
    pub async fn start(state: FakeState) -> FakeRegistry {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        let state = Arc::new(state);
        *state.addr.lock().expect("lock") = Some(addr);
        let router = Router::new().fallback(handle).with_state(state.clone());
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, router).await;
        });
        FakeRegistry {
            base: format!("http://{addr}"),
            host: addr.to_string(),
            state,
            task,
        }
    }

    pub fn client(&self) -> UpstreamClient {
        client_for(&self.base)
    }
}

async fn handle(
    State(state): State<Arc<FakeState>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
) -> Response {
    let path = uri.path().to_owned();
    if path == "/token" {
        return token(&state, uri.query().unwrap_or(""), &headers);
    }
    if let Some(digest) = path.strip_prefix("/storage/") {
        return storage(&state, digest, &headers);
    }
    state.api_hits.fetch_add(1, Ordering::SeqCst);
    let scripted = state.script.lock().expect("lock").pop_front();
    if let Some(answer) = scripted {
        let mut response = answer.status.into_response();
        if let Some(after) = answer.retry_after {
            response.headers_mut().insert(
                header::RETRY_AFTER,
                HeaderValue::from_str(&after).expect("header"),
            );
        }
        return response;
    }
    let Some(rest) = path.strip_prefix("/v2/") else {
        return StatusCode::NOT_FOUND.into_response();
    };
    let (repo, kind, reference) =
        match (rest.rsplit_once("/manifests/"), rest.rsplit_once("/blobs/")) {
            (Some((repo, reference)), _) => (repo, "manifests", reference),
            (None, Some((repo, digest))) => (repo, "blobs", digest),
            _ => return StatusCode::NOT_FOUND.into_response(),
        };
    if let Some(challenge) = refuse(&state, repo, &headers) {
        return challenge;
    }
    if kind == "manifests" {
        manifest(&state, &method, repo, reference)
    } else {
        blob(&state, reference, &headers)
    }
}

/// The 401 a request without the right credentials gets.
fn refuse(state: &FakeState, repo: &str, headers: &HeaderMap) -> Option<Response> {
    let sent = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let challenge = match &state.auth {
        FakeAuth::None => return None,
        FakeAuth::Bearer { .. } => {
            let valid = sent
                .strip_prefix("Bearer ")
                .is_some_and(|t| state.issued.lock().expect("lock").iter().any(|i| i == t));
            if valid {
                return None;
            }
            let addr = state.addr.lock().expect("lock").expect("addr");
            format!(
                r#"Bearer realm="http://{addr}/token",service="fake registry, for tests",scope="repository:{repo}:pull""#
            )
        }
        FakeAuth::Basic { header } => {
            if sent == header {
                return None;
            }
            r#"Basic realm="fake, with a comma""#.to_owned()
        }
    };
    let body = r#"{"errors":[{"code":"UNAUTHORIZED","message":"authentication required"}]}"#;
    Some(
        (
            StatusCode::UNAUTHORIZED,
            [(header::WWW_AUTHENTICATE, challenge)],
            body,
        )
            .into_response(),
    )
}

fn token(state: &FakeState, query: &str, headers: &HeaderMap) -> Response {
    let n = state.token_hits.fetch_add(1, Ordering::SeqCst);
    state
        .token_queries
        .lock()
        .expect("lock")
        .push(query.to_owned());
    let FakeAuth::Bearer {
        credentials,
        expires_in,
    } = &state.auth
    else {
        return StatusCode::NOT_FOUND.into_response();
    };
    if let Some((user, password)) = credentials {
        let wanted = format!("Basic {}", base64(&format!("{user}:{password}")));
        if headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            != Some(&wanted)
        {
            return (StatusCode::UNAUTHORIZED, "bad credentials").into_response();
        }
    }
    let token = format!("token-{n}");
    state.issued.lock().expect("lock").push(token.clone());
    // Docker Hub sends both names; the client must take either.
    let body = match expires_in {
        Some(secs) => serde_json::json!({ "access_token": token, "expires_in": secs }),
        None => serde_json::json!({ "token": token }),
    };
    axum::Json(body).into_response()
}

fn manifest(state: &FakeState, method: &Method, repo: &str, reference: &str) -> Response {
    let found = state
        .manifests
        .lock()
        .expect("lock")
        .get(&format!("{repo}:{reference}"))
        .cloned();
    let Some((media_type, body)) = found else {
        let body = r#"{"errors":[{"code":"MANIFEST_UNKNOWN","message":"manifest unknown"}]}"#;
        return (StatusCode::NOT_FOUND, body).into_response();
    };
    let digest = state
        .lying_digest_header
        .lock()
        .expect("lock")
        .clone()
        .unwrap_or_else(|| Digest::sha256_of(&body).to_string());
    let headers = [
        (header::CONTENT_TYPE, media_type),
        (
            header::HeaderName::from_static("docker-content-digest"),
            digest,
        ),
        (header::CONTENT_LENGTH, body.len().to_string()),
    ];
    if method == Method::HEAD {
        return (headers, Body::empty()).into_response();
    }
    (headers, body).into_response()
}

fn blob(state: &FakeState, digest: &str, headers: &HeaderMap) -> Response {
    let Some(body) = state.blobs.lock().expect("lock").get(digest).cloned() else {
        let body = r#"{"errors":[{"code":"BLOB_UNKNOWN","message":"blob unknown"}]}"#;
        return (StatusCode::NOT_FOUND, body).into_response();
    };
    if let Some(storage) = state.redirect_blobs_to.lock().expect("lock").clone() {
        return (
            StatusCode::TEMPORARY_REDIRECT,
            [(header::LOCATION, format!("{storage}/storage/{digest}"))],
        )
            .into_response();
    }
    serve_range(&body, headers, state.ignore_range)
}

fn storage(state: &FakeState, digest: &str, headers: &HeaderMap) -> Response {
    let range = headers
        .get(header::RANGE)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    state
        .storage_requests
        .lock()
        .expect("lock")
        .push((headers.contains_key(header::AUTHORIZATION), range));
    match state.blobs.lock().expect("lock").get(digest).cloned() {
        Some(body) => serve_range(&body, headers, false),
        None => StatusCode::NOT_FOUND.into_response(),
    }
}

/// `bytes=<first>-[<last>]` as a 206, or the whole body.
fn serve_range(body: &[u8], headers: &HeaderMap, ignore_range: bool) -> Response {
    let range = headers
        .get(header::RANGE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("bytes="))
        .and_then(|v| v.split_once('-'))
        .filter(|_| !ignore_range);
    let Some((first, last)) = range else {
        return body.to_vec().into_response();
    };
    let len = body.len() as u64;
    let first: u64 = first.parse().expect("range start");
    let last: u64 = if last.is_empty() {
        len.saturating_sub(1)
    } else {
        last.parse::<u64>()
            .expect("range end")
            .min(len.saturating_sub(1))
    };
    if first >= len {
        return (
            StatusCode::RANGE_NOT_SATISFIABLE,
            [(header::CONTENT_RANGE, format!("bytes */{len}"))],
        )
            .into_response();
    }
    (
        StatusCode::PARTIAL_CONTENT,
        [(header::CONTENT_RANGE, format!("bytes {first}-{last}/{len}"))],
        body[first as usize..=last as usize].to_vec(),
    )
        .into_response()
}

/// Standard base64 with padding (the tests need it only for basic auth).
pub fn base64(input: &str) -> String {
    const TABLE: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for group in input.as_bytes().chunks(3) {
        let b = [
            group[0],
            *group.get(1).unwrap_or(&0),
            *group.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= group.len() {
                out.push(TABLE[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

#[test]
fn base64_matches_the_rfc() {
    assert_eq!(base64("alice:s3cret"), "YWxpY2U6czNjcmV0");
    assert_eq!(base64("f"), "Zg==");
    assert_eq!(base64("fo"), "Zm8=");
    assert_eq!(base64("foo"), "Zm9v");
}
