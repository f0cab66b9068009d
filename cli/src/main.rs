//! `shoal`: runs a node and talks to one. Thin glue over `shoal-node`.

mod daemon;
mod identity;
mod logging;
mod node_client;
mod oci_error;
mod pull;
mod settings;
mod status;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(
    name = "shoal",
    version,
    about = "Peer-to-peer distribution of container image layers"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run a node: the content store and the OCI registry endpoint.
    // Boxed: its many flags dwarf the other commands' arguments.
    Daemon(Box<settings::DaemonArgs>),
    /// Print the node's peer id (creating its identity if absent), for
    /// building bootstrap addresses: /ip4/<host>/tcp/4001/p2p/<peer id>.
    Identity(identity::IdentityArgs),
    /// Make an image local on a running node by pulling it through the
    /// node's registry endpoint, showing where each layer came from.
    Pull(pull::PullArgs),
    /// Show what a running node holds, fetches and has moved.
    Status(status::StatusArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Daemon(args) => daemon::run(*args),
        Command::Identity(args) => identity::run(&args),
        Command::Pull(args) => pull::run(&args),
        Command::Status(args) => status::run(&args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {}", one_line(&err));
            ExitCode::FAILURE
        }
    }
}

/// The whole cause chain on one line. Causes already quoted by the message
/// above them (many error types print their source) are not repeated.
fn one_line(err: &anyhow::Error) -> String {
    let mut line = String::new();
    for cause in err.chain() {
        let text = cause.to_string();
        if line.contains(&text) {
            continue;
        }
        if !line.is_empty() {
            line.push_str(": ");
        }
        line.push_str(&text);
    }
    line
}
