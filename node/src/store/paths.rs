//! Where things live under the store root. Every path is built from validated
//! names and digests, so none can escape the root.

use std::path::{Path, PathBuf};

use shoal_protocol::{Digest, RepoName, Tag};

use super::types::UploadId;

#[derive(Debug, Clone)]
pub struct Layout {
    root: PathBuf,
}

impl Layout {
    pub fn new(root: &Path) -> Layout {
        Layout {
            root: root.to_path_buf(),
        }
    }

    pub fn blobs(&self) -> PathBuf {
        self.root.join("blobs")
    }

    pub fn blob(&self, digest: &Digest) -> PathBuf {
        self.blobs()
            .join(digest.algorithm().name())
            .join(digest.hex())
    }

    pub fn partials(&self) -> PathBuf {
        self.root.join("partial")
    }

    pub fn partial(&self, digest: &Digest) -> PathBuf {
        self.partials()
            .join(format!("{}-{}", digest.algorithm().name(), digest.hex()))
    }

    pub fn tmp(&self) -> PathBuf {
        self.root.join("tmp")
    }

    pub fn uploads(&self) -> PathBuf {
        self.root.join("uploads")
    }

    pub fn upload(&self, id: &UploadId) -> PathBuf {
        self.uploads().join(id.to_string())
    }

    pub fn upload_data(&self, id: &UploadId) -> PathBuf {
        self.upload(id).join("data")
    }

    pub fn upload_repo(&self, id: &UploadId) -> PathBuf {
        self.upload(id).join("repo")
    }

    pub fn index(&self) -> PathBuf {
        self.root.join("index")
    }

    pub fn repos(&self) -> PathBuf {
        self.root.join("repos")
    }

    pub fn repo(&self, repo: &RepoName) -> PathBuf {
        // Components of a validated name are [a-z0-9] words with separators:
        // never empty, never `.` or `..`.
        let mut p = self.repos();
        for part in repo.as_str().split('/') {
            p.push(part);
        }
        p
    }

    pub fn manifest_marker(&self, repo: &RepoName, digest: &Digest) -> PathBuf {
        self.repo(repo).join("_manifests").join(format!(
            "{}-{}",
            digest.algorithm().name(),
            digest.hex()
        ))
    }

    pub fn tag_file(&self, repo: &RepoName, tag: &Tag) -> PathBuf {
        // A tag starts with [A-Za-z0-9_], so it is never `.` or `..`.
        self.repo(repo).join("_tags").join(tag.as_str())
    }
}
