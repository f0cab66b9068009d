//! Chunk maps that no peer has to be trusted for.
//!
//! SHA-2 is a chain: the hash state after a block depends only on the state
//! before it and the block. With chunks that end on block boundaries, a
//! *chunk map* lists the state after each chunk but the last. Given the map:
//!
//! - chunk *i* is **consistent** when compressing its bytes from state *i−1*
//!   (the initial state for chunk 0) gives state *i*;
//! - the last chunk is **proven** when finishing the hash from state *n−2*
//!   over its bytes (with the padding for the blob's size) gives the OCI
//!   digest — the one fact that is trusted; this also proves state *n−2*;
//! - a consistent chunk whose end state is proven is itself proven, and so
//!   is its start state. Proof runs from the last chunk down to the first.
//!
//! Forging a proven state, or bytes that lead to one, means finding a second
//! preimage of the SHA-2 compression function. A forged map entry or forged
//! chunk bytes therefore never become proven: they show up as a chunk that
//! does not check. [`ChainVerifier`] is the state machine; what to do about a
//! failure (refetch from another peer, ban whom) is the scheduler's choice,
//! helped by [`ChunkCheckError::MapMismatch::end_proven`].

use std::ops::Range;

use sha2::block_api::{compress256, compress512};

use crate::chunk::{ChunkError, ChunkPlan, MAX_CHUNKS};
use crate::digest::{Algorithm, Digest};

const SHA256_IV: [u32; 8] = [
    0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a, 0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19,
];
const SHA512_IV: [u64; 8] = [
    0x6a09e667f3bcc908,
    0xbb67ae8584caa73b,
    0x3c6ef372fe94f82b,
    0xa54ff53a5f1d36f1,
    0x510e527fade682d1,
    0x9b05688c2b3e6c1f,
    0x1f83d9abfb41bd6b,
    0x5be0cd19137e2179,
];

/// A SHA-2 state between two blocks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChainState {
    Sha256([u32; 8]),
    Sha512([u64; 8]),
}

impl ChainState {
    pub fn initial(algorithm: Algorithm) -> ChainState {
        match algorithm {
            Algorithm::Sha256 => ChainState::Sha256(SHA256_IV),
            Algorithm::Sha512 => ChainState::Sha512(SHA512_IV),
        }
    }

    pub fn algorithm(&self) -> Algorithm {
        match self {
            ChainState::Sha256(_) => Algorithm::Sha256,
            ChainState::Sha512(_) => Algorithm::Sha512,
        }
    }

    fn block_len(&self) -> usize {
        match self {
            ChainState::Sha256(_) => 64,
            ChainState::Sha512(_) => 128,
        }
    }

    /// Absorbs whole blocks; `data.len()` must be a multiple of the block size.
    fn absorb(&mut self, data: &[u8]) {
        match self {
            ChainState::Sha256(s) => {
                let (blocks, rest) = data.as_chunks::<64>();
                debug_assert!(rest.is_empty());
                compress256(s, blocks);
            }
            ChainState::Sha512(s) => {
                let (blocks, rest) = data.as_chunks::<128>();
                debug_assert!(rest.is_empty());
                compress512(s, blocks);
            }
        }
    }

    /// Finishes the hash over `tail` (the bytes after the last absorbed
    /// block) for a message of `total_len` bytes.
    fn finish(mut self, tail: &[u8], total_len: u64) -> Digest {
        let block = self.block_len();
        let whole = tail.len() / block * block;
        self.absorb(&tail[..whole]);
        let rest = &tail[whole..];
        // Padding: 0x80, zeros, then the bit length (64 bits for SHA-256,
        // 128 for SHA-512), filling one or two blocks.
        let len_field = if block == 64 { 8 } else { 16 };
        let mut pad = Vec::with_capacity(2 * block);
        pad.extend_from_slice(rest);
        pad.push(0x80);
        while (pad.len() + len_field) % block != 0 {
            pad.push(0);
        }
        let bits = u128::from(total_len) * 8;
        pad.extend_from_slice(&bits.to_be_bytes()[16 - len_field..]);
        self.absorb(&pad);
        let bytes = self.to_bytes();
        // to_bytes has exactly the algorithm's hash length.
        Digest::from_hash(self.algorithm(), &bytes)
            .unwrap_or_else(|_| unreachable!("state length matches its algorithm"))
    }

