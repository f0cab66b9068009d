//! The composed libp2p behaviour: Kademlia for provider records, identify
//! for addresses, mDNS (optional) for peers on the same LAN, and streams
//! for the transfer protocol.

use libp2p::swarm::NetworkBehaviour;
use libp2p::swarm::behaviour::toggle::Toggle;
use libp2p::{identify, kad, mdns};

use super::provider_store::ProviderStore;

#[derive(NetworkBehaviour)]
pub struct Behaviour {
    pub kad: kad::Behaviour<ProviderStore>,
    pub identify: identify::Behaviour,
    pub mdns: Toggle<mdns::tokio::Behaviour>,
    /// Raw streams for the transfer protocol (`transfer/`).
    pub stream: libp2p_stream::Behaviour,
}
