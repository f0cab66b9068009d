//! A whole benchmark: build the site, fill the origin, run each scenario,
//! report, and take everything down again.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use anyhow::Context;

use super::cmd::in_namespace;
use super::image::{ImageSpec, PushedImage};
use super::lab::Lab;
use super::names::RunNames;
use super::nodes::{self, ShoalFleet};
use super::origin::Origin;
use super::params::{Site, direct_bound_s};
use super::report::{self, Run};
use super::scenario::{self, Mode, Outcome, Stage};

/// How one benchmark runs.
#[derive(Debug, Clone)]
pub struct BenchOptions {
    pub site: Site,
    pub image: ImageSpec,
    pub modes: Vec<Mode>,
    pub shoal_bin: PathBuf,
    /// Blobs each client fetches at once.
    pub parallel: usize,
    /// Time for the shoal nodes' DHT to fill after they all answer.
    pub settle: Duration,
    /// Where to write the SVG of completion times.
    pub plot: Option<PathBuf>,
    /// Keep the shoal nodes' logs even when every pull succeeded.
    pub keep_logs: bool,
    /// Trace the links of each scenario into `<this>-<mode>.csv`.
    pub link_trace: Option<PathBuf>,
}

/// What a benchmark produced.
#[derive(Debug)]
pub struct BenchResult {
    pub image_bytes: u64,
    pub outcomes: Vec<Outcome>,
    /// Why a scenario did not run or failed, and where its logs are.
    pub notes: Vec<String>,
    /// Why the shoal binary cannot run the shoal scenario, if it cannot.
    pub shoal_unsupported: Option<String>,
    pub markdown: String,
}

impl BenchResult {
    pub fn outcome(&self, mode: Mode) -> Option<&Outcome> {
        self.outcomes.iter().find(|o| o.mode == mode)
    }
}

/// Runs the benchmark; `exe` is this binary, re-run inside namespaces.
/// Everything it makes is removed when it returns or is dropped mid-way.
pub async fn run(exe: &Path, names: RunNames, opts: &BenchOptions) -> anyhow::Result<BenchResult> {
    let scratch = tempfile::Builder::new()
        .prefix(&names.prefix())
        .tempdir()
        .context("creating a scratch directory")?;
    eprintln!(
        "building {} hosts in namespaces {}*",
        opts.site.hosts,
        names.prefix()
    );
    let mut lab = Lab::build(names, &opts.site)?;
    let origin = Origin::start(exe, &lab, &scratch.path().join("origin")).await?;
    eprintln!("pushing {} to the origin at {}", opts.image, origin.url());
    let image = push_in_origin(exe, &lab, &origin, opts.image).await?;

    let stage = Stage {
        exe,
        lab: &lab,
        origin: &origin,
        image: &image,
        parallel: opts.parallel,
        ready_timeout: Duration::from_secs(60),
        // Ten times what N copies through the uplink take, at least a minute.
        deadline: Duration::from_secs_f64(
            (direct_bound_s(image.bytes(), &opts.site) * 10.0).max(60.0),
        ),
        link_trace: opts.link_trace.as_deref(),
        uplink_mbit: opts.site.rates.origin_mbit,
    };
    let mut outcomes = Vec::new();
    let mut notes = Vec::new();
    // A failed shoal pull's logs are worth keeping; the rest is not.
    let mut keep_scratch = opts.keep_logs;
    let mut shoal_unsupported = None;
    for mode in &opts.modes {
        match mode {
            Mode::Direct => {
                eprintln!("scenario direct: {} hosts pull at once", opts.site.hosts);
                outcomes.push(scenario::run(&stage, Mode::Direct, None).await?);
            }
            Mode::Shoal => {
                if let Some(why) = nodes::unsupported(&opts.shoal_bin) {
                    eprintln!("scenario shoal not run: {why}");
                    notes.push(format!("shoal scenario not run: {why}"));
                    shoal_unsupported = Some(why);
                    continue;
                }
                let logs = scratch.path().join("shoal");
                let outcome = shoal_scenario(&stage, opts, &logs).await;
                match &outcome {
                    Ok(o) if o.failures().next().is_none() => {}
                    Ok(_) => keep_scratch = true,
                    Err(e) => {
                        keep_scratch = true;
                        notes.push(format!("shoal scenario failed: {e:#}"));
                    }
                }
                if keep_scratch {
                    notes.push(format!(
                        "shoal node logs (kept until the next edge_bench run): {}/h*.log",
                        logs.display()
                    ));
                }
                outcomes.extend(outcome.ok());
            }
        }
    }

    let run = Run {
        site: opts.site,
        image: opts.image,
        image_bytes: image.bytes(),
        outcomes: &outcomes,
        notes: &notes,
    };
    let markdown = report::markdown(&run);
    if let Some(path) = &opts.plot {
        super::plot::completion_svg(&run, path)?;
    }
    origin.stop().await;
    lab.teardown();
    if keep_scratch {
        let _ = scratch.keep();
    }
    Ok(BenchResult {
        image_bytes: image.bytes(),
        outcomes,
        notes,
        shoal_unsupported,
        markdown,
    })
}

/// Starts a shoal node on every host, runs the pull, stops the nodes.
async fn shoal_scenario(
    stage: &Stage<'_>,
    opts: &BenchOptions,
    dir: &Path,
) -> anyhow::Result<Outcome> {
    eprintln!("scenario shoal: starting {} shoal nodes", opts.site.hosts);
    let fleet = ShoalFleet::start(
        stage.exe,
        &opts.shoal_bin,
        stage.lab,
        dir,
        &stage.origin.url(),
        opts.settle,
    )
    .await?;
    eprintln!("scenario shoal: {} hosts pull at once", opts.site.hosts);
    let outcome = scenario::run(stage, Mode::Shoal, Some(&fleet)).await;
    fleet.stop().await;
    outcome
}

/// Pushes the image from inside the origin's namespace (where the
/// registry's address is local, so the uplink's counters stay clean).
async fn push_in_origin(
    exe: &Path,
    lab: &Lab,
    origin: &Origin,
    spec: ImageSpec,
) -> anyhow::Result<PushedImage> {
    let out = in_namespace(&lab.origin.ns, exe)
        .args([
            "push",
            "--registry",
            &origin.url(),
            "--image",
            &spec.to_string(),
        ])
        .stdout(Stdio::piped())
        .output()
        .await?;
    anyhow::ensure!(
        out.status.success(),
        "pushing {spec}: {}",
        String::from_utf8_lossy(&out.stderr).trim()
    );
    serde_json::from_slice(&out.stdout).context("the pusher's output")
}
