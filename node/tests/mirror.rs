//! Pull-through from an upstream registry (Debian's docker-registry on
//! loopback): a node pulls an image through; a second node gets it from
//! the first while the upstream is down, and each layer left the upstream
//! once; a peer that stalls mid-blob hands the rest over to the upstream
//! without the blob starting over.

use std::time::Duration;

use bytes::Bytes;
use shoal_node::transfer::LiarMode;
use shoal_protocol::Digest;
use shoal_tests::{DockerRegistry, TestRegistry, distribution};

mod common;
use common::{Daemon, pattern};

const MIB: usize = 1024 * 1024;
const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";

fn descriptor(media_type: &str, bytes: &[u8]) -> serde_json::Value {
    serde_json::json!({
        "mediaType": media_type,
        "digest": Digest::sha256_of(bytes).to_string(),
        "size": bytes.len(),
    })
}

struct Image {
    config: Vec<u8>,
    layers: Vec<Vec<u8>>,
    manifest: Vec<u8>,
}

impl Image {
    fn new(seed: u64, layer_sizes: &[usize]) -> Image {
        let config =
            format!(r#"{{"architecture":"amd64","os":"linux","seed":{seed}}}"#).into_bytes();
        let layers: Vec<Vec<u8>> = layer_sizes
            .iter()
            .enumerate()
            .map(|(i, n)| pattern(*n, seed * 31 + i as u64))
            .collect();
        let manifest = serde_json::to_vec(&serde_json::json!({
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": descriptor("application/vnd.oci.image.config.v1+json", &config),
            "layers": layers
                .iter()
                .map(|l| descriptor("application/vnd.oci.image.layer.v1.tar", l))
                .collect::<Vec<_>>(),
        }))
        .expect("manifest json");
        Image {
            config,
            layers,
            manifest,
        }
    }

    async fn push(&self, registry: &str, repo: &str, tag: &str) {
        let push = distribution::Client::new(registry).expect("push client");
        for blob in std::iter::once(&self.config).chain(&self.layers) {
            push.push_blob(repo, Bytes::from(blob.clone()))
                .await
                .expect("blob pushed");
        }
        push.put_manifest(repo, tag, OCI_MANIFEST, Bytes::from(self.manifest.clone()))
            .await
            .expect("manifest pushed");
    }
}

async fn get(url: &str) -> reqwest::Response {
    reqwest::Client::new()
        .get(url)
        .header("accept", OCI_MANIFEST)
        .send()
        .await
        .expect("GET")
}

/// Pulls `repo:reference` through `node` as a client would; the sources
/// the node reported for the manifest and each blob.
async fn pull(node: &Daemon, repo: &str, reference: &str, image: &Image) -> Vec<String> {
    let response = get(&format!("{}/v2/{repo}/manifests/{reference}", node.base)).await;
    assert_eq!(
        response.status().as_u16(),
        200,
        "manifest through {}",
        node.base
    );
    let mut sources = vec![source_of(&response)];
    let body = response.bytes().await.expect("manifest body");
    assert_eq!(body.as_ref(), image.manifest.as_slice());
    for blob in std::iter::once(&image.config).chain(&image.layers) {
        let digest = Digest::sha256_of(blob);
        let response = get(&format!("{}/v2/{repo}/blobs/{digest}", node.base)).await;
        assert_eq!(response.status().as_u16(), 200, "blob {digest}");
        sources.push(source_of(&response));
        let body = response.bytes().await.expect("blob body");
        assert_eq!(Digest::sha256_of(&body), digest);
    }
    sources
}

fn source_of(response: &reqwest::Response) -> String {
    response
        .headers()
        .get("x-shoal-source")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("?")
        .to_owned()
}

/// How many times the upstream's access log shows a GET of `digest`.
fn upstream_gets(registry: &DockerRegistry, digest: &Digest) -> usize {
    registry
        .log()
        .lines()
        .filter(|l| l.contains("GET /v2/") && l.contains(&format!("/blobs/{digest}")))
        .count()
}

/// An upstream holding `image` as `tests/app:v1`, and node A (a mirror of
/// it, in the first of two data dirs) that pulled it: the manifest from the
/// upstream, as the first node to ask always gets it.
async fn first_node_pulls(image: &Image) -> (DockerRegistry, Daemon, [tempfile::TempDir; 2]) {
    let registry = start_registry().await;
    image.push(&registry.url(), "tests/app", "v1").await;
    let dirs = [
        tempfile::tempdir().expect("dir"),
        tempfile::tempdir().expect("dir"),
    ];
    let a = Daemon::start_mirror(dirs[0].path(), Vec::new(), &registry.url()).await;
    let sources = pull(&a, "tests/app", "v1", image).await;
    eprintln!("A's sources: {sources:?}");
    assert_eq!(sources[0], "upstream", "A's manifest came from upstream");
    (registry, a, dirs)
}

async fn start_registry() -> DockerRegistry {
    tokio::task::spawn_blocking(DockerRegistry::start)
        .await
        .expect("start task")
        .expect("docker-registry starts")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_node_pulls_from_the_first_while_the_upstream_is_down() {
    shoal_tests::require!(DockerRegistry::require());
    let image = Image::new(1, &[6 * MIB, 300 * 1024, 2 * MIB + 5]);
    let (mut registry, a, [_dir_a, dir_b]) = first_node_pulls(&image).await;
    let manifest_digest = Digest::sha256_of(&image.manifest);

    // Prefetch and the client's own request shared one download each.
    for layer in &image.layers {
        let digest = Digest::sha256_of(layer);
        assert!(
            upstream_gets(&registry, &digest) <= 1,
            "{digest} left the upstream {} times",
            upstream_gets(&registry, &digest)
        );
    }
    let log_before = registry.log();
    registry.stop();

    // B knows nothing and the upstream is down: B resolves the tag from A
    // and gets everything from A.
    let b = Daemon::start_mirror(dir_b.path(), vec![a.p2p_addr.clone()], &registry.url()).await;
    for _ in 0..50 {
        let r = get(&format!("{}/v2/tests/app/manifests/v1", b.base)).await;
        if r.status().is_success() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let sources = pull(&b, "tests/app", "v1", &image).await;
    let by_digest = get(&format!(
        "{}/v2/tests/app/manifests/{manifest_digest}",
        b.base
    ))
    .await;
    assert_eq!(by_digest.status().as_u16(), 200);
    eprintln!("B's sources: {sources:?}");
    assert!(
        sources.iter().all(|s| s == "peers" || s == "local"),
        "B reached for the stopped upstream: {sources:?}"
    );
    assert!(b.metric("shoal_p2p_bytes_received_total").await > 0);
    assert_eq!(
        registry.log(),
        log_before,
        "the stopped upstream saw requests"
    );
    for layer in &image.layers {
        assert_eq!(upstream_gets(&registry, &Digest::sha256_of(layer)), 1);
    }

    // A's tag stays usable while its upstream is down (the cached mapping).
    let r = get(&format!("{}/v2/tests/app/manifests/v1", a.base)).await;
    assert_eq!(r.status().as_u16(), 200, "A's cached tag");
    for node in [a, b] {
        node.stop().await;
    }
}

/// A tag the upstream has just answered for takes its manifest (a few KiB)
/// from the upstream too, not from peers: asked of peers first, every host
/// of a rollout waited out a whole provider lookup for it. The layers still
/// come from peers, and cross the uplink once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_the_upstream_up_the_manifest_comes_from_it_and_the_layers_from_peers() {
    shoal_tests::require!(DockerRegistry::require());
    let image = Image::new(2, &[3 * MIB, 200 * 1024]);
    let (registry, a, [_dir_a, dir_b]) = first_node_pulls(&image).await;
    let manifest_digest = Digest::sha256_of(&image.manifest);

    // B is A's peer, A holds everything and announced it.
    let b = Daemon::start_mirror(dir_b.path(), vec![a.p2p_addr.clone()], &registry.url()).await;
    let sources = pull(&b, "tests/app", "v1", &image).await;
    eprintln!("B's sources: {sources:?}");
    assert_eq!(
        sources[0], "upstream",
        "B's manifest came from the upstream"
    );
    // "local": the prefetch on serving the manifest had already taken it
    // from A when the client asked.
    assert!(
        sources[1..].iter().all(|s| s == "peers" || s == "local"),
        "B's config and layers came from A: {sources:?}"
    );
    let layer_bytes: usize = image.layers.iter().map(Vec::len).sum();
    assert!(
        b.metric("shoal_p2p_bytes_received_total").await >= layer_bytes as u64,
        "B took the layers from A"
    );
    let manifest_gets = registry
        .log()
        .lines()
        .filter(|l| l.contains(&format!("GET /v2/tests/app/manifests/{manifest_digest}")))
        .count();
    assert_eq!(manifest_gets, 2, "one manifest GET per node");
    for layer in &image.layers {
        assert_eq!(
            upstream_gets(&registry, &Digest::sha256_of(layer)),
            1,
            "a layer crossed the uplink more than once"
        );
    }
    for node in [a, b] {
        node.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_stalling_mid_blob_hands_over_to_the_upstream() {
    shoal_tests::require!(DockerRegistry::require());
    let registry = start_registry().await;
    let image = Image::new(2, &[24 * MIB]);
    image.push(&registry.url(), "tests/big", "v1").await;
    let layer = &image.layers[0];
    let digest = Digest::sha256_of(layer);

    let (dir_p, dir_c) = (
        tempfile::tempdir().expect("dir"),
        tempfile::tempdir().expect("dir"),
    );
    // P holds the layer, serves 8 chunks, then stalls.
    let p = Daemon::start_lying(dir_p.path(), None, Vec::new(), Some(LiarMode::StallMidway)).await;
    p.push("tests/big", layer).await;
    let c = Daemon::start_mirror(dir_c.path(), vec![p.p2p_addr.clone()], &registry.url()).await;
    // C sees P as a provider before asking.
    for _ in 0..100 {
        let r = reqwest::Client::new()
            .head(format!("{}/v2/tests/big/blobs/{digest}", c.base))
            .send()
            .await
            .expect("HEAD");
        if r.status().is_success() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let response = get(&format!("{}/v2/tests/big/blobs/{digest}", c.base)).await;
    assert_eq!(response.status().as_u16(), 200);
    let body = response.bytes().await.expect("body");
    assert_eq!(Digest::sha256_of(&body), digest);
    let from_peer = c.metric("shoal_p2p_bytes_received_total").await as usize;
    let from_upstream = c.metric("shoal_upstream_bytes_received_total").await as usize;
    eprintln!(
        "handover: {from_peer} bytes from the stalling peer, {from_upstream} from upstream, blob {}",
        layer.len()
    );
    assert!(from_peer > 0, "the peer delivered nothing before stalling");
    let remaining = layer.len() - from_peer.min(layer.len());
    assert!(
        from_upstream <= remaining + 4 * MIB,
        "upstream sent {from_upstream} bytes but only {remaining} remained"
    );
    for node in [p, c] {
        node.stop().await;
    }
}
