//! The local content store.
//!
//! Blob files are the truth; sled is an index over them that can always be
//! rebuilt by rescanning the files (see `rebuild`). Layout under the root:
//!
//! ```text
//! blobs/<alg>/<hex>                 committed blobs, named by digest (verified before rename)
//! repos/<repo>/_manifests/<alg>-<hex>   one empty marker per manifest held in <repo>
//! repos/<repo>/_tags/<tag>          file holding the digest string the tag points to
//! uploads/<uuid>                    bytes of an upload session in progress
//! tmp/                              temporary files; emptied on open
//! index/                            sled database (rebuildable)
//! ```
//!
//! Manifest bodies are blobs like any other; the repo files record which
//! repository holds which manifest and tag, so a deleted index loses nothing.
//! Room is left for the peer-to-peer path: `partial/<alg>/<hex>` with a chunk
//! bitmap in the index will hold blobs still arriving from peers.
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

mod error;
mod types;

pub use error::StoreError;
pub use types::{BlobInfo, ManifestPut, ManifestRecord, StoreOptions, UploadId, UploadState};
