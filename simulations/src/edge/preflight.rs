//! Whether this machine can run the benchmark at all: root, `ip` and
//! `tc`, a network namespace with a shaped veth in it, and Debian's
//! `docker-registry`. Any "no" is a reason to skip, not a failure.

use super::cmd;
use super::names::{RunNames, delete_namespace};
use super::shaping::shape_egress;

/// Ok, or why the benchmark cannot run here (one line).
pub fn check(names: &RunNames) -> Result<(), String> {
    if effective_uid() != Some(0) {
        return Err("network namespaces need root (run as root or under sudo)".into());
    }
    for tool in ["ip", "tc"] {
        if !shoal_tests::command::on_path(tool) {
            return Err(format!(
                "`{tool}` is not installed (Debian package iproute2)"
            ));
        }
    }
    namespaces_work(names)?;
    shoal_tests::tools::require_tool("docker-registry", "docker-registry")
        .map_err(|skip| skip.reason)
}

fn namespaces_work(names: &RunNames) -> Result<(), String> {
    let ns = names.probe();
    cmd::run("ip", &["netns", "add", &ns])
        .map_err(|e| format!("cannot make a network namespace: {e:#}"))?;
    let result = cmd::run(
        "ip",
        &[
            "-n", &ns, "link", "add", "name", "a", "type", "veth", "peer", "name", "b",
        ],
    )
    .map_err(|e| format!("cannot make a veth pair: {e:#}"))
    .and_then(|_| {
        shape_egress(&ns, "a", 10.0).map_err(|e| format!("cannot shape a link with tbf: {e:#}"))
    });
    delete_namespace(&ns);
    result
}

/// The effective uid, from `/proc/self/status` (`Uid: real effective …`).
fn effective_uid() -> Option<u32> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}
