//! A transfer rate as people write it: `100Mbit`, `12MiB`, `1.5 GB/s`, or
//! a plain number of bytes per second. `0` and `unlimited` mean no limit.
//!
//! A lone lowercase `b` (`10Mb`, `500kbps` is fine) is refused rather than
//! guessed: bits and bytes differ eightfold and both readings are common.

use std::fmt;
use std::str::FromStr;

use serde::Deserialize;

/// The smallest limit accepted, 64 KiB/s. Below it a node cannot move one
/// 1 MiB chunk within a peer's request timeout, and `peer_upload = 100`
/// (bytes, where megabits were meant) is a typo worth stopping at start.
pub const MIN_RATE: u64 = 64 * 1024;

/// Bytes per second; 0 is unlimited.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Rate(u64);

impl Rate {
    pub const UNLIMITED: Rate = Rate(0);

    /// A limit of `bytes_per_sec` (at least [`MIN_RATE`]), or unlimited for 0.
    pub fn bytes_per_sec(bytes_per_sec: u64) -> Result<Rate, RateError> {
        if bytes_per_sec != 0 && bytes_per_sec < MIN_RATE {
            return Err(RateError::TooSmall(format!("{bytes_per_sec} bytes/s")));
        }
        Ok(Rate(bytes_per_sec))
    }

    /// The limit in bytes per second; `None` when unlimited.
    pub fn limit(self) -> Option<u64> {
        (self.0 != 0).then_some(self.0)
    }
}

/// Why a rate could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RateError {
    #[error("a rate cannot be empty (write e.g. \"100Mbit\", \"12MiB\" or \"unlimited\")")]
    Empty,
    #[error("{0:?} does not start with a number (write e.g. \"100Mbit\" or \"12MiB\")")]
    NotANumber(String),
    #[error(
        "{0:?}: unknown unit (use B, kB, KiB, MB, MiB, GB, GiB for bytes or kbit, Mbit, Gbit, Mbps for bits, optionally with /s)"
    )]
    UnknownUnit(String),
    #[error("{0:?} is ambiguous: write \"bit\" for bits or \"B\" for bytes")]
    Ambiguous(String),
    #[error("{0:?} is too large")]
    TooLarge(String),
    #[error(
        "{0} is below the smallest limit, 64 KiB/s (a plain number means bytes per second; 0 means unlimited)"
    )]
    TooSmall(String),
}

impl FromStr for Rate {
    type Err = RateError;

    fn from_str(input: &str) -> Result<Rate, RateError> {
        let text = input.trim();
        if text.is_empty() {
            return Err(RateError::Empty);
        }
        if text.eq_ignore_ascii_case("unlimited") {
            return Ok(Rate::UNLIMITED);
        }
        // Only digits and one dot: no signs, exponents, "inf" or "NaN".
        let split = text
            .find(|c: char| !c.is_ascii_digit() && c != '.')
            .unwrap_or(text.len());
        let (number, unit) = text.split_at(split);
        if number.is_empty() || number.matches('.').count() > 1 || number == "." {
            return Err(RateError::NotANumber(input.to_owned()));
        }
        let number: f64 = number
            .parse()
            .map_err(|_| RateError::NotANumber(input.to_owned()))?;
        let per_unit = unit_bytes(unit.trim())?;
        let bytes = (number * per_unit).round();
        // 2^63 bytes/s is far beyond any link and exact in both types.
        if bytes >= 9.2e18 {
            return Err(RateError::TooLarge(input.to_owned()));
        }
        let bytes = bytes as u64;
        if (bytes == 0 && number != 0.0) || (bytes != 0 && bytes < MIN_RATE) {
            return Err(RateError::TooSmall(format!("{:?}", input.trim())));
        }
        Rate::bytes_per_sec(bytes)
    }
}

/// Bytes per second one `unit` stands for.
fn unit_bytes(unit: &str) -> Result<f64, RateError> {
    let bare = unit.strip_suffix("/s").unwrap_or(unit);
    let (prefix, per) = if let Some(p) = bare.strip_suffix("bps") {
        if bare.len() != unit.len() {
            // "Mbps/s"
            return Err(RateError::UnknownUnit(unit.to_owned()));
        }
        (p, 1.0 / 8.0)
    } else if let Some(p) = bare.strip_suffix("bit") {
        (p, 1.0 / 8.0)
    } else if let Some(p) = bare.strip_suffix('B') {
        (p, 1.0)
    } else if bare.is_empty() {
        (bare, 1.0)
    } else if bare.ends_with('b') {
        return Err(RateError::Ambiguous(unit.to_owned()));
    } else {
        return Err(RateError::UnknownUnit(unit.to_owned()));
    };
    let scale = match prefix {
        "" => 1.0,
        "k" | "K" => 1e3,
        "M" => 1e6,
        "G" => 1e9,
        "Ki" => 1024.0,
        "Mi" => 1024.0 * 1024.0,
        "Gi" => 1024.0 * 1024.0 * 1024.0,
        _ => return Err(RateError::UnknownUnit(unit.to_owned())),
    };
    Ok(scale * per)
}

