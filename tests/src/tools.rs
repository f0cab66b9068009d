//! Making sure a third-party program is installed, installing it from
//! Debian when it is not.

use std::process::Command;
use std::sync::Mutex;
use std::time::Duration;

use crate::command::{self, on_path};
use crate::skip::Skip;

/// One apt-get at a time in this process (dpkg takes a lock anyway, but a
/// second apt-get would fail on it rather than wait).
static APT: Mutex<AptState> = Mutex::new(AptState { updated: false });

#[derive(Debug)]
struct AptState {
    updated: bool,
}

const APT_TIMEOUT: Duration = Duration::from_secs(600);

/// Ok when `binary` is on `PATH`; otherwise tries `apt-get install -y
/// <debian_package>` (running `apt-get update` once and retrying if the
/// install fails). A Skip says why the program cannot be had.
pub fn require_tool(binary: &str, debian_package: &str) -> Result<(), Skip> {
    if on_path(binary) {
        return Ok(());
    }
    let mut apt = APT.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    // Another test may have installed it while we waited for the lock.
    if on_path(binary) {
        return Ok(());
    }
    if !on_path("apt-get") {
        return Err(Skip::new(format!(
            "`{binary}` is not installed and there is no apt-get to install package {debian_package}"
        )));
    }
    let mut failure = apt_install(debian_package).err();
    if failure.is_some() && !apt.updated {
        apt.updated = true;
        failure = apt_update()
            .and_then(|()| apt_install(debian_package))
            .err();
    }
    if on_path(binary) {
        return Ok(());
    }
    Err(Skip::new(match failure {
        Some(err) => format!("`{binary}` is missing and installing {debian_package} failed: {err}"),
        None => format!("installed {debian_package} but `{binary}` is still not on PATH"),
    }))
}

fn apt_install(package: &str) -> Result<(), String> {
    apt(&["install", "-y", "--no-install-recommends", package])
}

fn apt_update() -> Result<(), String> {
    apt(&["update"])
}

fn apt(args: &[&str]) -> Result<(), String> {
    let mut cmd = Command::new("apt-get");
    cmd.args(args).env("DEBIAN_FRONTEND", "noninteractive");
    let out = command::run_ok(&mut cmd, APT_TIMEOUT)?;
    drop(out);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_present_tool_needs_nothing() {
        assert_eq!(require_tool("sh", "dash"), Ok(()));
    }
}
