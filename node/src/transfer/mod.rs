//! The transfer protocol over libp2p streams: a server answering from the
//! store and a fetcher assembling blobs from several providers, verified
//! chunk by chunk (`protocol/src/chain.rs`) and as a whole.

mod fetch;
mod framed;
mod server;

pub use fetch::{FetchError, Fetcher};
#[cfg(feature = "test-liars")]
pub use server::LiarMode;
pub use server::TransferServer;
