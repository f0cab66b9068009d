//! A blob being assembled from chunks in any order (from peers): a file
//! written at offsets under `partial/<alg>-<hex>/`, with a bitmap of the
//! chunks written so far, made visible only by [`PartialBlob::commit`],
//! which hashes the whole file against the digest first.
//!
//! The bitmap lets a restarted node resume instead of starting over. It is
//! a hint, not a fact: it is written after the chunk's bytes but neither is
//! fsynced, so whoever resumes checks every claimed chunk again before
//! relying on it (the fetcher does, against the chunk map).
//!
//! ```text
//! partial/<alg>-<hex>/data   the blob's bytes, at their offsets (sparse)
//! partial/<alg>-<hex>/have   size (u64 BE), chunk size (u32 BE), bitmap
//! ```

use std::os::unix::fs::FileExt;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use shoal_protocol::Digest;
use shoal_protocol::chain::ChunkMap;

use super::Store;
use super::blobs::{hash_file, now_ms};
use super::error::StoreError;
use super::fsutil::{create_dir_all, durable_rename, io_err};
use super::index::BlobEntry;
use super::types::BlobInfo;

const HAVE_HEADER: usize = 12;

#[derive(Debug, Clone)]
pub struct PartialBlob {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    store: Store,
    dir: PathBuf,
    data_path: PathBuf,
    have_path: PathBuf,
    data: std::fs::File,
    have_file: std::fs::File,
    size: u64,

    /// One bit per chunk, most significant bit first; mirrors the file.
    have: Mutex<Vec<u8>>,
}

impl PartialBlob {
    pub fn size(&self) -> u64 {
        self.inner.size
    }

    /// Chunks the bitmap says were written before (by an earlier run).
    /// Check each against the chunk map before trusting it.
    pub fn claimed(&self) -> Vec<u32> {
        let have = self.inner.have.lock().unwrap_or_else(|p| p.into_inner());
        let mut out = Vec::new();
        for (byte_index, byte) in have.iter().enumerate() {
            for bit in 0..8 {
                if byte & (0x80 >> bit) != 0 {
                    out.push((byte_index * 8 + bit) as u32);
                }
            }
        }
        out
    }

    /// Writes chunk `index` (at `offset`) and records it in the bitmap.
    pub async fn write_chunk(
        &self,
        index: u32,
        offset: u64,
        bytes: Vec<u8>,
    ) -> Result<(), StoreError> {
        let inner = self.inner.clone();
        tokio::task::spawn_blocking(move || {
            inner
                .data
                .write_all_at(&bytes, offset)
                .map_err(io_err("write partial blob", &inner.data_path))?;
            inner.set_bit(index, true)
        })
        .await?
    }

    /// Clears chunk `index` from the bitmap (its bytes failed a check).
    pub async fn forget(&self, index: u32) -> Result<(), StoreError> {
        let inner = self.inner.clone();
        tokio::task::spawn_blocking(move || inner.set_bit(index, false)).await?
    }

    /// Reads back `len` bytes at `offset`.
    pub async fn read_at(&self, offset: u64, len: usize) -> Result<Vec<u8>, StoreError> {
        let inner = self.inner.clone();
        tokio::task::spawn_blocking(move || {
            let mut buf = vec![0u8; len];
            inner
                .data
                .read_exact_at(&mut buf, offset)
                .map_err(io_err("read partial blob", &inner.data_path))?;
            Ok(buf)
        })
        .await?
    }

    /// Checks the whole file against `digest` and commits it, with its
    /// chunk map when the caller has one (recorded before the commit is
    /// announced, so no one computes it again). On a mismatch the partial
    /// blob is discarded.
    pub async fn commit(
        self,
        digest: &Digest,
        map: Option<&ChunkMap>,
    ) -> Result<BlobInfo, StoreError> {
        self.commit_checked(digest, map, true).await
    }

