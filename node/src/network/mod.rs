//! The libp2p network actor.
//!
//! One task owns the `Swarm` ([`actor::EventLoop`]); the rest of the node
//! talks to it through a cloneable [`NetworkHandle`] over a bounded channel,
//! each request carrying a oneshot for its answer. The loop never awaits a
//! full channel and never assumes a query is still pending.
//!
//! Now: Kademlia (private protocol name, server mode) for provider records
//! keyed by a digest's multihash, held in a bounded store of our own that
//! the actor sweeps of expired records ([`provider_store`]), identify,
//! optional mDNS (whose peers are remembered as LAN peers, [`LanPeers`]),
//! TCP+noise+yamux and QUIC, a persistent identity, and the streams of the
//! transfer protocol (`libp2p-stream`, served in `transfer/`).

mod actor;
mod behaviour;
mod config;
mod handle;
pub mod identity;
mod lan;
mod provider_store;

pub use config::{IDENTIFY_PROTOCOL, KAD_PROTOCOL, NetworkOptions};
pub use handle::{NetworkError, NetworkHandle, NetworkInfo};
pub use lan::LanPeers;
pub use provider_store::ProviderStoreLimits;

use std::future::Future;

use libp2p::identity::Keypair;

/// Starts the network actor; it runs until `shutdown` completes or every
/// handle is dropped.
pub fn spawn(
    keypair: Keypair,
    options: NetworkOptions,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(NetworkHandle, tokio::task::JoinHandle<()>), NetworkError> {
    let (tx, rx) = tokio::sync::mpsc::channel(options.command_queue.max(1));
    let peer_id = keypair.public().to_peer_id();
    let lan = LanPeers::default();
    let event_loop = actor::EventLoop::new(keypair, &options, rx, lan.clone())?;
    let control = event_loop.stream_control();
    let task = tokio::spawn(event_loop.run(shutdown));
    Ok((NetworkHandle::new(tx, peer_id, control, lan), task))
}
