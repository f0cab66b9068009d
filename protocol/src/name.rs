//! Repository names and tags, validated per the OCI distribution spec grammar.
//!
//! name: `[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*(\/[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*)*`
//! tag:  `[a-zA-Z0-9_][a-zA-Z0-9._-]{0,127}`
//!
//! A validated name can never contain `..`, an empty path component or a
//! leading `/`, so it is safe to use in keys and (per component) in paths.
//! A [`Reference`] is the `<reference>` of `/v2/<name>/manifests/<reference>`:
//! a tag or a digest.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::digest::{Digest, DigestError};

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

/// The `<reference>` path segment of `/v2/<name>/manifests/<reference>`.
///
/// Tags cannot contain `:` and digests always do, so the form is decided by
/// that one character: a reference with a `:` is a digest or nothing (its
/// error is the digest's, so a registry can answer `DIGEST_INVALID`), one
/// without is a tag or nothing.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Reference {
    Tag(Tag),
    Digest(Digest),
}

/// Why a manifest reference is neither a valid tag nor a valid digest.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReferenceError {
    /// The reference contains `:` but is not a valid digest.
    #[error(transparent)]
    Digest(#[from] DigestError),
    /// The reference has no `:` and is not a valid tag.
    #[error(transparent)]
    Tag(#[from] NameError),
}

impl Reference {
    pub fn as_tag(&self) -> Option<&Tag> {
        match self {
            Reference::Tag(t) => Some(t),
            Reference::Digest(_) => None,
        }
    }

    pub fn as_digest(&self) -> Option<&Digest> {
        match self {
            Reference::Digest(d) => Some(d),
            Reference::Tag(_) => None,
        }
    }
}

impl FromStr for Reference {
    type Err = ReferenceError;

    fn from_str(s: &str) -> Result<Reference, ReferenceError> {
        if s.contains(':') {
            Ok(Reference::Digest(s.parse()?))
        } else {
            Ok(Reference::Tag(s.parse()?))
        }
    }
}

impl fmt::Display for Reference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Reference::Tag(t) => f.write_str(t.as_str()),
            Reference::Digest(d) => fmt::Display::fmt(d, f),
        }
    }
}

impl From<Tag> for Reference {
    fn from(t: Tag) -> Reference {
        Reference::Tag(t)
    }
}

