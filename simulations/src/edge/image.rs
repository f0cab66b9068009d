//! The test images: random (incompressible) layers behind an OCI manifest,
//! made in memory and pushed with plain HTTP, so no image tool has to run
//! inside a namespace. Nothing unpacks the layers, so they need not be
//! tars; the registry and shoal only see digests and bytes.

use std::fmt;
use std::str::FromStr;

use bytes::Bytes;
use rand::RngCore;
use serde::{Deserialize, Serialize};
use serde_json::json;
use shoal_protocol::Digest;

use crate::http_fetch::push_blob;

pub const MANIFEST_TYPE: &str = "application/vnd.oci.image.manifest.v1+json";
const CONFIG_TYPE: &str = "application/vnd.oci.image.config.v1+json";
const LAYER_TYPE: &str = "application/vnd.oci.image.layer.v1.tar";
pub const TAG: &str = "latest";

/// Shares of the multi-layer image, in 64ths: a big base, a few middling
/// layers, a small top, like a typical application image.
pub const MULTI_SHARES: [u64; 6] = [28, 16, 10, 6, 3, 1];

/// Which image the hosts pull.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ImageSpec {
    /// One layer of `mib` MiB.
    Single { mib: u64 },
    /// Six layers of `mib` MiB in all, split by [`MULTI_SHARES`].
    Multi { mib: u64 },
}

impl ImageSpec {
    /// Layer sizes in bytes. Multi layers are a few KiB short of their
    /// share so they do not all end on a chunk boundary.
    pub fn layer_sizes(self) -> Vec<u64> {
        match self {
            ImageSpec::Single { mib } => vec![mib << 20],
            ImageSpec::Multi { mib } => MULTI_SHARES
                .iter()
                .enumerate()
                .map(|(i, share)| {
                    ((mib << 20) * share / 64)
                        .saturating_sub(4099 * i as u64)
                        .max(1)
                })
                .collect(),
        }
    }

    pub fn repo(self) -> String {
        format!("edge/{self}")
    }
}

impl fmt::Display for ImageSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ImageSpec::Single { mib } => write!(f, "single-{mib}m"),
            ImageSpec::Multi { mib } => write!(f, "multi-{mib}m"),
        }
    }
}

impl FromStr for ImageSpec {
    type Err = String;
    fn from_str(s: &str) -> Result<ImageSpec, String> {
        let bad = || format!("image `{s}`: expected single-<MiB>m or multi-<MiB>m, e.g. multi-64m");
        let (kind, size) = s.split_once('-').ok_or_else(bad)?;
        let mib: u64 = size
            .strip_suffix('m')
            .and_then(|m| m.parse().ok())
            .filter(|m| *m > 0)
            .ok_or_else(bad)?;
        match kind {
            "single" => Ok(ImageSpec::Single { mib }),
            "multi" => Ok(ImageSpec::Multi { mib }),
            _ => Err(bad()),
        }
    }
}

/// One blob the image references.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct BlobRef {
    pub digest: Digest,
    pub size: u64,
}

/// What was pushed: enough to pull it and to know its size.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PushedImage {
    pub repo: String,
    pub tag: String,
    pub manifest_digest: Digest,
    /// The config blob, then the layers.
    pub blobs: Vec<BlobRef>,
}

impl PushedImage {
    /// S: the bytes a host must receive (config and layers; the manifest's
    /// few hundred bytes are left out).
    pub fn bytes(&self) -> u64 {
        self.blobs.iter().map(|b| b.size).sum()
    }
}

fn random(len: u64) -> Bytes {
    let mut v = vec![0u8; len as usize];
    rand::rng().fill_bytes(&mut v);
    Bytes::from(v)
}

/// Makes the image and pushes it to the registry at `base`
/// (`http://host:port`).
pub async fn push(base: &str, spec: ImageSpec) -> anyhow::Result<PushedImage> {
    let client = reqwest::Client::builder().no_proxy().build()?;
    let repo = spec.repo();
    let mut layers = Vec::new();
    for size in spec.layer_sizes() {
        let digest = push_blob(&client, base, &repo, random(size)).await?;
        layers.push(BlobRef { digest, size });
    }
    let config = serde_json::to_vec(&json!({
        "architecture": "amd64",
        "os": "linux",
        "rootfs": {
            "type": "layers",
            // Uncompressed layers: each one's diff id is its digest.
            "diff_ids": layers.iter().map(|l| l.digest.to_string()).collect::<Vec<_>>(),
        },
    }))?;
    let config = BlobRef {
        size: config.len() as u64,
        digest: push_blob(&client, base, &repo, Bytes::from(config)).await?,
    };
    let descriptor = |media_type: &str, blob: &BlobRef| json!({ "mediaType": media_type, "digest": blob.digest.to_string(), "size": blob.size });
    let manifest = serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "mediaType": MANIFEST_TYPE,
        "config": descriptor(CONFIG_TYPE, &config),
        "layers": layers.iter().map(|l| descriptor(LAYER_TYPE, l)).collect::<Vec<_>>(),
    }))?;
    let manifest_digest = Digest::sha256_of(&manifest);
    let resp = client
        .put(format!("{base}/v2/{repo}/manifests/{TAG}"))
        .header("content-type", MANIFEST_TYPE)
        .body(manifest)
        .send()
        .await?;
    anyhow::ensure!(
        resp.status().as_u16() == 201,
        "PUT manifest to {base}: {}",
        resp.status()
    );
    let mut blobs = vec![config];
    blobs.extend(layers);
    Ok(PushedImage {
        repo,
        tag: TAG.to_owned(),
        manifest_digest,
        blobs,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn specs_round_trip_and_multi_adds_up() {
        for s in ["single-64m", "multi-64m", "single-8m"] {
            assert_eq!(
                s.parse::<ImageSpec>().map(|i| i.to_string()),
                Ok(s.to_owned())
            );
        }
        assert!("multi-0m".parse::<ImageSpec>().is_err());
        assert!("huge-1m".parse::<ImageSpec>().is_err());
        let sizes = ImageSpec::Multi { mib: 64 }.layer_sizes();
        assert_eq!(sizes.len(), 6);
        let total: u64 = sizes.iter().sum();
        assert!(total <= 64 << 20 && total > (64 << 20) - 100_000);
    }
}
