//! Which chunk a provider is asked for next, and the bookkeeping of one
//! fetch under one chunk map (shared by the workers behind a mutex).
//!
//! Order: first the *urgent* chunks — the last one, which anchors the map in
//! the digest, and those next to states where candidate maps disagree, which
//! expose a forged map within a chunk or two. Then rarest-first with a
//! random tie-break, but within a window ahead of the first missing chunk,
//! so a client streaming the blob in order is not kept waiting for chunk 0
//! while chunk 180 arrives. A chunk outside the window is taken only when
//! the provider has nothing inside it.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::hash::BuildHasher;
use std::time::Instant;

use libp2p::PeerId;
use shoal_protocol::Digest;
use shoal_protocol::chain::ChainVerifier;

use super::fetch::ENDGAME_AFTER;

/// Chunks ahead of the first missing one that count as "now".
const WINDOW: u32 = 32;
/// Candidates looked at per pick (bounds the work on huge blobs).
const SCAN: usize = 64;

/// What a provider holds: `None` is everything.
pub type Availability = Option<Vec<bool>>;

pub struct Schedule {
    pub verifier: ChainVerifier,
    /// Chunks to fetch that nobody is being asked for.
    wanted: BTreeSet<u32>,
    urgent: Vec<u32>,
    avail: HashMap<PeerId, Availability>,
    /// Chunks requested and not yet settled.
    pub in_flight: usize,
    /// Per chunk requested: when it was first asked for, and how many
    /// requests for it are outstanding (2 in the end-game).
    pub pending: HashMap<u32, (Instant, u32)>,
    /// Per chunk: who sent bytes that failed, and a fingerprint of them.
    pub failures: HashMap<u32, Vec<(PeerId, Digest)>>,
    /// Set when two peers agree on bytes the map rejects.
    pub map_forged: bool,
    /// Chunks written to the partial file and checked.
    pub stored: BTreeSet<u32>,
    /// Peers whose bytes failed under this map.
    pub rejected: HashSet<PeerId>,
    /// Peers that delivered a chunk that checks under this map.
    pub trusted: HashSet<PeerId>,
    /// When the last chunk was stored (a fetch that stops progressing ends).
    pub last_progress: Instant,
    /// No chunk stored for this long ends the round (and cuts requests
    /// still out).
    pub stall_limit: std::time::Duration,
    /// Chunks rejected under this map that check under another candidate
    /// map: kept (a few) in case that map turns out the true one.
    pub orphans: HashMap<u32, Vec<u8>>,
    tie: std::hash::RandomState,
}

impl Schedule {
    pub fn new(verifier: ChainVerifier, stored: BTreeSet<u32>, urgent: Vec<u32>) -> Schedule {
        let count = verifier.plan().count();
        let wanted = (0..count).filter(|i| !stored.contains(i)).collect();
        let mut seen = HashSet::new();
        let urgent = urgent
            .into_iter()
            .filter(|i| *i < count && seen.insert(*i))
            .collect();
        Schedule {
            verifier,
            wanted,
            urgent,
            avail: HashMap::new(),
            in_flight: 0,
            pending: HashMap::new(),
            failures: HashMap::new(),
            map_forged: false,
            stored,
            rejected: HashSet::new(),
            trusted: HashSet::new(),
            last_progress: Instant::now(),
            stall_limit: super::worker::STALL_LIMIT,
            orphans: HashMap::new(),
            tie: std::hash::RandomState::new(),
        }
    }

    pub fn set_availability(&mut self, peer: PeerId, avail: Availability) {
        self.avail.insert(peer, avail);
    }

    /// Sets a peer's availability from a wire bitmap (most significant bit
    /// first); bits past the last chunk are ignored.
    pub fn set_bitmap(&mut self, peer: PeerId, bitmap: &[u8]) {
        let count = self.verifier.plan().count() as usize;
        self.avail
            .insert(peer, Some(super::bitmap::decode(bitmap, count)));
    }

    /// Whether the peer claims to hold everything.
    pub fn is_complete_provider(&self, peer: &PeerId) -> bool {
        matches!(self.avail.get(peer), Some(None))
    }

    fn has(&self, peer: &PeerId, index: u32) -> bool {
        match self.avail.get(peer) {
            Some(None) => true,
            Some(Some(bits)) => bits.get(index as usize).copied().unwrap_or(false),
            None => false,
        }
    }

    /// How many usable providers hold chunk `index`.
    fn rarity(&self, index: u32) -> usize {
        self.avail
            .keys()
            .filter(|p| !self.rejected.contains(p) && self.has(p, index))
            .count()
    }

    /// No chunk arrived for longer than the stall limit.
    pub fn stalled(&self) -> bool {
        self.last_progress.elapsed() >= self.stall_limit
    }

    pub fn nothing_wanted(&self) -> bool {
        self.wanted.is_empty()
    }

    /// The next chunk to ask `peer` for, taken off the wanted set.
    pub fn take_for(&mut self, peer: &PeerId) -> Option<u32> {
        let pick = self.pick(peer)?;
        self.wanted.remove(&pick);
        self.urgent.retain(|i| *i != pick);
        self.in_flight += 1;
        self.pending.entry(pick).or_insert((Instant::now(), 0)).1 += 1;
        Some(pick)
    }

