//! A whole node (store, registry, network) in the test's process, for the
//! swarm tests.
#![allow(dead_code)] // each test crate uses a different part

use std::time::Duration;

use libp2p::Multiaddr;
use shoal_protocol::Digest;

pub mod slow_origin;

/// GETs blob `digest` (under repository `tests/big`) through the node at
/// `base`; returns the digest of the body, or what cut it.
pub async fn pull_blob(base: String, digest: Digest) -> Result<Digest, String> {
    let response = reqwest::Client::new()
        .get(format!("{base}/v2/tests/big/blobs/{digest}"))
        .timeout(Duration::from_secs(120))
        .send()
        .await
        .map_err(|e| e.to_string())?;
    if !response.status().is_success() {
        return Err(format!("status {}", response.status()));
    }
    let body = response.bytes().await.map_err(|e| e.to_string())?;
    Ok(Digest::sha256_of(&body))
}

/// A bootstrap node that wants nothing, and a mirror of `origin_url` in
/// each of the other `dirs` that joined through it (so they stay connected
/// when any of them stops), with `[upstream] split = split`.
pub async fn mirror_site(
    dirs: &[tempfile::TempDir],
    origin_url: &str,
    split: usize,
) -> (Daemon, Vec<Daemon>) {
    let hub = Daemon::start(dirs[0].path(), None, Vec::new()).await;
    let mut mirrors = Vec::new();
    for dir in &dirs[1..] {
        let bootstrap = vec![hub.p2p_addr.clone()];
        let tweak = |c: &mut shoal_node::config::NodeConfig| c.upstream.split = split;
        mirrors.push(
            Daemon::start_with(dir.path(), None, bootstrap, None, Some(origin_url), tweak).await,
        );
    }
    // Every mirror is in every other's routing table before the pulls.
    tokio::time::sleep(Duration::from_secs(2)).await;
    (hub, mirrors)
}

/// `n` fresh data directories.
pub fn data_dirs(n: usize) -> Vec<tempfile::TempDir> {
    (0..n).map(|_| tempfile::tempdir().expect("dir")).collect()
}

