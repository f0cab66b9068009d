//! Rebuilding and reconciling the index from the files, which are the truth.
//!
//! - `reconcile_blobs` (every open): blob files without an entry are added,
//!   entries without a file removed. A directory listing and a stat per
//!   blob: cheap even for tens of thousands of blobs.
//! - `rebuild_repos` (after an unclean stop or a lost index): manifests, tags
//!   and referrers are read back from `repos/` and the manifest blobs.
//! - `reconcile_uploads` (every open): sessions follow `uploads/`.

use std::collections::HashMap;
use std::path::Path;

use shoal_protocol::manifest::parse_manifest;
use shoal_protocol::{Algorithm, Digest, RepoName, Tag};

use super::blobs::now_ms;
use super::error::StoreError;
use super::fsutil::io_err;
use super::index::{BlobEntry, Index, UploadEntry};
use super::paths::Layout;
use super::types::{ManifestRecord, UploadId};

/// What a rebuild or reconciliation found and changed.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct RebuildReport {
    pub blobs_added: usize,
    pub blobs_removed: usize,
    pub manifests: usize,
    pub tags: usize,
    pub uploads: usize,
    /// Files that are not what their name says and were passed over.
    pub skipped: Vec<String>,
}

fn read_dir(path: &Path) -> Result<Vec<std::fs::DirEntry>, StoreError> {
    match std::fs::read_dir(path) {
        Ok(entries) => entries
            .collect::<Result<Vec<_>, _>>()
            .map_err(io_err("list directory", path)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
        Err(e) => Err(io_err("list directory", path)(e)),
    }
}

pub fn reconcile_blobs(
    layout: &Layout,
    index: &Index,
    report: &mut RebuildReport,
) -> Result<(), StoreError> {
    let mut on_disk: HashMap<Digest, (u64, u64)> = HashMap::new();
    for alg in [Algorithm::Sha256, Algorithm::Sha512] {
        let dir = layout.blobs().join(alg.name());
        for entry in read_dir(&dir)? {
            let name = entry.file_name().to_string_lossy().into_owned();
            let Ok(digest) = format!("{}:{name}", alg.name()).parse::<Digest>() else {
                report.skipped.push(entry.path().display().to_string());
                continue;
            };
            let meta = entry
                .metadata()
                .map_err(io_err("stat blob", &entry.path()))?;
            let mtime = meta
                .modified()
                .ok()
                .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
                .map(|d| d.as_millis() as u64)
                .unwrap_or_else(now_ms);
            on_disk.insert(digest, (meta.len(), mtime));
        }
    }
    for (digest, entry) in index.blob_entries()? {
        match on_disk.remove(&digest) {
            Some((size, _)) if size == entry.size => {}
            Some((size, mtime)) => {
                index.put_blob(
                    &digest,
                    BlobEntry {
                        size,
                        last_access_ms: mtime,
                    },
                )?;
            }
            None => {
                index.remove_blob(&digest)?;
                report.blobs_removed += 1;
            }
        }
    }
    for (digest, (size, mtime)) in on_disk {
        index.put_blob(
            &digest,
            BlobEntry {
                size,
                last_access_ms: mtime,
            },
        )?;
        report.blobs_added += 1;
    }
    Ok(())
}

/// Finds every repository directory under `repos/` (one holding `_manifests`
/// or `_tags`) with its name.
fn find_repos(
    root: &Path,
    prefix: &str,
    out: &mut Vec<(RepoName, std::path::PathBuf)>,
) -> Result<(), StoreError> {
    for entry in read_dir(root)? {
        let name = entry.file_name().to_string_lossy().into_owned();
        if name == "_manifests" || name == "_tags" || !entry.path().is_dir() {
            continue;
        }
        let full = if prefix.is_empty() {
            name
        } else {
            format!("{prefix}/{name}")
        };
        let path = entry.path();
        if (path.join("_manifests").is_dir() || path.join("_tags").is_dir())
            && let Ok(repo) = full.parse::<RepoName>()
        {
            out.push((repo, path.clone()));
        }
        find_repos(&path, &full, out)?;
    }
    Ok(())
}

pub fn rebuild_repos(
    layout: &Layout,
    index: &Index,
    report: &mut RebuildReport,
) -> Result<(), StoreError> {
    index.manifests.clear()?;
    index.tags.clear()?;
    index.referrers.clear()?;
    let mut repos = Vec::new();
    find_repos(&layout.repos(), "", &mut repos)?;
    for (repo, dir) in repos {
        for entry in read_dir(&dir.join("_manifests"))? {
            let name = entry.file_name().to_string_lossy().replacen('-', ":", 1);
            let Ok(digest) = name.parse::<Digest>() else {
                report.skipped.push(entry.path().display().to_string());
                continue;
            };
            match read_manifest(layout, &digest, &entry.path())? {
                Some(record) => {
                    index.put_manifest(&repo, &record)?;
                    report.manifests += 1;
                }
                None => report.skipped.push(entry.path().display().to_string()),
            }
        }
        for entry in read_dir(&dir.join("_tags"))? {
            let tag = entry.file_name().to_string_lossy().parse::<Tag>();
            let target = std::fs::read_to_string(entry.path())
                .ok()
                .and_then(|s| s.trim().parse::<Digest>().ok());
            match (tag, target) {
                (Ok(tag), Some(digest)) if index.manifest(&repo, &digest)?.is_some() => {
                    index.put_tag(&repo, &tag, &digest)?;
                    report.tags += 1;
                }
                _ => report.skipped.push(entry.path().display().to_string()),
            }
        }
    }
    Ok(())
}

/// Reads a manifest record back from its blob and marker file (which holds
/// the media type the manifest was pushed with).
fn read_manifest(
    layout: &Layout,
    digest: &Digest,
    marker: &Path,
) -> Result<Option<ManifestRecord>, StoreError> {
    let blob = layout.blob(digest);
    let Ok(bytes) = std::fs::read(&blob) else {
        return Ok(None);
    };
    let media_type = std::fs::read_to_string(marker).map_err(io_err("read marker", marker))?;
    let content_type = Some(media_type.trim()).filter(|m| !m.is_empty());
    let Ok(parsed) = parse_manifest(&bytes, content_type) else {
        return Ok(None);
    };
    Ok(Some(ManifestRecord {
        digest: digest.clone(),
        media_type: parsed.media_type,
        size: bytes.len() as u64,
        references: parsed.references,
        subject: parsed.subject,
        artifact_type: parsed.artifact_type,
        annotations: parsed.annotations,
    }))
}

pub fn reconcile_uploads(
    layout: &Layout,
    index: &Index,
    report: &mut RebuildReport,
) -> Result<(), StoreError> {
    let mut seen = std::collections::HashSet::new();
    for entry in read_dir(&layout.uploads())? {
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some(id) = UploadId::parse(&name) else {
            report.skipped.push(entry.path().display().to_string());
            continue;
        };
        let repo = std::fs::read_to_string(layout.upload_repo(&id))
            .ok()
            .and_then(|r| r.trim().parse::<RepoName>().ok());
        let len = std::fs::metadata(layout.upload_data(&id))
            .map(|m| m.len())
            .ok();
        let (Some(repo), Some(len)) = (repo, len) else {
            report.skipped.push(entry.path().display().to_string());
            continue;
        };
        // Acknowledged offset if the index has one it can still back with
        // bytes; otherwise whatever reached the disk.
        let offset = match index.upload(&id)? {
            Some(e) if e.offset <= len => e.offset,
            _ => len,
        };
        index.put_upload(&id, &UploadEntry { repo, offset })?;
        seen.insert(id.to_string());
        report.uploads += 1;
    }
    for (key, _) in index.upload_entries()? {
        if !seen.contains(&key) {
            if let Some(id) = UploadId::parse(&key) {
                index.remove_upload(&id)?;
            } else {
                index.uploads.remove(key.as_bytes())?;
            }
        }
    }
    Ok(())
}
