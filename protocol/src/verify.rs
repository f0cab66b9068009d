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

    /// The digest the bytes must have.
    pub fn expected(&self) -> &Digest {
        &self.expected
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

    #[test]
    fn mismatch_names_both_digests() {
        let expected = Digest::sha256_of(b"right");
        let mut v = DigestVerifier::new(expected.clone());
        assert_eq!(v.expected(), &expected);
        v.update(b"wro");
        v.update(b"ng");
        assert_eq!(v.bytes_seen(), 5);
        let err = v.finish().expect_err("wrong bytes");
        assert_eq!(
            err,
            DigestMismatch {
                expected: expected.clone(),
                actual: Digest::sha256_of(b"wrong"),
            }
        );
        assert_eq!(
            err.to_string(),
            format!(
                "content does not match digest: expected {expected}, got {}",
                Digest::sha256_of(b"wrong")
            )
        );
    }

    #[test]
    fn verifier_uses_the_expected_algorithm() {
        let expected = Digest::compute(Algorithm::Sha512, b"abc");
        let mut v = DigestVerifier::new(expected);
        v.update(b"abc");
        assert_eq!(v.finish(), Ok(()));
        let empty = DigestVerifier::new(Digest::sha256_of(b""));
        assert_eq!(empty.bytes_seen(), 0);
        assert_eq!(empty.finish(), Ok(()));
    }

    proptest! {
        #[test]
        fn streaming_equals_one_shot(data in proptest::collection::vec(any::<u8>(), 0..4096),
                                     cuts in proptest::collection::vec(any::<prop::sample::Index>(), 0..8),
                                     sha512 in any::<bool>()) {
            // The one-shot hash straight from sha2, not through this module.
            let (alg, one_shot) = if sha512 {
                (Algorithm::Sha512, sha2::Sha512::digest(&data).to_vec())
            } else {
                (Algorithm::Sha256, sha2::Sha256::digest(&data).to_vec())
            };
            let expected = Digest::from_hash(alg, &one_shot).expect("hash length");
            prop_assert_eq!(Digest::compute(alg, &data), expected.clone());
            let mut points: Vec<usize> = cuts.iter().map(|i| i.index(data.len() + 1)).collect();
            points.sort_unstable();
            let mut v = DigestVerifier::new(expected.clone());
            let mut h = DigestHasher::new(alg);
            let mut last = 0;
            for p in points.into_iter().chain([data.len()]) {
                v.update(&data[last..p]);
                h.update(&data[last..p]);
                last = p;
            }
            prop_assert_eq!(v.bytes_seen(), data.len() as u64);
            prop_assert_eq!(v.finish(), Ok(()));
            prop_assert_eq!(h.finish(), expected);
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
