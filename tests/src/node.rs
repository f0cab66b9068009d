//! A real `shoal daemon` process on a free loopback port with its own data
//! directory, for tests that need the binary as users run it.

use std::fs::OpenOptions;
use std::io::Write;
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use crate::command;
use crate::http;
use crate::paths;
use crate::registry::{StoredBlob, TestRegistry, list_flat_blob_dir};

/// How a node is started.
#[derive(Debug, Clone)]
pub struct NodeOptions {
    /// The `RUST_LOG` filter for the node's log.
    pub log_filter: String,
    /// Contents of a TOML config file passed with `--config`, if any.
    pub config_toml: Option<String>,
    /// Extra environment variables.
    pub env: Vec<(String, String)>,
    /// How long to wait for `GET /v2/` to answer 200.
    pub start_timeout: Duration,
}

impl Default for NodeOptions {
    fn default() -> NodeOptions {
        NodeOptions {
            log_filter: "info".into(),
            config_toml: None,
            env: Vec::new(),
            start_timeout: Duration::from_secs(30),
        }
    }
}

/// How long `stop()` waits for the process to exit after SIGTERM.
pub const STOP_TIMEOUT: Duration = Duration::from_secs(30);

/// A running (or stopped, restartable) `shoal daemon`.
#[derive(Debug)]
pub struct ShoalNode {
    child: Option<Child>,
    addr: SocketAddr,
    data_dir: PathBuf,
    log_path: PathBuf,
    config_path: Option<PathBuf>,
    opts: NodeOptions,
    binary: PathBuf,
    starts: u32,
    // Last, so the directory outlives the process using it.
    _dir: tempfile::TempDir,
}

impl ShoalNode {
    /// Starts a node on a free port with a fresh data directory and waits
    /// until it serves `/v2/`.
    pub fn start(opts: NodeOptions) -> Result<ShoalNode, String> {
        let binary = shoal_binary()?;
        let dir = tempfile::Builder::new()
            .prefix("shoal-node-")
            .tempdir()
            .map_err(|e| format!("creating a temp dir: {e}"))?;
        let data_dir = dir.path().join("data");
        let log_path = dir.path().join("node.log");
        let config_path = match &opts.config_toml {
            Some(toml) => {
                let path = dir.path().join("shoal.toml");
                std::fs::write(&path, toml)
                    .map_err(|e| format!("writing {}: {e}", path.display()))?;
                Some(path)
            }
            None => None,
        };
        let mut node = ShoalNode {
            child: None,
            addr: free_port()?,
            data_dir,
            log_path,
            config_path,
            opts,
            binary,
            starts: 0,
            _dir: dir,
        };
        // A free port can be taken by someone else between probing and the
        // node binding it; try another one then.
        let mut attempts = 0;
        loop {
            attempts += 1;
            match node.spawn_and_wait() {
                Ok(()) => return Ok(node),
                Err(err) => {
                    let _ = node.kill();
                    if attempts >= 3 || !err.contains("in use") {
                        return Err(err);
                    }
                    node.addr = free_port()?;
                }
            }
        }
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }

