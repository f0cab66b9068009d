//! Serves one large blob from shoal and from Debian's docker-registry in the
//! same run and reports throughput and time to first byte for each, and
//! shoal's ratio over docker-registry.
//!
//! ```sh
//! cargo build --release -p shoal -p shoal-simulations
//! target/release/blob_serve --size-mib 200 --rounds 5
//! ```

use std::time::Duration;

use anyhow::Context;
use bytes::Bytes;
use clap::Parser;
use rand::RngCore;
use shoal_simulations::http_fetch::{Fetch, fetch, fetch_discard, percentiles, push_blob};
use shoal_simulations::proc_stats::cpu_time;
use shoal_tests::registry::TestRegistry;
use shoal_tests::{DockerRegistry, NodeOptions, ShoalNode};

#[derive(Debug, Parser)]
struct Args {
    /// Size of the blob in MiB.
    #[arg(long, default_value_t = 200)]
    size_mib: usize,
    /// Timed GETs of the whole blob from each server (alternating).
    #[arg(long, default_value_t = 5)]
    rounds: usize,
    /// Timed small GETs (`Range: bytes=0-0`) for the time to first byte.
    #[arg(long, default_value_t = 200)]
    ttfb_rounds: usize,
    /// Concurrent GETs per round in the parallel measurement (as when a
    /// client pulls several layers at once).
    #[arg(long, default_value_t = 4)]
    parallel: usize,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    // The release shoal binary next to this one (or SHOAL_BIN).
    let shoal = ShoalNode::start(NodeOptions {
        log_filter: "warn".into(),
        ..NodeOptions::default()
    })
    .map_err(|e| anyhow::anyhow!("starting shoal: {e}"))?;
    DockerRegistry::require().map_err(|e| anyhow::anyhow!("{e:?}"))?;
    let registry =
        DockerRegistry::start().map_err(|e| anyhow::anyhow!("starting docker-registry: {e}"))?;
    let pids = [
        shoal.pid().context("shoal is not running")?,
        registry.pid().context("docker-registry is not running")?,
    ];
    let client = reqwest::Client::builder()
        .no_proxy()
        .build()
        .context("HTTP client")?;

    let mut data = vec![0u8; args.size_mib * 1024 * 1024];
    rand::rng().fill_bytes(&mut data);
    let data = Bytes::from(data);
    let digest = push_blob(&client, &shoal.url(), "bench/blob", data.clone()).await?;
    push_blob(&client, &registry.url(), "bench/blob", data.clone()).await?;
    drop(data);

    let servers = [("shoal", shoal.url()), ("docker-registry", registry.url())];
    let blob_url = |base: &str| format!("{base}/v2/bench/blob/blobs/{digest}");

    // One verified fetch each (and a warm page cache for both).
    for (name, base) in &servers {
        fetch(&client, &blob_url(base), &digest, true)
            .await
            .with_context(|| format!("verified fetch from {name}"))?;
    }

    let cpu = |i: usize| cpu_time(pids[i]);
    let mut results: Vec<Vec<Fetch>> = vec![Vec::new(), Vec::new()];
    let mut cpu_used = [Duration::ZERO; 2];
    for _ in 0..args.rounds {
        for (i, (_, base)) in servers.iter().enumerate() {
            let before = cpu(i)?;
            results[i].push(fetch(&client, &blob_url(base), &digest, false).await?);
            cpu_used[i] += cpu(i)? - before;
        }
    }
    // The same GETs with a client that drops the body in the kernel: the
    // reqwest client above copies every byte and shares the two cores with
    // the server, which caps both servers at what it can absorb.
    let mut discarded: Vec<Vec<Fetch>> = vec![Vec::new(), Vec::new()];
    let addrs = [socket_addr(&servers[0].1)?, socket_addr(&servers[1].1)?];
    for _ in 0..args.rounds {
        for (i, addr) in addrs.iter().copied().enumerate() {
            let path = format!("/v2/bench/blob/blobs/{digest}");
            let got = tokio::task::spawn_blocking(move || fetch_discard(addr, &path)).await??;
            anyhow::ensure!(
                got.bytes == (args.size_mib * 1024 * 1024) as u64,
                "discarding GET got {} bytes",
                got.bytes
            );
            discarded[i].push(got);
        }
    }
    // Several GETs at once: with both cores busy, the server that spends
    // less CPU per byte moves more bytes.
    let mut parallel: Vec<Vec<f64>> = vec![Vec::new(), Vec::new()];
    for _ in 0..args.rounds {
        for (i, (_, base)) in servers.iter().enumerate() {
            let start = std::time::Instant::now();
            let url = blob_url(base);
            let fetches = (0..args.parallel).map(|_| fetch(&client, &url, &digest, false));
            let done = futures_util::future::try_join_all(fetches).await?;
            let bytes: u64 = done.iter().map(|f| f.bytes).sum();
            parallel[i].push(bytes as f64 / (1024.0 * 1024.0) / start.elapsed().as_secs_f64());
        }
    }
    let mut ttfb: Vec<Vec<Duration>> = vec![Vec::new(), Vec::new()];
    for _ in 0..args.ttfb_rounds {
        for (i, (_, base)) in servers.iter().enumerate() {
            ttfb[i].push(first_byte(&client, &blob_url(base)).await?);
        }
    }