    pub fn to_bytes(&self) -> Vec<u8> {
        match self {
            ChainState::Sha256(s) => s.iter().flat_map(|w| w.to_be_bytes()).collect(),
            ChainState::Sha512(s) => s.iter().flat_map(|w| w.to_be_bytes()).collect(),
        }
    }

    pub fn from_bytes(algorithm: Algorithm, bytes: &[u8]) -> Option<ChainState> {
        match algorithm {
            Algorithm::Sha256 => {
                let (words, rest) = bytes.as_chunks::<4>();
                (words.len() == 8 && rest.is_empty()).then(|| {
                    let mut s = [0u32; 8];
                    for (w, b) in s.iter_mut().zip(words) {
                        *w = u32::from_be_bytes(*b);
                    }
                    ChainState::Sha256(s)
                })
            }
            Algorithm::Sha512 => {
                let (words, rest) = bytes.as_chunks::<8>();
                (words.len() == 8 && rest.is_empty()).then(|| {
                    let mut s = [0u64; 8];
                    for (w, b) in s.iter_mut().zip(words) {
                        *w = u64::from_be_bytes(*b);
                    }
                    ChainState::Sha512(s)
                })
            }
        }
    }
}

/// The hash states after each chunk but the last: `count − 1` of them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChunkMap {
    algorithm: Algorithm,
    plan: ChunkPlan,
    states: Vec<ChainState>,
}

