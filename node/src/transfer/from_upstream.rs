//! The last resort of a fetch: the upstream registry. It fills only the
//! chunks the partial blob lacks (what peers delivered before they stopped
//! is kept), with `Range` requests over runs of missing chunks, resuming a
//! run where a broken transfer left it. The whole blob is hashed at commit,
//! and a streaming client gets the last chunk only after that.
//!
//! Without a chunk map from peers, the chunks are hashed in order as they
//! arrive, and the chain states so far (a [`ChainPrefix`](shoal_protocol::chain::ChainPrefix)) are published:
//! peers following this node (`follow.rs`) take each chunk as soon as it
//! is written, checked against the prefix, instead of waiting for the
//! commit. The node announces itself as a (partial) provider at once.

use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use futures_util::StreamExt;
use shoal_protocol::RepoName;
use shoal_protocol::chain::{ChunkMap, ChunkMapBuilder};
use shoal_protocol::chunk::{ChunkPlan, DEFAULT_CHUNK_SIZE};
use shoal_protocol::share::chunk_hash;

use super::downloads::DownloadState;
use super::fetch::{FetchError, Fetcher};
use crate::metrics::Metrics;
use crate::store::{BlobInfo, PartialBlob, StoreError};
use crate::upstream::{UpstreamClient, UpstreamError};

/// Attempts per run of missing chunks before the fetch gives up.
pub(super) const RUN_ATTEMPTS: u32 = 3;

/// Where a blob can be had upstream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UpstreamSource {
    pub host: String,
    pub repo: RepoName,
}

impl Fetcher {
    pub(super) async fn download_from_upstream(
        &self,
        state: &Arc<DownloadState>,
        client: &UpstreamClient,
        source: &UpstreamSource,
    ) -> Result<BlobInfo, FetchError> {
        let digest = state.digest.clone();
        let started = std::time::Instant::now();
        let upstream = |e: UpstreamError| FetchError::Upstream(e.to_string(), e.status().as_u16());
        // The plan: from the peers' phase if there was one, else from the
        // upstream's answer (whose body, from 0, is then used right away).
        let (partial, plan, map, mut opened) = match state.view() {
            Some(view) => (view.partial, view.plan, view.map, None),
            None => {
                let blob = client
                    .blob(&source.host, &source.repo, &digest, 0)
                    .await
                    .map_err(upstream)?;
                let size = blob.size.ok_or_else(|| {
                    FetchError::Upstream(format!("{} sent no blob size", source.host), 502)
                })?;
                let plan = ChunkPlan::for_size(size, DEFAULT_CHUNK_SIZE)
                    .map_err(|e| FetchError::Upstream(e.to_string(), 502))?;
                let partial = self.open_partial(&digest, plan).await?;
                (partial, plan, None, Some(blob))
            }
        };
        let mut have: Vec<bool> = vec![false; plan.count() as usize];
        for i in partial.claimed() {
            if let Some(h) = have.get_mut(i as usize) {
                *h = true;
            }
        }
        if opened.is_some() && have.iter().any(|h| *h) {
            // An earlier run left chunks: fetch only what is missing.
            opened = None;
        }
        if state.view().is_some() {
            // Handing over from peers: a client being streamed the blob
            // keeps its place.
            state.set_source("upstream");
        } else {
            state.set_plan(partial.clone(), plan, map.clone(), "upstream");
            for (i, h) in have.iter().enumerate() {
                if *h {
                    state.mark_checked(i as u32);
                }
            }
        }
        tracing::info!(%digest, host = %source.host, missing = have.iter().filter(|h| !**h).count(), of = plan.count(), "fetching from upstream");
        // Without a map, hash in order (going on from the prefix a leader
        // gave, after a takeover) and offer the chunks as they come.
        let mut builder = match (&map, state.view().and_then(|v| v.prefix)) {
            (Some(_), _) => None,
            (None, Some(prefix)) if prefix.plan() == plan => {
                Some(ChunkMapBuilder::from_prefix(&prefix))
            }
            (None, _) => Some(ChunkMapBuilder::new(digest.algorithm(), plan)),
        };
        if let Some(b) = builder.as_mut() {
            catch_up(b, &partial, &have).await?;
            state.set_prefix(b.prefix());
            if let Err(e) = self.network().provide(&digest).await {
                tracing::debug!(%digest, error = %e, "could not announce a partial blob");
            }
        }
        for run in missing_runs(&have) {
            let mut next = run.start;
            let mut attempts = 0;
            while next < run.end {
                attempts += 1;
                // The response opened to learn the size serves the first
                // run; every other run is its own range request.
                let response = match opened.take() {
                    Some(blob) if next == 0 => Ok(blob),
                    _ => {
                        let byte_range = |i: u32| {
                            plan.range(i)
                                .map_err(|e| FetchError::Upstream(e.to_string(), 502))
                        };
                        let (start, end) = (byte_range(next)?.start, byte_range(run.end - 1)?.end);
                        client
                            .blob_range(&source.host, &source.repo, &digest, start, end - 1)
                            .await
                            .map_err(upstream)
                    }
                };
                let result = match response {
                    Ok(blob) => {
                        let check = match builder.as_mut() {
                            Some(b) => Check::Hash(b),
                            None => Check::Map(map.as_deref()),
                        };
                        self.fill(state, &partial, plan, check, blob, &mut next, run.end)
                            .await
                    }
                    Err(e) => Err(e),
                };
                match result {
                    Ok(()) => {}
                    Err(e) if attempts < RUN_ATTEMPTS && next < run.end => {
                        tracing::info!(%digest, error = %e, resume_at = next, "upstream transfer broke; resuming");
                    }
                    Err(e) => return Err(e),
                }
            }
            for h in &mut have[run.start as usize..run.end as usize] {
                *h = true;
            }
            if let Some(b) = builder.as_mut() {
                catch_up(b, &partial, &have).await?;
                state.set_prefix(b.prefix());
            }
        }
        // Hashed here in order: the map comes with it, so peers get it
        // without this node reading the blob again.
        let built = match builder.map(ChunkMapBuilder::finish) {
            Some(Ok((built, actual))) if actual == digest => Some(built),
            Some(Ok((_, actual))) => {
                partial.discard().await;
                return Err(FetchError::Corrupt(format!(
                    "the blob from {} is {actual}, not {digest}",
                    source.host
                )));
            }
            Some(Err(e)) => {
                tracing::warn!(%digest, error = %e, "could not build the chunk map while fetching");
                None
            }
            None => None,
        };
        // Hashed in order to the digest on the way in: proven.
        let proven = built.is_some();
        let map = map.map(|m| (*m).clone()).or(built);
        let committed = if proven {
            partial.commit_proven(&digest, map.as_ref()).await
        } else {
            partial.commit(&digest, map.as_ref()).await
        };
        match committed {
            Ok(info) => {
                let secs = started.elapsed().as_secs_f64();
                tracing::info!(%digest, size = info.size, secs = format!("{secs:.2}"), "fetched from upstream");
                Ok(info)
            }
            Err(StoreError::DigestMismatch { expected, actual }) => Err(FetchError::Corrupt(
                format!("the blob from {} is {actual}, not {expected}", source.host),
            )),
            Err(e) => Err(e.into()),
        }
    }