impl fmt::Display for Rate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let Some(bytes) = self.limit() else {
            return f.write_str("unlimited");
        };
        let units = [
            (1u64 << 30, "GiB/s"),
            (1 << 20, "MiB/s"),
            (1 << 10, "KiB/s"),
        ];
        for (size, name) in units {
            if bytes >= size {
                let value = bytes as f64 / size as f64;
                return write!(f, "{value:.2} {name}");
            }
        }
        write!(f, "{bytes} B/s")
    }
}

/// In the config file: a string as above, or a number of bytes per second.
impl<'de> Deserialize<'de> for Rate {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Rate, D::Error> {
        struct Visitor;
        impl serde::de::Visitor<'_> for Visitor {
            type Value = Rate;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a rate such as \"100Mbit\" or \"12MiB\", or bytes per second")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Rate, E> {
                v.parse().map_err(E::custom)
            }
            fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<Rate, E> {
                Rate::bytes_per_sec(v).map_err(E::custom)
            }
            fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<Rate, E> {
                let v = u64::try_from(v).map_err(|_| E::custom("a rate cannot be negative"))?;
                self.visit_u64(v)
            }
        }
        d.deserialize_any(Visitor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bytes(s: &str) -> u64 {
        s.parse::<Rate>()
            .unwrap_or_else(|e| panic!("{s:?}: {e}"))
            .limit()
            .unwrap_or(0)
    }

    #[test]
    fn units_people_write() {
        assert_eq!(bytes("100Mbit"), 12_500_000);
        assert_eq!(bytes("100 Mbit/s"), 12_500_000);
        assert_eq!(bytes("100Mbps"), 12_500_000);
        assert_eq!(bytes("1Gbit"), 125_000_000);
        assert_eq!(bytes("1Mbit"), 125_000);
        assert_eq!(bytes("1000000/s"), 1_000_000);
        assert_eq!(bytes("12MiB"), 12 * 1024 * 1024);
        assert_eq!(bytes("12MiB/s"), 12 * 1024 * 1024);
        assert_eq!(bytes("1.5GB"), 1_500_000_000);
        assert_eq!(bytes("64KiB"), 65_536);
        assert_eq!(bytes("2 MB/s"), 2_000_000);
        assert_eq!(bytes("1048576"), 1_048_576);
        assert_eq!(bytes("1048576B"), 1_048_576);
        assert_eq!(bytes(" 1GiB "), 1 << 30);
    }

    #[test]
    fn zero_and_unlimited_mean_no_limit() {
        for s in ["0", "0MiB", "unlimited", "Unlimited"] {
            assert_eq!(s.parse::<Rate>(), Ok(Rate::UNLIMITED), "{s}");
        }
        assert_eq!(Rate::UNLIMITED.limit(), None);
        assert_eq!(Rate::default(), Rate::UNLIMITED);
    }

    #[test]
    fn bad_rates_say_what_is_wrong() {
        let err = |s: &str| s.parse::<Rate>().expect_err(s).to_string();
        assert!(err("").contains("empty"));
        assert!(err("fast").contains("does not start with a number"));
        assert!(err("-5MiB").contains("does not start with a number"));
        assert!(err("1e9").contains("unknown unit"));
        assert!(err("1.2.3MB").contains("does not start with a number"));
        assert!(err("10Mb").contains("ambiguous"));
        assert!(err("10kb/s").contains("ambiguous"));
        assert!(err("10M").contains("unknown unit"));
        assert!(err("10 parsecs").contains("unknown unit"));
        assert!(err("10TiB").contains("unknown unit"));
        assert!(err("10Mbps/s").contains("unknown unit"));
        assert!(err("100").contains("below the smallest limit"));
        assert!(err("1bit").contains("\"1bit\" is below the smallest limit"));
        assert!(err("99999999999GiB").contains("too large"));
    }

    #[test]
    fn shown_in_binary_units() {
        assert_eq!(bytes_rate(12 * 1024 * 1024).to_string(), "12.00 MiB/s");
        assert_eq!(bytes_rate(12_500_000).to_string(), "11.92 MiB/s");
        assert_eq!(Rate::UNLIMITED.to_string(), "unlimited");
    }

    fn bytes_rate(n: u64) -> Rate {
        Rate::bytes_per_sec(n).expect("valid")
    }
}
