//! Several nodes pulling the same blob from upstream at once (issue 5):
//! one fetches it over the uplink and the others follow it in a chain,
//! each taking every chunk from the one before it as soon as that one has
//! it; when the leader dies half-way, another node goes on from where the
//! chunks got to, so the blob still crosses the uplink about once; when a
//! follower in the chain dies, the ones behind it take from the one before
//! it.
//!
//! The upstream is a paced origin on loopback that counts the bytes it
//! sends (`common/slow_origin.rs`).

use shoal_protocol::Digest;

mod common;
use common::slow_origin::SlowOrigin;
use common::{data_dirs, mirror_site, pattern, pull_blob};

const MIB: usize = 1024 * 1024;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn simultaneous_pulls_take_the_blob_over_the_uplink_once() {
    let blob = pattern(16 * MIB, 51);
    let digest = Digest::sha256_of(&blob);
    let origin = SlowOrigin::start(std::slice::from_ref(&blob), 8 * MIB as u64).await;
    let dirs = data_dirs(4);
    let (hub, mirrors) = mirror_site(&dirs, &origin.url, 1).await;

    let pulls: Vec<_> = mirrors
        .iter()
        .map(|m| tokio::spawn(pull_blob(m.base.clone(), digest.clone())))
        .collect();
    for p in pulls {
        assert_eq!(p.await.expect("task"), Ok(digest.clone()));
    }
    let sent = origin.sent();
    let mut from_upstream = Vec::new();
    for m in &mirrors {
        from_upstream.push(m.metric("shoal_upstream_bytes_received_total").await);
    }
    eprintln!(
        "origin sent {sent} bytes for a {} byte blob; per node from upstream: {from_upstream:?}",
        blob.len()
    );
    assert!(
        sent as f64 <= 1.1 * blob.len() as f64,
        "the origin sent {sent} bytes for a blob of {}",
        blob.len()
    );
    assert_eq!(
        from_upstream.iter().filter(|b| **b > 0).count(),
        1,
        "exactly one node fetches from upstream"
    );
    for m in mirrors {
        m.stop().await;
    }
    hub.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leader_dying_half_way_is_taken_over_without_starting_over() {
    let blob = pattern(24 * MIB, 52);
    let digest = Digest::sha256_of(&blob);
    let origin = SlowOrigin::start(std::slice::from_ref(&blob), 6 * MIB as u64).await;
    let dirs = data_dirs(4);
    let (hub, mut mirrors) = mirror_site(&dirs, &origin.url, 1).await;

    let pulls: Vec<_> = mirrors
        .iter()
        .map(|m| tokio::spawn(pull_blob(m.base.clone(), digest.clone())))
        .collect();
    // Half-way through the uplink, the node fetching from it stops.
    origin.wait_until_sent(blob.len() / 2).await;
    let mut leader = None;
    for (i, m) in mirrors.iter().enumerate() {
        if m.metric("shoal_upstream_bytes_received_total").await > 0 {
            leader = Some(i);
        }
    }
    let leader = leader.expect("one node is fetching from upstream");
    let sent_before = origin.sent() as usize;
    // What the followers hold at this moment came from the leader while it
    // was still fetching.
    let mut streamed = 0;
    for (i, m) in mirrors.iter().enumerate() {
        if i != leader {
            streamed = streamed.max(m.metric("shoal_p2p_bytes_received_total").await as usize);
        }
    }
    mirrors.remove(leader).stop().await;
    eprintln!(
        "leader stopped after the origin sent {sent_before} bytes; a follower held {streamed}"
    );
    assert!(
        streamed > 0,
        "the followers took nothing from the leader while it fetched"
    );

    let mut results = Vec::new();
    for (i, p) in pulls.into_iter().enumerate() {
        let r = p.await.expect("task");
        if i != leader {
            results.push(r);
        }
    }
    for r in results {
        assert_eq!(r, Ok(digest.clone()), "a follower's pull");
    }
    let sent = origin.sent() as usize;
    eprintln!(
        "origin sent {sent} bytes in all for a {} byte blob",
        blob.len()
    );
    // Starting over would cost the bytes sent before the stop again.
    assert!(
        sent <= blob.len() + 4 * MIB,
        "the origin sent {sent} bytes for a blob of {}: the new leader started over",
        blob.len()
    );
    for m in mirrors {
        m.stop().await;
    }
    hub.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_follower_dying_mid_chain_is_passed_over() {
    let blob = pattern(24 * MIB, 53);
    let digest = Digest::sha256_of(&blob);
    let origin = SlowOrigin::start(std::slice::from_ref(&blob), 6 * MIB as u64).await;
    let dirs = data_dirs(5);
    let (hub, mut mirrors) = mirror_site(&dirs, &origin.url, 1).await;

    let pulls: Vec<_> = mirrors
        .iter()
        .map(|m| tokio::spawn(pull_blob(m.base.clone(), digest.clone())))
        .collect();
    origin.wait_until_sent(blob.len() / 3).await;
    // A follower that has sent chunks is relaying them to the one behind it.
    let mut relay = None;
    let mut most_sent = 0;
    for (i, m) in mirrors.iter().enumerate() {
        if m.metric("shoal_upstream_bytes_received_total").await > 0 {
            continue;
        }
        let sent = m.metric("shoal_p2p_bytes_sent_total").await;
        if sent > most_sent {
            (relay, most_sent) = (Some(i), sent);
        }
    }
    let relay = relay.expect("a follower relays chunks to another");
    eprintln!("stopping a follower that relayed {most_sent} bytes");
    mirrors.remove(relay).stop().await;

    for (i, p) in pulls.into_iter().enumerate() {
        let r = p.await.expect("task");
        if i != relay {
            assert_eq!(r, Ok(digest.clone()), "pull {i}");
        }
    }
    let sent = origin.sent() as usize;
    eprintln!("origin sent {sent} bytes for a {} byte blob", blob.len());
    assert!(
        sent as f64 <= 1.1 * blob.len() as f64,
        "the origin sent {sent} bytes for a blob of {}: losing a follower cost an upstream fetch",
        blob.len()
    );
    for m in mirrors {
        m.stop().await;
    }
    hub.stop().await;
}
