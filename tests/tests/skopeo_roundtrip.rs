//! skopeo pushes the test images to a registry in OCI and Docker v2s2
//! format and pulls them back; every digest must survive and shared layers
//! must be stored once.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use shoal_tests::Must;
use shoal_tests::images::{TestImage, TestImages, test_images};
use shoal_tests::oci::{Layout, verify_file};
use shoal_tests::skopeo::{self, Format};
use shoal_tests::{DockerRegistry, NodeOptions, ShoalNode, TestRegistry, require};

#[test]
fn skopeo_roundtrip_through_shoal() {
    require!(skopeo::require());
    let images = require!(test_images());
    let node = ShoalNode::start(NodeOptions::default()).must("start shoal");
    roundtrip(&node, images);
}

/// The same test against the reference registry: proves the test itself.
#[test]
fn skopeo_roundtrip_through_docker_registry() {
    require!(skopeo::require());
    require!(DockerRegistry::require());
    let images = require!(test_images());
    let registry = DockerRegistry::start().must("start docker-registry");
    roundtrip(&registry, images);
}

fn roundtrip(registry: &impl TestRegistry, images: &TestImages) {
    let scratch = tempfile::tempdir().must("scratch dir");
    let host = registry.host();
    // Every blob the registry must hold afterwards, with its size.
    let mut expected: BTreeMap<String, u64> = BTreeMap::new();

    for format in [Format::Oci, Format::V2s2] {
        let out = scratch.path().join(format!("pulled-{}", format.name()));
        for image in images.all() {
            let repo = format!("roundtrip/{}/{}", format.name(), image.tag);
            let pushed =
                push_and_pull(registry, images, image, format, &repo, &out, scratch.path());
            expected.extend(pushed);
        }
        let count = Layout::new(&out)
            .verify_all_blobs()
            .must("pulled blobs hash to their names");
        assert!(count >= 4, "{count} blobs pulled in {}", format.name());
    }

    // Pull by digest too, and list tags.
    let app = &images.app_a;
    let repo = format!("roundtrip/oci/{}", app.tag);
    let by_digest = format!("{repo}@{}", app.digests.manifest.digest);
    let out = scratch.path().join("by-digest");
    skopeo::pull(&host, &by_digest, &out, "x").must("pull by digest");
    let pulled = Layout::new(&out).image("x").must("pulled by digest");
    assert_eq!(pulled.manifest.digest, app.digests.manifest.digest);
    let tags = skopeo::list_tags(&host, &repo).must("list tags");
    assert_eq!(tags, vec!["v1".to_owned()], "tags of {repo}");

    check_store(registry, images, &expected);
}

/// Pushes `image` to `repo:v1` in `format`, pulls it back into `out`, and
/// checks the digests. Returns every digest (with size) the registry must
/// now hold for it.
fn push_and_pull(
    registry: &impl TestRegistry,
    images: &TestImages,
    image: &TestImage,
    format: Format,
    repo: &str,
    out: &Path,
    scratch: &Path,
) -> BTreeMap<String, u64> {
    let host = registry.host();
    let reference = format!("{repo}:v1");
    let src = images.oci_ref(image);
    let pushed = skopeo::push(&src, &host, &reference, format, scratch).unwrap_or_else(|e| {
        panic!(
            "push {src} to {} as {}: {e}",
            registry.label(),
            format.name()
        )
    });
    if format == Format::Oci {
        assert_eq!(
            pushed, image.digests.manifest.digest,
            "an OCI push must keep the manifest digest"
        );
    } else {
        assert_ne!(
            pushed, image.digests.manifest.digest,
            "v2s2 is a conversion"
        );
    }

    let tag = format!("{}-{}", image.tag, format.name());
    skopeo::pull(&host, &reference, out, &tag)
        .unwrap_or_else(|e| panic!("pull {reference} from {}: {e}", registry.label()));
    let pulled = Layout::new(out).image(&tag).must("read the pulled image");
    assert_eq!(
        pulled.manifest.digest, pushed,
        "{reference}: manifest digest changed on the way back"
    );
    assert_eq!(
        pulled.manifest.media_type,
        format.manifest_media_type(),
        "{reference}"
    );
    // A format conversion rewrites the manifest, never the config or layers.
    assert_eq!(
        pulled.referenced(),
        image.digests.referenced(),
        "{reference}: config/layer digests"
    );
    for layer in &pulled.layers {
        let original = image
            .digests
            .layers
            .iter()
            .find(|l| l.digest == layer.digest);
        assert_eq!(
            original.map(|l| l.size),
            Some(layer.size),
            "{reference}: layer {}",
            layer.digest
        );
    }

    let mut held = BTreeMap::new();
    held.insert(pulled.manifest.digest.clone(), pulled.manifest.size);
    held.insert(pulled.config.digest.clone(), pulled.config.size);
    for layer in &pulled.layers {
        held.insert(layer.digest.clone(), layer.size);
    }
    held
}

/// The registry's blob files are exactly the blobs pushed, each once, each
/// hashing to its name.
fn check_store(
    registry: &impl TestRegistry,
    images: &TestImages,
    expected: &BTreeMap<String, u64>,
) {
    let stored = registry.blob_files().must("list the registry's blob files");
    for blob in &stored {
        verify_file(&blob.digest, &blob.path).must("stored blob hashes to its name");
    }
    let stored_digests: Vec<&str> = stored.iter().map(|b| b.digest.as_str()).collect();
    let unique: BTreeSet<&str> = stored_digests.iter().copied().collect();
    assert_eq!(
        unique.len(),
        stored_digests.len(),
        "a blob is stored twice: {stored_digests:?}"
    );

    let stored_sizes: BTreeMap<String, u64> =
        stored.iter().map(|b| (b.digest.clone(), b.size)).collect();
    let missing: Vec<_> = expected
        .keys()
        .filter(|d| !stored_sizes.contains_key(*d))
        .collect();
    let extra: Vec<_> = stored_sizes
        .keys()
        .filter(|d| !expected.contains_key(*d))
        .collect();
    assert!(
        missing.is_empty(),
        "{}: pushed blobs not stored: {missing:?}",
        registry.label()
    );
    assert!(
        extra.is_empty(),
        "{}: stored blobs nobody pushed: {extra:?}",
        registry.label()
    );
    assert_eq!(
        &stored_sizes,
        expected,
        "{}: stored sizes",
        registry.label()
    );

    // The busybox layer went into eight repositories (four images, two
    // formats) and must be on disk once.
    let base = &images.busybox.digests.layers[0].digest;
    let copies = stored.iter().filter(|b| &b.digest == base).count();
    assert_eq!(
        copies, 1,
        "the shared base layer {base} is stored {copies} times"
    );
}
