//! The local content store.
//!
//! Blob files are the truth; sled is an index over them that can always be
//! rebuilt by rescanning the files (see `rebuild`). Layout under the root:
//!
//! ```text
//! blobs/<alg>/<hex>                 committed blobs, named by digest (verified before rename)
//! repos/<repo>/_manifests/<alg>-<hex>   one empty marker per manifest held in <repo>
//! repos/<repo>/_tags/<tag>          file holding the digest string the tag points to
//! uploads/<uuid>/data, /repo         bytes and repository of an upload session
//! partial/<alg>-<hex>/{data,have}  blobs still arriving from peers, with their chunk bitmap
//! tmp/                              temporary files; emptied on open
//! index/                            sled database (rebuildable)
//! ```
//!
//! Manifest bodies are blobs like any other; the repo files record which
//! repository holds which manifest and tag, so a deleted index loses nothing.
//! Partial blobs survive a restart so a download resumes (see `partial`).
//!
//! API surface (implemented by the submodules):
//!
//! Blobs (content-addressed, global across repositories):
//! - `Store::open(StoreOptions) -> Result<Store, StoreError>` — creates the
//!   layout, empties `tmp/`, rebuilds the index if missing or unreadable and
//!   reconciles it with the blob files otherwise.
//! - `Store::blob_size(&Digest) -> Result<Option<u64>, StoreError>`
//! - `Store::open_blob(&Digest) -> Result<Option<BlobReader>, StoreError>` (async; records last access)
//! - `Store::blob_writer() -> Result<BlobWriter, StoreError>`; `BlobWriter::write(&[u8])` (async),
//!   `BlobWriter::commit(&Digest) -> Result<BlobInfo, StoreError>` (async; `DigestMismatch` on a wrong digest)
//! - `Store::put_blob(&Digest, &[u8]) -> Result<BlobInfo, StoreError>` (async)
//! - `Store::delete_blob(&Digest) -> Result<bool, StoreError>` (async)
//! - `Store::list_blobs() -> Result<Vec<BlobInfo>, StoreError>`
//!
//! Manifests and tags (per repository):
//! - `Store::put_manifest(&RepoName, ManifestPut) -> Result<(), StoreError>` (async)
//! - `Store::manifest(&RepoName, &Digest) -> Result<Option<ManifestRecord>, StoreError>`
//! - `Store::resolve_tag(&RepoName, &Tag) -> Result<Option<Digest>, StoreError>`
//! - `Store::tags(&RepoName) -> Result<Vec<Tag>, StoreError>` (sorted)
//! - `Store::repositories() -> Result<Vec<RepoName>, StoreError>` (sorted)
//! - `Store::repo_exists(&RepoName) -> Result<bool, StoreError>`
//! - `Store::delete_tag(&RepoName, &Tag) -> Result<bool, StoreError>` (async)
//! - `Store::delete_manifest(&RepoName, &Digest) -> Result<bool, StoreError>` (async)
//! - `Store::referrers(&RepoName, &Digest) -> Result<Vec<ManifestRecord>, StoreError>`
//!
//! Upload sessions:
//! - `Store::create_upload(&RepoName) -> Result<UploadId, StoreError>`
//! - `Store::upload(&UploadId) -> Result<Option<UploadState>, StoreError>`
//! - `Store::upload_appender(&UploadId, start: u64) -> Result<UploadAppender, StoreError>` (async;
//!   `UploadOffset` when `start` is not the current end); `UploadAppender::write(&[u8])`,
//!   `UploadAppender::finish() -> Result<u64, StoreError>` (new end offset)
//! - `Store::complete_upload(&UploadId, &Digest) -> Result<BlobInfo, StoreError>` (async)
//! - `Store::cancel_upload(&UploadId) -> Result<bool, StoreError>` (async)

mod blobs;
mod chunk_maps;
mod error;
mod fsutil;
mod index;
mod manifests;
mod mirror_tags;
mod partial;
mod paths;
mod rebuild;
mod types;
mod uploads;

#[cfg(test)]
mod tests;

use std::sync::Arc;

pub use blobs::{BlobReader, BlobWriter};
pub use error::StoreError;
pub use partial::PartialBlob;
pub use rebuild::RebuildReport;

