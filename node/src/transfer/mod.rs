//! The transfer protocol over libp2p streams: a server answering from the
//! store (and from downloads still under way) and a fetcher assembling
//! blobs from several providers, verified chunk by chunk
//! (`protocol/src/chain.rs`) and as a whole.

mod bitmap;
mod chain_window;
mod downloads;
mod fetch;
mod follow;
mod framed;
mod from_upstream;
#[cfg(feature = "test-liars")]
mod liars;
mod peers;
mod relay_chain;
mod schedule;
mod server;
mod session;
mod split;
mod tags;
mod upstream_lead;
mod worker;

pub use downloads::{Download, Downloads, Finished, PartialView, Progress};
pub use fetch::{FetchError, Fetcher, UpstreamSource};
#[cfg(feature = "test-liars")]
pub use liars::LiarMode;
pub use server::TransferServer;
