use reqwest::StatusCode;
use serde_json::json;
use shoal_protocol::Digest;

use crate::support::{
    DOCKER_LIST, DOCKER_MANIFEST, OCI_INDEX, OCI_MANIFEST, TestRegistry, assert_error,
    image_manifest,
};

#[tokio::test]
async fn push_and_pull_by_tag_and_digest() {
    let reg = TestRegistry::start().await;
    let (body, digest) = reg.push_image("library/app", "v1", b"layer bytes").await;
    for reference in ["v1".to_owned(), digest.to_string()] {
        let resp = reg
            .get(&format!("/v2/library/app/manifests/{reference}"))
            .await;
        assert_eq!(resp.status(), StatusCode::OK);
        assert_eq!(resp.headers()["content-type"], OCI_MANIFEST);
        assert_eq!(
            resp.headers()["docker-content-digest"],
            digest.to_string().as_str()
        );
        assert_eq!(
            resp.headers()["content-length"],
            body.len().to_string().as_str()
        );
        assert_eq!(resp.bytes().await.expect("body").as_ref(), body.as_slice());
        let head = reg
            .head(&format!("/v2/library/app/manifests/{reference}"))
            .await;
        assert_eq!(head.status(), StatusCode::OK);
        assert_eq!(
            head.headers()["content-length"],
            body.len().to_string().as_str()
        );
        assert_eq!(
            head.headers()["docker-content-digest"],
            digest.to_string().as_str()
        );
    }
    reg.stop().await;
}

#[tokio::test]
async fn put_response_headers_and_put_by_digest() {
    let reg = TestRegistry::start().await;
    let config = reg.push_blob("app", b"{}").await;
    let body = image_manifest(&config, 2, &[], None);
    let digest = Digest::sha256_of(&body);
    let resp = reg
        .put_manifest("app", &digest.to_string(), Some(OCI_MANIFEST), &body)
        .await;
    assert_eq!(resp.status(), StatusCode::CREATED);
    assert_eq!(
        resp.headers()["location"],
        format!("/v2/app/manifests/{digest}").as_str()
    );
    assert_eq!(
        resp.headers()["docker-content-digest"],
        digest.to_string().as_str()
    );
    // By digest the body must hash to it.
    let wrong = Digest::sha256_of(b"other");
    let resp = reg
        .put_manifest("app", &wrong.to_string(), Some(OCI_MANIFEST), &body)
        .await;
    assert_error(resp, StatusCode::BAD_REQUEST, "DIGEST_INVALID").await;
    reg.stop().await;
}

#[tokio::test]
async fn media_type_comes_from_content_type_when_body_omits_it() {
    let reg = TestRegistry::start().await;
    let config = reg.push_blob("app", b"{}").await;
    let body = serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "config": {"mediaType": "application/vnd.docker.container.image.v1+json", "digest": config.to_string(), "size": 2},
        "layers": []
    }))
    .expect("json");
    let resp = reg
        .put_manifest("app", "docker", Some(DOCKER_MANIFEST), &body)
        .await;
    assert_eq!(resp.status(), StatusCode::CREATED);
    let get = reg
        .client
        .get(reg.url("/v2/app/manifests/docker"))
        .header("accept", DOCKER_MANIFEST)
        .send()
        .await
        .expect("GET");
    assert_eq!(get.status(), StatusCode::OK);
    assert_eq!(get.headers()["content-type"], DOCKER_MANIFEST);
    reg.stop().await;
}

