//! Registry authentication: what to send, and the token service dance.
//!
//! A request goes out anonymously unless a token for its repository is
//! cached (or the host is known to want basic auth). On a 401 the
//! `WWW-Authenticate` challenge says what to do:
//! - `Bearer realm=…,service=…,scope=…`: get a token from the realm, with
//!   the configured credentials if any, and cache it per (host, repository)
//!   until shortly before it expires;
//! - `Basic`: send the configured credentials from then on.
//!
//! The caller retries its request once with the result.

use std::collections::{HashMap, HashSet};
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use reqwest::{RequestBuilder, StatusCode, Url, header};
use serde::Deserialize;
use shoal_protocol::name::RepoName;
use tokio::time::Instant;

use super::challenge::{Challenge, parse_challenges};
use super::error::UpstreamError;
use super::retry::{RetryPolicy, error_message, send_with_retries};
use super::settings::{Credentials, Endpoint};

/// Tokens kept at most; the soonest to expire goes first when full.
const MAX_TOKENS: usize = 1024;
/// Largest token response read.
const MAX_TOKEN_RESPONSE: usize = 64 * 1024;
/// Longest token accepted.
const MAX_TOKEN_LEN: usize = 16 * 1024;
/// The distribution token spec's lifetime when `expires_in` is missing.
const DEFAULT_TOKEN_LIFETIME: Duration = Duration::from_secs(60);
/// Tokens are not kept longer than this whatever they claim.
const MAX_TOKEN_LIFETIME: Duration = Duration::from_secs(24 * 3600);
/// A token is dropped this long before it expires (or at 80% of its life if
/// that comes sooner), so no request leaves with one about to lapse.
const EXPIRY_MARGIN: Duration = Duration::from_secs(30);

/// What to put in a request's `Authorization`.
#[derive(Clone, PartialEq, Eq)]
pub(crate) enum Auth {
    Bearer(String),
    Basic(Credentials),
}

impl std::fmt::Debug for Auth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Auth::Bearer(_) => f.write_str("Bearer(<redacted>)"),
            Auth::Basic(c) => write!(f, "Basic({c:?})"),
        }
    }
}

impl Auth {
    /// reqwest marks both headers sensitive and drops them on a redirect to
    /// another host, so a blob's storage URL never sees them.
    pub fn apply(&self, request: RequestBuilder) -> RequestBuilder {
        match self {
            Auth::Bearer(token) => request.bearer_auth(token),
            Auth::Basic(c) => request.basic_auth(&c.username, Some(&c.password)),
        }
    }
}

/// The cache holds no invariant a panic could break halfway, so a poisoned
/// lock is taken as it is.
pub(crate) fn lock(cache: &Mutex<AuthCache>) -> MutexGuard<'_, AuthCache> {
    cache
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

#[derive(Debug)]
struct CachedToken {
    token: String,
    /// When to stop using it.
    stale_at: Instant,
}

/// Tokens per (host, repository) and the hosts that want basic auth.
#[derive(Debug, Default)]
pub(crate) struct AuthCache {
    tokens: HashMap<(String, RepoName), CachedToken>,
    /// Only hosts with configured credentials get in, so this is bounded by
    /// the config.
    basic_hosts: HashSet<String>,
}

impl AuthCache {
    /// What to send on a first attempt at `repo` on `endpoint`.
    pub fn lookup(&mut self, endpoint: &Endpoint, repo: &RepoName, now: Instant) -> Option<Auth> {
        let key = (endpoint.host.clone(), repo.clone());
        match self.tokens.get(&key) {
            Some(cached) if cached.stale_at > now => {
                return Some(Auth::Bearer(cached.token.clone()));
            }
            Some(_) => {
                self.tokens.remove(&key);
            }
            None => {}
        }
        match &endpoint.credentials {
            Some(c) if self.basic_hosts.contains(&endpoint.host) => Some(Auth::Basic(c.clone())),
            _ => None,
        }
    }

    fn insert_token(&mut self, host: &str, repo: &RepoName, token: String, stale_at: Instant) {
        let key = (host.to_owned(), repo.clone());
        if self.tokens.len() >= MAX_TOKENS && !self.tokens.contains_key(&key) {
            let now = Instant::now();
            self.tokens.retain(|_, t| t.stale_at > now);
            if self.tokens.len() >= MAX_TOKENS
                && let Some(soonest) = self
                    .tokens
                    .iter()
                    .min_by_key(|(_, t)| t.stale_at)
                    .map(|(k, _)| k.clone())
            {
                self.tokens.remove(&soonest);
            }
        }
        self.tokens.insert(key, CachedToken { token, stale_at });
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.tokens.len()
    }
}

/// Everything `authorize` needs besides the challenge.
#[derive(Debug)]
pub(crate) struct AuthContext<'a> {
    pub http: &'a reqwest::Client,
    pub cache: &'a Mutex<AuthCache>,
    /// Held while a token is fetched, so the requests of one pull that all
    /// drew a 401 at once wait for one token instead of each asking for
    /// their own (one at a time for all hosts: token fetches are rare and
    /// bounded by the request timeout).
    pub fetching: &'a tokio::sync::Mutex<()>,
    pub retry: &'a RetryPolicy,
    pub request_timeout: Duration,
}

