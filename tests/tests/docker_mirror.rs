//! Real clients configured the way docs/docker.md, docs/containerd.md and
//! docs/podman.md say, pulling through a shoal node that mirrors an
//! upstream registry (see `mirror_support`).
//!
//! Each client runs privately: a dockerd, a containerd and podman with
//! their own roots, sockets and config files in a temp dir, so the
//! machine's engine and its /etc are never touched. A client that cannot
//! start here makes its test skip with the reason.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use shoal_tests::command::{CmdOutput, on_path, run, run_ok};
use shoal_tests::images::{TestImage, test_images};
use shoal_tests::skopeo::{self, Format};
use shoal_tests::tools::require_tool;
use shoal_tests::{DockerRegistry, Must, ShoalNode, Skip, TestRegistry, require};

use crate::mirror_support::{
    ALIAS, assert_node_holds, assert_pulled_through, bytes_from_upstream, mirror_node,
    upstream_with_images,
};

const START_TIMEOUT: Duration = Duration::from_secs(60);
const PULL_TIMEOUT: Duration = Duration::from_secs(300);
const STOP_TIMEOUT: Duration = Duration::from_secs(30);

/// The Docker Engine only sends Docker Hub names to its `registry-mirrors`:
/// the node is the engine's mirror and the test registry is the node's
/// default upstream, standing in for Docker Hub. Other registries are
/// reached by prefixed names through the node's alias.
#[test]
fn docker_engine_pulls_through_shoal_as_its_registry_mirror() {
    require!(skopeo::require());
    require!(DockerRegistry::require());
    let images = require!(test_images());
    require!(require_binaries(&["dockerd", "docker"]));
    let upstream = upstream_with_images(Format::V2s2);
    let node = mirror_node(&upstream.registry);
    let engine = require!(PrivateEngine::start(node.addr()));

    // A Docker Hub name: the engine asks its mirror for
    // /v2/library/mirror-demo/manifests/v1, with no ns.
    engine.docker_ok(&["pull", "mirror-demo:v1"]);
    engine.assert_image(
        "mirror-demo:v1",
        &images.app_a,
        "mirror-demo",
        &upstream.hub_manifest,
    );
    let before = assert_pulled_through(&node, &images.app_a, "docker (registry-mirrors)");

    // Another registry, by a prefixed name naming the node's alias.
    let repo = format!("{}/{ALIAS}/team/app", node.addr());
    let prefixed = format!("{repo}:v2");
    engine.docker_ok(&["pull", &prefixed]);
    engine.assert_image(&prefixed, &images.app_b, &repo, &upstream.team_manifest);
    let top = images.app_b.digests.layers.last().must("app-b has layers");
    let more = bytes_from_upstream(&node) - before;
    assert!(
        more >= top.size,
        "the prefixed pull brought {more} bytes from the upstream, less than its own layer ({})",
        top.size
    );
    assert_node_holds(&node, &images.app_b.digests.referenced());

    // Running what was pulled needs a runtime, which this machine may not
    // allow a second engine to use: reported, not failed.
    let out = engine.docker(&[
        "run",
        "--rm",
        "--network",
        "none",
        "mirror-demo:v1",
        "/bin/cat",
        "/a.txt",
    ]);
    if out.success() {
        assert_eq!(out.stdout, "a\n", "docker run printed the wrong thing");
        println!("docker run on the pulled image printed {:?}", out.stdout);
    } else {
        println!(
            "docker run on the private engine failed here ({}); the pulls passed, the run is not checked: {}",
            out.status,
            out.stderr.trim()
        );
    }
}

/// containerd with a hosts.toml naming the node as a mirror for the alias:
/// containerd sends `?ns=upstream.test`, which the node maps to the alias.
#[test]
fn containerd_pulls_through_shoal_with_a_hosts_toml() {
    require!(skopeo::require());
    require!(DockerRegistry::require());
    let images = require!(test_images());
    require!(require_tool("containerd", "containerd"));
    require!(require_binaries(&["ctr"]));
    let upstream = upstream_with_images(Format::Oci);
    let node = mirror_node(&upstream.registry);
    let containerd = require!(PrivateContainerd::start());

    // The file docs/containerd.md shows, for the alias.
    let hosts_dir = containerd.dir.path().join("certs.d");
    let host_dir = hosts_dir.join(ALIAS);
    std::fs::create_dir_all(&host_dir).must("create the hosts dir");
    let hosts_toml = format!(
        "server = \"{}\"\n\n[host.\"http://{}\"]\n  capabilities = [\"pull\", \"resolve\"]\n",
        upstream.registry.url(),
        node.addr()
    );
    std::fs::write(host_dir.join("hosts.toml"), hosts_toml).must("write hosts.toml");

    let reference = format!("{ALIAS}/team/app:v2");
    containerd.ctr_ok(&[
        "images",
        "pull",
        "--snapshotter",
        "native",
        "--hosts-dir",
        &path_arg(&hosts_dir),
        &reference,
    ]);
    let listed = containerd.ctr_ok(&["images", "ls"]).stdout;
    let line = listed
        .lines()
        .find(|l| l.starts_with(&format!("{reference} ")))
        .unwrap_or_else(|| panic!("ctr images ls does not list {reference}:\n{listed}"));
    assert!(
        line.contains(&upstream.team_manifest),
        "containerd holds {reference} with another digest than {}: {line}",
        upstream.team_manifest
    );
    assert_pulled_through(&node, &images.app_b, "ctr (hosts.toml)");
    assert_node_holds(&node, std::slice::from_ref(&upstream.team_manifest));
}

