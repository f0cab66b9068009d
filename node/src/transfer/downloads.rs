//! Blobs being downloaded right now: one entry per digest, shared by every
//! client waiting for the blob, by the transfer server (which re-serves
//! checked chunks to other peers before the blob is complete), and by the
//! task doing the download.
//!
//! Progress is published on a `watch` channel. A client streaming the blob
//! is given the checked chunks in order as they arrive, all but the last:
//! the last is released only once the whole chain is proven, i.e. the
//! bytes have the blob's digest. If the download fails instead, the
//! stream ends in an error and the client's connection is cut short —
//! never completed with wrong bytes.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use futures_util::Stream;
use shoal_protocol::Digest;
use shoal_protocol::chain::{ChainPrefix, ChunkMap, PrefixTail};
use shoal_protocol::chunk::ChunkPlan;
use shoal_protocol::share::{ChunkHash, SplitShare};
use tokio::sync::watch;

use crate::store::{BlobInfo, PartialBlob};

/// Largest piece handed to a streaming client at once.
const STREAM_PIECE: u64 = 1024 * 1024;

/// How a download ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Finished {
    Committed(BlobInfo),
    /// `not_found`: no peer (or upstream) had the blob at all.
    Failed {
        not_found: bool,
        reason: String,
    },
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Progress {
    /// Known once a chunk map was chosen.
    pub size: Option<u64>,
    /// Bytes from the start a client may be sent now.
    pub streamable: u64,
    /// Bumped when the chunk map in use is replaced: bytes already
    /// streamed under the old one can no longer be vouched for.
    pub epoch: u32,
    /// Where the bytes come from now: "peers" or "upstream".
    pub source: Option<&'static str>,
    pub finished: Option<Finished>,
}

/// What the transfer server needs to serve a blob still arriving.
#[derive(Debug, Clone)]
pub struct PartialView {
    pub partial: PartialBlob,
    pub plan: ChunkPlan,
    /// The chunk map the chunks are checked against; none while bytes come
    /// from an upstream registry with no map known.
    pub map: Option<Arc<ChunkMap>>,
    /// Without a map: the chain states known so far, hashed here from
    /// upstream bytes in order, or taken from the node that is doing so
    /// (see `follow.rs`). A chunk it covers is pinned, so it may be offered
    /// to peers; the rest wait for the whole-blob check at commit.
    pub prefix: Option<ChainPrefix>,
    /// In a split fetch (`split.rs`): the ranges this node fetches from
    /// upstream and the hashes it vouches for them with. Its chunks wait
    /// for the whole-blob check like a prefix's do, but may be offered.
    pub split: Option<SplitShare>,
    /// One flag per chunk: written (and checked against `map` or `prefix`,
    /// if any).
    pub checked: Vec<bool>,
}

impl PartialView {
    pub fn plan(&self) -> ChunkPlan {
        self.plan
    }

    /// Whether peers may be offered chunk `index` before the blob is whole.
    pub fn servable(&self, index: u32) -> bool {
        let pinned = self.map.is_some()
            || self.split.is_some()
            || self.prefix.as_ref().is_some_and(|p| p.covers(index));
        pinned && self.checked.get(index as usize).copied().unwrap_or(false)
    }

    /// Whether peers can be offered anything of it yet.
    pub fn offerable(&self) -> bool {
        self.map.is_some() || self.prefix.is_some() || self.split.is_some()
    }

    /// The chunks that are [`servable`](Self::servable), in wire form: one
    /// bit per chunk, most significant first.
    pub fn bitmap(&self) -> Vec<u8> {
        super::bitmap::encode((0..self.checked.len() as u32).map(|i| self.servable(i)))
    }
}

/// One download's shared state. The download task writes; everyone reads.
#[derive(Debug)]
pub struct DownloadState {
    pub digest: Digest,
    view: Mutex<Option<PartialView>>,
    progress: watch::Sender<Progress>,
    /// Bumped whenever the view changes, so the transfer server can answer
    /// a `WaitChunk` the moment the chunk becomes servable.
    changes: watch::Sender<u64>,
    /// Whether every chunk is proven (the last chunk may be released).
    proven: Mutex<bool>,
}

