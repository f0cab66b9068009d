//! A whole node (store, registry, network) in the test's process, for the
//! swarm tests.
#![allow(dead_code)] // each test crate uses a different part

use std::time::Duration;

use libp2p::Multiaddr;
use shoal_protocol::Digest;

/// A whole node (store, registry, network) in this process.
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
        let peer_id = shoal_node::network::identity::load_or_create(data_dir)
            .expect("identity")
            .public()
            .to_peer_id();
        let p2p_port = p2p_port.unwrap_or_else(|| {
            std::net::TcpListener::bind("127.0.0.1:0")
                .and_then(|l| l.local_addr())
                .expect("free port")
                .port()
        });
        let mut config = shoal_node::config::NodeConfig {
            data_dir: data_dir.to_path_buf(),
            ..Default::default()
        };
        config.p2p.listen = vec![format!("/ip4/127.0.0.1/tcp/{p2p_port}")];
        config.p2p.bootstrap = bootstrap.iter().map(ToString::to_string).collect();
        config.p2p.mdns = false;
        config.p2p.liar = liar;
        config.shutdown_grace = Duration::from_secs(1);
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
        self.p2p_addr
            .iter()
            .find_map(|p| match p {
                libp2p::multiaddr::Protocol::Tcp(port) => Some(port),
                _ => None,
            })
            .expect("tcp port")
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
