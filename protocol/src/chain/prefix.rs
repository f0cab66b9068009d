//! The front of a chunk map, as known to a node that is still hashing the
//! blob in order (it is fetching it from upstream): the states after the
//! chunks it has so far.
//!
//! A prefix proves nothing by itself — only the digest does, through the
//! last chunk — but it pins every chunk it covers: bytes that differ from
//! the ones its author hashed do not match it. Peers that relay chunks
//! under a prefix therefore cannot forge them; only the prefix's author
//! can, and that shows when the last chunk fails to finish to the digest
//! (see `docs/security.md`). A prefix with every state is a chunk map.

use super::{
    ChainState, ChunkCheckError, ChunkMap, MapError, decode_parts, encode_parts, judge_under,
};
use crate::chunk::ChunkPlan;
use crate::digest::{Algorithm, Digest};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChainPrefix {
    algorithm: Algorithm,
    plan: ChunkPlan,
    /// The states after chunks `0..states.len()`; at most `count − 1`.
    states: Vec<ChainState>,
}

/// A newer prefix from the same author that contradicts an older one.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the prefix contradicts one seen before (plan or state {0} differs)")]
pub struct PrefixContradiction(pub u32);

impl ChainPrefix {
    pub(super) fn from_parts(
        algorithm: Algorithm,
        plan: ChunkPlan,
        states: Vec<ChainState>,
    ) -> ChainPrefix {
        ChainPrefix {
            algorithm,
            plan,
            states,
        }
    }

    /// No states yet: only chunk 0 (if it is also the last) can be judged.
    pub fn empty(algorithm: Algorithm, plan: ChunkPlan) -> ChainPrefix {
        ChainPrefix::from_parts(algorithm, plan, Vec::new())
    }

    pub fn new(
        algorithm: Algorithm,
        plan: ChunkPlan,
        states: Vec<ChainState>,
    ) -> Result<ChainPrefix, MapError> {
        let most = plan.count().saturating_sub(1) as usize;
        if states.len() > most {
            return Err(MapError::WrongLength {
                count: plan.count(),
                expected: most,
                found: states.len(),
            });
        }
        if let Some(s) = states.iter().find(|s| s.algorithm() != algorithm) {
            return Err(MapError::AlgorithmMismatch {
                map: s.algorithm(),
                digest: algorithm,
            });
        }
        Ok(ChainPrefix::from_parts(algorithm, plan, states))
    }

    pub fn plan(&self) -> ChunkPlan {
        self.plan
    }

    pub fn algorithm(&self) -> Algorithm {
        self.algorithm
    }

    pub(super) fn states(&self) -> &[ChainState] {
        &self.states
    }

    /// How many states are known.
    pub fn known(&self) -> u32 {
        self.states.len() as u32
    }

    /// Every state is known: the prefix is the whole map.
    pub fn is_whole(&self) -> bool {
        self.states.len() + 1 >= self.plan.count() as usize
    }

    /// Whether chunk `index` can be judged under this prefix.
    pub fn covers(&self, index: u32) -> bool {
        if index + 1 == self.plan.count() {
            self.is_whole()
        } else {
            index < self.known()
        }
    }

    /// As [`ChunkMap::judge`], for the chunks the prefix covers;
    /// `ChunkCheckError::Unknown` for the others.
    pub fn judge(&self, digest: &Digest, index: u32, bytes: &[u8]) -> Result<(), ChunkCheckError> {
        if index + 1 == self.plan.count() && !self.is_whole() {
            return Err(ChunkCheckError::Unknown { index });
        }
        judge_under(
            self.algorithm,
            self.plan,
            &self.states,
            digest,
            index,
            bytes,
        )
    }

    /// Takes in a newer prefix of the same blob. It must agree with every
    /// state known here: an author that changes its story is lying.
    pub fn extend(&mut self, newer: &ChainPrefix) -> Result<(), PrefixContradiction> {
        self.merge(0, newer)
    }

