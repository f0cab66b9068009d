//! Fetching an image's manifest through the node, down to the one image
//! manifest this machine runs: an index (or Docker manifest list) is
//! resolved to its entry for this platform, fetched by digest.
//!
//! Every manifest is checked against its digest: the one asked for, else
//! the one the node states in `Docker-Content-Digest`.

use anyhow::anyhow;
use reqwest::{Response, StatusCode, header};
use serde::Deserialize;
use shoal_protocol::manifest::{ManifestKind, parse_manifest};
use shoal_protocol::{Algorithm, Digest, DigestHasher, DigestVerifier, Reference};

use super::image_name::ImageName;
use super::platform::{self, IndexEntry, Platform};
use super::source::Source;
use crate::node_client::{self, NodeClient};

/// Every manifest type a pull understands, as Docker asks for them (the
/// test below checks it names each of protocol's constants).
const ACCEPT: &str = "application/vnd.oci.image.index.v1+json, \
                      application/vnd.oci.image.manifest.v1+json, \
                      application/vnd.docker.distribution.manifest.list.v2+json, \
                      application/vnd.docker.distribution.manifest.v2+json";

/// Larger manifests are refused, as the node refuses them.
const MAX_MANIFEST_BYTES: usize = 4 << 20;

/// A manifest as the node served it, checked against its digest.
#[derive(Debug)]
pub struct FetchedManifest {
    pub digest: Digest,
    pub kind: ManifestKind,
    pub bytes: Vec<u8>,
    pub source: Source,
}

/// A blob named by a manifest.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Descriptor {
    pub digest: Digest,
    pub size: u64,
}

#[derive(Debug, Deserialize)]
struct ImageManifestBody {
    config: Descriptor,
    #[serde(default)]
    layers: Vec<Descriptor>,
}

#[derive(Debug, Deserialize)]
struct IndexBody {
    #[serde(default)]
    manifests: Vec<IndexEntry>,
}

/// The image manifest to pull, and the index it was chosen from.
#[derive(Debug)]
pub struct Resolved {
    pub index: Option<(FetchedManifest, Platform)>,
    pub manifest: FetchedManifest,
    pub config: Descriptor,
    pub layers: Vec<Descriptor>,
}

impl Resolved {
    /// Config and layers, each digest once, in manifest order.
    pub fn blobs(&self) -> Vec<Descriptor> {
        let mut blobs: Vec<Descriptor> = Vec::with_capacity(self.layers.len() + 1);
        for blob in std::iter::once(&self.config).chain(&self.layers) {
            if !blobs.iter().any(|b| b.digest == blob.digest) {
                blobs.push(blob.clone());
            }
        }
        blobs
    }
}

pub async fn resolve(client: &NodeClient, image: &ImageName) -> anyhow::Result<Resolved> {
    let first = fetch(client, image, &image.reference).await?;
    let (index, manifest) = match first.kind {
        ManifestKind::Image => (None, first),
        ManifestKind::Index => {
            let body: IndexBody = serde_json::from_slice(&first.bytes)
                .map_err(|e| anyhow!("index {} of {image} is invalid: {e}", first.digest))?;
            let wanted = Platform::current();
            let entry = platform::choose(&body.manifests, &wanted).ok_or_else(|| {
                anyhow!(
                    "image {image} has no manifest for {wanted} (it has: {})",
                    platform::offered(&body.manifests)
                )
            })?;
            let child = fetch(client, image, &Reference::Digest(entry.digest.clone())).await?;
            if child.kind != ManifestKind::Image {
                return Err(anyhow!(
                    "the {wanted} entry of index {} of {image} is not an image manifest",
                    first.digest
                ));
            }
            (Some((first, wanted)), child)
        }
    };
    let body: ImageManifestBody = serde_json::from_slice(&manifest.bytes)
        .map_err(|e| anyhow!("manifest {} of {image} is invalid: {e}", manifest.digest))?;
    Ok(Resolved {
        index,
        manifest,
        config: body.config,
        layers: body.layers,
    })
}

