//! Names of everything a run creates, and sweeping what dead runs left.
//!
//! Namespaces are `shoaledge<pid>-<role>` (roles: `switch`, `origin`,
//! `h<i>`), scratch directories `shoaledge<pid>-*` in the temp dir. The pid
//! is the `edge_bench` process that made them: if no `edge_bench` runs
//! under that pid any more, they are leftovers.

use std::path::Path;

use super::cmd;

pub const PREFIX: &str = "shoaledge";
const PROGRAM: &str = "edge_bench";

/// The names of one run's objects.
#[derive(Debug, Clone)]
pub struct RunNames {
    pid: u32,
}

impl RunNames {
    pub fn for_this_process() -> RunNames {
        RunNames {
            pid: std::process::id(),
        }
    }

    /// `shoaledge<pid>-`: what every name of this run starts with.
    pub fn prefix(&self) -> String {
        format!("{PREFIX}{}-", self.pid)
    }

    pub fn switch(&self) -> String {
        format!("{}switch", self.prefix())
    }

    pub fn origin(&self) -> String {
        format!("{}origin", self.prefix())
    }

    pub fn host(&self, index: usize) -> String {
        format!("{}h{index}", self.prefix())
    }

    /// A namespace made only to find out whether namespaces can be made.
    pub fn probe(&self) -> String {
        format!("{}probe", self.prefix())
    }
}

/// The pid in a name made by [`RunNames`], if it is one.
fn owner_pid(name: &str) -> Option<u32> {
    let rest = name.strip_prefix(PREFIX)?;
    let (pid, _) = rest.split_once('-')?;
    pid.parse().ok()
}

/// Whether an `edge_bench` runs under `pid` (a reused pid running
/// something else does not count, nor does a killed one not yet reaped).
fn owner_alive(pid: u32) -> bool {
    let named = std::fs::read_to_string(format!("/proc/{pid}/comm"))
        .is_ok_and(|comm| comm.trim() == PROGRAM);
    // The state is the first field after the parenthesised command name.
    let zombie = std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|stat| {
        stat.rsplit_once(')')
            .is_some_and(|(_, rest)| rest.trim_start().starts_with('Z'))
    });
    named && !zombie
}

/// Every network namespace on this machine, by name.
pub fn namespaces() -> anyhow::Result<Vec<String>> {
    // Lines look like `name (id: 3)` or just `name`.
    Ok(cmd::run("ip", &["netns", "list"])?
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .map(str::to_owned)
        .collect())
}

/// Kills every process inside `ns`, then deletes it (its veths and bridge
/// go with it).
pub fn delete_namespace(ns: &str) {
    if let Ok(pids) = cmd::run("ip", &["netns", "pids", ns]) {
        for pid in pids.split_whitespace() {
            cmd::run_quietly("kill", &["-KILL", pid]);
        }
    }
    cmd::run_quietly("ip", &["netns", "delete", ns]);
}

/// Removes namespaces and scratch directories of runs that are gone;
/// returns what was removed.
pub fn sweep_leftovers() -> Vec<String> {
    let mut removed = Vec::new();
    for ns in namespaces().unwrap_or_default() {
        if owner_pid(&ns).is_some_and(|pid| !owner_alive(pid)) {
            delete_namespace(&ns);
            removed.push(format!("namespace {ns}"));
        }
    }
    let tmp = std::env::temp_dir();
    if let Ok(entries) = std::fs::read_dir(&tmp) {
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            if owner_pid(&name).is_some_and(|pid| !owner_alive(pid)) {
                let path = entry.path();
                remove_dir(&path);
                removed.push(format!("directory {}", path.display()));
            }
        }
    }
    removed
}

fn remove_dir(path: &Path) {
    if let Err(e) = std::fs::remove_dir_all(path) {
        eprintln!("cleanup: removing {}: {e}", path.display());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_carry_their_owner() {
        let names = RunNames { pid: 4242 };
        assert_eq!(names.host(3), "shoaledge4242-h3");
        assert_eq!(owner_pid(&names.host(3)), Some(4242));
        assert_eq!(owner_pid(&names.switch()), Some(4242));
        assert_eq!(owner_pid("shoaledge-x"), None);
        assert_eq!(owner_pid("other4242-h3"), None);
    }

    #[test]
    fn this_process_is_not_an_edge_bench() {
        // The unit-test binary has another name, so its pid counts as dead.
        assert!(!owner_alive(std::process::id()));
    }
}