    fn pick(&self, peer: &PeerId) -> Option<u32> {
        if let Some(i) = self
            .urgent
            .iter()
            .find(|i| self.wanted.contains(i) && self.has(peer, **i))
        {
            return Some(*i);
        }
        let first = *self.wanted.first()?;
        self.wanted
            .iter()
            .filter(|i| self.has(peer, **i))
            .take(SCAN)
            .min_by_key(|i| {
                (
                    (**i - first) / WINDOW,
                    self.rarity(**i),
                    self.tie.hash_one(**i),
                )
            })
            .copied()
    }

    /// End-game: the longest-outstanding chunk that only one request waits
    /// for, held by `peer`, if it has waited at least [`ENDGAME_AFTER`].
    pub fn take_endgame_for(&mut self, peer: &PeerId) -> Option<u32> {
        let pick = self
            .pending
            .iter()
            .filter(|(i, (since, holders))| {
                *holders == 1 && since.elapsed() >= ENDGAME_AFTER && self.has(peer, **i)
            })
            .min_by_key(|(_, (since, _))| *since)
            .map(|(i, _)| *i)?;
        self.in_flight += 1;
        if let Some(p) = self.pending.get_mut(&pick) {
            p.1 += 1;
        }
        Some(pick)
    }

    /// One request for chunk `index` ended; unless the chunk is stored or
    /// another request for it is still out, it is wanted again.
    pub fn settle(&mut self, index: u32) {
        self.in_flight = self.in_flight.saturating_sub(1);
        let others = match self.pending.get_mut(&index) {
            Some(p) => {
                p.1 = p.1.saturating_sub(1);
                p.1
            }
            None => 0,
        };
        if others == 0 {
            self.pending.remove(&index);
            if !self.stored.contains(&index) {
                self.wanted.insert(index);
            }
        }
    }

    /// A peer said it does not hold chunk `index` after all.
    pub fn lacks(&mut self, peer: &PeerId, index: u32) {
        if let Some(Some(bits)) = self.avail.get_mut(peer) {
            if let Some(b) = bits.get_mut(index as usize) {
                *b = false;
            }
        } else {
            // A "complete" provider that is not: treat it as empty until its
            // have-map says otherwise.
            let count = self.verifier.plan().count() as usize;
            self.avail.insert(*peer, Some(vec![false; count]));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use shoal_protocol::chain::ChunkMapBuilder;
    use shoal_protocol::chunk::ChunkPlan;

    fn schedule(chunks: u32) -> Schedule {
        let chunk = shoal_protocol::chunk::MIN_CHUNK_SIZE;
        let data: Vec<u8> = (0..chunks * chunk).map(|i| (i % 251) as u8).collect();
        let plan = ChunkPlan::new(data.len() as u64, chunk).expect("plan");
        let mut b = ChunkMapBuilder::new(shoal_protocol::Algorithm::Sha256, plan);
        b.update(&data);
        let (map, digest) = b.finish().expect("map");
        let v = ChainVerifier::new(digest, map).expect("verifier");
        Schedule::new(v, BTreeSet::new(), vec![chunks - 1])
    }

    #[test]
    fn the_last_chunk_comes_first_then_the_rarest_in_the_window() {
        let mut s = schedule(8);
        let (a, b) = (PeerId::random(), PeerId::random());
        s.set_availability(a, None);
        // b holds only chunks 2 and 5.
        s.set_bitmap(b, &[0b0010_0100]);
        assert_eq!(s.take_for(&a), Some(7));
        // Chunks 2 and 5 are held by two providers, the rest by one: a is
        // given the rarer ones first.
        let mut order = Vec::new();
        while let Some(i) = s.take_for(&a) {
            order.push(i);
        }
        assert_eq!(order.len(), 7);
        let pos = |c: u32| order.iter().position(|i| *i == c).expect("taken");
        for rare in [0, 1, 3, 4, 6] {
            assert!(pos(rare) < pos(2) && pos(rare) < pos(5), "{order:?}");
        }
        assert_eq!(s.take_for(&b), None, "everything is out");
    }

    #[test]
    fn a_partial_provider_is_only_asked_for_what_it_holds() {
        let mut s = schedule(4);
        let p = PeerId::random();
        s.set_bitmap(p, &[0b0100_0000]);
        assert_eq!(s.take_for(&p), Some(1));
        assert_eq!(s.take_for(&p), None);
        s.lacks(&p, 1);
        s.settle(1);
        assert_eq!(s.take_for(&p), None);
        let q = PeerId::random();
        s.set_availability(q, None);
        assert_eq!(s.take_for(&q), Some(3), "the anchor first");
    }

    #[test]
    fn chunks_beyond_the_window_wait_for_the_window() {
        let mut s = schedule(WINDOW * 3);
        let p = PeerId::random();
        s.set_availability(p, None);
        assert_eq!(s.take_for(&p), Some(WINDOW * 3 - 1));
        for _ in 0..WINDOW {
            let i = s.take_for(&p).expect("a chunk");
            assert!(i < 2 * WINDOW, "{i} taken far ahead of the window");
        }
    }

    #[test]
    fn a_failed_request_makes_its_chunk_wanted_again() {
        let mut s = schedule(2);
        let p = PeerId::random();
        s.set_availability(p, None);
        let i = s.take_for(&p).expect("chunk");
        s.settle(i);
        // Both chunks are wanted again (in either order), and only they.
        let again: Vec<u32> = std::iter::from_fn(|| s.take_for(&p)).collect();
        assert_eq!(again.len(), 2);
        assert!(again.contains(&i), "{again:?}");
    }
}
