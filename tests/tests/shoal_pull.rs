//! `shoal pull` and `shoal status` against a real node: an image pushed
//! with skopeo is pulled back through the node (by tag, by digest, in
//! Docker v2s2 form, and through an index holding this machine's
//! platform), with plain progress lines when stdout is not a terminal; a
//! missing image, a node that is not there and the status summary each
//! give the line a user would read.

use std::process::Command;
use std::time::{Duration, Instant};

use bytes::Bytes;
use shoal_tests::command::{self, CmdOutput};
use shoal_tests::distribution::Client;
use shoal_tests::images::{TestImage, test_images};
use shoal_tests::node::{bootstrap_addr, free_port, peer_env, shoal_binary};
use shoal_tests::oci::{ImageDigests, sha256_digest};
use shoal_tests::skopeo::{self, Format};
use shoal_tests::{DockerRegistry, Must, NodeOptions, ShoalNode, TestRegistry, require};

const PULL_TIMEOUT: Duration = Duration::from_secs(120);
const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";

/// `shoal ARGS…` with stdout and stderr captured (so not terminals).
fn shoal(args: &[&str]) -> CmdOutput {
    let mut cmd = Command::new(shoal_binary().must("the shoal binary"));
    cmd.args(args).env_remove("SHOAL_NODE");
    command::run(&mut cmd, PULL_TIMEOUT).must("run shoal")
}

/// A node that serves only what it or its peers hold, so a missing image
/// is a plain 404 rather than a failed trip to Docker Hub.
fn local_node() -> ShoalNode {
    peer_node(None)
}

/// [`local_node`] listening for peers and joining through `bootstrap`, if
/// given.
fn peer_node(bootstrap: Option<&str>) -> ShoalNode {
    let mut env = vec![("SHOAL_NO_UPSTREAM".to_owned(), "true".to_owned())];
    env.extend(peer_env(bootstrap));
    ShoalNode::start(NodeOptions {
        env,
        ..NodeOptions::default()
    })
    .must("start shoal")
}

/// Checks a successful plain-text pull of `digests` and returns its lines.
fn assert_pulled(out: &CmdOutput, image: &str, manifest: &str, digests: &ImageDigests) {
    assert!(
        out.success(),
        "shoal pull {image} failed ({})\nstdout:\n{}\nstderr:\n{}",
        out.status,
        out.stdout,
        out.stderr
    );
    assert!(
        !out.stdout.contains('\x1b'),
        "escape codes in plain output:\n{}",
        out.stdout
    );
    let lines: Vec<&str> = out.stdout.lines().collect();
    for digest in digests.referenced() {
        // Docker's short form: the first 12 hex digits.
        let short = &digest["sha256:".len().."sha256:".len() + 12];
        let started = lines
            .iter()
            .filter(|l| l.starts_with(short) && l.ends_with(" started"))
            .count();
        let done: Vec<&&str> = lines
            .iter()
            .filter(|l| l.starts_with(short) && l.contains(" done in "))
            .collect();
        assert_eq!(started, 1, "one start line for {digest}:\n{}", out.stdout);
        assert_eq!(done.len(), 1, "one done line for {digest}:\n{}", out.stdout);
        // Pushed to this node, so served from its store.
        assert!(done[0].contains(" local done in "), "{}", done[0]);
    }
    let blob_count = digests.referenced().len();
    let summary = lines.last().copied().unwrap_or_default();
    let expected = format!("pulled {image} ({manifest}): {blob_count} blobs, ");
    assert!(
        summary.starts_with(&expected),
        "summary {summary:?} does not start with {expected:?}"
    );
    assert_eq!(
        lines.len(),
        2 * blob_count + 3,
        "a pulling line, a manifest line, two per blob and a summary:\n{}",
        out.stdout
    );
}

fn push(node: &ShoalNode, image: &TestImage, reference: &str, format: Format) -> String {
    let images = test_images().must("test images");
    let scratch = tempfile::tempdir().must("scratch dir");
    skopeo::push(
        &images.oci_ref(image),
        &node.host(),
        reference,
        format,
        scratch.path(),
    )
    .must("push with skopeo")
}

#[test]
fn pull_prints_a_line_per_blob_and_a_summary() {
    require!(skopeo::require());
    let images = require!(test_images());
    let node = local_node();
    let url = node.url();
    let image = &images.app_a;
    let manifest = push(&node, image, "pulltest/app:v1", Format::Oci);

    let out = shoal(&["pull", "--node", &url, "pulltest/app:v1"]);
    assert_pulled(&out, "pulltest/app:v1", &manifest, &image.digests);
    assert_eq!(
        out.stdout.lines().next(),
        Some(format!("pulling pulltest/app:v1 through {url}").as_str())
    );

    let by_digest = format!("pulltest/app@{manifest}");
    let out = shoal(&["pull", "--node", &url, &by_digest]);
    assert_pulled(&out, &by_digest, &manifest, &image.digests);

    // Docker's manifest format, converted by skopeo: same config and layers.
    let image = &images.app_b;
    let manifest = push(&node, image, "pulltest/docker:v1", Format::V2s2);
    let out = shoal(&["pull", "--node", &url, "pulltest/docker:v1"]);
    assert_pulled(&out, "pulltest/docker:v1", &manifest, &image.digests);
}

