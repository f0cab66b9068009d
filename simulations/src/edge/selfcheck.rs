//! `edge_bench self-check`: measures what the shaped links carry, so a
//! benchmark result can be trusted to reflect U0, u and d.

use std::net::SocketAddr;
use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use anyhow::Context;
use tokio::io::{AsyncBufReadExt, BufReader};

use super::cmd::in_namespace;
use super::image::MULTI_SHARES;
use super::lab::{Host, Lab};
use super::params::{STANDARD_MTU, Site};
use super::transfer::{READY, Received};

const PORT: u16 = 7000;
/// Each transfer lasts about this long at the expected rate.
const SECONDS: f64 = 3.0;
/// TCP payload per full Ethernet frame of `mtu`: 1448 of 1514 bytes at
/// 1500 (IP and TCP headers with timestamps, 52 bytes, inside the MTU;
/// the Ethernet header, 14, outside). tbf counts the headers, the
/// receiver does not.
pub fn payload_share(mtu: u32) -> f64 {
    f64::from(mtu - 52) / f64::from(mtu + 14)
}
/// Measured goodput must be within this band of rate × payload share.
const TOLERANCE: (f64, f64) = (0.90, 1.05);

/// One measured path.
#[derive(Debug, Clone)]
pub struct PathCheck {
    pub label: String,
    pub rate_mbit: f64,
    /// The smallest MTU on the path.
    pub mtu: u32,
    pub measured: Received,
}

impl PathCheck {
    /// Measured goodput over the goodput a perfectly shaped link gives.
    pub fn ratio(&self) -> f64 {
        self.measured.mbit_per_s() / (self.rate_mbit * payload_share(self.mtu))
    }

    pub fn ok(&self) -> bool {
        (TOLERANCE.0..=TOLERANCE.1).contains(&self.ratio())
    }
}

/// Origin → host 0 (limited by min(U0, d)) and host 0 → host 1 (limited
/// by min(u, d)), one at a time; then both at once, as when host 0 passes
/// on what it fetches (a leader and its first follower). Relaying, host
/// 0's upload also carries the ACKs of its download, and its download the
/// ACKs of its upload, so each flow gets a little less than alone (under
/// 1% at 100 Mbit/s and MTU 1500, `docs/benchmarks.md`).
pub async fn run(exe: &Path, lab: &Lab, site: &Site) -> anyhow::Result<Vec<PathCheck>> {
    let r = site.rates;
    let h0 = lab.hosts.first().context("the self-check needs a host")?;
    let mut checks = vec![
        measure(
            exe,
            &lab.origin,
            h0,
            "origin → h0",
            r.origin_mbit.min(r.down_mbit),
            STANDARD_MTU,
        )
        .await?,
    ];
    if let Some(h1) = lab.hosts.get(1) {
        let rate = r.up_mbit.min(r.down_mbit);
        checks.push(measure(exe, h0, h1, "h0 → h1", rate, site.lan_mtu).await?);
        let upstream_rate = r.origin_mbit.min(r.down_mbit);
        let (down, up) = tokio::join!(
            measure(
                exe,
                &lab.origin,
                h0,
                "origin → h0, while h0 → h1",
                upstream_rate,
                STANDARD_MTU,
            ),
            measure(
                exe,
                h0,
                h1,
                "h0 → h1, while origin → h0",
                rate,
                site.lan_mtu
            ),
        );
        checks.extend([down?, up?]);
    }
    if let Some(hosts) = lab.hosts.get(..MULTI_SHARES.len()) {
        let rate = r.origin_mbit.min(r.down_mbit);
        checks.extend(measure_shared_uplink(exe, lab, hosts, rate).await?);
    }
    Ok(checks)
}

async fn measure(
    exe: &Path,
    from: &Host,
    to: &Host,
    label: &str,
    rate_mbit: f64,
    mtu: u32,
) -> anyhow::Result<PathCheck> {
    let bytes = (rate_mbit * 1e6 / 8.0 * SECONDS) as u64;
    let mut sender = start_sender(exe, from, PORT, bytes).await?;
    let measured = receive(exe, from, to, PORT, bytes).await?;
    let _ = sender.wait().await;
    Ok(PathCheck {
        label: label.to_owned(),
        rate_mbit,
        mtu,
        measured,
    })
}

