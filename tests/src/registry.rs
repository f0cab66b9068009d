//! What the tests need from any registry under test (a shoal node or the
//! reference `docker-registry`): where it listens and which blob files it
//! holds on disk.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

/// One blob file in a registry's storage.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredBlob {
    /// `alg:hex` as named by the file's location.
    pub digest: String,
    pub path: PathBuf,
    pub size: u64,
}

pub trait TestRegistry {
    /// Which implementation this is, for messages.
    fn label(&self) -> &'static str;
    /// The loopback address of the OCI endpoint.
    fn addr(&self) -> SocketAddr;
    /// Every committed blob file in its storage.
    fn blob_files(&self) -> Result<Vec<StoredBlob>, String>;

    /// `host:port` as used in image references.
    fn host(&self) -> String {
        self.addr().to_string()
    }
    /// `http://host:port`.
    fn url(&self) -> String {
        format!("http://{}", self.addr())
    }
}

/// Lists `root/<alg>/<hex>` files (shoal's `blobs/` layout). Anything else
/// in there (a nested directory, a stray file at the top) is reported as an
/// error: it would be a blob the registry does not know it holds.
pub fn list_flat_blob_dir(root: &Path) -> Result<Vec<StoredBlob>, String> {
    let mut blobs = Vec::new();
    if !root.exists() {
        return Ok(blobs);
    }
    for alg in read_dir(root)? {
        let alg_path = alg.path();
        if !alg_path.is_dir() {
            return Err(format!("unexpected file {}", alg_path.display()));
        }
        let alg_name = file_name(&alg_path)?;
        for blob in read_dir(&alg_path)? {
            let path = blob.path();
            let meta =
                std::fs::metadata(&path).map_err(|e| format!("stat {}: {e}", path.display()))?;
            if !meta.is_file() {
                return Err(format!("unexpected directory {}", path.display()));
            }
            let hex = file_name(&path)?;
            blobs.push(StoredBlob {
                digest: format!("{alg_name}:{hex}"),
                path,
                size: meta.len(),
            });
        }
    }
    blobs.sort_by(|a, b| a.digest.cmp(&b.digest));
    Ok(blobs)
}

/// Lists distribution's `blobs/<alg>/<2 hex>/<hex>/data` files.
pub fn list_distribution_blob_dir(root: &Path) -> Result<Vec<StoredBlob>, String> {
    let mut blobs = Vec::new();
    if !root.exists() {
        return Ok(blobs);
    }
    for alg in read_dir(root)? {
        let alg_name = file_name(&alg.path())?;
        for prefix in read_dir(&alg.path())? {
            for blob in read_dir(&prefix.path())? {
                let path = blob.path().join("data");
                let Ok(meta) = std::fs::metadata(&path) else {
                    continue;
                };
                blobs.push(StoredBlob {
                    digest: format!("{alg_name}:{}", file_name(&blob.path())?),
                    path,
                    size: meta.len(),
                });
            }
        }
    }
    blobs.sort_by(|a, b| a.digest.cmp(&b.digest));
    Ok(blobs)
}

fn read_dir(dir: &Path) -> Result<Vec<std::fs::DirEntry>, String> {
    std::fs::read_dir(dir)
        .and_then(|entries| entries.collect::<Result<Vec<_>, _>>())
        .map_err(|e| format!("listing {}: {e}", dir.display()))
}

fn file_name(path: &Path) -> Result<String, String> {
    path.file_name()
        .and_then(|n| n.to_str())
        .map(str::to_owned)
        .ok_or_else(|| format!("unreadable file name {}", path.display()))
}
