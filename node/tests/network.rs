//! The network actor on loopback: provider records announced by one node
//! are found by another, and withdrawn ones fade.

use std::time::Duration;

use libp2p::Multiaddr;
use libp2p::identity::Keypair;
use shoal_node::network::{self, NetworkHandle, NetworkOptions};
use shoal_protocol::Digest;

mod common;
use common::Daemon;

struct Node {
    handle: NetworkHandle,
    addr: Multiaddr,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
}

impl Drop for Node {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

async fn start(bootstrap: Vec<Multiaddr>) -> Node {
    start_with(bootstrap, |_| {}).await
}

async fn start_with(bootstrap: Vec<Multiaddr>, tweak: impl FnOnce(&mut NetworkOptions)) -> Node {
    let mut options = NetworkOptions {
        listen: vec!["/ip4/127.0.0.1/tcp/0".parse().expect("addr")],
        bootstrap,
        mdns: false,
        ..NetworkOptions::default()
    };
    tweak(&mut options);
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let (handle, _task) = network::spawn(Keypair::generate_ed25519(), options, async move {
        let _ = stopped.await;
    })
    .expect("network starts");
    // Wait for the listener to be bound.
    let mut addr = None;
    for _ in 0..100 {
        let info = handle.info().await.expect("info");
        if let Some(a) = info.listen_addrs.first() {
            addr = Some(
                a.clone()
                    .with(libp2p::multiaddr::Protocol::P2p(info.peer_id)),
            );
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Node {
        handle,
        addr: addr.expect("a listen address"),
        stop: Some(stop),
    }
}

async fn wait_connected(node: &Node, peers: usize) {
    for _ in 0..250 {
        if node.handle.info().await.expect("info").connected_peers >= peers {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("node did not connect to {peers} peers");
}

/// Asks until the providers show up (announcements travel asynchronously).
async fn find_eventually(
    node: &Node,
    digest: &Digest,
    want: &[libp2p::PeerId],
) -> Vec<libp2p::PeerId> {
    until_named(want, || async {
        node.handle
            .find_providers(digest, 10, Duration::from_secs(2))
            .await
            .expect("find")
    })
    .await
}

/// Repeats `ask` for up to five seconds until its answer names all of `want`.
async fn until_named<F, A>(want: &[libp2p::PeerId], ask: F) -> Vec<libp2p::PeerId>
where
    F: Fn() -> A,
    A: std::future::Future<Output = Vec<libp2p::PeerId>>,
{
    let mut found = Vec::new();
    for _ in 0..50 {
        found = ask().await;
        if want.iter().all(|p| found.contains(p)) {
            return found;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    found
}

#[tokio::test]
async fn providers_are_found_across_nodes() {
    let a = start(Vec::new()).await;
    let b = start(vec![a.addr.clone()]).await;
    let c = start(vec![a.addr.clone()]).await;
    wait_connected(&a, 2).await;

    let digest = Digest::sha256_of(b"a layer");
    a.handle.provide(&digest).await.expect("provide");
    b.handle.provide(&digest).await.expect("provide");
    let found = find_eventually(&c, &digest, &[a.handle.peer_id(), b.handle.peer_id()]).await;
    assert!(found.contains(&a.handle.peer_id()), "{found:?}");
    assert!(found.contains(&b.handle.peer_id()), "{found:?}");

    // Nobody holds this one: the answer is empty, and quick.
    let started = std::time::Instant::now();
    let none = c
        .handle
        .find_providers(&Digest::sha256_of(b"absent"), 10, Duration::from_secs(3))
        .await
        .expect("find");
    assert!(none.is_empty());
    assert!(started.elapsed() <= Duration::from_secs(4));
}

/// A port someone else holds is refused with the cause in the message
/// (libp2p's own error prints nothing; the cause is in its source).
#[tokio::test]
async fn a_busy_listen_port_is_named_with_its_cause() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = taken.local_addr().expect("addr").port();
    let options = NetworkOptions {
        listen: vec![format!("/ip4/127.0.0.1/tcp/{port}").parse().expect("addr")],
        mdns: false,
        ..NetworkOptions::default()
    };
    let err = match network::spawn(Keypair::generate_ed25519(), options, std::future::pending()) {
        Ok(_) => panic!("listening on a taken port succeeded"),
        Err(e) => e.to_string(),
    };
    assert!(err.contains(&port.to_string()), "{err}");
    assert!(err.contains("in use"), "{err}");
}

/// In a site smaller than Kademlia's replication factor, announcements
/// made while a node is up reach its own store, which answers without a
/// lookup; one made before it joined is found by a lookup only.
#[tokio::test]
async fn a_small_site_answers_recent_announcements_from_the_store() {
    let a = start(Vec::new()).await;
    let early = Digest::sha256_of(b"announced before c joined");
    a.handle.provide(&early).await.expect("provide");
    let b = start(vec![a.addr.clone()]).await;
    let c = start(vec![a.addr.clone(), b.addr.clone()]).await;
    wait_connected(&a, 2).await;
    wait_connected(&c, 2).await;

    let claim = Digest::sha256_of(b"a claim of this moment");
    a.handle
        .provide_confirmed(&claim, Duration::from_secs(5))
        .await
        .expect("provide");
    b.handle
        .provide_confirmed(&claim, Duration::from_secs(5))
        .await
        .expect("provide");
    let (pa, pb) = (a.handle.peer_id(), b.handle.peer_id());
    let stored = until_named(&[pa, pb], || async {
        c.handle
            .stored_providers(&claim, 10)
            .await
            .expect("ask")
            .expect("a node knowing two peers answers from its store")
    })
    .await;
    assert!(stored.contains(&pa) && stored.contains(&pb), "{stored:?}");
    let recent = c
        .handle
        .recent_providers(&claim, 10, Duration::from_secs(2))
        .await
        .expect("ask");
    assert!(recent.contains(&pa) && recent.contains(&pb), "{recent:?}");

    // Nobody announced this: an empty answer from the store, not a lookup.
    let none = c
        .handle
        .stored_providers(&Digest::sha256_of(b"absent"), 10)
        .await
        .expect("ask");
    assert_eq!(none, Some(Vec::new()));

    // Announced before c came up: not in c's store, found by a lookup.
    let stored = c.handle.stored_providers(&early, 10).await.expect("ask");
    assert_eq!(stored, Some(Vec::new()));
    let found = find_eventually(&c, &early, &[pa]).await;
    assert!(found.contains(&pa), "{found:?}");
}

/// A node that knows as many peers as the replication factor is not sent
/// every announcement: its store does not answer.
#[tokio::test]
async fn a_node_knowing_many_peers_does_not_answer_from_its_store() {
    let hub = start(Vec::new()).await;
    let claim = Digest::sha256_of(b"a claim");
    hub.handle.provide(&claim).await.expect("provide");
    assert_eq!(
        hub.handle.stored_providers(&claim, 10).await.expect("ask"),
        Some(vec![hub.handle.peer_id()])
    );
    let mut others = Vec::new();
    for _ in 0..20 {
        others.push(start(vec![hub.addr.clone()]).await);
    }
    let mut answer = Some(Vec::new());
    for _ in 0..250 {
        answer = hub.handle.stored_providers(&claim, 10).await.expect("ask");
        if answer.is_none() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(
        answer, None,
        "a node knowing 20 peers answered from its store"
    );
}

#[tokio::test]
async fn a_node_announces_ten_thousand_blobs() {
    let a = start(Vec::new()).await;
    let b = start(vec![a.addr.clone()]).await;
    wait_connected(&b, 1).await;
    let digests: Vec<Digest> = (0..10_000u32)
        .map(|i| Digest::sha256_of(&i.to_be_bytes()))
        .collect();
    for d in &digests {
        a.handle
            .provide(d)
            .await
            .expect("provide (no 1024-key cap)");
    }
    assert_eq!(a.handle.info().await.expect("info").provided_keys, 10_000);
    // A sample of them is found from the other node.
    for d in digests.iter().step_by(997) {
        let found = find_eventually(&b, d, &[a.handle.peer_id()]).await;
        assert!(found.contains(&a.handle.peer_id()), "{d}: {found:?}");
    }
}

/// What a node stores for others is swept once it expires (here after 2 s;
/// the announcer's republish is 20 minutes away); its own keys stay.
#[tokio::test]
async fn expired_records_of_others_are_swept() {
    let a = start(Vec::new()).await;
    let b = start_with(vec![a.addr.clone()], |o| {
        o.provider_ttl = Duration::from_secs(2);
        o.sweep_interval = Duration::from_secs(1);
    })
    .await;
    wait_connected(&b, 1).await;
    b.handle
        .provide(&Digest::sha256_of(b"b's own"))
        .await
        .expect("provide");
    let others = || async { b.handle.info().await.expect("info").others_provider_records };

    // Until a knows b (identify), its announcement reaches nobody: repeat it.
    let digest = Digest::sha256_of(b"held for a while");
    let mut stored = false;
    for _ in 0..50 {
        a.handle.provide(&digest).await.expect("provide");
        tokio::time::sleep(Duration::from_millis(100)).await;
        if others().await == 1 {
            stored = true;
            break;
        }
    }
    assert!(stored, "b never stored a's record");

    let started = std::time::Instant::now();
    while others().await > 0 {
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "a's expired record was not swept"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(b.handle.info().await.expect("info").provided_keys, 1);
}

/// A daemon with the network on: what it commits is announced, and after a
/// restart what it holds is announced again.
#[tokio::test]
async fn daemon_announces_commits_and_reannounces_after_restart() {
    let dir = tempfile::tempdir().expect("tempdir");
    let a = Daemon::start(dir.path(), None, Vec::new()).await;
    let digest = a.push("app", b"a blob announced on commit").await;
    let watcher = start(vec![a.p2p_addr.clone()]).await;
    let found = find_eventually(&watcher, &digest, &[a.peer_id]).await;
    assert!(found.contains(&a.peer_id), "announced on commit: {found:?}");
    drop(watcher);
    let port = a.p2p_port();
    a.stop().await;

    // Restarted, the daemon announces what it already holds.
    let a = Daemon::start(dir.path(), Some(port), Vec::new()).await;
    let watcher = start(vec![a.p2p_addr.clone()]).await;
    let found = find_eventually(&watcher, &digest, &[a.peer_id]).await;
    assert!(
        found.contains(&a.peer_id),
        "re-announced after restart: {found:?}"
    );
    a.stop().await;
}

/// A node that holds nothing serves a blob two peers hold, chunks coming
/// from both, every chunk checked; HEAD answers without downloading.
#[tokio::test]
async fn empty_node_serves_a_blob_from_two_providers() {
    let dirs: Vec<_> = (0..3)
        .map(|_| tempfile::tempdir().expect("tempdir"))
        .collect();
    let a = Daemon::start(dirs[0].path(), None, Vec::new()).await;
    let b = Daemon::start(dirs[1].path(), None, vec![a.p2p_addr.clone()]).await;
    let d = Daemon::start(dirs[2].path(), None, vec![a.p2p_addr.clone()]).await;
    let data: Vec<u8> = (0..12 * 1024 * 1024u32)
        .map(|i| (i.wrapping_mul(2654435761) >> 24) as u8)
        .collect();
    let digest = a.push("app", &data).await;
    assert_eq!(b.push("app", &data).await, digest);
    // Wait until D sees both providers.
    let watcher = start(vec![a.p2p_addr.clone()]).await;
    find_eventually(&watcher, &digest, &[a.peer_id, b.peer_id]).await;

    let client = reqwest::Client::new();
    let head = client
        .head(format!("{}/v2/other/blobs/{digest}", d.base))
        .send()
        .await
        .expect("HEAD");
    assert_eq!(head.status().as_u16(), 200);
    assert_eq!(
        head.headers()["content-length"],
        data.len().to_string().as_str()
    );
    assert_eq!(
        d.metric("shoal_p2p_bytes_received_total").await,
        0,
        "HEAD downloads nothing"
    );

    let got = client
        .get(format!("{}/v2/other/blobs/{digest}", d.base))
        .send()
        .await
        .expect("GET");
    assert_eq!(got.status().as_u16(), 200);
    let body = got.bytes().await.expect("body");
    assert_eq!(Digest::sha256_of(&body), digest);

    let (sent_a, sent_b) = (
        a.metric("shoal_p2p_bytes_sent_total").await,
        b.metric("shoal_p2p_bytes_sent_total").await,
    );
    eprintln!("bytes sent: A {sent_a}, B {sent_b}, blob {}", data.len());
    assert!(
        sent_a >= data.len() as u64 / 5,
        "A sent a substantial share: {sent_a}"
    );
    assert!(
        sent_b >= data.len() as u64 / 5,
        "B sent a substantial share: {sent_b}"
    );
    assert_eq!(d.metric("shoal_chunks_rejected_total").await, 0);
    assert!(d.metric("shoal_chunks_verified_total").await >= 12);

    // Now D holds it and provides it in turn; an absent blob is a quick 404.
    let absent = Digest::sha256_of(b"nobody has this");
    let started = std::time::Instant::now();
    let resp = client
        .get(format!("{}/v2/other/blobs/{absent}", d.base))
        .send()
        .await
        .expect("GET");
    assert_eq!(resp.status().as_u16(), 404);
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "no hang: {:?}",
        started.elapsed()
    );
    for node in [a, b, d] {
        node.stop().await;
    }
}

/// Providers A and B, each given its own copy of one blob, an empty node
/// D that knows A, and the node that looked both providers up (kept, so
/// the network stays as it was). The data directories go last, so they
/// outlive the nodes.
struct TwoProviders {
    a: Daemon,
    b: Daemon,
    d: Daemon,
    _watcher: Node,
    data: Vec<u8>,
    digest: Digest,
    _dirs: Vec<tempfile::TempDir>,
}

/// [`TwoProviders`] with A lying as `a_mode` and B as `b_mode`, a blob of
/// `len` bytes; returns once a lookup finds both providers.
async fn two_providers(
    a_mode: shoal_node::transfer::LiarMode,
    b_mode: shoal_node::transfer::LiarMode,
    len: usize,
    seed: u64,
) -> TwoProviders {
    let dirs: Vec<_> = (0..3)
        .map(|_| tempfile::tempdir().expect("tempdir"))
        .collect();
    let a = Daemon::start_lying(dirs[0].path(), None, Vec::new(), Some(a_mode)).await;
    let b = Daemon::start_lying(dirs[1].path(), None, vec![a.p2p_addr.clone()], Some(b_mode)).await;
    let d = Daemon::start(dirs[2].path(), None, vec![a.p2p_addr.clone()]).await;
    let data = common::pattern(len, seed);
    let digest = a.push("app", &data).await;
    assert_eq!(b.push("app", &data).await, digest);
    let watcher = start(vec![a.p2p_addr.clone()]).await;
    find_eventually(&watcher, &digest, &[a.peer_id, b.peer_id]).await;
    TwoProviders {
        a,
        b,
        d,
        _watcher: watcher,
        data,
        digest,
        _dirs: dirs,
    }
}

/// A provider whose chunk map comes after the fetcher's grace (it was still
/// hashing the blob it had just received) joins the download when it
/// answers, instead of being left out of it: A answers its map late, B at
/// once but slowly delivers its chunks, and A still serves a good share.
#[tokio::test]
async fn a_provider_that_answers_late_joins_the_fetch() {
    use shoal_node::transfer::LiarMode;
    // 1,024 chunks of 64 KiB: B alone, four at a time at 50 ms each, needs
    // 12.8 s; A's map comes 2 s after B's.
    let TwoProviders {
        a,
        b,
        d,
        data,
        digest,
        // Bound, not dropped: the directories and the watcher must outlive
        // the nodes.
        _watcher,
        _dirs,
    } = two_providers(LiarMode::SlowMap, LiarMode::Slow, 64 * 1024 * 1024, 7).await;

    let got = common::pull_blob(d.base.clone(), digest.clone()).await;
    assert_eq!(got, Ok(digest));
    let (sent_a, sent_b) = (
        a.metric("shoal_p2p_bytes_sent_total").await,
        b.metric("shoal_p2p_bytes_sent_total").await,
    );
    eprintln!(
        "bytes sent: A (late map) {sent_a}, B (slow chunks) {sent_b}, blob {}",
        data.len()
    );
    assert!(
        sent_a >= data.len() as u64 / 8,
        "the late provider sent only {sent_a} bytes"
    );
    assert_eq!(d.metric("shoal_chunks_rejected_total").await, 0);
    for node in [a, b, d] {
        node.stop().await;
    }
}

/// A provider whose first chunk-map stream is closed unanswered (dropped
/// in a burst of streams) is asked again on a fresh one and serves its
/// share, instead of sitting out the blob.
#[tokio::test]
async fn a_provider_whose_map_stream_was_dropped_still_serves() {
    use shoal_node::transfer::LiarMode;
    // B is slow, so A has to take its share for the test to pass.
    let TwoProviders {
        a,
        b,
        d,
        data,
        digest,
        // Bound, not dropped: the directories and the watcher must outlive
        // the nodes.
        _watcher,
        _dirs,
    } = two_providers(
        LiarMode::DropFirstMapAsk,
        LiarMode::Slow,
        16 * 1024 * 1024,
        11,
    )
    .await;

    let got = common::pull_blob(d.base.clone(), digest.clone()).await;
    assert_eq!(got, Ok(digest));
    let sent_a = a.metric("shoal_p2p_bytes_sent_total").await;
    eprintln!(
        "bytes sent by A (first map stream dropped) {sent_a} of {}",
        data.len()
    );
    assert!(
        sent_a >= data.len() as u64 / 4,
        "the provider whose map stream was dropped sent only {sent_a} bytes"
    );
    for node in [a, b, d] {
        node.stop().await;
    }
}

/// Limits change how fast, not what: a provider with one upload slot and
/// both ends rate-limited still delivers the blob whole, every chunk
/// checked, with its several request streams taking turns for the slot.
#[tokio::test]
async fn limited_nodes_still_exchange_blobs() {
    let dirs: Vec<_> = (0..2)
        .map(|_| tempfile::tempdir().expect("tempdir"))
        .collect();
    let limit = |c: &mut shoal_node::config::NodeConfig| {
        c.limits.peer_upload = "256MiB".parse().expect("rate");
        c.limits.peer_download = "256MiB".parse().expect("rate");
        c.limits.upload_slots = 1;
    };
    let a = Daemon::start_with(dirs[0].path(), None, Vec::new(), None, None, limit).await;
    let d = Daemon::start_with(
        dirs[1].path(),
        None,
        vec![a.p2p_addr.clone()],
        None,
        None,
        limit,
    )
    .await;
    let data = common::pattern(6 * 1024 * 1024 + 5, 7);
    let digest = a.push("app", &data).await;
    let watcher = start(vec![a.p2p_addr.clone()]).await;
    find_eventually(&watcher, &digest, &[a.peer_id]).await;

    let got = reqwest::get(format!("{}/v2/other/blobs/{digest}", d.base))
        .await
        .expect("GET");
    assert_eq!(got.status().as_u16(), 200);
    let body = got.bytes().await.expect("body");
    assert_eq!(Digest::sha256_of(&body), digest);
    assert!(a.metric("shoal_p2p_bytes_sent_total").await >= data.len() as u64);
    assert_eq!(d.metric("shoal_chunks_rejected_total").await, 0);
    assert!(d.metric("shoal_chunks_verified_total").await >= 7);
    for node in [a, d] {
        node.stop().await;
    }
}

/// A provider that lies (in each way) next to an honest one: the blob
/// arrives whole and right, the liar is banned, and the waste is bounded.
#[tokio::test]
async fn liars_are_caught_and_the_pull_completes() {
    use shoal_node::transfer::LiarMode;
    let data: Vec<u8> = (0..8 * 1024 * 1024u32)
        .map(|i| (i.wrapping_mul(40503) >> 7) as u8)
        .collect();
    for mode in [
        LiarMode::FlipBytes,
        LiarMode::ForgeMap,
        LiarMode::Disconnect,
        LiarMode::Stall,
    ] {
        let dirs: Vec<_> = (0..3)
            .map(|_| tempfile::tempdir().expect("tempdir"))
            .collect();
        let honest = Daemon::start(dirs[0].path(), None, Vec::new()).await;
        let liar = Daemon::start_lying(
            dirs[1].path(),
            None,
            vec![honest.p2p_addr.clone()],
            Some(mode),
        )
        .await;
        let d = Daemon::start(dirs[2].path(), None, vec![honest.p2p_addr.clone()]).await;
        let digest = honest.push("app", &data).await;
        liar.push("app", &data).await;
        let watcher = start(vec![honest.p2p_addr.clone()]).await;
        find_eventually(&watcher, &digest, &[honest.peer_id, liar.peer_id]).await;

        let body = reqwest::get(format!("{}/v2/app/blobs/{digest}", d.base))
            .await
            .expect("GET")
            .bytes()
            .await
            .expect("body");
        assert_eq!(Digest::sha256_of(&body), digest, "{mode:?}: right bytes");
        let received = d.metric("shoal_p2p_bytes_received_total").await;
        let wasted = received.saturating_sub(data.len() as u64);
        let banned = d.metric("shoal_peers_banned_total").await;
        let sent_by_liar = liar.metric("shoal_p2p_bytes_sent_total").await;
        eprintln!("{mode:?}: wasted {wasted} bytes, banned {banned}, liar sent {sent_by_liar}");
        // At most a couple of chunks wasted.
        let chunk = u64::from(shoal_protocol::chunk::DEFAULT_CHUNK_SIZE);
        assert!(wasted <= 2 * chunk, "{mode:?}: wasted {wasted}");
        if mode == LiarMode::ForgeMap && sent_by_liar > 0 && banned == 0 {
            panic!("{mode:?}: the liar's map was never exposed");
        }
        assert!(banned >= 1, "{mode:?}: the liar is banned");
        for node in [honest, liar, d] {
            node.stop().await;
        }
    }
}

/// Two of three providers stop in the middle of a transfer: the pull
/// completes from the third.
#[tokio::test]
async fn pull_survives_losing_two_of_three_providers() {
    let dirs: Vec<_> = (0..4)
        .map(|_| tempfile::tempdir().expect("tempdir"))
        .collect();
    let a = Daemon::start(dirs[0].path(), None, Vec::new()).await;
    let b = Daemon::start(dirs[1].path(), None, vec![a.p2p_addr.clone()]).await;
    let c = Daemon::start(dirs[2].path(), None, vec![a.p2p_addr.clone()]).await;
    let d = Daemon::start(dirs[3].path(), None, vec![a.p2p_addr.clone()]).await;
    let data: Vec<u8> = (0..48 * 1024 * 1024u32)
        .map(|i| (i.wrapping_mul(2246822519) >> 13) as u8)
        .collect();
    let digest = a.push("app", &data).await;
    b.push("app", &data).await;
    c.push("app", &data).await;
    let watcher = start(vec![a.p2p_addr.clone()]).await;
    find_eventually(&watcher, &digest, &[a.peer_id, b.peer_id, c.peer_id]).await;

    let url = format!("{}/v2/app/blobs/{digest}", d.base);
    let pull = tokio::spawn(async move {
        reqwest::get(url)
            .await
            .expect("GET")
            .bytes()
            .await
            .expect("body")
    });
    // Let the transfer start, then take two providers away.
    for _ in 0..200 {
        if d.metric("shoal_p2p_bytes_received_total").await > 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let received_before_loss = d.metric("shoal_p2p_bytes_received_total").await;
    b.stop().await;
    c.stop().await;
    let body = pull.await.expect("pull task");
    assert_eq!(
        Digest::sha256_of(&body),
        digest,
        "whole and right from the survivor"
    );
    eprintln!(
        "received before losing two providers: {received_before_loss} of {}; A sent {}",
        data.len(),
        a.metric("shoal_p2p_bytes_sent_total").await
    );
    assert!(
        received_before_loss < data.len() as u64,
        "the loss happened mid-transfer"
    );
    for node in [a, d] {
        node.stop().await;
    }
}

/// A request of a kind the node does not know (a newer peer's) is answered
/// `Refused`, and the stream goes on: the next request on it is answered.
#[tokio::test]
async fn an_unknown_request_is_refused_and_the_stream_goes_on() {
    use futures_util::{AsyncReadExt, AsyncWriteExt};
    use shoal_protocol::wire::{Message, PROTOCOL_NAME, decode_frame, encode_frame};

    let dir = tempfile::tempdir().expect("tempdir");
    let a = Daemon::start(dir.path(), None, Vec::new()).await;
    let digest = a.push("app", b"a blob asked about").await;
    let asker = start(vec![a.p2p_addr.clone()]).await;
    wait_connected(&asker, 1).await;
    let mut stream = asker
        .handle
        .stream_control()
        .open_stream(a.peer_id, libp2p::StreamProtocol::new(PROTOCOL_NAME))
        .await
        .expect("stream");
    let known = encode_frame(&Message::GetInfo {
        digest: digest.clone(),
    });
    // The same frame under a kind no build knows.
    let mut unknown = known.clone();
    unknown[4] = 250;
    stream
        .write_all(&[unknown, known].concat())
        .await
        .expect("write");
    stream.flush().await.expect("flush");

    let mut replies = Vec::new();
    let mut buf = Vec::new();
    let mut read = [0u8; 4096];
    while replies.len() < 2 {
        let n = tokio::time::timeout(Duration::from_secs(10), stream.read(&mut read))
            .await
            .expect("an answer in time")
            .expect("read");
        assert!(n > 0, "the node closed the stream after {replies:?}");
        buf.extend_from_slice(&read[..n]);
        while let Some((msg, used)) = decode_frame(&buf).expect("a valid frame") {
            replies.push(msg);
            buf.drain(..used);
        }
    }
    assert!(
        matches!(&replies[0], Message::Refused { reason } if reason.contains("250")),
        "{:?}",
        replies[0]
    );
    assert!(
        matches!(&replies[1], Message::Info { digest: d, complete: true, .. } if *d == digest),
        "{:?}",
        replies[1]
    );
    a.stop().await;
}
