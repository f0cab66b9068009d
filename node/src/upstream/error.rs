//! What can go wrong talking to an upstream registry, and what a client of
//! shoal's own OCI endpoint should be told when it does.

use std::time::Duration;

use axum::http::StatusCode;
use shoal_protocol::Digest;

/// What a request asked the upstream for; decides which "unknown" code a
/// 404 becomes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Wanted {
    Manifest,
    Blob,
    Token,
}

impl Wanted {
    fn noun(self) -> &'static str {
        match self {
            Wanted::Manifest => "manifest",
            Wanted::Blob => "blob",
            Wanted::Token => "token",
        }
    }
}

/// A failed upstream request. Every variant names the upstream host, so a
/// message alone says where things went wrong. Cloneable so one failure can
/// be handed to every request that waited on the same fetch.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UpstreamError {
    #[error("{host} has no {} {what}", wanted.noun())]
    NotFound {
        host: String,
        wanted: Wanted,
        /// The reference or digest asked for.
        what: String,
    },
    #[error("{host} wants credentials it was not given or refused them: {reason}")]
    Unauthorized { host: String, reason: String },
    #[error("{host} denied access: {reason}")]
    Denied { host: String, reason: String },
    #[error("{host} is unreachable: {reason}")]
    Unreachable { host: String, reason: String },
    #[error("{host} is rate limiting us{}", retry_hint(*retry_after))]
    TooManyRequests {
        host: String,
        retry_after: Option<Duration>,
    },
    #[error("{host} answered badly: {reason}")]
    BadResponse { host: String, reason: String },
    #[error(
        "{host} sent content that does not match its digest: expected {expected}, got {actual}"
    )]
    DigestMismatch {
        host: String,
        expected: Digest,
        actual: Digest,
    },
    #[error("{host} sent a {} larger than the {limit}-byte limit", wanted.noun())]
    TooLarge {
        host: String,
        wanted: Wanted,
        limit: u64,
    },
    #[error("{host} cannot serve bytes from offset {start} of that blob")]
    RangeNotSatisfiable { host: String, start: u64 },
    #[error("{host} is not a configured upstream and unlisted hosts are not allowed")]
    HostNotAllowed { host: String },
}

fn retry_hint(retry_after: Option<Duration>) -> String {
    match retry_after {
        Some(d) => format!(" (retry after {} s)", d.as_secs()),
        None => String::new(),
    }
}

impl UpstreamError {
    /// The OCI error code to answer a client with. `UNAVAILABLE` is not a
    /// spec code: the spec has none for "the registry behind me is down".
    pub fn oci_code(&self) -> &'static str {
        match self {
            UpstreamError::NotFound {
                wanted: Wanted::Blob,
                ..
            } => "BLOB_UNKNOWN",
            UpstreamError::NotFound { .. } => "MANIFEST_UNKNOWN",
            UpstreamError::Unauthorized { .. } => "UNAUTHORIZED",
            UpstreamError::Denied { .. } | UpstreamError::HostNotAllowed { .. } => "DENIED",
            UpstreamError::TooManyRequests { .. } => "TOO_MANY_REQUESTS",
            UpstreamError::Unreachable { .. } => "UNAVAILABLE",
            UpstreamError::BadResponse { .. }
            | UpstreamError::DigestMismatch { .. }
            | UpstreamError::TooLarge { .. }
            | UpstreamError::RangeNotSatisfiable { .. } => "UNKNOWN",
        }
    }

    /// The HTTP status that goes with [`oci_code`](Self::oci_code): the
    /// spec's where the upstream's answer carries over, 502/503 where the
    /// upstream itself failed.
    pub fn status(&self) -> StatusCode {
        match self {
            UpstreamError::NotFound { .. } => StatusCode::NOT_FOUND,
            UpstreamError::Unauthorized { .. } => StatusCode::UNAUTHORIZED,
            UpstreamError::Denied { .. } | UpstreamError::HostNotAllowed { .. } => {
                StatusCode::FORBIDDEN
            }
            UpstreamError::TooManyRequests { .. } => StatusCode::TOO_MANY_REQUESTS,
            UpstreamError::Unreachable { .. } => StatusCode::SERVICE_UNAVAILABLE,
            UpstreamError::BadResponse { .. }
            | UpstreamError::DigestMismatch { .. }
            | UpstreamError::TooLarge { .. }
            | UpstreamError::RangeNotSatisfiable { .. } => StatusCode::BAD_GATEWAY,
        }
    }

    /// A `Retry-After` worth passing on to the client, if any.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            UpstreamError::TooManyRequests { retry_after, .. } => *retry_after,
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_and_statuses() {
        let host = || "ghcr.io".to_owned();
        let cases = [
            (
                UpstreamError::NotFound {
                    host: host(),
                    wanted: Wanted::Manifest,
                    what: "latest".into(),
                },
                "MANIFEST_UNKNOWN",
                404,
            ),
            (
                UpstreamError::NotFound {
                    host: host(),
                    wanted: Wanted::Blob,
                    what: "sha256:…".into(),
                },
                "BLOB_UNKNOWN",
                404,
            ),
            (
                UpstreamError::Unauthorized {
                    host: host(),
                    reason: "x".into(),
                },
                "UNAUTHORIZED",
                401,
            ),
            (
                UpstreamError::Denied {
                    host: host(),
                    reason: "x".into(),
                },
                "DENIED",
                403,
            ),
            (
                UpstreamError::TooManyRequests {
                    host: host(),
                    retry_after: Some(Duration::from_secs(3)),
                },
                "TOO_MANY_REQUESTS",
                429,
            ),
            (
                UpstreamError::Unreachable {
                    host: host(),
                    reason: "connection refused".into(),
                },
                "UNAVAILABLE",
                503,
            ),
            (
                UpstreamError::TooLarge {
                    host: host(),
                    wanted: Wanted::Manifest,
                    limit: 4,
                },
                "UNKNOWN",
                502,
            ),
        ];
        for (err, code, status) in cases {
            assert_eq!(err.oci_code(), code, "{err}");
            assert_eq!(err.status().as_u16(), status, "{err}");
            assert!(err.to_string().starts_with("ghcr.io"), "{err}");
        }
    }

    #[test]
    fn messages_read_well() {
        let err = UpstreamError::TooManyRequests {
            host: "docker.io".into(),
            retry_after: Some(Duration::from_secs(30)),
        };
        assert_eq!(
            err.to_string(),
            "docker.io is rate limiting us (retry after 30 s)"
        );
        assert_eq!(err.retry_after(), Some(Duration::from_secs(30)));
        let err = UpstreamError::NotFound {
            host: "docker.io".into(),
            wanted: Wanted::Manifest,
            what: "library/busybox:nope".into(),
        };
        assert_eq!(
            err.to_string(),
            "docker.io has no manifest library/busybox:nope"
        );
    }
}