/// A node that holds nothing pulls through its peer: the manifest comes
/// from peers, and so do the blobs (or they are already local, fetched
/// ahead when the node served the manifest); the node counts them.
#[test]
fn pull_through_a_node_that_fetches_from_its_peer() {
    require!(skopeo::require());
    let images = require!(test_images());
    let holder = peer_node(None);
    let manifest = push(&holder, &images.app_b, "pulltest/peer:v1", Format::Oci);
    let bootstrap = bootstrap_addr(&holder).must("bootstrap address");
    let empty = peer_node(Some(&bootstrap));
    let url = empty.url();
    let layers = &images.app_b.digests.layers;
    wait_for_provider(&empty, "pulltest/peer", &layers[layers.len() - 1].digest);

    let name = format!("pulltest/peer@{manifest}");
    let out = shoal(&["pull", "--node", &url, &name]);
    assert!(out.success(), "{}\n{}", out.stdout, out.stderr);
    assert!(
        out.stdout.contains(&format!("manifest {manifest} peers\n")),
        "{}",
        out.stdout
    );
    for line in out.stdout.lines().filter(|l| l.contains(" done in ")) {
        assert!(
            line.contains(" peers done in ") || line.contains(" local done in "),
            "{line}"
        );
    }
    let summary = out.stdout.lines().last().unwrap_or_default();
    assert!(
        summary.starts_with(&format!("pulled {name} ({manifest}): 3 blobs, ")),
        "{summary}"
    );

    let json = shoal(&["status", "--json", "--node", &url]);
    assert!(json.success(), "{}", json.stderr);
    let status: serde_json::Value = serde_json::from_str(&json.stdout).must("status JSON");
    let from_peers = status["bytes"]["from_peers"].as_u64().unwrap_or(0);
    let image_bytes: u64 = images.app_b.digests.layers.iter().map(|l| l.size).sum();
    assert!(
        from_peers >= image_bytes,
        "{from_peers} bytes from peers, the layers are {image_bytes}: {status}"
    );
}

/// A node in front of a registry: an image named with the registry's host
/// comes from the upstream (sent as `?ns=<host>`), and the same image named
/// without a host (the node's default upstream) is then local.
#[test]
fn pull_through_the_upstream_by_registry_host() {
    require!(skopeo::require());
    require!(DockerRegistry::require());
    let images = require!(test_images());
    let registry = DockerRegistry::start().must("start docker-registry");
    let upstream = registry.host();
    let image = &images.app_a;
    let scratch = tempfile::tempdir().must("scratch dir");
    let manifest = skopeo::push(
        &images.oci_ref(image),
        &upstream,
        "mirror/app:v1",
        Format::Oci,
        scratch.path(),
    )
    .must("push to docker-registry");
    let node = ShoalNode::start(NodeOptions {
        env: vec![
            ("SHOAL_NO_UPSTREAM".into(), "false".into()),
            ("SHOAL_UPSTREAM".into(), format!("http://{upstream}")),
        ],
        ..NodeOptions::default()
    })
    .must("start shoal");
    let url = node.url();

    let named = format!("{upstream}/mirror/app:v1");
    let out = shoal(&["pull", "--node", &url, &named]);
    assert!(out.success(), "{}\n{}", out.stdout, out.stderr);
    assert!(
        out.stdout
            .contains(&format!("manifest {manifest} upstream\n")),
        "{}",
        out.stdout
    );
    // Serving the manifest starts fetching its blobs ahead, so a small
    // one may be local by the time it is asked for.
    for line in out.stdout.lines().filter(|l| l.contains(" done in ")) {
        assert!(
            line.contains(" upstream done in ") || line.contains(" local done in "),
            "{line}"
        );
    }

    let out = shoal(&["pull", "--node", &url, "mirror/app:v1"]);
    assert_pulled(&out, "mirror/app:v1", &manifest, &image.digests);
}

/// Announcements travel asynchronously: waits until `node` knows a peer
/// holding `digest` (a HEAD is answered from the provider's size, without
/// fetching anything).
fn wait_for_provider(node: &ShoalNode, repo: &str, digest: &str) {
    let client = Client::new(node.url()).must("HTTP client");
    let runtime = tokio::runtime::Runtime::new().must("tokio runtime");
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let head = runtime.block_on(client.head_blob(repo, digest));
        match head {
            Ok(r) if r.status().is_success() => return,
            last if Instant::now() >= deadline => {
                panic!("no provider of {digest} within 30 s (last: {last:?})")
            }
            _ => std::thread::sleep(Duration::from_millis(200)),
        }
    }
}

