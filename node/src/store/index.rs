//! The sled index: fast answers over what the files hold.
//!
//! Trees and keys (`\0` separates parts; names and tags never contain it):
//! - `blobs`:     `<digest>` → [`BlobEntry`]
//! - `manifests`: `<repo>\0<digest>` → [`ManifestRecord`]
//! - `tags`:      `<repo>\0<tag>` → `<digest>`
//! - `referrers`: `<repo>\0<subject>\0<digest>` → empty
//! - `uploads`:   `<uuid>` → [`UploadEntry`]
//! - `mirror_tags`: `<host>/<repo>:<tag>` → `<digest>\0<ms>` (tags resolved upstream; a cache)
//! - `maps`:      `<digest>` → encoded chunk map (derived from the blob; a cache)
//! - `meta`:      `clean` → present only between a clean close and the next open

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};
use shoal_protocol::{Digest, RepoName, Tag};

use super::error::StoreError;
use super::types::{ManifestRecord, UploadId};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct BlobEntry {
    pub size: u64,
    /// Milliseconds since the Unix epoch; for eviction by least-recent use.
    pub last_access_ms: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UploadEntry {
    pub repo: RepoName,
    pub offset: u64,
}

#[derive(Debug, Clone)]
pub struct Index {
    db: sled::Db,
    pub blobs: sled::Tree,
    pub manifests: sled::Tree,
    pub tags: sled::Tree,
    pub referrers: sled::Tree,
    pub uploads: sled::Tree,
    pub maps: sled::Tree,
    pub mirror_tags: sled::Tree,
    meta: sled::Tree,
}

fn key2(a: &str, b: &str) -> Vec<u8> {
    let mut k = Vec::with_capacity(a.len() + b.len() + 1);
    k.extend_from_slice(a.as_bytes());
    k.push(0);
    k.extend_from_slice(b.as_bytes());
    k
}

fn repo_prefix(repo: &RepoName) -> Vec<u8> {
    key2(repo.as_str(), "")
}

fn decode<T: for<'de> Deserialize<'de>>(key: &[u8], value: &[u8]) -> Result<T, StoreError> {
    serde_json::from_slice(value).map_err(|e| StoreError::CorruptRecord {
        key: String::from_utf8_lossy(key).into_owned(),
        reason: e.to_string(),
    })
}

fn encode<T: Serialize>(value: &T) -> Vec<u8> {
    // Serialising plain structs of strings and numbers cannot fail.
    serde_json::to_vec(value).unwrap_or_default()
}

fn corrupt(key: &[u8], reason: &str) -> StoreError {
    StoreError::CorruptRecord {
        key: String::from_utf8_lossy(key).into_owned(),
        reason: reason.to_owned(),
    }
}

/// The part of a key after the last `\0`.
fn last_part(key: &[u8]) -> &[u8] {
    match key.iter().rposition(|&b| b == 0) {
        Some(i) => &key[i + 1..],
        None => key,
    }
}

fn parse_str<T: std::str::FromStr>(key: &[u8], bytes: &[u8]) -> Result<T, StoreError> {
    std::str::from_utf8(bytes)
        .ok()
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| corrupt(key, "unparsable name or digest"))
}

impl Index {
    pub fn open(path: &std::path::Path) -> Result<Index, StoreError> {
        let db = sled::Config::new().path(path).open()?;
        Ok(Index {
            blobs: db.open_tree("blobs")?,
            manifests: db.open_tree("manifests")?,
            tags: db.open_tree("tags")?,
            referrers: db.open_tree("referrers")?,
            uploads: db.open_tree("uploads")?,
            maps: db.open_tree("maps")?,
            mirror_tags: db.open_tree("mirror_tags")?,
            meta: db.open_tree("meta")?,
            db,
        })
    }

    /// Whether the last close was clean; clears the mark, so a crash from now
    /// on is seen at the next open.
    pub fn take_clean_mark(&self) -> Result<bool, StoreError> {
        let was = self.meta.remove("clean")?.is_some();
        self.meta.flush()?;
        Ok(was)
    }

    pub fn mark_clean(&self) -> Result<(), StoreError> {
        self.meta.insert("clean", &[])?;
        self.db.flush()?;
        Ok(())
    }

    pub fn flush(&self) -> Result<(), StoreError> {
        self.db.flush()?;
        Ok(())
    }

    pub fn clear_all(&self) -> Result<(), StoreError> {
        for tree in [
            &self.blobs,
            &self.manifests,
            &self.tags,
            &self.referrers,
            &self.uploads,
            &self.maps,
        ] {
            tree.clear()?;
        }
        Ok(())
    }

    // Blobs.

    pub fn blob(&self, digest: &Digest) -> Result<Option<BlobEntry>, StoreError> {
        let key = digest.to_string();
        match self.blobs.get(&key)? {
            Some(v) => Ok(Some(decode(key.as_bytes(), &v)?)),
            None => Ok(None),
        }
    }

    pub fn put_blob(&self, digest: &Digest, entry: BlobEntry) -> Result<(), StoreError> {
        self.blobs.insert(digest.to_string(), encode(&entry))?;
        Ok(())
    }

    pub fn remove_blob(&self, digest: &Digest) -> Result<bool, StoreError> {
        self.maps.remove(digest.to_string())?;
        Ok(self.blobs.remove(digest.to_string())?.is_some())
    }

