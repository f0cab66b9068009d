//! A node's share of a blob that several nodes fetch from upstream at once,
//! each a disjoint range of chunks (a *split* fetch, `node/src/transfer/split.rs`).
//!
//! Chunks of a later range cannot be checked against the SHA-256 chain
//! until every chunk before them is in, so each fetcher vouches for the
//! chunks it took from upstream with the plain SHA-256 of each. A node that
//! gets such a chunk from anyone else checks it against the fetcher's hash:
//! a node that only relays cannot forge a byte. The fetcher itself can; its
//! bytes are proven when the whole blob hashes to its digest
//! (`docs/security.md`).

use std::ops::Range;

use sha2::{Digest as _, Sha256};

use crate::chunk::{ChunkPlan, MAX_CHUNKS};

/// Most chunk ranges one node says it fetches.
pub const MAX_OWNED_RANGES: usize = 256;

/// The SHA-256 of one chunk's bytes.
pub type ChunkHash = [u8; 32];

/// What a node in a split fetch holds and vouches for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SplitShare {
    /// The blob's plan, as the upstream gave its size.
    pub plan: ChunkPlan,
    /// One flag per chunk: held (fetched, or checked against its fetcher's
    /// hash), so it may be asked for.
    pub have: Vec<bool>,
    /// The chunk ranges this node fetches from upstream, sorted, disjoint.
    pub owned: Vec<Range<u32>>,
    /// For chunks of `owned` already fetched: index and hash, by index.
    pub vouched: Vec<(u32, ChunkHash)>,
}

/// Why a share from the wire is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ShareError {
    #[error("the share is cut short")]
    Truncated,
    #[error("the share's size and chunk size make no chunk plan")]
    BadPlan,
    #[error("a list in the share is longer than its limit")]
    TooLong,
    #[error("the share's presence flags do not match its chunk count")]
    HaveLength,
    #[error("the share owns too many ranges, or ranges out of order or past the end")]
    BadRanges,
    #[error("the share vouches for chunks it does not own, twice, or out of order")]
    BadVouch,
}

/// The hash a chunk is vouched for with.
pub fn chunk_hash(bytes: &[u8]) -> ChunkHash {
    Sha256::digest(bytes).into()
}

impl SplitShare {
    /// An empty share of a blob of `plan`: holds nothing, owns nothing.
    pub fn new(plan: ChunkPlan) -> SplitShare {
        SplitShare {
            plan,
            have: vec![false; plan.count() as usize],
            owned: Vec::new(),
            vouched: Vec::new(),
        }
    }

    /// Whether this node fetches chunk `index` from upstream.
    pub fn owns(&self, index: u32) -> bool {
        self.owned.iter().any(|r| r.contains(&index))
    }

    /// The hash this node vouches for chunk `index` with, if it does.
    pub fn vouch_for(&self, index: u32) -> Option<ChunkHash> {
        self.vouched
            .binary_search_by_key(&index, |(i, _)| *i)
            .ok()
            .map(|at| self.vouched[at].1)
    }

    /// Records that chunk `index`, which this node owns, was fetched with
    /// `hash`. Chunks not owned are not vouched for.
    pub fn vouch(&mut self, index: u32, hash: ChunkHash) {
        if !self.owns(index) {
            return;
        }
        match self.vouched.binary_search_by_key(&index, |(i, _)| *i) {
            Ok(at) => self.vouched[at].1 = hash,
            Err(at) => self.vouched.insert(at, (index, hash)),
        }
    }

    /// Adds `range` to the chunks this node fetches (ranges kept sorted and
    /// merged).
    pub fn own(&mut self, range: Range<u32>) {
        let count = self.plan.count();
        let range = range.start.min(count)..range.end.min(count);
        if range.is_empty() {
            return;
        }
        let mut flags: Vec<bool> = (0..count).map(|i| self.owns(i)).collect();
        for f in &mut flags[range.start as usize..range.end as usize] {
            *f = true;
        }
        self.owned = flag_runs(&flags);
    }