    /// Commits a blob whose every byte was hashed on its way into the file
    /// (each chunk checked against a chain that ends in `digest`, or the
    /// whole stream hashed in order to it): reading and hashing the file
    /// again would only repeat that. Everything else is as [`commit`](Self::commit).
    pub async fn commit_proven(
        self,
        digest: &Digest,
        map: Option<&ChunkMap>,
    ) -> Result<BlobInfo, StoreError> {
        self.commit_checked(digest, map, false).await
    }

    async fn commit_checked(
        self,
        digest: &Digest,
        map: Option<&ChunkMap>,
        hash_again: bool,
    ) -> Result<BlobInfo, StoreError> {
        let digest = digest.clone();
        let map = map.map(ChunkMap::encode);
        let inner = self.inner.clone();
        tokio::task::spawn_blocking(move || {
            inner
                .data
                .sync_all()
                .map_err(io_err("fsync partial blob", &inner.data_path))?;
            let actual = if hash_again {
                hash_file(&inner.data_path, digest.algorithm())?
            } else {
                digest.clone()
            };
            if actual != digest {
                inner.remove();
                return Err(StoreError::DigestMismatch {
                    expected: digest,
                    actual,
                });
            }
            durable_rename(&inner.data_path, &inner.store.layout.blob(&digest))?;
            inner.remove();
            inner.store.index.put_blob(
                &digest,
                BlobEntry {
                    size: inner.size,
                    last_access_ms: now_ms(),
                },
            )?;
            if let Some(map) = map {
                inner.store.index.maps.insert(digest.to_string(), map)?;
            }
            inner
                .store
                .emit(super::StoreEvent::Committed(digest.clone()));
            Ok(BlobInfo {
                digest,
                size: inner.size,
            })
        })
        .await?
    }

    /// Removes the partial blob's files (what it held is not worth keeping).
    pub async fn discard(self) {
        let inner = self.inner.clone();
        let _ = tokio::task::spawn_blocking(move || inner.remove()).await;
    }
}

impl Inner {
    fn set_bit(&self, index: u32, on: bool) -> Result<(), StoreError> {
        let mut have = self.have.lock().unwrap_or_else(|p| p.into_inner());
        let byte_index = (index / 8) as usize;
        let Some(byte) = have.get_mut(byte_index) else {
            return Ok(());
        };
        let mask = 0x80u8 >> (index % 8);
        *byte = if on { *byte | mask } else { *byte & !mask };
        // Written under the lock, so two chunks sharing a byte cannot
        // overwrite each other's bit.
        self.have_file
            .write_all_at(&[*byte], (HAVE_HEADER + byte_index) as u64)
            .map_err(io_err("write chunk bitmap", &self.have_path))
    }

    fn remove(&self) {
        if let Err(e) = std::fs::remove_dir_all(&self.dir)
            && e.kind() != std::io::ErrorKind::NotFound
        {
            tracing::warn!(dir = %self.dir.display(), error = %e, "could not remove a partial blob");
        }
    }
}

fn have_header(size: u64, chunk_size: u32) -> [u8; HAVE_HEADER] {
    let mut h = [0u8; HAVE_HEADER];
    h[..8].copy_from_slice(&size.to_be_bytes());
    h[8..].copy_from_slice(&chunk_size.to_be_bytes());
    h
}