async fn fetch(
    client: &NodeClient,
    image: &ImageName,
    reference: &Reference,
) -> anyhow::Result<FetchedManifest> {
    let what = match reference {
        Reference::Tag(_) => format!("image {image}"),
        Reference::Digest(digest) => format!("manifest {digest} of {image}"),
    };
    let response = client
        .get(&image.manifest_path(reference), Some(ACCEPT))
        .await?;
    let status = response.status();
    if !status.is_success() {
        let cause = node_client::describe_failure(response).await;
        return Err(match status {
            StatusCode::NOT_FOUND => anyhow!("{what} not found ({cause})"),
            StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => {
                anyhow!("access to {what} denied ({cause})")
            }
            _ => anyhow!("cannot get {what} ({cause})"),
        });
    }
    let source = Source::of(response.headers());
    let content_type = header_text(&response, header::CONTENT_TYPE);
    let stated = header_text(&response, "docker-content-digest").and_then(|d| d.parse().ok());
    let bytes = client
        .read_small_body(response, MAX_MANIFEST_BYTES, &what)
        .await?;
    let digest = check_digest(&bytes, reference.as_digest().or(stated.as_ref()))
        .map_err(|mismatch| anyhow!("{what}: {mismatch}"))?;
    let parsed = parse_manifest(&bytes, content_type.as_deref())
        .map_err(|e| anyhow!("{what} is invalid: {e}"))?;
    Ok(FetchedManifest {
        digest,
        kind: parsed.kind,
        bytes,
        source,
    })
}

fn header_text(response: &Response, name: impl header::AsHeaderName) -> Option<String> {
    response
        .headers()
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
}

/// The manifest's digest: `expected` if the bytes hash to it (an error if
/// not), or their sha256 when nothing is expected.
fn check_digest(bytes: &[u8], expected: Option<&Digest>) -> anyhow::Result<Digest> {
    match expected {
        Some(expected) => {
            let mut verifier = DigestVerifier::new(expected.clone());
            verifier.update(bytes);
            verifier.finish()?;
            Ok(expected.clone())
        }
        None => {
            let mut hasher = DigestHasher::new(Algorithm::Sha256);
            hasher.update(bytes);
            Ok(hasher.finish())
        }
    }
}

#[cfg(test)]
mod tests {
    use shoal_protocol::manifest::{
        DOCKER_MANIFEST, DOCKER_MANIFEST_LIST, OCI_INDEX, OCI_MANIFEST,
    };

    use super::*;

    #[test]
    fn accept_names_every_manifest_type() {
        for media_type in [
            OCI_INDEX,
            OCI_MANIFEST,
            DOCKER_MANIFEST_LIST,
            DOCKER_MANIFEST,
        ] {
            assert!(ACCEPT.split(", ").any(|t| t == media_type), "{media_type}");
        }
    }

    #[test]
    fn manifests_must_hash_to_their_digest() {
        let body = b"{}";
        let right = Digest::sha256_of(body);
        assert_eq!(check_digest(body, Some(&right)).expect("matches"), right);
        assert_eq!(check_digest(body, None).expect("computed"), right);
        let wrong = Digest::sha256_of(b"other");
        let err = check_digest(body, Some(&wrong)).expect_err("mismatch");
        assert!(err.to_string().contains("does not match digest"), "{err}");
    }

    #[test]
    fn blobs_are_config_then_layers_each_once() {
        let d = |n: u8| Descriptor {
            digest: Digest::sha256_of(&[n]),
            size: u64::from(n),
        };
        let resolved = Resolved {
            index: None,
            manifest: FetchedManifest {
                digest: Digest::sha256_of(b"m"),
                kind: ManifestKind::Image,
                bytes: Vec::new(),
                source: Source::Unknown,
            },
            config: d(0),
            layers: vec![d(1), d(2), d(1)],
        };
        assert_eq!(resolved.blobs(), vec![d(0), d(1), d(2)]);
    }
}