    /// Writes the chunks a response carries, from chunk `*next` on, until
    /// `end` or the stream ends; `*next` says how far it got.
    #[allow(clippy::too_many_arguments)]
    pub(super) async fn fill(
        &self,
        state: &DownloadState,
        partial: &PartialBlob,
        plan: ChunkPlan,
        mut check: Check<'_>,
        blob: crate::upstream::UpstreamBlob,
        next: &mut u32,
        end: u32,
    ) -> Result<(), FetchError> {
        let mut stream = blob.stream;
        let mut buf = BytesMut::new();
        while *next < end {
            let want = plan
                .len_of(*next)
                .map_err(|e| FetchError::Upstream(e.to_string(), 502))?
                as usize;
            while buf.len() < want {
                match stream.next().await {
                    Some(Ok(bytes)) => {
                        Metrics::add(
                            &self.metrics.upstream_bytes_received_total,
                            bytes.len() as u64,
                        );
                        buf.extend_from_slice(&bytes);
                    }
                    Some(Err(e)) => {
                        return Err(FetchError::Upstream(e.to_string(), e.status().as_u16()));
                    }
                    None => {
                        return Err(FetchError::Upstream(
                            "upstream response ended early".into(),
                            502,
                        ));
                    }
                }
            }
            let chunk: Bytes = buf.split_to(want).freeze();
            // With a map (peers were tried first) a chunk is checked at
            // once; without, it extends the prefix, and the whole blob is
            // checked at commit.
            match &mut check {
                Check::Map(Some(map)) if map.judge(&state.digest, *next, &chunk).is_err() => {
                    return Err(FetchError::Upstream(
                        format!("chunk {} from upstream does not match the chunk map", *next),
                        502,
                    ));
                }
                Check::Map(_) => {}
                Check::Vouch => state.vouch(*next, chunk_hash(&chunk)),
                Check::Hash(builder) => {
                    let before = builder.fed();
                    if before == u64::from(*next) * u64::from(plan.chunk_size()) {
                        builder.update(&chunk);
                    }
                }
            }
            let offset = u64::from(*next) * u64::from(plan.chunk_size());
            partial.write_chunk(*next, offset, chunk.to_vec()).await?;
            if let Check::Hash(builder) = &check {
                state.set_prefix(builder.prefix());
            }
            state.mark_checked(*next);
            *next += 1;
        }
        Ok(())
    }
}

/// How [`Fetcher::fill`] treats each chunk.
pub(super) enum Check<'a> {
    /// Against the map peers gave (if any).
    Map(Option<&'a ChunkMap>),
    /// Fed to the chain, in order.
    Hash(&'a mut ChunkMapBuilder),
    /// Vouched for with its hash, in a split fetch (`split.rs`).
    Vouch,
}

/// Feeds `builder` the chunks already held that come next in order.
async fn catch_up(
    builder: &mut ChunkMapBuilder,
    partial: &PartialBlob,
    have: &[bool],
) -> Result<(), FetchError> {
    let chunk = u64::from(builder.plan().chunk_size());
    loop {
        let fed = builder.fed();
        let index = fed / chunk;
        if !fed.is_multiple_of(chunk) || !have.get(index as usize).copied().unwrap_or(false) {
            return Ok(());
        }
        let len = chunk.min(partial.size() - fed) as usize;
        let bytes = partial.read_at(fed, len).await?;
        builder.update(&bytes);
    }
}

/// Maximal runs of chunks not yet held.
fn missing_runs(have: &[bool]) -> Vec<std::ops::Range<u32>> {
    let missing: Vec<bool> = have.iter().map(|h| !h).collect();
    shoal_protocol::share::flag_runs(&missing)
}

#[cfg(test)]
mod tests {
    use super::missing_runs;

    #[test]
    fn runs_of_missing_chunks() {
        assert_eq!(missing_runs(&[]), vec![]);
        assert_eq!(missing_runs(&[false, false]), vec![0..2]);
        assert_eq!(
            missing_runs(&[true, false, false, true, false]),
            vec![1..3, 4..5]
        );
        assert_eq!(missing_runs(&[true, true]), vec![]);
    }
}
