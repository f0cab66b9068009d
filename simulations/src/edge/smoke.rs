//! `edge_bench smoke`: a small site that runs in seconds, for the test
//! suite. It passes when every host got the image in both scenarios and
//! the shoal scenario sent the image over the uplink about once.

use std::path::PathBuf;
use std::time::Duration;

use super::bench::{BenchOptions, BenchResult};
use super::client::DEFAULT_PARALLEL;
use super::image::ImageSpec;
use super::params::{Rates, STANDARD_MTU, Site};
use super::scenario::Mode;

/// The most the origin may send in the shoal scenario, in images: one
/// copy plus TCP/IP headers (about 4.5%) and room for a few retried
/// chunks.
pub const MAX_ORIGIN_EGRESS: f64 = 1.1;

pub fn options(shoal_bin: PathBuf) -> BenchOptions {
    BenchOptions {
        site: Site {
            hosts: 4,
            rates: Rates {
                origin_mbit: 50.0,
                up_mbit: 200.0,
                down_mbit: 200.0,
            },
            lan_mtu: STANDARD_MTU,
        },
        image: ImageSpec::Single { mib: 8 },
        modes: vec![Mode::Direct, Mode::Shoal],
        shoal_bin,
        parallel: DEFAULT_PARALLEL,
        settle: Duration::from_secs(2),
        plot: None,
        link_trace: None,
        keep_logs: false,
    }
}

#[derive(Debug, Clone, PartialEq)]
pub enum Verdict {
    Passed(String),
    /// The shoal scenario could not run; direct did.
    Skipped(String),
    Failed(String),
}

pub fn verdict(result: &BenchResult) -> Verdict {
    for o in &result.outcomes {
        if let Some((host, e)) = o.failures().next() {
            return Verdict::Failed(format!("{} scenario: host {host} failed: {e}", o.mode));
        }
    }
    let Some(shoal) = result.outcome(Mode::Shoal) else {
        return match &result.shoal_unsupported {
            Some(why) => Verdict::Skipped(format!("shoal scenario not run: {why}")),
            None => Verdict::Failed(result.notes.join("; ")),
        };
    };
    let egress = shoal.origin_link.tx as f64 / result.image_bytes as f64;
    let line = format!("shoal scenario: origin egress {egress:.3} × S (limit {MAX_ORIGIN_EGRESS})");
    if egress <= MAX_ORIGIN_EGRESS {
        Verdict::Passed(line)
    } else {
        Verdict::Failed(line)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::edge::client::PullReport;
    use crate::edge::counters::LinkBytes;
    use crate::edge::scenario::Outcome;

    const S: u64 = 8 << 20;

    fn outcome(mode: Mode, origin_tx: u64) -> Outcome {
        Outcome {
            mode,
            reports: vec![PullReport {
                finish_s: Some(1.0),
                bytes: S,
                blobs: 2,
                cpu_s: 0.1,
                error: None,
            }],
            origin_link: LinkBytes {
                tx: origin_tx,
                rx: 0,
            },
            host_links: vec![LinkBytes::default()],
            machine_busy: 0.1,
            cores: 2,
            origin_cpu_s: 0.0,
            shoal_cpu_s: None,
            uplink_use: None,
            client_cpu_s: 0.1,
        }
    }

    fn result(outcomes: Vec<Outcome>, unsupported: Option<&str>) -> BenchResult {
        BenchResult {
            image_bytes: S,
            outcomes,
            notes: vec!["a note".into()],
            shoal_unsupported: unsupported.map(str::to_owned),
            markdown: String::new(),
        }
    }

    #[test]
    fn one_copy_over_the_uplink_passes_and_two_fail() {
        let direct = || outcome(Mode::Direct, 4 * S);
        let pass = result(vec![direct(), outcome(Mode::Shoal, S * 105 / 100)], None);
        assert!(matches!(verdict(&pass), Verdict::Passed(_)));
        let fail = result(vec![direct(), outcome(Mode::Shoal, 2 * S)], None);
        assert!(matches!(verdict(&fail), Verdict::Failed(_)));
    }

    #[test]
    fn a_shoal_without_upstream_skips_and_a_broken_one_fails() {
        let old = result(vec![outcome(Mode::Direct, 4 * S)], Some("no --upstream"));
        assert!(matches!(verdict(&old), Verdict::Skipped(w) if w.contains("no --upstream")));
        let broken = result(vec![outcome(Mode::Direct, 4 * S)], None);
        assert_eq!(verdict(&broken), Verdict::Failed("a note".into()));
    }
}
