//! Options of the network actor.

use std::time::Duration;

use libp2p::Multiaddr;

use super::provider_store::ProviderStoreLimits;

/// Kademlia protocol name: private, so a node never joins the public IPFS DHT.
pub const KAD_PROTOCOL: &str = "/shoal/kad/1.0.0";
/// Identify protocol version string.
pub const IDENTIFY_PROTOCOL: &str = "/shoal/id/1.0.0";

#[derive(Debug, Clone)]
pub struct NetworkOptions {
    /// Addresses to listen on, e.g. `/ip4/0.0.0.0/tcp/4001`.
    pub listen: Vec<Multiaddr>,
    /// Peers to connect to at start (with `/p2p/<peer id>`).
    pub bootstrap: Vec<Multiaddr>,
    /// Find peers on the local network with mDNS.
    pub mdns: bool,
    /// How long other nodes keep our provider records. Short, so records of
    /// evicted blobs and stopped nodes fade quickly.
    pub provider_ttl: Duration,
    /// Provider records are re-announced this often (well inside the TTL).
    pub republish_interval: Duration,
    /// Bounds of Kademlia's record store: our own keys and others' records
    /// are capped apart (libp2p's `MemoryStore` caps both at 1024 together).
    pub provider_store: ProviderStoreLimits,
    /// How often others' expired provider records are dropped. A few
    /// minutes against a TTL of an hour: a stale record lingers briefly.
    pub sweep_interval: Duration,
    /// Commands queued to the actor before callers wait.
    pub command_queue: usize,
}

impl Default for NetworkOptions {
    fn default() -> NetworkOptions {
        NetworkOptions {
            listen: Vec::new(),
            bootstrap: Vec::new(),
            mdns: true,
            provider_ttl: Duration::from_secs(3600),
            republish_interval: Duration::from_secs(20 * 60),
            provider_store: ProviderStoreLimits::default(),
            sweep_interval: Duration::from_secs(5 * 60),
            command_queue: 1024,
        }
    }
}