    /// Checks what a peer sent: every list within its limits and in order,
    /// so the rest of the node can index with it.
    pub fn validate(&self) -> Result<(), ShareError> {
        let count = self.plan.count();
        if self.have.len() != count as usize {
            return Err(ShareError::HaveLength);
        }
        if self.owned.len() > MAX_OWNED_RANGES {
            return Err(ShareError::BadRanges);
        }
        let mut end = 0;
        for r in &self.owned {
            if r.start < end || r.start >= r.end || r.end > count {
                return Err(ShareError::BadRanges);
            }
            end = r.end;
        }
        let mut next = 0;
        for (i, _) in &self.vouched {
            if *i < next || !self.owns(*i) {
                return Err(ShareError::BadVouch);
            }
            next = i + 1;
        }
        Ok(())
    }

    /// The most vouched entries a share can carry.
    pub const MAX_VOUCHED: usize = MAX_CHUNKS as usize;

    /// Wire form: size, chunk size, presence bits, owned ranges, vouched
    /// hashes, each list preceded by its length.
    pub fn encode(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.plan.size().to_be_bytes());
        out.extend_from_slice(&self.plan.chunk_size().to_be_bytes());
        let mut bits = vec![0u8; self.have.len().div_ceil(8)];
        for (i, on) in self.have.iter().enumerate() {
            if *on {
                bits[i / 8] |= 0x80 >> (i % 8);
            }
        }
        out.extend_from_slice(&(bits.len() as u32).to_be_bytes());
        out.extend_from_slice(&bits);
        out.extend_from_slice(&(self.owned.len() as u32).to_be_bytes());
        for r in &self.owned {
            out.extend_from_slice(&r.start.to_be_bytes());
            out.extend_from_slice(&r.end.to_be_bytes());
        }
        out.extend_from_slice(&(self.vouched.len() as u32).to_be_bytes());
        for (i, h) in &self.vouched {
            out.extend_from_slice(&i.to_be_bytes());
            out.extend_from_slice(h);
        }
    }

    /// Reads a share from the front of `bytes`; returns it and the bytes
    /// used. Every count is checked against its limit before anything is
    /// allocated, and the result is [validated](Self::validate).
    pub fn decode(bytes: &[u8]) -> Result<(SplitShare, usize), ShareError> {
        let mut r = Cursor { bytes, at: 0 };
        let plan = ChunkPlan::new(r.u64()?, r.u32()?).map_err(|_| ShareError::BadPlan)?;
        let n = r.count(plan.count().div_ceil(8) as usize)?;
        let bits = r.take(n)?;
        let have = (0..plan.count() as usize)
            .map(|i| bits.get(i / 8).is_some_and(|b| b & (0x80 >> (i % 8)) != 0))
            .collect();
        let n = r.count(MAX_OWNED_RANGES)?;
        let mut owned = Vec::with_capacity(n);
        for _ in 0..n {
            owned.push(r.u32()?..r.u32()?);
        }
        let n = r.count(plan.count() as usize)?;
        let mut vouched = Vec::with_capacity(n);
        for _ in 0..n {
            let index = r.u32()?;
            let mut hash = [0u8; 32];
            hash.copy_from_slice(r.take(32)?);
            vouched.push((index, hash));
        }
        let at = r.at;
        let share = SplitShare {
            plan,
            have,
            owned,
            vouched,
        };
        share.validate()?;
        Ok((share, at))
    }
}

/// Reads big-endian fields, never past the end.
struct Cursor<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Cursor<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], ShareError> {
        let s = self
            .bytes
            .get(self.at..self.at.saturating_add(n))
            .ok_or(ShareError::Truncated)?;
        self.at += n;
        Ok(s)
    }
    fn u32(&mut self) -> Result<u32, ShareError> {
        let b = self.take(4)?;
        Ok(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }
    fn u64(&mut self) -> Result<u64, ShareError> {
        Ok(u64::from(self.u32()?) << 32 | u64::from(self.u32()?))
    }
    /// A list's length, at most `limit`.
    fn count(&mut self, limit: usize) -> Result<usize, ShareError> {
        let n = self.u32()? as usize;
        if n > limit {
            return Err(ShareError::TooLong);
        }
        Ok(n)
    }
}

