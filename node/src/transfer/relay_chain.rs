//! Which peer a follower takes a blob from while its leader fetches it
//! from upstream (`follow.rs`): the followers, sorted by peer id, form a
//! chain behind the leader, and each takes every chunk, in order, from the
//! one before it; the first takes them from the leader.
//!
//! Why a chain: when the uplink is about as fast as a host's link (U0 = u
//! = d), every host's download has to be full for the whole pull, and each
//! host's upload has room for one copy of the blob. In a chain every host
//! receives one copy and sends one, both at the pace at which the leader
//! takes the blob in, and the last host is one chunk-time per hop behind
//! the leader. Chunks polled for and requested from whoever has them (the
//! mesh this replaced) left followers waiting on each other's uploads.
//!
//! Every follower picks its predecessor from its own view of who follows,
//! always a peer earlier in the same order (or the leader), so the views
//! need not agree: the chunks still flow from the leader down a tree.
//! A predecessor that delivers nothing for a while, its streams breaking
//! or its answers empty, is passed over for the one before it. One that is
//! merely behind the leader, or whose stream was dropped in a burst, keeps
//! its place: passing it over would put two followers on one upload.

use std::collections::{HashMap, HashSet};

use libp2p::PeerId;
use tokio::time::{Duration, Instant};

/// Failed asks in a row before a predecessor is passed over.
pub(super) const MISSES_TO_PASS_OVER: u32 = 2;
/// After a stream broke, how long before the peer is asked again (a peer
/// that went away would otherwise be asked in a tight loop until it is
/// passed over).
pub(super) const BROKEN_RETRY: Duration = Duration::from_millis(50);

/// One follower's place in the chain behind a leader.
#[derive(Debug)]
pub(super) struct RelayChain {
    leader: PeerId,
    me: PeerId,
    /// Other followers, sorted, without this node and the leader; `None`
    /// until they were first looked for.
    members: Option<Vec<PeerId>>,
    passed_over: HashSet<PeerId>,
    /// Failed asks in a row of the predecessor they were asked of.
    misses: u32,
    missed_by: Option<PeerId>,
    /// When each peer asked last delivered a chunk (or was first asked).
    heard: HashMap<PeerId, Instant>,
    /// Peers not to be asked before then (a stream to them broke); one
    /// entry per predecessor tried, overwritten at each break.
    paused: HashMap<PeerId, Instant>,
}

impl RelayChain {
    pub(super) fn new(leader: PeerId, me: PeerId) -> RelayChain {
        RelayChain {
            leader,
            me,
            members: None,
            passed_over: HashSet::new(),
            misses: 0,
            missed_by: None,
            heard: HashMap::new(),
            paused: HashMap::new(),
        }
    }

    /// The followers found (in any order, with repeats, perhaps this node
    /// and the leader among them), at most `max` of them kept.
    pub(super) fn set_members(&mut self, found: impl IntoIterator<Item = PeerId>, max: usize) {
        let mut members: Vec<PeerId> = found
            .into_iter()
            .filter(|p| *p != self.me && *p != self.leader)
            .collect();
        members.sort();
        members.dedup();
        // The ones nearest before this node matter; keep those.
        let before = members.partition_point(|p| *p < self.me);
        let skip = before.saturating_sub(max);
        self.members = Some(members.into_iter().skip(skip).take(max).collect());
    }

    pub(super) fn leader(&self) -> PeerId {
        self.leader
    }

    /// Whether the followers were looked for yet: before that, every
    /// follower would pick the leader and swamp its upload.
    pub(super) fn members_known(&self) -> bool {
        self.members.is_some()
    }

    /// The peer to take chunks from: the nearest follower before this node
    /// that was not passed over, else the leader.
    pub(super) fn predecessor(&self) -> PeerId {
        self.members
            .iter()
            .flatten()
            .filter(|p| **p < self.me && !self.passed_over.contains(p))
            .max()
            .copied()
            .unwrap_or(self.leader)
    }

    /// Chunks are being asked of `peer`: its silence counts from now on.
    pub(super) fn asking(&mut self, peer: PeerId, now: Instant) {
        self.heard.entry(peer).or_insert(now);
    }

    /// Whether `peer` has delivered nothing for `wait` (since it was first
    /// asked, or since its last chunk).
    pub(super) fn quiet(&self, peer: PeerId, now: Instant, wait: Duration) -> bool {
        self.heard
            .get(&peer)
            .is_none_or(|t| now.saturating_duration_since(*t) >= wait)
    }

    /// `peer` delivered a chunk.
    pub(super) fn delivered(&mut self, peer: PeerId, now: Instant) {
        self.heard.insert(peer, now);
        if self.missed_by == Some(peer) {
            self.misses = 0;
            self.missed_by = None;
        }
    }

