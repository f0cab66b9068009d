use reqwest::StatusCode;
use shoal_protocol::Digest;

use crate::support::{TestRegistry, assert_error};

#[tokio::test]
async fn base_endpoint_answers_with_api_version() {
    let reg = TestRegistry::start().await;
    let resp = reg.get("/v2/").await;
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(
        resp.headers()["docker-distribution-api-version"],
        "registry/2.0"
    );
    assert_eq!(reg.head("/v2/").await.status(), StatusCode::OK);
    reg.stop().await;
}

#[tokio::test]
async fn get_and_head_blob_with_headers() {
    let reg = TestRegistry::start().await;
    let data: Vec<u8> = (0..100_000u32).map(|i| (i % 251) as u8).collect();
    let digest = reg.push_blob("app", &data).await;

    let head = reg.head(&format!("/v2/app/blobs/{digest}")).await;
    assert_eq!(head.status(), StatusCode::OK);
    assert_eq!(head.headers()["content-length"], "100000");
    assert_eq!(
        head.headers()["docker-content-digest"],
        digest.to_string().as_str()
    );

    let get = reg.get(&format!("/v2/app/blobs/{digest}")).await;
    assert_eq!(get.status(), StatusCode::OK);
    assert_eq!(
        get.headers()["docker-content-digest"],
        digest.to_string().as_str()
    );
    assert_eq!(get.bytes().await.expect("body").as_ref(), data.as_slice());

    // Content-addressed and global: another repository reads it by digest.
    let other = reg.get(&format!("/v2/other/repo/blobs/{digest}")).await;
    assert_eq!(other.status(), StatusCode::OK);
    reg.stop().await;
}

#[tokio::test]
async fn range_requests() {
    let reg = TestRegistry::start().await;
    let data: Vec<u8> = (0..1000u32).map(|i| (i % 256) as u8).collect();
    let digest = reg.push_blob("app", &data).await;
    let path = format!("/v2/app/blobs/{digest}");
    let cases: [(&str, usize, usize); 4] = [
        ("bytes=0-9", 0, 9),
        ("bytes=990-", 990, 999),
        ("bytes=-5", 995, 999),
        ("bytes=500-5000", 500, 999),
    ];
    for (range, start, end) in cases {
        let resp = reg
            .client
            .get(reg.url(&path))
            .header("range", range)
            .send()
            .await
            .expect("GET range");
        assert_eq!(resp.status(), StatusCode::PARTIAL_CONTENT, "{range}");
        assert_eq!(
            resp.headers()["content-range"],
            format!("bytes {start}-{end}/1000").as_str()
        );
        assert_eq!(
            resp.bytes().await.expect("body").as_ref(),
            &data[start..=end],
            "{range}"
        );
    }
    let resp = reg
        .client
        .get(reg.url(&path))
        .header("range", "bytes=1000-")
        .send()
        .await
        .expect("GET range");
    assert_eq!(resp.headers()["content-range"], "bytes */1000");
    assert_error(resp, StatusCode::RANGE_NOT_SATISFIABLE, "RANGE_INVALID").await;
    reg.stop().await;
}

#[tokio::test]
async fn unknown_and_deleted_blobs() {
    let reg = TestRegistry::start().await;
    let missing = Digest::sha256_of(b"never pushed");
    assert_error(
        reg.get(&format!("/v2/app/blobs/{missing}")).await,
        StatusCode::NOT_FOUND,
        "BLOB_UNKNOWN",
    )
    .await;
    let head = reg.head(&format!("/v2/app/blobs/{missing}")).await;
    assert_eq!(head.status(), StatusCode::NOT_FOUND);

    let digest = reg.push_blob("app", b"short-lived").await;
    let del = reg.delete(&format!("/v2/app/blobs/{digest}")).await;
    assert_eq!(del.status(), StatusCode::ACCEPTED);
    assert_error(
        reg.get(&format!("/v2/app/blobs/{digest}")).await,
        StatusCode::NOT_FOUND,
        "BLOB_UNKNOWN",
    )
    .await;
    assert_error(
        reg.delete(&format!("/v2/app/blobs/{digest}")).await,
        StatusCode::NOT_FOUND,
        "BLOB_UNKNOWN",
    )
    .await;
    reg.stop().await;
}

#[tokio::test]
async fn sha512_blobs_are_served() {
    let reg = TestRegistry::start().await;
    let data = b"sha512 content".to_vec();
    let digest = Digest::compute(shoal_protocol::Algorithm::Sha512, &data);
    let resp = reg
        .client
        .post(reg.url(&format!("/v2/app/blobs/uploads/?digest={digest}")))
        .body(data.clone())
        .send()
        .await
        .expect("POST");
    assert_eq!(resp.status(), StatusCode::CREATED);
    let get = reg.get(&format!("/v2/app/blobs/{digest}")).await;
    assert_eq!(get.status(), StatusCode::OK);
    assert_eq!(get.bytes().await.expect("body").as_ref(), data.as_slice());
    reg.stop().await;
}
