//! Small durable file-system steps with errors that name the path.

use std::io::Write;
use std::path::Path;

use super::error::StoreError;

pub fn io_err(op: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> StoreError + use<> {
    let path = path.to_path_buf();
    move |source| StoreError::Io { op, path, source }
}

pub fn create_dir_all(path: &Path) -> Result<(), StoreError> {
    std::fs::create_dir_all(path).map_err(io_err("create directory", path))
}

/// Flushes a directory entry (a rename or create) to disk.
pub fn fsync_dir(dir: &Path) -> Result<(), StoreError> {
    std::fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io_err("fsync directory", dir))
}

/// Renames `from` onto `to` (atomic on one file system) and makes it durable.
pub fn durable_rename(from: &Path, to: &Path) -> Result<(), StoreError> {
    if let Some(parent) = to.parent() {
        create_dir_all(parent)?;
    }
    std::fs::rename(from, to).map_err(io_err("rename into place", to))?;
    if let Some(parent) = to.parent() {
        fsync_dir(parent)?;
    }
    Ok(())
}

/// Writes a small file atomically: temp file in `tmp_dir`, fsync, rename.
pub fn write_atomic(tmp_dir: &Path, to: &Path, contents: &[u8]) -> Result<(), StoreError> {
    let mut tmp =
        tempfile::NamedTempFile::new_in(tmp_dir).map_err(io_err("create temp file", tmp_dir))?;
    tmp.write_all(contents)
        .and_then(|()| tmp.as_file().sync_all())
        .map_err(io_err("write temp file", tmp_dir))?;
    if let Some(parent) = to.parent() {
        create_dir_all(parent)?;
    }
    tmp.persist(to).map_err(|e| StoreError::Io {
        op: "rename into place",
        path: to.to_path_buf(),
        source: e.error,
    })?;
    if let Some(parent) = to.parent() {
        fsync_dir(parent)?;
    }
    Ok(())
}

/// Removes a file; absent is fine. Returns whether it existed.
pub fn remove_file(path: &Path) -> Result<bool, StoreError> {
    match std::fs::remove_file(path) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(StoreError::Io {
            op: "remove",
            path: path.to_path_buf(),
            source: e,
        }),
    }
}
