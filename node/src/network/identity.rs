//! The node's persistent libp2p identity: an ed25519 key in the data dir,
//! created on first use, so the peer id survives restarts.

use std::io::Write;
use std::path::{Path, PathBuf};

use libp2p::identity::Keypair;

#[derive(Debug, thiserror::Error)]
pub enum IdentityError {
    #[error("{op} {path}: {source}")]
    Io {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("identity file {0} is not a valid key; move it away to create a new identity")]
    Corrupt(PathBuf),
}

/// File name of the key under the data dir.
pub const IDENTITY_FILE: &str = "identity.key";

/// Loads the key from `data_dir`, creating it (mode 0600) if absent.
pub fn load_or_create(data_dir: &Path) -> Result<Keypair, IdentityError> {
    let path = data_dir.join(IDENTITY_FILE);
    let io = |op: &'static str, path: &Path| {
        let path = path.to_path_buf();
        move |source| IdentityError::Io { op, path, source }
    };
    match std::fs::read(&path) {
        Ok(bytes) => {
            Keypair::from_protobuf_encoding(&bytes).map_err(|_| IdentityError::Corrupt(path))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            std::fs::create_dir_all(data_dir).map_err(io("create", data_dir))?;
            let key = Keypair::generate_ed25519();
            let bytes = key
                .to_protobuf_encoding()
                .map_err(|_| IdentityError::Corrupt(path.clone()))?;
            // Written under a temporary name and renamed, so a crash never
            // leaves a half-written key that would change the peer id.
            let tmp = data_dir.join(format!("{IDENTITY_FILE}.tmp"));
            let mut file = {
                use std::os::unix::fs::OpenOptionsExt;
                std::fs::OpenOptions::new()
                    .write(true)
                    .create(true)
                    .truncate(true)
                    .mode(0o600)
                    .open(&tmp)
                    .map_err(io("create", &tmp))?
            };
            file.write_all(&bytes)
                .and_then(|()| file.sync_all())
                .map_err(io("write", &tmp))?;
            std::fs::rename(&tmp, &path).map_err(io("rename", &path))?;
            Ok(key)
        }
        Err(e) => Err(io("read", &path)(e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identity_is_stable_across_loads() {
        let dir = tempfile::tempdir().expect("tempdir");
        let a = load_or_create(dir.path()).expect("create");
        let b = load_or_create(dir.path()).expect("load");
        assert_eq!(a.public().to_peer_id(), b.public().to_peer_id());
        std::fs::write(dir.path().join(IDENTITY_FILE), b"garbage").expect("write");
        assert!(matches!(
            load_or_create(dir.path()),
            Err(IdentityError::Corrupt(_))
        ));
    }
}
