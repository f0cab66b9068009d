//! Malformed digests, invalid names and traversal attempts: each gets its
//! status and OCI code, nothing panics, and the store is left as it was.

use reqwest::StatusCode;
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::support::{TestRegistry, assert_error, snapshot};

const BAD_DIGESTS: &[&str] = &[
    "sha256:abc",
    "sha256:E3B0C44298FC1C149AFBF4C8996FB92427AE41E4649B934CA495991B7852B855",
    "md5:d41d8cd98f00b204e9800998ecf8427e",
    "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b85z",
    "sha256:",
    "sha999:00",
    "sha256:..%2F..%2Fetc%2Fpasswd",
];

/// Sends a request byte for byte, so that `..` and odd encodings reach the
/// server unnormalised (HTTP clients clean such paths up before sending).
async fn raw_request(reg: &TestRegistry, method: &str, path: &str) -> (u16, String) {
    let addr = reg.base.trim_start_matches("http://");
    let mut stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let request = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    );
    stream.write_all(request.as_bytes()).await.expect("write");
    let mut response = Vec::new();
    stream.read_to_end(&mut response).await.expect("read");
    let text = String::from_utf8_lossy(&response).into_owned();
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .expect("status line");
    let body = text.split("\r\n\r\n").nth(1).unwrap_or_default().to_owned();
    (status, body)
}

fn code_of(body: &str) -> String {
    let v: Value = serde_json::from_str(body).unwrap_or(Value::Null);
    v["errors"][0]["code"]
        .as_str()
        .unwrap_or_default()
        .to_owned()
}

#[tokio::test]
async fn malformed_digests_are_400_digest_invalid_everywhere() {
    let reg = TestRegistry::start().await;
    reg.push_image("app", "v1", b"layer").await;
    let before = snapshot(&reg, &["app"]).await;
    for bad in BAD_DIGESTS {
        for (method, path) in [
            ("GET", format!("/v2/app/blobs/{bad}")),
            ("HEAD", format!("/v2/app/blobs/{bad}")),
            ("DELETE", format!("/v2/app/blobs/{bad}")),
            ("GET", format!("/v2/app/manifests/{bad}")),
            ("DELETE", format!("/v2/app/manifests/{bad}")),
            ("PUT", format!("/v2/app/manifests/{bad}")),
            ("POST", format!("/v2/app/blobs/uploads/?digest={bad}")),
            (
                "POST",
                format!("/v2/app/blobs/uploads/?mount={bad}&from=app"),
            ),
            ("GET", format!("/v2/app/referrers/{bad}")),
        ] {
            let (status, body) = raw_request(&reg, method, &path).await;
            assert_eq!(status, 400, "{method} {path}: {body}");
            if method != "HEAD" {
                assert_eq!(code_of(&body), "DIGEST_INVALID", "{method} {path}");
            }
        }
    }
    assert_eq!(snapshot(&reg, &["app"]).await, before, "store unchanged");
    reg.stop().await;
}

#[tokio::test]
async fn invalid_names_and_traversal_never_reach_the_store() {
    let reg = TestRegistry::start().await;
    reg.push_image("app", "v1", b"layer").await;
    let before = snapshot(&reg, &["app"]).await;
    let names = [
        "../app",
        "app/..",
        "..",
        "a/../../etc",
        "%2e%2e/app",
        "app%2F..%2F..",
        "App",
        "a//b",
        "-app",
        "app-",
        "a__b__",
        "app/.hidden",
    ];
    for name in names {
        for (method, suffix) in [
            ("GET", "/manifests/v1"),
            ("PUT", "/manifests/v1"),
            ("DELETE", "/manifests/v1"),
            ("GET", "/tags/list"),
            ("POST", "/blobs/uploads/"),
            (
                "GET",
                "/blobs/sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
            ),
        ] {
            let path = format!("/v2/{name}{suffix}");
            let (status, body) = raw_request(&reg, method, &path).await;
            // The path must never be answered as a valid request.
            assert!(
                status == 400 || status == 404,
                "{method} {path} answered {status}: {body}"
            );
            if status == 400 {
                assert_eq!(code_of(&body), "NAME_INVALID", "{method} {path}");
            }
        }
    }
    // A plain invalid name is NAME_INVALID, precisely.
    let (status, body) = raw_request(&reg, "GET", "/v2/UPPER/tags/list").await;
    assert_eq!((status, code_of(&body).as_str()), (400, "NAME_INVALID"));
    let (status, body) = raw_request(&reg, "GET", "/v2/a/../b/manifests/v1").await;
    assert_eq!((status, code_of(&body).as_str()), (400, "NAME_INVALID"));
    assert_eq!(snapshot(&reg, &["app"]).await, before, "store unchanged");
    // Nothing outside the data dir was created by any of it.
    let parent = reg.dir.path();
    let entries: Vec<_> = std::fs::read_dir(parent)
        .expect("read temp dir")
        .flatten()
        .map(|e| e.file_name())
        .collect();
    assert_eq!(entries, vec![std::ffi::OsString::from("data")]);
    reg.stop().await;
}

#[tokio::test]
async fn unknown_endpoints_and_bad_tags() {
    let reg = TestRegistry::start().await;
    let (status, body) = raw_request(&reg, "GET", "/v2/app/nothing/here").await;
    assert_eq!(status, 404, "{body}");
    let (status, _) = raw_request(&reg, "GET", "/not-the-api").await;
    assert_eq!(status, 404);
    let (status, body) = raw_request(&reg, "GET", "/v2/app/manifests/.bad-tag").await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(code_of(&body), "MANIFEST_INVALID");
    let long_tag = "t".repeat(129);
    let resp = reg.get(&format!("/v2/app/manifests/{long_tag}")).await;
    assert_error(resp, StatusCode::BAD_REQUEST, "MANIFEST_INVALID").await;
    reg.stop().await;
}
