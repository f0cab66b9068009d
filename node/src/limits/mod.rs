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

/// How much of a chunk goes to a peer at a time under an upload limit.
/// Written in one piece, a 1 MiB chunk enters the uplink's queue at once;
/// in 64 KiB pieces paid for one by one (with a bucket of about one piece)
/// the queue holds one piece of ours, so the ACKs of the node's own
/// downloads, which share that queue, are not held behind a chunk. 64 KiB
/// is one GSO packet: smaller pieces cost syscalls and buy nothing.
pub const PACE_PIECE: usize = 64 * 1024;
pub use rate::{MIN_RATE, Rate, RateError};
pub use settings::{LimitSettings, Limits};
pub use slots::{DEFAULT_UPLOAD_SLOTS, Key, UploadSlot, UploadSlots};
