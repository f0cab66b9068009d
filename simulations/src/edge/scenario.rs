//! One scenario run: every host pulls the image at the same instant, and
//! the links and CPUs are read before and after.

use std::fmt;
use std::path::Path;
use std::time::Duration;

use super::client::{PullReport, PullTarget};
use super::counters::{self, LinkBytes};
use super::cpu::MachineCpu;
use super::image::PushedImage;
use super::lab::{LINK, Lab};
use super::link_trace::{LinkTrace, UplinkUse};
use super::nodes::{REGISTRY, ShoalFleet};
use super::origin::Origin;
use super::pullers::Pullers;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Every host pulls straight from the origin.
    Direct,
    /// Every host pulls through its own shoal node.
    Shoal,
}

impl fmt::Display for Mode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Mode::Direct => "direct",
            Mode::Shoal => "shoal",
        })
    }
}

/// What a scenario measured.
#[derive(Debug, Clone)]
pub struct Outcome {
    pub mode: Mode,
    /// One per host, in host order.
    pub reports: Vec<PullReport>,
    /// What the origin sent and received over its uplink.
    pub origin_link: LinkBytes,
    /// What each host sent and received, in host order.
    pub host_links: Vec<LinkBytes>,
    /// Share of all cores busy during the pull (see [`MachineCpu`]).
    pub machine_busy: f64,
    pub cores: usize,
    pub origin_cpu_s: f64,
    /// The shoal nodes' CPU time during the pull, in the shoal scenario.
    pub shoal_cpu_s: Option<f64>,
    pub client_cpu_s: f64,
    /// The uplink's use over the pull, when the links were traced.
    pub uplink_use: Option<UplinkUse>,
}

impl Outcome {
    /// Finish times of the hosts that finished.
    pub fn finishes(&self) -> Vec<f64> {
        self.reports.iter().filter_map(|r| r.finish_s).collect()
    }

    /// The last host's finish time, if every host finished.
    pub fn last_finish(&self) -> Option<f64> {
        let f = self.finishes();
        (f.len() == self.reports.len()).then(|| f.into_iter().fold(0.0, f64::max))
    }

    pub fn failures(&self) -> impl Iterator<Item = (usize, &str)> {
        self.reports
            .iter()
            .enumerate()
            .filter_map(|(i, r)| r.error.as_deref().map(|e| (i, e)))
    }
}

/// Everything a scenario needs that outlives it.
#[derive(Debug)]
pub struct Stage<'a> {
    pub exe: &'a Path,
    pub lab: &'a Lab,
    pub origin: &'a Origin,
    pub image: &'a PushedImage,
    pub parallel: usize,
    pub ready_timeout: Duration,
    pub deadline: Duration,
    /// Trace the links into `<this>-<mode>.csv` (`link_trace.rs`).
    pub link_trace: Option<&'a Path>,
    /// U0, for the uplink's share in the trace.
    pub uplink_mbit: f64,
}

/// Runs one scenario; `fleet` must be running for [`Mode::Shoal`].
pub async fn run(
    stage: &Stage<'_>,
    mode: Mode,
    fleet: Option<&ShoalFleet>,
) -> anyhow::Result<Outcome> {
    let target_for = |_: &_| PullTarget {
        registry: match mode {
            Mode::Direct => stage.origin.url(),
            Mode::Shoal => REGISTRY.to_owned(),
        },
        repo: stage.image.repo.clone(),
        tag: stage.image.tag.clone(),
        ns: (mode == Mode::Shoal).then(|| stage.origin.authority.clone()),
        parallel: stage.parallel,
    };
    let mut pullers =
        Pullers::start(stage.exe, &stage.lab.hosts, target_for, stage.ready_timeout).await?;

    let before = Snapshot::take(stage, fleet)?;
    // A host's client exits when its pull is done, its shoal node only
    // when the scenario is: the node shows the host's links to the end.
    let traced_pids = stage
        .link_trace
        .map(|_| fleet.map_or_else(|| pullers.pids(), ShoalFleet::pids));
    let start = pullers.go().await?;
    let trace = traced_pids.map(|hosts| LinkTrace::start(stage.origin.pid(), hosts, start));
    let reports = pullers.finish(stage.deadline).await;
    let after = Snapshot::take(stage, fleet)?;
    let uplink_use = match trace.zip(stage.link_trace) {
        Some((trace, prefix)) => {
            let mut name = prefix.as_os_str().to_owned();
            name.push(format!("-{mode}.csv"));
            Some(trace.finish(Path::new(&name), stage.uplink_mbit).await?)
        }
        None => None,
    };

    Ok(Outcome {
        mode,
        client_cpu_s: reports.iter().map(|r| r.cpu_s).sum(),
        uplink_use,
        reports,
        origin_link: after.origin.since(before.origin),
        host_links: after
            .hosts
            .iter()
            .zip(&before.hosts)
            .map(|(a, b)| a.since(*b))
            .collect(),
        machine_busy: after.machine.busy_since(before.machine),
        cores: after.machine.cores,
        origin_cpu_s: after.origin_cpu_s - before.origin_cpu_s,
        shoal_cpu_s: after
            .shoal_cpu_s
            .zip(before.shoal_cpu_s)
            .map(|(a, b)| a - b),
    })
}

/// Counters at one moment.
struct Snapshot {
    origin: LinkBytes,
    hosts: Vec<LinkBytes>,
    machine: MachineCpu,
    origin_cpu_s: f64,
    shoal_cpu_s: Option<f64>,
}

impl Snapshot {
    fn take(stage: &Stage<'_>, fleet: Option<&ShoalFleet>) -> anyhow::Result<Snapshot> {
        Ok(Snapshot {
            origin: counters::read(&stage.lab.origin.ns, LINK)?,
            hosts: stage
                .lab
                .hosts
                .iter()
                .map(|h| counters::read(&h.ns, LINK))
                .collect::<anyhow::Result<_>>()?,
            machine: MachineCpu::now()?,
            origin_cpu_s: stage.origin.cpu_s(),
            shoal_cpu_s: fleet.map(ShoalFleet::cpu_s),
        })
    }
}
