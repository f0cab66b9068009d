//! `shoal`: runs a node and talks to one. Thin glue over `shoal-node`.

mod daemon;
mod logging;
mod settings;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(name = "shoal", version, about = "Peer-to-peer distribution of container image layers")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run a node: the content store and the OCI registry endpoint.
    Daemon(settings::DaemonArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Daemon(args) => daemon::run(args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            // One line with the whole cause chain, as a user reads it.
            let chain: Vec<String> = err.chain().map(ToString::to_string).collect();
            eprintln!("shoal: {}", chain.join(": "));
            ExitCode::FAILURE
        }
    }
}