#[tokio::test]
async fn accept_negotiation_never_converts() {
    let reg = TestRegistry::start().await;
    let (_, digest) = reg.push_image("app", "oci", b"l").await;
    // A client that only takes Docker manifests is not handed an OCI one.
    let resp = reg
        .client
        .get(reg.url("/v2/app/manifests/oci"))
        .header("accept", DOCKER_MANIFEST)
        .send()
        .await
        .expect("GET");
    assert_error(resp, StatusCode::NOT_FOUND, "MANIFEST_UNKNOWN").await;
    // Listing several types, with parameters and q-values, works.
    let resp = reg
        .client
        .get(reg.url("/v2/app/manifests/oci"))
        .header("accept", format!("{DOCKER_MANIFEST}, {OCI_MANIFEST};q=0.9"))
        .send()
        .await
        .expect("GET");
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(
        resp.headers()["docker-content-digest"],
        digest.to_string().as_str()
    );

    // An index and a Docker manifest list are served as what they are.
    for (media_type, tag) in [(OCI_INDEX, "idx"), (DOCKER_LIST, "list")] {
        let index = serde_json::to_vec(&json!({
            "schemaVersion": 2,
            "mediaType": media_type,
            "manifests": [{"mediaType": OCI_MANIFEST, "digest": digest.to_string(), "size": 10,
                           "platform": {"architecture": "amd64", "os": "linux"}}]
        }))
        .expect("json");
        let resp = reg.put_manifest("app", tag, Some(media_type), &index).await;
        assert_eq!(resp.status(), StatusCode::CREATED, "{media_type}");
        let get = reg
            .client
            .get(reg.url(&format!("/v2/app/manifests/{tag}")))
            .header("accept", media_type)
            .send()
            .await
            .expect("GET");
        assert_eq!(get.status(), StatusCode::OK);
        assert_eq!(get.headers()["content-type"], media_type);
        let refused = reg
            .client
            .get(reg.url(&format!("/v2/app/manifests/{tag}")))
            .header("accept", OCI_MANIFEST)
            .send()
            .await
            .expect("GET");
        assert_eq!(refused.status(), StatusCode::NOT_FOUND);
    }
    reg.stop().await;
}

#[tokio::test]
async fn referenced_blobs_must_exist() {
    let reg = TestRegistry::start().await;
    let config = reg.push_blob("app", b"{}").await;
    let missing = Digest::sha256_of(b"missing layer");
    let body = image_manifest(&config, 2, &[(missing.clone(), 13)], None);
    let resp = reg
        .put_manifest("app", "v1", Some(OCI_MANIFEST), &body)
        .await;
    assert_error(resp, StatusCode::BAD_REQUEST, "MANIFEST_BLOB_UNKNOWN").await;
    // An index whose child manifest is absent is refused the same way.
    let index = serde_json::to_vec(&json!({
        "schemaVersion": 2, "mediaType": OCI_INDEX,
        "manifests": [{"mediaType": OCI_MANIFEST, "digest": missing.to_string(), "size": 1}]
    }))
    .expect("json");
    let resp = reg
        .put_manifest("app", "idx", Some(OCI_INDEX), &index)
        .await;
    assert_error(resp, StatusCode::BAD_REQUEST, "MANIFEST_BLOB_UNKNOWN").await;
    assert_error(
        reg.get("/v2/app/manifests/v1").await,
        StatusCode::NOT_FOUND,
        "NAME_UNKNOWN",
    )
    .await;
    reg.stop().await;
}

#[tokio::test]
async fn invalid_manifests_are_refused() {
    let reg = TestRegistry::start().await;
    let config = reg.push_blob("app", b"{}").await;
    let bodies: Vec<Vec<u8>> = vec![
        b"not json at all".to_vec(),
        br#"{"schemaVersion":1,"name":"app","tag":"v1","fsLayers":[]}"#.to_vec(),
        br#"{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json"}"#.to_vec(),
        format!(
            r#"{{"schemaVersion":2,"mediaType":"text/plain","config":{{"digest":"{config}"}}}}"#
        )
        .into_bytes(),
        br#"{"schemaVersion":2,"config":{"digest":"sha256:nothex"},"layers":[]}"#.to_vec(),
    ];
    for body in bodies {
        let resp = reg.put_manifest("app", "bad", None, &body).await;
        assert_error(resp, StatusCode::BAD_REQUEST, "MANIFEST_INVALID").await;
    }
    reg.stop().await;
}

