//! The peers on this node's LAN: the ones mDNS found at an address it has
//! not yet seen expire. The fetcher asks them before distant providers, so
//! a layer that is already on the site is taken over the LAN, not over a
//! wide-area link (`transfer::peers::PeerBook::rank`).
//!
//! Shared between the network actor, which records what mDNS reports, and
//! every [`NetworkHandle`](super::NetworkHandle), which reads it; bounded.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};

use libp2p::{Multiaddr, PeerId};

/// Peers remembered at most; a LAN with more is unusual, and a peer left
/// out is only asked in throughput order like any other.
pub const MAX_LAN_PEERS: usize = 1024;

#[derive(Debug, Clone, Default)]
pub struct LanPeers {
    /// Each peer's addresses mDNS reported and has not expired.
    peers: Arc<Mutex<HashMap<PeerId, HashSet<Multiaddr>>>>,
}

impl LanPeers {
    pub fn discovered(&self, found: impl IntoIterator<Item = (PeerId, Multiaddr)>) {
        let mut peers = self.lock();
        for (peer, addr) in found {
            if peers.len() >= MAX_LAN_PEERS && !peers.contains_key(&peer) {
                continue;
            }
            peers.entry(peer).or_default().insert(addr);
        }
    }

    pub fn expired(&self, gone: impl IntoIterator<Item = (PeerId, Multiaddr)>) {
        let mut peers = self.lock();
        for (peer, addr) in gone {
            if let Some(addrs) = peers.get_mut(&peer) {
                addrs.remove(&addr);
                if addrs.is_empty() {
                    peers.remove(&peer);
                }
            }
        }
    }

    pub fn contains(&self, peer: &PeerId) -> bool {
        self.lock().contains_key(peer)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<PeerId, HashSet<Multiaddr>>> {
        // A panic elsewhere while holding it leaves a usable map.
        self.peers.lock().unwrap_or_else(|p| p.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(port: u16) -> Multiaddr {
        format!("/ip4/192.168.1.7/tcp/{port}")
            .parse()
            .expect("address")
    }

    #[test]
    fn a_peer_is_local_until_its_last_address_expires() {
        let lan = LanPeers::default();
        let (a, b) = (PeerId::random(), PeerId::random());
        lan.discovered([(a, addr(1)), (a, addr(2)), (b, addr(3))]);
        assert!(lan.contains(&a) && lan.contains(&b));
        lan.expired([(a, addr(1))]);
        assert!(lan.contains(&a), "one address is left");
        lan.expired([(a, addr(2)), (b, addr(9))]);
        assert!(!lan.contains(&a));
        assert!(lan.contains(&b), "an address it never had expired");
    }

    #[test]
    fn the_list_is_bounded() {
        let lan = LanPeers::default();
        lan.discovered((0..MAX_LAN_PEERS + 10).map(|i| (PeerId::random(), addr(i as u16))));
        assert_eq!(lan.lock().len(), MAX_LAN_PEERS);
        let known = *lan.lock().keys().next().expect("a peer");
        lan.discovered([(known, addr(60000))]);
        assert_eq!(
            lan.lock()[&known].len(),
            2,
            "known peers still gain addresses"
        );
    }
}