/// podman with registries.conf: a `[[registry.mirror]]` for Docker Hub
/// names (the default upstream) and one with the alias as path prefix for
/// another registry.
#[test]
fn podman_pulls_through_shoal_with_registries_conf() {
    require!(skopeo::require());
    require!(DockerRegistry::require());
    let images = require!(test_images());
    require!(require_tool("podman", "podman"));
    let upstream = upstream_with_images(Format::Oci);
    let node = mirror_node(&upstream.registry);
    let podman = Podman::new(&node, &upstream.registry);

    // Docker Hub: requests go to the node as /v2/library/mirror-demo/...
    let hub = "docker.io/library/mirror-demo:v1";
    podman.pull_ok(hub);
    podman.assert_image(hub, &images.app_a, &upstream.hub_manifest);
    assert_pulled_through(&node, &images.app_a, "podman (docker.io mirror)");

    // Another registry: the mirror location carries the host as a prefix.
    let reference = format!("{ALIAS}/team/app:v2");
    podman.pull_ok(&reference);
    podman.assert_image(&reference, &images.app_b, &upstream.team_manifest);
    assert_node_holds(
        &node,
        &[
            upstream.team_manifest.clone(),
            images.app_b.digests.layers[1].digest.clone(),
        ],
    );
}

fn require_binaries(binaries: &[&str]) -> Result<(), Skip> {
    match binaries.iter().find(|b| !on_path(b)) {
        Some(missing) => Err(Skip::new(format!("no `{missing}` on PATH"))),
        None => Ok(()),
    }
}

fn path_arg(path: &Path) -> String {
    path.to_string_lossy().into_owned()
}

/// A daemon child with a log file, stopped by SIGTERM (SIGKILL after
/// [`STOP_TIMEOUT`]).
#[derive(Debug)]
struct Daemon {
    name: &'static str,
    child: Option<Child>,
    log_path: PathBuf,
}

