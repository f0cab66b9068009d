//! Shaping one direction of a link with `tc qdisc … tbf` (token bucket).
//!
//! `tc netem` is not available on the project's machine; tbf is, and a
//! token bucket on the egress of each veth end is all a rate limit needs.
//!
//! The two knobs, and why:
//! - **burst** (bucket size): at least 64 KiB, because veths hand tbf
//!   GSO packets of up to 64 KiB; a smaller bucket makes tbf split every
//!   one of them in software. At high rates it grows to 2 ms worth of
//!   traffic so the qdisc watchdog's wake-ups do not cap the rate. Bursts
//!   this short do not change the average over a transfer of seconds.
//! - **limit** (queue): burst plus 50 ms of traffic, at least 256 KiB.
//!   Many TCP flows share one origin link; with a queue much shorter than
//!   that they lose packets in synchronised bursts and leave the link
//!   idle, with a much longer one every request waits behind seconds of
//!   queued data. 50 ms is a typical broadband modem buffer. Checked with
//!   `edge_bench self-check`: goodput comes out at 94–96% of the rate (the
//!   rest is TCP/IP and Ethernet headers, which tbf counts).

use super::cmd;

/// One tbf qdisc's parameters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tbf {
    pub rate_bit: u64,
    pub burst_bytes: u64,
    pub limit_bytes: u64,
}

const MIN_BURST: u64 = 64 << 10;
const BURST_TIME_S: f64 = 0.002;
const QUEUE_TIME_S: f64 = 0.050;
const MIN_LIMIT: u64 = 256 << 10;

impl Tbf {
    pub fn for_mbit(mbit: f64) -> Tbf {
        let rate_bit = (mbit * 1e6).round().max(8_000.0) as u64;
        let bytes_per_s = rate_bit as f64 / 8.0;
        let burst_bytes = MIN_BURST.max((bytes_per_s * BURST_TIME_S) as u64);
        let limit_bytes = MIN_LIMIT.max(burst_bytes + (bytes_per_s * QUEUE_TIME_S) as u64);
        Tbf {
            rate_bit,
            burst_bytes,
            limit_bytes,
        }
    }

    /// The `tc` arguments that install it as the root qdisc of `dev` in
    /// namespace `ns`.
    pub fn tc_args(&self, ns: &str, dev: &str) -> Vec<String> {
        [
            "-n",
            ns,
            "qdisc",
            "replace",
            "dev",
            dev,
            "root",
            "tbf",
            "rate",
            &format!("{}bit", self.rate_bit),
            "burst",
            &self.burst_bytes.to_string(),
            "limit",
            &self.limit_bytes.to_string(),
        ]
        .map(str::to_owned)
        .to_vec()
    }
}

/// Limits what leaves `dev` in `ns` to `mbit`.
pub fn shape_egress(ns: &str, dev: &str, mbit: f64) -> anyhow::Result<()> {
    let args = Tbf::for_mbit(mbit).tc_args(ns, dev);
    cmd::run("tc", &args.iter().map(String::as_str).collect::<Vec<_>>())?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slow_links_get_the_minimum_bucket_and_queue() {
        let t = Tbf::for_mbit(10.0);
        assert_eq!(t.rate_bit, 10_000_000);
        assert_eq!(t.burst_bytes, 64 << 10);
        assert_eq!(t.limit_bytes, 256 << 10);
    }

    #[test]
    fn fast_links_get_two_ms_of_burst_and_fifty_ms_of_queue() {
        let t = Tbf::for_mbit(1000.0);
        assert_eq!(t.burst_bytes, 250_000);
        assert_eq!(t.limit_bytes, 250_000 + 6_250_000);
    }

    #[test]
    fn tc_args_name_the_namespace_and_device() {
        let args = Tbf::for_mbit(50.0).tc_args("ns1", "eth0");
        assert_eq!(&args[..6], ["-n", "ns1", "qdisc", "replace", "dev", "eth0"]);
        assert!(args.contains(&"50000000bit".to_owned()));
    }
}
