//! Reading a registry's error body (`{"errors":[{"code":…,"message":…}]}`)
//! into one short phrase for an error line.

use reqwest::StatusCode;
use serde::Deserialize;

/// Longest stretch of a non-JSON body quoted in a message.
const MAX_QUOTED: usize = 200;

#[derive(Debug, Deserialize)]
struct ErrorBody {
    #[serde(default)]
    errors: Vec<ErrorEntry>,
}

#[derive(Debug, Deserialize)]
struct ErrorEntry {
    #[serde(default)]
    code: String,
    #[serde(default)]
    message: String,
}

/// `MANIFEST_UNKNOWN: manifest unknown` (several errors joined by `; `),
/// or `HTTP 502 Bad Gateway: <start of the body>` when the body is not an
/// OCI error.
pub fn describe(status: StatusCode, body: &[u8]) -> String {
    if let Ok(parsed) = serde_json::from_slice::<ErrorBody>(body) {
        let entries: Vec<String> = parsed
            .errors
            .iter()
            .filter(|e| !e.code.is_empty() || !e.message.is_empty())
            .map(|e| match (e.code.is_empty(), e.message.is_empty()) {
                (false, false) => format!("{}: {}", e.code, one_line(&e.message)),
                (false, true) => e.code.clone(),
                _ => one_line(&e.message),
            })
            .collect();
        if !entries.is_empty() {
            return entries.join("; ");
        }
    }
    let text = one_line(&String::from_utf8_lossy(body));
    let quoted: String = text.chars().take(MAX_QUOTED).collect();
    if quoted.is_empty() {
        format!("HTTP {status}")
    } else {
        format!("HTTP {status}: {quoted}")
    }
}

fn one_line(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn oci_errors_are_code_and_message() {
        let body = br#"{"errors":[{"code":"MANIFEST_UNKNOWN","message":"manifest unknown","detail":{"tag":"x"}}]}"#;
        assert_eq!(
            describe(StatusCode::NOT_FOUND, body),
            "MANIFEST_UNKNOWN: manifest unknown"
        );
        let two = br#"{"errors":[{"code":"DENIED","message":"no"},{"code":"UNAUTHORIZED"}]}"#;
        assert_eq!(
            describe(StatusCode::FORBIDDEN, two),
            "DENIED: no; UNAUTHORIZED"
        );
    }

    #[test]
    fn other_bodies_are_quoted_on_one_line() {
        assert_eq!(
            describe(StatusCode::BAD_GATEWAY, b"upstream\nis down"),
            "HTTP 502 Bad Gateway: upstream is down"
        );
        assert_eq!(describe(StatusCode::NOT_FOUND, b""), "HTTP 404 Not Found");
        assert_eq!(
            describe(StatusCode::NOT_FOUND, br#"{"errors":[]}"#),
            r#"HTTP 404 Not Found: {"errors":[]}"#
        );
    }
}