    /// The process id, while running.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Everything the node has logged so far (all starts).
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log_path)
            .unwrap_or_else(|e| format!("<cannot read {}: {e}>", self.log_path.display()))
    }

    /// SIGKILL: the process dies at once, mid-whatever.
    pub fn kill(&mut self) -> Result<(), String> {
        if let Some(mut child) = self.child.take() {
            child.kill().map_err(|e| format!("SIGKILL shoal: {e}"))?;
            child.wait().map_err(|e| format!("reaping shoal: {e}"))?;
        }
        Ok(())
    }

    /// Sends SIGTERM without waiting (see [`ShoalNode::wait_exit`]).
    pub fn terminate(&mut self) -> Result<(), String> {
        let pid = self.pid().ok_or("the node is not running")?;
        command::run_ok(
            Command::new("kill").args(["-s", "TERM", &pid.to_string()]),
            Duration::from_secs(10),
        )?;
        Ok(())
    }

    /// Waits for the process to exit, killing it after `timeout`.
    pub fn wait_exit(&mut self, timeout: Duration) -> Result<ExitStatus, String> {
        let mut child = self.child.take().ok_or("the node is not running")?;
        let deadline = Instant::now() + timeout;
        loop {
            match child.try_wait() {
                Ok(Some(status)) => return Ok(status),
                Ok(None) if Instant::now() >= deadline => {
                    let _ = child.kill();
                    let _ = child.wait();
                    return Err(format!(
                        "shoal did not exit within {timeout:?}; killed it\n{}",
                        self.log_tail()
                    ));
                }
                Ok(None) => std::thread::sleep(Duration::from_millis(20)),
                Err(e) => {
                    let _ = child.kill();
                    let _ = child.wait();
                    return Err(format!("waiting for shoal: {e}"));
                }
            }
        }
    }

    /// SIGTERM, then waits; the exit must be a clean 0.
    pub fn stop(&mut self) -> Result<(), String> {
        if self.child.is_none() {
            return Ok(());
        }
        self.terminate()?;
        let status = self.wait_exit(STOP_TIMEOUT)?;
        if status.success() {
            Ok(())
        } else {
            Err(format!(
                "shoal exited with {status} after SIGTERM\n{}",
                self.log_tail()
            ))
        }
    }

    /// Starts the node again on the same data directory and port (stopping
    /// it first if it is still running).
    pub fn restart(&mut self) -> Result<(), String> {
        self.stop()?;
        self.spawn_and_wait()
    }

    /// The end of the log, headed for a failure message.
    pub fn log_tail(&self) -> String {
        let log = self.log();
        let lines: Vec<&str> = log.lines().collect();
        let start = lines.len().saturating_sub(60);
        format!(
            "--- shoal log ({}) ---\n{}\n--- end of log ---",
            self.log_path.display(),
            lines[start..].join("\n")
        )
    }

    fn spawn_and_wait(&mut self) -> Result<(), String> {
        self.starts += 1;
        let mut log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log_path)
            .map_err(|e| format!("opening {}: {e}", self.log_path.display()))?;
        writeln!(
            log,
            "=== test harness: start #{} on {} ===",
            self.starts, self.addr
        )
        .map_err(|e| format!("writing {}: {e}", self.log_path.display()))?;
        let stderr = log
            .try_clone()
            .map_err(|e| format!("{}: {e}", self.log_path.display()))?;
        let mut cmd = Command::new(&self.binary);
        cmd.arg("daemon")
            .arg("--data-dir")
            .arg(&self.data_dir)
            .arg("--registry-addr")
            .arg(self.addr.to_string());
        if let Some(config) = &self.config_path {
            cmd.arg("--config").arg(config);
        }
        for var in [
            "SHOAL_CONFIG",
            "SHOAL_DATA_DIR",
            "SHOAL_REGISTRY_ADDR",
            "SHOAL_BOOTSTRAP",
            "SHOAL_NO_P2P",
        ] {
            cmd.env_remove(var);
        }
        // Many nodes run at once on one machine: each takes a free loopback
        // port for peers, and they find each other only when a test says so
        // (options.env may override both).
        cmd.env("SHOAL_P2P_LISTEN", "/ip4/127.0.0.1/tcp/0")
            .env("SHOAL_NO_MDNS", "true")
            // Tests name their upstream explicitly; none reaches Docker Hub.
            .env("SHOAL_NO_UPSTREAM", "true")
            .env("RUST_LOG", &self.opts.log_filter)
            .envs(self.opts.env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(Stdio::from(log))
            .stderr(Stdio::from(stderr));
        let child = cmd
            .spawn()
            .map_err(|e| format!("starting {}: {e}", self.binary.display()))?;
        self.child = Some(child);
        self.wait_ready()
    }

    fn wait_ready(&mut self) -> Result<(), String> {
        let deadline = Instant::now() + self.opts.start_timeout;
        loop {
            if let Some(child) = self.child.as_mut() {
                match child.try_wait() {
                    Ok(Some(status)) => {
                        self.child = None;
                        return Err(format!(
                            "shoal exited with {status} before serving /v2/\n{}",
                            self.log_tail()
                        ));
                    }
                    Ok(None) => {}
                    Err(e) => return Err(format!("checking on shoal: {e}")),
                }
            }
            let last = match http::get_status(self.addr, "/v2/", Duration::from_secs(2)) {
                Ok(200) => return Ok(()),
                Ok(status) => format!("GET /v2/ answered {status}"),
                Err(e) => format!("GET /v2/: {e}"),
            };
            if Instant::now() >= deadline {
                return Err(format!(
                    "shoal on {} not ready within {:?} ({last})\n{}",
                    self.addr,
                    self.opts.start_timeout,
                    self.log_tail()
                ));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl TestRegistry for ShoalNode {
    fn label(&self) -> &'static str {
        "shoal"
    }
    fn addr(&self) -> SocketAddr {
        self.addr
    }
    fn blob_files(&self) -> Result<Vec<StoredBlob>, String> {
        list_flat_blob_dir(&self.data_dir.join("blobs"))
    }
}

impl Drop for ShoalNode {
    fn drop(&mut self) {
        let _ = self.kill();
        if std::thread::panicking() {
            eprintln!("{}", self.log_tail());
        }
    }
}

/// Finds a port nobody listens on right now.
pub fn free_port() -> Result<SocketAddr, String> {
    let listener =
        TcpListener::bind("127.0.0.1:0").map_err(|e| format!("binding 127.0.0.1:0: {e}"))?;
    listener
        .local_addr()
        .map_err(|e| format!("local_addr: {e}"))
}

/// The `shoal` binary next to the test executable (or `SHOAL_BIN`); built
/// with `cargo build -p shoal` once if it is not there.
pub fn shoal_binary() -> Result<PathBuf, String> {
    static BINARY: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    BINARY
        .get_or_init(|| {
            if let Some(path) = std::env::var_os("SHOAL_BIN").filter(|p| !p.is_empty()) {
                return Ok(PathBuf::from(path));
            }
            let profile = paths::profile_dir()?;
            let binary = profile.join("shoal");
            if !binary.is_file() {
                build_shoal(&profile)?;
            }
            if binary.is_file() {
                Ok(binary)
            } else {
                Err(format!(
                    "built shoal but {} does not exist",
                    binary.display()
                ))
            }
        })
        .clone()
}

fn build_shoal(profile: &Path) -> Result<(), String> {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.current_dir(paths::workspace_root())
        .args(["build", "-p", "shoal"])
        .env("CARGO_TARGET_DIR", paths::target_dir()?);
    if profile.file_name().is_some_and(|n| n == "release") {
        cmd.arg("--release");
    }
    eprintln!("shoal binary missing; running {}", command::describe(&cmd));
    command::run_ok(&mut cmd, Duration::from_secs(1200)).map(drop)
}

/// A node with peer-to-peer on, listening on a TCP port the system picks
/// (see [`bootstrap_addr`]), bootstrapping from `bootstrap` (comma-separated
/// multiaddrs) if given.
pub fn start_peer(bootstrap: Option<&str>, log_filter: &str) -> Result<ShoalNode, String> {
    ShoalNode::start(NodeOptions {
        env: peer_env(bootstrap),
        log_filter: log_filter.to_owned(),
        ..NodeOptions::default()
    })
}

/// The environment that makes a node listen for peers on a port the system
/// picks (a port probed free beforehand can be taken by another process's
/// outgoing connection before the node binds it) and bootstrap from
/// `bootstrap`.
pub fn peer_env(bootstrap: Option<&str>) -> Vec<(String, String)> {
    let mut env = vec![(
        "SHOAL_P2P_LISTEN".to_owned(),
        "/ip4/127.0.0.1/tcp/0".to_owned(),
    )];
    if let Some(b) = bootstrap {
        env.push(("SHOAL_BOOTSTRAP".to_owned(), b.to_owned()));
    }
    env
}

/// A node's peer id, as `shoal identity --data-dir` prints it.
pub fn peer_id(node: &ShoalNode) -> Result<String, String> {
    let out = Command::new(shoal_binary()?)
        .args(["identity", "--data-dir"])
        .arg(node.data_dir())
        .output()
        .map_err(|e| format!("running shoal identity: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "shoal identity failed: {}",
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
}

/// The bootstrap multiaddr of a running node: its TCP listen address and
/// peer id, as its `/_shoal/status` reports them (the listener shows up
/// there a moment after the endpoint answers).
pub fn bootstrap_addr(node: &ShoalNode) -> Result<String, String> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let status = node_status(node)?;
        let peer_id = status["peer_id"]
            .as_str()
            .ok_or_else(|| format!("{} reports no peer id: {status}", node.url()))?;
        let tcp = status["p2p_listen"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|a| a.as_str())
            .find(|a| a.contains("/tcp/"));
        if let Some(addr) = tcp {
            return Ok(format!("{addr}/p2p/{peer_id}"));
        }
        if Instant::now() > deadline {
            return Err(format!(
                "{} listens on no TCP address: {status}",
                node.url()
            ));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A counter's value from the node's `/metrics` (0 while it has no line:
/// a labelless counter shows once it counts).
pub fn metric(node: &ShoalNode, name: &str) -> Result<u64, String> {
    let (status, body) = http::get_body(node.addr(), "/metrics", Duration::from_secs(5))
        .map_err(|e| format!("GET {}/metrics: {e}", node.url()))?;
    if status != 200 {
        return Err(format!("GET {}/metrics: {status}", node.url()));
    }
    Ok(String::from_utf8_lossy(&body)
        .lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
        .unwrap_or(0))
}

fn node_status(node: &ShoalNode) -> Result<serde_json::Value, String> {
    let (status, body) = http::get_body(node.addr(), "/_shoal/status", Duration::from_secs(5))
        .map_err(|e| format!("GET {}/_shoal/status: {e}", node.url()))?;
    if status != 200 {
        return Err(format!("GET {}/_shoal/status: {status}", node.url()));
    }
    serde_json::from_slice(&body).map_err(|e| format!("{}/_shoal/status: {e}", node.url()))
}
