//! Whole-machine CPU use from `/proc/stat`, so a report shows whether the
//! links or the two shared cores were the limit.

use anyhow::Context;

/// The `cpu` line of `/proc/stat`, in clock ticks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MachineCpu {
    busy: u64,
    total: u64,
    pub cores: usize,
}

impl MachineCpu {
    pub fn now() -> anyhow::Result<MachineCpu> {
        parse(&std::fs::read_to_string("/proc/stat").context("reading /proc/stat")?)
    }

    /// The share of all cores that was busy between `before` and `self`:
    /// 1.0 means every core was busy all the time.
    pub fn busy_since(self, before: MachineCpu) -> f64 {
        let total = self.total.saturating_sub(before.total);
        if total == 0 {
            return 0.0;
        }
        self.busy.saturating_sub(before.busy) as f64 / total as f64
    }
}

fn parse(stat: &str) -> anyhow::Result<MachineCpu> {
    let line = stat
        .lines()
        .find(|l| l.starts_with("cpu "))
        .context("no cpu line in /proc/stat")?;
    // user nice system idle iowait irq softirq steal (guest time is
    // already counted in user and nice).
    let ticks: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .take(8)
        .map(|t| t.parse().unwrap_or(0))
        .collect();
    anyhow::ensure!(ticks.len() >= 5, "short cpu line in /proc/stat: {line}");
    let total: u64 = ticks.iter().sum();
    let idle = ticks[3] + ticks[4];
    let cores = stat
        .lines()
        .filter(|l| l.starts_with("cpu") && l.as_bytes().get(3).is_some_and(u8::is_ascii_digit))
        .count();
    Ok(MachineCpu {
        busy: total - idle,
        total,
        cores,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn busy_excludes_idle_and_iowait() {
        let a =
            parse("cpu  10 0 10 70 10 0 0 0 0 0\ncpu0 5 0 5 35 5 0 0 0\ncpu1 5 0 5 35 5 0 0 0\n")
                .expect("parse");
        let b = parse("cpu  40 0 20 120 20 0 0 0 0 0\n").expect("parse");
        assert_eq!(a.cores, 2);
        // 40 more busy ticks out of 100.
        assert!((b.busy_since(a) - 0.4).abs() < 1e-9);
    }
}
