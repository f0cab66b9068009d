//! The network actor on loopback: provider records announced by one node
//! are found by another, and withdrawn ones fade.

use std::time::Duration;

use libp2p::Multiaddr;
use libp2p::identity::Keypair;
use shoal_node::network::{self, NetworkHandle, NetworkOptions};
use shoal_protocol::Digest;

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
    let options = NetworkOptions {
        listen: vec!["/ip4/127.0.0.1/tcp/0".parse().expect("addr")],
        bootstrap,
        mdns: false,
        ..NetworkOptions::default()
    };
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
    let mut found = Vec::new();
    for _ in 0..50 {
        found = node
            .handle
            .find_providers(digest, 10, Duration::from_secs(2))
            .await
            .expect("find");
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
    // A sample of them is found from the other node.
    for d in digests.iter().step_by(997) {
        let found = find_eventually(&b, d, &[a.handle.peer_id()]).await;
        assert!(found.contains(&a.handle.peer_id()), "{d}: {found:?}");
    }
}

/// A daemon with the network on: what it commits is announced, and after a
/// restart what it holds is announced again.
#[tokio::test]
async fn daemon_announces_commits_and_reannounces_after_restart() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data_dir = dir.path().join("data");
    let peer_id = shoal_node::network::identity::load_or_create(&data_dir)
        .expect("identity")
        .public()
        .to_peer_id();
    let p2p_port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port();
    let p2p_addr: Multiaddr = format!("/ip4/127.0.0.1/tcp/{p2p_port}/p2p/{peer_id}")
        .parse()
        .expect("addr");

    let start_daemon = || {
        let mut config = shoal_node::config::NodeConfig {
            data_dir: data_dir.clone(),
            ..Default::default()
        };
        config.p2p.listen = vec![format!("/ip4/127.0.0.1/tcp/{p2p_port}")];
        config.p2p.mdns = false;
        config.shutdown_grace = Duration::from_secs(1);
        async move {
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
                .await
                .expect("bind");
            let base = format!("http://{}", listener.local_addr().expect("addr"));
            let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
            let task = tokio::spawn(async move {
                shoal_node::daemon::serve(config, listener, async move {
                    let _ = stopped.await;
                })
                .await
                .expect("daemon runs");
            });
            (base, stop, task)
        }
    };

    let (base, stop, task) = start_daemon().await;
    let data = b"a blob announced on commit".to_vec();
    let digest = Digest::sha256_of(&data);
    let resp = reqwest::Client::new()
        .post(format!("{base}/v2/app/blobs/uploads/?digest={digest}"))
        .body(data)
        .send()
        .await
        .expect("push");
    assert_eq!(resp.status().as_u16(), 201);
    let watcher = start(vec![p2p_addr.clone()]).await;
    let found = find_eventually(&watcher, &digest, &[peer_id]).await;
    assert!(found.contains(&peer_id), "announced on commit: {found:?}");
    drop(watcher);
    let _ = stop.send(());
    task.await.expect("daemon stops");

    // Restarted, the daemon announces what it already holds.
    let (_base, stop, task) = start_daemon().await;
    let watcher = start(vec![p2p_addr]).await;
    let found = find_eventually(&watcher, &digest, &[peer_id]).await;
    assert!(
        found.contains(&peer_id),
        "re-announced after restart: {found:?}"
    );
    let _ = stop.send(());
    task.await.expect("daemon stops");
}
