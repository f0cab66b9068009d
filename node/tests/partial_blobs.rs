//! Blobs while they are still arriving: a restarted node resumes its
//! download, a node serves the checked chunks of a blob it is still
//! fetching (to peers and, in order, to its client), and a fetch that fails
//! cuts the client off instead of completing a wrong body.

use std::time::{Duration, Instant};

use futures_util::StreamExt;
use shoal_node::transfer::LiarMode;
use shoal_protocol::Digest;

mod common;
use common::{Daemon, pattern};

const MIB: u64 = 1024 * 1024;
/// The chunk size nodes serve under.
const CHUNK: u64 = shoal_protocol::chunk::DEFAULT_CHUNK_SIZE as u64;

fn random_blob(len: u64) -> Vec<u8> {
    pattern(len as usize, len ^ u64::from(std::process::id()))
}

fn blob_url(node: &Daemon, digest: &Digest) -> String {
    format!("{}/v2/app/blobs/{digest}", node.base)
}

/// Waits until `node` finds a provider of the blob (HEAD answers).
async fn wait_visible(node: &Daemon, digest: &Digest) {
    let client = reqwest::Client::new();
    for _ in 0..100 {
        if client
            .head(blob_url(node, digest))
            .send()
            .await
            .is_ok_and(|r| r.status().is_success())
        {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("{digest} never became visible");
}

async fn wait_metric_at_least(node: &Daemon, name: &str, at_least: u64) -> u64 {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let v = node.metric(name).await;
        if v >= at_least {
            return v;
        }
        assert!(Instant::now() < deadline, "{name} stayed at {v}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_node_resumes_instead_of_starting_over() {
    let (dir_a, dir_d) = (
        tempfile::tempdir().expect("dir"),
        tempfile::tempdir().expect("dir"),
    );
    // A slow provider, so the download can be cut in the middle.
    let a = Daemon::start_lying(dir_a.path(), None, Vec::new(), Some(LiarMode::Slow)).await;
    let size = 64 * MIB;
    let data = random_blob(size);
    let digest = a.push("app", &data).await;
    let d = Daemon::start(dir_d.path(), None, vec![a.p2p_addr.clone()]).await;
    let d_port = d.p2p_port();
    wait_visible(&d, &digest).await;

    let url = blob_url(&d, &digest);
    let client = tokio::spawn(async move {
        // Cut off when the node stops; only the restart's pull matters.
        let _ = reqwest::get(url).await.map(|r| r.bytes());
    });
    let verified = wait_metric_at_least(&d, "shoal_chunks_verified_total", 12).await;
    d.stop().await;
    client.abort();
    // Requests that were in flight when the node stopped settle.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let sent_before_restart = a.metric("shoal_p2p_bytes_sent_total").await;
    assert!(
        verified < size / CHUNK,
        "the download finished before the node was stopped"
    );

    let d = Daemon::start(dir_d.path(), Some(d_port), vec![a.p2p_addr.clone()]).await;
    let body = reqwest::get(blob_url(&d, &digest))
        .await
        .expect("get")
        .bytes()
        .await
        .expect("body");
    assert_eq!(Digest::sha256_of(&body), digest);
    let sent_after_restart = a.metric("shoal_p2p_bytes_sent_total").await - sent_before_restart;
    // At least `verified` chunks were stored before the stop.
    let remaining = size - verified * CHUNK;
    eprintln!(
        "resume: {verified} of {} chunks stored before the stop; {sent_after_restart} bytes fetched after the restart, {remaining} remained",
        size / CHUNK
    );
    assert!(
        sent_after_restart <= remaining + 4 * CHUNK,
        "fetched {sent_after_restart} bytes after the restart, but only {remaining} remained"
    );
    for node in [a, d] {
        node.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_serves_what_it_has_of_a_blob_still_arriving() {
    let dirs: Vec<_> = (0..3).map(|_| tempfile::tempdir().expect("dir")).collect();
    let a = Daemon::start_lying(dirs[0].path(), None, Vec::new(), Some(LiarMode::Slow)).await;
    let size = 64 * MIB;
    let chunks = size / CHUNK;
    let data = random_blob(size);
    let digest = a.push("app", &data).await;
    let d = Daemon::start(dirs[1].path(), None, vec![a.p2p_addr.clone()]).await;
    wait_visible(&d, &digest).await;

    // D's client is streamed the blob while D is still fetching it.
    let response = reqwest::get(blob_url(&d, &digest)).await.expect("get");
    assert_eq!(response.status().as_u16(), 200);
    assert_eq!(response.content_length(), Some(size));
    let mut body = response.bytes_stream();
    let first = body.next().await.expect("a first piece").expect("bytes");
    let verified_at_first_byte = d.metric("shoal_chunks_verified_total").await;
    assert!(
        verified_at_first_byte < chunks,
        "the client saw nothing before the whole blob was there"
    );
    let reader = tokio::spawn(async move {
        let mut all = first.to_vec();
        while let Some(piece) = body.next().await {
            all.extend_from_slice(&piece.expect("piece"));
        }
        all
    });

    // E arrives while D is half way: D is one of its providers.
    wait_metric_at_least(&d, "shoal_chunks_verified_total", 8).await;
    let e = Daemon::start(dirs[2].path(), None, vec![a.p2p_addr.clone()]).await;
    let e_url = blob_url(&e, &digest);
    let e_pull = tokio::spawn(async move {
        reqwest::get(e_url)
            .await
            .expect("get")
            .bytes()
            .await
            .expect("body")
    });
    // Sample D while E pulls: it sends chunks before it holds them all.
    let mut served_while_partial = 0;
    while !e_pull.is_finished() {
        let verified = d.metric("shoal_chunks_verified_total").await;
        let sent = d.metric("shoal_p2p_bytes_sent_total").await;
        if verified < chunks && sent > served_while_partial {
            served_while_partial = sent;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let e_body = e_pull.await.expect("E's pull");
    assert_eq!(Digest::sha256_of(&e_body), digest);
    let d_body = reader.await.expect("D's client");
    assert_eq!(Digest::sha256_of(&d_body), digest);
    eprintln!(
        "partial serving: D's client got its first bytes with {verified_at_first_byte}/{chunks} chunks checked; D served {served_while_partial} bytes to E while still fetching"
    );
    assert!(
        served_while_partial > 0,
        "D never served a chunk while partial"
    );
    for node in [a, d, e] {
        node.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_fetch_cuts_the_client_off() {
    let (dir_a, dir_d) = (
        tempfile::tempdir().expect("dir"),
        tempfile::tempdir().expect("dir"),
    );
    // The only provider flips a byte in every chunk.
    let a = Daemon::start_lying(dir_a.path(), None, Vec::new(), Some(LiarMode::FlipBytes)).await;
    let data = random_blob(8 * MIB);
    let digest = a.push("app", &data).await;
    let d = Daemon::start(dir_d.path(), None, vec![a.p2p_addr.clone()]).await;
    wait_visible(&d, &digest).await;

    let response = reqwest::get(blob_url(&d, &digest)).await.expect("get");
    let status = response.status().as_u16();
    let body = response.bytes().await;
    match status {
        // The fetch failed before the response started: a plain 404.
        404 => {}
        // It failed after: the body must end in an error, never complete.
        200 => assert!(body.is_err(), "a complete body from a lying provider"),
        other => panic!("unexpected status {other}"),
    }
    assert_eq!(d.metric("shoal_chunks_verified_total").await, 0);
    let blob_file = dir_d.path().join("blobs").join("sha256").join(digest.hex());
    assert!(!blob_file.exists(), "a wrong blob was committed");
    for node in [a, d] {
        node.stop().await;
    }
}
