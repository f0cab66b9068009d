//! Sending one request with bounded retries: after a connection failure, a
//! 429 or a 5xx, wait (exponential backoff, or the server's `Retry-After`
//! when it is short) and try again. Other answers, 4xx included, go back to
//! the caller at once: asking again would get the same answer.

use std::time::Duration;

use reqwest::{RequestBuilder, Response, StatusCode, header};

use super::error::UpstreamError;
use crate::error_chain::error_chain;

/// The longest error body read to explain a failure.
const MAX_ERROR_BODY: usize = 4 * 1024;

#[derive(Debug, Clone)]
pub(crate) struct RetryPolicy {
    /// Retries after the first attempt.
    pub retries: u32,
    /// The first backoff; doubled for each retry after it.
    pub first_backoff: Duration,
    pub max_backoff: Duration,
    /// A `Retry-After` longer than this is not waited for: the request
    /// fails with `TooManyRequests` at once, because a pull that hangs is
    /// worse than one that fails and is retried by its client.
    pub max_retry_after: Duration,
    /// Time for the response's headers to arrive.
    pub header_timeout: Duration,
}

impl RetryPolicy {
    pub fn new(retries: u32, header_timeout: Duration) -> RetryPolicy {
        RetryPolicy {
            retries,
            first_backoff: Duration::from_millis(200),
            max_backoff: Duration::from_secs(5),
            max_retry_after: Duration::from_secs(10),
            header_timeout,
        }
    }

    fn backoff(&self, retry: u32) -> Duration {
        self.first_backoff
            .saturating_mul(1 << retry.min(16))
            .min(self.max_backoff)
    }
}

/// Sends the request `build` makes (once per attempt) and returns the first
/// answer that is not worth retrying.
pub(crate) async fn send_with_retries(
    host: &str,
    policy: &RetryPolicy,
    build: impl Fn() -> RequestBuilder,
) -> Result<Response, UpstreamError> {
    let mut retry = 0;
    loop {
        let last_chance = retry >= policy.retries;
        let wait = match tokio::time::timeout(policy.header_timeout, build().send()).await {
            Err(_) => {
                let reason = format!("no answer within {:?}", policy.header_timeout);
                if last_chance {
                    return Err(unreachable(host, reason));
                }
                policy.backoff(retry)
            }
            Ok(Err(err)) => {
                if err.is_redirect() || err.is_builder() || last_chance {
                    return Err(transport_error(host, &err));
                }
                policy.backoff(retry)
            }
            Ok(Ok(response)) => {
                let status = response.status();
                if status != StatusCode::TOO_MANY_REQUESTS && !status.is_server_error() {
                    return Ok(response);
                }
                let retry_after = retry_after(&response);
                if status == StatusCode::TOO_MANY_REQUESTS
                    && (last_chance || retry_after.is_some_and(|d| d > policy.max_retry_after))
                {
                    return Err(UpstreamError::TooManyRequests {
                        host: host.to_owned(),
                        retry_after,
                    });
                }
                if last_chance {
                    return Err(UpstreamError::BadResponse {
                        host: host.to_owned(),
                        reason: format!(
                            "answered {status} after {} attempts: {}",
                            retry + 1,
                            error_message(response).await
                        ),
                    });
                }
                match retry_after {
                    Some(d) if d <= policy.max_retry_after => d,
                    _ => policy.backoff(retry),
                }
            }
        };
        tracing::debug!(host, retry, ?wait, "upstream request failed; retrying");
        tokio::time::sleep(wait).await;
        retry += 1;
    }
}

/// A failure before any answer arrived.
pub(crate) fn transport_error(host: &str, err: &reqwest::Error) -> UpstreamError {
    if err.is_redirect() || err.is_builder() {
        return UpstreamError::BadResponse {
            host: host.to_owned(),
            reason: error_chain(err),
        };
    }
    unreachable(host, error_chain(err))
}

fn unreachable(host: &str, reason: String) -> UpstreamError {
    UpstreamError::Unreachable {
        host: host.to_owned(),
        reason,
    }
}

/// `Retry-After` in seconds. The HTTP-date form is not honoured (it falls
/// back to the backoff): registries send seconds.
fn retry_after(response: &Response) -> Option<Duration> {
    let value = response.headers().get(header::RETRY_AFTER)?.to_str().ok()?;
    value.trim().parse::<u64>().ok().map(Duration::from_secs)
}

/// What an error answer says: the OCI error body's first code and message
/// when there is one, else the start of the body, else the status. Reads at
/// most a few KiB.
pub(crate) async fn error_message(mut response: Response) -> String {
    let status = response.status();
    let mut body = Vec::new();
    while body.len() < MAX_ERROR_BODY {
        match response.chunk().await {
            Ok(Some(chunk)) => body.extend_from_slice(&chunk),
            _ => break,
        }
    }
    body.truncate(MAX_ERROR_BODY);
    if let Ok(parsed) = serde_json::from_slice::<serde_json::Value>(&body)
        && let Some(first) = parsed["errors"].get(0)
    {
        let code = first["code"].as_str().unwrap_or("?");
        let message = first["message"].as_str().unwrap_or("");
        return shorten(&format!("{status}: {code} {message}"));
    }
    let text = String::from_utf8_lossy(&body);
    let text = text.trim();
    if text.is_empty() {
        status.to_string()
    } else {
        shorten(&format!("{status}: {text}"))
    }
}

/// Keeps a remote's words from filling the logs.
fn shorten(s: &str) -> String {
    const MAX: usize = 300;
    let mut out: String = s
        .chars()
        .take(MAX)
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    if s.chars().count() > MAX {
        out.push('…');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_the_cap() {
        let policy = RetryPolicy::new(3, Duration::from_secs(1));
        assert_eq!(policy.backoff(0), Duration::from_millis(200));
        assert_eq!(policy.backoff(1), Duration::from_millis(400));
        assert_eq!(policy.backoff(3), Duration::from_millis(1600));
        assert_eq!(policy.backoff(10), Duration::from_secs(5));
        assert_eq!(policy.backoff(u32::MAX), Duration::from_secs(5));
    }

    #[test]
    fn remote_text_is_cut_and_flattened() {
        assert_eq!(shorten("a\nb"), "a b");
        let long = "x".repeat(1000);
        assert_eq!(shorten(&long).chars().count(), 301);
    }
}
