use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::support::{OCI_INDEX, OCI_MANIFEST, TestRegistry, assert_error};

#[tokio::test]
async fn referrers_are_listed_and_filtered() {
    let reg = TestRegistry::start().await;
    let (image, subject) = reg.push_image("app", "v1", b"layer").await;
    let empty = reg.push_blob("app", b"{}").await;

    let mut pushed = Vec::new();
    for (artifact_type, note) in [
        ("application/vnd.example.sbom", "sbom"),
        ("application/vnd.example.sig", "sig"),
    ] {
        let body = serde_json::to_vec(&json!({
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "artifactType": artifact_type,
            "config": {"mediaType": "application/vnd.oci.empty.v1+json", "digest": empty.to_string(), "size": 2},
            "layers": [],
            "subject": {"mediaType": OCI_MANIFEST, "digest": subject.to_string(), "size": image.len()},
            "annotations": {"note": note}
        }))
        .expect("json");
        let digest = shoal_protocol::Digest::sha256_of(&body);
        let resp = reg
            .put_manifest("app", &digest.to_string(), Some(OCI_MANIFEST), &body)
            .await;
        assert_eq!(resp.status(), StatusCode::CREATED);
        assert_eq!(resp.headers()["oci-subject"], subject.to_string().as_str());
        pushed.push(digest);
    }

    let resp = reg.get(&format!("/v2/app/referrers/{subject}")).await;
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(resp.headers()["content-type"], OCI_INDEX);
    let index: Value = resp.json().await.expect("json");
    let manifests = index["manifests"].as_array().expect("manifests");
    assert_eq!(manifests.len(), 2);
    for d in &pushed {
        assert!(
            manifests.iter().any(|m| m["digest"] == d.to_string()),
            "{d} listed"
        );
    }
    assert!(
        manifests
            .iter()
            .all(|m| m["annotations"]["note"].is_string())
    );

    let resp = reg
        .get(&format!(
            "/v2/app/referrers/{subject}?artifactType=application/vnd.example.sig"
        ))
        .await;
    assert_eq!(resp.headers()["oci-filters-applied"], "artifactType");
    let filtered: Value = resp.json().await.expect("json");
    assert_eq!(
        filtered["manifests"].as_array().expect("manifests").len(),
        1
    );
    assert_eq!(
        filtered["manifests"][0]["artifactType"],
        "application/vnd.example.sig"
    );

    // An unknown subject has an empty list, not a 404.
    let other = shoal_protocol::Digest::sha256_of(b"no referrers");
    let none: Value = reg
        .get(&format!("/v2/app/referrers/{other}"))
        .await
        .json()
        .await
        .expect("json");
    assert_eq!(none["manifests"], json!([]));
    assert_error(
        reg.get("/v2/app/referrers/sha256:short").await,
        StatusCode::BAD_REQUEST,
        "DIGEST_INVALID",
    )
    .await;
    reg.stop().await;
}
