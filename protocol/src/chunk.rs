//! Chunk planning: how a blob of a known size is cut into fixed-size chunks
//! for transfer and verification.
//!
//! The chunk size is a multiple of 128 bytes, the block size of SHA-512 (and
//! twice SHA-256's), so every chunk but the last ends on a hash-block
//! boundary and the hash state between chunks is well defined (see
//! `chain.rs`). A blob of 0 bytes has no chunks.

use std::ops::Range;

/// The default chunk size: 64 KiB. A chunk is passed on only once all of
/// it is in and checked, so every hop of a chunk between peers costs its
/// whole transfer time, and a follower in a chain of relays lags its
/// predecessor by the chunks it has asked for and not yet received. In the
/// edge benchmark (uplink as fast as a host, `docs/benchmarks.md`) 1 MiB
/// chunks took 3.7 × the fluid bound at N = 16 and 256 KiB 2.7 × (a mesh
/// of followers); with the relay chain, 64 KiB took N = 8 from 1.3 to
/// 1.2 × and N = 16 from 2.3 to 1.8–2.1 ×. The price is CPU per byte: a
/// 200 MiB fetch on loopback, CPU-bound, is about 15% slower than at
/// 256 KiB (a 512 KiB one is quicker: eight chunks in parallel). Blobs over
/// 4 GiB get larger chunks (at most [`MAX_CHUNKS`]).
pub const DEFAULT_CHUNK_SIZE: u32 = 64 * 1024;
/// Smallest chunk size accepted from a peer.
pub const MIN_CHUNK_SIZE: u32 = 16 * 1024;
/// Largest chunk size accepted from a peer (bounds memory per request).
pub const MAX_CHUNK_SIZE: u32 = 16 * 1024 * 1024;
/// Most chunks a blob may have (bounds chunk maps and bitmaps): 64 Ki
/// chunks of 16 MiB is 1 TiB.
pub const MAX_CHUNKS: u32 = 64 * 1024;
/// Chunk sizes are multiples of this (the SHA-512 block size).
pub const CHUNK_ALIGN: u32 = 128;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ChunkError {
    #[error(
        "chunk size {0} must be a multiple of {CHUNK_ALIGN} between {MIN_CHUNK_SIZE} and {MAX_CHUNK_SIZE}"
    )]
    BadChunkSize(u32),
    #[error("a blob of {size} bytes in chunks of {chunk_size} needs more than {MAX_CHUNKS} chunks")]
    TooManyChunks { size: u64, chunk_size: u32 },
    #[error("chunk {index} is out of range (the blob has {count})")]
    OutOfRange { index: u32, count: u32 },
}

/// How a blob of `size` bytes is cut into chunks of `chunk_size`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChunkPlan {
    size: u64,
    chunk_size: u32,
    count: u32,
}

impl ChunkPlan {
    pub fn new(size: u64, chunk_size: u32) -> Result<ChunkPlan, ChunkError> {
        if !(MIN_CHUNK_SIZE..=MAX_CHUNK_SIZE).contains(&chunk_size)
            || !chunk_size.is_multiple_of(CHUNK_ALIGN)
        {
            return Err(ChunkError::BadChunkSize(chunk_size));
        }
        let count = size.div_ceil(u64::from(chunk_size));
        let count = u32::try_from(count)
            .ok()
            .filter(|&c| c <= MAX_CHUNKS)
            .ok_or(ChunkError::TooManyChunks { size, chunk_size })?;
        Ok(ChunkPlan {
            size,
            chunk_size,
            count,
        })
    }

    /// The plan with the smallest chunk size ≥ `preferred` that keeps the
    /// blob within [`MAX_CHUNKS`] (large blobs get larger chunks).
    pub fn for_size(size: u64, preferred: u32) -> Result<ChunkPlan, ChunkError> {
        let needed = size.div_ceil(u64::from(MAX_CHUNKS));
        let aligned = needed.div_ceil(u64::from(CHUNK_ALIGN)) * u64::from(CHUNK_ALIGN);
        let chunk = u64::from(preferred).max(aligned);
        let chunk = u32::try_from(chunk).map_err(|_| ChunkError::TooManyChunks {
            size,
            chunk_size: MAX_CHUNK_SIZE,
        })?;
        ChunkPlan::new(size, chunk)
    }