#[tokio::test]
async fn oversize_manifest_is_refused() {
    let reg = TestRegistry::start().await;
    let config = reg.push_blob("app", b"{}").await;
    let mut body = image_manifest(&config, 2, &[], None);
    // Pad the JSON with a huge annotation: valid JSON, just too big.
    let pad = "x".repeat(4 * 1024 * 1024 + 1);
    body.truncate(body.len() - 1);
    body.extend_from_slice(format!(r#","annotations":{{"pad":"{pad}"}}}}"#).as_bytes());
    let resp = reg
        .put_manifest("app", "big", Some(OCI_MANIFEST), &body)
        .await;
    assert_error(resp, StatusCode::PAYLOAD_TOO_LARGE, "SIZE_INVALID").await;
    assert_error(
        reg.get("/v2/app/tags/list").await,
        StatusCode::NOT_FOUND,
        "NAME_UNKNOWN",
    )
    .await;
    reg.stop().await;
}

#[tokio::test]
async fn delete_tags_and_manifests() {
    let reg = TestRegistry::start().await;
    let (_, digest) = reg.push_image("app", "v1", b"layer").await;
    let resp = reg
        .put_manifest(
            "app",
            "v2",
            Some(OCI_MANIFEST),
            &reg.get(&format!("/v2/app/manifests/{digest}"))
                .await
                .bytes()
                .await
                .expect("body"),
        )
        .await;
    assert_eq!(resp.status(), StatusCode::CREATED);

    // Deleting a tag leaves the manifest and the other tag.
    assert_eq!(
        reg.delete("/v2/app/manifests/v1").await.status(),
        StatusCode::ACCEPTED
    );
    assert_error(
        reg.get("/v2/app/manifests/v1").await,
        StatusCode::NOT_FOUND,
        "MANIFEST_UNKNOWN",
    )
    .await;
    assert_eq!(
        reg.get("/v2/app/manifests/v2").await.status(),
        StatusCode::OK
    );

    // Deleting the manifest takes its remaining tags with it.
    assert_eq!(
        reg.delete(&format!("/v2/app/manifests/{digest}"))
            .await
            .status(),
        StatusCode::ACCEPTED
    );
    assert_eq!(
        reg.get(&format!("/v2/app/manifests/{digest}"))
            .await
            .status(),
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        reg.get("/v2/app/manifests/v2").await.status(),
        StatusCode::NOT_FOUND
    );
    assert_error(
        reg.delete(&format!("/v2/app/manifests/{digest}")).await,
        StatusCode::NOT_FOUND,
        "NAME_UNKNOWN",
    )
    .await;
    reg.stop().await;
}

#[tokio::test]
async fn unknown_names_and_manifests() {
    let reg = TestRegistry::start().await;
    assert_error(
        reg.get("/v2/nobody/manifests/latest").await,
        StatusCode::NOT_FOUND,
        "NAME_UNKNOWN",
    )
    .await;
    reg.push_image("app", "v1", b"l").await;
    assert_error(
        reg.get("/v2/app/manifests/v9").await,
        StatusCode::NOT_FOUND,
        "MANIFEST_UNKNOWN",
    )
    .await;
    let absent = Digest::sha256_of(b"absent");
    assert_error(
        reg.get(&format!("/v2/app/manifests/{absent}")).await,
        StatusCode::NOT_FOUND,
        "MANIFEST_UNKNOWN",
    )
    .await;
    // Methods an endpoint does not have.
    let resp = reg
        .client
        .post(reg.url("/v2/app/manifests/v1"))
        .send()
        .await
        .expect("POST");
    assert_error(resp, StatusCode::METHOD_NOT_ALLOWED, "UNSUPPORTED").await;
    reg.stop().await;
}
