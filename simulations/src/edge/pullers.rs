//! Starting one pull client per host and releasing them all at once.

use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::Context;
use tokio::io::{AsyncWriteExt, BufReader, Lines};
use tokio::process::{Child, ChildStdin, ChildStdout};
use tokio::time::timeout;

use super::client::{GO, PullReport, PullTarget, READY};
use super::cmd::in_namespace;
use super::lab::Host;

/// How far ahead of "now" the common start is set, so every client has
/// read its go line before the moment comes.
const START_LEAD: Duration = Duration::from_millis(300);

#[derive(Debug)]
struct Puller {
    host: usize,
    // Held so the client dies with the harness (kill on drop).
    child: Child,
    stdin: ChildStdin,
    stdout: Lines<BufReader<ChildStdout>>,
}

/// Clients that all answered `ready`.
#[derive(Debug)]
pub struct Pullers {
    pullers: Vec<Puller>,
}

impl Pullers {
    /// Starts `edge_bench pull` in every host's namespace and waits until
    /// each reports ready.
    pub async fn start(
        exe: &Path,
        hosts: &[Host],
        target_for: impl Fn(&Host) -> PullTarget,
        ready_timeout: Duration,
    ) -> anyhow::Result<Pullers> {
        let mut pullers = Vec::new();
        for host in hosts {
            let t = target_for(host);
            let mut cmd = in_namespace(&host.ns, exe);
            cmd.args([
                "pull",
                "--registry",
                &t.registry,
                "--repo",
                &t.repo,
                "--tag",
                &t.tag,
            ])
            .args(["--parallel", &t.parallel.to_string()])
            .args(["--ready-timeout-s", &ready_timeout.as_secs().to_string()]);
            if let Some(ns) = &t.ns {
                cmd.args(["--ns", ns]);
            }
            let mut child = cmd
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .spawn()
                .context("starting a pull client")?;
            let stdin = child.stdin.take().context("client stdin")?;
            let stdout = child.stdout.take().context("client stdout")?;
            pullers.push(Puller {
                host: host.index,
                child,
                stdin,
                stdout: tokio::io::AsyncBufReadExt::lines(BufReader::new(stdout)),
            });
        }
        for p in &mut pullers {
            let line = timeout(ready_timeout + Duration::from_secs(5), p.stdout.next_line())
                .await
                .with_context(|| format!("host {} not ready in time", p.host))??;
            anyhow::ensure!(
                line.as_deref() == Some(READY),
                "host {}'s client said {line:?} instead of {READY}",
                p.host
            );
        }
        Ok(Pullers { pullers })
    }

    /// The clients' process ids, in host order: one process in each host's
    /// namespace (0 for one that already exited).
    pub fn pids(&self) -> Vec<u32> {
        self.pullers
            .iter()
            .map(|p| p.child.id().unwrap_or(0))
            .collect()
    }

    /// Tells every client to start at the same instant, shortly from now;
    /// returns that instant.
    pub async fn go(&mut self) -> anyhow::Result<std::time::Instant> {
        let at = std::time::Instant::now() + START_LEAD;
        let start = SystemTime::now() + START_LEAD;
        let ms = start.duration_since(UNIX_EPOCH)?.as_millis();
        for p in &mut self.pullers {
            p.stdin.write_all(format!("{GO} {ms}\n").as_bytes()).await?;
            p.stdin.flush().await?;
        }
        Ok(at)
    }

    /// Every client's report, in host order. A client that has not
    /// reported within `deadline` is killed and reported as failed.
    pub async fn finish(self, deadline: Duration) -> Vec<PullReport> {
        let until = tokio::time::Instant::now() + deadline;
        let mut reports = Vec::new();
        for mut p in self.pullers {
            let line = tokio::time::timeout_at(until, p.stdout.next_line()).await;
            let report = match line {
                Ok(Ok(Some(json))) => serde_json::from_str(&json)
                    .unwrap_or_else(|e| failed(format!("unreadable report {json:?}: {e}"))),
                Ok(Ok(None)) => failed("the client exited without a report".into()),
                Ok(Err(e)) => failed(format!("reading the client's report: {e}")),
                Err(_) => failed(format!("no report within {deadline:?}")),
            };
            reports.push(report);
        }
        reports
    }
}

fn failed(error: String) -> PullReport {
    PullReport {
        finish_s: None,
        bytes: 0,
        blobs: 0,
        cpu_s: 0.0,
        error: Some(error),
    }
}