    println!(
        "blob {} MiB, {} rounds, {} TTFB samples each",
        args.size_mib, args.rounds, args.ttfb_rounds
    );
    println!(
        "| server | 1 stream MiB/s (median) | 1 stream, discarding client MiB/s (median) | {} streams MiB/s (median) | server CPU s/GiB | TTFB p50 | TTFB p99 |",
        args.parallel
    );
    println!("|---|---|---|---|---|---|---|");
    let mut medians = Vec::new();
    for (i, (name, _)) in servers.iter().enumerate() {
        let one_stream = median_rate(&results[i]);
        medians.push(one_stream);
        let (p50, p99) = percentiles(&mut ttfb[i]);
        let par = median(parallel[i].clone());
        let disc = median_rate(&discarded[i]);
        let served_gib: f64 =
            results[i].iter().map(|f| f.bytes as f64).sum::<f64>() / f64::from(1u32 << 30);
        println!(
            "| {name} | {one_stream:.0} | {disc:.0} | {par:.0} | {:.2} | {:.3} ms | {:.3} ms |",
            cpu_used[i].as_secs_f64() / served_gib,
            p50.as_secs_f64() * 1e3,
            p99.as_secs_f64() * 1e3
        );
    }
    // Rounds alternate between the servers; the ratio of each adjacent pair
    // cancels slow drifts in what else the machine is doing.
    println!(
        "1-stream throughput ratio shoal / docker-registry: {:.2}x (median of paired rounds; ratio of medians {:.2}x)",
        paired_ratio(&results[0], &results[1]),
        medians[0] / medians[1]
    );
    println!(
        "1-stream throughput ratio, discarding client: {:.2}x (median of paired rounds)",
        paired_ratio(&discarded[0], &discarded[1])
    );
    println!(
        "{}-stream throughput ratio shoal / docker-registry: {:.2}x (median of paired rounds)",
        args.parallel,
        median(
            parallel[0]
                .iter()
                .zip(&parallel[1])
                .map(|(s, d)| s / d)
                .collect()
        )
    );
    Ok(())
}

/// Time to the first byte of a blob: a one-byte range GET, which every
/// server answers without streaming the rest.
async fn first_byte(client: &reqwest::Client, url: &str) -> anyhow::Result<Duration> {
    let start = std::time::Instant::now();
    let resp = client.get(url).header("range", "bytes=0-0").send().await?;
    anyhow::ensure!(resp.status().is_success(), "GET {url}: {}", resp.status());
    let body = resp.bytes().await?;
    anyhow::ensure!(body.len() == 1, "range GET returned {} bytes", body.len());
    Ok(start.elapsed())
}

/// The median of a sample (0 for none).
fn median(mut sample: Vec<f64>) -> f64 {
    sample.sort_by(f64::total_cmp);
    sample.get(sample.len() / 2).copied().unwrap_or(0.0)
}

/// Median throughput of a set of fetches.
fn median_rate(fetches: &[Fetch]) -> f64 {
    median(fetches.iter().map(Fetch::mib_per_s).collect())
}

/// Median of the throughput ratios of rounds run back to back: each pair
/// saw the same machine, which cancels slow drifts in its other load.
fn paired_ratio(a: &[Fetch], b: &[Fetch]) -> f64 {
    median(
        a.iter()
            .zip(b)
            .map(|(x, y)| x.mib_per_s() / y.mib_per_s())
            .collect(),
    )
}

/// `127.0.0.1:port` from a base URL such as `http://127.0.0.1:5000`.
fn socket_addr(base: &str) -> anyhow::Result<std::net::SocketAddr> {
    let host = base.trim_start_matches("http://").trim_end_matches('/');
    host.parse()
        .with_context(|| format!("{base} is not http://ip:port"))
}
