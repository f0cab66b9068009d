//! `shoal pull IMAGE`: makes an image local on a node by pulling it through
//! the node's registry endpoint the way Docker would (manifest, the
//! platform's manifest from an index, then config and layers a few at a
//! time), checking every digest and showing where the node got each blob.

mod blob;
mod image_name;
mod manifest;
mod platform;
mod progress;
mod source;
mod summary;

use std::time::Instant;

use anyhow::Context;
use clap::Args;
use futures_util::{StreamExt, TryStreamExt, stream};

use crate::node_client::{NodeArgs, NodeClient};
use image_name::ImageName;
use progress::Progress;
use summary::Summary;

/// Blobs pulled at once (Docker's default `max-concurrent-downloads`).
const CONCURRENT_BLOBS: usize = 3;

#[derive(Debug, Args)]
pub struct PullArgs {
    /// The image: NAME[:TAG] or NAME@DIGEST, as Docker writes it. A first
    /// component with a `.` or `:` (or `localhost`) names the registry.
    #[arg(value_name = "IMAGE")]
    pub image: String,
    #[command(flatten)]
    pub node: NodeArgs,
}

pub fn run(args: &PullArgs) -> anyhow::Result<()> {
    let image = ImageName::parse(&args.image)?;
    let client = NodeClient::new(&args.node)?;
    // Several threads: blobs are hashed as they arrive, three at a time.
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    runtime.block_on(pull(&client, &image, &Progress::for_stdout()))
}

async fn pull(client: &NodeClient, image: &ImageName, progress: &Progress) -> anyhow::Result<()> {
    let started = Instant::now();
    progress.note(&format!("pulling {image} through {}", client.base()));
    let resolved = manifest::resolve(client, image).await?;
    if let Some((index, platform)) = &resolved.index {
        progress.note(&format!(
            "index {} {} ({platform})",
            index.digest, index.source
        ));
    }
    progress.note(&format!(
        "manifest {} {}",
        resolved.manifest.digest, resolved.manifest.source
    ));

    let blobs = resolved.blobs();
    let bars: Vec<_> = blobs.iter().map(|b| progress.blob(b)).collect();
    let pulled: Vec<_> = stream::iter(blobs.iter().zip(&bars))
        .map(|(b, bar)| blob::pull(client, image, b, bar))
        .buffer_unordered(CONCURRENT_BLOBS)
        .try_collect()
        .await?;

    let mut summary = Summary::default();
    for blob in &pulled {
        summary.add(blob.source, blob.bytes);
    }
    // The digest a user pulls by: the index's when there is one.
    let digest = match &resolved.index {
        Some((index, _)) => &index.digest,
        None => &resolved.manifest.digest,
    };
    let what = format!("{image} ({digest})");
    progress.last_line(&summary.line(&what, started.elapsed()));
    Ok(())
}
