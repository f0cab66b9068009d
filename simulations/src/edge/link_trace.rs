//! A time series of what the links carry during a pull: the origin's
//! uplink and every host's download and upload, every few milliseconds.
//!
//! The totals of a run (`counters.rs`) say how much crossed a link, not
//! when; whether the uplink was full all along or idled while a download
//! was the bottleneck takes the series. Read from `/proc/<pid>/net/dev` of
//! a process inside each namespace (the registry, the pull clients), which
//! shows that namespace's interfaces without spawning anything per sample.

use std::fmt::Write as _;
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::Context;
use tokio::sync::oneshot;

use super::lab::LINK;
use super::transfer::Received;

/// How often the counters are read.
pub const EVERY: Duration = Duration::from_millis(20);

/// Cumulative bytes of one interface: (received, sent).
type Bytes = (u64, u64);

/// One reading of every link, `at` after the pull's start.
#[derive(Debug, Clone, PartialEq)]
struct Sample {
    at: Duration,
    /// The origin's interface (`None`: could not be read).
    origin: Option<Bytes>,
    /// Each host's interface, in host order.
    hosts: Vec<Option<Bytes>>,
}

/// A trace being taken; [`LinkTrace::finish`] stops it.
#[derive(Debug)]
pub struct LinkTrace {
    stop: oneshot::Sender<()>,
    task: tokio::task::JoinHandle<Vec<Sample>>,
}

impl LinkTrace {
    /// Reads the interfaces of the namespaces `origin_pid` and `host_pids`
    /// (one per host, in order) run in, from `start` (the pull's start) on.
    pub fn start(origin_pid: u32, host_pids: Vec<u32>, start: Instant) -> LinkTrace {
        let (stop, mut stopped) = oneshot::channel();
        let task = tokio::spawn(async move {
            tokio::time::sleep_until(start.into()).await;
            let began = start;
            let mut samples = Vec::new();
            let mut tick = tokio::time::interval(EVERY);
            loop {
                tokio::select! {
                    _ = tick.tick() => {}
                    _ = &mut stopped => break,
                }
                // A process that has exited leaves gaps, not zeros: a
                // zero would read as a burst when the next reading came.
                let read = |pid| read_link(pid).ok();
                samples.push(Sample {
                    at: began.elapsed(),
                    origin: read(origin_pid),
                    hosts: host_pids.iter().map(|p| read(*p)).collect(),
                });
            }
            samples
        });
        LinkTrace { stop, task }
    }

    /// Stops the trace and writes it to `path` as CSV (Mbit/s over each
    /// interval, headers included); returns the uplink's summary.
    pub async fn finish(self, path: &Path, uplink_mbit: f64) -> anyhow::Result<UplinkUse> {
        let _ = self.stop.send(());
        let samples = self.task.await.context("the link trace task failed")?;
        std::fs::write(path, to_csv(&samples))
            .with_context(|| format!("writing {}", path.display()))?;
        Ok(uplink_use(&samples, uplink_mbit))
    }
}

/// What the uplink carried from its first busy interval to its last.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct UplinkUse {
    /// From the first interval that carried data to the end of the last.
    pub busy_s: f64,
    /// Bytes sent over that time, headers included.
    pub bytes: u64,
    /// `bytes` over what the link's rate allows in `busy_s`.
    pub share: f64,
}

/// An interval counts as busy when it carried more than this share of the
/// link's rate: requests and ACKs alone stay far below it.
const BUSY_SHARE: f64 = 0.05;

fn uplink_use(samples: &[Sample], uplink_mbit: f64) -> UplinkUse {
    let per_interval: Vec<(Duration, Duration, u64)> = samples
        .windows(2)
        .map(|w| {
            (
                w[0].at,
                w[1].at,
                sent_between(w[0].origin, w[1].origin).unwrap_or(0),
            )
        })
        .collect();
    let busy = |&&(from, to, bytes): &&(Duration, Duration, u64)| {
        rate(bytes, to.saturating_sub(from)) > uplink_mbit * BUSY_SHARE
    };
    let (Some(first), Some(last)) = (
        per_interval.iter().find(busy),
        per_interval.iter().rev().find(busy),
    ) else {
        return UplinkUse {
            busy_s: 0.0,
            bytes: 0,
            share: 0.0,
        };
    };
    let busy_s = last.1.saturating_sub(first.0).as_secs_f64();
    let bytes: u64 = per_interval
        .iter()
        .filter(|(from, _, _)| *from >= first.0 && *from <= last.0)
        .map(|(_, _, b)| b)
        .sum();
    UplinkUse {
        busy_s,
        bytes,
        share: Received {
            bytes,
            seconds: busy_s,
        }
        .mbit_per_s()
            / uplink_mbit,
    }
}

/// Mbit/s of `bytes` carried `over` an interval.
fn rate(bytes: u64, over: Duration) -> f64 {
    Received {
        bytes,
        seconds: over.as_secs_f64(),
    }
    .mbit_per_s()
}

