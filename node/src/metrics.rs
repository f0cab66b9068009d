//! Counters and histograms the node exposes as Prometheus text on
//! `GET /metrics`. Plain atomics: cheap enough to bump on every chunk.

use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Upper bounds (seconds) of the blob-fetch duration histogram buckets.
const FETCH_BUCKETS: [f64; 10] = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0, 30.0];

#[derive(Debug, Default)]
pub struct Metrics {
    pub p2p_bytes_sent_total: AtomicU64,
    pub p2p_bytes_received_total: AtomicU64,
    pub chunks_verified_total: AtomicU64,
    pub chunks_rejected_total: AtomicU64,
    pub peers_banned_total: AtomicU64,
    pub dht_providers_found_total: AtomicU64,
    pub upstream_bytes_received_total: AtomicU64,
    fetch_buckets: [AtomicU64; FETCH_BUCKETS.len()],
    fetch_count: AtomicU64,
    fetch_sum_micros: AtomicU64,
}

impl Metrics {
    pub fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }

    /// Records how long a blob fetch from peers took.
    pub fn observe_fetch(&self, took: Duration) {
        let secs = took.as_secs_f64();
        for (bound, bucket) in FETCH_BUCKETS.iter().zip(&self.fetch_buckets) {
            if secs <= *bound {
                bucket.fetch_add(1, Ordering::Relaxed);
            }
        }
        self.fetch_count.fetch_add(1, Ordering::Relaxed);
        self.fetch_sum_micros
            .fetch_add(took.as_micros() as u64, Ordering::Relaxed);
    }

    /// The Prometheus text exposition format.
    pub fn render(&self) -> String {
        let mut out = String::new();
        let counters: [(&str, &str, &AtomicU64); 7] = [
            (
                "shoal_p2p_bytes_sent_total",
                "Blob bytes sent to peers.",
                &self.p2p_bytes_sent_total,
            ),
            (
                "shoal_p2p_bytes_received_total",
                "Blob bytes received from peers.",
                &self.p2p_bytes_received_total,
            ),
            (
                "shoal_chunks_verified_total",
                "Chunks from peers that passed their check.",
                &self.chunks_verified_total,
            ),
            (
                "shoal_chunks_rejected_total",
                "Chunks from peers that failed their check.",
                &self.chunks_rejected_total,
            ),
            (
                "shoal_peers_banned_total",
                "Peers banned for failing or lying.",
                &self.peers_banned_total,
            ),
            (
                "shoal_dht_providers_found_total",
                "Providers found in the DHT.",
                &self.dht_providers_found_total,
            ),
            (
                "shoal_upstream_bytes_received_total",
                "Blob bytes received from upstream registries.",
                &self.upstream_bytes_received_total,
            ),
        ];
        for (name, help, value) in counters {
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} counter\n{name} {}",
                value.load(Ordering::Relaxed)
            );
        }
        let name = "shoal_blob_fetch_duration_seconds";
        let _ = writeln!(
            out,
            "# HELP {name} Time to fetch a blob from peers.\n# TYPE {name} histogram"
        );
        for (bound, bucket) in FETCH_BUCKETS.iter().zip(&self.fetch_buckets) {
            let _ = writeln!(
                out,
                "{name}_bucket{{le=\"{bound}\"}} {}",
                bucket.load(Ordering::Relaxed)
            );
        }
        let count = self.fetch_count.load(Ordering::Relaxed);
        let _ = writeln!(out, "{name}_bucket{{le=\"+Inf\"}} {count}");
        let sum = self.fetch_sum_micros.load(Ordering::Relaxed) as f64 / 1e6;
        let _ = writeln!(out, "{name}_sum {sum}\n{name}_count {count}");
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_counters_and_histogram() {
        let m = Metrics::default();
        Metrics::add(&m.p2p_bytes_sent_total, 42);
        m.observe_fetch(Duration::from_millis(30));
        let text = m.render();
        assert!(text.contains("shoal_p2p_bytes_sent_total 42"));
        assert!(text.contains("shoal_blob_fetch_duration_seconds_bucket{le=\"0.05\"} 1"));
        assert!(text.contains("shoal_blob_fetch_duration_seconds_bucket{le=\"0.025\"} 0"));
        assert!(text.contains("shoal_blob_fetch_duration_seconds_count 1"));
    }
}