    /// Takes in `newer`'s states as the states from `from` on. Those it
    /// shares with this prefix must agree; one that starts past the known
    /// states leaves a gap and teaches nothing (it is not a contradiction).
    fn merge(&mut self, from: u32, newer: &ChainPrefix) -> Result<(), PrefixContradiction> {
        if newer.plan != self.plan || newer.algorithm != self.algorithm {
            return Err(PrefixContradiction(0));
        }
        let from = from as usize;
        let Some(known_here) = self.states.get(from..) else {
            return Ok(());
        };
        if let Some(i) = known_here
            .iter()
            .zip(&newer.states)
            .position(|(a, b)| a != b)
        {
            return Err(PrefixContradiction((from + i) as u32));
        }
        let shared = known_here.len();
        if newer.states.len() > shared {
            self.states.extend_from_slice(&newer.states[shared..]);
        }
        Ok(())
    }

    /// Whether `map` has the same states as far as this prefix goes.
    pub fn agrees_with(&self, map: &ChunkMap) -> bool {
        map.plan == self.plan
            && map.algorithm == self.algorithm
            && map.states.iter().zip(&self.states).all(|(a, b)| a == b)
    }

    /// The chunk map, once every state is known.
    pub fn to_map(&self) -> Option<ChunkMap> {
        self.is_whole()
            .then(|| ChunkMap::new(self.algorithm, self.plan, self.states.clone()).ok())
            .flatten()
    }

    /// Same wire form as [`ChunkMap::encode`], with fewer states.
    pub fn encode(&self) -> Vec<u8> {
        encode_parts(self.algorithm, self.plan, &self.states)
    }

    pub fn decode(bytes: &[u8]) -> Result<ChainPrefix, MapError> {
        let (algorithm, plan, states) = decode_parts(bytes)?;
        ChainPrefix::new(algorithm, plan, states)
    }
}

/// The states of a prefix from state `from` on: what a follower that knows
/// the first `from` states asks for (`GetPrefixFrom`), so that polling a
/// leader costs a few states per answer instead of all of them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PrefixTail {
    from: u32,
    /// The states after chunks `from..from + n`, under the blob's plan.
    part: ChainPrefix,
}

impl PrefixTail {
    /// The index of the first state in the tail.
    pub fn from(&self) -> u32 {
        self.from
    }

    /// How many states the tail holds.
    pub fn len(&self) -> u32 {
        self.part.known()
    }

    pub fn is_empty(&self) -> bool {
        self.part.states.is_empty()
    }

    /// The states from `from` on of a chain whose known states are
    /// `states` (a prefix's, or a whole map's), clamped like
    /// [`ChainPrefix::tail`].
    pub(super) fn of(
        algorithm: Algorithm,
        plan: ChunkPlan,
        states: &[ChainState],
        from: u32,
    ) -> PrefixTail {
        let from = from.min(states.len() as u32);
        PrefixTail {
            from,
            part: ChainPrefix::from_parts(algorithm, plan, states[from as usize..].to_vec()),
        }
    }

    /// The tail as a whole prefix, when it starts at the first state.
    pub fn into_prefix(self) -> Option<ChainPrefix> {
        (self.from == 0).then_some(self.part)
    }

    /// `from:u32` then the states in a prefix's layout.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = self.from.to_be_bytes().to_vec();
        out.extend_from_slice(&self.part.encode());
        out
    }

    pub fn decode(bytes: &[u8]) -> Result<PrefixTail, MapError> {
        let (from, part) = bytes
            .split_at_checked(4)
            .ok_or(MapError::Malformed("shorter than its header"))?;
        let from = u32::from_be_bytes([from[0], from[1], from[2], from[3]]);
        let part = ChainPrefix::decode(part)?;
        // Never more states in all than a prefix has (`count − 1`).
        let most = u64::from(part.plan.count().saturating_sub(1));
        if u64::from(from) + u64::from(part.known()) > most {
            return Err(MapError::Malformed("tail reaches past the last state"));
        }
        Ok(PrefixTail { from, part })
    }
}

impl ChainPrefix {
    /// The states from `from` on; past the known states, an empty tail
    /// starting at the first unknown one.
    pub fn tail(&self, from: u32) -> PrefixTail {
        PrefixTail::of(self.algorithm, self.plan, &self.states, from)
    }