/// A chunk map that cannot describe the blob it is claimed for.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MapError {
    #[error("chunk map is for {map}, the blob's digest is {digest}")]
    AlgorithmMismatch { map: Algorithm, digest: Algorithm },
    #[error("chunk map has {found} states, a blob of {count} chunks needs {expected}")]
    WrongLength {
        count: u32,
        expected: usize,
        found: usize,
    },
    #[error("chunk map encoding is malformed: {0}")]
    Malformed(&'static str),
    #[error(transparent)]
    Plan(#[from] ChunkError),
}

impl ChunkMap {
    pub fn new(
        algorithm: Algorithm,
        plan: ChunkPlan,
        states: Vec<ChainState>,
    ) -> Result<ChunkMap, MapError> {
        let expected = plan.count().saturating_sub(1) as usize;
        if states.len() != expected {
            return Err(MapError::WrongLength {
                count: plan.count(),
                expected,
                found: states.len(),
            });
        }
        if let Some(s) = states.iter().find(|s| s.algorithm() != algorithm) {
            return Err(MapError::AlgorithmMismatch {
                map: s.algorithm(),
                digest: algorithm,
            });
        }
        Ok(ChunkMap {
            algorithm,
            plan,
            states,
        })
    }

    pub fn plan(&self) -> ChunkPlan {
        self.plan
    }

    pub fn algorithm(&self) -> Algorithm {
        self.algorithm
    }

    /// The map as a prefix with every state.
    pub fn to_prefix(&self) -> ChainPrefix {
        ChainPrefix::from_parts(self.algorithm, self.plan, self.states.clone())
    }

    /// `self.to_prefix().tail(from)`, without copying the states before
    /// `from`.
    pub fn tail(&self, from: u32) -> PrefixTail {
        PrefixTail::of(self.algorithm, self.plan, &self.states, from)
    }

    /// Indexes of the states where two maps of the same plan disagree
    /// (all of them when the plans differ).
    pub fn differing_states(&self, other: &ChunkMap) -> Vec<u32> {
        if self.plan != other.plan || self.algorithm != other.algorithm {
            return (0..self.states.len() as u32).collect();
        }
        (0..self.states.len() as u32)
            .filter(|&i| self.states[i as usize] != other.states[i as usize])
            .collect()
    }

    /// Wire form: algorithm (1 byte: 1 = sha256, 2 = sha512), chunk size
    /// (u32 BE), blob size (u64 BE), then the states, big-endian words.
    pub fn encode(&self) -> Vec<u8> {
        encode_parts(self.algorithm, self.plan, &self.states)
    }

    /// Largest encoded map accepted: the most chunks at the widest state.
    pub const MAX_ENCODED_LEN: usize = 13 + MAX_CHUNKS as usize * 64;

    pub fn decode(bytes: &[u8]) -> Result<ChunkMap, MapError> {
        let (algorithm, plan, states) = decode_parts(bytes)?;
        ChunkMap::new(algorithm, plan, states)
    }
}

/// Algorithm, plan and states of an encoded map or prefix (same layout).
fn decode_parts(bytes: &[u8]) -> Result<(Algorithm, ChunkPlan, Vec<ChainState>), MapError> {
    if bytes.len() > ChunkMap::MAX_ENCODED_LEN {
        return Err(MapError::Malformed("longer than any valid map"));
    }
    let (header, body) = bytes
        .split_at_checked(13)
        .ok_or(MapError::Malformed("shorter than its header"))?;
    let algorithm = match header[0] {
        1 => Algorithm::Sha256,
        2 => Algorithm::Sha512,
        _ => return Err(MapError::Malformed("unknown algorithm")),
    };
    let chunk_size = u32::from_be_bytes([header[1], header[2], header[3], header[4]]);
    let mut size_bytes = [0u8; 8];
    size_bytes.copy_from_slice(&header[5..13]);
    let plan = ChunkPlan::new(u64::from_be_bytes(size_bytes), chunk_size)?;
    let width = algorithm.hash_len();
    if body.len() % width != 0 {
        return Err(MapError::Malformed("states are not whole"));
    }
    let states = body
        .chunks(width)
        .map(|b| ChainState::from_bytes(algorithm, b).ok_or(MapError::Malformed("bad state")))
        .collect::<Result<Vec<_>, _>>()?;
    Ok((algorithm, plan, states))
}

/// Wire form of a map or prefix; see [`ChunkMap::encode`].
fn encode_parts(algorithm: Algorithm, plan: ChunkPlan, states: &[ChainState]) -> Vec<u8> {
    let mut out = Vec::with_capacity(13 + states.len() * algorithm.hash_len());
    out.push(match algorithm {
        Algorithm::Sha256 => 1,
        Algorithm::Sha512 => 2,
    });
    out.extend_from_slice(&plan.chunk_size().to_be_bytes());
    out.extend_from_slice(&plan.size().to_be_bytes());
    for s in states {
        out.extend_from_slice(&s.to_bytes());
    }
    out
}

/// Builds a chunk map (and the digest) from a blob's bytes fed in pieces of
/// any size, as a node does while it writes a blob.
#[derive(Debug, Clone)]
pub struct ChunkMapBuilder {
    plan: ChunkPlan,
    state: ChainState,
    states: Vec<ChainState>,
    pending: Vec<u8>,
    absorbed: u64,
}

impl ChunkMapBuilder {
    pub fn new(algorithm: Algorithm, plan: ChunkPlan) -> ChunkMapBuilder {
        ChunkMapBuilder {
            plan,
            state: ChainState::initial(algorithm),
            states: Vec::with_capacity(plan.count().saturating_sub(1) as usize),
            pending: Vec::new(),
            absorbed: 0,
        }
    }

    /// Goes on from `prefix`, as if the chunks it covers had been fed.
    pub fn from_prefix(prefix: &ChainPrefix) -> ChunkMapBuilder {
        let states = prefix.states().to_vec();
        let state = states
            .last()
            .copied()
            .unwrap_or_else(|| ChainState::initial(prefix.algorithm()));
        let plan = prefix.plan();
        ChunkMapBuilder {
            plan,
            state,
            absorbed: states.len() as u64 * u64::from(plan.chunk_size()),
            states,
            pending: Vec::new(),
        }
    }

    pub fn plan(&self) -> ChunkPlan {
        self.plan
    }

    /// Bytes fed so far.
    pub fn fed(&self) -> u64 {
        self.absorbed + self.pending.len() as u64
    }

    pub fn update(&mut self, mut data: &[u8]) {
        let block = self.state.block_len();
        let chunk = u64::from(self.plan.chunk_size());
        while !data.is_empty() {
            if !self.pending.is_empty() || data.len() < block {
                let take = (block - self.pending.len()).min(data.len());
                self.pending.extend_from_slice(&data[..take]);
                data = &data[take..];
                if self.pending.len() == block {
                    let full = std::mem::take(&mut self.pending);
                    self.absorb(&full, chunk);
                }
                continue;
            }
            // Whole blocks, but never past the next chunk boundary.
            let to_boundary = (chunk - self.absorbed % chunk) as usize;
            let n = (data.len() / block * block).min(to_boundary);
            let (now, rest) = data.split_at(n);
            self.absorb(now, chunk);
            data = rest;
        }
    }

    fn absorb(&mut self, blocks: &[u8], chunk: u64) {
        self.state.absorb(blocks);
        self.absorbed += blocks.len() as u64;
        // The state after the last chunk is never recorded: the bytes of the
        // last chunk are finished, not just absorbed.
        if self.absorbed.is_multiple_of(chunk) && self.absorbed < self.plan.size() {
            self.states.push(self.state);
        }
    }

    /// The states of the whole chunks fed so far.
    pub fn prefix(&self) -> ChainPrefix {
        ChainPrefix::from_parts(self.state.algorithm(), self.plan, self.states.clone())
    }

    /// The map and the digest of all bytes fed. `MapError::WrongLength`
    /// when the bytes fed were not the plan's size.
    pub fn finish(self) -> Result<(ChunkMap, Digest), MapError> {
        let total = self.absorbed + self.pending.len() as u64;
        if total != self.plan.size() {
            return Err(MapError::Malformed(
                "bytes fed differ from the planned size",
            ));
        }
        let algorithm = self.state.algorithm();
        let digest = self.state.finish(&self.pending, total);
        Ok((ChunkMap::new(algorithm, self.plan, self.states)?, digest))
    }
}

/// A chunk that does not check.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ChunkCheckError {
    #[error("chunk {index} has {found} bytes, the plan says {expected}")]
    WrongLength {
        index: u32,
        expected: u32,
        found: usize,
    },
    /// The bytes do not lead from the map's state before the chunk to its
    /// state after it. When `end_proven`, the state after is known true, so
    /// either the bytes or the map's state *before* are false.
    #[error("chunk {index} does not match the chunk map")]
    MapMismatch { index: u32, end_proven: bool },
    /// The last chunk does not finish to the blob's digest: its bytes or the
    /// map's state before it are false.
    #[error("last chunk {index} does not finish to the blob digest")]
    DigestMismatch { index: u32 },
    /// The states around the chunk are not known yet (a prefix).
    #[error("chunk {index} is past the states known so far")]
    Unknown { index: u32 },
    #[error(transparent)]
    Plan(#[from] ChunkError),
}

/// What a chunk that checks has established.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChunkVerdict {
    /// Consistent with the map; proven once the chunks after it are.
    Consistent,
    /// These chunks (this one among them) are now proven.
    Proven(Range<u32>),
}

