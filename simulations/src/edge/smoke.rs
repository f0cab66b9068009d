//! `edge_bench smoke`: a small site that runs in seconds, for the test
//! suite. It passes when every host got the image in both scenarios and
//! the shoal scenario sent the image over the uplink about once.

use std::path::PathBuf;
use std::time::Duration;

use super::bench::{BenchOptions, BenchResult};
use super::client::DEFAULT_PARALLEL;
use super::image::ImageSpec;
use super::params::{Rates, Site};
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
        },
        image: ImageSpec::Single { mib: 8 },
        modes: vec![Mode::Direct, Mode::Shoal],
        shoal_bin,
        parallel: DEFAULT_PARALLEL,
        settle: Duration::from_secs(2),
        plot: None,
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
        let why = result
            .notes
            .first()
            .cloned()
            .unwrap_or_else(|| "shoal scenario not run".into());
        return Verdict::Skipped(why);
    };
    let egress = shoal.origin_link.tx as f64 / result.image_bytes as f64;
    let line = format!("shoal scenario: origin egress {egress:.3} × S (limit {MAX_ORIGIN_EGRESS})");
    if egress <= MAX_ORIGIN_EGRESS {
        Verdict::Passed(line)
    } else {
        Verdict::Failed(line)
    }
}
