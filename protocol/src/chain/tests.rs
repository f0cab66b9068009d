use proptest::prelude::*;

use super::*;
use crate::chunk::MIN_CHUNK_SIZE;

const C: u32 = MIN_CHUNK_SIZE;

fn blob(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
        .collect()
}

fn map_of(alg: Algorithm, data: &[u8]) -> (ChunkMap, Digest) {
    let plan = ChunkPlan::new(data.len() as u64, C).expect("plan");
    let mut b = ChunkMapBuilder::new(alg, plan);
    b.update(data);
    b.finish().expect("finish")
}

fn chunk<'a>(plan: &ChunkPlan, data: &'a [u8], i: u32) -> &'a [u8] {
    let r = plan.range(i).expect("range");
    &data[r.start as usize..r.end as usize]
}

/// Sizes around chunk and block boundaries.
fn interesting_sizes() -> Vec<usize> {
    let c = C as usize;
    vec![
        0,
        1,
        55,
        56,
        63,
        64,
        65,
        111,
        112,
        127,
        128,
        129,
        c - 1,
        c,
        c + 1,
        2 * c - 1,
        2 * c,
        2 * c + 1,
        5 * c + 77,
    ]
}

#[test]
fn builder_digest_matches_sha2_at_boundary_sizes() {
    for alg in [Algorithm::Sha256, Algorithm::Sha512] {
        for size in interesting_sizes() {
            let data = blob(size, 7);
            let (map, digest) = map_of(alg, &data);
            assert_eq!(digest, Digest::compute(alg, &data), "{alg} size {size}");
            assert_eq!(map.plan().count() as usize, size.div_ceil(C as usize));
            // Encoding round-trips.
            assert_eq!(ChunkMap::decode(&map.encode()).expect("decode"), map);
        }
    }
}

#[test]
fn honest_chunks_in_any_order_prove_the_blob() {
    for size in interesting_sizes() {
        let data = blob(size, 1);
        let (map, digest) = map_of(Algorithm::Sha256, &data);
        let plan = map.plan();
        let mut v = ChainVerifier::new(digest, map).expect("verifier");
        // Front to back: nothing is proven until the last chunk arrives.
        for i in 0..plan.count() {
            let verdict = v.check(i, chunk(&plan, &data, i)).expect("honest chunk");
            if i + 1 < plan.count() {
                assert_eq!(verdict, ChunkVerdict::Consistent);
            } else {
                assert_eq!(verdict, ChunkVerdict::Proven(0..plan.count()));
            }
        }
        assert!(v.complete(), "size {size}");
    }
}

#[test]
fn empty_blob_needs_the_empty_digest() {
    let (map, digest) = map_of(Algorithm::Sha256, &[]);
    assert!(
        ChainVerifier::new(digest, map.clone())
            .expect("empty")
            .complete()
    );
    assert!(ChainVerifier::new(Digest::sha256_of(b"x"), map).is_err());
}