    pub fn size(&self) -> u64 {
        self.size
    }

    pub fn chunk_size(&self) -> u32 {
        self.chunk_size
    }

    pub fn count(&self) -> u32 {
        self.count
    }

    /// Byte range of chunk `index`.
    pub fn range(&self, index: u32) -> Result<Range<u64>, ChunkError> {
        if index >= self.count {
            return Err(ChunkError::OutOfRange {
                index,
                count: self.count,
            });
        }
        let start = u64::from(index) * u64::from(self.chunk_size);
        let end = (start + u64::from(self.chunk_size)).min(self.size);
        Ok(start..end)
    }

    /// Length of chunk `index`.
    pub fn len_of(&self, index: u32) -> Result<u32, ChunkError> {
        let r = self.range(index)?;
        // A chunk is at most chunk_size, which fits u32.
        Ok((r.end - r.start) as u32)
    }

    /// The chunk holding byte `offset`, if inside the blob.
    pub fn index_of(&self, offset: u64) -> Option<u32> {
        (offset < self.size).then(|| (offset / u64::from(self.chunk_size)) as u32)
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    const C: u32 = 64 * 1024;

    #[test]
    fn boundary_sizes() {
        let c = u64::from(C);
        let cases: &[(u64, u32, u32)] = &[
            (0, 0, 0),
            (1, 1, 1),
            (c - 1, 1, C - 1),
            (c, 1, C),
            (c + 1, 2, 1),
            (10 * c, 10, C),
            (10 * c + 7, 11, 7),
        ];
        for &(size, count, last_len) in cases {
            let plan = ChunkPlan::new(size, C).expect("plan");
            assert_eq!(plan.count(), count, "size {size}");
            if count > 0 {
                assert_eq!(
                    plan.len_of(count - 1).expect("last"),
                    last_len,
                    "size {size}"
                );
                assert!(plan.range(count).is_err());
            }
        }
    }

    #[test]
    fn bad_chunk_sizes_and_huge_blobs() {
        for bad in [0, 100, MIN_CHUNK_SIZE - 128, MAX_CHUNK_SIZE + 128, 65_537] {
            assert_eq!(ChunkPlan::new(1, bad), Err(ChunkError::BadChunkSize(bad)));
        }
        let huge = u64::from(MAX_CHUNKS) * u64::from(C) + 1;
        assert!(matches!(
            ChunkPlan::new(huge, C),
            Err(ChunkError::TooManyChunks { .. })
        ));
        let plan = ChunkPlan::for_size(huge, C).expect("larger chunks fit");
        assert!(plan.count() <= MAX_CHUNKS);
        assert_eq!(plan.chunk_size() % CHUNK_ALIGN, 0);
    }

    proptest! {
        #[test]
        fn chunks_tile_the_blob(size in prop_oneof![0u64..5_000_000, Just(u64::from(C) * 3), Just(u64::from(C) * 3 - 1)],
                                chunk in (MIN_CHUNK_SIZE / CHUNK_ALIGN)..=(1024 * 1024 / CHUNK_ALIGN)) {
            let plan = ChunkPlan::new(size, chunk * CHUNK_ALIGN).expect("plan");
            let mut next = 0;
            for i in 0..plan.count() {
                let r = plan.range(i).expect("range");
                prop_assert_eq!(r.start, next);
                prop_assert!(r.end > r.start);
                if i + 1 < plan.count() {
                    prop_assert_eq!(r.end - r.start, u64::from(plan.chunk_size()));
                }
                prop_assert_eq!(plan.index_of(r.start), Some(i));
                prop_assert_eq!(plan.index_of(r.end - 1), Some(i));
                next = r.end;
            }
            prop_assert_eq!(next, size);
            prop_assert_eq!(plan.index_of(size), None);
        }
    }
}