    pub fn blob_entries(&self) -> Result<Vec<(Digest, BlobEntry)>, StoreError> {
        let mut out = Vec::new();
        for item in self.blobs.iter() {
            let (k, v) = item?;
            out.push((parse_str(&k, &k)?, decode(&k, &v)?));
        }
        Ok(out)
    }

    // Manifests, tags, referrers.

    pub fn manifest(
        &self,
        repo: &RepoName,
        digest: &Digest,
    ) -> Result<Option<ManifestRecord>, StoreError> {
        let key = key2(repo.as_str(), &digest.to_string());
        match self.manifests.get(&key)? {
            Some(v) => Ok(Some(decode(&key, &v)?)),
            None => Ok(None),
        }
    }

    pub fn put_manifest(&self, repo: &RepoName, record: &ManifestRecord) -> Result<(), StoreError> {
        let digest = record.digest.to_string();
        self.manifests
            .insert(key2(repo.as_str(), &digest), encode(record))?;
        if let Some(subject) = &record.subject {
            let mut key = key2(repo.as_str(), &subject.to_string());
            key.push(0);
            key.extend_from_slice(digest.as_bytes());
            self.referrers.insert(key, &[])?;
        }
        Ok(())
    }

    pub fn remove_manifest(
        &self,
        repo: &RepoName,
        record: &ManifestRecord,
    ) -> Result<(), StoreError> {
        let digest = record.digest.to_string();
        self.manifests.remove(key2(repo.as_str(), &digest))?;
        if let Some(subject) = &record.subject {
            let mut key = key2(repo.as_str(), &subject.to_string());
            key.push(0);
            key.extend_from_slice(digest.as_bytes());
            self.referrers.remove(key)?;
        }
        Ok(())
    }

    pub fn tag(&self, repo: &RepoName, tag: &Tag) -> Result<Option<Digest>, StoreError> {
        let key = key2(repo.as_str(), tag.as_str());
        match self.tags.get(&key)? {
            Some(v) => Ok(Some(parse_str(&key, &v)?)),
            None => Ok(None),
        }
    }

    pub fn put_tag(&self, repo: &RepoName, tag: &Tag, digest: &Digest) -> Result<(), StoreError> {
        self.tags.insert(
            key2(repo.as_str(), tag.as_str()),
            digest.to_string().as_bytes(),
        )?;
        Ok(())
    }

    pub fn remove_tag(&self, repo: &RepoName, tag: &Tag) -> Result<bool, StoreError> {
        Ok(self
            .tags
            .remove(key2(repo.as_str(), tag.as_str()))?
            .is_some())
    }

    /// Tags of a repository with their digests, sorted by tag.
    pub fn tags_of(&self, repo: &RepoName) -> Result<Vec<(Tag, Digest)>, StoreError> {
        let mut out = Vec::new();
        for item in self.tags.scan_prefix(repo_prefix(repo)) {
            let (k, v) = item?;
            out.push((parse_str(&k, last_part(&k))?, parse_str(&k, &v)?));
        }
        Ok(out)
    }

    pub fn referrers_of(
        &self,
        repo: &RepoName,
        subject: &Digest,
    ) -> Result<Vec<Digest>, StoreError> {
        let mut prefix = key2(repo.as_str(), &subject.to_string());
        prefix.push(0);
        let mut out = Vec::new();
        for item in self.referrers.scan_prefix(prefix) {
            let (k, _) = item?;
            out.push(parse_str(&k, last_part(&k))?);
        }
        Ok(out)
    }

    pub fn repo_exists(&self, repo: &RepoName) -> Result<bool, StoreError> {
        let prefix = repo_prefix(repo);
        Ok(self
            .manifests
            .scan_prefix(&prefix)
            .next()
            .transpose()?
            .is_some()
            || self.tags.scan_prefix(&prefix).next().transpose()?.is_some())
    }

    pub fn repositories(&self) -> Result<Vec<RepoName>, StoreError> {
        let mut names = BTreeSet::new();
        for tree in [&self.manifests, &self.tags] {
            for item in tree.iter() {
                let (k, _) = item?;
                let end = k.iter().position(|&b| b == 0).unwrap_or(k.len());
                names.insert(parse_str::<RepoName>(&k, &k[..end])?);
            }
        }
        Ok(names.into_iter().collect())
    }

    // Uploads.

    pub fn upload(&self, id: &UploadId) -> Result<Option<UploadEntry>, StoreError> {
        let key = id.to_string();
        match self.uploads.get(&key)? {
            Some(v) => Ok(Some(decode(key.as_bytes(), &v)?)),
            None => Ok(None),
        }
    }

    pub fn put_upload(&self, id: &UploadId, entry: &UploadEntry) -> Result<(), StoreError> {
        self.uploads.insert(id.to_string(), encode(entry))?;
        Ok(())
    }

    pub fn remove_upload(&self, id: &UploadId) -> Result<bool, StoreError> {
        Ok(self.uploads.remove(id.to_string())?.is_some())
    }

    pub fn upload_entries(&self) -> Result<Vec<(String, UploadEntry)>, StoreError> {
        let mut out = Vec::new();
        for item in self.uploads.iter() {
            let (k, v) = item?;
            out.push((String::from_utf8_lossy(&k).into_owned(), decode(&k, &v)?));
        }
        Ok(out)
    }
}