impl DownloadState {
    fn new(digest: Digest) -> DownloadState {
        DownloadState {
            digest,
            view: Mutex::new(None),
            progress: watch::channel(Progress::default()).0,
            changes: watch::channel(0).0,
            proven: Mutex::new(false),
        }
    }

    fn view_mut<R>(&self, f: impl FnOnce(&mut Option<PartialView>) -> R) -> R {
        let mut view = self.view.lock().unwrap_or_else(|p| p.into_inner());
        f(&mut view)
    }

    /// As `view_mut`, for a change: whoever waits on [`changes`](Self::changes) looks again.
    fn change<R>(&self, f: impl FnOnce(&mut Option<PartialView>) -> R) -> R {
        let r = self.view_mut(f);
        self.touch();
        r
    }

    /// Wakes whoever waits on [`changes`](Self::changes).
    fn touch(&self) {
        self.changes.send_modify(|n| *n = n.wrapping_add(1));
    }

    /// Fires after every change to the view (a chunk checked, more chain
    /// states known, a new plan) and when the download finishes.
    pub fn changes(&self) -> watch::Receiver<u64> {
        self.changes.subscribe()
    }

    pub fn view(&self) -> Option<PartialView> {
        self.view_mut(|v| v.clone())
    }

    /// The chain states known from `from` on (all of them under a map),
    /// without copying the view out: a follower asks for them ten times a
    /// second.
    pub fn prefix_tail(&self, from: u32) -> Option<PrefixTail> {
        self.view_mut(|v| {
            let view = v.as_ref()?;
            match (&view.map, &view.prefix) {
                (Some(map), _) => Some(map.tail(from)),
                (None, prefix) => prefix.as_ref().map(|p| p.tail(from)),
            }
        })
    }

    /// [`PartialView::servable`] without copying the view out.
    pub fn servable(&self, index: u32) -> bool {
        self.view_mut(|v| v.as_ref().is_some_and(|view| view.servable(index)))
    }

    /// A chunk map was chosen (again): nothing checked under it yet.
    pub fn set_map(&self, partial: PartialBlob, map: Arc<ChunkMap>) {
        let plan = map.plan();
        self.set_plan(partial, plan, Some(map), "peers");
    }

    /// The blob's plan is known (and its map, if any); nothing written under
    /// it yet. Bytes streamed under an earlier plan are disowned.
    pub fn set_plan(
        &self,
        partial: PartialBlob,
        plan: ChunkPlan,
        map: Option<Arc<ChunkMap>>,
        source: &'static str,
    ) {
        let replaced = self.change(|v| {
            let replaced = v.is_some();
            *v = Some(PartialView {
                partial,
                plan,
                map,
                prefix: None,
                split: None,
                checked: vec![false; plan.count() as usize],
            });
            replaced
        });
        self.progress.send_modify(|p| {
            p.size = Some(plan.size());
            p.streamable = 0;
            p.source = Some(source);
            if replaced {
                p.epoch += 1;
            }
        });
    }

    /// Everything written so far is disowned (it was thrown away): the
    /// next plan starts from nothing, and streamed bytes are not vouched for.
    pub fn reset(&self) {
        let had = self.change(|v| v.take().is_some());
        *self.proven.lock().unwrap_or_else(|p| p.into_inner()) = false;
        if had {
            self.progress.send_modify(|p| {
                p.streamable = 0;
                p.epoch += 1;
            });
        }
    }

    /// More chain states are known (see [`PartialView::prefix`]).
    pub fn set_prefix(&self, prefix: ChainPrefix) {
        self.change(|v| {
            if let Some(view) = v.as_mut() {
                view.prefix = Some(prefix);
            }
        });
    }

    /// The download is (now) part of a split fetch, with `share` as this
    /// node's share of it.
    pub fn set_split(&self, share: SplitShare) {
        self.change(|v| {
            if let Some(view) = v.as_mut() {
                view.split = Some(share);
            }
        });
    }

    /// This node fetches `range` from upstream too (a split fetch).
    pub fn own(&self, range: std::ops::Range<u32>) {
        self.change(|v| {
            if let Some(split) = v.as_mut().and_then(|view| view.split.as_mut()) {
                split.own(range);
            }
        });
    }

