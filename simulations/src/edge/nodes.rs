//! One `shoal daemon` per host, each in its host's namespace, all joined
//! through host 0 and pulling through from the origin (`--upstream`).

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::Context;
use tokio::process::Child;

use super::cmd::{in_namespace, wait_ready_in};
use super::lab::{Host, Lab};
use crate::proc_stats::cpu_time;

/// Where every node serves its registry, inside its own namespace.
pub const REGISTRY: &str = "http://127.0.0.1:5000";
const REGISTRY_ADDR: &str = "127.0.0.1:5000";
const P2P_PORT: u16 = 4001;
const READY_TIMEOUT: Duration = Duration::from_secs(60);
const STOP_TIMEOUT: Duration = Duration::from_secs(10);

/// Why this shoal binary cannot run the scenario, if it cannot: the
/// `--upstream` flag is new, and an older build does not know it.
pub fn unsupported(bin: &Path) -> Option<String> {
    let help = match std::process::Command::new(bin)
        .args(["daemon", "--help"])
        .output()
    {
        Ok(out) => String::from_utf8_lossy(&out.stdout).into_owned(),
        Err(e) => return Some(format!("cannot run {}: {e}", bin.display())),
    };
    (!help.contains("--upstream")).then(|| {
        format!(
            "{} daemon does not accept --upstream (pull-through from an upstream registry is not built into it yet)",
            bin.display()
        )
    })
}

#[derive(Debug)]
struct Node {
    // Held so the daemon dies with the harness (kill on drop).
    child: Child,
    pid: u32,
    log: PathBuf,
}

#[derive(Debug)]
pub struct ShoalFleet {
    nodes: Vec<Node>,
}

impl ShoalFleet {
    /// Starts host 0's node, then everyone else's bootstrapping through
    /// it; returns once every node serves `/v2/` and `settle` has passed
    /// for the DHT to fill.
    pub async fn start(
        exe: &Path,
        bin: &Path,
        lab: &Lab,
        dir: &Path,
        upstream: &str,
        settle: Duration,
    ) -> anyhow::Result<ShoalFleet> {
        let first = lab.hosts.first().context("no hosts")?;
        let first_dir = dir.join(format!("h{}", first.index));
        let bootstrap = format!(
            "/ip4/{}/{}/p2p/{}",
            first.ip,
            p2p_transport(),
            peer_id(bin, &first_dir)?
        );
        let mut fleet = ShoalFleet { nodes: Vec::new() };
        for (i, host) in lab.hosts.iter().enumerate() {
            let boot = (i > 0).then_some(bootstrap.as_str());
            fleet.nodes.push(spawn(bin, host, dir, upstream, boot)?);
            if i == 0 {
                fleet.ready(exe, &lab.hosts[..1]).await?;
            }
        }
        fleet.ready(exe, &lab.hosts[1..]).await?;
        tokio::time::sleep(settle).await;
        Ok(fleet)
    }

    async fn ready(&mut self, exe: &Path, hosts: &[Host]) -> anyhow::Result<()> {
        let probes = hosts
            .iter()
            .map(|h| wait_ready_in(exe, &h.ns, REGISTRY, READY_TIMEOUT));
        let results = futures_util::future::join_all(probes).await;
        for (host, result) in hosts.iter().zip(results) {
            result.with_context(|| {
                format!(
                    "host {}'s shoal node (log: {})",
                    host.index,
                    self.nodes[host.index].log.display()
                )
            })?;
        }
        Ok(())
    }

    /// The nodes' process ids, in host order.
    pub fn pids(&self) -> Vec<u32> {
        self.nodes.iter().map(|n| n.pid).collect()
    }

    /// The nodes' CPU time so far, added up.
    pub fn cpu_s(&self) -> f64 {
        self.nodes
            .iter()
            .filter_map(|n| cpu_time(n.pid).ok())
            .map(|d| d.as_secs_f64())
            .sum()
    }

    /// SIGTERM to every node, then SIGKILL to any still running after
    /// [`STOP_TIMEOUT`].
    pub async fn stop(self) {
        for n in &self.nodes {
            let _ = tokio::process::Command::new("kill")
                .args(["-TERM", &n.pid.to_string()])
                .status()
                .await;
        }
        let deadline = Instant::now() + STOP_TIMEOUT;
        for mut n in self.nodes {
            let left = deadline.saturating_duration_since(Instant::now());
            if tokio::time::timeout(left, n.child.wait()).await.is_err() {
                let _ = n.child.kill().await;
            }
        }
    }
}

fn spawn(
    bin: &Path,
    host: &Host,
    dir: &Path,
    upstream: &str,
    bootstrap: Option<&str>,
) -> anyhow::Result<Node> {
    let data = dir.join(format!("h{}", host.index));
    std::fs::create_dir_all(&data).with_context(|| format!("creating {}", data.display()))?;
    let log = dir.join(format!("h{}.log", host.index));
    let out = File::create(&log).with_context(|| format!("creating {}", log.display()))?;
    let mut cmd = in_namespace(&host.ns, bin);
    cmd.arg("daemon")
        .arg("--data-dir")
        .arg(&data)
        .args(["--registry-addr", REGISTRY_ADDR])
        .args([
            "--p2p-listen",
            &format!("/ip4/{}/{}", host.ip, p2p_transport()),
        ])
        .arg("--no-mdns")
        .args(["--upstream", upstream]);
    if let Some(b) = bootstrap {
        cmd.args(["--bootstrap", b]);
    }
    for var in [
        "SHOAL_CONFIG",
        "SHOAL_DATA_DIR",
        "SHOAL_REGISTRY_ADDR",
        "SHOAL_P2P_LISTEN",
        "SHOAL_BOOTSTRAP",
        "SHOAL_NO_P2P",
        "SHOAL_NO_MDNS",
    ] {
        cmd.env_remove(var);
    }
    let child = cmd
        // SHOAL_EDGE_LOG picks the daemons' log filter (for a closer look
        // at one run: `SHOAL_EDGE_LOG=info,shoal_node::transfer=debug`).
        .env(
            "RUST_LOG",
            std::env::var("SHOAL_EDGE_LOG").unwrap_or_else(|_| "info".into()),
        )
        .env("NO_COLOR", "1")
        .stdout(Stdio::from(out.try_clone()?))
        .stderr(Stdio::from(out))
        .spawn()
        .with_context(|| format!("starting {}", bin.display()))?;
    let pid = child.id().context("shoal exited at once")?;
    Ok(Node { child, pid, log })
}

/// The peer id of the node that will use `data_dir` (created if absent).
fn peer_id(bin: &Path, data_dir: &Path) -> anyhow::Result<String> {
    let out = std::process::Command::new(bin)
        .args(["identity", "--data-dir"])
        .arg(data_dir)
        .output()
        .with_context(|| format!("running {} identity", bin.display()))?;
    anyhow::ensure!(
        out.status.success(),
        "shoal identity: {}",
        String::from_utf8_lossy(&out.stderr).trim()
    );
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
}

/// The nodes' peer-to-peer transport, as a multiaddr tail: TCP (noise and
/// yamux over it), or QUIC with `SHOAL_EDGE_TRANSPORT=quic`.
fn p2p_transport() -> String {
    match std::env::var("SHOAL_EDGE_TRANSPORT").as_deref() {
        Ok("quic") => format!("udp/{P2P_PORT}/quic-v1"),
        _ => format!("tcp/{P2P_PORT}"),
    }
}
