//! Streaming digest computation and verification.

use sha2::Digest as _;

use crate::digest::{Algorithm, Digest};

/// Hashes bytes fed in pieces with the algorithm of an OCI digest.
#[derive(Debug, Clone)]
pub enum DigestHasher {
    Sha256(sha2::Sha256),
    Sha512(sha2::Sha512),
}

impl DigestHasher {
    pub fn new(algorithm: Algorithm) -> DigestHasher {
        match algorithm {
            Algorithm::Sha256 => DigestHasher::Sha256(sha2::Sha256::new()),
            Algorithm::Sha512 => DigestHasher::Sha512(sha2::Sha512::new()),
        }
    }

    pub fn update(&mut self, data: &[u8]) {
        match self {
            DigestHasher::Sha256(h) => h.update(data),
            DigestHasher::Sha512(h) => h.update(data),
        }
    }

    pub fn finish(self) -> Digest {
        // from_hash cannot fail here: each hasher yields its algorithm's length.
        match self {
            DigestHasher::Sha256(h) => {
                Digest::from_hash(Algorithm::Sha256, h.finalize().as_slice())
            }
            DigestHasher::Sha512(h) => {
                Digest::from_hash(Algorithm::Sha512, h.finalize().as_slice())
            }
        }
        .unwrap_or_else(|_| unreachable!("hash length matches its algorithm"))
    }
}

/// Bytes did not hash to the digest they were expected to have.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("content does not match digest: expected {expected}, got {actual}")]
pub struct DigestMismatch {
    pub expected: Digest,
    pub actual: Digest,
}

/// Checks bytes fed in pieces against an expected digest.
#[derive(Debug, Clone)]
pub struct DigestVerifier {
    expected: Digest,
    hasher: DigestHasher,
    seen: u64,
}

impl DigestVerifier {
    pub fn new(expected: Digest) -> DigestVerifier {
        DigestVerifier {
            hasher: DigestHasher::new(expected.algorithm()),
            expected,
            seen: 0,
        }
    }

    pub fn update(&mut self, data: &[u8]) {
        self.hasher.update(data);
        self.seen += data.len() as u64;
    }

    pub fn bytes_seen(&self) -> u64 {
        self.seen
    }

    pub fn finish(self) -> Result<(), DigestMismatch> {
        let actual = self.hasher.finish();
        if actual == self.expected {
            Ok(())
        } else {
            Err(DigestMismatch {
                expected: self.expected,
                actual,
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    proptest! {
        #[test]
        fn streaming_equals_one_shot(data in proptest::collection::vec(any::<u8>(), 0..4096),
                                     cuts in proptest::collection::vec(any::<prop::sample::Index>(), 0..8),
                                     sha512 in any::<bool>()) {
            let alg = if sha512 { Algorithm::Sha512 } else { Algorithm::Sha256 };
            let expected = Digest::compute(alg, &data);
            let mut points: Vec<usize> = cuts.iter().map(|i| i.index(data.len() + 1)).collect();
            points.sort_unstable();
            let mut v = DigestVerifier::new(expected.clone());
            let mut last = 0;
            for p in points.into_iter().chain([data.len()]) {
                v.update(&data[last..p]);
                last = p;
            }
            prop_assert_eq!(v.bytes_seen(), data.len() as u64);
            prop_assert!(v.finish().is_ok());
        }

        #[test]
        fn any_change_is_caught(data in proptest::collection::vec(any::<u8>(), 1..2048), at in any::<prop::sample::Index>(), flip in 1u8..=255) {
            let expected = Digest::sha256_of(&data);
            let mut bad = data.clone();
            let i = at.index(bad.len());
            bad[i] ^= flip;
            let mut v = DigestVerifier::new(expected.clone());
            v.update(&bad);
            let err = v.finish().expect_err("a flipped byte must fail");
            prop_assert_eq!(err.expected, expected);
        }
    }
}