    /// `peer` failed an ask: its stream broke, or it was [`quiet`](Self::quiet).
    /// Returns whether it is passed over now. The leader never is: losing it is decided
    /// by how it answers its polls. Its silence counts from `now` again, so
    /// the asks that were waiting alongside count as one miss.
    pub(super) fn missed(&mut self, peer: PeerId, now: Instant) -> bool {
        if peer == self.leader || peer != self.predecessor() {
            return false;
        }
        self.heard.insert(peer, now);
        if self.missed_by != Some(peer) {
            self.missed_by = Some(peer);
            self.misses = 0;
        }
        self.misses += 1;
        if self.misses < MISSES_TO_PASS_OVER {
            return false;
        }
        self.passed_over.insert(peer);
        self.misses = 0;
        self.missed_by = None;
        true
    }

    /// An ask of `peer` brought no chunk: its stream `broke`, or it
    /// answered without the chunk after the wait, for a chunk the leader
    /// had when it was asked (`due`). Returns whether `peer` is passed over
    /// now.
    ///
    /// Either counts as a miss only once `peer` has also been [`quiet`]
    /// for `wait`. A broken stream alone is no sign of a bad predecessor:
    /// under the burst of streams at the start of a rollout, libp2p-stream
    /// drops some at a healthy one, and passing it over then puts two
    /// followers on one upload for the whole blob (seen once in 88 runs of
    /// eight hosts: one host sent two copies and five finished 5 s late).
    /// A broken peer is asked again after [`BROKEN_RETRY`].
    ///
    /// [`quiet`]: Self::quiet
    pub(super) fn no_chunk(
        &mut self,
        peer: PeerId,
        now: Instant,
        broke: bool,
        due: bool,
        wait: Duration,
    ) -> bool {
        if broke {
            self.paused.insert(peer, now + BROKEN_RETRY);
        }
        (broke || due) && self.quiet(peer, now, wait) && self.missed(peer, now)
    }

    /// Whether `peer` may be asked now (no broken stream just before).
    pub(super) fn may_ask(&self, peer: PeerId, now: Instant) -> bool {
        self.paused.get(&peer).is_none_or(|until| now >= *until)
    }

    /// `peer` lied: never taken from again.
    pub(super) fn drop_peer(&mut self, peer: PeerId) {
        self.passed_over.insert(peer);
    }
}

