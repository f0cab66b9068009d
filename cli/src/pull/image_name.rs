//! Image names as Docker reads them: `[host/]repo[:tag]` or
//! `[host/]repo@digest`, the tag defaulting to `latest`.
//!
//! The first path component names a registry host only when it looks like
//! one (contains `.` or `:`, or is `localhost`) and more components follow;
//! otherwise the whole name is a repository on the node's default upstream.
//! A host travels to the node as `?ns=<host>`, the query containerd uses
//! for mirrors, and the repository is sent as written: the node itself adds
//! Docker Hub's `library/` to single-component names.

use std::fmt;

use anyhow::{Context, anyhow};
use shoal_protocol::{Digest, Reference, RepoName, Tag};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageName {
    /// The registry named in the image, if any.
    pub host: Option<String>,
    pub repo: RepoName,
    pub reference: Reference,
}

impl ImageName {
    pub fn parse(text: &str) -> anyhow::Result<ImageName> {
        parse(text).with_context(|| format!("invalid image name {text:?}"))
    }

    /// The query naming the registry (`?ns=<host>`), or nothing.
    pub fn query(&self) -> String {
        match &self.host {
            Some(host) => format!("?ns={host}"),
            None => String::new(),
        }
    }

    /// `/v2/<repo>/manifests/<reference>?ns=…`
    pub fn manifest_path(&self, reference: &Reference) -> String {
        format!("/v2/{}/manifests/{reference}{}", self.repo, self.query())
    }

    /// `/v2/<repo>/blobs/<digest>?ns=…`
    pub fn blob_path(&self, digest: &Digest) -> String {
        format!("/v2/{}/blobs/{digest}{}", self.repo, self.query())
    }
}

fn parse(text: &str) -> anyhow::Result<ImageName> {
    let (name_and_tag, digest) = match text.split_once('@') {
        Some((name, digest)) => (name, Some(digest.parse::<Digest>()?)),
        None => (text, None),
    };
    // A tag follows the last `:` after the last `/` (a `:` before it is a
    // host's port).
    let last_component = name_and_tag.rfind('/').map_or(0, |i| i + 1);
    let (name, tag) = match name_and_tag[last_component..].find(':') {
        Some(i) => {
            let at = last_component + i;
            (&name_and_tag[..at], Some(&name_and_tag[at + 1..]))
        }
        None => (name_and_tag, None),
    };
    let (host, path) = match name.split_once('/') {
        Some((first, rest)) if is_registry_host(first) => (Some(first.to_owned()), rest),
        _ => (None, name),
    };
    let repo: RepoName = path.parse()?;
    let reference = match (digest, tag) {
        // `name:tag@digest`: the digest decides, as in Docker.
        (Some(digest), _) => Reference::Digest(digest),
        (None, Some(tag)) => Reference::Tag(tag.parse::<Tag>()?),
        (None, None) => Reference::Tag(
            "latest"
                .parse::<Tag>()
                .map_err(|e| anyhow!("default tag: {e}"))?,
        ),
    };
    Ok(ImageName {
        host,
        repo,
        reference,
    })
}

fn is_registry_host(component: &str) -> bool {
    component.contains(['.', ':']) || component == "localhost"
}

/// As the user would write it in full: `[host/]repo:tag` or `…@digest`.
impl fmt::Display for ImageName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(host) = &self.host {
            write!(f, "{host}/")?;
        }
        match &self.reference {
            Reference::Tag(tag) => write!(f, "{}:{tag}", self.repo),
            Reference::Digest(digest) => write!(f, "{}@{digest}", self.repo),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const D: &str = "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

    fn parts(text: &str) -> (Option<String>, String, String) {
        let image = ImageName::parse(text).expect("valid");
        (
            image.host,
            image.repo.to_string(),
            image.reference.to_string(),
        )
    }

    fn owned(host: Option<&str>, repo: &str, reference: &str) -> (Option<String>, String, String) {
        (
            host.map(str::to_owned),
            repo.to_owned(),
            reference.to_owned(),
        )
    }

    #[test]
    fn names_read_like_docker() {
        assert_eq!(parts("busybox"), owned(None, "busybox", "latest"));
        assert_eq!(
            parts("library/busybox:1.36"),
            owned(None, "library/busybox", "1.36")
        );
        assert_eq!(parts("demo/app/x:v1"), owned(None, "demo/app/x", "v1"));
        assert_eq!(
            parts("ghcr.io/org/tool:v2"),
            owned(Some("ghcr.io"), "org/tool", "v2")
        );
        assert_eq!(
            parts("localhost/app"),
            owned(Some("localhost"), "app", "latest")
        );
        assert_eq!(
            parts("127.0.0.1:5001/app:7"),
            owned(Some("127.0.0.1:5001"), "app", "7")
        );
        assert_eq!(parts(&format!("app@{D}")), owned(None, "app", D));
        assert_eq!(
            parts(&format!("quay.io/a/b:tag@{D}")),
            owned(Some("quay.io"), "a/b", D)
        );
        // Without a `/`, a first component is never a host: `localhost:5000`
        // is the repository `localhost` at tag `5000`.
        assert_eq!(parts("localhost:5000"), owned(None, "localhost", "5000"));
    }

    #[test]
    fn names_print_in_full_and_carry_the_host_as_ns() {
        let image = ImageName::parse("busybox").expect("valid");
        assert_eq!(image.to_string(), "busybox:latest");
        assert_eq!(image.query(), "");
        let image = ImageName::parse("ghcr.io/org/tool").expect("valid");
        assert_eq!(image.to_string(), "ghcr.io/org/tool:latest");
        assert_eq!(
            image.manifest_path(&image.reference),
            "/v2/org/tool/manifests/latest?ns=ghcr.io"
        );
        let digest: Digest = D.parse().expect("digest");
        assert_eq!(
            image.blob_path(&digest),
            format!("/v2/org/tool/blobs/{D}?ns=ghcr.io")
        );
    }

    #[test]
    fn bad_names_are_refused_with_the_name() {
        for bad in ["", "Upper/case", "app:", "app:-x", "app@sha256:12", "a//b"] {
            let err = ImageName::parse(bad).expect_err(bad);
            assert!(format!("{err:#}").contains("invalid image name"), "{err:#}");
        }
    }
}