impl AuthContext<'_> {
    /// Answers a 401 carrying `headers` for `repo` on `endpoint`, which
    /// refused `rejected`.
    pub async fn authorize(
        &self,
        endpoint: &Endpoint,
        repo: &RepoName,
        headers: &header::HeaderMap,
        rejected: Option<&Auth>,
    ) -> Result<Auth, UpstreamError> {
        let challenges: Vec<Challenge> = headers
            .get_all(header::WWW_AUTHENTICATE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(parse_challenges)
            .collect();
        let unauthorized = |reason: String| UpstreamError::Unauthorized {
            host: endpoint.host.clone(),
            reason,
        };
        if let Some(bearer) = challenges.iter().find(|c| c.scheme == "bearer") {
            let _turn = self.fetching.lock().await;
            // Someone else may have fetched one while this request waited.
            if let Some(fresh @ Auth::Bearer(_)) =
                self.lock().lookup(endpoint, repo, Instant::now())
                && Some(&fresh) != rejected
            {
                return Ok(fresh);
            }
            let asked_at = Instant::now();
            let (token, lifetime) = self.fetch_token(endpoint, repo, bearer).await?;
            self.lock().insert_token(
                &endpoint.host,
                repo,
                token.clone(),
                asked_at + usable_lifetime(lifetime),
            );
            return Ok(Auth::Bearer(token));
        }
        if challenges.iter().any(|c| c.scheme == "basic") {
            let Some(credentials) = &endpoint.credentials else {
                return Err(unauthorized(
                    "it asks for a username and password and none are configured for it".into(),
                ));
            };
            self.lock().basic_hosts.insert(endpoint.host.clone());
            return Ok(Auth::Basic(credentials.clone()));
        }
        Err(unauthorized(
            "it answered 401 without a Bearer or Basic challenge".into(),
        ))
    }

    fn lock(&self) -> MutexGuard<'_, AuthCache> {
        lock(self.cache)
    }

    async fn fetch_token(
        &self,
        endpoint: &Endpoint,
        repo: &RepoName,
        challenge: &Challenge,
    ) -> Result<(String, Duration), UpstreamError> {
        let host = endpoint.host.as_str();
        let bad = |reason: String| UpstreamError::BadResponse {
            host: host.to_owned(),
            reason,
        };
        let realm = challenge
            .param("realm")
            .ok_or_else(|| bad("its Bearer challenge has no realm".into()))?;
        let mut url = Url::parse(realm)
            .ok()
            .filter(|u| matches!(u.scheme(), "http" | "https"))
            .ok_or_else(|| bad(format!("its token realm {realm:?} is not an http(s) URL")))?;
        {
            let mut query = url.query_pairs_mut();
            if let Some(service) = challenge.param("service") {
                query.append_pair("service", service);
            }
            let default_scope = format!("repository:{repo}:pull");
            for scope in challenge
                .param("scope")
                .unwrap_or(&default_scope)
                .split(' ')
                .filter(|s| !s.is_empty())
            {
                query.append_pair("scope", scope);
            }
        }
        // Credentials meant for an HTTPS registry never travel in clear.
        let credentials = endpoint
            .credentials
            .as_ref()
            .filter(|_| url.scheme() == "https" || endpoint.base.scheme() == "http");
        let response = send_with_retries(host, self.retry, || {
            let request = self.http.get(url.clone()).timeout(self.request_timeout);
            match credentials {
                Some(c) => request.basic_auth(&c.username, Some(&c.password)),
                None => request,
            }
        })
        .await?;
        match response.status() {
            StatusCode::OK => {}
            StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => {
                let who = if credentials.is_some() {
                    format!("the credentials of {}", endpoint.credentials_user())
                } else {
                    "an anonymous token".to_owned()
                };
                return Err(UpstreamError::Unauthorized {
                    host: host.to_owned(),
                    reason: format!(
                        "its token service refused {who}: {}",
                        error_message(response).await
                    ),
                });
            }
            _ => {
                return Err(bad(format!(
                    "its token service answered {}",
                    error_message(response).await
                )));
            }
        }
        let body = read_capped(response, MAX_TOKEN_RESPONSE)
            .await
            .map_err(|e| bad(format!("reading a token: {e}")))?;
        let parsed: TokenResponse = serde_json::from_slice(&body)
            .map_err(|e| bad(format!("its token service sent bad JSON: {e}")))?;
        let token = parsed
            .token
            .filter(|t| !t.is_empty())
            .or(parsed.access_token)
            .filter(|t| valid_token(t))
            .ok_or_else(|| bad("its token service sent no usable token".into()))?;
        let lifetime = parsed
            .expires_in
            .map(Duration::from_secs)
            .unwrap_or(DEFAULT_TOKEN_LIFETIME);
        Ok((token, lifetime))
    }
}