/// The chunks to ask for next, lowest first: not held, not `asked`, and
/// fewer than `ahead` past the `known` chain states (the leader is about
/// to have those); at most `room`.
pub(super) fn next_wanted(
    have: &[bool],
    asked: impl Fn(u32) -> bool,
    known: u32,
    ahead: u32,
    room: usize,
) -> Vec<u32> {
    let end = (known.saturating_add(ahead) as usize).min(have.len());
    (0..end as u32)
        .filter(|i| !have[*i as usize] && !asked(*i))
        .take(room)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sorted_peers(n: usize) -> Vec<PeerId> {
        let mut peers: Vec<PeerId> = (0..n).map(|_| PeerId::random()).collect();
        peers.sort();
        peers
    }

    /// The chain of the last of `n` followers (sorted), the others known.
    fn last_of(n: usize) -> (RelayChain, Vec<PeerId>) {
        let peers = sorted_peers(n);
        let mut chain = RelayChain::new(PeerId::random(), peers[n - 1]);
        chain.set_members(peers.clone(), 32);
        (chain, peers)
    }

    #[test]
    fn followers_line_up_behind_the_leader_in_peer_id_order() {
        let leader = PeerId::random();
        let peers = sorted_peers(5);
        for (i, me) in peers.iter().enumerate() {
            let mut chain = RelayChain::new(leader, *me);
            chain.set_members(peers.iter().copied().chain([leader, *me]), 32);
            let expected = if i == 0 { leader } else { peers[i - 1] };
            assert_eq!(chain.predecessor(), expected, "follower {i}");
        }
    }

    #[test]
    fn before_the_followers_are_known_the_leader_is_the_predecessor() {
        let leader = PeerId::random();
        let chain = RelayChain::new(leader, PeerId::random());
        assert!(!chain.members_known());
        assert_eq!(chain.predecessor(), leader);
    }

    #[test]
    fn a_predecessor_that_misses_twice_is_passed_over_and_a_delivery_forgives() {
        let (mut chain, peers) = last_of(4);
        let leader = chain.leader();
        assert_eq!(chain.predecessor(), peers[2]);
        let now = Instant::now();

        assert!(!chain.missed(peers[2], now));
        chain.delivered(peers[2], now);
        assert!(
            !chain.missed(peers[2], now),
            "a delivery started the count over"
        );
        assert!(chain.missed(peers[2], now));
        assert_eq!(chain.predecessor(), peers[1]);

        // Misses of a peer that is no longer the predecessor do not count.
        assert!(!chain.missed(peers[2], now));
        assert!(!chain.missed(peers[2], now));
        assert_eq!(chain.predecessor(), peers[1]);

        chain.drop_peer(peers[1]);
        assert!(!chain.missed(peers[0], now));
        assert!(chain.missed(peers[0], now));
        assert_eq!(chain.predecessor(), leader);
        for _ in 0..5 {
            assert!(
                !chain.missed(leader, now),
                "the leader is never passed over"
            );
        }
        assert_eq!(chain.predecessor(), leader);
    }

    #[test]
    fn a_peer_is_quiet_after_a_wait_without_chunks() {
        let mut chain = RelayChain::new(PeerId::random(), PeerId::random());
        let peer = PeerId::random();
        let t0 = Instant::now();
        let wait = Duration::from_secs(1);
        assert!(
            chain.quiet(peer, t0, wait),
            "never asked: nothing to wait for"
        );
        chain.asking(peer, t0);
        assert!(!chain.quiet(peer, t0 + wait / 2, wait));
        chain.asking(peer, t0 + wait / 2);
        assert!(
            chain.quiet(peer, t0 + wait, wait),
            "asking again does not reset it"
        );
        chain.delivered(peer, t0 + wait);
        assert!(!chain.quiet(peer, t0 + wait * 3 / 2, wait));
        assert!(chain.quiet(peer, t0 + wait * 2, wait));
    }

    #[test]
    fn a_broken_stream_counts_only_from_a_predecessor_that_is_also_quiet() {
        let (mut chain, peers) = last_of(3);
        let pred = peers[1];
        let wait = Duration::from_secs(1);
        let t0 = Instant::now();
        chain.asking(pred, t0);

        // A burst drops two streams at once just after the first asks: the
        // predecessor keeps its place, and is asked again after a pause.
        for _ in 0..3 {
            assert!(!chain.no_chunk(pred, t0, true, false, wait));
        }
        assert_eq!(chain.predecessor(), pred);
        assert!(!chain.may_ask(pred, t0), "paused after a broken stream");
        assert!(chain.may_ask(pred, t0 + BROKEN_RETRY));
        assert!(chain.may_ask(pred, t0 + BROKEN_RETRY), "the pause is over");

        // A NotFound for a chunk the leader did not have yet never counts.
        assert!(!chain.no_chunk(pred, t0 + wait * 5, false, false, wait));

        // Streams that keep breaking while nothing comes: passed over once
        // the predecessor was quiet for the wait twice.
        let mut t = t0 + wait * 5;
        let mut passed = false;
        for _ in 0..2 {
            passed = chain.no_chunk(pred, t, true, false, wait);
            t += wait;
        }
        assert!(passed);
        assert_eq!(chain.predecessor(), peers[0]);
    }

    #[test]
    fn a_quiet_predecessor_missing_due_chunks_is_passed_over() {
        let (mut chain, peers) = last_of(2);
        let wait = Duration::from_secs(1);
        let t0 = Instant::now();
        chain.asking(peers[0], t0);
        assert!(
            !chain.no_chunk(peers[0], t0 + wait / 2, false, true, wait),
            "not quiet yet"
        );
        assert!(!chain.no_chunk(peers[0], t0 + wait, false, true, wait));
        chain.delivered(peers[0], t0 + wait);
        assert!(!chain.no_chunk(peers[0], t0 + wait * 2, false, true, wait));
        assert!(chain.no_chunk(peers[0], t0 + wait * 3, false, true, wait));
        assert_eq!(chain.predecessor(), chain.leader());
    }

    #[test]
    fn a_long_member_list_keeps_the_nearest_predecessors() {
        let leader = PeerId::random();
        let peers = sorted_peers(10);
        let me = peers[8];
        let mut chain = RelayChain::new(leader, me);
        chain.set_members(peers.clone(), 3);
        assert_eq!(chain.predecessor(), peers[7]);
        for p in [peers[7], peers[6], peers[5]] {
            chain.drop_peer(p);
        }
        assert_eq!(chain.predecessor(), leader, "only three were kept");
    }

    #[test]
    fn next_wanted_takes_the_lowest_missing_chunks_near_the_known_states() {
        let mut have = vec![false; 10];
        have[0] = true;
        have[2] = true;
        let asked = |i: u32| i == 1;
        assert_eq!(next_wanted(&have, asked, 3, 4, 8), vec![3, 4, 5, 6]);
        assert_eq!(next_wanted(&have, asked, 3, 4, 2), vec![3, 4]);
        assert_eq!(
            next_wanted(&have, asked, 9, 4, 8),
            vec![3, 4, 5, 6, 7, 8, 9]
        );
        assert_eq!(next_wanted(&have, |_| false, 0, 2, 8), vec![1]);
        assert!(next_wanted(&[], |_| false, 0, 4, 8).is_empty());
    }
}