/// Verifies the chunks of one blob against a chunk map anchored in the
/// blob's digest. Pure: feed it chunks in any order.
#[derive(Debug, Clone)]
pub struct ChainVerifier {
    digest: Digest,
    map: ChunkMap,
    consistent: Vec<bool>,
    /// Chunks `proven_from..count` are proven.
    proven_from: u32,
}

impl ChainVerifier {
    pub fn new(digest: Digest, map: ChunkMap) -> Result<ChainVerifier, MapError> {
        if map.algorithm != digest.algorithm() {
            return Err(MapError::AlgorithmMismatch {
                map: map.algorithm,
                digest: digest.algorithm(),
            });
        }
        let count = map.plan.count();
        if count == 0 && ChainState::initial(digest.algorithm()).finish(&[], 0) != digest {
            return Err(MapError::Malformed(
                "an empty blob must have the empty digest",
            ));
        }
        Ok(ChainVerifier {
            digest,
            consistent: vec![false; count as usize],
            proven_from: count,
            map,
        })
    }

    pub fn plan(&self) -> ChunkPlan {
        self.map.plan
    }

    pub fn is_proven(&self, index: u32) -> bool {
        index >= self.proven_from && index < self.map.plan.count()
    }

    /// Every chunk is proven: the whole blob has its digest.
    pub fn complete(&self) -> bool {
        self.proven_from == 0
    }

