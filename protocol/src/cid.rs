//! A digest's content identifier forms: CIDv1 (codec raw) and multihash.
//!
//! `sha256:<hex>` is the same content as the CIDv1 with codec raw (0x55) and
//! multihash sha2-256 (0x12); sha512 maps to multihash 0x13. The multihash
//! bytes are the DHT key of a blob, so a node keyed this way finds the same
//! record as any system that addresses raw bytes by CID.
//!
//! **Codecs.** Only the multihash decides which digest a CID names: a CID
//! with another codec (dag-pb, say, or a CIDv0, which is dag-pb by
//! definition) but a sha2-256/sha2-512 multihash is accepted and the codec is
//! dropped. shoal only ever stores raw blobs and checks the bytes it fetches
//! against the hash either way, so a foreign codec can at worst name a blob
//! nobody has; it can never make wrong bytes pass. Consequently
//! `Digest::from_cid(c).to_cid() == c` holds only for raw CIDv1s.
//!
//! **Strings.** A CID string is accepted in any multibase, but only in its
//! canonical form for that base: no `/ipfs/` prefix, no bytes after the
//! multihash, nothing the `cid` crate tolerates and would re-encode
//! differently. Strings longer than [`MAX_CID_STR_LEN`] are refused before
//! any decoding (base58 decoding is quadratic in the input length).

use cid::multibase::Base;
use cid::{Cid, Version};
use multihash::Multihash;

use crate::digest::{Algorithm, Digest, DigestError};

/// Multicodec of raw bytes.
pub const RAW_CODEC: u64 = 0x55;
/// Multihash code of sha2-256.
pub const SHA2_256: u64 = 0x12;
/// Multihash code of sha2-512.
pub const SHA2_512: u64 = 0x13;
/// Longest CID string considered. The longest CID shoal can accept (a
/// ten-byte codec varint and a sha2-512 multihash, 77 bytes) is 617
/// characters even in base2, the most verbose multibase.
pub const MAX_CID_STR_LEN: usize = 1024;

