//! Where the node got what it served, from its `X-Shoal-Source` header.

use std::fmt;

use reqwest::header::HeaderMap;

pub const SOURCE_HEADER: &str = "x-shoal-source";

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Source {
    /// The node's own store.
    Local,
    /// Other shoal nodes.
    Peers,
    /// The upstream registry.
    Upstream,
    /// The node did not say (an older node, or a value this client does
    /// not know).
    Unknown,
}

impl Source {
    pub fn of(headers: &HeaderMap) -> Source {
        let value = headers
            .get(SOURCE_HEADER)
            .and_then(|v| v.to_str().ok())
            .map(|v| v.trim().to_ascii_lowercase());
        match value.as_deref() {
            Some("local") => Source::Local,
            Some("peers") => Source::Peers,
            Some("upstream") => Source::Upstream,
            _ => Source::Unknown,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Source::Local => "local",
            Source::Peers => "peers",
            Source::Upstream => "upstream",
            Source::Unknown => "unknown",
        }
    }
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use reqwest::header::HeaderValue;

    use super::*;

    #[test]
    fn the_header_names_the_source_and_its_absence_is_unknown() {
        let mut headers = HeaderMap::new();
        assert_eq!(Source::of(&headers), Source::Unknown);
        for (value, source) in [
            ("local", Source::Local),
            ("Peers", Source::Peers),
            ("upstream", Source::Upstream),
            ("elsewhere", Source::Unknown),
        ] {
            headers.insert(SOURCE_HEADER, HeaderValue::from_static(value));
            assert_eq!(Source::of(&headers), source, "{value}");
        }
    }
}
