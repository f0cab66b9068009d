//! Upload sessions: `uploads/<uuid>/data` holds the bytes received so far,
//! `uploads/<uuid>/repo` the repository it belongs to (so a lost index can
//! be rebuilt); the index holds the acknowledged offset.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};

use shoal_protocol::{Digest, RepoName};
use tokio::io::{AsyncSeekExt, AsyncWriteExt};

use super::Store;
use super::blobs::{hash_file, now_ms};
use super::error::StoreError;
use super::fsutil::{create_dir_all, durable_rename, fsync_dir, io_err, remove_file};
use super::index::{BlobEntry, UploadEntry};
use super::types::{BlobInfo, UploadId, UploadState};

/// Sessions with a writer at work: a second concurrent writer is refused
/// rather than interleaving bytes.
#[derive(Debug, Default, Clone)]
pub(super) struct BusyUploads(Arc<Mutex<HashSet<String>>>);

impl BusyUploads {
    fn claim(&self, id: &UploadId) -> Result<BusyGuard, StoreError> {
        let key = id.to_string();
        let mut set = self.0.lock().unwrap_or_else(|p| p.into_inner());
        if !set.insert(key.clone()) {
            return Err(StoreError::UploadBusy(key));
        }
        Ok(BusyGuard {
            set: self.clone(),
            key,
        })
    }
}

#[derive(Debug)]
struct BusyGuard {
    set: BusyUploads,
    key: String,
}

impl Drop for BusyGuard {
    fn drop(&mut self) {
        let mut set = self.set.0.lock().unwrap_or_else(|p| p.into_inner());
        set.remove(&self.key);
    }
}

/// Appends bytes to an upload session; [`UploadAppender::finish`] records the
/// new offset. Dropped without `finish`, the bytes it wrote stay in the file
/// but are not acknowledged; the next appender cuts them off.
#[derive(Debug)]
pub struct UploadAppender {
    store: Store,
    id: UploadId,
    repo: RepoName,
    file: tokio::fs::File,
    start: u64,
    written: u64,
    _busy: BusyGuard,
}

impl UploadAppender {
    pub async fn write(&mut self, data: &[u8]) -> Result<(), StoreError> {
        let path = self.store.layout.upload_data(&self.id);
        self.file
            .write_all(data)
            .await
            .map_err(io_err("write upload", &path))?;
        self.written += data.len() as u64;
        Ok(())
    }

    pub async fn finish(mut self) -> Result<u64, StoreError> {
        let path = self.store.layout.upload_data(&self.id);
        self.file
            .flush()
            .await
            .and(self.file.sync_data().await)
            .map_err(io_err("fsync upload", &path))?;
        let offset = self.start + self.written;
        self.store.index.put_upload(
            &self.id,
            &UploadEntry {
                repo: self.repo.clone(),
                offset,
            },
        )?;
        Ok(offset)
    }
}

impl Store {
    pub fn create_upload(&self, repo: &RepoName) -> Result<UploadId, StoreError> {
        let id = UploadId(uuid::Uuid::new_v4());
        let dir = self.layout.upload(&id);
        create_dir_all(&dir)?;
        let data = self.layout.upload_data(&id);
        std::fs::File::create(&data).map_err(io_err("create upload", &data))?;
        let repo_file = self.layout.upload_repo(&id);
        std::fs::write(&repo_file, repo.as_str()).map_err(io_err("write upload", &repo_file))?;
        self.index.put_upload(
            &id,
            &UploadEntry {
                repo: repo.clone(),
                offset: 0,
            },
        )?;
        Ok(id)
    }

    pub fn upload(&self, id: &UploadId) -> Result<Option<UploadState>, StoreError> {
        Ok(self.index.upload(id)?.map(|e| UploadState {
            repo: e.repo,
            offset: e.offset,
        }))
    }

    /// Opens a session for appending at `start`, which must be its current end.
    pub async fn upload_appender(
        &self,
        id: &UploadId,
        start: u64,
    ) -> Result<UploadAppender, StoreError> {
        let busy = self.busy_uploads.claim(id)?;
        let entry = self
            .index
            .upload(id)?
            .ok_or_else(|| StoreError::UploadUnknown(id.to_string()))?;
        if entry.offset != start {
            return Err(StoreError::UploadOffset {
                current: entry.offset,
                start,
            });
        }
        let path = self.layout.upload_data(id);
        let mut file = tokio::fs::OpenOptions::new()
            .write(true)
            .open(&path)
            .await
            .map_err(io_err("open upload", &path))?;
        // Cut off bytes written but never acknowledged (a request that died).
        file.set_len(start)
            .await
            .map_err(io_err("truncate upload", &path))?;
        file.seek(std::io::SeekFrom::Start(start))
            .await
            .map_err(io_err("seek upload", &path))?;
        Ok(UploadAppender {
            store: self.clone(),
            id: id.clone(),
            repo: entry.repo,
            file,
            start,
            written: 0,
            _busy: busy,
        })
    }

    /// Checks the session's bytes against `digest` and, if they match, moves
    /// them into the blob store and ends the session. On a mismatch the
    /// session is kept, so the client may still fix it or cancel it.
    pub async fn complete_upload(
        &self,
        id: &UploadId,
        digest: &Digest,
    ) -> Result<BlobInfo, StoreError> {
        let busy = self.busy_uploads.claim(id)?;
        let entry = self
            .index
            .upload(id)?
            .ok_or_else(|| StoreError::UploadUnknown(id.to_string()))?;
        let store = self.clone();
        let (id, digest) = (id.clone(), digest.clone());
        tokio::task::spawn_blocking(move || {
            let _busy = busy;
            let data = store.layout.upload_data(&id);
            let file = std::fs::File::open(&data).map_err(io_err("open upload", &data))?;
            // Only acknowledged bytes count.
            let len = file.metadata().map_err(io_err("stat upload", &data))?.len();
            if len != entry.offset {
                std::fs::OpenOptions::new()
                    .write(true)
                    .open(&data)
                    .and_then(|f| f.set_len(entry.offset))
                    .map_err(io_err("truncate upload", &data))?;
            }
            let actual = hash_file(&data, digest.algorithm())?;
            if actual != digest {
                return Err(StoreError::DigestMismatch {
                    expected: digest,
                    actual,
                });
            }
            file.sync_all().map_err(io_err("fsync upload", &data))?;
            durable_rename(&data, &store.layout.blob(&digest))?;
            store.index.put_blob(
                &digest,
                BlobEntry {
                    size: entry.offset,
                    last_access_ms: now_ms(),
                },
            )?;
            store.index.remove_upload(&id)?;
            remove_session_dir(&store, &id)?;
            store.emit(super::StoreEvent::Committed(digest.clone()));
            Ok(BlobInfo {
                digest,
                size: entry.offset,
            })
        })
        .await?
    }

    pub async fn cancel_upload(&self, id: &UploadId) -> Result<bool, StoreError> {
        let _busy = self.busy_uploads.claim(id)?;
        let existed = self.index.remove_upload(id)?;
        let store = self.clone();
        let id = id.clone();
        tokio::task::spawn_blocking(move || remove_session_dir(&store, &id)).await??;
        Ok(existed)
    }
}

fn remove_session_dir(store: &Store, id: &UploadId) -> Result<(), StoreError> {
    remove_file(&store.layout.upload_data(id))?;
    remove_file(&store.layout.upload_repo(id))?;
    let dir = store.layout.upload(id);
    match std::fs::remove_dir(&dir) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(io_err("remove upload", &dir)(e)),
    }
    fsync_dir(&store.layout.uploads())
}
