//! Tags resolved at an upstream registry, with when they were seen: used
//! when the upstream cannot be reached. A cache in the index only (not in
//! the files): a rebuilt index starts without it.

use std::time::Duration;

use shoal_protocol::Digest;

use super::Store;
use super::blobs::now_ms;
use super::error::StoreError;

impl Store {
    /// Records that `key` (`<host>/<repo>:<tag>`) named `digest` just now.
    pub fn put_mirror_tag(&self, key: &str, digest: &Digest) -> Result<(), StoreError> {
        let value = format!("{digest}\0{}", now_ms());
        self.index.mirror_tags.insert(key, value.as_bytes())?;
        Ok(())
    }

    /// The digest `key` last named upstream, and how long ago that was.
    pub fn mirror_tag(&self, key: &str) -> Result<Option<(Digest, Duration)>, StoreError> {
        let Some(value) = self.index.mirror_tags.get(key)? else {
            return Ok(None);
        };
        let parsed = std::str::from_utf8(&value).ok().and_then(|v| {
            let (digest, ms) = v.split_once('\0')?;
            Some((digest.parse::<Digest>().ok()?, ms.parse::<u64>().ok()?))
        });
        Ok(parsed.map(|(digest, ms)| (digest, Duration::from_millis(now_ms().saturating_sub(ms)))))
    }
}
