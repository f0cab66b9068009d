//! The markdown report: one row per scenario, a summary row in the shape
//! docs/benchmarks.md uses, and every host's time and bytes.

use std::fmt::Write;

use super::image::ImageSpec;
use super::params::{STANDARD_MTU, Site, lower_bound_s};
use super::scenario::{Mode, Outcome};

/// A finished run, ready to print.
#[derive(Debug)]
pub struct Run<'a> {
    pub site: Site,
    pub image: ImageSpec,
    /// S, in bytes.
    pub image_bytes: u64,
    pub outcomes: &'a [Outcome],
    /// Why a scenario did not run, if one did not.
    pub notes: &'a [String],
}

impl Run<'_> {
    pub fn lower_bound_s(&self) -> f64 {
        lower_bound_s(self.image_bytes, &self.site)
    }

    fn outcome(&self, mode: Mode) -> Option<&Outcome> {
        self.outcomes.iter().find(|o| o.mode == mode)
    }

    fn per_s(&self, bytes: u64) -> f64 {
        bytes as f64 / self.image_bytes as f64
    }
}

fn secs(t: Option<f64>) -> String {
    t.map_or_else(|| "failed".to_owned(), |t| format!("{t:.2}"))
}

fn median(mut v: Vec<f64>) -> Option<f64> {
    v.sort_by(f64::total_cmp);
    v.get(v.len() / 2).copied()
}

/// CPU in one cell: the machine's busy share and who used it.
fn cpu_cell(o: &Outcome) -> String {
    let mut s = format!("{:.0}% of {} cores", o.machine_busy * 100.0, o.cores);
    if let Some(shoal) = o.shoal_cpu_s {
        let _ = write!(s, "; shoal {shoal:.1} s");
    }
    let _ = write!(
        s,
        "; origin {:.1} s; clients {:.1} s",
        o.origin_cpu_s, o.client_cpu_s
    );
    s
}

pub fn markdown(run: &Run<'_>) -> String {
    let r = run.site.rates;
    let t_star = run.lower_bound_s();
    let mut out = String::new();
    let lan = if run.site.lan_mtu == STANDARD_MTU {
        String::new()
    } else {
        format!(", hosts' links MTU {}", run.site.lan_mtu)
    };
    let _ = writeln!(
        out,
        "N = {}, U0 = {} Mbit/s, u = {} Mbit/s, d = {} Mbit/s{lan}, image {} (S = {:.1} MiB), T* = {t_star:.2} s\n",
        run.site.hosts,
        r.origin_mbit,
        r.up_mbit,
        r.down_mbit,
        run.image,
        run.image_bytes as f64 / (1 << 20) as f64
    );
    out.push_str(
        "| scenario | first s | median s | last s | last / T* | origin egress / S | max host upload / S | CPU during the pull |\n\
         |---|---|---|---|---|---|---|---|\n",
    );
    for o in run.outcomes {
        let finishes = o.finishes();
        let first = finishes.iter().copied().reduce(f64::min);
        let max_upload = o.host_links.iter().map(|l| l.tx).max().unwrap_or(0);
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} | {} | {:.2} | {:.2} | {} |",
            o.mode,
            secs(first),
            secs(median(finishes)),
            secs(o.last_finish()),
            o.last_finish()
                .map_or_else(|| "–".into(), |t| format!("{:.2}", t / t_star)),
            run.per_s(o.origin_link.tx),
            run.per_s(max_upload),
            cpu_cell(o),
        );
    }

    for o in run.outcomes {
        if let Some(u) = o.uplink_use {
            let _ = writeln!(
                out,
                "\n{}: the uplink carried {:.1} MB (as its interface counts bytes) in the {:.2} s from its first busy 20 ms to its last: {:.0}% of U0.",
                o.mode,
                u.bytes as f64 / 1e6,
                u.busy_s,
                u.share * 100.0
            );
        }
    }

    let _ = writeln!(
        out,
        "\n| N | U0 | u | d | image | T* s | shoal last s | shoal / T* | direct last s | origin egress / S (shoal, direct) | CPU busy (shoal, direct) |\n\
         |---|---|---|---|---|---|---|---|---|---|---|"
    );
    let shoal = run.outcome(Mode::Shoal);
    let direct = run.outcome(Mode::Direct);
    let last = |o: Option<&Outcome>| o.map_or_else(|| "not run".into(), |o| secs(o.last_finish()));
    let egress = |o: Option<&Outcome>| {
        o.map_or_else(
            || "–".into(),
            |o| format!("{:.2}", run.per_s(o.origin_link.tx)),
        )
    };
    let busy = |o: Option<&Outcome>| {
        o.map_or_else(|| "–".into(), |o| format!("{:.0}%", o.machine_busy * 100.0))
    };
    let ratio = shoal
        .and_then(Outcome::last_finish)
        .map_or_else(|| "–".into(), |t| format!("{:.2}", t / t_star));
    let _ = writeln!(
        out,
        "| {} | {} | {} | {} | {} | {t_star:.2} | {} | {ratio} | {} | {}, {} | {}, {} |",
        run.site.hosts,
        r.origin_mbit,
        r.up_mbit,
        r.down_mbit,
        run.image,
        last(shoal),
        last(direct),
        egress(shoal),
        egress(direct),
        busy(shoal),
        busy(direct),
    );

    for note in run.notes {
        let _ = writeln!(out, "\nNote: {note}");
    }
    for o in run.outcomes {
        let _ = writeln!(
            out,
            "\n{} per host: finish s, MiB received, MiB sent",
            o.mode
        );
        for (i, (rep, link)) in o.reports.iter().zip(&o.host_links).enumerate() {
            let _ = writeln!(
                out,
                "  h{i}: {}, {:.1}, {:.1}",
                secs(rep.finish_s),
                link.rx as f64 / (1 << 20) as f64,
                link.tx as f64 / (1 << 20) as f64,
            );
        }
        for (i, e) in o.failures() {
            let _ = writeln!(out, "  h{i} failed: {e}");
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::edge::params::Rates;

    fn header(lan_mtu: u32) -> String {
        let site = Site {
            hosts: 8,
            rates: Rates {
                origin_mbit: 100.0,
                up_mbit: 100.0,
                down_mbit: 100.0,
            },
            lan_mtu,
        };
        let run = Run {
            site,
            image: ImageSpec::Single { mib: 64 },
            image_bytes: 64 << 20,
            outcomes: &[],
            notes: &[],
        };
        markdown(&run).lines().next().unwrap_or_default().to_owned()
    }

    #[test]
    fn the_header_names_a_lan_mtu_only_when_it_is_not_ethernets() {
        let standard = header(STANDARD_MTU);
        assert!(standard.starts_with("N = 8, U0 = 100 Mbit/s"), "{standard}");
        assert!(!standard.contains("MTU"), "{standard}");
        let jumbo = header(9000);
        assert!(
            jumbo.contains("d = 100 Mbit/s, hosts' links MTU 9000, image"),
            "{jumbo}"
        );
    }

    #[test]
    fn median_of_an_odd_and_an_even_sample() {
        assert_eq!(median(vec![3.0, 1.0, 2.0]), Some(2.0));
        assert_eq!(median(vec![4.0, 1.0]), Some(4.0));
        assert_eq!(median(Vec::new()), None);
    }
}
