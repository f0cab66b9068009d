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
