//! Running external programs with a deadline.

use std::fmt;
use std::io::Read;
use std::process::{Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

/// What a finished program printed.
#[derive(Debug)]
pub struct CmdOutput {
    pub status: ExitStatus,
    pub stdout: String,
    pub stderr: String,
}

impl CmdOutput {
    pub fn success(&self) -> bool {
        self.status.success()
    }
}

/// Why a program did not produce an output.
#[derive(Debug)]
pub enum CmdError {
    Spawn {
        program: String,
        source: std::io::Error,
    },
    Wait {
        program: String,
        source: std::io::Error,
    },
    TimedOut {
        program: String,
        after: Duration,
        stdout: String,
        stderr: String,
    },
}

impl fmt::Display for CmdError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CmdError::Spawn { program, source } => write!(f, "cannot start {program}: {source}"),
            CmdError::Wait { program, source } => write!(f, "waiting for {program}: {source}"),
            CmdError::TimedOut {
                program,
                after,
                stdout,
                stderr,
            } => write!(
                f,
                "{program} did not finish within {after:?} (killed)\nstdout:\n{stdout}\nstderr:\n{stderr}"
            ),
        }
    }
}

impl std::error::Error for CmdError {}

/// A readable rendering of a command line for messages.
pub fn describe(cmd: &Command) -> String {
    let mut parts = vec![cmd.get_program().to_string_lossy().into_owned()];
    parts.extend(cmd.get_args().map(|a| a.to_string_lossy().into_owned()));
    parts.join(" ")
}

/// Runs `cmd` to completion with stdin closed, capturing its output; kills
/// it if it runs longer than `timeout`.
pub fn run(cmd: &mut Command, timeout: Duration) -> Result<CmdOutput, CmdError> {
    let program = describe(cmd);
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|source| CmdError::Spawn {
            program: program.clone(),
            source,
        })?;
    // Drain both pipes on threads so a chatty program cannot block on a
    // full pipe while we wait for it.
    let stdout = child.stdout.take().map(drain);
    let stderr = child.stderr.take().map(drain);
    let deadline = Instant::now() + timeout;
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break Some(status),
            Ok(None) if Instant::now() >= deadline => {
                let _ = child.kill();
                let _ = child.wait();
                break None;
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(20)),
            Err(source) => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(CmdError::Wait { program, source });
            }
        }
    };
    let stdout = stdout.map(join).unwrap_or_default();
    let stderr = stderr.map(join).unwrap_or_default();
    match status {
        Some(status) => Ok(CmdOutput {
            status,
            stdout,
            stderr,
        }),
        None => Err(CmdError::TimedOut {
            program,
            after: timeout,
            stdout,
            stderr,
        }),
    }
}

/// Like [`run`], but a non-zero exit is an error carrying the output.
pub fn run_ok(cmd: &mut Command, timeout: Duration) -> Result<CmdOutput, String> {
    let program = describe(cmd);
    let out = run(cmd, timeout).map_err(|e| e.to_string())?;
    if out.success() {
        Ok(out)
    } else {
        Err(format!(
            "`{program}` failed with {}\nstdout:\n{}\nstderr:\n{}",
            out.status, out.stdout, out.stderr
        ))
    }
}

fn drain<R: Read + Send + 'static>(mut pipe: R) -> std::thread::JoinHandle<String> {
    std::thread::spawn(move || {
        let mut buf = Vec::new();
        let _ = pipe.read_to_end(&mut buf);
        String::from_utf8_lossy(&buf).into_owned()
    })
}

fn join(handle: std::thread::JoinHandle<String>) -> String {
    handle
        .join()
        .unwrap_or_else(|_| String::from("<output reader panicked>"))
}

/// Whether `binary` is on `PATH` (or is an existing path).
pub fn on_path(binary: &str) -> bool {
    if binary.contains('/') {
        return std::path::Path::new(binary).is_file();
    }
    std::env::var_os("PATH")
        .map(|path| std::env::split_paths(&path).any(|dir| dir.join(binary).is_file()))
        .unwrap_or(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn output_is_captured() {
        let out = run(
            Command::new("sh").args(["-c", "echo out; echo err >&2; exit 3"]),
            Duration::from_secs(10),
        )
        .expect("sh runs");
        assert_eq!(out.stdout, "out\n");
        assert_eq!(out.stderr, "err\n");
        assert_eq!(out.status.code(), Some(3));
    }

    #[test]
    fn a_program_past_its_deadline_is_killed() {
        let started = Instant::now();
        let err = run(Command::new("sleep").arg("30"), Duration::from_millis(200))
            .expect_err("times out");
        assert!(matches!(err, CmdError::TimedOut { .. }), "{err}");
        assert!(started.elapsed() < Duration::from_secs(10));
    }
}
