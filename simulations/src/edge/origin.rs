//! The origin: Debian's `docker-registry` in the origin namespace,
//! listening on the origin's address, storage in the run's scratch dir.

use std::fs::File;
use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use anyhow::Context;
use tokio::process::Child;

use super::cmd::{in_namespace, wait_ready_in};
use super::lab::Lab;
use crate::proc_stats::cpu_time;

pub const PORT: u16 = 5000;
const READY_TIMEOUT: Duration = Duration::from_secs(30);

#[derive(Debug)]
pub struct Origin {
    // Held so the registry dies with the harness (kill on drop).
    child: Child,
    pid: u32,
    /// `host:port`, as a mirror's `ns=` parameter names it.
    pub authority: String,
}

impl Origin {
    pub async fn start(exe: &Path, lab: &Lab, dir: &Path) -> anyhow::Result<Origin> {
        let authority = format!("{}:{PORT}", lab.origin.ip);
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        let config = dir.join("config.yml");
        std::fs::write(&config, config_yaml(&authority, &dir.join("storage")))
            .with_context(|| format!("writing {}", config.display()))?;
        let log_path = dir.join("registry.log");
        let log =
            File::create(&log_path).with_context(|| format!("creating {}", log_path.display()))?;
        let child = in_namespace(&lab.origin.ns, Path::new("docker-registry"))
            .arg("serve")
            .arg(&config)
            .stdout(Stdio::from(log.try_clone()?))
            .stderr(Stdio::from(log))
            .spawn()
            .context("starting docker-registry")?;
        let pid = child.id().context("docker-registry exited at once")?;
        let origin = Origin {
            child,
            pid,
            authority,
        };
        wait_ready_in(exe, &lab.origin.ns, &origin.url(), READY_TIMEOUT)
            .await
            .with_context(|| format!("docker-registry (log: {})", log_path.display()))?;
        Ok(origin)
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.authority)
    }

    /// The registry's process id: a process in the origin's namespace.
    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// The registry's CPU time so far.
    pub fn cpu_s(&self) -> f64 {
        cpu_time(self.pid).map(|d| d.as_secs_f64()).unwrap_or(0.0)
    }

    pub async fn stop(mut self) {
        let _ = self.child.kill().await;
    }
}

fn config_yaml(addr: &str, storage: &Path) -> String {
    format!(
        "version: 0.1\n\
         log:\n  level: warn\n\
         storage:\n  filesystem:\n    rootdirectory: {}\n  \
         maintenance:\n    uploadpurging:\n      enabled: false\n\
         http:\n  addr: {addr}\n",
        storage.display()
    )
}
