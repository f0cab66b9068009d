//! Log output: tracing to stderr, filtered like RUST_LOG.

use anyhow::Context;
use tracing_subscriber::EnvFilter;

pub fn init(filter: &str) -> anyhow::Result<()> {
    // An empty RUST_LOG (set but blank) means "not chosen", not "silence".
    let filter = if filter.trim().is_empty() {
        "info"
    } else {
        filter
    };
    let filter =
        EnvFilter::try_new(filter).with_context(|| format!("invalid log filter {filter:?}"))?;
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init()
        .map_err(|e| anyhow::anyhow!("initialising logs: {e}"))
}
