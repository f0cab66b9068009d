//! Skipping a test at run time.
//!
//! libtest has no runtime skip: a test that returns early counts as passed.
//! So a test that cannot run on this machine calls [`skip!`], which prints
//! `SKIPPED <test name>: <reason>` to stderr, appends the same line to the
//! file named by `SHOAL_SKIP_LOG` (when set) and returns. `tests/run.sh`
//! counts those lines and reports them as skipped, not passed.

use std::fmt;
use std::io::Write;

/// Why a test cannot run here.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Skip {
    pub reason: String,
}

impl Skip {
    pub fn new(reason: impl Into<String>) -> Skip {
        Skip {
            reason: reason.into(),
        }
    }
}

impl fmt::Display for Skip {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.reason)
    }
}

/// The environment variable naming the file that collects skip lines.
pub const SKIP_LOG_ENV: &str = "SHOAL_SKIP_LOG";

/// The running test's name: libtest names each test's thread after it.
pub fn current_test_name(fallback: &str) -> String {
    match std::thread::current().name() {
        Some(name) if name != "main" => name.to_owned(),
        _ => fallback.to_owned(),
    }
}

/// The line reported for a skipped test (no newlines inside).
pub fn skip_line(test: &str, reason: &str) -> String {
    let reason = reason.replace(['\n', '\r'], " ");
    format!("SKIPPED {test}: {reason}")
}

/// Reports the current test as skipped. Use through [`skip!`], which also
/// returns from the test.
pub fn record(test: &str, reason: &str) {
    let line = skip_line(test, reason);
    eprintln!("{line}");
    if let Some(path) = std::env::var_os(SKIP_LOG_ENV).filter(|p| !p.is_empty()) {
        let written = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            // One write of the whole line: O_APPEND keeps lines from
            // parallel tests (and test processes) whole.
            .and_then(|mut file| file.write_all(format!("{line}\n").as_bytes()));
        if let Err(err) = written {
            // A skip that cannot be recorded would be counted as a pass.
            panic!("cannot append to {}: {err}", path.to_string_lossy());
        }
    }
}

/// Marks the current test skipped with a reason (anything `Display`) and
/// returns from it.
#[macro_export]
macro_rules! skip {
    ($reason:expr) => {{
        let test = $crate::skip::current_test_name(module_path!());
        $crate::skip::record(&test, &$reason.to_string());
        return;
    }};
}

/// Unwraps a `Result<T, Skip>`, or skips the current test with its reason.
#[macro_export]
macro_rules! require {
    ($result:expr) => {
        match $result {
            Ok(value) => value,
            Err(skip) => $crate::skip!(skip),
        }
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn skip_lines_stay_on_one_line() {
        assert_eq!(
            skip_line("a::b", "no docker\nat all"),
            "SKIPPED a::b: no docker at all"
        );
    }

    #[test]
    fn the_test_thread_names_the_test() {
        assert_eq!(
            current_test_name("fallback"),
            "skip::tests::the_test_thread_names_the_test"
        );
    }
}
