//! The edge-site benchmark: N hosts behind one slow uplink pull the same
//! image at once, straight from the origin and through shoal nodes (see
//! `shoal_simulations::edge`). Needs root (network namespaces).
//!
//! ```sh
//! cargo build --release -p shoal -p shoal-simulations
//! sudo target/release/edge_bench run --hosts 8 --origin-mbit 100 --up-mbit 200 \
//!     --down-mbit 200 --image multi-64m --plot docs/img/edge-8.svg
//! sudo target/release/edge_bench self-check   # is the shaping right?
//! sudo target/release/edge_bench smoke        # seconds; what the test suite runs
//! ```
//!
//! Exit status: 0 done (smoke: passed), 1 failed, 77 skipped (this machine
//! cannot make namespaces, or the shoal binary cannot run the scenario),
//! 130 interrupted. Everything made is removed on every exit, Ctrl-C and
//! SIGTERM included; a run that was SIGKILLed is swept by the next.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};
use shoal_simulations::edge::bench::{self, BenchOptions};
use shoal_simulations::edge::client::{self, DEFAULT_PARALLEL, PullTarget};
use shoal_simulations::edge::image::{self, ImageSpec};
use shoal_simulations::edge::lab::Lab;
use shoal_simulations::edge::names::{RunNames, sweep_leftovers};
use shoal_simulations::edge::params::{Rates, STANDARD_MTU, Site};
use shoal_simulations::edge::scenario::Mode;
use shoal_simulations::edge::smoke::{self, Verdict};
use shoal_simulations::edge::{preflight, selfcheck, transfer};
use tokio::signal::unix::{SignalKind, signal};

/// "Skipped", as automake's test drivers spell it.
const EXIT_SKIPPED: u8 = 77;
const EXIT_INTERRUPTED: u8 = 130;

#[derive(Debug, Parser)]
#[command(about = "N hosts behind a slow uplink pull one image: direct vs through shoal")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the benchmark and print a markdown report.
    Run(RunArgs),
    /// A 4-host, 8 MiB run that checks the shoal scenario sends the image
    /// over the uplink about once (what the test suite runs).
    Smoke {
        #[arg(long, env = "SHOAL_BIN", default_value_os_t = default_shoal_bin())]
        shoal_bin: PathBuf,
    },
    /// Measure what the shaped links carry.
    SelfCheck(SiteArgs),
    /// Remove namespaces and directories left by runs that were killed.
    Sweep,
    // What runs inside the namespaces.
    #[command(hide = true)]
    Pull {
        #[arg(long)]
        registry: String,
        #[arg(long)]
        repo: String,
        #[arg(long)]
        tag: String,
        #[arg(long)]
        ns: Option<String>,
        #[arg(long, default_value_t = DEFAULT_PARALLEL)]
        parallel: usize,
        #[arg(long, default_value_t = 60)]
        ready_timeout_s: u64,
    },
    #[command(hide = true)]
    Push {
        #[arg(long)]
        registry: String,
        #[arg(long)]
        image: ImageSpec,
    },
    #[command(hide = true)]
    Probe {
        #[arg(long)]
        registry: String,
        #[arg(long, default_value_t = 30)]
        timeout_s: u64,
    },
    #[command(hide = true)]
    SendBytes {
        #[arg(long)]
        listen: SocketAddr,
        #[arg(long)]
        bytes: u64,
    },
    #[command(hide = true)]
    RecvBytes {
        #[arg(long)]
        connect: SocketAddr,
    },
}

#[derive(Debug, Args)]
struct SiteArgs {
    /// N: hosts at the site.
    #[arg(long, default_value_t = 8)]
    hosts: usize,
    /// U0: the origin's uplink, Mbit/s (both directions).
    #[arg(long, default_value_t = 100.0)]
    origin_mbit: f64,
    /// u: each host's upload, Mbit/s.
    #[arg(long, default_value_t = 200.0)]
    up_mbit: f64,
    /// d: each host's download, Mbit/s.
    #[arg(long, default_value_t = 200.0)]
    down_mbit: f64,
    /// MTU of the hosts' links to the switch (the origin's link stays at
    /// 1500). 9000 (jumbo frames) cuts the packets between hosts sixfold and
    /// softirq's share of this machine's CPU about threefold.
    #[arg(long, default_value_t = STANDARD_MTU, value_parser = clap::value_parser!(u32).range(1280..=65535))]
    lan_mtu: u32,
}

