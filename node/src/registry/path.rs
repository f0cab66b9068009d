//! Turns a `/v2/...` request path into the endpoint it names.
//!
//! Repository names contain slashes, so the path cannot be matched by a
//! fixed route table: it is read from the end, where the operation's fixed
//! words stand. The name is validated here, before any handler sees it, so an
//! invalid or traversing name (`..`, `%2e%2e`, `//`) never reaches the store.

use shoal_protocol::{Digest, NameError, RepoName};

use super::error::{ErrorCode, RegistryError};

/// What a request path addresses. Digests and references are kept as raw
/// strings so each handler can answer a malformed one with its own error.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Endpoint {
    /// `/v2/`
    Base,
    /// `/v2/_catalog`
    Catalog,
    /// `/v2/<name>/tags/list`
    Tags { name: RepoName },
    /// `/v2/<name>/manifests/<reference>`
    Manifest { name: RepoName, reference: String },
    /// `/v2/<name>/blobs/<digest>`
    Blob { name: RepoName, digest: String },
    /// `/v2/<name>/blobs/uploads/`
    UploadStart { name: RepoName },
    /// `/v2/<name>/blobs/uploads/<id>`
    Upload { name: RepoName, id: String },
    /// `/v2/<name>/referrers/<digest>`
    Referrers { name: RepoName, digest: String },
}

/// Why a path names no endpoint.
#[derive(Debug, PartialEq, Eq)]
pub enum PathError {
    /// Not an API path at all (404 with NAME_UNKNOWN would mislead).
    NotFound,
    /// An API path whose repository name is invalid.
    InvalidName(NameError),
}

impl From<PathError> for RegistryError {
    fn from(err: PathError) -> RegistryError {
        match err {
            PathError::NotFound => {
                RegistryError::new(ErrorCode::Unsupported, "no such API endpoint")
                    .with_status(axum::http::StatusCode::NOT_FOUND)
            }
            PathError::InvalidName(e) => RegistryError::new(
                ErrorCode::NameInvalid,
                format!("invalid repository name: {e}"),
            ),
        }
    }
}

impl Endpoint {
    pub fn parse(path: &str) -> Result<Endpoint, PathError> {
        let rest = path.strip_prefix("/v2").ok_or(PathError::NotFound)?;
        if rest.is_empty() || rest == "/" {
            return Ok(Endpoint::Base);
        }
        let rest = rest.strip_prefix('/').ok_or(PathError::NotFound)?;
        if rest == "_catalog" {
            return Ok(Endpoint::Catalog);
        }
        let segs: Vec<&str> = rest.split('/').collect();
        let n = segs.len();
        let name = |end: usize| -> Result<RepoName, PathError> {
            if end == 0 {
                return Err(PathError::NotFound);
            }
            segs[..end]
                .join("/")
                .parse()
                .map_err(PathError::InvalidName)
        };
        // Order matters: `blobs/uploads/` must win over `blobs/<digest>`.
        if n >= 3 && segs[n - 3] == "blobs" && segs[n - 2] == "uploads" {
            let id = segs[n - 1];
            let name = name(n - 3)?;
            return Ok(if id.is_empty() {
                Endpoint::UploadStart { name }
            } else {
                Endpoint::Upload {
                    name,
                    id: id.to_owned(),
                }
            });
        }
        if n >= 3 && segs[n - 2] == "blobs" && segs[n - 1] == "uploads" {
            return Ok(Endpoint::UploadStart { name: name(n - 2)? });
        }
        if n >= 3 && segs[n - 2] == "tags" && segs[n - 1] == "list" {
            return Ok(Endpoint::Tags { name: name(n - 2)? });
        }
        if n >= 3 {
            let last = segs[n - 1].to_owned();
            match segs[n - 2] {
                "manifests" => {
                    return Ok(Endpoint::Manifest {
                        name: name(n - 2)?,
                        reference: last,
                    });
                }
                "blobs" => {
                    return Ok(Endpoint::Blob {
                        name: name(n - 2)?,
                        digest: last,
                    });
                }
                "referrers" => {
                    return Ok(Endpoint::Referrers {
                        name: name(n - 2)?,
                        digest: last,
                    });
                }
                _ => {}
            }
        }
        Err(PathError::NotFound)
    }
}

/// Parses a digest from a path or query, answering `DIGEST_INVALID` (400).
pub fn parse_digest(raw: &str) -> Result<Digest, RegistryError> {
    raw.parse::<Digest>()
        .map_err(|e| RegistryError::new(ErrorCode::DigestInvalid, format!("invalid digest: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn name(s: &str) -> RepoName {
        s.parse().expect("valid name")
    }

    #[test]
    fn parses_every_endpoint() {
        assert_eq!(Endpoint::parse("/v2/"), Ok(Endpoint::Base));
        assert_eq!(Endpoint::parse("/v2"), Ok(Endpoint::Base));
        assert_eq!(Endpoint::parse("/v2/_catalog"), Ok(Endpoint::Catalog));
        assert_eq!(
            Endpoint::parse("/v2/a/b/tags/list"),
            Ok(Endpoint::Tags { name: name("a/b") })
        );
        assert_eq!(
            Endpoint::parse("/v2/library/busybox/manifests/latest"),
            Ok(Endpoint::Manifest {
                name: name("library/busybox"),
                reference: "latest".into()
            })
        );
        assert_eq!(
            Endpoint::parse("/v2/x/blobs/sha256:00"),
            Ok(Endpoint::Blob {
                name: name("x"),
                digest: "sha256:00".into()
            })
        );
        assert_eq!(
            Endpoint::parse("/v2/x/blobs/uploads/"),
            Ok(Endpoint::UploadStart { name: name("x") })
        );
        assert_eq!(
            Endpoint::parse("/v2/x/blobs/uploads"),
            Ok(Endpoint::UploadStart { name: name("x") })
        );
        assert_eq!(
            Endpoint::parse("/v2/x/blobs/uploads/abc"),
            Ok(Endpoint::Upload {
                name: name("x"),
                id: "abc".into()
            })
        );
        assert_eq!(
            Endpoint::parse("/v2/x/referrers/sha256:00"),
            Ok(Endpoint::Referrers {
                name: name("x"),
                digest: "sha256:00".into()
            })
        );
    }

    #[test]
    fn names_containing_keywords_parse_from_the_end() {
        assert_eq!(
            Endpoint::parse("/v2/blobs/blobs/uploads/"),
            Ok(Endpoint::UploadStart {
                name: name("blobs")
            })
        );
        assert_eq!(
            Endpoint::parse("/v2/manifests/manifests/x"),
            Ok(Endpoint::Manifest {
                name: name("manifests"),
                reference: "x".into()
            })
        );
    }

    #[test]
    fn traversal_and_bad_names_are_refused() {
        for path in [
            "/v2/../etc/manifests/latest",
            "/v2/a/../b/manifests/latest",
            "/v2/%2e%2e/manifests/latest",
            "/v2/a//b/manifests/latest",
            "/v2/A/manifests/latest",
            "/v2//manifests/latest",
        ] {
            assert!(
                matches!(Endpoint::parse(path), Err(PathError::InvalidName(_))),
                "{path}"
            );
        }
        assert_eq!(
            Endpoint::parse("/v2/manifests/latest"),
            Err(PathError::NotFound)
        );
        assert_eq!(Endpoint::parse("/other"), Err(PathError::NotFound));
        assert_eq!(Endpoint::parse("/v2/x"), Err(PathError::NotFound));
    }
}
