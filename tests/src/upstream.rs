//! Debian's `docker-registry` (distribution 2.8) on a free loopback port
//! with filesystem storage in a temp dir: the reference registry the tests
//! are proven against, a pull-through upstream, and the benchmark baseline.

use std::fs::File;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::http;
use crate::node::free_port;
use crate::registry::{StoredBlob, TestRegistry, list_distribution_blob_dir};
use crate::skip::Skip;
use crate::tools::require_tool;

pub const BINARY: &str = "docker-registry";

#[derive(Debug)]
pub struct DockerRegistry {
    child: Option<Child>,
    addr: SocketAddr,
    root: PathBuf,
    log_path: PathBuf,
    // Last, so the directory outlives the process using it.
    dir: tempfile::TempDir,
}

impl DockerRegistry {
    /// Installs `docker-registry` when missing; a Skip if it cannot be had.
    pub fn require() -> Result<(), Skip> {
        require_tool(BINARY, "docker-registry")
    }

    /// Starts a registry and waits until `GET /v2/` answers 200.
    pub fn start() -> Result<DockerRegistry, String> {
        let dir = tempfile::Builder::new()
            .prefix("docker-registry-")
            .tempdir()
            .map_err(|e| format!("creating a temp dir: {e}"))?;
        let root = dir.path().join("storage");
        let log_path = dir.path().join("registry.log");
        let mut registry = DockerRegistry {
            child: None,
            addr: free_port()?,
            root,
            log_path,
            dir,
        };
        // The probed port may be taken before the registry binds it.
        let mut attempts = 0;
        loop {
            attempts += 1;
            registry.spawn()?;
            match registry.wait_ready(Duration::from_secs(20)) {
                Ok(()) => return Ok(registry),
                Err(err) => {
                    registry.kill();
                    if attempts >= 3 || !err.contains("in use") {
                        return Err(err);
                    }
                    registry.addr = free_port()?;
                }
            }
        }
    }

    fn spawn(&mut self) -> Result<(), String> {
        let config = self.dir.path().join("config.yml");
        std::fs::write(&config, config_yaml(self.addr, &self.root))
            .map_err(|e| format!("writing {}: {e}", config.display()))?;
        let log = File::create(&self.log_path)
            .map_err(|e| format!("creating {}: {e}", self.log_path.display()))?;
        let stderr = log
            .try_clone()
            .map_err(|e| format!("{}: {e}", self.log_path.display()))?;
        let child = Command::new(BINARY)
            .arg("serve")
            .arg(&config)
            .stdin(Stdio::null())
            .stdout(Stdio::from(log))
            .stderr(Stdio::from(stderr))
            .spawn()
            .map_err(|e| format!("starting {BINARY}: {e}"))?;
        self.child = Some(child);
        Ok(())
    }

    /// The registry's process id while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// The storage root (`storage.filesystem.rootdirectory`).
    pub fn root(&self) -> &Path {
        &self.root
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log_path).unwrap_or_default()
    }

    /// Stops the registry (an upstream going down); the log stays readable.
    pub fn stop(&mut self) {
        self.kill();
    }

    fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    fn wait_ready(&mut self, timeout: Duration) -> Result<(), String> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(child) = self.child.as_mut()
                && let Ok(Some(status)) = child.try_wait()
            {
                self.child = None;
                return Err(format!(
                    "{BINARY} exited with {status} before serving /v2/:\n{}",
                    self.log()
                ));
            }
            let last = match http::get_status(self.addr, "/v2/", Duration::from_secs(2)) {
                Ok(200) => return Ok(()),
                Ok(status) => format!("GET /v2/ answered {status}"),
                Err(e) => format!("GET /v2/: {e}"),
            };
            if Instant::now() >= deadline {
                return Err(format!(
                    "{BINARY} on {} not ready within {timeout:?} ({last}):\n{}",
                    self.addr,
                    self.log()
                ));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

fn config_yaml(addr: SocketAddr, root: &Path) -> String {
    format!(
        "version: 0.1\n\
         log:\n  level: warn\n\
         storage:\n  filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: true\n  \
         maintenance:\n    uploadpurging:\n      enabled: false\n\
         http:\n  addr: {addr}\n",
        root.display()
    )
}

impl TestRegistry for DockerRegistry {
    fn label(&self) -> &'static str {
        "docker-registry"
    }
    fn addr(&self) -> SocketAddr {
        self.addr
    }
    fn blob_files(&self) -> Result<Vec<StoredBlob>, String> {
        list_distribution_blob_dir(&self.root.join("docker/registry/v2/blobs"))
    }
}

impl Drop for DockerRegistry {
    fn drop(&mut self) {
        self.kill();
        if std::thread::panicking() {
            eprintln!("--- {BINARY} log ---\n{}\n--- end ---", self.log());
        }
    }
}
