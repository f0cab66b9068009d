//! Running `ip` and `tc`: a failure says which command and what it printed.

use std::process::{Command, Stdio};

use anyhow::Context;

/// Runs `program args…` to completion; its stdout on success.
pub fn run(program: &str, args: &[&str]) -> anyhow::Result<String> {
    let out = Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("cannot start {program}"))?;
    anyhow::ensure!(
        out.status.success(),
        "`{program} {}` failed ({}): {}",
        args.join(" "),
        out.status,
        String::from_utf8_lossy(&out.stderr).trim()
    );
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Like [`run`] for cleanup: a failure is printed, not returned, so one
/// stubborn object does not keep the rest from being removed.
pub fn run_quietly(program: &str, args: &[&str]) {
    if let Err(e) = run(program, args) {
        eprintln!("cleanup: {e:#}");
    }
}

/// `ip netns exec <ns> <program>`: `ip` enters the namespace and execs the
/// program, so the child's pid is the program's. Killed when dropped, with
/// proxy settings removed (nothing here goes through a proxy).
pub fn in_namespace(ns: &str, program: &std::path::Path) -> tokio::process::Command {
    let mut cmd = tokio::process::Command::new("ip");
    cmd.args(["netns", "exec", ns])
        .arg(program)
        .kill_on_drop(true)
        .stdin(Stdio::null());
    for var in [
        "http_proxy",
        "https_proxy",
        "HTTP_PROXY",
        "HTTPS_PROXY",
        "ALL_PROXY",
        "all_proxy",
    ] {
        cmd.env_remove(var);
    }
    cmd
}

/// Waits until the registry at `registry` (a URL as seen from inside `ns`)
/// answers `/v2/`, by running `edge_bench probe` there.
pub async fn wait_ready_in(
    exe: &std::path::Path,
    ns: &str,
    registry: &str,
    timeout: std::time::Duration,
) -> anyhow::Result<()> {
    let out = in_namespace(ns, exe)
        .args(["probe", "--registry", registry, "--timeout-s"])
        .arg(timeout.as_secs().to_string())
        .output()
        .await?;
    anyhow::ensure!(
        out.status.success(),
        "{registry} in {ns}: {}",
        String::from_utf8_lossy(&out.stderr).trim()
    );
    Ok(())
}