impl Store {
    /// The partial blob for `digest` of `size` bytes in chunks of
    /// `chunk_size`: the one an earlier run left, when its shape matches,
    /// or a fresh one. Blocking (a few small file operations).
    pub fn partial_blob(
        &self,
        digest: &Digest,
        size: u64,
        chunk_size: u32,
    ) -> Result<PartialBlob, StoreError> {
        let dir = self.layout.partial(digest);
        create_dir_all(&dir)?;
        let data_path = dir.join("data");
        let have_path = dir.join("have");
        let count = if chunk_size == 0 {
            0
        } else {
            size.div_ceil(u64::from(chunk_size))
        };
        let bitmap_len = count.div_ceil(8) as usize;
        let header = have_header(size, chunk_size);

        // An earlier run's bitmap counts only if it describes the same plan.
        let previous = std::fs::read(&have_path)
            .ok()
            .filter(|b| b.len() == HAVE_HEADER + bitmap_len && b[..HAVE_HEADER] == header)
            .filter(|_| std::fs::metadata(&data_path).is_ok_and(|m| m.len() == size));
        let bitmap = match &previous {
            Some(b) => b[HAVE_HEADER..].to_vec(),
            None => vec![0u8; bitmap_len],
        };
        let open = |path: &PathBuf, truncate: bool| {
            std::fs::OpenOptions::new()
                .read(true)
                .write(true)
                .create(true)
                .truncate(truncate)
                .open(path)
                .map_err(io_err("open partial blob", path))
        };
        let fresh = previous.is_none();
        let data = open(&data_path, fresh)?;
        data.set_len(size)
            .map_err(io_err("size partial blob", &data_path))?;
        let have_file = open(&have_path, fresh)?;
        if fresh {
            let mut contents = header.to_vec();
            contents.extend_from_slice(&bitmap);
            have_file
                .write_all_at(&contents, 0)
                .map_err(io_err("write chunk bitmap", &have_path))?;
        }
        Ok(PartialBlob {
            inner: Arc::new(Inner {
                store: self.clone(),
                dir,
                data_path,
                have_path,
                data,
                have_file,
                size,

                have: Mutex::new(bitmap),
            }),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::StoreOptions;

    fn store(dir: &std::path::Path) -> Store {
        Store::open(StoreOptions {
            root: dir.to_path_buf(),
        })
        .expect("open store")
    }

    #[tokio::test]
    async fn bitmap_survives_a_reopen_and_commit_makes_the_blob_visible() {
        let dir = tempfile::tempdir().expect("temp dir");
        let bytes: Vec<u8> = (0..300u32).map(|i| i as u8).collect();
        let digest = Digest::sha256_of(&bytes);
        let s = store(dir.path());
        let p = s.partial_blob(&digest, 300, 128).expect("partial");
        assert!(p.claimed().is_empty());
        p.write_chunk(2, 256, bytes[256..].to_vec())
            .await
            .expect("write");
        p.write_chunk(0, 0, bytes[..128].to_vec())
            .await
            .expect("write");
        drop(p);

        // A second open with the same shape sees what the first wrote.
        let p = s.partial_blob(&digest, 300, 128).expect("reopen");
        assert_eq!(p.claimed(), vec![0, 2]);
        assert_eq!(p.read_at(256, 44).await.expect("read"), bytes[256..]);
        p.forget(2).await.expect("forget");
        assert_eq!(p.claimed(), vec![0]);
        p.write_chunk(1, 128, bytes[128..256].to_vec())
            .await
            .expect("write");
        p.write_chunk(2, 256, bytes[256..].to_vec())
            .await
            .expect("write");
        let info = p.commit(&digest, None).await.expect("commit");
        assert_eq!(info.size, 300);
        assert_eq!(s.blob_size(&digest).expect("size"), Some(300));
        assert!(!s.layout.partial(&digest).exists());

        // A different shape starts over.
        let other = Digest::sha256_of(b"other");
        let p = s.partial_blob(&other, 300, 128).expect("partial");
        p.write_chunk(0, 0, vec![1; 128]).await.expect("write");
        drop(p);
        let p = s.partial_blob(&other, 301, 128).expect("reshaped");
        assert!(p.claimed().is_empty());
    }

    #[tokio::test]
    async fn a_wrong_digest_is_never_committed() {
        let dir = tempfile::tempdir().expect("temp dir");
        let s = store(dir.path());
        let digest = Digest::sha256_of(b"what was promised");
        let p = s.partial_blob(&digest, 4, 128).expect("partial");
        p.write_chunk(0, 0, b"lies".to_vec()).await.expect("write");
        assert!(matches!(
            p.commit(&digest, None).await,
            Err(StoreError::DigestMismatch { .. })
        ));
        assert_eq!(s.blob_size(&digest).expect("size"), None);
        assert!(!s.layout.partial(&digest).exists());
    }
}