/// Why a CID, a CID string or a multihash names no digest shoal can use.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CidError {
    #[error("not a CID: {0}")]
    Parse(String),
    #[error("CID string of {0} characters is longer than any valid one ({MAX_CID_STR_LEN})")]
    TooLong(usize),
    #[error(
        "CID string is not in canonical form (prefix, trailing bytes or a non-canonical encoding)"
    )]
    NotCanonical,
    #[error("multihash code {0:#x} is not sha2-256 (0x12) or sha2-512 (0x13)")]
    UnsupportedHash(u64),
    #[error("multihash digest has the wrong length for its code")]
    WrongLength,
    /// [`Digest::parse_any`] was given an `alg:hex` string that is invalid.
    #[error(transparent)]
    Digest(#[from] DigestError),
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

    /// The CIDv1 (codec raw) of this digest. Its `Display` is base32
    /// (`bafkrei…` for sha256).
    pub fn to_cid(&self) -> Cid {
        Cid::new_v1(RAW_CODEC, self.multihash())
    }

    /// The digest a multihash names: sha2-256 or sha2-512 only.
    pub fn from_multihash(mh: &Multihash<64>) -> Result<Digest, CidError> {
        let algorithm = match mh.code() {
            SHA2_256 => Algorithm::Sha256,
            SHA2_512 => Algorithm::Sha512,
            other => return Err(CidError::UnsupportedHash(other)),
        };
        Digest::from_hash(algorithm, mh.digest()).map_err(|_| CidError::WrongLength)
    }

    /// The digest a CID names. Any version and codec; only the multihash
    /// counts (see the module doc).
    pub fn from_cid(cid: &Cid) -> Result<Digest, CidError> {
        Digest::from_multihash(cid.hash())
    }

    /// Parses a CID string (any multibase, canonical form only; see the
    /// module doc) into the digest it names.
    pub fn from_cid_str(s: &str) -> Result<Digest, CidError> {
        if s.len() > MAX_CID_STR_LEN {
            return Err(CidError::TooLong(s.len()));
        }
        let cid = Cid::try_from(s).map_err(|e| CidError::Parse(e.to_string()))?;
        // The cid crate skips anything up to `/ipfs/` and ignores bytes after
        // the multihash; re-encoding in the same base and comparing refuses
        // both, and any other string that is not the CID's one spelling.
        let canonical = match cid.version() {
            Version::V0 => Some(cid.to_string()),
            Version::V1 => s
                .chars()
                .next()
                .and_then(|code| Base::from_code(code).ok())
                .and_then(|base| cid.to_string_of_base(base).ok()),
        };
        if canonical.as_deref() != Some(s) {
            return Err(CidError::NotCanonical);
        }
        Digest::from_cid(&cid)
    }

    /// Accepts either form a client may name content by: `alg:hex` (any
    /// string containing `:`) or a CID string.
    pub fn parse_any(s: &str) -> Result<Digest, CidError> {
        if s.contains(':') {
            Ok(s.parse()?)
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
    const DAG_PB: u64 = 0x70;

    fn empty() -> Digest {
        EMPTY.parse().expect("digest")
    }

    #[test]
    fn known_test_vector_both_ways() {
        let d = empty();
        assert_eq!(d.to_cid().to_string(), EMPTY_CID);
        assert_eq!(d.to_cid().codec(), RAW_CODEC);
        assert_eq!(d.to_cid().version(), Version::V1);
        assert_eq!(Digest::from_cid_str(EMPTY_CID), Ok(d.clone()));
        assert_eq!(Digest::parse_any(EMPTY_CID), Ok(d.clone()));
        assert_eq!(Digest::parse_any(EMPTY), Ok(d.clone()));
        // The DHT key: 0x12 0x20 then the 32 hash bytes.
        let key = d.multihash_bytes();
        assert_eq!(&key[..2], &[0x12, 0x20]);
        assert_eq!(&key[2..], d.hash());
        assert_eq!(key, d.to_cid().hash().to_bytes());
    }

    #[test]
    fn sha512_round_trips() {
        let d = Digest::compute(Algorithm::Sha512, b"x");
        let cid = d.to_cid();
        assert_eq!(cid.hash().code(), SHA2_512);
        assert_eq!(&d.multihash_bytes()[..2], &[0x13, 0x40]);
        assert_eq!(Digest::from_cid(&cid), Ok(d.clone()));
        assert_eq!(Digest::from_cid_str(&cid.to_string()), Ok(d));
    }

    #[test]
    fn other_codecs_name_the_same_digest() {
        let d = empty();
        let dag_pb = Cid::new_v1(DAG_PB, d.multihash());
        assert_eq!(Digest::from_cid(&dag_pb), Ok(d.clone()));
        assert_eq!(Digest::from_cid_str(&dag_pb.to_string()), Ok(d.clone()));
        let v0 = Cid::new_v0(d.multihash()).expect("v0");
        let v0_str = v0.to_string();
        assert!(v0_str.starts_with("Qm"), "{v0_str}");
        assert_eq!(Digest::from_cid_str(&v0_str), Ok(d.clone()));
        // Back to a CID, the codec is raw again.
        assert_eq!(
            Digest::from_cid(&dag_pb).expect("digest").to_cid(),
            d.to_cid()
        );
    }

    #[test]
    fn error_unsupported_hash() {
        let blake3 = Multihash::<64>::wrap(0x1e, &[0u8; 32]).expect("mh");
        let cid = Cid::new_v1(RAW_CODEC, blake3);
        assert_eq!(Digest::from_cid(&cid), Err(CidError::UnsupportedHash(0x1e)));
        assert_eq!(
            Digest::from_cid_str(&cid.to_string()),
            Err(CidError::UnsupportedHash(0x1e))
        );
        let identity = Multihash::<64>::wrap(0x00, b"abc").expect("mh");
        assert_eq!(
            Digest::from_multihash(&identity),
            Err(CidError::UnsupportedHash(0))
        );
    }

    #[test]
    fn error_wrong_length() {
        let short = Multihash::<64>::wrap(SHA2_256, &[0u8; 20]).expect("mh");
        assert_eq!(Digest::from_multihash(&short), Err(CidError::WrongLength));
        // A sha2-512 code with a sha256-sized hash.
        let mixed = Multihash::<64>::wrap(SHA2_512, &[0u8; 32]).expect("mh");
        let cid = Cid::new_v1(RAW_CODEC, mixed);
        assert_eq!(
            Digest::from_cid_str(&cid.to_string()),
            Err(CidError::WrongLength)
        );
    }

    #[test]
    fn error_parse() {
        for bad in ["", "x", "not-a-cid", "b!!!!", "bafkrei", "Qm", "sha256"] {
            assert!(
                matches!(Digest::from_cid_str(bad), Err(CidError::Parse(_))),
                "{bad:?}: {:?}",
                Digest::from_cid_str(bad)
            );
            assert!(
                matches!(Digest::parse_any(bad), Err(CidError::Parse(_))),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn error_too_long_is_checked_before_decoding() {
        let long = format!("z{}", "1".repeat(MAX_CID_STR_LEN));
        assert_eq!(
            Digest::from_cid_str(&long),
            Err(CidError::TooLong(MAX_CID_STR_LEN + 1))
        );
        assert_eq!(
            Digest::parse_any(&long),
            Err(CidError::TooLong(MAX_CID_STR_LEN + 1))
        );
        // The most verbose base of the longest acceptable CID still fits.
        let widest = Cid::new_v1(
            u64::MAX,
            Digest::compute(Algorithm::Sha512, b"").multihash(),
        );
        let base2 = widest.to_string_of_base(Base::Base2).expect("base2");
        assert!(base2.len() <= MAX_CID_STR_LEN, "{}", base2.len());
        assert!(Digest::from_cid_str(&base2).is_ok());
    }

    #[test]
    fn error_not_canonical() {
        let upper_base32 = format!("b{}", EMPTY_CID[1..].to_uppercase());
        for bad in [
            format!("/ipfs/{EMPTY_CID}"),
            format!("garbage/ipfs/{EMPTY_CID}"),
            format!("{EMPTY_CID}aaaaaaaa"),
            upper_base32,
        ] {
            let got = Digest::from_cid_str(&bad);
            assert!(
                matches!(got, Err(CidError::NotCanonical) | Err(CidError::Parse(_))),
                "{bad:?}: {got:?}"
            );
        }
        // Trailing bytes that decode cleanly are the case the crate misses.
        let mut bytes = empty().to_cid().to_bytes();
        bytes.extend_from_slice(b"trailing");
        let padded = cid::multibase::encode(Base::Base32Lower, &bytes);
        assert_eq!(Cid::try_from(padded.as_str()).ok(), Some(empty().to_cid()));
        assert_eq!(Digest::from_cid_str(&padded), Err(CidError::NotCanonical));
        assert_eq!(
            Digest::from_cid_str(&format!("/ipfs/{EMPTY_CID}")),
            Err(CidError::NotCanonical)
        );
    }

    #[test]
    fn error_digest_from_parse_any() {
        assert_eq!(
            Digest::parse_any("md5:abc"),
            Err(CidError::Digest(DigestError::UnsupportedAlgorithm(
                "md5".into()
            )))
        );
        assert!(matches!(
            Digest::parse_any("sha256:abc"),
            Err(CidError::Digest(DigestError::WrongLength { .. }))
        ));
    }

    mod props {
        use proptest::prelude::*;

        use super::*;

        fn any_digest() -> impl Strategy<Value = Digest> {
            (any::<bool>(), proptest::collection::vec(any::<u8>(), 64)).prop_map(|(big, h)| {
                let alg = if big {
                    Algorithm::Sha512
                } else {
                    Algorithm::Sha256
                };
                Digest::from_hash(alg, &h[..alg.hash_len()]).expect("right length")
            })
        }

        fn any_base() -> impl Strategy<Value = Base> {
            prop::sample::select(vec![
                Base::Base2,
                Base::Base8,
                Base::Base10,
                Base::Base16Lower,
                Base::Base16Upper,
                Base::Base32Lower,
                Base::Base32Upper,
                Base::Base32HexLower,
                Base::Base36Lower,
                Base::Base58Btc,
                Base::Base64,
                Base::Base64Url,
                Base::Base64UrlPad,
                Base::Base256Emoji,
            ])
        }

        proptest! {
            #[test]
            fn cid_round_trips_in_every_base(d in any_digest(), base in any_base()) {
                let cid = d.to_cid();
                prop_assert_eq!(Digest::from_cid(&cid), Ok(d.clone()));
                let s = cid.to_string_of_base(base).expect("v1 encodes in any base");
                prop_assert_eq!(Digest::from_cid_str(&s), Ok(d.clone()));
                prop_assert_eq!(Digest::parse_any(&s), Ok(d.clone()));
                prop_assert_eq!(Digest::parse_any(&d.to_string()), Ok(d.clone()));
                let mh = Multihash::<64>::from_bytes(&d.multihash_bytes()).expect("multihash");
                prop_assert_eq!(Digest::from_multihash(&mh), Ok(d));
            }

            #[test]
            fn any_codec_names_the_multihash(d in any_digest(), codec in any::<u64>()) {
                let cid = Cid::new_v1(codec, d.multihash());
                prop_assert_eq!(Digest::from_cid_str(&cid.to_string()), Ok(d));
            }

            #[test]
            fn other_hash_codes_are_refused(code in any::<u64>(), len in 0usize..=64) {
                prop_assume!(code != SHA2_256 && code != SHA2_512);
                let mh = Multihash::<64>::wrap(code, &vec![7u8; len]).expect("fits");
                prop_assert_eq!(Digest::from_multihash(&mh), Err(CidError::UnsupportedHash(code)));
            }

            #[test]
            fn suffixed_cid_strings_are_refused(d in any_digest(), suffix in "[a-z2-7]{1,16}") {
                let s = format!("{}{suffix}", d.to_cid());
                prop_assert!(Digest::from_cid_str(&s).is_err(), "{}", s);
            }

            #[test]
            fn arbitrary_cid_strings_never_panic(s in "[a-zA-Z0-9/+=_-]{0,120}") {
                let _ = Digest::from_cid_str(&s);
            }
        }
    }
}
