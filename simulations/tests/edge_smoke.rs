//! The edge-site benchmark's smoke mode as a test: 4 hosts in network
//! namespaces behind a 50 Mbit/s uplink pull an 8 MiB image directly and
//! through shoal nodes; the shoal pull may send the image over the uplink
//! only about once. Skipped (see `shoal_tests::skip`) where namespaces
//! cannot be made or the shoal binary cannot pull through from an
//! upstream registry yet.

use std::process::Command;
use std::time::Duration;

use shoal_tests::command::{self, CmdError};
use shoal_tests::skip;

const EDGE_BENCH: &str = env!("CARGO_BIN_EXE_edge_bench");
/// `edge_bench smoke` says "skipped" with this status.
const EXIT_SKIPPED: i32 = 77;
/// The smoke run takes about 20 s; its own deadlines end it within 3 min.
const TIMEOUT: Duration = Duration::from_secs(300);

#[test]
fn edge_site_pulls_cross_the_uplink_once() {
    let shoal = match shoal_tests::node::shoal_binary() {
        Ok(path) => path,
        Err(e) => panic!("no shoal binary: {e}"),
    };
    let run = command::run(
        Command::new(EDGE_BENCH)
            .arg("smoke")
            .env("SHOAL_BIN", shoal),
        TIMEOUT,
    );
    let out = match run {
        Ok(out) => out,
        Err(e @ CmdError::TimedOut { .. }) => {
            // Killed, so it could not clean up: the sweep removes what it left.
            let _ = command::run(Command::new(EDGE_BENCH).arg("sweep"), TIMEOUT);
            panic!("{e}");
        }
        Err(e) => panic!("{e}"),
    };
    println!("{}", out.stdout);
    eprintln!("{}", out.stderr);
    match out.status.code() {
        Some(0) => {}
        Some(EXIT_SKIPPED) => {
            let why = out
                .stdout
                .lines()
                .rev()
                .find_map(|l| l.strip_prefix("skipped: "))
                .unwrap_or("edge_bench smoke skipped");
            skip!(why);
        }
        _ => panic!("edge_bench smoke failed with {}", out.status),
    }
}
