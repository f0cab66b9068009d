//! Which upstream registry and repository a client's repository name means,
//! by the rules Docker and containerd use.
//!
//! - containerd, configured with shoal as a mirror, sends the upstream host
//!   as `?ns=<host>` and the repository as the upstream knows it.
//! - Docker Engine sends no `ns`. A name whose first component looks like a
//!   registry host (`ghcr.io/owner/app`, `localhost/app`) names that host;
//!   any other name belongs to the default upstream.
//! - On Docker Hub a one-component name is an official image under
//!   `library/`: `busybox` is `library/busybox`.

use shoal_protocol::name::{NameError, RepoName};

/// The host Docker calls Docker Hub.
pub const DOCKER_HUB: &str = "docker.io";

/// Other names for Docker Hub that clients and old configs use.
const DOCKER_HUB_ALIASES: &[&str] = &["index.docker.io", "registry-1.docker.io"];

/// Longest host (with port) accepted: a DNS name is at most 253 characters.
const MAX_HOST_LEN: usize = 260;

/// Where a client's repository lives upstream.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct UpstreamRepo {
    /// The registry host as clients name it, e.g. `docker.io`, `ghcr.io`,
    /// `127.0.0.1:5001`.
    pub host: String,
    /// The repository as that registry names it, e.g. `library/busybox`.
    pub repo: RepoName,
}

/// Why a name cannot be mapped to an upstream.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NameMapError {
    #[error("{0:?} is not a registry host")]
    InvalidHost(String),
    #[error("upstream repository name: {0}")]
    InvalidRepo(#[from] NameError),
}

/// Maps the `ns` query value (if any) and the repository path a client used
/// to the upstream host and repository.
pub fn upstream_repo(
    ns: Option<&str>,
    path: &str,
    default_host: &str,
) -> Result<UpstreamRepo, NameMapError> {
    let (host, repo) = match (ns, path.split_once('/')) {
        (Some(ns), _) => (canonical_host(ns)?, path),
        (None, Some((first, rest))) if looks_like_host(first) => (canonical_host(first)?, rest),
        (None, _) => (canonical_host(default_host)?, path),
    };
    let repo = if host == DOCKER_HUB && !repo.contains('/') {
        format!("library/{repo}")
    } else {
        repo.to_owned()
    };
    Ok(UpstreamRepo {
        repo: repo.parse()?,
        host,
    })
}

/// Docker's rule for "the first component is a registry host, not a
/// namespace": it has a `.` or a `:`, or it is `localhost`.
pub fn looks_like_host(component: &str) -> bool {
    component.contains(['.', ':']) || component == "localhost"
}

/// A validated host (name or IP, optional port) in the form used as a key:
/// lowercase, Docker Hub's aliases folded into `docker.io`. Only characters
/// that are safe inside a URL authority pass.
pub fn canonical_host(host: &str) -> Result<String, NameMapError> {
    let invalid = || NameMapError::InvalidHost(host.chars().take(64).collect());
    if host.is_empty() || host.len() > MAX_HOST_LEN {
        return Err(invalid());
    }
    let ok_char = |c: char| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | ':' | '[' | ']');
    if !host.chars().all(ok_char) || host.starts_with(['.', '-', ':']) {
        return Err(invalid());
    }
    let host = host.to_ascii_lowercase();
    if DOCKER_HUB_ALIASES.contains(&host.as_str()) {
        return Ok(DOCKER_HUB.to_owned());
    }
    Ok(host)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(ns: Option<&str>, path: &str, default: &str) -> (String, String) {
        let mapped = upstream_repo(ns, path, default).expect("maps");
        (mapped.host, mapped.repo.to_string())
    }

    fn pair(host: &str, repo: &str) -> (String, String) {
        (host.to_owned(), repo.to_owned())
    }

    #[test]
    fn docker_hub_official_images_live_under_library() {
        assert_eq!(
            map(None, "busybox", DOCKER_HUB),
            pair("docker.io", "library/busybox")
        );
        assert_eq!(
            map(None, "bitnami/redis", DOCKER_HUB),
            pair("docker.io", "bitnami/redis")
        );
        assert_eq!(
            map(None, "docker.io/busybox", "ghcr.io"),
            pair("docker.io", "library/busybox")
        );
        assert_eq!(
            map(None, "index.docker.io/library/busybox", "ghcr.io"),
            pair("docker.io", "library/busybox")
        );
    }

    #[test]
    fn containerd_names_the_host_in_ns() {
        assert_eq!(
            map(Some("docker.io"), "library/busybox", "ghcr.io"),
            pair("docker.io", "library/busybox")
        );
        assert_eq!(
            map(Some("ghcr.io"), "owner/app", DOCKER_HUB),
            pair("ghcr.io", "owner/app")
        );
        // With ns, a dotted first component is a namespace, not a host.
        assert_eq!(
            map(Some("quay.io"), "my.org/app", DOCKER_HUB),
            pair("quay.io", "my.org/app")
        );
        assert_eq!(
            map(Some("127.0.0.1:5001"), "app", DOCKER_HUB),
            pair("127.0.0.1:5001", "app")
        );
    }

    #[test]
    fn a_host_like_first_component_names_the_registry() {
        assert_eq!(
            map(None, "ghcr.io/owner/app", DOCKER_HUB),
            pair("ghcr.io", "owner/app")
        );
        assert_eq!(
            map(None, "localhost/app", DOCKER_HUB),
            pair("localhost", "app")
        );
        assert_eq!(
            map(None, "registry.example.com/a/b/c", DOCKER_HUB),
            pair("registry.example.com", "a/b/c")
        );
        // Not hosts: plain namespaces go to the default upstream.
        assert_eq!(
            map(None, "owner/app", "127.0.0.1:5001"),
            pair("127.0.0.1:5001", "owner/app")
        );
        assert_eq!(
            map(None, "app", "127.0.0.1:5001"),
            pair("127.0.0.1:5001", "app")
        );
        // A single dotted component is a repository, not a host.
        assert_eq!(
            map(None, "my.app", DOCKER_HUB),
            pair("docker.io", "library/my.app")
        );
    }

    #[test]
    fn hosts_are_checked_and_folded() {
        assert!(looks_like_host("localhost"));
        assert!(looks_like_host("host:5000"));
        assert!(looks_like_host("a.b"));
        assert!(!looks_like_host("library"));
        assert_eq!(canonical_host("GHCR.io").expect("host"), "ghcr.io");
        assert_eq!(
            canonical_host("registry-1.docker.io").expect("host"),
            "docker.io"
        );
        assert_eq!(canonical_host("[::1]:5000").expect("host"), "[::1]:5000");
        for bad in ["", "a/b", "a b", "user@host", "-x", "host?x", "h%2f"] {
            assert!(canonical_host(bad).is_err(), "{bad:?}");
        }
        assert!(canonical_host(&"a".repeat(300)).is_err());
        assert!(matches!(
            upstream_repo(Some("bad host"), "app", DOCKER_HUB),
            Err(NameMapError::InvalidHost(_))
        ));
        assert!(matches!(
            upstream_repo(None, "ghcr.io/Owner", DOCKER_HUB),
            Err(NameMapError::InvalidRepo(_))
        ));
    }
}
