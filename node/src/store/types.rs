use std::collections::BTreeMap;
use std::path::PathBuf;

use bytes::Bytes;
use serde::{Deserialize, Serialize};
use shoal_protocol::{Digest, RepoName, Tag};

/// Where the store lives. Tests use a temp dir.
#[derive(Debug, Clone)]
pub struct StoreOptions {
    pub root: PathBuf,
}

/// A committed blob.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BlobInfo {
    pub digest: Digest,
    pub size: u64,
}

/// A manifest to record in a repository. The registry has already parsed and
/// validated the body; the store checks `digest` against `bytes` again.
#[derive(Debug, Clone)]
pub struct ManifestPut {
    pub digest: Digest,
    pub media_type: String,
    pub bytes: Bytes,
    /// Blobs and manifests this manifest references (layers, config, children).
    pub references: Vec<Digest>,
    pub subject: Option<Digest>,
    pub artifact_type: Option<String>,
    pub annotations: Option<BTreeMap<String, String>>,
    pub tag: Option<Tag>,
}

/// What the index knows about a manifest held in a repository.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ManifestRecord {
    pub digest: Digest,
    pub media_type: String,
    pub size: u64,
    pub references: Vec<Digest>,
    pub subject: Option<Digest>,
    pub artifact_type: Option<String>,
    pub annotations: Option<BTreeMap<String, String>>,
}

/// An upload session id: a UUID, validated before it touches a path.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct UploadId(pub(crate) uuid::Uuid);

impl UploadId {
    pub fn parse(s: &str) -> Option<UploadId> {
        uuid::Uuid::parse_str(s).ok().map(UploadId)
    }
}

impl std::fmt::Display for UploadId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.hyphenated().fmt(f)
    }
}

/// The state of an upload session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UploadState {
    pub repo: RepoName,
    /// Bytes received so far; the next chunk must start here.
    pub offset: u64,
}
