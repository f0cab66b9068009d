//! Fetching blobs through shoal's peer-to-peer path, measured against a
//! direct GET from Debian's docker-registry in the same run.
//!
//! (a) a large blob fetched by an empty node from one peer vs straight from
//!     docker-registry (a bare GET, and one written to a file and synced,
//!     as a pulling client keeps it and the node keeps what it fetches);
//! (b) cold-fetch latency of small blobs that one peer holds;
//! (c) the large blob from 1, 2 and 4 providers.
//!
//! ```sh
//! cargo build --release -p shoal -p shoal-simulations
//! target/release/swarm_fetch --size-mib 200 --small 200
//! ```
//!
//! `SHOAL_SWARM_LOG` sets the log filter of the node that fetches the small
//! blobs (e.g. `info,shoal_node::transfer=debug`); its log is then copied to
//! `swarm_fetch-small.log` in the current directory.

use std::time::{Duration, Instant};

use anyhow::Context;
use clap::Parser;
use shoal_simulations::http_fetch::{Fetch, fetch, fetch_to_file, percentiles, push_blob};
use shoal_simulations::{err, random_bytes};
use shoal_tests::node::{bootstrap_addr, metric, start_peer};
use shoal_tests::registry::TestRegistry;
use shoal_tests::{DockerRegistry, ShoalNode};

#[derive(Debug, Parser)]
struct Args {
    /// Size of the large blob in MiB.
    #[arg(long, default_value_t = 200)]
    size_mib: usize,
    /// Number of 512 KiB blobs for the latency measurement.
    #[arg(long, default_value_t = 200)]
    small: usize,
}

/// GETs of the blob straight from docker-registry per baseline.
const BASELINE_ROUNDS: usize = 3;

/// The fetch of median duration.
fn median(mut fetches: Vec<Fetch>) -> Fetch {
    fetches.sort_by_key(|f| f.total);
    fetches[fetches.len() / 2]
}

/// Providers holding the blob, each started alone (so each has its own
/// copy), and their bootstrap addresses.
fn providers(n: usize) -> anyhow::Result<(Vec<ShoalNode>, String)> {
    let mut nodes = Vec::new();
    let mut addrs = Vec::new();
    for _ in 0..n {
        let node = start_peer(None, "warn").map_err(err)?;
        addrs.push(bootstrap_addr(&node).map_err(err)?);
        nodes.push(node);
    }
    Ok((nodes, addrs.join(",")))
}

/// CPU time (user + system) used so far by the processes `pids`.
fn total_cpu(pids: &[u32]) -> anyhow::Result<Duration> {
    let mut total = Duration::ZERO;
    for pid in pids {
        total += shoal_simulations::proc_stats::cpu_time(*pid)?;
    }
    Ok(total)
}

/// Waits until the processes `pids` have gone quiet (under 20 ms of CPU in
/// 200 ms): a node that has just taken a blob hashes it for its chunk map
/// in the background, which would otherwise be counted in the fetch that
/// follows and slow it.
async fn wait_idle(pids: &[u32]) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let before = total_cpu(pids)?;
        tokio::time::sleep(Duration::from_millis(200)).await;
        if total_cpu(pids)? - before < Duration::from_millis(20) {
            return Ok(());
        }
        anyhow::ensure!(Instant::now() < deadline, "the nodes never went idle");
    }
}

