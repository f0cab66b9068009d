//! A blob being assembled from chunks in any order (from peers): a temp
//! file written at offsets, made visible only by [`PartialBlob::commit`],
//! which hashes the whole file against the digest first.

use std::os::unix::fs::FileExt;
use std::sync::Arc;

use shoal_protocol::Digest;

use super::Store;
use super::blobs::{hash_file, now_ms};
use super::error::StoreError;
use super::fsutil::{durable_rename, io_err};
use super::index::BlobEntry;
use super::types::BlobInfo;

#[derive(Debug, Clone)]
pub struct PartialBlob {
    store: Store,
    file: Arc<std::fs::File>,
    temp: Arc<tempfile::TempPath>,
    size: u64,
}

impl PartialBlob {
    /// Writes `bytes` at `offset` (blocking work on the blocking pool).
    pub async fn write_at(&self, offset: u64, bytes: Vec<u8>) -> Result<(), StoreError> {
        let (file, temp) = (self.file.clone(), self.temp.clone());
        tokio::task::spawn_blocking(move || {
            file.write_all_at(&bytes, offset)
                .map_err(io_err("write partial blob", &temp))
        })
        .await?
    }

    /// Reads back `len` bytes at `offset`.
    pub async fn read_at(&self, offset: u64, len: usize) -> Result<Vec<u8>, StoreError> {
        let (file, temp) = (self.file.clone(), self.temp.clone());
        tokio::task::spawn_blocking(move || {
            let mut buf = vec![0u8; len];
            file.read_exact_at(&mut buf, offset)
                .map_err(io_err("read partial blob", &temp))?;
            Ok(buf)
        })
        .await?
    }

    /// Checks the whole file against `digest` and commits it.
    pub async fn commit(self, digest: &Digest) -> Result<BlobInfo, StoreError> {
        let digest = digest.clone();
        tokio::task::spawn_blocking(move || {
            self.file
                .sync_all()
                .map_err(io_err("fsync partial blob", &self.temp))?;
            let actual = hash_file(&self.temp, digest.algorithm())?;
            if actual != digest {
                return Err(StoreError::DigestMismatch {
                    expected: digest,
                    actual,
                });
            }
            durable_rename(&self.temp, &self.store.layout.blob(&digest))?;
            self.store.index.put_blob(
                &digest,
                BlobEntry {
                    size: self.size,
                    last_access_ms: now_ms(),
                },
            )?;
            self.store
                .emit(super::StoreEvent::Committed(digest.clone()));
            Ok(BlobInfo {
                digest,
                size: self.size,
            })
        })
        .await?
    }
}

impl Store {
    /// A temp file of `size` bytes to fill at offsets.
    pub fn partial_blob(&self, size: u64) -> Result<PartialBlob, StoreError> {
        let tmp_dir = self.layout.tmp();
        let named = tempfile::Builder::new()
            .prefix("partial-")
            .tempfile_in(&tmp_dir)
            .map_err(io_err("create temp file", &tmp_dir))?;
        let (file, temp) = named.into_parts();
        file.set_len(size)
            .map_err(io_err("size partial blob", &temp))?;
        Ok(PartialBlob {
            store: self.clone(),
            file: Arc::new(file),
            temp: Arc::new(temp),
            size,
        })
    }
}
