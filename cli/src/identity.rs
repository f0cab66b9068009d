//! `shoal identity`: prints the node's peer id.

use std::path::PathBuf;

use anyhow::Context;
use clap::Args;

#[derive(Debug, Args)]
pub struct IdentityArgs {
    /// The node's data directory.
    #[arg(long, env = "SHOAL_DATA_DIR", value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
}

pub fn run(args: &IdentityArgs) -> anyhow::Result<()> {
    let dir = args
        .data_dir
        .clone()
        .unwrap_or_else(shoal_node::config::default_data_dir);
    let key = shoal_node::network::identity::load_or_create(&dir)
        .with_context(|| format!("node identity in {}", dir.display()))?;
    println!("{}", key.public().to_peer_id());
    Ok(())
}
