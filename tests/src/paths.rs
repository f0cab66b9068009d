//! Where things are: the workspace, the target directory the tests were
//! built in, and a scratch directory shared by the tests of one run.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

/// The workspace root (the parent of this crate).
pub fn workspace_root() -> PathBuf {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    manifest.parent().unwrap_or(manifest).to_path_buf()
}

/// The profile directory holding the running test executable, e.g.
/// `target/debug` for `target/debug/deps/integration-<hash>`.
pub fn profile_dir() -> Result<PathBuf, String> {
    let exe = std::env::current_exe().map_err(|e| format!("current_exe: {e}"))?;
    let deps = exe
        .parent()
        .ok_or_else(|| format!("{} has no parent", exe.display()))?;
    let profile = if deps.file_name().is_some_and(|n| n == "deps") {
        deps.parent()
            .ok_or_else(|| format!("{} has no parent", deps.display()))?
    } else {
        deps
    };
    Ok(profile.to_path_buf())
}

/// The target directory (the parent of the profile directory).
pub fn target_dir() -> Result<PathBuf, String> {
    let profile = profile_dir()?;
    profile
        .parent()
        .map(Path::to_path_buf)
        .ok_or_else(|| format!("{} has no parent", profile.display()))
}

/// A scratch directory for this test process under
/// `<target>/shoal-tests-tmp/run-<pid>`, shared by its tests (built images
/// live here). Directories left by earlier processes that are no longer
/// running are removed the first time this is called, so nothing piles up
/// and `cargo clean` removes the rest.
pub fn run_scratch_dir() -> Result<&'static Path, String> {
    static DIR: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    DIR.get_or_init(|| {
        let base = target_dir()?.join("shoal-tests-tmp");
        std::fs::create_dir_all(&base).map_err(|e| format!("creating {}: {e}", base.display()))?;
        sweep_dead_runs(&base);
        let dir = base.join(format!("run-{}", std::process::id()));
        if dir.exists() {
            std::fs::remove_dir_all(&dir)
                .map_err(|e| format!("clearing {}: {e}", dir.display()))?;
        }
        std::fs::create_dir_all(&dir).map_err(|e| format!("creating {}: {e}", dir.display()))?;
        Ok(dir)
    })
    .as_deref()
    .map_err(Clone::clone)
}

fn sweep_dead_runs(base: &Path) {
    let Ok(entries) = std::fs::read_dir(base) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(pid) = name
            .to_str()
            .and_then(|n| n.strip_prefix("run-"))
            .and_then(|p| p.parse::<u32>().ok())
        else {
            continue;
        };
        if pid != std::process::id() && !Path::new(&format!("/proc/{pid}")).exists() {
            let _ = std::fs::remove_dir_all(entry.path());
        }
    }
}