impl From<Digest> for Reference {
    fn from(d: Digest) -> Reference {
        Reference::Digest(d)
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
serde_via_str!(Reference);

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;
    use crate::digest::Algorithm;

    const EMPTY: &str = "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

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
            "a b", "a%2fb", "a._b", "a_-b", "a:b", "a\\b", "é",
        ] {
            assert!(bad.parse::<RepoName>().is_err(), "{bad:?}");
        }
        assert!("x".repeat(256).parse::<RepoName>().is_err());
        for ok in ["latest", "v1.2.3", "_x", "A-b.C_9", "a..b", "__", "9"] {
            assert!(ok.parse::<Tag>().is_ok(), "{ok}");
        }
        for bad in ["", ".x", "-x", "a/b", "a:b", "..", "t".repeat(129).as_str()] {
            assert!(bad.parse::<Tag>().is_err(), "{bad:?}");
        }
    }

    #[test]
    fn name_errors() {
        assert_eq!("".parse::<RepoName>(), Err(NameError::EmptyName));
        assert!("a".repeat(MAX_NAME_LEN).parse::<RepoName>().is_ok());
        assert_eq!(
            "a".repeat(MAX_NAME_LEN + 1).parse::<RepoName>(),
            Err(NameError::NameTooLong)
        );
        assert_eq!(
            "a//b".parse::<RepoName>(),
            Err(NameError::InvalidComponent(String::new()))
        );
        assert_eq!(
            "ok/Bad/ok".parse::<RepoName>(),
            Err(NameError::InvalidComponent("Bad".into()))
        );
        assert_eq!(
            "a/../b".parse::<RepoName>(),
            Err(NameError::InvalidComponent("..".into()))
        );
        // The offending component is cut in the error, so a client cannot
        // make the server echo a huge string.
        let Err(NameError::InvalidComponent(c)) =
            format!("{}-", "a".repeat(200)).parse::<RepoName>()
        else {
            panic!("a trailing '-' is an invalid component");
        };
        assert_eq!(c.len(), 64);
    }

    #[test]
    fn tag_errors() {
        assert!("t".repeat(128).parse::<Tag>().is_ok());
        for bad in ["", ".x", "-x", "a b", "a/b", "é"] {
            assert_eq!(
                bad.parse::<Tag>(),
                Err(NameError::InvalidTag(bad.into())),
                "{bad:?}"
            );
        }
        assert_eq!(
            "t".repeat(129).parse::<Tag>(),
            Err(NameError::InvalidTag("t".repeat(64)))
        );
    }

    #[test]
    fn references() {
        let tag: Reference = "v1.0".parse().expect("tag");
        assert_eq!(tag.as_tag().map(Tag::as_str), Some("v1.0"));
        assert_eq!(tag.as_digest(), None);
        assert_eq!(tag.to_string(), "v1.0");

        let digest: Reference = EMPTY.parse().expect("digest");
        assert_eq!(digest, Reference::from(Digest::sha256_of(b"")));
        assert_eq!(digest.as_tag(), None);
        assert_eq!(digest.to_string(), EMPTY);

        assert_eq!(
            "md5:abc".parse::<Reference>(),
            Err(ReferenceError::Digest(DigestError::UnsupportedAlgorithm(
                "md5".into()
            )))
        );
        assert!(matches!(
            "sha256:abc".parse::<Reference>(),
            Err(ReferenceError::Digest(DigestError::WrongLength { .. }))
        ));
        // A ':' makes it a digest even where a tag was probably meant.
        assert!(matches!(
            "latest:".parse::<Reference>(),
            Err(ReferenceError::Digest(_))
        ));
        assert_eq!(
            "".parse::<Reference>(),
            Err(ReferenceError::Tag(NameError::InvalidTag(String::new())))
        );
        assert_eq!(
            "-x".parse::<Reference>(),
            Err(ReferenceError::Tag(NameError::InvalidTag("-x".into())))
        );
    }

    #[test]
    fn serde_validates() {
        let name: RepoName = serde_json::from_str("\"library/busybox\"").expect("name");
        assert_eq!(
            serde_json::to_string(&name).expect("json"),
            "\"library/busybox\""
        );
        assert!(serde_json::from_str::<RepoName>("\"../etc\"").is_err());
        assert!(serde_json::from_str::<Tag>("\"a/b\"").is_err());
        let r: Reference = serde_json::from_str(&format!("\"{EMPTY}\"")).expect("reference");
        assert!(r.as_digest().is_some());
        assert!(serde_json::from_str::<Reference>("\"sha256:x\"").is_err());
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

    /// Names from the spec grammar, within the length limit.
    fn grammar_name() -> impl Strategy<Value = String> {
        proptest::collection::vec(component(), 1..6)
            .prop_map(|parts| parts.join("/"))
            .prop_filter("at most MAX_NAME_LEN", |n| n.len() <= MAX_NAME_LEN)
    }

    /// Strings built from fragments that valid names are made of, and ones
    /// they must not contain, so that both outcomes are common.
    fn name_like() -> impl Strategy<Value = String> {
        let fragment = prop_oneof![
            4 => "[a-z0-9]{1,6}",
            2 => Just("/".to_owned()),
            1 => Just(".".to_owned()),
            1 => Just("..".to_owned()),
            1 => Just("_".to_owned()),
            1 => Just("-".to_owned()),
            1 => "[A-Z]",
            1 => "\\PC",
        ];
        proptest::collection::vec(fragment, 0..12).prop_map(|f| f.concat())
    }

    fn grammar_tag() -> impl Strategy<Value = String> {
        "[a-zA-Z0-9_][a-zA-Z0-9._-]{0,127}"
    }

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

    proptest! {
        #[test]
        fn grammar_names_parse(name in grammar_name()) {
            let parsed: RepoName = name.parse().expect("grammar name parses");
            prop_assert_eq!(parsed.as_str(), name.as_str());
            prop_assert_eq!(parsed.to_string(), name.clone());
            let json = serde_json::to_string(&parsed).expect("json");
            prop_assert_eq!(serde_json::from_str::<RepoName>(&json).expect("from json"), parsed);
        }

        #[test]
        fn long_names_are_refused(parts in proptest::collection::vec(component(), 40..80)) {
            let name = parts.join("/");
            prop_assume!(name.len() > MAX_NAME_LEN);
            prop_assert_eq!(name.parse::<RepoName>(), Err(NameError::NameTooLong));
        }

        #[test]
        fn damaged_names_are_refused(name in grammar_name(),
                                     at in any::<prop::sample::Index>(),
                                     damage in prop_oneof![
                                         Just("..".to_owned()),
                                         Just("//".to_owned()),
                                         "[A-Z]",
                                         "[^a-z0-9._/-]",
                                     ]) {
            // Names are ASCII, so every index is a char boundary.
            let i = at.index(name.len() + 1);
            let damaged = format!("{}{damage}{}", &name[..i], &name[i..]);
            prop_assert!(damaged.parse::<RepoName>().is_err(), "{}", damaged);
            for bad in [format!("/{name}"), format!("{name}/"), format!("/{name}/")] {
                prop_assert!(bad.parse::<RepoName>().is_err(), "{}", bad);
            }
        }

        #[test]
        fn parsed_names_are_safe_paths(s in prop_oneof![name_like(), "[a-z0-9./_-]{0,40}", "\\PC{0,300}"]) {
            if let Ok(name) = s.parse::<RepoName>() {
                let n = name.as_str();
                prop_assert!(!n.contains(".."));
                prop_assert!(!n.contains("//"));
                prop_assert!(!n.starts_with('/') && !n.ends_with('/'));
                prop_assert!(!n.is_empty() && n.len() <= MAX_NAME_LEN);
                prop_assert!(n.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"._/-".contains(&b)));
                prop_assert!(n.split('/').all(|c| c != ".." && c != "." && !c.is_empty()));
            }
        }

        #[test]
        fn traversal_is_refused(a in component(), b in component()) {
            for bad in [format!("{a}/../{b}"), format!("../{a}"), format!("{a}//{b}"), format!("/{a}"), format!("{a}/")] {
                prop_assert!(bad.parse::<RepoName>().is_err(), "{}", bad);
            }
        }

        #[test]
        fn grammar_tags_parse(tag in grammar_tag()) {
            let parsed: Tag = tag.parse().expect("grammar tag parses");
            prop_assert_eq!(parsed.as_str(), tag.as_str());
            let json = serde_json::to_string(&parsed).expect("json");
            prop_assert_eq!(serde_json::from_str::<Tag>(&json).expect("from json"), parsed);
        }

        #[test]
        fn damaged_tags_are_refused(tag in grammar_tag(),
                                    at in any::<prop::sample::Index>(),
                                    bad in "[^a-zA-Z0-9._-]",
                                    lead in "[.-]",
                                    pad in "[a-z]{129,140}") {
            let i = at.index(tag.len() + 1);
            let damaged = format!("{}{bad}{}", &tag[..i], &tag[i..]);
            prop_assert!(damaged.parse::<Tag>().is_err(), "{}", damaged);
            let led = format!("{lead}{tag}");
            prop_assert!(led.parse::<Tag>().is_err(), "{}", led);
            let long = format!("{tag}{pad}");
            prop_assert!(long.parse::<Tag>().is_err());
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

        #[test]
        fn references_are_tags_or_digests(tag in grammar_tag(), d in any_digest()) {
            let r: Reference = tag.parse().expect("tag reference");
            prop_assert_eq!(r.as_tag().map(Tag::as_str), Some(tag.as_str()));
            prop_assert_eq!(r.to_string(), tag);
            let r: Reference = d.to_string().parse().expect("digest reference");
            prop_assert_eq!(r.as_digest(), Some(&d));
            prop_assert_eq!(r.to_string(), d.to_string());
        }

        #[test]
        fn references_with_colons_are_never_tags(s in "\\PC{0,40}:\\PC{0,80}") {
            prop_assert!(!matches!(s.parse::<Reference>(), Ok(Reference::Tag(_)) | Err(ReferenceError::Tag(_))));
        }
    }
}
