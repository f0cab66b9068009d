//! The pull-through side of the endpoint: names a client uses mapped to an
//! upstream registry and repository (containerd's `?ns=`, Docker Hub by
//! default, or a registry-host prefix), tags resolved there with a short
//! deadline and cached, manifests fetched by digest and checked, and the
//! blobs of a manifest prefetched as soon as it is served.
//!
//! Order for content: local store, then peers, then upstream — except the
//! manifest of a tag the upstream has just answered for, which is fetched
//! there (peers are its fallback): it is a few KiB, and asking peers first
//! waits out a provider lookup whenever nobody has it yet. A tag is
//! resolved upstream when it answers within `tag_timeout`; otherwise the
//! last mapping seen (younger than `max_stale_tag_age`) is used.

use std::time::Duration;

use bytes::Bytes;
use shoal_protocol::manifest::parse_manifest;
use shoal_protocol::{Digest, RepoName, Tag};

use super::RegistryState;
use super::error::{ErrorCode, RegistryError, RegistryResult};
use super::request::RequestParts;
use crate::store::{ManifestRecord, Store};
use crate::transfer::UpstreamSource;
use crate::upstream::{UpstreamClient, UpstreamError, UpstreamSettings};

/// What clients accept when they do not say (every manifest format).
pub(super) const ALL_MANIFESTS: [&str; 4] = [
    shoal_protocol::manifest::OCI_MANIFEST,
    shoal_protocol::manifest::OCI_INDEX,
    shoal_protocol::manifest::DOCKER_MANIFEST,
    shoal_protocol::manifest::DOCKER_MANIFEST_LIST,
];

#[derive(Debug, Clone)]
pub struct Mirror {
    client: UpstreamClient,
    tag_timeout: Duration,
    max_stale: Duration,
}

impl Mirror {
    pub fn new(client: UpstreamClient, settings: &UpstreamSettings) -> Mirror {
        Mirror {
            client,
            tag_timeout: settings.tag_timeout,
            max_stale: settings.max_stale_tag_age,
        }
    }

    pub fn client(&self) -> &UpstreamClient {
        &self.client
    }

    /// The upstream a request for `name` maps to, if any.
    pub fn source(&self, req: &RequestParts, name: &RepoName) -> Option<UpstreamSource> {
        self.client
            .map_name(req.query("ns"), name.as_str())
            .ok()
            .map(|m| UpstreamSource {
                host: m.host,
                repo: m.repo,
            })
    }

    /// The digest `tag` names upstream now, or the cached mapping when the
    /// upstream cannot say in time; and whether the upstream answered.
    pub async fn resolve_tag(
        &self,
        store: &Store,
        fetcher: Option<&crate::transfer::Fetcher>,
        source: &UpstreamSource,
        tag: &Tag,
        accept: &[&str],
    ) -> RegistryResult<(Digest, TagFrom)> {
        let key = cache_key(source, tag);
        let reference = shoal_protocol::Reference::Tag(tag.clone());
        match self
            .client
            .head_manifest(
                &source.host,
                &source.repo,
                &reference,
                accept,
                self.tag_timeout,
            )
            .await
        {
            Ok(head) => {
                let known = store.mirror_tag(&key)?.is_some();
                store.put_mirror_tag(&key, &head.digest)?;
                if let (Some(fetcher), false) = (fetcher, known) {
                    fetcher.announce_tag(&key).await;
                }
                Ok((head.digest, TagFrom::Upstream))
            }
            Err(e) => {
                if !matches!(e, UpstreamError::NotFound { .. })
                    && let Some((digest, age)) = store.mirror_tag(&key)?
                    && age <= self.max_stale
                {
                    tracing::info!(%key, %digest, age_s = age.as_secs(), error = %e, "upstream unreachable; using the cached tag");
                    return Ok((digest, TagFrom::Cache));
                }
                if !matches!(e, UpstreamError::NotFound { .. })
                    && let Some(fetcher) = fetcher
                    && let Some((digest, age)) = fetcher.tag_from_peers(&key).await
                    && age <= self.max_stale
                {
                    tracing::info!(%key, %digest, age_s = age.as_secs(), error = %e, "upstream unreachable; using a peer's tag");
                    return Ok((digest, TagFrom::Peers));
                }
                Err(upstream_error(e))
            }
        }
    }

    /// Fetches a manifest by digest upstream (checked against the digest)
    /// and records it in `name`.
    pub async fn adopt(
        &self,
        state: &RegistryState,
        source: &UpstreamSource,
        name: &RepoName,
        digest: &Digest,
    ) -> RegistryResult<ManifestRecord> {
        let reference = shoal_protocol::Reference::Digest(digest.clone());
        let manifest = self
            .client
            .get_manifest(&source.host, &source.repo, &reference, &ALL_MANIFESTS)
            .await
            .map_err(upstream_error)?;
        state.store.put_blob(digest, &manifest.bytes).await?;
        super::manifests::record_manifest(state, name, digest, manifest.bytes).await
    }
}

/// Starts fetching the config and layers of an image manifest just served
/// (clients ask for them next); each joins a fetch under way, and the
/// fetcher bounds how many run at once.
pub fn prefetch(state: &RegistryState, source: &UpstreamSource, manifest: &Bytes) {
    let Some(fetcher) = &state.fetcher else {
        return;
    };
    let Ok(parsed) = parse_manifest(manifest, None) else {
        return;
    };
    if !matches!(
        parsed.media_type.as_str(),
        shoal_protocol::manifest::OCI_MANIFEST | shoal_protocol::manifest::DOCKER_MANIFEST
    ) {
        return;
    }
    for digest in parsed.references {
        if matches!(state.store.blob_size(&digest), Ok(None)) {
            fetcher.begin(&digest, Some(source.clone()));
        }
    }
}

/// Who said what a mirrored tag names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TagFrom {
    /// The upstream, just now: it is reachable.
    Upstream,
    /// This node's cache of an earlier answer (the upstream is not).
    Cache,
    /// A peer's signed-off mapping (the upstream is not).
    Peers,
}

fn cache_key(source: &UpstreamSource, tag: &Tag) -> String {
    format!("{}/{}:{}", source.host, source.repo, tag)
}

/// An upstream failure as the OCI error a client gets.
pub fn upstream_error(e: UpstreamError) -> RegistryError {
    let code = match e.oci_code() {
        "MANIFEST_UNKNOWN" => ErrorCode::ManifestUnknown,
        "BLOB_UNKNOWN" => ErrorCode::BlobUnknown,
        "NAME_UNKNOWN" => ErrorCode::NameUnknown,
        "UNAUTHORIZED" => ErrorCode::Unauthorized,
        "DENIED" => ErrorCode::Denied,
        "TOO_MANY_REQUESTS" => ErrorCode::TooManyRequests,
        _ => ErrorCode::Unknown,
    };
    RegistryError::new(code, e.to_string()).with_status(e.status())
}
