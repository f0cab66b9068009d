use std::path::PathBuf;

use shoal_protocol::Digest;

/// What went wrong in the content store.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("{op} {path}: {source}")]
    Io {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("index: {0}")]
    Index(#[from] sled::Error),
    #[error("index record {key:?} is corrupt: {reason}")]
    CorruptRecord { key: String, reason: String },
    #[error("content does not match digest: expected {expected}, got {actual}")]
    DigestMismatch { expected: Digest, actual: Digest },
    #[error("upload session {0} is unknown")]
    UploadUnknown(String),
    #[error("upload is at offset {current}, the write starts at {start}")]
    UploadOffset { current: u64, start: u64 },
    #[error("upload session {0} is being written by another request")]
    UploadBusy(String),
    #[error("store task failed: {0}")]
    Task(#[from] tokio::task::JoinError),
    #[error("blob {0} is not in the store")]
    BlobUnknown(Digest),
}