    /// Chunk `index`, fetched from upstream in a split fetch, is vouched
    /// for with `hash`.
    pub fn vouch(&self, index: u32, hash: ChunkHash) {
        self.change(|v| {
            if let Some(split) = v.as_mut().and_then(|view| view.split.as_mut()) {
                split.vouch(index, hash);
            }
        });
    }

    /// The bytes come from elsewhere now (peers handed over to upstream).
    pub fn set_source(&self, source: &'static str) {
        self.progress.send_modify(|p| p.source = Some(source));
    }

    /// Chunk `index` is written and checked against the map.
    pub fn mark_checked(&self, index: u32) {
        let streamable = self.change(|v| {
            let view = v.as_mut()?;
            *view.checked.get_mut(index as usize)? = true;
            Some(self.streamable(view))
        });
        if let Some(s) = streamable {
            self.progress.send_if_modified(|p| {
                let grew = s > p.streamable;
                p.streamable = p.streamable.max(s);
                grew
            });
        }
    }

    /// Every chunk is proven: the whole blob has its digest.
    pub fn mark_proven(&self) {
        *self.proven.lock().unwrap_or_else(|p| p.into_inner()) = true;
        let streamable = self.view_mut(|v| v.as_ref().map(|view| self.streamable(view)));
        if let Some(s) = streamable {
            self.progress
                .send_modify(|p| p.streamable = p.streamable.max(s));
        }
    }

    /// Bytes from the start that are checked, in order; the last chunk is
    /// held back until the whole chain is proven.
    fn streamable(&self, view: &PartialView) -> u64 {
        let plan = view.plan();
        let prefix = view.checked.iter().take_while(|c| **c).count() as u64;
        let bytes = (prefix * u64::from(plan.chunk_size())).min(plan.size());
        if *self.proven.lock().unwrap_or_else(|p| p.into_inner()) {
            return bytes;
        }
        let last_start = u64::from(plan.count().saturating_sub(1)) * u64::from(plan.chunk_size());
        bytes.min(last_start)
    }

    pub fn finish(&self, finished: Finished) {
        self.progress.send_modify(|p| {
            if let Finished::Committed(info) = &finished {
                p.size = Some(info.size);
                p.streamable = info.size;
            }
            p.finished = Some(finished);
        });
        self.touch();
    }

    pub fn subscribe(&self) -> watch::Receiver<Progress> {
        self.progress.subscribe()
    }
}

/// A handle on one download, for whoever waits for it.
#[derive(Debug, Clone)]
pub struct Download {
    state: Arc<DownloadState>,
}

impl Download {
    pub fn digest(&self) -> &Digest {
        &self.state.digest
    }

    /// Waits until the size is known or the download ended; the progress
    /// then.
    pub async fn started(&self) -> Progress {
        let mut rx = self.state.subscribe();
        match rx
            .wait_for(|p| p.size.is_some() || p.finished.is_some())
            .await
        {
            Ok(p) => p.clone(),
            Err(_) => gone(),
        }
    }

    /// Waits until the download ended.
    pub async fn finished(&self) -> Finished {
        let mut rx = self.state.subscribe();
        match rx.wait_for(|p| p.finished.is_some()).await {
            Ok(p) => p.finished.clone().unwrap_or_else(gone_finished),
            Err(_) => gone_finished(),
        }
    }

    /// The blob's bytes in order, as they are checked (see the module
    /// doc); ends in an error, never in wrong bytes.
    pub fn body(self) -> impl Stream<Item = Result<Bytes, std::io::Error>> + Send + 'static {
        let rx = self.state.subscribe();
        let start_epoch = rx.borrow().epoch;
        futures_util::stream::unfold(
            (self, rx, 0u64, start_epoch),
            |(dl, mut rx, offset, epoch)| async move {
                loop {
                    let p = rx.borrow_and_update().clone();
                    if p.epoch != epoch && offset > 0 {
                        return Some((
                            Err(broken("the chunk map changed")),
                            (dl, rx, offset, epoch),
                        ));
                    }
                    if let Some(Finished::Failed { reason, .. }) = &p.finished {
                        return Some((Err(broken(reason)), (dl, rx, offset, epoch)));
                    }
                    let size = p.size.unwrap_or(u64::MAX);
                    if offset >= size {
                        return None;
                    }
                    if p.streamable > offset {
                        let len = (p.streamable - offset).min(STREAM_PIECE);
                        let Some(view) = dl.state.view() else {
                            return Some((Err(broken("no partial blob")), (dl, rx, offset, epoch)));
                        };
                        return match view.partial.read_at(offset, len as usize).await {
                            Ok(bytes) => {
                                Some((Ok(Bytes::from(bytes)), (dl, rx, offset + len, p.epoch)))
                            }
                            Err(e) => Some((Err(broken(e)), (dl, rx, offset, epoch))),
                        };
                    }
                    if rx.changed().await.is_err() {
                        return Some((Err(broken("download dropped")), (dl, rx, offset, epoch)));
                    }
                }
            },
        )
    }
}

