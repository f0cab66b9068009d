//! Bandwidth limits: how fast the node sends to peers, receives from
//! peers, and receives from upstream registries (`[limits]` in the config),
//! and fair upload slots so one greedy peer cannot starve the others.
//!
//! - [`Rate`] reads limits as people write them (`100Mbit`, `12MiB`).
//! - [`RateLimiter`] is a token bucket, one per direction, shared by every
//!   stream in it: the node's total is what is limited, not each stream.
//! - [`UploadSlots`] bounds the chunk uploads in progress and grants them
//!   round-robin per peer.
//!
//! Goals: limits that hold over any second, cost nothing when unset, and
//! need no change to the wire protocol. Non-goals: per-peer rates,
//! limiting the local registry endpoint (its clients are on this host),
//! limiting small messages (chunk maps, have-maps, manifests).

mod bucket;
mod rate;
mod settings;
mod slots;

pub use bucket::{BURST_WINDOW, RateLimiter};
pub use rate::{MIN_RATE, Rate, RateError};
pub use settings::{LimitSettings, Limits};
pub use slots::{DEFAULT_UPLOAD_SLOTS, Key, UploadSlot, UploadSlots};
