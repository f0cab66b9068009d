//! Against Debian's `docker-registry`: what a real registry serves comes
//! back intact through the client, whole, resumed and in ranges.

use bytes::Bytes;
use shoal_node::upstream::{UpstreamClient, UpstreamError, Wanted};
use shoal_protocol::Digest;
use shoal_protocol::name::{Reference, RepoName};
use shoal_tests::distribution;
use shoal_tests::{DockerRegistry, TestRegistry};

use crate::support::{OCI_MANIFEST, client_for, collect, image_manifest, pattern};

/// A blob bigger than one read, and not a multiple of anything round.
const LAYER_LEN: usize = 3 * 1024 * 1024 + 17;

struct Seeded {
    registry: DockerRegistry,
    client: UpstreamClient,
    repo: RepoName,
    layer: Vec<u8>,
    layer_digest: Digest,
    manifest: Vec<u8>,
    manifest_digest: Digest,
}

/// A registry holding `tests/app:v1`: a config, one layer, a manifest.
/// Callers first `require!` docker-registry, so a machine without it skips.
async fn seeded() -> Seeded {
    let registry = tokio::task::spawn_blocking(DockerRegistry::start)
        .await
        .expect("start task")
        .expect("docker-registry starts");
    let push = distribution::Client::new(registry.url()).expect("push client");
    let config = br#"{"architecture":"amd64","os":"linux"}"#.to_vec();
    let layer = pattern(LAYER_LEN, 7);
    push.push_blob("tests/app", Bytes::from(config.clone()))
        .await
        .expect("config pushed");
    push.push_blob("tests/app", Bytes::from(layer.clone()))
        .await
        .expect("layer pushed");
    let manifest = image_manifest(&config, &layer);
    push.put_manifest(
        "tests/app",
        "v1",
        OCI_MANIFEST,
        Bytes::from(manifest.clone()),
    )
    .await
    .expect("manifest pushed");
    Seeded {
        client: client_for(&registry.url()),
        registry,
        repo: "tests/app".parse().expect("repo"),
        layer_digest: Digest::sha256_of(&layer),
        layer,
        manifest_digest: Digest::sha256_of(&manifest),
        manifest,
    }
}

#[tokio::test]
async fn manifests_by_tag_and_by_digest() {
    shoal_tests::require!(DockerRegistry::require());
    let s = seeded().await;
    let host = s.registry.host();
    // The default upstream is the one `--upstream` named; names map to it.
    let mapped = s.client.map_name(None, "tests/app").expect("maps");
    assert_eq!(
        (mapped.host.as_str(), &mapped.repo),
        (host.as_str(), &s.repo)
    );

    let tag: Reference = "v1".parse().expect("tag");
    let by_tag = s
        .client
        .get_manifest(&host, &s.repo, &tag, &[OCI_MANIFEST])
        .await
        .expect("manifest by tag");
    assert_eq!(by_tag.digest, s.manifest_digest);
    assert_eq!(by_tag.media_type, OCI_MANIFEST);
    assert_eq!(by_tag.bytes, s.manifest);

    let by_digest = s
        .client
        .get_manifest(
            &host,
            &s.repo,
            &Reference::Digest(s.manifest_digest.clone()),
            &[OCI_MANIFEST],
        )
        .await
        .expect("manifest by digest");
    assert_eq!(by_digest, by_tag);

    let head = s
        .client
        .head_manifest(
            &host,
            &s.repo,
            &tag,
            &[OCI_MANIFEST],
            std::time::Duration::from_secs(5),
        )
        .await
        .expect("head");
    assert_eq!(head.digest, s.manifest_digest);
    assert_eq!(head.media_type, OCI_MANIFEST);
    assert_eq!(head.size, s.manifest.len() as u64);
}

#[tokio::test]
async fn blobs_whole_resumed_and_in_ranges() {
    shoal_tests::require!(DockerRegistry::require());
    let s = seeded().await;
    let host = s.registry.host();
    let len = s.layer.len() as u64;

    let whole = s
        .client
        .blob(&host, &s.repo, &s.layer_digest, 0)
        .await
        .expect("blob");
    assert_eq!(
        (whole.size, whole.start, whole.len),
        (Some(len), 0, Some(len))
    );
    assert_eq!(collect(whole).await, s.layer);

    for offset in [1, 65_536, len - 1] {
        let rest = s
            .client
            .blob(&host, &s.repo, &s.layer_digest, offset)
            .await
            .expect("blob from an offset");
        assert_eq!(rest.size, Some(len), "offset {offset}");
        assert_eq!(rest.len, Some(len - offset), "offset {offset}");
        assert_eq!(
            collect(rest).await,
            &s.layer[offset as usize..],
            "offset {offset}"
        );
    }

    for (start, end) in [
        (0, 0),
        (100, 199),
        (1 << 20, (2 << 20) - 1),
        (len - 10, len + 100),
    ] {
        let part = s
            .client
            .blob_range(&host, &s.repo, &s.layer_digest, start, end)
            .await
            .expect("blob range");
        let want = &s.layer[start as usize..=(end.min(len - 1)) as usize];
        assert_eq!(part.size, Some(len));
        assert_eq!(part.len, Some(want.len() as u64));
        assert_eq!(collect(part).await, want, "{start}-{end}");
    }

    let past_end = s.client.blob(&host, &s.repo, &s.layer_digest, len).await;
    assert!(
        matches!(past_end, Err(UpstreamError::RangeNotSatisfiable { .. })),
        "{past_end:?}"
    );
}

#[tokio::test]
async fn missing_things_are_not_found() {
    shoal_tests::require!(DockerRegistry::require());
    let s = seeded().await;
    let host = s.registry.host();
    let err = s
        .client
        .get_manifest(
            &host,
            &s.repo,
            &"nope".parse().expect("tag"),
            &[OCI_MANIFEST],
        )
        .await
        .expect_err("unknown tag");
    assert!(
        matches!(&err, UpstreamError::NotFound { wanted: Wanted::Manifest, host: h, .. } if *h == host),
        "{err:?}"
    );
    assert_eq!(
        (err.oci_code(), err.status().as_u16()),
        ("MANIFEST_UNKNOWN", 404)
    );
    assert!(err.to_string().contains("tests/app:nope"), "{err}");

    let other: RepoName = "tests/other".parse().expect("repo");
    let err = s
        .client
        .get_manifest(&host, &other, &"v1".parse().expect("tag"), &[OCI_MANIFEST])
        .await
        .expect_err("unknown repository");
    assert_eq!(err.oci_code(), "MANIFEST_UNKNOWN");

    let err = s
        .client
        .blob(&host, &s.repo, &Digest::sha256_of(b"never pushed"), 0)
        .await
        .expect_err("unknown blob");
    assert_eq!(
        (err.oci_code(), err.status().as_u16()),
        ("BLOB_UNKNOWN", 404)
    );

    let err = s
        .client
        .head_manifest(
            &host,
            &s.repo,
            &"nope".parse().expect("tag"),
            &[OCI_MANIFEST],
            std::time::Duration::from_secs(5),
        )
        .await
        .expect_err("unknown tag");
    assert_eq!(err.oci_code(), "MANIFEST_UNKNOWN");
}