fn broken(reason: impl std::fmt::Display) -> std::io::Error {
    std::io::Error::other(format!("blob download failed: {reason}"))
}

fn gone() -> Progress {
    Progress {
        finished: Some(gone_finished()),
        ..Progress::default()
    }
}

fn gone_finished() -> Finished {
    Finished::Failed {
        not_found: false,
        reason: "the download was dropped".into(),
    }
}

/// Split shares of downloads that committed, kept this many at most.
const RECENT_SHARES: usize = 64;

/// Every download under way, by digest.
#[derive(Debug, Clone, Default)]
pub struct Downloads {
    map: Arc<Mutex<HashMap<Digest, Arc<DownloadState>>>>,
    /// This node's share of the last split fetches that committed: its
    /// partners still ask for the hashes it vouched for (one that missed
    /// them would otherwise fetch those chunks from upstream again).
    recent_shares: Arc<Mutex<std::collections::VecDeque<(Digest, SplitShare)>>>,
}

impl Downloads {
    fn with<R>(&self, f: impl FnOnce(&mut HashMap<Digest, Arc<DownloadState>>) -> R) -> R {
        let mut map = self.map.lock().unwrap_or_else(|p| p.into_inner());
        f(&mut map)
    }

    /// The download of `digest` under way, if any.
    pub fn get(&self, digest: &Digest) -> Option<Arc<DownloadState>> {
        self.with(|m| m.get(digest).cloned())
    }

    /// Joins the download of `digest`, or registers a new one and hands its
    /// state to `start` (which must eventually call [`Downloads::end`]).
    pub fn join_or_start(
        &self,
        digest: &Digest,
        start: impl FnOnce(Arc<DownloadState>),
    ) -> Download {
        let (state, fresh) = self.with(|m| match m.get(digest) {
            Some(s) => (s.clone(), false),
            None => {
                let s = Arc::new(DownloadState::new(digest.clone()));
                m.insert(digest.clone(), s.clone());
                (s, true)
            }
        });
        if fresh {
            start(state.clone());
        }
        Download { state }
    }

    /// Publishes how the download ended and forgets it (but for its split
    /// share, if it committed).
    pub fn end(&self, state: &DownloadState, finished: Finished) {
        if matches!(finished, Finished::Committed(_))
            && let Some(share) = state.view().and_then(|v| v.split)
        {
            let mut recent = self.recent_shares.lock().unwrap_or_else(|p| p.into_inner());
            recent.retain(|(d, _)| *d != state.digest);
            if recent.len() >= RECENT_SHARES {
                recent.pop_front();
            }
            recent.push_back((state.digest.clone(), share));
        }
        self.with(|m| m.remove(&state.digest));
        state.finish(finished);
    }

    /// This node's share of a split fetch of `digest` that committed
    /// lately, if any.
    pub fn recent_share(&self, digest: &Digest) -> Option<SplitShare> {
        let recent = self.recent_shares.lock().unwrap_or_else(|p| p.into_inner());
        recent
            .iter()
            .find(|(d, _)| d == digest)
            .map(|(_, share)| share.clone())
    }

    /// Every download under way and its progress.
    pub fn list(&self) -> Vec<(Digest, Progress)> {
        self.with(|m| {
            m.values()
                .map(|s| (s.digest.clone(), s.progress.borrow().clone()))
                .collect()
        })
    }
}
