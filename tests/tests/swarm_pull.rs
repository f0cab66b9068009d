//! Four real nodes on loopback: an image pushed to A and B is pulled with
//! skopeo from D, which holds nothing; chunks come from both A and B.

use std::time::{Duration, Instant};

use shoal_tests::images::{BIG_LAYER_BYTES, test_images};
use shoal_tests::oci::Layout;
use shoal_tests::skopeo::{self, Format};
use shoal_tests::{Must, ShoalNode, TestRegistry, require};

fn node(bootstrap: Option<&str>) -> ShoalNode {
    shoal_tests::node::start_peer(bootstrap, "info").must("start shoal")
}

fn bootstrap_addr(node: &ShoalNode) -> String {
    shoal_tests::node::bootstrap_addr(node).must("bootstrap address")
}

/// Blocking HTTP for this test (the helpers' runtime-free probe only reads
/// status lines).
fn block_on<F: std::future::Future>(f: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .must("runtime")
        .block_on(f)
}

fn head_ok(url: &str) -> bool {
    block_on(async {
        reqwest::Client::new()
            .head(url)
            .timeout(Duration::from_secs(10))
            .send()
            .await
            .is_ok_and(|r| r.status().is_success())
    })
}

fn metric(node: &ShoalNode, name: &str) -> u64 {
    shoal_tests::node::metric(node, name).must("GET /metrics")
}

#[test]
fn empty_node_serves_an_image_from_two_peers() {
    require!(skopeo::require());
    let images = require!(test_images());
    // A and B each get the image pushed while they know nobody, so each
    // holds its own copy; C and D then join through both.
    let a = node(None);
    let b = node(None);
    let scratch = tempfile::tempdir().must("scratch");
    let src = images.oci_ref(&images.big);
    let digest = skopeo::push(&src, &a.host(), "swarm/big:v1", Format::Oci, scratch.path())
        .must("push to A");
    let digest_b = skopeo::push(&src, &b.host(), "swarm/big:v1", Format::Oci, scratch.path())
        .must("push to B");
    assert_eq!(digest, digest_b);
    assert_eq!(metric(&a, "shoal_p2p_bytes_sent_total"), 0);
    assert_eq!(metric(&b, "shoal_p2p_bytes_sent_total"), 0);
    let (addr_a, addr_b) = (bootstrap_addr(&a), bootstrap_addr(&b));
    // `shoal identity` names the peer id the running node reports, so
    // scripts can build bootstrap addresses from the data directory.
    for (node, addr) in [(&a, &addr_a), (&b, &addr_b)] {
        let id = shoal_tests::node::peer_id(node).must("shoal identity");
        assert!(
            addr.ends_with(&format!("/p2p/{id}")),
            "{addr} is not {id}'s"
        );
    }
    let bootstrap = format!("{addr_a},{addr_b}");
    let _c = node(Some(&bootstrap));
    let d = node(Some(&bootstrap));

    // Announcements travel asynchronously: wait until D can see the manifest.
    let deadline = Instant::now() + Duration::from_secs(30);
    let head_url = format!("{}/v2/swarm/big/blobs/{digest}", d.url());
    while !head_ok(&head_url) {
        assert!(
            Instant::now() < deadline,
            "D never found a provider of {digest}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }

    let out = scratch.path().join("pulled");
    skopeo::pull(&d.host(), &format!("swarm/big@{digest}"), &out, "x").must("skopeo pull from D");
    let pulled = Layout::new(&out).image("x").must("pulled image");
    assert_eq!(pulled.manifest.digest, digest);
    assert_eq!(pulled.manifest.digest, images.big.digests.manifest.digest);
    let verified = Layout::new(&out)
        .verify_all_blobs()
        .must("every pulled blob hashes to its name");
    assert!(verified >= 3, "{verified} blobs");

    let (sent_a, sent_b) = (
        metric(&a, "shoal_p2p_bytes_sent_total"),
        metric(&b, "shoal_p2p_bytes_sent_total"),
    );
    eprintln!("bytes sent by A {sent_a}, by B {sent_b}; big layer {BIG_LAYER_BYTES}");
    let share = BIG_LAYER_BYTES as u64 / 5;
    assert!(
        sent_a >= share,
        "A sent {sent_a} bytes, less than a fifth of the big layer"
    );
    assert!(
        sent_b >= share,
        "B sent {sent_b} bytes, less than a fifth of the big layer"
    );
    assert_eq!(metric(&d, "shoal_chunks_rejected_total"), 0);
}
