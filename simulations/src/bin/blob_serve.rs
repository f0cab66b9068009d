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
use shoal_simulations::http_fetch::{Fetch, fetch, percentiles, push_blob};
use shoal_simulations::servers::{DockerRegistryProcess, ShoalProcess};

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
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let shoal = ShoalProcess::start().await.context("starting shoal")?;
    let registry = DockerRegistryProcess::start()
        .await
        .context("starting docker-registry")?;
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

    let mut results: Vec<Vec<Fetch>> = vec![Vec::new(), Vec::new()];
    for _ in 0..args.rounds {
        for (i, (_, base)) in servers.iter().enumerate() {
            results[i].push(fetch(&client, &blob_url(base), &digest, false).await?);
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
    println!("| server | throughput MiB/s (median) | TTFB p50 | TTFB p99 |");
    println!("|---|---|---|---|");
    let mut medians = Vec::new();
    for (i, (name, _)) in servers.iter().enumerate() {
        let mut rates: Vec<f64> = results[i].iter().map(Fetch::mib_per_s).collect();
        rates.sort_by(f64::total_cmp);
        let median = rates[rates.len() / 2];
        medians.push(median);
        let (p50, p99) = percentiles(&mut ttfb[i]);
        println!(
            "| {name} | {median:.0} | {:.3} ms | {:.3} ms |",
            p50.as_secs_f64() * 1e3,
            p99.as_secs_f64() * 1e3
        );
    }
    println!(
        "throughput ratio shoal / docker-registry: {:.2}x",
        medians[0] / medians[1]
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
