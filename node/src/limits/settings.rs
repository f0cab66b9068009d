//! The `[limits]` table of the config file, and the shared limiters built
//! from it once per node.
//!
//! ```toml
//! [limits]
//! peer_upload = "100Mbit"       # chunks sent to peers
//! peer_download = "50MiB"       # chunks received from peers
//! upstream_download = 10485760  # blob bytes from upstream registries (bytes/s)
//! upload_slots = 16             # chunk uploads at once, shared out per peer
//! ```

use libp2p::PeerId;
use serde::Deserialize;

use super::{DEFAULT_UPLOAD_SLOTS, Rate, RateLimiter, UploadSlots};

/// Most upload slots: more than the transfer server's inbound streams
/// would never be used.
const MAX_UPLOAD_SLOTS: usize = 1024;

/// Limits as configured; every rate unlimited by default.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LimitSettings {
    pub peer_upload: Rate,
    pub peer_download: Rate,
    pub upstream_download: Rate,
    pub upload_slots: usize,
}

impl Default for LimitSettings {
    fn default() -> LimitSettings {
        LimitSettings {
            peer_upload: Rate::UNLIMITED,
            peer_download: Rate::UNLIMITED,
            upstream_download: Rate::UNLIMITED,
            upload_slots: DEFAULT_UPLOAD_SLOTS,
        }
    }
}

impl LimitSettings {
    /// What is wrong with the settings, as (field, requirement).
    pub fn check(&self) -> Result<(), (&'static str, &'static str)> {
        if !(1..=MAX_UPLOAD_SLOTS).contains(&self.upload_slots) {
            return Err(("limits.upload_slots", "between 1 and 1024"));
        }
        Ok(())
    }

    /// The node's limiters: built once, cloned into the transfer server,
    /// the fetcher and the upstream client so each direction has one
    /// bucket.
    pub fn build(&self) -> Limits {
        Limits {
            peer_upload: RateLimiter::paced(self.peer_upload, super::PACE_PIECE as u64),
            peer_download: RateLimiter::new(self.peer_download),
            upstream_download: RateLimiter::new(self.upstream_download),
            upload_slots: UploadSlots::new(self.upload_slots),
        }
    }
}

/// The shared limiters of one node.
#[derive(Debug, Clone)]
pub struct Limits {
    pub peer_upload: RateLimiter,
    pub peer_download: RateLimiter,
    pub upstream_download: RateLimiter,
    pub upload_slots: UploadSlots<PeerId>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<LimitSettings, String> {
        toml::from_str(text).map_err(|e| e.to_string())
    }

    #[test]
    fn unset_is_unlimited() {
        let s = parse("").expect("empty table");
        assert_eq!(s.peer_upload, Rate::UNLIMITED);
        assert_eq!(s.peer_download, Rate::UNLIMITED);
        assert_eq!(s.upstream_download, Rate::UNLIMITED);
        assert_eq!(s.upload_slots, DEFAULT_UPLOAD_SLOTS);
        assert!(s.check().is_ok());
        assert_eq!(s.build().peer_upload.burst_bytes(), None);
    }

    #[test]
    fn strings_and_numbers() {
        let s = parse(
            "peer_upload = \"100Mbit\"\npeer_download = \"12MiB/s\"\nupstream_download = 1048576\nupload_slots = 4\n",
        )
        .expect("valid");
        assert_eq!(s.peer_upload.limit(), Some(12_500_000));
        assert_eq!(s.peer_download.limit(), Some(12 * 1024 * 1024));
        assert_eq!(s.upstream_download.limit(), Some(1024 * 1024));
        assert_eq!(s.upload_slots, 4);
        assert!(s.build().upstream_download.burst_bytes().is_some());
        let s = parse("peer_upload = 0\npeer_download = \"unlimited\"\n").expect("valid");
        assert_eq!(s.peer_upload, Rate::UNLIMITED);
        assert_eq!(s.peer_download, Rate::UNLIMITED);
    }

    #[test]
    fn bad_values_are_refused_with_a_reason() {
        let err = |text: &str| parse(text).expect_err(text);
        let e = err("peer_upload = \"10Mb\"\n");
        assert!(e.contains("ambiguous") && e.contains("peer_upload"), "{e}");
        let e = err("peer_download = \"fast\"\n");
        assert!(e.contains("does not start with a number"), "{e}");
        let e = err("upstream_download = 100\n");
        assert!(e.contains("below the smallest limit"), "{e}");
        let e = err("upstream_download = -1\n");
        assert!(e.contains("negative"), "{e}");
        let e = err("peer_upload = 1.5\n");
        assert!(e.contains("expected a rate"), "{e}");
        let e = err("peer_uplaod = \"1MiB\"\n");
        assert!(e.contains("peer_uplaod"), "{e}");
        let s = parse("upload_slots = 0\n").expect("parses");
        assert_eq!(
            s.check(),
            Err(("limits.upload_slots", "between 1 and 1024"))
        );
    }
}