/// The origin sends one flow to each of `hosts` at once, each a share of
/// twice [`SECONDS`]' worth of bytes at `rate_mbit` by [`MULTI_SHARES`]
/// (the multi-layer image's layers: a rollout's leaders pulling them);
/// then one flow of the same bytes. Both are timed from the start to the
/// last byte, so a link left idle while flows start or recover counts.
async fn measure_shared_uplink(
    exe: &Path,
    lab: &Lab,
    hosts: &[Host],
    rate_mbit: f64,
) -> anyhow::Result<[PathCheck; 2]> {
    let total = (rate_mbit * 1e6 / 8.0 * SECONDS * 2.0) as u64;
    let whole: u64 = MULTI_SHARES.iter().sum();
    let parts: Vec<u64> = MULTI_SHARES.iter().map(|s| total * s / whole).collect();
    let origin = &lab.origin;
    let mut senders = Vec::new();
    for (i, bytes) in parts.iter().enumerate() {
        senders.push(start_sender(exe, origin, PORT + 1 + i as u16, *bytes).await?);
    }
    let began = std::time::Instant::now();
    let flows = hosts
        .iter()
        .zip(&parts)
        .enumerate()
        .map(|(i, (h, bytes))| receive(exe, origin, h, PORT + 1 + i as u16, *bytes));
    for r in futures_util::future::join_all(flows).await {
        r?;
    }
    let many = began.elapsed().as_secs_f64();
    for mut s in senders {
        let _ = s.wait().await;
    }
    let sent: u64 = parts.iter().sum();
    let first = hosts.first().context("no host")?;
    let mut sender = start_sender(exe, origin, PORT, sent).await?;
    let began = std::time::Instant::now();
    receive(exe, origin, first, PORT, sent).await?;
    let one = began.elapsed().as_secs_f64();
    let _ = sender.wait().await;
    let check = |label: String, seconds| PathCheck {
        label,
        rate_mbit,
        mtu: STANDARD_MTU,
        measured: Received {
            bytes: sent,
            seconds,
        },
    };
    Ok([
        check(
            format!(
                "origin → h0…h{}, at once, start to last byte",
                hosts.len() - 1
            ),
            many,
        ),
        check("origin → h0, the same bytes in one flow".to_owned(), one),
    ])
}

/// Starts `edge_bench send-bytes` in `from`'s namespace on `port`, once
/// it listens.
async fn start_sender(
    exe: &Path,
    from: &Host,
    port: u16,
    bytes: u64,
) -> anyhow::Result<tokio::process::Child> {
    let addr = SocketAddr::from((from.ip, port));
    let mut sender = in_namespace(&from.ns, exe)
        .args(["send-bytes", "--listen", &addr.to_string(), "--bytes"])
        .arg(bytes.to_string())
        .stdout(Stdio::piped())
        .spawn()
        .context("starting the sender")?;
    let stdout = sender.stdout.take().context("sender stdout")?;
    let mut lines = BufReader::new(stdout).lines();
    let ready = tokio::time::timeout(Duration::from_secs(10), lines.next_line()).await;
    anyhow::ensure!(
        matches!(&ready, Ok(Ok(Some(l))) if l == READY),
        "the sender in {} did not start: {ready:?}",
        from.ns
    );
    Ok(sender)
}

/// Receives `bytes` in `to`'s namespace from `from`'s sender on `port`.
async fn receive(
    exe: &Path,
    from: &Host,
    to: &Host,
    port: u16,
    bytes: u64,
) -> anyhow::Result<Received> {
    let addr = SocketAddr::from((from.ip, port));
    let out = in_namespace(&to.ns, exe)
        .args(["recv-bytes", "--connect", &addr.to_string()])
        .output()
        .await?;
    anyhow::ensure!(
        out.status.success(),
        "receiving in {}: {}",
        to.ns,
        String::from_utf8_lossy(&out.stderr).trim()
    );
    let measured: Received = serde_json::from_slice(&out.stdout).context("receiver output")?;
    anyhow::ensure!(
        measured.bytes == bytes,
        "received {} of {bytes} bytes",
        measured.bytes
    );
    Ok(measured)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payload_share_of_ordinary_and_jumbo_frames() {
        assert!((payload_share(STANDARD_MTU) - 1448.0 / 1514.0).abs() < 1e-12);
        assert!((payload_share(9000) - 8948.0 / 9014.0).abs() < 1e-12);
        assert!(payload_share(9000) > payload_share(STANDARD_MTU));
    }
}
