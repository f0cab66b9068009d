//! Chunk maps of committed blobs, kept in the index so a provider answers a
//! map request without reading the whole blob again. A cache: derived from
//! the blob, dropped with it, recomputed when missing.

use shoal_protocol::Digest;
use shoal_protocol::chain::ChunkMap;

use super::Store;
use super::error::StoreError;

impl Store {
    /// The stored chunk map of `digest`, if one was recorded and decodes.
    pub fn chunk_map(&self, digest: &Digest) -> Result<Option<ChunkMap>, StoreError> {
        let Some(bytes) = self.index.maps.get(digest.to_string())? else {
            return Ok(None);
        };
        match ChunkMap::decode(&bytes) {
            Ok(map) => Ok(Some(map)),
            Err(e) => {
                tracing::warn!(%digest, error = %e, "stored chunk map unreadable; dropping it");
                self.index.maps.remove(digest.to_string())?;
                Ok(None)
            }
        }
    }

    /// Records the chunk map of a committed blob (ignored when the blob is
    /// not held, so a map never outlives its blob).
    pub fn put_chunk_map(&self, digest: &Digest, map: &ChunkMap) -> Result<(), StoreError> {
        if self.index.blob(digest)?.is_some() {
            self.index.maps.insert(digest.to_string(), map.encode())?;
        }
        Ok(())
    }
}