#[test]
fn decode_refuses_malformed_maps() {
    let (map, _) = map_of(Algorithm::Sha256, &blob(3 * C as usize, 2));
    let good = map.encode();
    assert!(ChunkMap::decode(&good[..12]).is_err(), "short header");
    assert!(
        ChunkMap::decode(&good[..good.len() - 1]).is_err(),
        "partial state"
    );
    assert!(
        ChunkMap::decode(&good[..good.len() - 32]).is_err(),
        "missing state"
    );
    let mut extra = good.clone();
    extra.extend_from_slice(&[0u8; 32]);
    assert!(ChunkMap::decode(&extra).is_err(), "extra state");
    let mut alg = good.clone();
    alg[0] = 9;
    assert!(ChunkMap::decode(&alg).is_err(), "unknown algorithm");
    let mut chunk_size = good;
    chunk_size[1..5].copy_from_slice(&100u32.to_be_bytes());
    assert!(ChunkMap::decode(&chunk_size).is_err(), "bad chunk size");
    assert!(
        ChunkMap::decode(&vec![1u8; ChunkMap::MAX_ENCODED_LEN + 1]).is_err(),
        "oversize"
    );
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// The builder gives the same map however the bytes are split.
    #[test]
    fn builder_is_split_independent(size in 0usize..(4 * C as usize), cuts in proptest::collection::vec(any::<prop::sample::Index>(), 0..10)) {
        let data = blob(size, 3);
        let (whole, d1) = map_of(Algorithm::Sha256, &data);
        let plan = ChunkPlan::new(size as u64, C).expect("plan");
        let mut b = ChunkMapBuilder::new(Algorithm::Sha256, plan);
        let mut points: Vec<usize> = cuts.iter().map(|i| i.index(size + 1)).collect();
        points.sort_unstable();
        let mut last = 0;
        for p in points.into_iter().chain([size]) {
            b.update(&data[last..p]);
            last = p;
        }
        let (split, d2) = b.finish().expect("finish");
        prop_assert_eq!(split, whole);
        prop_assert_eq!(d1, d2);
    }

    /// A map with any byte of any state changed never lets the blob be
    /// proven, and honest chunks below the forgery are never proven.
    #[test]
    fn forged_map_entries_are_caught(chunks in 2u32..6, tail in 1usize..(C as usize), at in any::<prop::sample::Index>(), byte in 0usize..32, flip in 1u8..=255) {
        let size = (chunks - 1) as usize * C as usize + tail;
        let data = blob(size, 5);
        let (map, digest) = map_of(Algorithm::Sha256, &data);
        let plan = map.plan();
        let mut encoded = map.encode();
        let entry = at.index(plan.count() as usize - 1);
        encoded[13 + entry * 32 + byte] ^= flip;
        let forged = ChunkMap::decode(&encoded).expect("well-formed forgery");
        let mut v = ChainVerifier::new(digest, forged).expect("verifier");
        let mut failures = 0;
        for i in (0..plan.count()).rev() {
            if v.check(i, chunk(&plan, &data, i)).is_err() {
                failures += 1;
            }
        }
        prop_assert!(!v.complete());
        prop_assert!(failures >= 1);
        // State `entry` is the end of chunk `entry`: that chunk and all below stay unproven.
        for i in 0..=entry as u32 {
            prop_assert!(!v.is_proven(i));
        }
    }

    /// A peer that forges chunk bytes *and* a map consistent with them (it
    /// computed the states over its forged bytes) is caught at the last chunk:
    /// no forged chunk is ever proven.
    #[test]
    fn self_consistent_forgery_is_caught(chunks in 1u32..5, tail in 1usize..(C as usize), at in any::<prop::sample::Index>(), flip in 1u8..=255) {
        let size = (chunks - 1) as usize * C as usize + tail;
        let data = blob(size, 9);
        let digest = Digest::sha256_of(&data);
        let mut forged = data.clone();
        let i = at.index(size);
        forged[i] ^= flip;
        let (forged_map, _) = map_of(Algorithm::Sha256, &forged);
        let plan = forged_map.plan();
        let mut v = ChainVerifier::new(digest, forged_map).expect("verifier");
        let forged_chunk = plan.index_of(i as u64).expect("index");
        for c in (0..plan.count()).rev() {
            let _ = v.check(c, chunk(&plan, &forged, c));
        }
        prop_assert!(!v.complete());
        prop_assert!(!v.is_proven(forged_chunk));
    }

    /// Flipped bytes in a chunk fail that chunk's check against an honest map.
    #[test]
    fn forged_chunk_bytes_fail(chunks in 1u32..5, tail in 1usize..(C as usize), at in any::<prop::sample::Index>(), flip in 1u8..=255) {
        let size = (chunks - 1) as usize * C as usize + tail;
        let data = blob(size, 11);
        let (map, digest) = map_of(Algorithm::Sha256, &data);
        let plan = map.plan();
        let mut v = ChainVerifier::new(digest, map).expect("verifier");
        let i = at.index(size);
        let c = plan.index_of(i as u64).expect("index");
        let mut bad = chunk(&plan, &data, c).to_vec();
        let start = plan.range(c).expect("range").start as usize;
        bad[i - start] ^= flip;
        prop_assert!(v.check(c, &bad).is_err());
        prop_assert!(!v.is_proven(c));
        // The honest bytes still pass afterwards.
        prop_assert!(v.check(c, chunk(&plan, &data, c)).is_ok());
    }
}
