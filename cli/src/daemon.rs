//! `shoal daemon`: runs a node until SIGINT or SIGTERM.

use anyhow::Context;
use tokio::signal::unix::{SignalKind, signal};

use crate::logging;
use crate::settings::DaemonArgs;

pub fn run(args: DaemonArgs) -> anyhow::Result<()> {
    logging::init(&args.log)?;
    let config = args.node_config()?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    runtime.block_on(async move {
        let mut term = signal(SignalKind::terminate()).context("installing SIGTERM handler")?;
        let shutdown = async move {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => tracing::info!("SIGINT received"),
                _ = term.recv() => tracing::info!("SIGTERM received"),
            }
        };
        shoal_node::daemon::run(config, shutdown)
            .await
            .context("running the node")
    })?;
    // Connections still open after the grace period end with the runtime;
    // their unfinished writes clean up their temporary files on drop.
    runtime.shutdown_timeout(std::time::Duration::from_secs(2));
    Ok(())
}
