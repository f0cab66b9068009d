//! A digest's content identifier forms: CIDv1 (codec raw) and multihash.
//!
//! `sha256:<hex>` is the same content as the CIDv1 with codec raw (0x55) and
//! multihash sha2-256 (0x12); sha512 maps to multihash 0x13. The multihash
//! bytes are the DHT key of a blob, so a node keyed this way finds the same
//! record as any system that addresses raw bytes by CID.
//!
//! A CID with another codec (dag-pb, say) but a sha2 multihash still names a
//! hash of *some* bytes; it is accepted here and the codec is not kept, since
//! shoal only ever stores raw blobs: the bytes fetched are checked against the
//! hash either way.

use cid::Cid;
use multihash::Multihash;

use crate::digest::{Algorithm, Digest};

/// Multicodec of raw bytes.
pub const RAW_CODEC: u64 = 0x55;
/// Multihash code of sha2-256.
pub const SHA2_256: u64 = 0x12;
/// Multihash code of sha2-512.
pub const SHA2_512: u64 = 0x13;

/// Why a CID or multihash names no digest shoal can use.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CidError {
    #[error("not a CID: {0}")]
    Parse(String),
    #[error("CIDv0 is not supported; use a CIDv1")]
    Version0,
    #[error("multihash code {0:#x} is not sha2-256 (0x12) or sha2-512 (0x13)")]
    UnsupportedHash(u64),
    #[error("multihash digest has the wrong length for its code")]
    WrongLength,
}

impl Digest {
    /// The multihash of this digest (code + length + hash).
    pub fn multihash(&self) -> Multihash<64> {
        let code = match self.algorithm() {
            Algorithm::Sha256 => SHA2_256,
            Algorithm::Sha512 => SHA2_512,
        };
        // Both hash lengths fit a 64-byte multihash, so wrap cannot fail.
        Multihash::wrap(code, self.hash()).unwrap_or_default()
    }

    /// The multihash bytes: the key of this blob's provider records.
    pub fn multihash_bytes(&self) -> Vec<u8> {
        self.multihash().to_bytes()
    }

    /// The CIDv1 (codec raw) of this digest.
    pub fn to_cid(&self) -> Cid {
        Cid::new_v1(RAW_CODEC, self.multihash())
    }

    /// The digest a multihash names.
    pub fn from_multihash(mh: &Multihash<64>) -> Result<Digest, CidError> {
        let algorithm = match mh.code() {
            SHA2_256 => Algorithm::Sha256,
            SHA2_512 => Algorithm::Sha512,
            other => return Err(CidError::UnsupportedHash(other)),
        };
        Digest::from_hash(algorithm, mh.digest()).map_err(|_| CidError::WrongLength)
    }

    /// The digest a CID names (see the module doc on codecs).
    pub fn from_cid(cid: &Cid) -> Result<Digest, CidError> {
        if cid.version() == cid::Version::V0 {
            return Err(CidError::Version0);
        }
        Digest::from_multihash(cid.hash())
    }

    /// Parses a CID string (any multibase) into the digest it names.
    pub fn from_cid_str(s: &str) -> Result<Digest, CidError> {
        let cid = Cid::try_from(s).map_err(|e| CidError::Parse(e.to_string()))?;
        Digest::from_cid(&cid)
    }

    /// Accepts either form a client may name content by: `alg:hex` or a CID.
    pub fn parse_any(s: &str) -> Result<Digest, CidError> {
        if s.contains(':') {
            s.parse()
                .map_err(|e: crate::digest::DigestError| CidError::Parse(e.to_string()))
        } else {
            Digest::from_cid_str(s)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const EMPTY: &str = "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";
    const EMPTY_CID: &str = "bafkreihdwdcefgh4dqkjv67uzcmw7ojee6xedzdetojuzjevtenxquvyku";

    #[test]
    fn known_test_vector_both_ways() {
        let d: Digest = EMPTY.parse().expect("digest");
        assert_eq!(d.to_cid().to_string(), EMPTY_CID);
        assert_eq!(Digest::from_cid_str(EMPTY_CID).expect("cid"), d);
        assert_eq!(Digest::parse_any(EMPTY_CID).expect("any"), d);
        assert_eq!(Digest::parse_any(EMPTY).expect("any"), d);
        // The DHT key: 0x12 0x20 then the 32 hash bytes.
        let key = d.multihash_bytes();
        assert_eq!(&key[..2], &[0x12, 0x20]);
        assert_eq!(&key[2..], d.hash());
    }

    #[test]
    fn sha512_round_trips() {
        let d = Digest::compute(Algorithm::Sha512, b"x");
        let cid = d.to_cid();
        assert_eq!(cid.hash().code(), SHA2_512);
        assert_eq!(Digest::from_cid(&cid).expect("cid"), d);
    }

    #[test]
    fn other_hashes_and_garbage_are_refused() {
        let blake3 = Multihash::<64>::wrap(0x1e, &[0u8; 32]).expect("mh");
        let cid = Cid::new_v1(RAW_CODEC, blake3);
        assert_eq!(Digest::from_cid(&cid), Err(CidError::UnsupportedHash(0x1e)));
        let short = Multihash::<64>::wrap(SHA2_256, &[0u8; 20]).expect("mh");
        assert_eq!(Digest::from_multihash(&short), Err(CidError::WrongLength));
        assert!(Digest::from_cid_str("not-a-cid").is_err());
        assert!(Digest::parse_any("").is_err());
        let v0 = "QmbWqxBEKC3P8tqsKc98xmWNzrzDtRLMiMPL8wBuTGsMnR";
        assert_eq!(Digest::from_cid_str(v0), Err(CidError::Version0));
    }
}
