//! Committed blobs: reading, writing through a verifying temp file, deleting.

use std::path::PathBuf;
use std::time::{SystemTime, UNIX_EPOCH};

use shoal_protocol::{Algorithm, Digest, DigestHasher};
use tokio::io::AsyncWriteExt;

use super::Store;
use super::error::StoreError;
use super::fsutil::{durable_rename, io_err, remove_file};
use super::index::BlobEntry;
use super::types::BlobInfo;

/// Last-access times are refreshed at most this often per blob, so reads do
/// not turn into a stream of index writes.
const ACCESS_GRANULARITY_MS: u64 = 60_000;

pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// An open committed blob.
#[derive(Debug)]
pub struct BlobReader {
    pub file: tokio::fs::File,
    pub size: u64,
}

/// Writes a new blob to a temporary file, hashing as it goes; only
/// [`BlobWriter::commit`] with the matching digest makes it visible. Dropped
/// without a commit, it deletes its temporary file.
#[derive(Debug)]
pub struct BlobWriter {
    store: Store,
    file: tokio::fs::File,
    temp: tempfile::TempPath,
    sha256: DigestHasher,
    written: u64,
}

impl BlobWriter {
    pub(super) fn new(store: Store) -> Result<BlobWriter, StoreError> {
        let tmp_dir = store.layout.tmp();
        let named = tempfile::Builder::new()
            .prefix("blob-")
            .tempfile_in(&tmp_dir)
            .map_err(io_err("create temp file", &tmp_dir))?;
        let (file, temp) = named.into_parts();
        Ok(BlobWriter {
            store,
            file: tokio::fs::File::from_std(file),
            temp,
            sha256: DigestHasher::new(Algorithm::Sha256),
            written: 0,
        })
    }

    pub async fn write(&mut self, data: &[u8]) -> Result<(), StoreError> {
        self.file
            .write_all(data)
            .await
            .map_err(io_err("write temp file", &self.temp))?;
        self.sha256.update(data);
        self.written += data.len() as u64;
        Ok(())
    }

    pub fn written(&self) -> u64 {
        self.written
    }

    /// Makes the blob visible under `expected` if the bytes hash to it:
    /// fsync, rename into `blobs/`, fsync the directory, then index.
    pub async fn commit(mut self, expected: &Digest) -> Result<BlobInfo, StoreError> {
        self.file
            .flush()
            .await
            .and(self.file.sync_all().await)
            .map_err(io_err("fsync temp file", &self.temp))?;
        let actual = match expected.algorithm() {
            Algorithm::Sha256 => self.sha256.finish(),
            // sha512 blobs are rare: hash the file again rather than hash
            // every upload twice.
            alg => {
                let path = self.temp.to_path_buf();
                tokio::task::spawn_blocking(move || hash_file(&path, alg)).await??
            }
        };
        if &actual != expected {
            return Err(StoreError::DigestMismatch {
                expected: expected.clone(),
                actual,
            });
        }
        let store = self.store.clone();
        let size = self.written;
        let digest = expected.clone();
        let temp = self.temp;
        drop(self.file);
        tokio::task::spawn_blocking(move || {
            let dest = store.layout.blob(&digest);
            let from: PathBuf = temp.to_path_buf();
            durable_rename(&from, &dest)?;
            // The file now lives at `dest`; the temp path must not delete it.
            let _ = temp.keep();
            store.index.put_blob(
                &digest,
                BlobEntry {
                    size,
                    last_access_ms: now_ms(),
                },
            )?;
            store.emit(super::StoreEvent::Committed(digest.clone()));
            Ok(BlobInfo { digest, size })
        })
        .await?
    }
}

/// Hashes a whole file with bounded memory.
pub fn hash_file(path: &std::path::Path, algorithm: Algorithm) -> Result<Digest, StoreError> {
    use std::io::Read;
    let mut file = std::fs::File::open(path).map_err(io_err("open", path))?;
    let mut hasher = DigestHasher::new(algorithm);
    let mut buf = vec![0u8; 1024 * 1024];
    loop {
        let n = file.read(&mut buf).map_err(io_err("read", path))?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    Ok(hasher.finish())
}

impl Store {
    pub fn blob_size(&self, digest: &Digest) -> Result<Option<u64>, StoreError> {
        Ok(self.index.blob(digest)?.map(|e| e.size))
    }

    /// Opens a committed blob for reading and notes the access.
    pub async fn open_blob(&self, digest: &Digest) -> Result<Option<BlobReader>, StoreError> {
        let Some(entry) = self.index.blob(digest)? else {
            return Ok(None);
        };
        let path = self.layout.blob(digest);
        let file = match tokio::fs::File::open(&path).await {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                // The file went away behind our back: the files are the truth.
                tracing::warn!(%digest, "indexed blob has no file; dropping it from the index");
                self.index.remove_blob(digest)?;
                return Ok(None);
            }
            Err(e) => return Err(io_err("open blob", &path)(e)),
        };
        let now = now_ms();
        if now.saturating_sub(entry.last_access_ms) > ACCESS_GRANULARITY_MS {
            self.index.put_blob(
                digest,
                BlobEntry {
                    last_access_ms: now,
                    ..entry
                },
            )?;
        }
        Ok(Some(BlobReader {
            file,
            size: entry.size,
        }))
    }

    pub fn blob_writer(&self) -> Result<BlobWriter, StoreError> {
        BlobWriter::new(self.clone())
    }

    /// Writes a whole in-memory blob (manifests, small configs).
    pub async fn put_blob(&self, expected: &Digest, data: &[u8]) -> Result<BlobInfo, StoreError> {
        if let Some(size) = self.blob_size(expected)? {
            return Ok(BlobInfo {
                digest: expected.clone(),
                size,
            });
        }
        let mut writer = self.blob_writer()?;
        writer.write(data).await?;
        writer.commit(expected).await
    }

    pub async fn delete_blob(&self, digest: &Digest) -> Result<bool, StoreError> {
        let store = self.clone();
        let digest = digest.clone();
        tokio::task::spawn_blocking(move || {
            let path = store.layout.blob(&digest);
            let had_file = remove_file(&path)?;
            let had_entry = store.index.remove_blob(&digest)?;
            if had_file || had_entry {
                store.emit(super::StoreEvent::Deleted(digest));
            }
            Ok(had_file || had_entry)
        })
        .await?
    }

    pub fn list_blobs(&self) -> Result<Vec<BlobInfo>, StoreError> {
        Ok(self
            .index
            .blob_entries()?
            .into_iter()
            .map(|(digest, e)| BlobInfo {
                digest,
                size: e.size,
            })
            .collect())
    }
}
