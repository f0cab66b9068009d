//! The `Range` request header on blob GETs: a single `bytes=` range.

/// What a `Range` header asks of a blob of a known size.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RangeRequest {
    /// No usable range (absent, malformed, or several ranges): send it all.
    Whole,
    /// Bytes `start..=end`, already clipped to the blob.
    Partial { start: u64, end: u64 },
    /// Syntactically valid but outside the blob: 416.
    Unsatisfiable,
}

/// Interprets a `Range` header value for a blob of `size` bytes (RFC 9110 §14).
/// A malformed header is ignored, as the RFC allows; multiple ranges are
/// answered with the whole blob rather than a multipart body.
pub fn parse_range(value: Option<&str>, size: u64) -> RangeRequest {
    let Some(spec) = value.and_then(|v| v.trim().strip_prefix("bytes=")) else {
        return RangeRequest::Whole;
    };
    if spec.contains(',') {
        return RangeRequest::Whole;
    }
    let Some((first, last)) = spec.trim().split_once('-') else {
        return RangeRequest::Whole;
    };
    let parse = |s: &str| -> Option<u64> {
        if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
            None
        } else {
            s.parse().ok()
        }
    };
    match (first.is_empty(), last.is_empty()) {
        // bytes=-N: the last N bytes.
        (true, false) => match parse(last) {
            None => RangeRequest::Whole,
            Some(0) => RangeRequest::Unsatisfiable,
            Some(_) if size == 0 => RangeRequest::Unsatisfiable,
            Some(n) => RangeRequest::Partial {
                start: size.saturating_sub(n),
                end: size - 1,
            },
        },
        // bytes=S-
        (false, true) => match parse(first) {
            None => RangeRequest::Whole,
            Some(s) if s >= size => RangeRequest::Unsatisfiable,
            Some(s) => RangeRequest::Partial {
                start: s,
                end: size - 1,
            },
        },
        // bytes=S-E
        (false, false) => match (parse(first), parse(last)) {
            (Some(s), Some(e)) if s <= e => {
                if s >= size {
                    RangeRequest::Unsatisfiable
                } else {
                    RangeRequest::Partial {
                        start: s,
                        end: e.min(size - 1),
                    }
                }
            }
            _ => RangeRequest::Whole,
        },
        (true, true) => RangeRequest::Whole,
    }
}

#[cfg(test)]
mod tests {
    use super::RangeRequest::*;
    use super::*;

    #[test]
    fn table() {
        let cases: &[(Option<&str>, u64, RangeRequest)] = &[
            (None, 10, Whole),
            (Some("bytes=0-4"), 10, Partial { start: 0, end: 4 }),
            (Some("bytes=5-"), 10, Partial { start: 5, end: 9 }),
            (Some("bytes=-3"), 10, Partial { start: 7, end: 9 }),
            (Some("bytes=-30"), 10, Partial { start: 0, end: 9 }),
            (Some("bytes=8-100"), 10, Partial { start: 8, end: 9 }),
            (Some("bytes=10-"), 10, Unsatisfiable),
            (Some("bytes=10-20"), 10, Unsatisfiable),
            (Some("bytes=0-0"), 0, Unsatisfiable),
            (Some("bytes=-0"), 10, Unsatisfiable),
            (Some("bytes=5-4"), 10, Whole),
            (Some("bytes=a-b"), 10, Whole),
            (Some("bytes=0-1,3-4"), 10, Whole),
            (Some("items=0-1"), 10, Whole),
            (Some("bytes=+1-2"), 10, Whole),
        ];
        for (value, size, expected) in cases {
            assert_eq!(parse_range(*value, *size), *expected, "{value:?} of {size}");
        }
    }
}