/// A whole node (store, registry, network) in this process.
/// Deterministic bytes that do not repeat (xorshift), for test blobs.
pub fn pattern(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

pub struct Daemon {
    pub base: String,
    pub p2p_addr: Multiaddr,
    pub peer_id: libp2p::PeerId,
    stop: tokio::sync::oneshot::Sender<()>,
    task: tokio::task::JoinHandle<()>,
}

impl Daemon {
    pub async fn start(
        data_dir: &std::path::Path,
        p2p_port: Option<u16>,
        bootstrap: Vec<Multiaddr>,
    ) -> Daemon {
        Daemon::start_lying(data_dir, p2p_port, bootstrap, None).await
    }

    pub async fn start_lying(
        data_dir: &std::path::Path,
        p2p_port: Option<u16>,
        bootstrap: Vec<Multiaddr>,
        liar: Option<shoal_node::transfer::LiarMode>,
    ) -> Daemon {
        Daemon::start_full(data_dir, p2p_port, bootstrap, liar, None).await
    }

    /// A node pulling through from `upstream` (an http:// URL) by default.
    pub async fn start_mirror(
        data_dir: &std::path::Path,
        bootstrap: Vec<Multiaddr>,
        upstream: &str,
    ) -> Daemon {
        Daemon::start_full(data_dir, None, bootstrap, None, Some(upstream)).await
    }

    pub async fn start_full(
        data_dir: &std::path::Path,
        p2p_port: Option<u16>,
        bootstrap: Vec<Multiaddr>,
        liar: Option<shoal_node::transfer::LiarMode>,
        upstream: Option<&str>,
    ) -> Daemon {
        Daemon::start_with(data_dir, p2p_port, bootstrap, liar, upstream, |_| {}).await
    }

    /// As [`Daemon::start_full`], with `tweak` applied to the config last.
    pub async fn start_with(
        data_dir: &std::path::Path,
        p2p_port: Option<u16>,
        bootstrap: Vec<Multiaddr>,
        liar: Option<shoal_node::transfer::LiarMode>,
        upstream: Option<&str>,
        tweak: impl FnOnce(&mut shoal_node::config::NodeConfig),
    ) -> Daemon {
        let peer_id = shoal_node::network::identity::load_or_create(data_dir)
            .expect("identity")
            .public()
            .to_peer_id();
        // Port 0 unless told: a port probed free beforehand can be taken by
        // another test's outgoing connection before the daemon binds it.
        let asked_port = p2p_port.unwrap_or(0);
        let mut config = shoal_node::config::NodeConfig {
            data_dir: data_dir.to_path_buf(),
            ..Default::default()
        };
        config.p2p.listen = vec![format!("/ip4/127.0.0.1/tcp/{asked_port}")];
        config.p2p.bootstrap = bootstrap.iter().map(ToString::to_string).collect();
        config.p2p.mdns = false;
        config.p2p.liar = liar;
        match upstream {
            Some(url) => config.upstream.set_default_url(url).expect("upstream URL"),
            // Tests without an upstream must not reach for Docker Hub.
            None => config.upstream.enabled = false,
        }
        config.shutdown_grace = Duration::from_secs(1);
        tweak(&mut config);
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
        let p2p_port = match p2p_port {
            Some(port) => port,
            None => listening_port(&base, &task).await,
        };
        Daemon {
            base,
            p2p_addr: format!("/ip4/127.0.0.1/tcp/{p2p_port}/p2p/{peer_id}")
                .parse()
                .expect("addr"),
            peer_id,
            stop,
            task,
        }
    }

    pub fn p2p_port(&self) -> u16 {
        tcp_port(&self.p2p_addr).expect("tcp port")
    }

    pub async fn push(&self, repo: &str, data: &[u8]) -> Digest {
        let digest = Digest::sha256_of(data);
        let resp = reqwest::Client::new()
            .post(format!(
                "{}/v2/{repo}/blobs/uploads/?digest={digest}",
                self.base
            ))
            .body(data.to_vec())
            .send()
            .await
            .expect("push");
        assert_eq!(resp.status().as_u16(), 201);
        digest
    }

    pub async fn metric(&self, name: &str) -> u64 {
        let text = reqwest::get(format!("{}/metrics", self.base))
            .await
            .expect("metrics")
            .text()
            .await
            .expect("text");
        text.lines()
            .find_map(|l| l.strip_prefix(name).and_then(|v| v.trim().parse().ok()))
            .unwrap_or(0)
    }

    pub async fn stop(self) {
        let _ = self.stop.send(());
        self.task.await.expect("daemon stops");
    }
}

/// The TCP port a daemon started on `tcp/0` got, from its `/_shoal/status`
/// (the listener shows up there a moment after the endpoint answers).
async fn listening_port(base: &str, task: &tokio::task::JoinHandle<()>) -> u16 {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        assert!(!task.is_finished(), "the daemon stopped while starting");
        let status: Option<serde_json::Value> =
            match reqwest::get(format!("{base}/_shoal/status")).await {
                Ok(resp) => resp.json().await.ok(),
                Err(_) => None,
            };
        let port = status.as_ref().and_then(|s| {
            s["p2p_listen"]
                .as_array()?
                .iter()
                .find_map(|a| tcp_port(&a.as_str()?.parse().ok()?))
        });
        if let Some(port) = port {
            return port;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the daemon listens on no TCP port: {status:?}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// The TCP port in a multiaddr, if it has one.
fn tcp_port(addr: &Multiaddr) -> Option<u16> {
    addr.iter().find_map(|p| match p {
        libp2p::multiaddr::Protocol::Tcp(port) => Some(port),
        _ => None,
    })
}
