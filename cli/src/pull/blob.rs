//! Pulling one blob through the node: the body is drained, counted and
//! hashed as it arrives (never held whole) and must be exactly the
//! descriptor's size and digest.

use std::time::Instant;

use anyhow::anyhow;
use reqwest::StatusCode;
use shoal_protocol::DigestVerifier;

use super::image_name::ImageName;
use super::manifest::Descriptor;
use super::progress::BlobProgress;
use super::source::Source;
use crate::node_client::{self, NodeClient};

/// A blob that arrived whole and checked.
#[derive(Debug)]
pub struct BlobPulled {
    pub source: Source,
    pub bytes: u64,
}

pub async fn pull(
    client: &NodeClient,
    image: &ImageName,
    blob: &Descriptor,
    progress: &BlobProgress,
) -> anyhow::Result<BlobPulled> {
    let result = pull_checked(client, image, blob, progress).await;
    if result.is_err() {
        progress.failed();
    }
    result
}

async fn pull_checked(
    client: &NodeClient,
    image: &ImageName,
    blob: &Descriptor,
    progress: &BlobProgress,
) -> anyhow::Result<BlobPulled> {
    let started = Instant::now();
    let what = format!("blob {} of {image}", blob.digest);
    let mut response = client.get(&image.blob_path(&blob.digest), None).await?;
    let status = response.status();
    if !status.is_success() {
        let cause = node_client::describe_failure(response).await;
        return Err(match status {
            StatusCode::NOT_FOUND => anyhow!("{what} not found ({cause})"),
            _ => anyhow!("cannot get {what} ({cause})"),
        });
    }
    let source = Source::of(response.headers());
    progress.started(source);
    let mut verifier = DigestVerifier::new(blob.digest.clone());
    while let Some(chunk) = response
        .chunk()
        .await
        .map_err(|e| client.broken(&format!("reading {what}"), &e))?
    {
        if verifier.bytes_seen() + chunk.len() as u64 > blob.size {
            return Err(anyhow!(
                "{what} is larger than the {} bytes its manifest says",
                blob.size
            ));
        }
        verifier.update(&chunk);
        progress.advanced(chunk.len() as u64);
    }
    let bytes = verifier.bytes_seen();
    if bytes < blob.size {
        return Err(anyhow!(
            "{what} ended after {bytes} of its {} bytes",
            blob.size
        ));
    }
    verifier
        .finish()
        .map_err(|mismatch| anyhow!("{what} from {}: {mismatch}", client.base()))?;
    progress.finished(source, started.elapsed());
    Ok(BlobPulled { source, bytes })
}