/// Waits until `node` answers HEAD for the blob (it found a provider).
async fn wait_visible(client: &reqwest::Client, url: &str) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if client
            .head(url)
            .send()
            .await
            .is_ok_and(|r| r.status().is_success())
        {
            return Ok(());
        }
        anyhow::ensure!(Instant::now() < deadline, "{url} never became visible");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let client = reqwest::Client::builder().no_proxy().build()?;
    let big = random_bytes(args.size_mib << 20);

    // Baseline: the same blob straight from docker-registry.
    DockerRegistry::require().map_err(|e| anyhow::anyhow!("{e:?}"))?;
    let registry = DockerRegistry::start().map_err(err)?;
    let digest = push_blob(&client, &registry.url(), "bench/big", big.clone()).await?;
    // The baselines are quick and this VM's speed wanders: the median of
    // BASELINE_ROUNDS of each.
    let url = format!("{}/v2/bench/big/blobs/{digest}", registry.url());
    let scratch = tempfile::tempdir()?;
    let mut bare = Vec::new();
    let mut kept = Vec::new();
    for _ in 0..BASELINE_ROUNDS {
        bare.push(fetch(&client, &url, &digest, true).await?);
        // The same GET kept as a pulling client keeps it (written to a file
        // and synced), like the node keeps what it fetches from a peer.
        kept.push(fetch_to_file(&client, &url, &digest, &scratch.path().join("blob")).await?);
    }
    let direct = median(bare);
    let stored = median(kept);
    println!(
        "direct GET from docker-registry: {:.0} MiB/s ({:.2} s, median of {BASELINE_ROUNDS})",
        direct.mib_per_s(),
        direct.total.as_secs_f64()
    );
    println!(
        "direct GET from docker-registry into a file: {:.0} MiB/s ({:.2} s, median of {BASELINE_ROUNDS})",
        stored.mib_per_s(),
        stored.total.as_secs_f64()
    );

    println!(
        "| providers | cold fetch through an empty node MiB/s | time s | vs direct | vs direct into a file | CPU s (all nodes) | received from peers / size |"
    );
    println!("|---|---|---|---|---|---|---|");
    for n in [1usize, 2, 4] {
        let (nodes, bootstrap) = providers(n)?;
        for node in &nodes {
            push_blob(&client, &node.url(), "bench/big", big.clone()).await?;
        }
        let empty = start_peer(Some(&bootstrap), "warn").map_err(err)?;
        let url = format!("{}/v2/bench/big/blobs/{digest}", empty.url());
        wait_visible(&client, &url).await?;
        let pids: Vec<u32> = nodes
            .iter()
            .chain([&empty])
            .filter_map(|n| n.pid())
            .collect();
        wait_idle(&pids).await?;
        let cpu_before = total_cpu(&pids)?;
        let f = fetch(&client, &url, &digest, true)
            .await
            .context("fetch through the empty node")?;
        let cpu = total_cpu(&pids)? - cpu_before;
        // More than the blob: chunks asked twice (the end-game) or wasted.
        let received = metric(&empty, "shoal_p2p_bytes_received_total").map_err(err)?;
        println!(
            "| {n} | {:.0} | {:.2} | {:.2}x | {:.2}x | {:.2} | {:.3} |",
            f.mib_per_s(),
            f.total.as_secs_f64(),
            f.mib_per_s() / direct.mib_per_s(),
            f.mib_per_s() / stored.mib_per_s(),
            cpu.as_secs_f64(),
            received as f64 / big.len() as f64
        );
    }

    // (b) cold fetches of 512 KiB blobs that one peer holds.
    let (nodes, bootstrap) = providers(1)?;
    let mut digests = Vec::new();
    for _ in 0..args.small {
        digests.push(
            push_blob(
                &client,
                &nodes[0].url(),
                "bench/small",
                random_bytes(512 << 10),
            )
            .await?,
        );
    }
    let log_filter = std::env::var("SHOAL_SWARM_LOG").ok();
    let empty =
        start_peer(Some(&bootstrap), log_filter.as_deref().unwrap_or("warn")).map_err(err)?;
    let first = format!("{}/v2/bench/small/blobs/{}", empty.url(), digests[0]);
    wait_visible(&client, &first).await?;
    let mut latencies = Vec::new();
    for d in &digests[1..] {
        let url = format!("{}/v2/bench/small/blobs/{d}", empty.url());
        latencies.push(fetch(&client, &url, d, true).await?.total);
    }
    if log_filter.is_some() {
        std::fs::write("swarm_fetch-small.log", empty.log())
            .context("writing swarm_fetch-small.log")?;
    }
    let (p50, p99) = percentiles(&mut latencies);
    println!(
        "512 KiB cold fetch from one peer ({} blobs): p50 {:.2} ms, p99 {:.2} ms",
        latencies.len(),
        p50.as_secs_f64() * 1e3,
        p99.as_secs_f64() * 1e3
    );
    Ok(())
}