    /// Takes in a tail of a newer prefix of the same blob, as
    /// [`ChainPrefix::extend`] takes a whole one.
    pub fn extend_tail(&mut self, tail: &PrefixTail) -> Result<(), PrefixContradiction> {
        self.merge(tail.from, &tail.part)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::chain::ChunkMapBuilder;
    use proptest::prelude::*;

    /// The smallest chunk size allowed.
    const K: usize = 16 * 1024;

    fn blob(len: usize, seed: u8) -> Vec<u8> {
        (0..len)
            .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
            .collect()
    }

    /// The prefix after each whole chunk fed, and the final map and digest.
    fn prefixes(data: &[u8], chunk: usize) -> (Vec<ChainPrefix>, ChunkMap, Digest) {
        let plan = ChunkPlan::new(data.len() as u64, chunk as u32).expect("test data");
        let mut b = ChunkMapBuilder::new(Algorithm::Sha256, plan);
        let mut out = vec![b.prefix()];
        for piece in data.chunks(chunk) {
            b.update(piece);
            out.push(b.prefix());
        }
        let (map, digest) = b.finish().expect("test data");
        (out, map, digest)
    }

    #[test]
    fn grows_into_the_map() {
        let data = blob(5 * K + 100, 1);
        let (ps, map, digest) = prefixes(&data, K);
        assert_eq!(ps[0].known(), 0);
        assert!(!ps[0].covers(0));
        assert_eq!(ps[2].known(), 2);
        assert!(ps[2].covers(1) && !ps[2].covers(2) && !ps[2].covers(5));
        let last = ps.last().expect("test data");
        assert!(last.is_whole() && last.covers(5));
        assert_eq!(last.to_map().expect("test data"), map);
        assert!(ps[3].agrees_with(&map));
        assert!(ps[3].to_map().is_none());
        // Each chunk judges once its end state is known, not before; the
        // last once the state before it is (it finishes to the digest).
        for (i, c) in data.chunks(K).enumerate() {
            let i = i as u32;
            if i == 5 {
                assert_eq!(ps[i as usize].judge(&digest, i, c), Ok(()));
                assert_eq!(
                    ps[i as usize - 1].judge(&digest, i, c),
                    Err(ChunkCheckError::Unknown { index: i })
                );
                continue;
            }
            assert_eq!(
                ps[i as usize].judge(&digest, i, c),
                Err(ChunkCheckError::Unknown { index: i })
            );
            assert_eq!(ps[i as usize + 1].judge(&digest, i, c), Ok(()));
        }
    }

    #[test]
    fn relayed_bytes_that_differ_do_not_match() {
        let data = blob(4 * K, 2);
        let (ps, _, digest) = prefixes(&data, K);
        let mut bad = data[K..2 * K].to_vec();
        bad[7] ^= 1;
        assert!(matches!(
            ps[3].judge(&digest, 1, &bad),
            Err(ChunkCheckError::MapMismatch { index: 1, .. })
        ));
        // The last chunk, forged: fails against the digest.
        let mut last = data[3 * K..].to_vec();
        last[0] ^= 1;
        assert_eq!(
            ps[4].judge(&digest, 3, &last),
            Err(ChunkCheckError::DigestMismatch { index: 3 })
        );
    }

    #[test]
    fn extend_accepts_growth_and_refuses_a_changed_story() {
        let data = blob(4 * K, 3);
        let (ps, _, _) = prefixes(&data, K);
        let mut p = ps[1].clone();
        p.extend(&ps[3]).expect("test data");
        assert_eq!(p, ps[3]);
        // An older one is fine too: nothing is lost.
        p.extend(&ps[2]).expect("test data");
        assert_eq!(p, ps[3]);
        let (other, _, _) = prefixes(&blob(4 * K, 9), K);
        assert_eq!(p.extend(&other[2]), Err(PrefixContradiction(0)));
        let (small, _, _) = prefixes(&blob(2 * K, 3), K);
        assert!(p.extend(&small[1]).is_err());
    }

    #[test]
    fn a_builder_goes_on_from_a_prefix() {
        let data = blob(5 * K + 10, 6);
        let (ps, map, digest) = prefixes(&data, K);
        let mut b = ChunkMapBuilder::from_prefix(&ps[2]);
        assert_eq!(b.fed(), 2 * K as u64);
        b.update(&data[2 * K..]);
        assert_eq!(b.finish().expect("test data"), (map, digest));
    }

    #[test]
    fn one_chunk_blob_is_whole_from_the_start() {
        let data = blob(300, 4);
        let (ps, _, digest) = prefixes(&data, K);
        assert!(ps[0].is_whole());
        assert_eq!(ps[0].judge(&digest, 0, &data), Ok(()));
    }

    #[test]
    fn too_many_states_are_refused() {
        let data = blob(3 * K, 5);
        let (_, map, _) = prefixes(&data, K);
        let plan = ChunkPlan::new(K as u64, K as u32).expect("test data");
        assert!(ChainPrefix::new(Algorithm::Sha256, plan, map.states.clone()).is_err());
    }

    #[test]
    fn tails_extend_a_prefix_like_whole_prefixes_do() {
        let data = blob(8 * K, 3);
        let (ps, _, _) = prefixes(&data, K);
        let mut p = ps[2].clone();
        // From where this one stops: the new states are added.
        let tail = ps[5].tail(2);
        assert_eq!((tail.from(), tail.len()), (2, 3));
        p.extend_tail(&tail).expect("test data");
        assert_eq!(p, ps[5]);
        // Overlapping: the shared states are checked, the rest added.
        p.extend_tail(&ps[7].tail(4)).expect("test data");
        assert_eq!(p, ps[7]);
        // Older, or nothing new: nothing is lost.
        p.extend_tail(&ps[3].tail(1)).expect("test data");
        p.extend_tail(&ps[7].tail(7)).expect("test data");
        assert!(ps[7].tail(7).is_empty());
        assert_eq!(p, ps[7]);
        // Past the known states: a gap, ignored rather than trusted.
        let mut q = ps[1].clone();
        q.extend_tail(&ps[6].tail(3)).expect("test data");
        assert_eq!(q, ps[1]);
    }

    #[test]
    fn a_maps_tail_is_its_whole_prefixs_tail() {
        let data = blob(5 * K + 3, 2);
        let (_, map, _) = prefixes(&data, K);
        for from in 0..8 {
            assert_eq!(map.tail(from), map.to_prefix().tail(from), "from {from}");
        }
    }

    #[test]
    fn a_tail_that_changes_the_story_is_a_contradiction() {
        let data = blob(6 * K, 3);
        let (ps, _, _) = prefixes(&data, K);
        let mut changed = data.clone();
        changed[3 * K + 5] ^= 1;
        let (other, _, _) = prefixes(&changed, K);
        let mut p = ps[5].clone();
        // State 3 (after chunk 3) is the first that differs.
        assert_eq!(
            p.extend_tail(&other[5].tail(2)),
            Err(PrefixContradiction(3))
        );
        assert_eq!(p, ps[5], "nothing taken from a contradicting tail");
        let (smaller, _, _) = prefixes(&blob(2 * K, 3), K);
        assert!(p.extend_tail(&smaller[1].tail(0)).is_err());
    }

    #[test]
    fn a_tail_reaching_past_the_last_state_is_refused() {
        let data = blob(4 * K, 8);
        let (ps, _, _) = prefixes(&data, K);
        let whole = ps.last().expect("test data");
        assert_eq!(whole.known(), 3);
        let tail = whole.tail(1);
        assert_eq!(PrefixTail::decode(&tail.encode()).as_ref(), Ok(&tail));
        // The same two states claimed to start at state 2 end past state 3.
        let mut forged = tail.encode();
        forged[..4].copy_from_slice(&2u32.to_be_bytes());
        assert!(PrefixTail::decode(&forged).is_err());
        assert!(PrefixTail::decode(&[0, 0, 1]).is_err());
    }

    proptest! {
        #[test]
        fn tails_round_trip(len in 0usize..6 * K, cut in 0usize..8, from in 0u32..8, seed: u8) {
            let data = blob(len, seed);
            let (ps, _, _) = prefixes(&data, K);
            let p = &ps[cut.min(ps.len() - 1)];
            let tail = p.tail(from.min(p.known()));
            prop_assert_eq!(&PrefixTail::decode(&tail.encode()).expect("test data"), &tail);
        }

        #[test]
        fn tail_decode_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
            let _ = PrefixTail::decode(&bytes);
        }

        #[test]
        fn encoding_round_trips(len in 0usize..6 * K, cut in 0usize..8, seed: u8) {
            let data = blob(len, seed);
            let (ps, _, _) = prefixes(&data, K);
            let p = &ps[cut.min(ps.len() - 1)];
            prop_assert_eq!(&ChainPrefix::decode(&p.encode()).expect("test data"), p);
        }

        #[test]
        fn decode_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
            let _ = ChainPrefix::decode(&bytes);
        }
    }
}