/// An index with app-b for another platform and app-a for this one: the
/// pull takes app-a's layers and names the index's digest.
#[test]
fn pull_takes_this_machines_platform_from_an_index() {
    require!(skopeo::require());
    let images = require!(test_images());
    let node = local_node();
    let url = node.url();
    let repo = "pulltest/multi";
    let mine = push(&node, &images.app_a, &format!("{repo}:a"), Format::Oci);
    let other = push(&node, &images.app_b, &format!("{repo}:b"), Format::Oci);
    let entry = |digest: &str, size: u64, arch: &str| {
        serde_json::json!({
            "mediaType": images.app_a.digests.manifest.media_type,
            "digest": digest,
            "size": size,
            "platform": {"os": "linux", "architecture": arch},
        })
    };
    let index = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": OCI_INDEX,
        "manifests": [
            entry(&other, images.app_b.digests.manifest.size, "s390x-not-here"),
            entry(&mine, images.app_a.digests.manifest.size, go_arch()),
        ],
    });
    let body = Bytes::from(serde_json::to_vec(&index).must("index JSON"));
    let index_digest = sha256_digest(&body);
    let runtime = tokio::runtime::Runtime::new().must("tokio runtime");
    let client = Client::new(url.clone()).must("HTTP client");
    runtime
        .block_on(client.put_manifest(repo, "v1", OCI_INDEX, body))
        .must("push the index");

    let name = format!("{repo}:v1");
    let out = shoal(&["pull", "--node", &url, &name]);
    assert_pulled_with_index(&out, &name, &index_digest, &images.app_a.digests);
}

fn assert_pulled_with_index(out: &CmdOutput, image: &str, index: &str, digests: &ImageDigests) {
    assert!(out.success(), "{}\n{}", out.stdout, out.stderr);
    let index_line = format!("index {index} ");
    assert!(
        out.stdout.lines().any(|l| l.starts_with(&index_line)),
        "no {index_line:?} line:\n{}",
        out.stdout
    );
    let manifest_line = format!("manifest {} ", digests.manifest.digest);
    assert!(
        out.stdout.lines().any(|l| l.starts_with(&manifest_line)),
        "app-a's manifest was not chosen:\n{}",
        out.stdout
    );
    let summary = out.stdout.lines().last().unwrap_or_default();
    assert!(
        summary.starts_with(&format!("pulled {image} ({index}): 3 blobs")),
        "{summary}"
    );
}

/// The machine's architecture as image platforms name it.
fn go_arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        other => other,
    }
}

#[test]
fn a_missing_image_is_one_error_line() {
    let node = local_node();
    let out = shoal(&["pull", "--node", &node.url(), "example/nope:latest"]);
    assert!(
        !out.success(),
        "pulling a missing image succeeded:\n{}",
        out.stdout
    );
    let lines: Vec<&str> = out.stderr.lines().collect();
    assert_eq!(lines.len(), 1, "one line on stderr:\n{}", out.stderr);
    assert!(
        lines[0].starts_with("error: image example/nope:latest not found ("),
        "{}",
        lines[0]
    );
    assert!(
        lines[0].contains("MANIFEST_UNKNOWN") || lines[0].contains("NAME_UNKNOWN"),
        "{}",
        lines[0]
    );
}

#[test]
fn no_node_is_one_error_line() {
    let addr = free_port().must("a free port");
    let url = format!("http://{addr}");
    for args in [
        vec!["pull", "--node", &url, "x"],
        vec!["status", "--node", &url],
    ] {
        let out = shoal(&args);
        assert!(!out.success(), "{args:?} succeeded");
        assert_eq!(
            out.stderr,
            format!("error: no shoal node at {url}: connection refused\n"),
            "{args:?}"
        );
    }
}

#[test]
fn status_summarises_the_node() {
    let node = local_node();
    let url = node.url();
    let out = shoal(&["status", "--node", &url]);
    assert!(out.success(), "shoal status failed:\n{}", out.stderr);
    assert_eq!(
        out.stdout.lines().next(),
        Some(format!("node       {url}").as_str()),
        "{}",
        out.stdout
    );
    assert!(out.stdout.contains("bytes"), "{}", out.stdout);

    for row in [
        "peer id",
        // The node asked for any port: the one it got.
        "listening  /ip4/127.0.0.1/tcp/",
        "peers",
        "blobs      0 (0 B)",
        "fetching   0 blobs",
    ] {
        assert!(
            out.stdout.lines().any(|l| l.starts_with(row)),
            "no {row:?} row:\n{}",
            out.stdout
        );
    }
    let json = shoal(&["status", "--json", "--node", &url]);
    assert!(json.success(), "{}", json.stderr);
    let status: serde_json::Value =
        serde_json::from_str(&json.stdout).must("status --json prints JSON");
    assert_eq!(status["blobs"], 0, "{status}");
}
