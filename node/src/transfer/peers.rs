//! What this node has learnt about other peers across fetches: how fast
//! each delivered, and which are banned (and until when).
//!
//! A peer whose bytes failed a check or whose chunk map the digest
//! disproved is banned for [`LIE_BAN`]. One that broke off or stalled is
//! only dropped from that fetch and scored down (streams also break when a
//! busy peer's accept queue overflows; banning for that would make blobs
//! unavailable). Throughput is an exponentially weighted average of chunk
//! deliveries, used to pick the quickest providers first.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use libp2p::PeerId;

/// How long a peer that sent bytes failing a check is left out.
pub const LIE_BAN: Duration = Duration::from_secs(600);
/// Peers remembered at most; the least useful are forgotten first.
const MAX_PEERS: usize = 4096;
/// Weight of the newest delivery in the throughput average.
const EWMA_WEIGHT: f64 = 0.3;

#[derive(Debug, Clone, Copy, Default)]
struct PeerRecord {
    /// Bytes per second, averaged over deliveries; 0 when unknown.
    throughput: f64,
    banned_until: Option<Instant>,
}

#[derive(Debug, Clone, Default)]
pub struct PeerBook {
    peers: Arc<Mutex<HashMap<PeerId, PeerRecord>>>,
}

impl PeerBook {
    fn with<R>(&self, f: impl FnOnce(&mut HashMap<PeerId, PeerRecord>) -> R) -> R {
        let mut peers = self.peers.lock().unwrap_or_else(|p| p.into_inner());
        f(&mut peers)
    }

    /// Records one delivery of `bytes` that took `elapsed`.
    pub fn delivered(&self, peer: PeerId, bytes: usize, elapsed: Duration) {
        let rate = bytes as f64 / elapsed.as_secs_f64().max(1e-6);
        self.with(|peers| {
            make_room(peers);
            let r = peers.entry(peer).or_default();
            r.throughput = if r.throughput == 0.0 {
                rate
            } else {
                EWMA_WEIGHT * rate + (1.0 - EWMA_WEIGHT) * r.throughput
            };
        });
    }

    pub fn ban(&self, peer: PeerId, duration: Duration) {
        self.with(|peers| {
            make_room(peers);
            let until = Instant::now() + duration;
            let r = peers.entry(peer).or_default();
            r.banned_until = Some(r.banned_until.map_or(until, |u| u.max(until)));
        });
    }

    pub fn is_banned(&self, peer: &PeerId) -> bool {
        self.with(|peers| {
            peers
                .get(peer)
                .and_then(|r| r.banned_until)
                .is_some_and(|until| until > Instant::now())
        })
    }

    /// Bytes per second the peer delivered on average (0 when unknown).
    pub fn throughput(&self, peer: &PeerId) -> f64 {
        self.with(|peers| peers.get(peer).map_or(0.0, |r| r.throughput))
    }

    /// Drops banned peers and orders the rest: peers on this node's LAN
    /// first (`on_lan`: found by mDNS), a fast distant peer's throughput
    /// being no reason to load a wide-area link; within each group the
    /// quickest first. Peers never measured keep their order, after the
    /// measured ones of their group.
    pub fn rank(&self, candidates: Vec<PeerId>, on_lan: impl Fn(&PeerId) -> bool) -> Vec<PeerId> {
        let mut scored: Vec<(PeerId, bool, f64)> = candidates
            .into_iter()
            .filter(|p| !self.is_banned(p))
            .map(|p| {
                let t = self.throughput(&p);
                (p, on_lan(&p), t)
            })
            .collect();
        scored.sort_by(|a, b| b.1.cmp(&a.1).then(b.2.total_cmp(&a.2)));
        scored.into_iter().map(|(p, _, _)| p).collect()
    }
}

/// Keeps the book bounded: expired bans and then the slowest peers go.
fn make_room(peers: &mut HashMap<PeerId, PeerRecord>) {
    if peers.len() < MAX_PEERS {
        return;
    }
    let now = Instant::now();
    peers.retain(|_, r| r.banned_until.is_some_and(|u| u > now) || r.throughput > 0.0);
    if peers.len() >= MAX_PEERS {
        let mut rates: Vec<f64> = peers.values().map(|r| r.throughput).collect();
        rates.sort_by(f64::total_cmp);
        let median = rates[rates.len() / 2];
        peers.retain(|_, r| r.banned_until.is_some_and(|u| u > now) || r.throughput > median);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn banned_peers_are_left_out_and_the_quickest_come_first() {
        let book = PeerBook::default();
        let (slow, fast, liar, new) = (
            PeerId::random(),
            PeerId::random(),
            PeerId::random(),
            PeerId::random(),
        );
        book.delivered(slow, 1 << 20, Duration::from_millis(100));
        book.delivered(fast, 1 << 20, Duration::from_millis(10));
        book.delivered(liar, 1 << 20, Duration::from_millis(1));
        book.ban(liar, LIE_BAN);
        assert!(book.is_banned(&liar));
        assert_eq!(
            book.rank(vec![new, slow, liar, fast], |_| false),
            vec![fast, slow, new]
        );
    }

    #[test]
    fn lan_peers_come_before_quicker_distant_ones() {
        let book = PeerBook::default();
        let (far_fast, lan_slow, lan_new, far_new) = (
            PeerId::random(),
            PeerId::random(),
            PeerId::random(),
            PeerId::random(),
        );
        book.delivered(far_fast, 1 << 20, Duration::from_millis(5));
        book.delivered(lan_slow, 1 << 20, Duration::from_millis(200));
        let on_lan = |p: &PeerId| *p == lan_slow || *p == lan_new;
        assert_eq!(
            book.rank(vec![far_new, lan_new, far_fast, lan_slow], on_lan),
            vec![lan_slow, lan_new, far_fast, far_new]
        );
    }

    #[test]
    fn a_ban_runs_out() {
        let book = PeerBook::default();
        let p = PeerId::random();
        book.ban(p, Duration::ZERO);
        assert!(!book.is_banned(&p));
    }

    #[test]
    fn the_book_stays_bounded() {
        let book = PeerBook::default();
        for i in 0..(MAX_PEERS * 2) {
            book.delivered(
                PeerId::random(),
                1000 + i,
                Duration::from_millis(1 + (i % 7) as u64),
            );
        }
        assert!(book.with(|p| p.len()) <= MAX_PEERS);
    }
}
