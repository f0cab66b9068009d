use reqwest::StatusCode;
use shoal_protocol::Digest;

use crate::support::{TestRegistry, assert_error};

fn location(resp: &reqwest::Response) -> String {
    resp.headers()["location"]
        .to_str()
        .expect("location")
        .to_owned()
}

#[tokio::test]
async fn post_then_put_in_one_go() {
    let reg = TestRegistry::start().await;
    let data = b"two-step upload".to_vec();
    let digest = Digest::sha256_of(&data);
    let start = reg.post_upload("app").await;
    assert_eq!(start.status(), StatusCode::ACCEPTED);
    assert!(start.headers().contains_key("docker-upload-uuid"));
    let loc = location(&start);
    let put = reg
        .client
        .put(reg.url(&format!("{loc}?digest={digest}")))
        .body(data.clone())
        .send()
        .await
        .expect("PUT");
    assert_eq!(put.status(), StatusCode::CREATED);
    assert_eq!(location(&put), format!("/v2/app/blobs/{digest}"));
    let get = reg.get(&format!("/v2/app/blobs/{digest}")).await;
    assert_eq!(get.bytes().await.expect("body").as_ref(), data.as_slice());
    reg.stop().await;
}

#[tokio::test]
async fn chunked_upload_in_order_with_status_and_out_of_order_refused() {
    let reg = TestRegistry::start().await;
    let data: Vec<u8> = (0..30_000u32).map(|i| (i * 7 % 256) as u8).collect();
    let digest = Digest::sha256_of(&data);
    let start = reg.post_upload("app").await;
    let loc = location(&start);

    let patch = |from: usize, to: usize| {
        reg.client
            .patch(reg.url(&loc))
            .header("content-type", "application/octet-stream")
            .header("content-range", format!("{from}-{}", to - 1))
            .body(data[from..to].to_vec())
            .send()
    };
    let first = patch(0, 10_000).await.expect("PATCH");
    assert_eq!(first.status(), StatusCode::ACCEPTED);
    assert_eq!(first.headers()["range"], "0-9999");

    // A chunk that skips ahead is refused with 416 and the current range.
    let skip = patch(20_000, 30_000).await.expect("PATCH");
    assert_eq!(skip.headers()["range"], "0-9999");
    assert_error(
        skip,
        StatusCode::RANGE_NOT_SATISFIABLE,
        "BLOB_UPLOAD_INVALID",
    )
    .await;
    // So is one that repeats bytes already received.
    let again = patch(0, 10_000).await.expect("PATCH");
    assert_error(
        again,
        StatusCode::RANGE_NOT_SATISFIABLE,
        "BLOB_UPLOAD_INVALID",
    )
    .await;

    let second = patch(10_000, 20_000).await.expect("PATCH");
    assert_eq!(second.status(), StatusCode::ACCEPTED);

    let status = reg.get(&loc).await;
    assert_eq!(status.status(), StatusCode::NO_CONTENT);
    assert_eq!(status.headers()["range"], "0-19999");

    // The last chunk comes with the closing PUT.
    let put = reg
        .client
        .put(reg.url(&format!("{loc}?digest={digest}")))
        .header("content-range", "20000-29999")
        .body(data[20_000..].to_vec())
        .send()
        .await
        .expect("PUT");
    assert_eq!(put.status(), StatusCode::CREATED);
    let get = reg.get(&format!("/v2/app/blobs/{digest}")).await;
    assert_eq!(get.bytes().await.expect("body").as_ref(), data.as_slice());
    // The session is gone once completed.
    assert_error(
        reg.get(&loc).await,
        StatusCode::NOT_FOUND,
        "BLOB_UPLOAD_UNKNOWN",
    )
    .await;
    reg.stop().await;
}

#[tokio::test]
async fn streamed_patch_without_content_range() {
    let reg = TestRegistry::start().await;
    let data = vec![42u8; 5000];
    let digest = Digest::sha256_of(&data);
    let start = reg.post_upload("app").await;
    let loc = location(&start);
    let patch = reg
        .client
        .patch(reg.url(&loc))
        .body(data.clone())
        .send()
        .await
        .expect("PATCH");
    assert_eq!(patch.status(), StatusCode::ACCEPTED);
    assert_eq!(patch.headers()["range"], "0-4999");
    let put = reg
        .client
        .put(reg.url(&format!("{loc}?digest={digest}")))
        .send()
        .await
        .expect("PUT");
    assert_eq!(put.status(), StatusCode::CREATED);
    reg.stop().await;
}

#[tokio::test]
async fn cancel_and_unknown_sessions() {
    let reg = TestRegistry::start().await;
    let start = reg.post_upload("app").await;
    let loc = location(&start);
    assert_eq!(reg.delete(&loc).await.status(), StatusCode::NO_CONTENT);
    assert_error(
        reg.get(&loc).await,
        StatusCode::NOT_FOUND,
        "BLOB_UPLOAD_UNKNOWN",
    )
    .await;
    assert_error(
        reg.delete(&loc).await,
        StatusCode::NOT_FOUND,
        "BLOB_UPLOAD_UNKNOWN",
    )
    .await;
    for id in ["not-a-uuid", "00000000-0000-0000-0000-000000000000"] {
        assert_error(
            reg.get(&format!("/v2/app/blobs/uploads/{id}")).await,
            StatusCode::NOT_FOUND,
            "BLOB_UPLOAD_UNKNOWN",
        )
        .await;
    }
    // A session belongs to the repository it was opened in.
    let start = reg.post_upload("app").await;
    let id = start.headers()["docker-upload-uuid"]
        .to_str()
        .expect("uuid")
        .to_owned();
    assert_error(
        reg.get(&format!("/v2/other/blobs/uploads/{id}")).await,
        StatusCode::NOT_FOUND,
        "BLOB_UPLOAD_UNKNOWN",
    )
    .await;
    reg.stop().await;
}