impl SiteArgs {
    fn site(&self) -> Site {
        Site {
            hosts: self.hosts,
            rates: Rates {
                origin_mbit: self.origin_mbit,
                up_mbit: self.up_mbit,
                down_mbit: self.down_mbit,
            },
            lan_mtu: self.lan_mtu,
        }
    }
}

#[derive(Debug, Args)]
struct RunArgs {
    #[command(flatten)]
    site: SiteArgs,
    /// single-<MiB>m (one layer) or multi-<MiB>m (six layers).
    #[arg(long, default_value = "multi-64m")]
    image: ImageSpec,
    /// Scenarios to run, in order.
    #[arg(long, value_delimiter = ',', default_value = "direct,shoal")]
    modes: Vec<ModeArg>,
    /// The shoal binary each host runs.
    #[arg(long, env = "SHOAL_BIN", default_value_os_t = default_shoal_bin())]
    shoal_bin: PathBuf,
    /// Blobs each client fetches at once (Docker's default is 3).
    #[arg(long, default_value_t = DEFAULT_PARALLEL)]
    parallel: usize,
    /// Seconds the shoal nodes get to find each other before the pull.
    #[arg(long, default_value_t = 2.0)]
    settle_s: f64,
    /// Write an SVG of every host's completion time here.
    #[arg(long)]
    plot: Option<PathBuf>,
    /// Append the markdown report to this file too.
    #[arg(long)]
    report: Option<PathBuf>,
    /// Keep the shoal nodes' logs (until the next run) even when every
    /// pull succeeded; the report says where.
    #[arg(long)]
    keep_logs: bool,
    /// Record what every link carried every 20 ms into
    /// `<PREFIX>-<scenario>.csv`, and report how full the uplink was.
    #[arg(long, value_name = "PREFIX")]
    link_trace: Option<PathBuf>,
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
enum ModeArg {
    Direct,
    Shoal,
}

impl From<ModeArg> for Mode {
    fn from(m: ModeArg) -> Mode {
        match m {
            ModeArg::Direct => Mode::Direct,
            ModeArg::Shoal => Mode::Shoal,
        }
    }
}

/// `target/release/shoal` in this workspace.
fn default_shoal_bin() -> PathBuf {
    let simulations = Path::new(env!("CARGO_MANIFEST_DIR"));
    simulations
        .parent()
        .unwrap_or(simulations)
        .join("target/release/shoal")
}

/// How a command ended.
enum Done {
    Ok,
    Skipped(String),
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    let work = async {
        match cli.command {
            Command::Run(args) => benchmark(args).await,
            Command::Smoke { shoal_bin } => smoke_test(shoal_bin).await,
            Command::SelfCheck(args) => self_check(args.site()).await,
            Command::Sweep => {
                for removed in sweep_leftovers() {
                    println!("removed {removed}");
                }
                Ok(Done::Ok)
            }
            Command::Pull {
                registry,
                repo,
                tag,
                ns,
                parallel,
                ready_timeout_s,
            } => {
                let target = PullTarget {
                    registry,
                    repo,
                    tag,
                    ns,
                    parallel,
                };
                client::serve(target, Duration::from_secs(ready_timeout_s))
                    .await
                    .map(|()| Done::Ok)
            }
            Command::Push { registry, image } => {
                client::wait_ready(&registry, Duration::from_secs(30)).await?;
                let pushed = image::push(&registry, image).await?;
                println!("{}", serde_json::to_string(&pushed)?);
                Ok(Done::Ok)
            }
            Command::Probe {
                registry,
                timeout_s,
            } => client::wait_ready(&registry, Duration::from_secs(timeout_s))
                .await
                .map(|()| Done::Ok),
            Command::SendBytes { listen, bytes } => {
                transfer::send(listen, bytes).await.map(|()| Done::Ok)
            }
            Command::RecvBytes { connect } => {
                let received = transfer::receive(connect).await?;
                println!("{}", serde_json::to_string(&received)?);
                Ok(Done::Ok)
            }
        }
    };
    // On a signal the work future is dropped: the lab, the origin and the
    // shoal nodes remove themselves as they go.
    let result = tokio::select! {
        r = work => r,
        name = interrupted() => {
            eprintln!("interrupted by {name}; cleaned up");
            return ExitCode::from(EXIT_INTERRUPTED);
        }
    };
    match result {
        Ok(Done::Ok) => ExitCode::SUCCESS,
        Ok(Done::Skipped(why)) => {
            println!("skipped: {why}");
            ExitCode::from(EXIT_SKIPPED)
        }
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Resolves on the first SIGINT, SIGTERM or SIGHUP.
async fn interrupted() -> &'static str {
    let (Ok(mut int), Ok(mut term), Ok(mut hup)) = (
        signal(SignalKind::interrupt()),
        signal(SignalKind::terminate()),
        signal(SignalKind::hangup()),
    ) else {
        eprintln!(
            "warning: cannot install signal handlers; an interrupted run is swept by the next"
        );
        return std::future::pending().await;
    };
    tokio::select! {
        _ = int.recv() => "SIGINT",
        _ = term.recv() => "SIGTERM",
        _ = hup.recv() => "SIGHUP",
    }
}

/// Sweeps what killed runs left, then checks the machine can run this;
/// the names for this run, or why not.
fn prepare() -> Result<RunNames, String> {
    for removed in sweep_leftovers() {
        eprintln!("removed leftover {removed}");
    }
    let names = RunNames::for_this_process();
    preflight::check(&names)?;
    Ok(names)
}

fn this_exe() -> anyhow::Result<PathBuf> {
    std::env::current_exe().map_err(|e| anyhow::anyhow!("finding this program: {e}"))
}

async fn benchmark(args: RunArgs) -> anyhow::Result<Done> {
    let names = match prepare() {
        Ok(names) => names,
        Err(why) => return Ok(Done::Skipped(why)),
    };
    let opts = BenchOptions {
        site: args.site.site(),
        image: args.image,
        modes: args.modes.into_iter().map(Mode::from).collect(),
        shoal_bin: args.shoal_bin,
        parallel: args.parallel,
        settle: Duration::from_secs_f64(args.settle_s),
        plot: args.plot,
        keep_logs: args.keep_logs,
        link_trace: args.link_trace,
    };
    let result = bench::run(&this_exe()?, names, &opts).await?;
    println!("{}", result.markdown);
    if let Some(path) = &args.report {
        append(path, &result.markdown)?;
    }
    if let Some(path) = &opts.plot {
        println!("plot: {}", path.display());
    }
    Ok(Done::Ok)
}

fn append(path: &Path, text: &str) -> anyhow::Result<()> {
    use std::io::Write;
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .map_err(|e| anyhow::anyhow!("opening {}: {e}", path.display()))?;
    writeln!(file, "{text}").map_err(|e| anyhow::anyhow!("writing {}: {e}", path.display()))
}

async fn smoke_test(shoal_bin: PathBuf) -> anyhow::Result<Done> {
    let names = match prepare() {
        Ok(names) => names,
        Err(why) => return Ok(Done::Skipped(why)),
    };
    let result = bench::run(&this_exe()?, names, &smoke::options(shoal_bin)).await?;
    println!("{}", result.markdown);
    match smoke::verdict(&result) {
        Verdict::Passed(line) => {
            println!("passed: {line}");
            Ok(Done::Ok)
        }
        Verdict::Skipped(why) => Ok(Done::Skipped(why)),
        Verdict::Failed(why) => anyhow::bail!("smoke failed: {why}"),
    }
}

async fn self_check(site: Site) -> anyhow::Result<Done> {
    let names = match prepare() {
        Ok(names) => names,
        Err(why) => return Ok(Done::Skipped(why)),
    };
    let site = Site {
        hosts: site.hosts.max(2),
        ..site
    };
    let lab = Lab::build(names, &site)?;
    let checks = selfcheck::run(&this_exe()?, &lab, &site).await?;
    drop(lab);
    println!(
        "| path | shaped to Mbit/s | MTU | goodput Mbit/s | goodput / (rate × payload share) |"
    );
    println!("|---|---|---|---|---|");
    for c in &checks {
        println!(
            "| {} | {} | {} | {:.1} | {:.3}{} |",
            c.label,
            c.rate_mbit,
            c.mtu,
            c.measured.mbit_per_s(),
            c.ratio(),
            if c.ok() { "" } else { " **off**" }
        );
    }
    anyhow::ensure!(
        checks.iter().all(|c| c.ok()),
        "a link is not shaped to its rate"
    );
    Ok(Done::Ok)
}
