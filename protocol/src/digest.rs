//! OCI content digests (`algorithm:hex`), validated strictly.
//!
//! Only the two algorithms the OCI image spec registers are accepted:
//! `sha256` (64 lowercase hex characters) and `sha512` (128). Anything else is
//! rejected before it can reach a file path, a database key or a DHT key, so a
//! parsed [`Digest`] is always safe to use as a file name.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A hash algorithm that an OCI digest may name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Algorithm {
    Sha256,
    Sha512,
}

impl Algorithm {
    /// The name used in the digest string.
    pub fn name(self) -> &'static str {
        match self {
            Algorithm::Sha256 => "sha256",
            Algorithm::Sha512 => "sha512",
        }
    }

    /// Length of the raw hash in bytes.
    pub fn hash_len(self) -> usize {
        match self {
            Algorithm::Sha256 => 32,
            Algorithm::Sha512 => 64,
        }
    }

    fn from_name(name: &str) -> Option<Algorithm> {
        match name {
            "sha256" => Some(Algorithm::Sha256),
            "sha512" => Some(Algorithm::Sha512),
            _ => None,
        }
    }
}

impl fmt::Display for Algorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Why a string is not a valid digest.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DigestError {
    #[error("digest has no ':' separating algorithm and hex")]
    MissingSeparator,
    #[error("unsupported digest algorithm {0:?} (supported: sha256, sha512)")]
    UnsupportedAlgorithm(String),
    #[error("{algorithm} digest must have {expected} hex characters, found {found}")]
    WrongLength {
        algorithm: Algorithm,
        expected: usize,
        found: usize,
    },
    #[error("digest hex must be lowercase 0-9a-f, found {0:?}")]
    InvalidHex(char),
    #[error("{algorithm} hash must be {expected} bytes, found {found}")]
    WrongHashLength {
        algorithm: Algorithm,
        expected: usize,
        found: usize,
    },
}

/// A validated OCI digest. The hash is kept as raw bytes; `Display` gives the
/// canonical `algorithm:lowercase-hex` form.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Digest {
    algorithm: Algorithm,
    hash: Box<[u8]>,
}

impl Digest {
    /// Builds a digest from an algorithm and the raw hash bytes.
    pub fn from_hash(algorithm: Algorithm, hash: &[u8]) -> Result<Digest, DigestError> {
        if hash.len() != algorithm.hash_len() {
            return Err(DigestError::WrongHashLength {
                algorithm,
                expected: algorithm.hash_len(),
                found: hash.len(),
            });
        }
        Ok(Digest {
            algorithm,
            hash: hash.into(),
        })
    }

    /// The sha256 digest of `data`.
    pub fn sha256_of(data: &[u8]) -> Digest {
        use sha2::Digest as _;
        let hash = sha2::Sha256::digest(data);
        Digest {
            algorithm: Algorithm::Sha256,
            hash: hash.as_slice().into(),
        }
    }

    /// The digest of `data` under `algorithm`.
    pub fn compute(algorithm: Algorithm, data: &[u8]) -> Digest {
        let mut v = crate::verify::DigestHasher::new(algorithm);
        v.update(data);
        v.finish()
    }

    pub fn algorithm(&self) -> Algorithm {
        self.algorithm
    }

    /// The raw hash bytes.
    pub fn hash(&self) -> &[u8] {
        &self.hash
    }

    /// The lowercase hex of the hash, without the algorithm prefix. Safe to
    /// use as a file name.
    pub fn hex(&self) -> String {
        hex::encode(&self.hash)
    }
}

impl fmt::Display for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.algorithm, hex::encode(&self.hash))
    }
}

impl fmt::Debug for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Digest({self})")
    }
}

impl FromStr for Digest {
    type Err = DigestError;

    fn from_str(s: &str) -> Result<Digest, DigestError> {
        let (alg, hex_part) = s.split_once(':').ok_or(DigestError::MissingSeparator)?;
        let algorithm = Algorithm::from_name(alg)
            .ok_or_else(|| DigestError::UnsupportedAlgorithm(truncate(alg, 32)))?;
        let expected = algorithm.hash_len() * 2;
        if hex_part.len() != expected {
            return Err(DigestError::WrongLength {
                algorithm,
                expected,
                found: hex_part.len(),
            });
        }
        if let Some(bad) = hex_part
            .chars()
            .find(|c| !matches!(c, '0'..='9' | 'a'..='f'))
        {
            return Err(DigestError::InvalidHex(bad));
        }
        let hash = hex::decode(hex_part).map_err(|_| DigestError::InvalidHex('?'))?;
        Digest::from_hash(algorithm, &hash)
    }
}

/// Keeps error messages bounded when a peer or client sends a huge string.
fn truncate(s: &str, max: usize) -> String {
    s.chars().take(max).collect()
}

impl Serialize for Digest {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Digest {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Digest, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(deserializer)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const EMPTY_SHA256: &str =
        "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

    #[test]
    fn parses_and_displays_canonical_form() {
        let d: Digest = EMPTY_SHA256.parse().expect("valid digest");
        assert_eq!(d.algorithm(), Algorithm::Sha256);
        assert_eq!(d.to_string(), EMPTY_SHA256);
        assert_eq!(Digest::sha256_of(b""), d);
    }

    #[test]
    fn rejects_bad_input() {
        let upper = EMPTY_SHA256.to_uppercase().replace("SHA256", "sha256");
        for bad in [
            "",
            "sha256",
            "sha256:",
            "md5:d41d8cd98f00b204e9800998ecf8427e",
            "sha256:e3b0",
            upper.as_str(),
            "sha256:../../../../etc/passwd000000000000000000000000000000000000000000",
            "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b85g",
        ] {
            assert!(bad.parse::<Digest>().is_err(), "{bad:?} must be rejected");
        }
    }

