//! The pull client that runs inside a host's namespace (`edge_bench
//! pull`): it GETs the manifest, then the config and every layer, several
//! at once as Docker does, checking each blob against its digest.
//!
//! It talks to the harness over stdin/stdout so every host starts at the
//! same instant: it prints `ready` once its registry answers `/v2/`, waits
//! for a line `go <unix ms>`, sleeps until that moment, pulls, and prints
//! one JSON [`PullReport`].

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::Context;
use futures_util::{StreamExt, TryStreamExt, stream};
use serde::{Deserialize, Serialize};
use shoal_protocol::Digest;
use tokio::io::{AsyncBufReadExt, BufReader};

use crate::http_fetch::fetch;
use crate::proc_stats::cpu_time;

pub const READY: &str = "ready";
pub const GO: &str = "go";

/// Docker's `max-concurrent-downloads` default.
pub const DEFAULT_PARALLEL: usize = 3;

const ACCEPT: &str = "application/vnd.oci.image.manifest.v1+json, \
     application/vnd.docker.distribution.manifest.v2+json, \
     application/vnd.oci.image.index.v1+json, \
     application/vnd.docker.distribution.manifest.list.v2+json";

/// Where to pull from.
#[derive(Debug, Clone)]
pub struct PullTarget {
    /// `http://host:port` of the registry the client talks to.
    pub registry: String,
    pub repo: String,
    pub tag: String,
    /// The `ns=` query parameter naming the upstream registry, when pulling
    /// through a mirror.
    pub ns: Option<String>,
    pub parallel: usize,
}

impl PullTarget {
    fn url(&self, kind: &str, reference: &str) -> String {
        let query = self
            .ns
            .as_deref()
            .map(|ns| format!("?ns={ns}"))
            .unwrap_or_default();
        format!(
            "{}/v2/{}/{kind}/{reference}{query}",
            self.registry, self.repo
        )
    }
}

/// What one host's pull did.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PullReport {
    /// Seconds from the common start until the last blob was verified;
    /// absent when the pull failed.
    pub finish_s: Option<f64>,
    pub bytes: u64,
    pub blobs: usize,
    /// The client process's own CPU time.
    pub cpu_s: f64,
    pub error: Option<String>,
}

pub fn client() -> anyhow::Result<reqwest::Client> {
    Ok(reqwest::Client::builder()
        .no_proxy()
        .connect_timeout(Duration::from_secs(10))
        .build()?)
}

/// Polls `GET {registry}/v2/` until it answers 200.
pub async fn wait_ready(registry: &str, timeout: Duration) -> anyhow::Result<()> {
    let client = client()?;
    let url = format!("{registry}/v2/");
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        let last = match client
            .get(&url)
            .timeout(Duration::from_secs(2))
            .send()
            .await
        {
            Ok(r) if r.status().is_success() => return Ok(()),
            Ok(r) => format!("answered {}", r.status()),
            Err(e) => e.to_string(),
        };
        anyhow::ensure!(
            tokio::time::Instant::now() < deadline,
            "{url} not ready within {timeout:?} ({last})"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Pulls the image; the bytes and number of blobs received.
pub async fn pull(target: &PullTarget) -> anyhow::Result<(u64, usize)> {
    let client = client()?;
    let url = target.url("manifests", &target.tag);
    let resp = client.get(&url).header("accept", ACCEPT).send().await?;
    anyhow::ensure!(resp.status().is_success(), "GET {url}: {}", resp.status());
    let manifest: serde_json::Value = resp.json().await.context("manifest JSON")?;
    let digests = blob_digests(&manifest)?;
    let fetches = digests.iter().map(|digest| {
        let (client, url) = (&client, target.url("blobs", &digest.to_string()));
        async move { fetch(client, &url, digest, true).await }
    });
    let done: Vec<_> = stream::iter(fetches)
        .buffer_unordered(target.parallel.max(1))
        .try_collect()
        .await?;
    Ok((done.iter().map(|f| f.bytes).sum(), done.len()))
}

/// The config's and every layer's digest.
fn blob_digests(manifest: &serde_json::Value) -> anyhow::Result<Vec<Digest>> {
    let config = manifest.get("config").into_iter();
    let layers = manifest
        .get("layers")
        .and_then(|l| l.as_array())
        .context("the manifest has no layers (an index is not supported)")?;
    config
        .chain(layers)
        .map(|d| {
            d.get("digest")
                .and_then(|d| d.as_str())
                .context("a descriptor without a digest")?
                .parse()
                .map_err(|e| anyhow::anyhow!("bad digest in manifest: {e}"))
        })
        .collect()
}

/// `edge_bench pull`: ready, wait for go, pull, report.
pub async fn serve(target: PullTarget, ready_timeout: Duration) -> anyhow::Result<()> {
    wait_ready(&target.registry, ready_timeout).await?;
    println!("{READY}");
    let mut line = String::new();
    BufReader::new(tokio::io::stdin())
        .read_line(&mut line)
        .await
        .context("reading the go line")?;
    let start_ms: u64 = line
        .trim()
        .strip_prefix(GO)
        .and_then(|ms| ms.trim().parse().ok())
        .with_context(|| format!("expected `{GO} <unix ms>`, got {line:?}"))?;
    let start = UNIX_EPOCH + Duration::from_millis(start_ms);
    if let Ok(wait) = start.duration_since(SystemTime::now()) {
        tokio::time::sleep(wait).await;
    }
    let result = pull(&target).await;
    let finish_s = SystemTime::now()
        .duration_since(start)
        .unwrap_or_default()
        .as_secs_f64();
    let cpu_s = cpu_time(std::process::id())
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0);
    let report = match result {
        Ok((bytes, blobs)) => PullReport {
            finish_s: Some(finish_s),
            bytes,
            blobs,
            cpu_s,
            error: None,
        },
        Err(e) => PullReport {
            finish_s: None,
            bytes: 0,
            blobs: 0,
            cpu_s,
            error: Some(format!("{e:#}")),
        },
    };
    println!("{}", serde_json::to_string(&report)?);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_carry_the_upstream_namespace() {
        let mut t = PullTarget {
            registry: "http://127.0.0.1:5000".into(),
            repo: "edge/multi-64m".into(),
            tag: "latest".into(),
            ns: Some("10.77.0.1:5000".into()),
            parallel: 3,
        };
        assert_eq!(
            t.url("manifests", "latest"),
            "http://127.0.0.1:5000/v2/edge/multi-64m/manifests/latest?ns=10.77.0.1:5000"
        );
        t.ns = None;
        assert_eq!(
            t.url("blobs", "sha256:ab"),
            "http://127.0.0.1:5000/v2/edge/multi-64m/blobs/sha256:ab"
        );
    }

    #[test]
    fn digests_come_config_first() {
        let a = Digest::sha256_of(b"a");
        let b = Digest::sha256_of(b"b");
        let m = serde_json::json!({
            "config": { "digest": a.to_string() },
            "layers": [{ "digest": b.to_string() }],
        });
        assert_eq!(blob_digests(&m).expect("digests"), vec![a, b]);
    }
}
