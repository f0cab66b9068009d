//! The servers a benchmark compares, each as a child process on a free
//! loopback port with its own temp directory, killed on drop.

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::Context;

fn free_port() -> anyhow::Result<u16> {
    let listener = TcpListener::bind("127.0.0.1:0").context("finding a free port")?;
    Ok(listener.local_addr()?.port())
}

/// Polls `GET <url>/v2/` until it answers, or fails after `timeout`.
async fn wait_ready(child: &mut Child, url: &str, timeout: Duration) -> anyhow::Result<()> {
    let client = reqwest::Client::new();
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(status) = child.try_wait()? {
            anyhow::bail!("server exited early with {status}");
        }
        if let Ok(resp) = client.get(format!("{url}/v2/")).send().await
            && (resp.status().is_success() || resp.status().as_u16() == 401)
        {
            return Ok(());
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "{url} not ready after {timeout:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A `shoal daemon` built next to this binary (`cargo build --release -p shoal`).
#[derive(Debug)]
pub struct ShoalProcess {
    child: Child,
    port: u16,
    _dir: tempfile::TempDir,
}

impl ShoalProcess {
    pub async fn start() -> anyhow::Result<ShoalProcess> {
        let exe = std::env::current_exe()?;
        let bin: PathBuf = exe
            .parent()
            .map(|d| d.join("shoal"))
            .context("locating the shoal binary")?;
        anyhow::ensure!(
            bin.exists(),
            "{} not found: build it with `cargo build --release -p shoal`",
            bin.display()
        );
        let dir = tempfile::tempdir()?;
        let port = free_port()?;
        let mut child = Command::new(&bin)
            .args(["daemon", "--data-dir"])
            .arg(dir.path().join("data"))
            .args(["--registry-addr", &format!("127.0.0.1:{port}")])
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .spawn()
            .with_context(|| format!("spawning {}", bin.display()))?;
        wait_ready(
            &mut child,
            &format!("http://127.0.0.1:{port}"),
            Duration::from_secs(20),
        )
        .await?;
        Ok(ShoalProcess {
            child,
            port,
            _dir: dir,
        })
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }
}

impl ShoalProcess {
    /// CPU time the server process has used so far (all threads).
    pub fn cpu_time(&self) -> anyhow::Result<std::time::Duration> {
        cpu_time_of(self.child.id())
    }
}

impl Drop for ShoalProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Debian's `docker-registry` (distribution 2.8) with filesystem storage.
#[derive(Debug)]
pub struct DockerRegistryProcess {
    child: Child,
    port: u16,
    _dir: tempfile::TempDir,
}

impl DockerRegistryProcess {
    pub async fn start() -> anyhow::Result<DockerRegistryProcess> {
        let bin = "/usr/bin/docker-registry";
        anyhow::ensure!(
            std::path::Path::new(bin).exists(),
            "{bin} not found: apt-get install -y docker-registry"
        );
        let dir = tempfile::tempdir()?;
        let port = free_port()?;
        let config = dir.path().join("config.yml");
        std::fs::write(
            &config,
            format!(
                "version: 0.1\nlog:\n  level: error\n  accesslog:\n    disabled: true\nstorage:\n  filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: true\nhttp:\n  addr: 127.0.0.1:{port}\n",
                dir.path().join("data").display()
            ),
        )?;
        let mut child = Command::new(bin)
            .arg("serve")
            .arg(&config)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context("spawning docker-registry")?;
        wait_ready(
            &mut child,
            &format!("http://127.0.0.1:{port}"),
            Duration::from_secs(20),
        )
        .await?;
        Ok(DockerRegistryProcess {
            child,
            port,
            _dir: dir,
        })
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }
}

impl DockerRegistryProcess {
    /// CPU time the server process has used so far (all threads).
    pub fn cpu_time(&self) -> anyhow::Result<std::time::Duration> {
        cpu_time_of(self.child.id())
    }
}

impl Drop for DockerRegistryProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// User + system CPU time of a process, from `/proc/<pid>/stat` (in clock
/// ticks of 1/100 s, the value of `CLK_TCK` on Linux).
fn cpu_time_of(pid: u32) -> anyhow::Result<Duration> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    // Fields after the command name, which is in parentheses and may contain spaces.
    let rest = stat
        .rsplit_once(')')
        .map(|(_, r)| r)
        .context("parsing /proc stat")?;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of the whole line: 11 and 12 here.
    let ticks: u64 = fields
        .get(11..13)
        .context("short /proc stat")?
        .iter()
        .map(|f| f.parse::<u64>().unwrap_or(0))
        .sum();
    Ok(Duration::from_millis(ticks * 10))
}
