//! Parsing `WWW-Authenticate` (RFC 9110 §11.6.1): one or more challenges,
//! each a scheme followed by `name=value` parameters whose values may be
//! quoted strings holding commas, spaces and `\`-escapes:
//!
//! ```text
//! Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:library/busybox:pull"
//! Basic realm="Registry Realm", Bearer realm="https://x/token"
//! ```

/// Longest header parsed; what comes after is ignored.
const MAX_HEADER_LEN: usize = 8 * 1024;

/// One challenge: the scheme (lowercased) and its parameters (names
/// lowercased, values as sent).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Challenge {
    pub scheme: String,
    pub params: Vec<(String, String)>,
}

impl Challenge {
    pub fn param(&self, name: &str) -> Option<&str> {
        self.params
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

/// All challenges in one header value. Malformed parts are skipped rather
/// than failing the whole header.
pub fn parse_challenges(header: &str) -> Vec<Challenge> {
    let mut cursor = Cursor {
        s: &header.as_bytes()[..header.len().min(MAX_HEADER_LEN)],
        at: 0,
    };
    let mut challenges: Vec<Challenge> = Vec::new();
    loop {
        cursor.skip(|b| b == b',' || b.is_ascii_whitespace());
        let scheme = cursor.token();
        if scheme.is_empty() {
            if cursor.done() {
                return challenges;
            }
            // A stray character: step over it.
            cursor.at += 1;
            continue;
        }
        let mut challenge = Challenge {
            scheme: scheme.to_ascii_lowercase(),
            params: Vec::new(),
        };
        // Parameters until the next scheme (a token not followed by '=').
        loop {
            cursor.skip(|b| b == b',' || b.is_ascii_whitespace());
            let mark = cursor.at;
            let name = cursor.token();
            cursor.skip(|b| b == b' ' || b == b'\t');
            if name.is_empty() || cursor.peek() != Some(b'=') {
                cursor.at = mark;
                break;
            }
            cursor.at += 1;
            // A token68 (`Basic dXNlcg==`) reads as a parameter with an empty
            // value; its trailing '='s must not start a value.
            cursor.skip(|b| b == b'=');
            cursor.skip(|b| b == b' ' || b == b'\t');
            let value = if cursor.peek() == Some(b'"') {
                cursor.quoted()
            } else {
                cursor.token()
            };
            challenge.params.push((name.to_ascii_lowercase(), value));
        }
        challenges.push(challenge);
    }
}

struct Cursor<'a> {
    s: &'a [u8],
    at: usize,
}

impl Cursor<'_> {
    fn done(&self) -> bool {
        self.at >= self.s.len()
    }

    fn peek(&self) -> Option<u8> {
        self.s.get(self.at).copied()
    }

    fn skip(&mut self, what: impl Fn(u8) -> bool) {
        while self.peek().is_some_and(&what) {
            self.at += 1;
        }
    }

    /// An unquoted token: everything up to a separator.
    fn token(&mut self) -> String {
        let start = self.at;
        self.skip(|b| !(b.is_ascii_whitespace() || matches!(b, b',' | b'=' | b'"')));
        String::from_utf8_lossy(&self.s[start..self.at]).into_owned()
    }

    /// A quoted string starting at the opening quote; an unterminated one
    /// runs to the end of the header.
    fn quoted(&mut self) -> String {
        self.at += 1;
        let mut out = Vec::new();
        while let Some(b) = self.peek() {
            self.at += 1;
            match b {
                b'"' => break,
                b'\\' => {
                    if let Some(escaped) = self.peek() {
                        out.push(escaped);
                        self.at += 1;
                    }
                }
                _ => out.push(b),
            }
        }
        String::from_utf8_lossy(&out).into_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn challenge(scheme: &str, params: &[(&str, &str)]) -> Challenge {
        Challenge {
            scheme: scheme.into(),
            params: params
                .iter()
                .map(|(n, v)| ((*n).to_owned(), (*v).to_owned()))
                .collect(),
        }
    }

    #[test]
    fn docker_hub() {
        let parsed = parse_challenges(
            r#"Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:library/busybox:pull""#,
        );
        assert_eq!(
            parsed,
            vec![challenge(
                "bearer",
                &[
                    ("realm", "https://auth.docker.io/token"),
                    ("service", "registry.docker.io"),
                    ("scope", "repository:library/busybox:pull"),
                ]
            )]
        );
        assert_eq!(parsed[0].param("service"), Some("registry.docker.io"));
        assert_eq!(parsed[0].param("error"), None);
    }

    #[test]
    fn commas_and_quotes_inside_values() {
        let parsed = parse_challenges(
            r#"Bearer realm="https://x/token",scope="repository:a:pull,push repository:b:pull",error="insufficient_scope", Basic realm="say \"hi\", friend""#,
        );
        assert_eq!(
            parsed,
            vec![
                challenge(
                    "bearer",
                    &[
                        ("realm", "https://x/token"),
                        ("scope", "repository:a:pull,push repository:b:pull"),
                        ("error", "insufficient_scope"),
                    ]
                ),
                challenge("basic", &[("realm", "say \"hi\", friend")]),
            ]
        );
    }

    #[test]
    fn loose_spacing_case_and_tokens() {
        let parsed = parse_challenges(
            "BASIC  Realm = plain , charset=UTF-8,Bearer realm=\"r\"  ,  Negotiate",
        );
        assert_eq!(
            parsed,
            vec![
                challenge("basic", &[("realm", "plain"), ("charset", "UTF-8")]),
                challenge("bearer", &[("realm", "r")]),
                challenge("negotiate", &[]),
            ]
        );
    }

    #[test]
    fn junk_never_panics() {
        for junk in [
            "",
            ",,,",
            "=",
            "\"",
            "Bearer realm=\"unterminated",
            "Bearer realm=",
            "Basic dXNlcjpwYXNz==",
            "Bearer ,,, realm=\"a\\",
            "é=\"ü\"",
        ] {
            let _ = parse_challenges(junk);
        }
        assert_eq!(
            parse_challenges("Bearer realm=\"unterminated"),
            vec![challenge("bearer", &[("realm", "unterminated")])]
        );
        let long = format!("Bearer realm=\"{}\"", "x".repeat(20_000));
        let parsed = parse_challenges(&long);
        assert_eq!(
            parsed[0].param("realm").map(str::len),
            Some(MAX_HEADER_LEN - 14)
        );
    }
}