impl Endpoint {
    fn credentials_user(&self) -> &str {
        self.credentials
            .as_ref()
            .map(|c| c.username.as_str())
            .unwrap_or("")
    }
}

#[derive(Deserialize)]
struct TokenResponse {
    token: Option<String>,
    access_token: Option<String>,
    expires_in: Option<u64>,
}

/// A token goes into a header: printable ASCII, bounded.
fn valid_token(token: &str) -> bool {
    !token.is_empty() && token.len() <= MAX_TOKEN_LEN && token.bytes().all(|b| b.is_ascii_graphic())
}

/// How long a token with `lifetime` may be used.
fn usable_lifetime(lifetime: Duration) -> Duration {
    let lifetime = lifetime.min(MAX_TOKEN_LIFETIME);
    lifetime.saturating_sub(EXPIRY_MARGIN.min(lifetime / 5))
}

/// Reads a whole body of at most `limit` bytes; `Err` when it is longer.
pub(crate) async fn read_capped(
    mut response: reqwest::Response,
    limit: usize,
) -> Result<Vec<u8>, ReadError> {
    if response
        .content_length()
        .is_some_and(|len| len > limit as u64)
    {
        return Err(ReadError::TooLarge);
    }
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await.map_err(ReadError::Transport)? {
        if body.len() + chunk.len() > limit {
            return Err(ReadError::TooLarge);
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

#[derive(Debug, thiserror::Error)]
pub(crate) enum ReadError {
    #[error("the body is larger than allowed")]
    TooLarge,
    #[error("{}", crate::error_chain::error_chain(.0))]
    Transport(reqwest::Error),
}

#[cfg(test)]
mod tests {
    use super::*;

    fn endpoint(credentials: Option<Credentials>) -> Endpoint {
        Endpoint {
            host: "r.example".into(),
            base: Url::parse("https://r.example/").expect("url"),
            credentials,
        }
    }

    fn repo(name: &str) -> RepoName {
        name.parse().expect("repo")
    }

    #[test]
    fn lifetimes_keep_a_margin() {
        assert_eq!(
            usable_lifetime(Duration::from_secs(60)),
            Duration::from_secs(48)
        );
        assert_eq!(
            usable_lifetime(Duration::from_secs(300)),
            Duration::from_secs(270)
        );
        assert_eq!(usable_lifetime(Duration::ZERO), Duration::ZERO);
        assert_eq!(
            usable_lifetime(Duration::from_secs(u64::MAX)),
            MAX_TOKEN_LIFETIME - EXPIRY_MARGIN
        );
    }

    #[test]
    fn tokens_are_reused_until_stale() {
        let mut cache = AuthCache::default();
        let e = endpoint(None);
        let now = Instant::now();
        assert_eq!(cache.lookup(&e, &repo("a"), now), None);
        cache.insert_token(
            "r.example",
            &repo("a"),
            "t1".into(),
            now + Duration::from_secs(10),
        );
        assert_eq!(
            cache.lookup(&e, &repo("a"), now),
            Some(Auth::Bearer("t1".into()))
        );
        // Per repository: a token for one does not open another.
        assert_eq!(cache.lookup(&e, &repo("b"), now), None);
        assert_eq!(
            cache.lookup(&e, &repo("a"), now + Duration::from_secs(10)),
            None
        );
        assert_eq!(cache.len(), 0, "a stale token is dropped when seen");
    }

    #[test]
    fn the_cache_is_bounded() {
        let mut cache = AuthCache::default();
        let now = Instant::now();
        for i in 0..MAX_TOKENS + 10 {
            let stale_at = now + Duration::from_secs(100 + i as u64);
            cache.insert_token("r.example", &repo(&format!("r{i}")), "t".into(), stale_at);
        }
        assert_eq!(cache.len(), MAX_TOKENS);
        // The ones closest to expiry went first.
        let e = endpoint(None);
        assert_eq!(cache.lookup(&e, &repo("r0"), now), None);
        assert!(cache.lookup(&e, &repo("r1033"), now).is_some());
    }

    #[test]
    fn basic_only_once_asked_and_only_with_credentials() {
        let mut cache = AuthCache::default();
        let creds = Credentials {
            username: "u".into(),
            password: "p".into(),
        };
        let e = endpoint(Some(creds.clone()));
        let now = Instant::now();
        assert_eq!(cache.lookup(&e, &repo("a"), now), None);
        cache.basic_hosts.insert("r.example".into());
        assert_eq!(cache.lookup(&e, &repo("a"), now), Some(Auth::Basic(creds)));
        assert_eq!(cache.lookup(&endpoint(None), &repo("a"), now), None);
        assert!(!format!("{:?}", Auth::Bearer("secret".into())).contains("secret"));
    }

    #[test]
    fn tokens_must_fit_a_header() {
        assert!(valid_token("abc.def-ghi_jkl="));
        assert!(!valid_token(""));
        assert!(!valid_token("a b"));
        assert!(!valid_token("a\r\nX-Evil: 1"));
        assert!(!valid_token(&"x".repeat(MAX_TOKEN_LEN + 1)));
    }
}
