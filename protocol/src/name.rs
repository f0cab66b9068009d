//! Repository names and tags, validated per the OCI distribution spec grammar.
//!
//! name: `[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*(\/[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*)*`
//! tag:  `[a-zA-Z0-9_][a-zA-Z0-9._-]{0,127}`
//!
//! A validated name can never contain `..`, an empty path component or a
//! leading `/`, so it is safe to use in keys and (per component) in paths.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Longest repository name accepted (the spec suggests clients keep below 255).
pub const MAX_NAME_LEN: usize = 255;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NameError {
    #[error("repository name is empty")]
    EmptyName,
    #[error("repository name is longer than {MAX_NAME_LEN} characters")]
    NameTooLong,
    #[error("repository name component {0:?} does not match [a-z0-9]+((.|_|__|-+)[a-z0-9]+)*")]
    InvalidComponent(String),
    #[error("tag {0:?} does not match [a-zA-Z0-9_][a-zA-Z0-9._-]{{0,127}}")]
    InvalidTag(String),
}

/// A validated repository name such as `library/busybox`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RepoName(String);

impl RepoName {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

fn valid_component(c: &str) -> bool {
    // [a-z0-9]+ separated by '.', '_', '__' or one or more '-'.
    let b = c.as_bytes();
    if b.is_empty() {
        return false;
    }
    let alnum = |x: u8| x.is_ascii_lowercase() || x.is_ascii_digit();
    if !alnum(b[0]) || !alnum(b[b.len() - 1]) {
        return false;
    }
    let mut i = 0;
    while i < b.len() {
        if alnum(b[i]) {
            i += 1;
            continue;
        }
        let start = i;
        while i < b.len() && !alnum(b[i]) {
            i += 1;
        }
        let sep = &c[start..i];
        let ok = sep == "." || sep == "_" || sep == "__" || sep.bytes().all(|x| x == b'-');
        if !ok {
            return false;
        }
    }
    true
}

impl FromStr for RepoName {
    type Err = NameError;

    fn from_str(s: &str) -> Result<RepoName, NameError> {
        if s.is_empty() {
            return Err(NameError::EmptyName);
        }
        if s.len() > MAX_NAME_LEN {
            return Err(NameError::NameTooLong);
        }
        for component in s.split('/') {
            if !valid_component(component) {
                return Err(NameError::InvalidComponent(
                    component.chars().take(64).collect(),
                ));
            }
        }
        Ok(RepoName(s.to_owned()))
    }
}

impl fmt::Display for RepoName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A validated tag such as `latest` or `v1.2.3`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Tag(String);

impl Tag {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl FromStr for Tag {
    type Err = NameError;

    fn from_str(s: &str) -> Result<Tag, NameError> {
        let b = s.as_bytes();
        let first_ok = b
            .first()
            .is_some_and(|&x| x.is_ascii_alphanumeric() || x == b'_');
        let rest_ok = b
            .iter()
            .skip(1)
            .all(|&x| x.is_ascii_alphanumeric() || matches!(x, b'_' | b'.' | b'-'));
        if !first_ok || !rest_ok || b.len() > 128 {
            return Err(NameError::InvalidTag(s.chars().take(64).collect()));
        }
        Ok(Tag(s.to_owned()))
    }
}

impl fmt::Display for Tag {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

macro_rules! serde_via_str {
    ($t:ty) => {
        impl Serialize for $t {
            fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                serializer.collect_str(self)
            }
        }
        impl<'de> Deserialize<'de> for $t {
            fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<$t, D::Error> {
                let s = <std::borrow::Cow<'de, str>>::deserialize(deserializer)?;
                s.parse().map_err(serde::de::Error::custom)
            }
        }
    };
}
serde_via_str!(RepoName);
serde_via_str!(Tag);

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    #[test]
    fn examples() {
        for ok in [
            "a",
            "library/busybox",
            "a.b_c__d---e/f0",
            "0/1/2",
            "ghcr.io/x",
        ] {
            assert!(ok.parse::<RepoName>().is_ok(), "{ok}");
        }
        for bad in [
            "", "A", "a/", "/a", "a//b", "..", "a/../b", "a/./b", "-a", "a-", "a___b", "a..b",
            "a b", "a%2fb",
        ] {
            assert!(bad.parse::<RepoName>().is_err(), "{bad:?}");
        }
        assert!("x".repeat(256).parse::<RepoName>().is_err());
        for ok in ["latest", "v1.2.3", "_x", "A-b.C_9"] {
            assert!(ok.parse::<Tag>().is_ok(), "{ok}");
        }
        for bad in ["", ".x", "-x", "a/b", "a:b", "..", "t".repeat(129).as_str()] {
            assert!(bad.parse::<Tag>().is_err(), "{bad:?}");
        }
    }

    fn component() -> impl Strategy<Value = String> {
        (
            "[a-z0-9]{1,8}",
            proptest::collection::vec(("(\\.|_|__|-{1,3})", "[a-z0-9]{1,8}"), 0..3),
        )
            .prop_map(|(first, rest)| {
                let mut s = first;
                for (sep, word) in rest {
                    s.push_str(&sep);
                    s.push_str(&word);
                }
                s
            })
    }

    proptest! {
        #[test]
        fn grammar_names_parse(parts in proptest::collection::vec(component(), 1..5)) {
            let name = parts.join("/");
            prop_assume!(name.len() <= MAX_NAME_LEN);
            let parsed: RepoName = name.parse().expect("grammar name parses");
            prop_assert_eq!(parsed.as_str(), name.as_str());
        }

        #[test]
        fn parsed_names_are_safe_paths(s in "[a-z0-9./_-]{0,40}") {
            if let Ok(name) = s.parse::<RepoName>() {
                prop_assert!(!name.as_str().starts_with('/'));
                prop_assert!(!name.as_str().ends_with('/'));
                prop_assert!(name.as_str().split('/').all(|c| c != ".." && c != "." && !c.is_empty()));
            }
        }

        #[test]
        fn traversal_is_refused(a in component(), b in component()) {
            for bad in [format!("{a}/../{b}"), format!("../{a}"), format!("{a}//{b}"), format!("/{a}"), format!("{a}/")] {
                prop_assert!(bad.parse::<RepoName>().is_err(), "{}", bad);
            }
        }

        #[test]
        fn tags_match_the_grammar(s in "\\PC{0,140}") {
            let ok = s.parse::<Tag>().is_ok();
            let grammar = !s.is_empty()
                && s.len() <= 128
                && s.chars().next().is_some_and(|c| c.is_ascii_alphanumeric() || c == '_')
                && s.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'));
            prop_assert_eq!(ok, grammar);
        }
    }
}