/// Bytes sent between two readings of one interface, if both were read.
fn sent_between(before: Option<Bytes>, now: Option<Bytes>) -> Option<u64> {
    before.zip(now).map(|(b, n)| n.1.saturating_sub(b.1))
}

fn to_csv(samples: &[Sample]) -> String {
    let hosts = samples.first().map_or(0, |s| s.hosts.len());
    let mut out = String::from("t_s,uplink_mbit");
    for h in 0..hosts {
        let _ = write!(out, ",h{h}_down_mbit,h{h}_up_mbit");
    }
    out.push('\n');
    for w in samples.windows(2) {
        let dt = w[1].at.saturating_sub(w[0].at);
        let cell =
            |bytes: Option<u64>| bytes.map_or(String::new(), |b| format!("{:.1}", rate(b, dt)));
        let _ = write!(
            out,
            "{:.3},{}",
            w[1].at.as_secs_f64(),
            cell(sent_between(w[0].origin, w[1].origin))
        );
        for (before, now) in w[0].hosts.iter().zip(&w[1].hosts) {
            let received = before.zip(*now).map(|(b, n)| n.0.saturating_sub(b.0));
            let _ = write!(
                out,
                ",{},{}",
                cell(received),
                cell(sent_between(*before, *now))
            );
        }
        out.push('\n');
    }
    out
}

/// Received and sent bytes of the lab's link in the namespace `pid` runs in.
fn read_link(pid: u32) -> anyhow::Result<Bytes> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/net/dev"))?;
    parse_net_dev(&text, LINK).with_context(|| format!("no {LINK} in /proc/{pid}/net/dev"))
}

/// The (received, sent) bytes of `dev` in `/proc/net/dev`'s format.
fn parse_net_dev(text: &str, dev: &str) -> Option<Bytes> {
    text.lines().find_map(|line| {
        let (name, fields) = line.split_once(':')?;
        if name.trim() != dev {
            return None;
        }
        let fields: Vec<u64> = fields
            .split_whitespace()
            .map(|f| f.parse().ok())
            .collect::<Option<_>>()?;
        // Receive: bytes packets errs drop fifo frame compressed multicast;
        // then transmit: bytes ...
        Some((*fields.first()?, *fields.get(8)?))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const NET_DEV: &str = "\
Inter-|   Receive                                                |  Transmit
 face |bytes    packets errs drop fifo frame compressed multicast|bytes    packets errs drop fifo colls carrier compressed
    lo:     100       2    0    0    0     0          0         0      100       2    0    0    0     0       0          0
  eth0: 1234567    900    0    0    0     0          0         0  7654321     800    0    0    0     0       0          0
";

    #[test]
    fn reads_received_and_sent_bytes_of_the_device() {
        assert_eq!(parse_net_dev(NET_DEV, "eth0"), Some((1_234_567, 7_654_321)));
        assert_eq!(parse_net_dev(NET_DEV, "lo"), Some((100, 100)));
        assert_eq!(parse_net_dev(NET_DEV, "eth1"), None);
    }

    fn sample(ms: u64, origin_sent: u64) -> Sample {
        Sample {
            at: Duration::from_millis(ms),
            origin: Some((0, origin_sent)),
            hosts: vec![Some((origin_sent, 0))],
        }
    }

    #[test]
    fn uplink_use_spans_the_first_to_the_last_busy_interval() {
        // 100 Mbit/s is 250,000 bytes per 20 ms: idle, full, half, idle.
        let samples = [
            sample(0, 0),
            sample(20, 10),
            sample(40, 250_010),
            sample(60, 375_010),
            sample(80, 375_020),
        ];
        let u = uplink_use(&samples, 100.0);
        assert!((u.busy_s - 0.040).abs() < 1e-9);
        assert_eq!(u.bytes, 375_000);
        assert!((u.share - 0.75).abs() < 1e-9);
    }

    #[test]
    fn an_idle_uplink_has_no_busy_time() {
        let u = uplink_use(&[sample(0, 0), sample(20, 5)], 100.0);
        assert_eq!(u.bytes, 0);
        assert_eq!(u.share, 0.0);
    }

    #[test]
    fn csv_has_a_rate_per_link_and_interval() {
        let csv = to_csv(&[sample(0, 0), sample(20, 250_000)]);
        let lines: Vec<&str> = csv.lines().collect();
        assert_eq!(lines[0], "t_s,uplink_mbit,h0_down_mbit,h0_up_mbit");
        assert_eq!(lines[1], "0.020,100.0,100.0,0.0");
    }

    #[test]
    fn a_reading_that_failed_leaves_a_gap_not_a_burst() {
        let mut gap = sample(20, 250_000);
        gap.origin = None;
        gap.hosts = vec![None];
        let samples = [sample(0, 0), gap, sample(40, 500_000)];
        let csv = to_csv(&samples);
        let lines: Vec<&str> = csv.lines().collect();
        assert_eq!(lines[1], "0.020,,,");
        assert_eq!(lines[2], "0.040,,,");
        let u = uplink_use(&samples, 100.0);
        assert_eq!(u.bytes, 0);
    }
}
