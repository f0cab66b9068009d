//! The client itself: one pooled HTTP client, the checked endpoints and the
//! auth cache, shared by every clone. Each API call goes through
//! [`UpstreamClient::send`], which adds auth, retries and maps the answers
//! every call treats alike (401, 403, 404) to errors.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use reqwest::header::HeaderMap;
use reqwest::{Method, Response, StatusCode};
use shoal_protocol::name::RepoName;
use tokio::time::Instant;

use super::auth::{self, AuthCache, AuthContext};
use super::error::{UpstreamError, Wanted};
use super::names::{NameMapError, UpstreamRepo, canonical_host, upstream_repo};
use super::retry::{RetryPolicy, error_message, send_with_retries};
use super::settings::{Endpoint, Endpoints, UpstreamConfigError, UpstreamSettings};
use crate::limits::RateLimiter;

/// Redirects followed (registries send blobs to storage URLs).
const MAX_REDIRECTS: usize = 10;

/// A client for upstream registries. Cheap to clone: clones share the
/// connection pool and the token cache.
#[derive(Debug, Clone)]
pub struct UpstreamClient {
    inner: Arc<Inner>,
    /// Paid for every blob byte received (`[limits] upstream_download`).
    pub(crate) download_limit: RateLimiter,
}

#[derive(Debug)]
struct Inner {
    http: reqwest::Client,
    endpoints: Endpoints,
    retry: RetryPolicy,
    request_timeout: Duration,
    auth: Mutex<AuthCache>,
    fetching_token: tokio::sync::Mutex<()>,
}

/// One call to a registry's `/v2/<repo>/…` API.
#[derive(Debug)]
pub(crate) struct ApiCall<'a> {
    pub host: &'a str,
    pub repo: &'a RepoName,
    pub method: Method,
    /// The path after `/v2/<repo>/`, e.g. `manifests/latest`.
    pub tail: String,
    pub headers: HeaderMap,
    /// A deadline for the whole exchange body included; `None` for streams
    /// (they get the client's per-read timeout instead).
    pub whole_timeout: Option<Duration>,
    pub wanted: Wanted,
    /// What was asked for, for a `NotFound`.
    pub what: String,
}

impl UpstreamClient {
    pub fn new(settings: &UpstreamSettings) -> Result<UpstreamClient, UpstreamConfigError> {
        let endpoints = settings.endpoints()?;
        let http = reqwest::Client::builder()
            .connect_timeout(settings.connect_timeout)
            .read_timeout(settings.request_timeout)
            .redirect(reqwest::redirect::Policy::limited(MAX_REDIRECTS))
            .user_agent(concat!("shoal/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|_| UpstreamConfigError::Invalid {
                field: "(HTTP client)",
                requirement: "buildable: TLS could not be set up",
            })?;
        Ok(UpstreamClient {
            inner: Arc::new(Inner {
                http,
                endpoints,
                retry: RetryPolicy::new(settings.retries(), settings.request_timeout),
                request_timeout: settings.request_timeout,
                auth: Mutex::new(AuthCache::default()),
                fetching_token: tokio::sync::Mutex::new(()),
            }),
            download_limit: RateLimiter::unlimited(),
        })
    }

    /// Receives blob bodies no faster than `limit` allows, in total over
    /// every clone made from this one.
    pub fn with_download_limit(mut self, limit: RateLimiter) -> UpstreamClient {
        self.download_limit = limit;
        self
    }

    /// The registry for names that do not say which.
    pub fn default_host(&self) -> &str {
        self.inner.endpoints.default_host()
    }

    /// Where a client's repository lives upstream (see [`upstream_repo`]).
    pub fn map_name(&self, ns: Option<&str>, path: &str) -> Result<UpstreamRepo, NameMapError> {
        upstream_repo(ns, path, self.default_host())
    }

    pub(crate) fn request_timeout(&self) -> Duration {
        self.inner.request_timeout
    }

    /// Sends `call` with auth and retries. Returns any answer but 401, 403
    /// and 404, which become errors here.
    pub(crate) async fn send(&self, call: ApiCall<'_>) -> Result<Response, UpstreamError> {
        let endpoint = self.endpoint(call.host)?;
        let url = endpoint
            .base
            .join(&format!("v2/{}/{}", call.repo, call.tail))
            .map_err(|e| UpstreamError::BadResponse {
                host: endpoint.host.clone(),
                reason: format!("cannot build a URL for {}/{}: {e}", call.repo, call.tail),
            })?;
        let context = AuthContext {
            http: &self.inner.http,
            cache: &self.inner.auth,
            fetching: &self.inner.fetching_token,
            retry: &self.inner.retry,
            request_timeout: self.inner.request_timeout,
        };
        let mut auth = auth::lock(&self.inner.auth).lookup(&endpoint, call.repo, Instant::now());
        let mut answered_challenge = false;
        loop {
            let response = send_with_retries(&endpoint.host, &self.inner.retry, || {
                let mut request = self
                    .inner
                    .http
                    .request(call.method.clone(), url.clone())
                    .headers(call.headers.clone());
                if let Some(auth) = &auth {
                    request = auth.apply(request);
                }
                if let Some(timeout) = call.whole_timeout {
                    request = request.timeout(timeout);
                }
                request
            })
            .await?;
            match response.status() {
                StatusCode::UNAUTHORIZED if !answered_challenge => {
                    answered_challenge = true;
                    auth = Some(
                        context
                            .authorize(&endpoint, call.repo, response.headers(), auth.as_ref())
                            .await?,
                    );
                }
                StatusCode::UNAUTHORIZED => {
                    return Err(UpstreamError::Unauthorized {
                        host: endpoint.host,
                        reason: format!(
                            "{} {} was refused even with credentials: {}",
                            call.method,
                            url.path(),
                            error_message(response).await
                        ),
                    });
                }
                StatusCode::FORBIDDEN => {
                    return Err(UpstreamError::Denied {
                        host: endpoint.host,
                        reason: error_message(response).await,
                    });
                }
                StatusCode::NOT_FOUND => {
                    return Err(UpstreamError::NotFound {
                        host: endpoint.host,
                        wanted: call.wanted,
                        what: call.what,
                    });
                }
                _ => return Ok(response),
            }
        }
    }

    fn endpoint(&self, host: &str) -> Result<Endpoint, UpstreamError> {
        let host = canonical_host(host).map_err(|_| UpstreamError::HostNotAllowed {
            host: host.chars().take(64).collect(),
        })?;
        self.inner.endpoints.get(&host)
    }
}