#[tokio::test]
async fn wrong_digest_is_refused_and_nothing_is_stored() {
    let reg = TestRegistry::start().await;
    let claimed = Digest::sha256_of(b"what the client claims");
    let resp = reg
        .client
        .post(reg.url(&format!("/v2/app/blobs/uploads/?digest={claimed}")))
        .body(b"what it sends".to_vec())
        .send()
        .await
        .expect("POST");
    assert_error(resp, StatusCode::BAD_REQUEST, "DIGEST_INVALID").await;
    assert_eq!(
        reg.head(&format!("/v2/app/blobs/{claimed}")).await.status(),
        StatusCode::NOT_FOUND
    );
    let actual = Digest::sha256_of(b"what it sends");
    assert_eq!(
        reg.head(&format!("/v2/app/blobs/{actual}")).await.status(),
        StatusCode::NOT_FOUND
    );

    // The same through a session: PUT with the wrong digest is refused too.
    let start = reg.post_upload("app").await;
    let loc = location(&start);
    let put = reg
        .client
        .put(reg.url(&format!("{loc}?digest={claimed}")))
        .body(b"what it sends".to_vec())
        .send()
        .await
        .expect("PUT");
    assert_error(put, StatusCode::BAD_REQUEST, "DIGEST_INVALID").await;
    assert_eq!(
        reg.head(&format!("/v2/app/blobs/{claimed}")).await.status(),
        StatusCode::NOT_FOUND
    );
    // A PUT with no digest at all is refused.
    let put = reg.client.put(reg.url(&loc)).send().await.expect("PUT");
    assert_error(put, StatusCode::BAD_REQUEST, "DIGEST_INVALID").await;
    reg.stop().await;
}

#[tokio::test]
async fn size_mismatch_between_range_and_length() {
    let reg = TestRegistry::start().await;
    let start = reg.post_upload("app").await;
    let loc = location(&start);
    let resp = reg
        .client
        .patch(reg.url(&loc))
        .header("content-range", "0-99")
        .body(vec![0u8; 10])
        .send()
        .await
        .expect("PATCH");
    assert_error(resp, StatusCode::BAD_REQUEST, "SIZE_INVALID").await;
    reg.stop().await;
}

#[tokio::test]
async fn cross_repository_mount() {
    let reg = TestRegistry::start().await;
    let digest = reg.push_blob("source", b"shared layer").await;
    let resp = reg
        .client
        .post(reg.url(&format!(
            "/v2/target/blobs/uploads/?mount={digest}&from=source"
        )))
        .send()
        .await
        .expect("POST mount");
    assert_eq!(resp.status(), StatusCode::CREATED);
    assert_eq!(location(&resp), format!("/v2/target/blobs/{digest}"));
    // A blob that is not here starts an ordinary session instead.
    let absent = Digest::sha256_of(b"absent");
    let resp = reg
        .client
        .post(reg.url(&format!(
            "/v2/target/blobs/uploads/?mount={absent}&from=source"
        )))
        .send()
        .await
        .expect("POST mount");
    assert_eq!(resp.status(), StatusCode::ACCEPTED);
    reg.stop().await;
}

#[tokio::test]
async fn too_many_concurrent_uploads() {
    let reg = TestRegistry::start_with(|c| c.registry.max_concurrent_uploads = 1).await;
    let start = reg.post_upload("app").await;
    let loc = location(&start);
    // Hold the only slot with a PATCH whose body never ends.
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<Vec<u8>, std::io::Error>>(1);
    tx.send(Ok(vec![1u8; 10])).await.expect("send");
    let stream = tokio_stream_from(rx);
    let slow = {
        let client = reg.client.clone();
        let url = reg.url(&loc);
        tokio::spawn(async move {
            client
                .patch(url)
                .body(reqwest::Body::wrap_stream(stream))
                .send()
                .await
        })
    };
    // Give the PATCH time to reach the handler and take the slot.
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    let mut refused = None;
    for _ in 0..100 {
        let digest = Digest::sha256_of(b"x");
        let resp = reg
            .client
            .post(reg.url(&format!("/v2/app/blobs/uploads/?digest={digest}")))
            .body(b"x".to_vec())
            .send()
            .await
            .expect("POST");
        if resp.status() == StatusCode::TOO_MANY_REQUESTS {
            refused = Some(resp);
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    if refused.is_none() {
        drop(tx);
        panic!(
            "a second upload is refused while the slot is held; slow PATCH: {:?}",
            slow.await
        );
    }
    let refused = refused.expect("checked above");
    assert_error(refused, StatusCode::TOO_MANY_REQUESTS, "TOO_MANY_REQUESTS").await;
    drop(tx);
    let slow = slow.await.expect("task").expect("PATCH");
    assert_eq!(
        slow.status(),
        StatusCode::ACCEPTED,
        "the slot holder itself completes"
    );
    reg.stop().await;
}

fn tokio_stream_from(
    mut rx: tokio::sync::mpsc::Receiver<Result<Vec<u8>, std::io::Error>>,
) -> impl futures_util::Stream<Item = Result<Vec<u8>, std::io::Error>> {
    futures_util::stream::poll_fn(move |cx| rx.poll_recv(cx))
}