    #[test]
    fn every_error_variant() {
        let hex = &EMPTY_SHA256["sha256:".len()..];
        assert_eq!(hex.parse::<Digest>(), Err(DigestError::MissingSeparator));
        assert_eq!("".parse::<Digest>(), Err(DigestError::MissingSeparator));
        for (alg, shown) in [
            ("md5", "md5"),
            ("SHA256", "SHA256"),
            ("", ""),
            ("sha256+b64u", "sha256+b64u"),
        ] {
            assert_eq!(
                format!("{alg}:{hex}").parse::<Digest>(),
                Err(DigestError::UnsupportedAlgorithm(shown.into())),
                "{alg:?}"
            );
        }
        // An unknown algorithm is echoed cut short.
        assert_eq!(
            format!("{}:{hex}", "x".repeat(1000)).parse::<Digest>(),
            Err(DigestError::UnsupportedAlgorithm("x".repeat(32)))
        );
        assert_eq!(
            "sha256:e3b0".parse::<Digest>(),
            Err(DigestError::WrongLength {
                algorithm: Algorithm::Sha256,
                expected: 64,
                found: 4
            })
        );
        assert_eq!(
            format!("sha512:{hex}").parse::<Digest>(),
            Err(DigestError::WrongLength {
                algorithm: Algorithm::Sha512,
                expected: 128,
                found: 64
            })
        );
        assert_eq!(
            format!("sha256:{}E", &hex[1..]).parse::<Digest>(),
            Err(DigestError::InvalidHex('E'))
        );
        assert_eq!(
            format!("sha256:{}g", &hex[1..]).parse::<Digest>(),
            Err(DigestError::InvalidHex('g'))
        );
        // 62 ASCII bytes and a two-byte char: the right byte length.
        assert_eq!(
            format!("sha256:{}é", &hex[2..]).parse::<Digest>(),
            Err(DigestError::InvalidHex('é'))
        );
        assert_eq!(
            Digest::from_hash(Algorithm::Sha256, &[0; 31]),
            Err(DigestError::WrongHashLength {
                algorithm: Algorithm::Sha256,
                expected: 32,
                found: 31
            })
        );
        assert_eq!(
            Digest::from_hash(Algorithm::Sha512, &[0; 32]),
            Err(DigestError::WrongHashLength {
                algorithm: Algorithm::Sha512,
                expected: 64,
                found: 32
            })
        );
    }

    #[test]
    fn hex_and_accessors() {
        let d = Digest::compute(Algorithm::Sha512, b"");
        assert_eq!(d.algorithm(), Algorithm::Sha512);
        assert_eq!(d.hash().len(), 64);
        assert_eq!(d.hex().len(), 128);
        assert_eq!(d.to_string(), format!("sha512:{}", d.hex()));
        assert!(d.hex().starts_with("cf83e1357eefb8bd"));
        assert_eq!(format!("{d:?}"), format!("Digest({d})"));
        assert!(serde_json::from_str::<Digest>("\"sha256:x\"").is_err());
        assert!(serde_json::from_str::<Digest>("42").is_err());
    }

    mod props {
        use proptest::prelude::*;

        use super::super::*;

        fn any_digest() -> impl Strategy<Value = Digest> {
            prop_oneof![
                proptest::collection::vec(any::<u8>(), 32).prop_map(|h| Digest::from_hash(
                    Algorithm::Sha256,
                    &h
                )
                .expect("32 bytes")),
                proptest::collection::vec(any::<u8>(), 64).prop_map(|h| Digest::from_hash(
                    Algorithm::Sha512,
                    &h
                )
                .expect("64 bytes")),
            ]
        }

        proptest! {
            #[test]
            fn display_parse_serde_cid_round_trip(d in any_digest()) {
                let s = d.to_string();
                prop_assert_eq!(s.parse::<Digest>().expect("parses"), d.clone());
                let json = serde_json::to_string(&d).expect("json");
                prop_assert_eq!(serde_json::from_str::<Digest>(&json).expect("from json"), d.clone());
                prop_assert_eq!(Digest::from_cid(&d.to_cid()).expect("cid"), d.clone());
                prop_assert_eq!(Digest::from_cid_str(&d.to_cid().to_string()).expect("cid str"), d);
            }

            #[test]
            fn uppercase_or_wrong_length_is_refused(d in any_digest(), cut in 1usize..10, extra in "[0-9a-f]{1,4}") {
                let s = d.to_string();
                let (alg, hex) = s.split_once(':').expect("separator");
                if hex.chars().any(|c| c.is_ascii_alphabetic()) {
                    let upper = format!("{alg}:{}", hex.to_uppercase());
                    prop_assert!(upper.parse::<Digest>().is_err());
                }
                let short = format!("{alg}:{}", &hex[cut..]);
                prop_assert!(short.parse::<Digest>().is_err());
                let long = format!("{s}{extra}");
                prop_assert!(long.parse::<Digest>().is_err());
                let other = format!("sha384:{hex}");
                prop_assert!(other.parse::<Digest>().is_err());
            }

            #[test]
            fn unknown_algorithms_are_refused(d in any_digest(), alg in "[a-zA-Z0-9+._-]{0,12}") {
                prop_assume!(alg != "sha256" && alg != "sha512");
                let s = format!("{alg}:{}", d.hex());
                prop_assert_eq!(s.parse::<Digest>(), Err(DigestError::UnsupportedAlgorithm(alg)));
            }

            #[test]
            fn arbitrary_strings_never_panic(s in "\\PC{0,200}") {
                let _ = s.parse::<Digest>();
                let _ = Digest::parse_any(&s);
            }
        }
    }
}
