//! A cold pull of a multi-layer image: straight from the upstream registry
//! (Debian's docker-registry), through a shoal node with no peers (pull-
//! through), and through a shoal node whose two peers hold the image.
//!
//! ```sh
//! cargo build --release -p shoal -p shoal-simulations
//! target/release/mirror_pull --runs 3
//! ```
//!
//! A "pull" is what a client does: GET the manifest by tag, then the config
//! and every layer, three at a time, each body hashed against its digest.
//! Each shoal run uses fresh nodes, so every pull through shoal is cold.

use std::time::{Duration, Instant};

use anyhow::Context;
use bytes::Bytes;
use clap::Parser;
use futures_util::StreamExt;
use shoal_protocol::Digest;
use shoal_simulations::http_fetch::{fetch, push_blob};
use shoal_simulations::{err, random_bytes};
use shoal_tests::node::{NodeOptions, bootstrap_addr, peer_env};
use shoal_tests::registry::TestRegistry;
use shoal_tests::{DockerRegistry, ShoalNode};

const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
/// Layer sizes in KiB: one big layer and a tail of small ones, as images go.
const LAYERS_KIB: [usize; 6] = [40 * 1024, 16 * 1024, 8 * 1024, 4 * 1024, 1024, 300];

#[derive(Debug, Parser)]
struct Args {
    /// Repetitions of each case (the best and the median are reported).
    #[arg(long, default_value_t = 3)]
    runs: usize,
}

struct Image {
    manifest: Bytes,
    blobs: Vec<Digest>,
    bytes: u64,
}

async fn seed(client: &reqwest::Client, registry: &str) -> anyhow::Result<Image> {
    let config = Bytes::from_static(br#"{"architecture":"amd64","os":"linux"}"#);
    let mut blobs = vec![push_blob(client, registry, "bench/app", config.clone()).await?];
    let mut layers = Vec::new();
    let mut bytes = config.len() as u64;
    for kib in LAYERS_KIB {
        let layer = random_bytes(kib * 1024);
        bytes += layer.len() as u64;
        let digest = push_blob(client, registry, "bench/app", layer.clone()).await?;
        layers.push(serde_json::json!({
            "mediaType": "application/vnd.oci.image.layer.v1.tar",
            "digest": digest.to_string(),
            "size": layer.len(),
        }));
        blobs.push(digest);
    }
    let manifest = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": {
            "mediaType": "application/vnd.oci.image.config.v1+json",
            "digest": blobs[0].to_string(),
            "size": config.len(),
        },
        "layers": layers,
    }))?;
    let resp = client
        .put(format!("{registry}/v2/bench/app/manifests/v1"))
        .header("content-type", OCI_MANIFEST)
        .body(manifest.clone())
        .send()
        .await?;
    anyhow::ensure!(
        resp.status().is_success(),
        "manifest push: {}",
        resp.status()
    );
    Ok(Image {
        manifest: Bytes::from(manifest),
        blobs,
        bytes,
    })
}

/// Pulls the image from `base` as a client does; the time it took.
async fn pull(client: &reqwest::Client, base: &str, image: &Image) -> anyhow::Result<Duration> {
    let started = Instant::now();
    let resp = client
        .get(format!("{base}/v2/bench/app/manifests/v1"))
        .header("accept", OCI_MANIFEST)
        .send()
        .await?;
    anyhow::ensure!(
        resp.status().is_success(),
        "manifest from {base}: {}",
        resp.status()
    );
    anyhow::ensure!(
        resp.bytes().await? == image.manifest,
        "manifest from {base} differs"
    );
    let fetches = image.blobs.iter().map(|d| {
        let url = format!("{base}/v2/bench/app/blobs/{d}");
        async move { fetch(client, &url, d, true).await }
    });
    let results: Vec<_> = futures_util::stream::iter(fetches)
        .buffer_unordered(3)
        .collect()
        .await;
    for r in results {
        r?;
    }
    Ok(started.elapsed())
}

fn shoal_node(upstream: &str, bootstrap: Option<&str>) -> anyhow::Result<ShoalNode> {
    let mut env = vec![
        ("SHOAL_NO_UPSTREAM".to_owned(), "false".to_owned()),
        ("SHOAL_UPSTREAM".to_owned(), upstream.to_owned()),
    ];
    env.extend(peer_env(bootstrap));
    ShoalNode::start(NodeOptions {
        env,
        log_filter: "warn".into(),
        ..NodeOptions::default()
    })
    .map_err(err)
}

fn summary(times: &mut [Duration]) -> (f64, f64) {
    times.sort();
    (times[0].as_secs_f64(), times[times.len() / 2].as_secs_f64())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    anyhow::ensure!(args.runs > 0, "--runs must be at least 1");
    DockerRegistry::require().map_err(|e| anyhow::anyhow!("{e:?}"))?;
    let client = reqwest::Client::builder().no_proxy().build()?;
    let registry = DockerRegistry::start().map_err(err)?;
    let upstream = registry.url();
    let image = seed(&client, &upstream)
        .await
        .context("seeding the registry")?;

    let mut direct = Vec::new();
    let mut no_peers = Vec::new();
    let mut two_peers = Vec::new();
    for _ in 0..args.runs {
        direct.push(pull(&client, &upstream, &image).await?);

        let node = shoal_node(&upstream, None)?;
        no_peers.push(pull(&client, &node.url(), &image).await?);
        drop(node);

        // Two peers that hold the image (pulled through once), then a
        // fresh node that knows them.
        let a = shoal_node(&upstream, None)?;
        pull(&client, &a.url(), &image).await?;
        let a_addr = bootstrap_addr(&a).map_err(err)?;
        let b = shoal_node(&upstream, Some(&a_addr))?;
        pull(&client, &b.url(), &image).await?;
        let c = shoal_node(&upstream, Some(&a_addr))?;
        // Let C's DHT see A and B before the clock starts.
        tokio::time::sleep(Duration::from_millis(500)).await;
        two_peers.push(pull(&client, &c.url(), &image).await?);
    }
    let (d_best, d_median) = summary(&mut direct);
    let mib = image.bytes as f64 / (1024.0 * 1024.0);
    println!(
        "image: {} blobs, {mib:.1} MiB; {} runs each; best and median",
        image.blobs.len(),
        args.runs
    );
    println!("| case | best s | median s | median vs direct |");
    println!("|---|---|---|---|");
    println!("| straight from docker-registry | {d_best:.3} | {d_median:.3} | 1.00× |");
    for (label, times) in [
        ("through shoal, no peers (pull-through)", &mut no_peers),
        ("through shoal, two peers hold it", &mut two_peers),
    ] {
        let (best, median) = summary(times);
        println!(
            "| {label} | {best:.3} | {median:.3} | {:.2}× |",
            median / d_median
        );
    }
    Ok(())
}
