//! Manifests and tags per repository: marker and tag files first (the
//! truth), index entries second.

use shoal_protocol::{Digest, RepoName, Tag};

use super::Store;
use super::error::StoreError;
use super::fsutil::{remove_file, write_atomic};
use super::types::{ManifestPut, ManifestRecord};

impl Store {
    /// Records a manifest in a repository (and its tag, if given). The bytes
    /// are stored as a blob, checked against `m.digest`.
    pub async fn put_manifest(&self, repo: &RepoName, m: ManifestPut) -> Result<(), StoreError> {
        let info = self.put_blob(&m.digest, &m.bytes).await?;
        let record = ManifestRecord {
            digest: m.digest,
            media_type: m.media_type,
            size: info.size,
            references: m.references,
            subject: m.subject,
            artifact_type: m.artifact_type,
            annotations: m.annotations,
        };
        let store = self.clone();
        let repo = repo.clone();
        let tag = m.tag;
        tokio::task::spawn_blocking(move || {
            let tmp = store.layout.tmp();
            write_atomic(
                &tmp,
                &store.layout.manifest_marker(&repo, &record.digest),
                record.media_type.as_bytes(),
            )?;
            if let Some(tag) = &tag {
                write_atomic(
                    &tmp,
                    &store.layout.tag_file(&repo, tag),
                    record.digest.to_string().as_bytes(),
                )?;
            }
            store.index.put_manifest(&repo, &record)?;
            if let Some(tag) = &tag {
                store.index.put_tag(&repo, tag, &record.digest)?;
            }
            Ok(())
        })
        .await?
    }

    pub fn manifest(
        &self,
        repo: &RepoName,
        digest: &Digest,
    ) -> Result<Option<ManifestRecord>, StoreError> {
        self.index.manifest(repo, digest)
    }

    pub fn resolve_tag(&self, repo: &RepoName, tag: &Tag) -> Result<Option<Digest>, StoreError> {
        self.index.tag(repo, tag)
    }

    /// Tags of a repository, sorted.
    pub fn tags(&self, repo: &RepoName) -> Result<Vec<Tag>, StoreError> {
        Ok(self
            .index
            .tags_of(repo)?
            .into_iter()
            .map(|(t, _)| t)
            .collect())
    }

    /// Repositories holding at least one manifest or tag, sorted.
    pub fn repositories(&self) -> Result<Vec<RepoName>, StoreError> {
        self.index.repositories()
    }

    pub fn repo_exists(&self, repo: &RepoName) -> Result<bool, StoreError> {
        self.index.repo_exists(repo)
    }

    pub async fn delete_tag(&self, repo: &RepoName, tag: &Tag) -> Result<bool, StoreError> {
        let store = self.clone();
        let (repo, tag) = (repo.clone(), tag.clone());
        tokio::task::spawn_blocking(move || {
            let had_file = remove_file(&store.layout.tag_file(&repo, &tag))?;
            let had_entry = store.index.remove_tag(&repo, &tag)?;
            Ok(had_file || had_entry)
        })
        .await?
    }

    /// Removes a manifest from a repository with every tag there that points
    /// at it. The blob itself stays until garbage collection.
    pub async fn delete_manifest(
        &self,
        repo: &RepoName,
        digest: &Digest,
    ) -> Result<bool, StoreError> {
        let Some(record) = self.index.manifest(repo, digest)? else {
            return Ok(false);
        };
        let store = self.clone();
        let repo = repo.clone();
        tokio::task::spawn_blocking(move || {
            for (tag, target) in store.index.tags_of(&repo)? {
                if target == record.digest {
                    remove_file(&store.layout.tag_file(&repo, &tag))?;
                    store.index.remove_tag(&repo, &tag)?;
                }
            }
            remove_file(&store.layout.manifest_marker(&repo, &record.digest))?;
            store.index.remove_manifest(&repo, &record)?;
            Ok(true)
        })
        .await?
    }

    /// Manifests in `repo` whose subject is `subject`.
    pub fn referrers(
        &self,
        repo: &RepoName,
        subject: &Digest,
    ) -> Result<Vec<ManifestRecord>, StoreError> {
        let mut out = Vec::new();
        for digest in self.index.referrers_of(repo, subject)? {
            if let Some(record) = self.index.manifest(repo, &digest)? {
                out.push(record);
            }
        }
        Ok(out)
    }
}
