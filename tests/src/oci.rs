//! Reading OCI image layouts and checking content against digests.

use std::io::Read;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use sha2::{Digest as _, Sha256, Sha512};

/// A content descriptor (the fields the tests use).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Descriptor {
    #[serde(default)]
    pub media_type: String,
    pub digest: String,
    pub size: u64,
    #[serde(default)]
    pub annotations: std::collections::BTreeMap<String, String>,
}

#[derive(Debug, Deserialize)]
struct Index {
    manifests: Vec<Descriptor>,
}

#[derive(Debug, Deserialize)]
struct Manifest {
    config: Descriptor,
    layers: Vec<Descriptor>,
}

/// An image manifest with what it references.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageDigests {
    pub manifest: Descriptor,
    pub config: Descriptor,
    pub layers: Vec<Descriptor>,
}

impl ImageDigests {
    /// Every blob of the image: manifest, config, layers.
    pub fn all(&self) -> Vec<String> {
        let mut all = vec![self.manifest.digest.clone(), self.config.digest.clone()];
        all.extend(self.layers.iter().map(|l| l.digest.clone()));
        all
    }

    /// The config and layer digests (what a format conversion keeps).
    pub fn referenced(&self) -> Vec<String> {
        let mut all = vec![self.config.digest.clone()];
        all.extend(self.layers.iter().map(|l| l.digest.clone()));
        all
    }
}

const REF_NAME: &str = "org.opencontainers.image.ref.name";

/// An OCI image layout directory.
#[derive(Debug, Clone)]
pub struct Layout {
    pub root: PathBuf,
}

impl Layout {
    pub fn new(root: impl Into<PathBuf>) -> Layout {
        Layout { root: root.into() }
    }

    /// The descriptor `index.json` gives for `tag`.
    pub fn manifest_descriptor(&self, tag: &str) -> Result<Descriptor, String> {
        let path = self.root.join("index.json");
        let index: Index = serde_json::from_slice(&read(&path)?)
            .map_err(|e| format!("parsing {}: {e}", path.display()))?;
        let mut found = index
            .manifests
            .into_iter()
            .filter(|d| d.annotations.get(REF_NAME).map(String::as_str) == Some(tag));
        let first = found
            .next()
            .ok_or_else(|| format!("no tag {tag} in {}", path.display()))?;
        if found.next().is_some() {
            return Err(format!("tag {tag} appears twice in {}", path.display()));
        }
        Ok(first)
    }

    /// The manifest for `tag` and the digests it references.
    pub fn image(&self, tag: &str) -> Result<ImageDigests, String> {
        let manifest = self.manifest_descriptor(tag)?;
        let bytes = self.read_blob(&manifest.digest)?;
        let parsed: Manifest = serde_json::from_slice(&bytes)
            .map_err(|e| format!("parsing manifest {}: {e}", manifest.digest))?;
        Ok(ImageDigests {
            manifest,
            config: parsed.config,
            layers: parsed.layers,
        })
    }

    pub fn blob_path(&self, digest: &str) -> Result<PathBuf, String> {
        let (alg, hex) = parse_digest(digest)?;
        Ok(self.root.join("blobs").join(alg).join(hex))
    }

    /// A blob's bytes, checked against its digest.
    pub fn read_blob(&self, digest: &str) -> Result<Vec<u8>, String> {
        let bytes = read(&self.blob_path(digest)?)?;
        let actual = digest_of(digest_alg(digest)?, &bytes);
        if actual != digest {
            return Err(format!(
                "blob {digest} in {} hashes to {actual}",
                self.root.display()
            ));
        }
        Ok(bytes)
    }

    /// Checks that every file under `blobs/` hashes to its name; returns
    /// how many there are.
    pub fn verify_all_blobs(&self) -> Result<usize, String> {
        let blobs = crate::registry::list_flat_blob_dir(&self.root.join("blobs"))?;
        for blob in &blobs {
            verify_file(&blob.digest, &blob.path)?;
        }
        Ok(blobs.len())
    }
}

/// Splits and validates `alg:hex` (sha256 or sha512, lowercase hex of the
/// right length).
pub fn parse_digest(digest: &str) -> Result<(&str, &str), String> {
    let (alg, hex) = digest
        .split_once(':')
        .ok_or_else(|| format!("not a digest: {digest:?}"))?;
    let len = match alg {
        "sha256" => 64,
        "sha512" => 128,
        _ => return Err(format!("unsupported digest algorithm in {digest:?}")),
    };
    let lower_hex = hex
        .bytes()
        .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
    if hex.len() != len || !lower_hex {
        return Err(format!("malformed digest {digest:?}"));
    }
    Ok((alg, hex))
}

fn digest_alg(digest: &str) -> Result<&str, String> {
    parse_digest(digest).map(|(alg, _)| alg)
}

/// `sha256:<hex>` of some bytes.
pub fn sha256_digest(bytes: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(bytes)))
}

fn digest_of(alg: &str, bytes: &[u8]) -> String {
    match alg {
        "sha512" => format!("sha512:{}", hex::encode(Sha512::digest(bytes))),
        _ => sha256_digest(bytes),
    }
}

/// Hashes a file (streaming) with the algorithm `digest` names and checks
/// the result equals `digest`.
pub fn verify_file(digest: &str, path: &Path) -> Result<(), String> {
    let alg = digest_alg(digest)?;
    let mut file =
        std::fs::File::open(path).map_err(|e| format!("opening {}: {e}", path.display()))?;
    let mut sha256 = Sha256::new();
    let mut sha512 = Sha512::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = file
            .read(&mut buf)
            .map_err(|e| format!("reading {}: {e}", path.display()))?;
        if n == 0 {
            break;
        }
        if alg == "sha512" {
            sha512.update(&buf[..n]);
        } else {
            sha256.update(&buf[..n]);
        }
    }
    let actual = if alg == "sha512" {
        format!("sha512:{}", hex::encode(sha512.finalize()))
    } else {
        format!("sha256:{}", hex::encode(sha256.finalize()))
    };
    if actual == digest {
        Ok(())
    } else {
        Err(format!(
            "{} is named {digest} but hashes to {actual}",
            path.display()
        ))
    }
}

fn read(path: &Path) -> Result<Vec<u8>, String> {
    std::fs::read(path).map_err(|e| format!("reading {}: {e}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digests_are_validated_strictly() {
        let empty = "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";
        assert_eq!(sha256_digest(b""), empty);
        assert!(parse_digest(empty).is_ok());
        assert!(parse_digest(&empty.to_uppercase()).is_err());
        assert!(parse_digest("sha256:abc").is_err());
        assert!(parse_digest("md5:d41d8cd98f00b204e9800998ecf8427e").is_err());
        assert!(parse_digest("sha256:../../etc/passwd").is_err());
    }

    #[test]
    fn files_are_checked_against_their_names() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("blob");
        std::fs::write(&path, b"hello").expect("write");
        verify_file(&sha256_digest(b"hello"), &path).expect("matches");
        let err = verify_file(&sha256_digest(b"other"), &path).expect_err("mismatch");
        assert!(err.contains("hashes to"), "{err}");
    }
}