    /// Checks chunk `index` and records it.
    pub fn check(&mut self, index: u32, bytes: &[u8]) -> Result<ChunkVerdict, ChunkCheckError> {
        match self.map.judge(&self.digest, index, bytes) {
            Ok(()) => Ok(self.accept(index)),
            Err(ChunkCheckError::MapMismatch { index, .. }) => Err(ChunkCheckError::MapMismatch {
                index,
                end_proven: self.is_proven(index + 1),
            }),
            Err(e) => Err(e),
        }
    }

    /// Records chunk `index` as consistent: call only after
    /// [`ChunkMap::judge`] passed it against this verifier's map and digest
    /// (judging needs no `&mut`, so it can run outside a lock).
    pub fn accept(&mut self, index: u32) -> ChunkVerdict {
        let Some(flag) = self.consistent.get_mut(index as usize) else {
            return ChunkVerdict::Consistent;
        };
        *flag = true;
        let before = self.proven_from;
        // Proof runs down from the end through consistent chunks.
        // (The last chunk is consistent only if it finished to the digest.)
        while self.proven_from > 0 && self.consistent[self.proven_from as usize - 1] {
            self.proven_from -= 1;
        }
        if self.proven_from < before {
            ChunkVerdict::Proven(self.proven_from..before)
        } else {
            ChunkVerdict::Consistent
        }
    }
}

impl ChunkMap {
    /// Whether `bytes` are chunk `index` under this map, for a blob whose
    /// digest is `digest`: they lead from the state before the chunk to the
    /// state after it (the last chunk: they finish to the digest). Pure.
    /// A `MapMismatch` from here never claims `end_proven`.
    pub fn judge(&self, digest: &Digest, index: u32, bytes: &[u8]) -> Result<(), ChunkCheckError> {
        judge_under(
            self.algorithm,
            self.plan,
            &self.states,
            digest,
            index,
            bytes,
        )
    }
}

/// [`ChunkMap::judge`] with `states` possibly only the first of the map's
/// (a prefix): `index` must be a chunk whose end state is among them, or
/// the last chunk when all are known.
fn judge_under(
    algorithm: Algorithm,
    plan: ChunkPlan,
    states: &[ChainState],
    digest: &Digest,
    index: u32,
    bytes: &[u8],
) -> Result<(), ChunkCheckError> {
    let expected = plan.len_of(index)?;
    if bytes.len() != expected as usize {
        return Err(ChunkCheckError::WrongLength {
            index,
            expected,
            found: bytes.len(),
        });
    }
    if algorithm != digest.algorithm() {
        return Err(ChunkCheckError::DigestMismatch { index });
    }
    let mut state = match index {
        0 => ChainState::initial(algorithm),
        i => *states
            .get(i as usize - 1)
            .ok_or(ChunkCheckError::Unknown { index })?,
    };
    if index + 1 == plan.count() {
        if state.finish(bytes, plan.size()) != *digest {
            return Err(ChunkCheckError::DigestMismatch { index });
        }
    } else {
        let end = states
            .get(index as usize)
            .ok_or(ChunkCheckError::Unknown { index })?;
        state.absorb(bytes);
        if state != *end {
            return Err(ChunkCheckError::MapMismatch {
                index,
                end_proven: false,
            });
        }
    }
    Ok(())
}

mod prefix;
pub use prefix::{ChainPrefix, PrefixTail};

#[cfg(test)]
mod tests;