pub use types::{BlobInfo, ManifestPut, ManifestRecord, StoreOptions, UploadId, UploadState};
pub use uploads::UploadAppender;

use fsutil::{create_dir_all, io_err};
use index::Index;
use paths::Layout;

/// The content store; cheap to clone (all clones share one index).
#[derive(Debug, Clone)]
pub struct Store {
    layout: Arc<Layout>,
    index: Index,
    busy_uploads: uploads::BusyUploads,
    events: tokio::sync::broadcast::Sender<StoreEvent>,
}

/// What happened to a blob, for whoever announces blobs to the network.
/// Delivered on a bounded broadcast channel: a slow listener misses events
/// (it is told so) and catches up from [`Store::list_blobs`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreEvent {
    Committed(shoal_protocol::Digest),
    Deleted(shoal_protocol::Digest),
}

/// Events buffered per listener before it lags.
const EVENT_BUFFER: usize = 4096;

impl Store {
    /// Opens (or creates) the store at `options.root`. Blocking: call from
    /// `spawn_blocking` in async code.
    pub fn open(options: StoreOptions) -> Result<Store, StoreError> {
        let layout = Layout::new(&options.root);
        for dir in [
            layout.blobs().join("sha256"),
            layout.blobs().join("sha512"),
            layout.uploads(),
            layout.repos(),
        ] {
            create_dir_all(&dir)?;
        }
        // Temporary files of writes that never finished: never visible,
        // now garbage.
        let tmp = layout.tmp();
        if tmp.exists() {
            std::fs::remove_dir_all(&tmp).map_err(io_err("empty tmp", &tmp))?;
        }
        create_dir_all(&tmp)?;

        let index_path = layout.index();
        let existed = index_path.exists();
        let (index, fresh) = match Index::open(&index_path) {
            Ok(index) => (index, !existed),
            Err(e) => {
                // sled can be left unreadable by a crash; the files are the
                // truth, so set the broken index aside and rebuild.
                tracing::warn!(error = %e, "index unreadable; rebuilding from the blob files");
                let aside = options
                    .root
                    .join(format!("index.broken-{}", blobs::now_ms()));
                std::fs::rename(&index_path, &aside)
                    .map_err(io_err("move broken index", &index_path))?;
                (Index::open(&index_path)?, true)
            }
        };
        let clean = index.take_clean_mark()?;
        let mut report = RebuildReport::default();
        if fresh || !clean {
            rebuild::rebuild_repos(&layout, &index, &mut report)?;
        }
        rebuild::reconcile_blobs(&layout, &index, &mut report)?;
        rebuild::reconcile_uploads(&layout, &index, &mut report)?;
        index.flush()?;
        if report != RebuildReport::default() {
            tracing::info!(?report, clean, fresh, "index reconciled with the files");
        }
        Ok(Store {
            layout: Arc::new(layout),
            index,
            busy_uploads: uploads::BusyUploads::default(),
            events: tokio::sync::broadcast::channel(EVENT_BUFFER).0,
        })
    }

    /// Drops the whole index and reads it back from the files.
    pub fn rebuild_index(&self) -> Result<RebuildReport, StoreError> {
        let mut report = RebuildReport::default();
        self.index.clear_all()?;
        rebuild::rebuild_repos(&self.layout, &self.index, &mut report)?;
        rebuild::reconcile_blobs(&self.layout, &self.index, &mut report)?;
        rebuild::reconcile_uploads(&self.layout, &self.index, &mut report)?;
        self.index.flush()?;
        Ok(report)
    }

    /// Blob commits and deletions from now on.
    pub fn subscribe(&self) -> tokio::sync::broadcast::Receiver<StoreEvent> {
        self.events.subscribe()
    }

    fn emit(&self, event: StoreEvent) {
        // No listener is fine: nothing announces in a store-only test.
        let _ = self.events.send(event);
    }

    /// Flushes the index to disk.
    pub fn flush(&self) -> Result<(), StoreError> {
        self.index.flush()
    }

    /// Flushes and marks the index as cleanly closed, so the next open skips
    /// the full rebuild of repository metadata. Nothing may be written after.
    pub fn close(&self) -> Result<(), StoreError> {
        self.index.mark_clean()
    }
}
