//! What the pull-through mirror tests share: an upstream (Debian's
//! `docker-registry`) holding test images, a node that mirrors it, and the
//! node's own account of what it fetched.
//!
//! The node's default upstream is the test registry, so it stands in for
//! Docker Hub: a name without a registry host (`library/x`, or `x` from the
//! Docker Engine's `registry-mirrors`) is pulled from it. The same registry
//! is also listed under the alias [`ALIAS`], so prefixed names
//! (`<node>/upstream.test/team/app`) and containerd's `?ns=upstream.test`
//! reach it too.

use std::time::Duration;

use shoal_tests::Must;
use shoal_tests::images::TestImage;
use shoal_tests::skopeo::{self, Format};
use shoal_tests::{DockerRegistry, NodeOptions, ShoalNode, TestRegistry};

/// The registry host under which the node lists the test registry.
pub const ALIAS: &str = "upstream.test";

/// The two images the client tests pull, as the upstream holds them.
#[derive(Debug)]
pub struct Upstream {
    pub registry: DockerRegistry,
    /// `app-a` as the Docker Hub name `library/mirror-demo:v1` (v2s2).
    pub hub_manifest: String,
    /// `app-b` as `team/app:v2` in `team_format`.
    pub team_manifest: String,
}

/// Starts docker-registry and pushes the two images (the caller has
/// required skopeo, docker-registry and the test images).
pub fn upstream_with_images(team_format: Format) -> Upstream {
    let images = shoal_tests::images::test_images().must("images were built");
    let registry = DockerRegistry::start().must("start docker-registry");
    let hub_manifest = push(
        &registry,
        &images.app_a,
        "library/mirror-demo:v1",
        Format::V2s2,
    );
    let team_manifest = push(&registry, &images.app_b, "team/app:v2", team_format);
    Upstream {
        registry,
        hub_manifest,
        team_manifest,
    }
}

/// Pushes `image` (from the offline-built layout) to the upstream as
/// `reference`; returns the manifest digest the upstream holds.
pub fn push(
    upstream: &DockerRegistry,
    image: &TestImage,
    reference: &str,
    format: Format,
) -> String {
    let images = shoal_tests::images::test_images().must("images were built");
    let scratch = tempfile::tempdir().must("scratch dir");
    skopeo::push(
        &images.oci_ref(image),
        &upstream.host(),
        reference,
        format,
        scratch.path(),
    )
    .must("skopeo push to the upstream")
}

/// A node with `upstream` as its default upstream (`SHOAL_UPSTREAM`) and
/// listed as [`ALIAS`] in its config file.
pub fn mirror_options(upstream: &DockerRegistry) -> NodeOptions {
    let config = format!(
        "[upstream]\n\
         [[upstream.registries]]\n\
         host = \"{ALIAS}\"\n\
         endpoint = \"{}\"\n\
         insecure_http = true\n",
        upstream.url()
    );
    NodeOptions {
        config_toml: Some(config),
        env: vec![
            ("SHOAL_NO_UPSTREAM".to_owned(), "false".to_owned()),
            ("SHOAL_UPSTREAM".to_owned(), upstream.url()),
        ],
        ..NodeOptions::default()
    }
}

pub fn mirror_node(upstream: &DockerRegistry) -> ShoalNode {
    ShoalNode::start(mirror_options(upstream)).must("start a shoal node mirroring the upstream")
}

/// `GET /_shoal/status` as JSON.
pub fn status(node: &ShoalNode) -> serde_json::Value {
    let url = format!("{}/_shoal/status", node.url());
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .must("a tokio runtime");
    runtime
        .block_on(async {
            let resp = reqwest::Client::new()
                .get(&url)
                .timeout(Duration::from_secs(10))
                .send()
                .await
                .map_err(|e| format!("GET {url}: {e}"))?;
            if !resp.status().is_success() {
                return Err(format!("GET {url}: {}", resp.status()));
            }
            resp.json::<serde_json::Value>()
                .await
                .map_err(|e| format!("GET {url}: {e}"))
        })
        .must("shoal status")
}

/// Bytes the node has received from upstream registries so far.
pub fn bytes_from_upstream(node: &ShoalNode) -> u64 {
    let status = status(node);
    status["bytes"]["from_upstream"]
        .as_u64()
        .unwrap_or_else(|| panic!("no bytes.from_upstream in {status}"))
}

/// The node's store holds each of `digests`.
pub fn assert_node_holds(node: &ShoalNode, digests: &[String]) {
    let held: Vec<String> = node
        .blob_files()
        .must("list the node's blobs")
        .into_iter()
        .map(|b| b.digest)
        .collect();
    for digest in digests {
        assert!(
            held.contains(digest),
            "the node does not hold {digest} after the pull; it holds {held:?}"
        );
    }
}

/// The sum of an image's layer sizes.
pub fn layer_bytes(image: &TestImage) -> u64 {
    image.digests.layers.iter().map(|l| l.size).sum()
}

/// After `client` pulled `image` from a cold node: the node fetched at
/// least the image's layers from its upstream and holds them. Returns the
/// bytes fetched so far.
pub fn assert_pulled_through(node: &ShoalNode, image: &TestImage, client: &str) -> u64 {
    let fetched = bytes_from_upstream(node);
    println!(
        "{client} pulled {} through shoal: {fetched} bytes from the upstream",
        image.tag
    );
    assert!(
        fetched >= layer_bytes(image),
        "the node fetched {fetched} bytes from its upstream, less than the layers of {} ({}): {client} did not pull through it",
        image.tag,
        layer_bytes(image)
    );
    assert_node_holds(node, &image.digests.referenced());
    fetched
}
