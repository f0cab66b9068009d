//! The Docker Engine pulls from a registry (images pushed there by skopeo
//! in v2s2 and OCI format) and runs what it pulled.
//!
//! The Engine treats 127.0.0.0/8 as an insecure registry, so no daemon
//! configuration is needed, provided it shares this host's loopback.

use shoal_tests::Must;
use shoal_tests::docker::{self, PulledImages};
use shoal_tests::images::{TestImage, test_images};
use shoal_tests::skopeo::{self, Format};
use shoal_tests::{DockerRegistry, NodeOptions, ShoalNode, TestRegistry, require, skip};

#[test]
fn docker_pulls_v2s2_from_shoal() {
    require!(docker::require_engine());
    require!(skopeo::require());
    let images = require!(test_images());
    let node = ShoalNode::start(NodeOptions::default()).must("start shoal");
    pull_and_check(&node, &images.app_a, Format::V2s2);
}

#[test]
fn docker_pulls_oci_from_shoal() {
    require!(docker::require_engine());
    require!(skopeo::require());
    let images = require!(test_images());
    let node = ShoalNode::start(NodeOptions::default()).must("start shoal");
    pull_and_check(&node, &images.app_b, Format::Oci);
}

#[test]
fn docker_runs_an_image_pulled_from_shoal() {
    require!(docker::require_engine());
    require!(skopeo::require());
    let images = require!(test_images());
    let node = ShoalNode::start(NodeOptions::default()).must("start shoal");
    let mut pulled = PulledImages::new();
    let name = pull_and_check_tracked(&node, &images.busybox, Format::V2s2, &mut pulled);
    let out = docker::run_container(&name, &["/bin/sh", "-c", "echo hi"]).must("docker run");
    if !out.success() && docker::is_engine_failure(&out) {
        skip!(format!(
            "the Docker Engine pulled {name} but cannot run containers here: {}",
            out.stderr.trim()
        ));
    }
    assert!(
        out.success(),
        "docker run {name} failed: {}\n{}",
        out.status,
        out.stderr
    );
    assert_eq!(
        out.stdout, "hi\n",
        "docker run {name} printed the wrong thing"
    );
}

/// The same pulls from the reference registry: proves the test itself.
#[test]
fn docker_pulls_from_docker_registry() {
    require!(docker::require_engine());
    require!(skopeo::require());
    require!(DockerRegistry::require());
    let images = require!(test_images());
    let registry = DockerRegistry::start().must("start docker-registry");
    pull_and_check(&registry, &images.app_a, Format::V2s2);
    pull_and_check(&registry, &images.app_b, Format::Oci);
}

fn pull_and_check(registry: &impl TestRegistry, image: &TestImage, format: Format) {
    let mut pulled = PulledImages::new();
    pull_and_check_tracked(registry, image, format, &mut pulled);
}

/// Pushes `image` with skopeo in `format`, pulls it with Docker by tag and
/// by digest, and checks the image id and repo digest. Returns the pulled
/// name (removed when `pulled` drops).
fn pull_and_check_tracked(
    registry: &impl TestRegistry,
    image: &TestImage,
    format: Format,
    pulled: &mut PulledImages,
) -> String {
    let images = test_images().must("images were built");
    let scratch = tempfile::tempdir().must("scratch dir");
    let host = registry.host();
    let repo = format!("docker-pull/{}/{}", format.name(), image.tag);
    let manifest = skopeo::push(
        &images.oci_ref(image),
        &host,
        &format!("{repo}:v1"),
        format,
        scratch.path(),
    )
    .unwrap_or_else(|e| panic!("skopeo push to {}: {e}", registry.label()));

    let name = pulled.track(format!("{host}/{repo}:v1"));
    docker::pull(&name).unwrap_or_else(|e| panic!("docker pull from {}: {e}", registry.label()));
    // The image id is the digest of the config, whatever the manifest format.
    let id = docker::image_id(&name).must("inspect the pulled image");
    assert_eq!(id, image.digests.config.digest, "image id of {name}");
    let repo_digests = docker::repo_digests(&name).must("inspect the pulled image");
    let want = format!("{host}/{repo}@{manifest}");
    assert!(
        repo_digests.contains(&want),
        "{name}: RepoDigests {repo_digests:?} lack {want}"
    );

    let by_digest = pulled.track(want);
    docker::pull(&by_digest)
        .unwrap_or_else(|e| panic!("docker pull by digest from {}: {e}", registry.label()));
    assert_eq!(docker::image_id(&by_digest).must("inspect"), id);
    name
}
