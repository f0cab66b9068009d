//! A blob several nodes want from upstream at once, split among them
//! (`[upstream] split`, issue 5): each fetches a disjoint range of chunks
//! from upstream and takes the rest from the others, so no chunk crosses
//! the uplink twice; when one of them stops half-way, the chunks only it
//! had are fetched by another node and everyone still gets the blob.
//!
//! The upstream is a paced origin on loopback that records every range it
//! is asked for (`common/slow_origin.rs`).

use shoal_protocol::Digest;

mod common;
use common::slow_origin::SlowOrigin;
use common::{data_dirs, mirror_site, pattern, pull_blob};

const MIB: usize = 1024 * 1024;

/// Bytes asked for more than once among `ranges` (inclusive byte ranges).
fn overlap(ranges: &[(u64, u64)]) -> u64 {
    let mut sorted = ranges.to_vec();
    sorted.sort();
    let mut twice = 0;
    let mut covered_to: Option<u64> = None;
    for (first, last) in sorted {
        if let Some(end) = covered_to
            && first <= end
        {
            twice += end.min(last) - first + 1;
        }
        covered_to = Some(covered_to.map_or(last, |end| end.max(last)));
    }
    twice
}

#[test]
fn overlap_counts_bytes_asked_twice() {
    assert_eq!(overlap(&[(0, 9), (10, 19)]), 0);
    assert_eq!(overlap(&[(10, 19), (0, 14)]), 5);
    assert_eq!(overlap(&[(0, 99), (10, 19), (50, 59)]), 20);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn split_nodes_fetch_disjoint_ranges_and_no_chunk_twice() {
    let blob = pattern(12 * MIB, 61);
    let digest = Digest::sha256_of(&blob);
    let origin = SlowOrigin::start(std::slice::from_ref(&blob), 4 * MIB as u64).await;
    let dirs = data_dirs(4);
    let (hub, mirrors) = mirror_site(&dirs, &origin.url, dirs.len() - 1).await;

    let pulls: Vec<_> = mirrors
        .iter()
        .map(|m| tokio::spawn(pull_blob(m.base.clone(), digest.clone())))
        .collect();
    for p in pulls {
        assert_eq!(p.await.expect("task"), Ok(digest.clone()));
    }
    let asked = origin.asked();
    let mut from_upstream = Vec::new();
    let mut from_peers = Vec::new();
    for m in &mirrors {
        from_upstream.push(m.metric("shoal_upstream_bytes_received_total").await);
        from_peers.push(m.metric("shoal_p2p_bytes_received_total").await);
    }
    eprintln!(
        "origin sent {} bytes for {}; ranges asked: {asked:?}; per node from upstream {from_upstream:?}, from peers {from_peers:?}",
        origin.sent(),
        blob.len()
    );
    assert_eq!(overlap(&asked), 0, "a byte was fetched from upstream twice");
    assert_eq!(
        origin.sent(),
        blob.len() as u64,
        "the origin sent more than the blob"
    );
    // Split, not led: every node fetched a share and took the rest.
    for (i, (up, peers)) in from_upstream.iter().zip(&from_peers).enumerate() {
        assert!(*up > 0, "node {i} fetched nothing from upstream");
        assert!(*peers > 0, "node {i} took nothing from the others");
        assert_eq!(up + peers, blob.len() as u64, "node {i} got bytes twice");
    }
    for m in mirrors {
        m.stop().await;
    }
    hub.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_partner_dying_mid_split_has_its_range_taken_over() {
    let blob = pattern(24 * MIB, 62);
    let digest = Digest::sha256_of(&blob);
    // Each range (8 MiB) takes four seconds.
    let origin = SlowOrigin::start(std::slice::from_ref(&blob), 2 * MIB as u64).await;
    let dirs = data_dirs(4);
    let (hub, mut mirrors) = mirror_site(&dirs, &origin.url, dirs.len() - 1).await;

    let pulls: Vec<_> = mirrors
        .iter()
        .map(|m| tokio::spawn(pull_blob(m.base.clone(), digest.clone())))
        .collect();
    // A third of the way through every range, one fetching node stops.
    origin.wait_until_sent(blob.len() / 3).await;
    let mut fetched = Vec::new();
    for m in &mirrors {
        fetched.push(m.metric("shoal_upstream_bytes_received_total").await);
    }
    assert!(
        fetched.iter().all(|b| *b > 0),
        "every node fetches a range: {fetched:?}"
    );
    let dead = 1;
    let dead_fetched = fetched[dead];
    mirrors.remove(dead).stop().await;
    eprintln!("stopped a node that had fetched {dead_fetched} bytes from upstream");

    for (i, p) in pulls.into_iter().enumerate() {
        let r = p.await.expect("task");
        if i != dead {
            assert_eq!(r, Ok(digest.clone()), "a surviving node's pull");
        }
    }
    let sent = origin.sent() as usize;
    let mut survivors = Vec::new();
    for m in &mirrors {
        survivors.push(m.metric("shoal_upstream_bytes_received_total").await);
    }
    eprintln!(
        "origin sent {sent} bytes in all for {}; survivors fetched {survivors:?} from upstream",
        blob.len()
    );
    // The dead node's range was fetched by a survivor: the survivors
    // together fetched more than their own two thirds.
    assert!(
        survivors.iter().sum::<u64>() > (2 * blob.len() / 3) as u64,
        "nobody took the dead node's range over"
    );
    // What it had fetched and nobody had taken yet is fetched again, no
    // more: the others did not start over.
    assert!(
        sent <= blob.len() + dead_fetched as usize + 2 * MIB,
        "the origin sent {sent} bytes for a blob of {}",
        blob.len()
    );
    for m in mirrors {
        m.stop().await;
    }
    hub.stop().await;
}