impl Daemon {
    fn spawn(name: &'static str, cmd: &mut Command, log_path: PathBuf) -> Result<Daemon, Skip> {
        let log = std::fs::File::create(&log_path)
            .map_err(|e| Skip::new(format!("creating {}: {e}", log_path.display())))?;
        let stderr = log
            .try_clone()
            .map_err(|e| Skip::new(format!("{}: {e}", log_path.display())))?;
        let child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::from(log))
            .stderr(Stdio::from(stderr))
            .spawn()
            .map_err(|e| Skip::new(format!("cannot start {name}: {e}")))?;
        Ok(Daemon {
            name,
            child: Some(child),
            log_path,
        })
    }

    fn log_tail(&self) -> String {
        let log = std::fs::read_to_string(&self.log_path).unwrap_or_default();
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(20)..].join("\n")
    }

    /// Polls `ready` until it holds; a Skip with the log when the daemon
    /// exits or does not get ready in time.
    fn wait_ready(&mut self, ready: impl Fn() -> bool) -> Result<(), Skip> {
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            if ready() {
                return Ok(());
            }
            if let Some(child) = self.child.as_mut()
                && let Ok(Some(status)) = child.try_wait()
            {
                self.child = None;
                return Err(Skip::new(format!(
                    "a private {} cannot run here: it exited with {status}: {}",
                    self.name,
                    self.log_tail()
                )));
            }
            if Instant::now() >= deadline {
                return Err(Skip::new(format!(
                    "a private {} did not get ready within {START_TIMEOUT:?}: {}",
                    self.name,
                    self.log_tail()
                )));
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn stop(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        let _ = Command::new("kill")
            .args(["-s", "TERM", &child.id().to_string()])
            .status();
        let deadline = Instant::now() + STOP_TIMEOUT;
        while Instant::now() < deadline {
            if let Ok(Some(_)) = child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        eprintln!(
            "{} did not stop within {STOP_TIMEOUT:?}; killing it",
            self.name
        );
        let _ = child.kill();
        let _ = child.wait();
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        self.stop();
        if std::thread::panicking() {
            eprintln!(
                "--- {} log ---\n{}\n--- end ---",
                self.name,
                self.log_tail()
            );
        }
    }
}

/// A temp dir for a private daemon, holding its config file `name`.
fn daemon_dir(
    prefix: &str,
    name: &str,
    config: &str,
) -> Result<(tempfile::TempDir, PathBuf), Skip> {
    let dir = tempfile::Builder::new()
        .prefix(prefix)
        .tempdir()
        .map_err(|e| Skip::new(format!("creating a temp dir: {e}")))?;
    let path = dir.path().join(name);
    std::fs::write(&path, config)
        .map_err(|e| Skip::new(format!("writing {}: {e}", path.display())))?;
    Ok((dir, path))
}

/// A dockerd of the test's own with the node as its registry mirror: its
/// own data root, exec root, socket and (empty) daemon.json, no bridge and
/// no iptables rules, the vfs storage driver (works on any file system).
#[derive(Debug)]
struct PrivateEngine {
    daemon: Daemon,
    socket: PathBuf,
    // Last, so the directory outlives the daemon.
    dir: tempfile::TempDir,
}

impl PrivateEngine {
    fn start(mirror: SocketAddr) -> Result<PrivateEngine, Skip> {
        let (dir, config) = daemon_dir("shoal-dockerd-", "daemon.json", "{}\n")?;
        let socket = dir.path().join("docker.sock");
        let mut cmd = Command::new("dockerd");
        cmd.arg("--config-file")
            .arg(&config)
            .arg("--data-root")
            .arg(dir.path().join("root"))
            .arg("--exec-root")
            .arg(dir.path().join("exec"))
            .arg("--pidfile")
            .arg(dir.path().join("docker.pid"))
            .arg("-H")
            .arg(format!("unix://{}", socket.display()))
            .arg("--registry-mirror")
            .arg(format!("http://{mirror}"))
            .arg("--insecure-registry")
            .arg(mirror.to_string())
            .args([
                "--bridge=none",
                "--iptables=false",
                "--ip6tables=false",
                "--storage-driver=vfs",
            ]);
        let mut daemon = Daemon::spawn("dockerd", &mut cmd, dir.path().join("dockerd.log"))?;
        let probe_socket = socket.clone();
        daemon.wait_ready(|| {
            run(
                docker_command(&probe_socket, dir.path()).arg("info"),
                Duration::from_secs(10),
            )
            .is_ok_and(|out| out.success())
        })?;
        Ok(PrivateEngine {
            daemon,
            socket,
            dir,
        })
    }

    fn docker(&self, args: &[&str]) -> CmdOutput {
        run(
            docker_command(&self.socket, self.dir.path()).args(args),
            PULL_TIMEOUT,
        )
        .must("run docker")
    }

    fn docker_ok(&self, args: &[&str]) -> CmdOutput {
        run_ok(
            docker_command(&self.socket, self.dir.path()).args(args),
            PULL_TIMEOUT,
        )
        .unwrap_or_else(|e| {
            panic!(
                "{e}\n--- private dockerd log ---\n{}",
                self.daemon.log_tail()
            )
        })
    }

    /// The image id is the config digest, whatever the manifest format;
    /// `RepoDigests` holds `repo@manifest`.
    fn assert_image(&self, name: &str, image: &TestImage, repo: &str, manifest: &str) {
        let out = self.docker_ok(&[
            "image",
            "inspect",
            "--format",
            "{{.Id}} {{json .RepoDigests}}",
            name,
        ]);
        let (id, digests) = out.stdout.trim().split_once(' ').must("inspect output");
        assert_eq!(id, image.digests.config.digest, "image id of {name}");
        let digests: Vec<String> = serde_json::from_str(digests).must("parse RepoDigests");
        let want = format!("{repo}@{manifest}");
        assert!(
            digests.contains(&want),
            "{name}: RepoDigests {digests:?} lack {want}"
        );
    }
}

/// `docker` talking to a private engine only (no context, no
/// `DOCKER_HOST`, a config dir of its own).
fn docker_command(socket: &Path, dir: &Path) -> Command {
    let mut cmd = Command::new("docker");
    cmd.env_remove("DOCKER_HOST")
        .env_remove("DOCKER_CONTEXT")
        .env("DOCKER_CONFIG", dir.join("client"))
        .arg("-H")
        .arg(format!("unix://{}", socket.display()));
    cmd
}

/// A containerd of the test's own (root, state, socket, config), without
/// the CRI plugin.
#[derive(Debug)]
struct PrivateContainerd {
    daemon: Daemon,
    socket: PathBuf,
    // Last, so the directory outlives the daemon.
    dir: tempfile::TempDir,
}

impl PrivateContainerd {
    fn start() -> Result<PrivateContainerd, Skip> {
        let (dir, config) = daemon_dir(
            "shoal-containerd-",
            "config.toml",
            "version = 2\ndisabled_plugins = [\"io.containerd.grpc.v1.cri\"]\n",
        )?;
        let socket = dir.path().join("containerd.sock");
        let mut cmd = Command::new("containerd");
        cmd.arg("--config")
            .arg(&config)
            .arg("--root")
            .arg(dir.path().join("root"))
            .arg("--state")
            .arg(dir.path().join("state"))
            .arg("--address")
            .arg(&socket);
        let mut daemon = Daemon::spawn("containerd", &mut cmd, dir.path().join("containerd.log"))?;
        daemon.wait_ready(|| {
            run(ctr_command(&socket).arg("version"), Duration::from_secs(10))
                .is_ok_and(|out| out.success())
        })?;
        Ok(PrivateContainerd {
            daemon,
            socket,
            dir,
        })
    }

    fn ctr_ok(&self, args: &[&str]) -> CmdOutput {
        run_ok(ctr_command(&self.socket).args(args), PULL_TIMEOUT).unwrap_or_else(|e| {
            panic!(
                "{e}\n--- private containerd log ---\n{}",
                self.daemon.log_tail()
            )
        })
    }
}

fn ctr_command(socket: &Path) -> Command {
    let mut cmd = Command::new("ctr");
    cmd.env_remove("CONTAINERD_ADDRESS")
        .env_remove("CONTAINERD_NAMESPACE")
        .arg("--address")
        .arg(socket)
        .args(["--namespace", "shoal-test"]);
    cmd
}

/// podman with its own storage (vfs), run root, temp dir and
/// registries.conf.
#[derive(Debug)]
struct Podman {
    registries_conf: PathBuf,
    // Last, so the directory outlives every podman run.
    dir: tempfile::TempDir,
}

impl Podman {
    /// registries.conf as docs/podman.md shows it: the node as mirror for
    /// Docker Hub, and for the alias with the host as a path prefix.
    fn new(node: &ShoalNode, upstream: &DockerRegistry) -> Podman {
        let dir = tempfile::Builder::new()
            .prefix("shoal-podman-")
            .tempdir()
            .must("a temp dir");
        let registries_conf = dir.path().join("registries.conf");
        let node = node.addr();
        let conf = format!(
            "unqualified-search-registries = []\n\n\
             [[registry]]\n\
             prefix = \"docker.io\"\n\
             location = \"docker.io\"\n\n\
             [[registry.mirror]]\n\
             location = \"{node}\"\n\
             insecure = true\n\n\
             [[registry]]\n\
             prefix = \"{ALIAS}\"\n\
             location = \"{}\"\n\
             insecure = true\n\n\
             [[registry.mirror]]\n\
             location = \"{node}/{ALIAS}\"\n\
             insecure = true\n",
            upstream.host()
        );
        std::fs::write(&registries_conf, conf).must("write registries.conf");
        Podman {
            registries_conf,
            dir,
        }
    }

    fn command(&self) -> Command {
        let mut cmd = Command::new("podman");
        cmd.env("CONTAINERS_REGISTRIES_CONF", &self.registries_conf)
            .arg("--root")
            .arg(path_arg(&self.dir.path().join("root")))
            .arg("--runroot")
            .arg(path_arg(&self.dir.path().join("run")))
            .arg("--tmpdir")
            .arg(path_arg(&self.dir.path().join("tmp")))
            .args([
                "--storage-driver=vfs",
                "--cgroup-manager=cgroupfs",
                "--events-backend=file",
            ]);
        cmd
    }

    fn pull_ok(&self, reference: &str) {
        run_ok(self.command().args(["pull", reference]), PULL_TIMEOUT)
            .must("podman pull through shoal");
    }

    /// podman's image id is the config digest's hex; its digest is the
    /// manifest's.
    fn assert_image(&self, reference: &str, image: &TestImage, manifest: &str) {
        let out = run_ok(
            self.command().args([
                "image",
                "inspect",
                "--format",
                "{{.Id}} {{.Digest}}",
                reference,
            ]),
            Duration::from_secs(60),
        )
        .must("podman image inspect");
        let want = format!(
            "{} {manifest}",
            image.digests.config.digest.trim_start_matches("sha256:")
        );
        assert_eq!(
            out.stdout.trim(),
            want,
            "podman's id and digest of {reference}"
        );
    }
}