/// Maximal runs of set flags, as index ranges.
pub fn flag_runs(flags: &[bool]) -> Vec<Range<u32>> {
    let mut out = Vec::new();
    let mut start = None;
    for (i, f) in flags.iter().enumerate() {
        match (f, start) {
            (true, None) => start = Some(i as u32),
            (false, Some(s)) => {
                out.push(s..i as u32);
                start = None;
            }
            _ => {}
        }
    }
    if let Some(s) = start {
        out.push(s..flags.len() as u32);
    }
    out
}

/// The ranges `k` fetchers split a blob of `count` chunks into, in order,
/// as equal as whole chunks allow.
pub fn split_ranges(count: u32, k: u32) -> Vec<Range<u32>> {
    let k = k.clamp(1, count.max(1));
    (0..k)
        .map(|j| {
            let at = |j: u32| (u64::from(count) * u64::from(j) / u64::from(k)) as u32;
            at(j)..at(j + 1)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn plan(chunks: u32) -> ChunkPlan {
        ChunkPlan::new(u64::from(chunks) * 16 * 1024, 16 * 1024).expect("plan")
    }

    #[test]
    fn owning_merges_ranges_and_vouching_needs_ownership() {
        let mut s = SplitShare::new(plan(10));
        s.own(4..6);
        s.own(0..2);
        s.own(6..8);
        assert_eq!(s.owned, vec![0..2, 4..8]);
        s.vouch(5, [5; 32]);
        s.vouch(1, [1; 32]);
        s.vouch(3, [3; 32]);
        assert_eq!(s.vouched, vec![(1, [1; 32]), (5, [5; 32])]);
        assert_eq!(s.vouch_for(5), Some([5; 32]));
        assert_eq!(s.vouch_for(3), None);
        s.own(8..99);
        assert_eq!(s.owned, vec![0..2, 4..10]);
        assert_eq!(s.validate(), Ok(()));
    }

    #[test]
    fn malformed_shares_are_refused() {
        let mut s = SplitShare::new(plan(4));
        s.have.pop();
        assert_eq!(s.validate(), Err(ShareError::HaveLength));
        let mut s = SplitShare::new(plan(4));
        s.owned = vec![2..3, 1..2];
        assert_eq!(s.validate(), Err(ShareError::BadRanges));
        s.owned = std::iter::once(3..5).collect();
        assert_eq!(s.validate(), Err(ShareError::BadRanges));
        s.owned = std::iter::once(0..2).collect();
        s.vouched = vec![(2, [0; 32])];
        assert_eq!(s.validate(), Err(ShareError::BadVouch));
        s.vouched = vec![(1, [0; 32]), (1, [0; 32])];
        assert_eq!(s.validate(), Err(ShareError::BadVouch));
    }

    #[test]
    fn the_hash_is_sha256_of_the_chunk() {
        assert_eq!(
            hex::encode(chunk_hash(b"abc")),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }

    #[test]
    fn shares_round_trip_and_cut_ones_are_refused() {
        let mut s = SplitShare::new(plan(20));
        s.own(3..9);
        s.own(12..13);
        s.vouch(4, [4; 32]);
        s.vouch(12, [12; 32]);
        s.have[4] = true;
        s.have[19] = true;
        let mut out = Vec::new();
        s.encode(&mut out);
        assert_eq!(SplitShare::decode(&out), Ok((s.clone(), out.len())));
        for cut in 0..out.len() {
            assert!(SplitShare::decode(&out[..cut]).is_err(), "cut at {cut}");
        }
    }

    proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
            let _ = SplitShare::decode(&bytes);
        }


        #[test]
        fn split_ranges_cover_every_chunk_once(count in 0u32..5000, k in 0u32..40) {
            let ranges = split_ranges(count, k);
            let mut next = 0;
            for r in &ranges {
                prop_assert_eq!(r.start, next);
                prop_assert!(r.end >= r.start);
                next = r.end;
            }
            prop_assert_eq!(next, count);
            let lens: Vec<u32> = ranges.iter().map(|r| r.end - r.start).collect();
            let (min, max) = (lens.iter().min(), lens.iter().max());
            prop_assert!(max.zip(min).is_none_or(|(a, b)| a - b <= 1));
        }
    }
}
