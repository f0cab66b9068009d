//! Driving the Docker Engine: is it usable here, pulls, inspection, runs,
//! and removing what a test pulled.

use std::net::TcpListener;
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use crate::command::{CmdOutput, on_path, run, run_ok};
use crate::skip::Skip;

const PULL_TIMEOUT: Duration = Duration::from_secs(300);

/// Ok when the Docker Engine answers and can reach this host's loopback
/// (the registries under test listen on 127.0.0.1). Checked once.
pub fn require_engine() -> Result<(), Skip> {
    static CHECKED: OnceLock<Result<(), Skip>> = OnceLock::new();
    CHECKED
        .get_or_init(|| {
            engine_answers()?;
            engine_reaches_loopback()
        })
        .clone()
}

fn engine_answers() -> Result<(), Skip> {
    if !on_path("docker") {
        return Err(Skip::new("no docker client on PATH"));
    }
    match run(Command::new("docker").arg("info"), Duration::from_secs(30)) {
        Ok(out) if out.success() => Ok(()),
        Ok(out) => Err(Skip::new(format!(
            "`docker info` failed: {}",
            out.stderr.trim()
        ))),
        Err(err) => Err(Skip::new(format!("`docker info`: {err}"))),
    }
}

/// Asks the Engine to pull from a port we listen on and watches whether a
/// connection arrives. The Engine may live in another network namespace,
/// where 127.0.0.1 is not this host.
fn engine_reaches_loopback() -> Result<(), Skip> {
    let listener = TcpListener::bind("127.0.0.1:0")
        .map_err(|e| Skip::new(format!("cannot bind a probe port: {e}")))?;
    let port = listener
        .local_addr()
        .map_err(|e| Skip::new(format!("probe port: {e}")))?
        .port();
    listener
        .set_nonblocking(true)
        .map_err(|e| Skip::new(format!("probe port: {e}")))?;
    let reached = Arc::new(AtomicBool::new(false));
    let stop = Arc::new(AtomicBool::new(false));
    let watcher = {
        let (reached, stop) = (reached.clone(), stop.clone());
        std::thread::spawn(move || {
            let deadline = Instant::now() + Duration::from_secs(60);
            while !stop.load(Ordering::Relaxed) && Instant::now() < deadline {
                match listener.accept() {
                    // Close at once: the pull fails, which is all we need.
                    Ok(_) => reached.store(true, Ordering::Relaxed),
                    Err(_) => std::thread::sleep(Duration::from_millis(20)),
                }
            }
        })
    };
    let probe = format!("127.0.0.1:{port}/shoal-probe/loopback:latest");
    let out = run(
        Command::new("docker").args(["pull", &probe]),
        Duration::from_secs(45),
    );
    stop.store(true, Ordering::Relaxed);
    let _ = watcher.join();
    if reached.load(Ordering::Relaxed) {
        return Ok(());
    }
    let detail = match out {
        Ok(out) => out.stderr.trim().to_owned(),
        Err(err) => err.to_string(),
    };
    Err(Skip::new(format!(
        "the Docker Engine does not reach this host's 127.0.0.1 (it runs in another network namespace?): `docker pull {probe}` never connected: {detail}"
    )))
}

/// `docker pull`; any failure is an error with Docker's output.
pub fn pull(image: &str) -> Result<(), String> {
    run_ok(Command::new("docker").args(["pull", image]), PULL_TIMEOUT).map(drop)
}

/// The image id (`sha256:` of the config) of a local image.
pub fn image_id(image: &str) -> Result<String, String> {
    let out = run_ok(
        Command::new("docker").args(["image", "inspect", "--format", "{{.Id}}", image]),
        Duration::from_secs(30),
    )?;
    Ok(out.stdout.trim().to_owned())
}

/// The `RepoDigests` of a local image (`name@sha256:...`).
pub fn repo_digests(image: &str) -> Result<Vec<String>, String> {
    let out = run_ok(
        Command::new("docker").args([
            "image",
            "inspect",
            "--format",
            "{{json .RepoDigests}}",
            image,
        ]),
        Duration::from_secs(30),
    )?;
    serde_json::from_str(out.stdout.trim())
        .map_err(|e| format!("parsing RepoDigests {:?}: {e}", out.stdout))
}

/// `docker run --rm IMAGE ARGS...`, returning the raw output.
pub fn run_container(image: &str, args: &[&str]) -> Result<CmdOutput, String> {
    run(
        Command::new("docker")
            .args(["run", "--rm", "--network", "none", image])
            .args(args),
        Duration::from_secs(120),
    )
    .map_err(|e| e.to_string())
}

/// `docker run` exits 125 when the Engine itself failed (no runtime, no
/// cgroups, mounts refused): the image is not to blame.
pub fn is_engine_failure(out: &CmdOutput) -> bool {
    out.status.code() == Some(125)
}

/// Removes the named images when dropped (also when the test panics).
#[derive(Debug, Default)]
pub struct PulledImages {
    names: Vec<String>,
}

impl PulledImages {
    pub fn new() -> PulledImages {
        PulledImages::default()
    }

    /// Remembers `name` for removal and returns it.
    pub fn track(&mut self, name: impl Into<String>) -> String {
        let name = name.into();
        self.names.push(name.clone());
        name
    }
}

impl Drop for PulledImages {
    fn drop(&mut self) {
        if self.names.is_empty() {
            return;
        }
        let mut cmd = Command::new("docker");
        cmd.args(["rmi", "--force"]).args(&self.names);
        match run(&mut cmd, Duration::from_secs(60)) {
            Ok(out) if out.success() => {}
            Ok(out) => eprintln!("docker rmi {:?}: {}", self.names, out.stderr.trim()),
            Err(err) => eprintln!("docker rmi {:?}: {err}", self.names),
        }
    }
}
