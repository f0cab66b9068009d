//! Fetches a blob from the peers that provide it, several at once, checking
//! every chunk against a chunk map anchored in the digest (`chain.rs`).
//!
//! A fetch runs as its own task, one per digest ([`Downloads`]): clients
//! asking for the same blob join it, and a client that goes away does not
//! stop it. It finds providers (banned ones left out, the quickest first),
//! asks them for chunk maps and have-maps, and runs one [`Worker`] per
//! request stream. Honest maps are identical (the plan follows from the
//! size), so the most common one is tried first; if the chunks prove it
//! false, its backers are banned and the next is tried, keeping every chunk
//! already stored that checks under it.
//!
//! The partial file and its chunk bitmap persist: a fetch of a blob an
//! earlier run left half done checks what is there again and fetches only
//! the rest.
//!
//! End-game: when nothing is left to hand out, a chunk outstanding for
//! [`ENDGAME_AFTER`] is asked of an idle provider too; the first good copy
//! wins and the other request is abandoned.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::stream::FuturesUnordered;
use futures_util::{FutureExt, StreamExt};
use libp2p::PeerId;
use shoal_protocol::Digest;
use shoal_protocol::chain::{ChainVerifier, ChunkMap};
use shoal_protocol::wire::Message;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

use super::chain_window::ChainWindow;
use super::downloads::{Download, DownloadState, Downloads, Finished};
use super::framed::FrameError;
pub use super::from_upstream::UpstreamSource;
use super::peers::{LIE_BAN, PeerBook};
use super::schedule::{Availability, Schedule};
use super::session::Session;
use super::worker::{Round, STALL_LIMIT, Worker};
use crate::limits::RateLimiter;
use crate::metrics::Metrics;
use crate::network::NetworkHandle;
use crate::store::{BlobInfo, Store, StoreError};
use crate::upstream::UpstreamClient;

pub const MAX_PROVIDERS: usize = 4;
/// Streams (requests in flight) per provider: one request at a time per
/// stream, so several keep a provider's pipe full.
pub const STREAMS_PER_PEER: usize = 4;
/// How long a provider lookup may take before the answer is "nobody".
pub const FIND_DEADLINE: Duration = Duration::from_secs(2);
/// After the first provider answered with its map, how long the others
/// get before the fetch starts (their maps are compared before any chunk
/// is asked for). A provider slower than this — one computing the map of
/// a blob it just received — joins the fetch when it answers, if its map
/// is the one the fetch follows.
pub const MAP_GRACE: Duration = Duration::from_millis(1500);
/// End-game: once nothing is left to hand out, a chunk requested this long
/// ago and not yet delivered is asked of an idle provider too.
pub const ENDGAME_AFTER: Duration = Duration::from_millis(500);
/// With an upstream behind the peers: no chunk for this long hands the
/// rest of the blob over to the upstream.
pub const HANDOVER_AFTER: Duration = Duration::from_secs(2);
/// Streams tried for a provider's chunk map before it is left out.
const MAP_TRIES: usize = 3;
/// Pause before another stream is tried for a chunk map.
const MAP_RETRY: Duration = Duration::from_millis(20);
/// Downloads running at once; more wait for a slot.
pub const MAX_DOWNLOADS: usize = 16;

#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    #[error("no peer provides {0}")]
    NotFound(Digest),
    #[error("every provider of {0} failed or lied")]
    ProvidersFailed(Digest),
    #[error("store: {0}")]
    Store(#[from] StoreError),
    #[error("the node is stopping")]
    Stopped,
    /// The upstream registry failed (message, HTTP status to answer with).
    #[error("upstream: {0}")]
    Upstream(String, u16),
    /// The bytes assembled do not have the digest (nothing was kept).
    #[error("{0}")]
    Corrupt(String),
}

#[derive(Debug, Clone)]
pub struct Fetcher {
    network: NetworkHandle,
    pub(super) store: Store,
    pub(super) metrics: Arc<Metrics>,
    /// Where blobs no peer delivers come from, if anywhere.
    upstream: Option<UpstreamClient>,
    peers: PeerBook,
    downloads: Downloads,
    slots: Arc<Semaphore>,
    /// Downloads stop with the node; their partial blobs stay for the next
    /// run to resume.
    stop: CancellationToken,
    /// Shared by every download's streams (`[limits] peer_download`).
    download_limit: RateLimiter,
    /// Nodes that fetch one blob from upstream together, each a range of
    /// it (`[upstream] split`); 1: one fetches, the others follow it.
    split: usize,
    /// The blobs followed at once share one window of asks.
    chain_window: ChainWindow,
}

/// Map asks still open when a download starts ([`Fetcher::ask_maps`]).
type LateMaps = FuturesUnordered<futures_util::future::BoxFuture<'static, Option<Candidate>>>;

/// A provider that answered with a chunk map, and the stream it answered on.
struct Candidate {
    peer: PeerId,
    map: ChunkMap,
    avail: Availability,
    session: Session,
}

/// For maps that disagree, the chunks on either side of each state where
/// they differ (state i is the end of chunk i and the start of chunk i+1).
fn disputed_chunks(maps: &[(ChunkMap, Vec<PeerId>)]) -> Vec<u32> {
    let Some((first, _)) = maps.first() else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for (other, _) in &maps[1..] {
        for i in first.differing_states(other) {
            out.push(i);
            out.push(i + 1);
        }
    }
    out
}

impl Fetcher {
    pub fn new(
        network: NetworkHandle,
        store: Store,
        metrics: Arc<Metrics>,
        downloads: Downloads,
        stop: CancellationToken,
    ) -> Fetcher {
        Fetcher {
            network,
            store,
            metrics,
            peers: PeerBook::default(),
            downloads,
            slots: Arc::new(Semaphore::new(MAX_DOWNLOADS)),
            stop,
            upstream: None,
            download_limit: RateLimiter::unlimited(),
            split: 1,
            chain_window: ChainWindow::default(),
        }
    }

    /// Splits a blob several nodes want from upstream at once among up to
    /// `fetchers` of them (`split.rs`).
    pub fn with_upstream_split(mut self, fetchers: usize) -> Fetcher {
        self.split = fetchers.clamp(1, super::split::MAX_PARTNERS);
        self
    }

    /// The partial blob of `digest` laid out by `plan` (the one an earlier
    /// run left, if its shape matches), opened off the async threads.
    pub(super) async fn open_partial(
        &self,
        digest: &Digest,
        plan: shoal_protocol::chunk::ChunkPlan,
    ) -> Result<crate::store::PartialBlob, StoreError> {
        let (store, d) = (self.store.clone(), digest.clone());
        tokio::task::spawn_blocking(move || store.partial_blob(&d, plan.size(), plan.chunk_size()))
            .await
            .map_err(StoreError::from)?
    }

    pub(super) fn chain_window(&self) -> &ChainWindow {
        &self.chain_window
    }

    pub(super) fn upstream_split(&self) -> usize {
        self.split
    }

    /// Receives chunks from peers no faster than `limit`, over all
    /// downloads together.
    pub fn with_download_limit(mut self, limit: RateLimiter) -> Fetcher {
        self.download_limit = limit;
        self
    }

    /// Falls back to `client` for blobs peers do not deliver.
    pub fn with_upstream(mut self, client: UpstreamClient) -> Fetcher {
        self.upstream = Some(client);
        self
    }

    pub fn network(&self) -> &NetworkHandle {
        &self.network
    }

    pub fn downloads(&self) -> &Downloads {
        &self.downloads
    }

    pub(super) fn download_limit(&self) -> &RateLimiter {
        &self.download_limit
    }

    pub(super) fn peer_book(&self) -> &PeerBook {
        &self.peers
    }

    pub(super) fn stop_token(&self) -> &CancellationToken {
        &self.stop
    }

    /// Providers of `digest` other than this node, banned ones left out,
    /// the quickest first.
    async fn providers(&self, digest: &Digest) -> Vec<PeerId> {
        let me = self.network.peer_id();
        let found = self
            .network
            .find_providers(digest, MAX_PROVIDERS * 2, FIND_DEADLINE)
            .await
            .unwrap_or_default();
        let found: Vec<PeerId> = found.into_iter().filter(|p| *p != me).collect();
        Metrics::add(&self.metrics.dht_providers_found_total, found.len() as u64);
        let mut ranked = self
            .peers
            .rank(found.clone(), |p| self.network.is_lan_peer(p));
        if ranked.is_empty() {
            // Everyone who has it is banned: asking again costs a liar's
            // chunk at most, refusing makes the blob unavailable.
            ranked = found;
        }
        ranked.truncate(MAX_PROVIDERS);
        ranked
    }

    /// A provider's claim of the blob's size, without downloading it (HEAD).
    pub async fn remote_size(&self, digest: &Digest) -> Option<u64> {
        if let Some(size) = self.downloads.get(digest).and_then(|d| d.view()) {
            return Some(size.plan().size());
        }
        let mut control = self.network.stream_control();
        for peer in self.providers(digest).await {
            let Some(mut s) = Session::open(&mut control, peer).await else {
                continue;
            };
            if let Ok(Message::Info { size, .. }) = s
                .ask(&Message::GetInfo {
                    digest: digest.clone(),
                })
                .await
            {
                return Some(size);
            }
        }
        None
    }

    /// Starts fetching `digest` from peers (then from `source` upstream, if
    /// given and configured), or joins the fetch under way.
    pub fn begin(&self, digest: &Digest, source: Option<UpstreamSource>) -> Download {
        self.downloads.join_or_start(digest, |state| {
            let fetcher = self.clone();
            tokio::spawn(async move { fetcher.run(state, source).await });
        })
    }

    /// Makes `digest` local, from peers. Concurrent calls share one download.
    pub async fn fetch(&self, digest: &Digest) -> Result<BlobInfo, FetchError> {
        if let Some(size) = self.store.blob_size(digest)? {
            return Ok(BlobInfo {
                digest: digest.clone(),
                size,
            });
        }
        match self.begin(digest, None).finished().await {
            Finished::Committed(info) => Ok(info),
            Finished::Failed {
                not_found: true, ..
            } => Err(FetchError::NotFound(digest.clone())),
            Finished::Failed { .. } => Err(FetchError::ProvidersFailed(digest.clone())),
        }
    }

    async fn run(self, state: Arc<DownloadState>, source: Option<UpstreamSource>) {
        let digest = state.digest.clone();
        let finished = match self.slots.clone().acquire_owned().await {
            Ok(_slot) => match self.store.blob_size(&digest) {
                Ok(Some(size)) => Finished::Committed(BlobInfo {
                    digest: digest.clone(),
                    size,
                }),
                Ok(None) => {
                    let started = Instant::now();
                    let upstream = self.upstream.clone().zip(source);
                    let work = async {
                        let early = upstream.is_some().then(|| self.claim_early(&digest));
                        let from_peers = self.download(&state, upstream.is_some()).await;
                        tracing::debug!(%digest, ms = started.elapsed().as_millis() as u64, ok = from_peers.is_ok(), "asked peers");
                        match (&from_peers, &upstream, early) {
                            (
                                Err(FetchError::NotFound(_) | FetchError::ProvidersFailed(_)),
                                Some((client, source)),
                                Some(early),
                            ) => self.upstream_once(&state, client, source, early).await,
                            (_, _, Some(early)) => {
                                self.withdraw_claim(&digest, early).await;
                                from_peers
                            }
                            (_, _, None) => from_peers,
                        }
                    };
                    let result = tokio::select! {
                        r = work => r,
                        () = self.stop.cancelled() => Err(FetchError::Stopped),
                    };
                    if result.is_err() && state.view().is_some() {
                        // It was announced as a partial provider.
                        let _ = self.network.unprovide(&digest).await;
                    }
                    if result.is_ok() {
                        self.metrics.observe_fetch(started.elapsed());
                    }
                    match result {
                        Ok(info) => Finished::Committed(info),
                        Err(e) => {
                            tracing::info!(%digest, error = %e, "fetch from peers failed");
                            Finished::Failed {
                                not_found: matches!(e, FetchError::NotFound(_)),
                                reason: e.to_string(),
                            }
                        }
                    }
                }
                Err(e) => Finished::Failed {
                    not_found: false,
                    reason: e.to_string(),
                },
            },
            Err(_) => Finished::Failed {
                not_found: false,
                reason: "shutting down".into(),
            },
        };
        self.downloads.end(&state, finished);
    }

    /// [`STREAMS_PER_PEER`] workers taking chunks from `peer` for `round`,
    /// the first on the stream the peer answered its map on.
    fn workers(
        &self,
        peer: PeerId,
        session: Session,
        round: &Arc<Round>,
    ) -> impl Iterator<Item = Worker> + use<> {
        let mut session = Some(session);
        let (control, round) = (self.network.stream_control(), round.clone());
        (0..STREAMS_PER_PEER).map(move |slot| Worker {
            peer,
            primary: slot == 0,
            session: session.take(),
            control: control.clone(),
            round: round.clone(),
        })
    }

    /// Opens a stream to each provider and asks for its chunk map (and,
    /// unless the blob is one chunk, its have-map), all at once. Returns
    /// once every provider answered, or [`MAP_GRACE`] after the first did,
    /// with the asks still open: a provider that answers later (one still
    /// hashing a blob it has just received) joins the download then.
    async fn ask_maps(&self, digest: &Digest, providers: &[PeerId]) -> (Vec<Candidate>, LateMaps) {
        let mut asks: LateMaps = providers
            .iter()
            .map(|peer| {
                let mut control = self.network.stream_control();
                let (peer, digest) = (*peer, digest.clone());
                async move {
                    // A few tries: a stream opened on a connection that is
                    // just closing (a duplicate between the same two peers)
                    // fails at once, and one the provider's libp2p-stream
                    // dropped in a burst (a client asking for several blobs
                    // at once) is closed unanswered; a fresh stream a moment
                    // later gets through. Without it the provider sat out
                    // the whole blob.
                    let mut got = None;
                    for attempt in 0..MAP_TRIES {
                        if attempt > 0 {
                            tokio::time::sleep(MAP_RETRY).await;
                        }
                        let Some(mut session) = Session::open(&mut control, peer).await else {
                            tracing::info!(%peer, "could not open a stream to a provider");
                            return None;
                        };
                        match session
                            .ask(&Message::GetMap {
                                digest: digest.clone(),
                            })
                            .await
                        {
                            Ok(Message::Map { digest: d, map }) if d == digest => {
                                got = Some((session, map));
                                break;
                            }
                            Err(e @ (FrameError::Io(_) | FrameError::Closed)) => {
                                tracing::debug!(%peer, error = %e, "map request broke; trying a fresh stream");
                            }
                            other => {
                                tracing::info!(%peer, ok = other.is_ok(), "a provider gave no chunk map");
                                return None;
                            }
                        }
                    }
                    let (mut session, map) = got?;
                    ChainVerifier::new(digest.clone(), map.clone()).ok()?;
                    let mut avail = None;
                    if map.plan().count() > 1 {
                        match session
                            .ask(&Message::GetHave {
                                digest: digest.clone(),
                            })
                            .await
                        {
                            Ok(Message::Have { bitmap, .. }) => {
                                let count = map.plan().count() as usize;
                                let bits = super::bitmap::decode(&bitmap, count);
                                if !bits.iter().all(|b| *b) {
                                    avail = Some(bits);
                                }
                            }
                            _ => return None,
                        }
                    }
                    Some(Candidate {
                        peer,
                        map,
                        avail,
                        session,
                    })
                }
                .boxed()
            })
            .collect();
        let mut out = Vec::new();
        let mut grace: Option<tokio::time::Instant> = None;
        loop {
            let next = match grace {
                None => asks.next().await,
                Some(until) => match tokio::time::timeout_at(until, asks.next()).await {
                    Ok(next) => next,
                    Err(_) => break,
                },
            };
            let Some(answer) = next else { break };
            if let Some(c) = answer {
                // A one-chunk blob needs no second opinion: its only chunk
                // is checked against the digest itself.
                let single = c.map.plan().count() <= 1;
                out.push(c);
                if single {
                    break;
                }
                grace.get_or_insert_with(|| tokio::time::Instant::now() + MAP_GRACE);
            }
        }
        (out, asks)
    }

    /// From peers. With an upstream to hand over to, peers that stop
    /// delivering are given up on sooner.
    pub(super) async fn download(
        &self,
        state: &Arc<DownloadState>,
        upstream_behind: bool,
    ) -> Result<BlobInfo, FetchError> {
        let digest = state.digest.clone();
        let providers = self.providers(&digest).await;
        if providers.is_empty() {
            return Err(FetchError::NotFound(digest));
        }
        let (mut answers, mut late) = self.ask_maps(&digest, &providers).await;
        if answers.is_empty() {
            // Streams to a busy peer are sometimes refused (its accept
            // queue overflowed); one more round before giving up.
            tokio::time::sleep(Duration::from_millis(100)).await;
            (answers, late) = self.ask_maps(&digest, &providers).await;
        }
        tracing::info!(%digest, providers = providers.len(), answered = answers.len(), "fetching from peers");
        if answers.is_empty() {
            return Err(FetchError::NotFound(digest));
        }
        // Candidate maps, most backers first (ties: the quickest answer).
        let mut candidates: Vec<(ChunkMap, Vec<PeerId>)> = Vec::new();
        for c in &answers {
            match candidates.iter_mut().find(|(m, _)| *m == c.map) {
                Some((_, peers)) => peers.push(c.peer),
                None => candidates.push((c.map.clone(), vec![c.peer])),
            }
        }
        candidates.sort_by_key(|(_, peers)| std::cmp::Reverse(peers.len()));
        let disputed = disputed_chunks(&candidates);
        let mut pool: Vec<(PeerId, Availability, Session)> = answers
            .into_iter()
            .map(|c| (c.peer, c.avail, c.session))
            .collect();
        // Chunks rejected under a disproved map that fit the next one.
        let mut orphans: std::collections::HashMap<u32, Vec<u8>> = Default::default();
        for (map, backers) in candidates.clone() {
            let verifier = ChainVerifier::new(digest.clone(), map.clone())
                .map_err(|_| FetchError::ProvidersFailed(digest.clone()))?;
            let plan = verifier.plan();
            let partial = self.open_partial(&digest, plan).await?;
            let map = Arc::new(map);
            let first_map = state.view().is_none();
            state.set_map(partial.clone(), map.clone());
            if first_map {
                // Checked chunks are served while the rest arrives: other
                // nodes find this one as a (partial) provider.
                if let Err(e) = self.network.provide(&digest).await {
                    tracing::debug!(%digest, error = %e, "could not announce a partial blob");
                }
            }
            // What an earlier run (or an earlier map) left: kept if it
            // checks under this map.
            let mut stored = BTreeSet::new();
            let mut verifier = verifier;
            for index in partial.claimed() {
                let ok = match plan.range(index) {
                    Ok(range) => partial
                        .read_at(range.start, (range.end - range.start) as usize)
                        .await
                        .is_ok_and(|bytes| map.judge(&digest, index, &bytes).is_ok()),
                    Err(_) => false,
                };
                if ok {
                    verifier.accept(index);
                    stored.insert(index);
                    state.mark_checked(index);
                } else {
                    partial.forget(index).await?;
                }
            }
            for (index, bytes) in std::mem::take(&mut orphans) {
                if stored.contains(&index) || map.judge(&digest, index, &bytes).is_err() {
                    continue;
                }
                let offset = u64::from(index) * u64::from(plan.chunk_size());
                partial.write_chunk(index, offset, bytes).await?;
                verifier.accept(index);
                stored.insert(index);
                state.mark_checked(index);
            }
            if !stored.is_empty() {
                tracing::info!(%digest, resumed = stored.len(), of = plan.count(), "resuming a partial blob");
            }
            if verifier.complete() {
                state.mark_proven();
                return Ok(partial.commit_proven(&digest, Some(&map)).await?);
            }
            // Last chunk first: it anchors the map in the digest.
            let mut urgent: Vec<u32> = plan.count().checked_sub(1).into_iter().collect();
            urgent.extend(disputed.iter().copied());
            let mut schedule = Schedule::new(verifier, stored, urgent);
            schedule.stall_limit = if upstream_behind {
                HANDOVER_AFTER
            } else {
                STALL_LIMIT
            };
            for (peer, avail, _) in &pool {
                schedule.set_availability(*peer, avail.clone());
            }
            let round = Arc::new(Round {
                schedule: tokio::sync::Mutex::new(schedule),
                wake: tokio::sync::Notify::new(),
                map: map.clone(),
                other_maps: candidates
                    .iter()
                    .filter(|(m, _)| m != map.as_ref())
                    .map(|(m, _)| Arc::new(m.clone()))
                    .collect(),
                digest: digest.clone(),
                partial: partial.clone(),
                state: state.clone(),
                metrics: self.metrics.clone(),
                peers: self.peers.clone(),
                download_limit: self.download_limit.clone(),
            });
            // Every provider serves chunks: the map's backers and the
            // others alike (chunks are checked anyway).
            let mut workers = FuturesUnordered::new();
            for (peer, _, session) in pool.drain(..) {
                workers.extend(self.workers(peer, session, &round).map(Worker::run));
            }
            let mut results = Vec::new();
            loop {
                tokio::select! {
                    done = workers.next() => match done {
                        Some(result) => results.push(result),
                        None => break,
                    },
                    // A provider whose map came after the grace joins, if
                    // it serves the map this round follows.
                    Some(answer) = late.next(), if !late.is_empty() => {
                        if let Some(c) = answer.filter(|c| c.map == *map && !self.peers.is_banned(&c.peer)) {
                            tracing::info!(%digest, peer = %c.peer, "a provider answered late; it joins the fetch");
                            round.schedule.lock().await.set_availability(c.peer, c.avail);
                            round.wake.notify_waiters();
                            workers.extend(self.workers(c.peer, c.session, &round).map(Worker::run));
                        }
                    }
                }
            }
            let s = round.schedule.lock().await;
            if s.verifier.complete() {
                // The digest proved this map: whoever served another lied,
                // and so did whoever sent bytes it rejected.
                for (other, liars) in &candidates {
                    if other != map.as_ref() {
                        tracing::warn!(%digest, ?liars, "served a chunk map the digest disproves");
                        Metrics::add(&self.metrics.peers_banned_total, liars.len() as u64);
                        for liar in liars {
                            self.peers.ban(*liar, LIE_BAN);
                        }
                    }
                }
                for liar in &s.rejected {
                    self.peers.ban(*liar, LIE_BAN);
                }
                drop(s);
                // Every chunk in the file was checked under this map (those
                // an earlier round left were read back and checked).
                return Ok(partial.commit_proven(&digest, Some(&map)).await?);
            }
            let disproved = s.map_forged || !s.failures.is_empty();
            drop(s);
            let mut s = round.schedule.lock().await;
            orphans = std::mem::take(&mut s.orphans);
            if !disproved {
                // Nobody could supply the rest; not a lie.
                return Err(FetchError::ProvidersFailed(digest.clone()));
            }
            // Either two peers agreed on bytes the map rejects, or honest-
            // looking bytes failed under it: its backers are banned, the
            // others get another chance under the next candidate map.
            tracing::warn!(%digest, ?backers, forged = s.map_forged, "chunk map failed; banning its sources");
            Metrics::add(&self.metrics.peers_banned_total, backers.len() as u64);
            for backer in &backers {
                self.peers.ban(*backer, LIE_BAN);
            }
            drop(s);
            for (peer, session) in results {
                if let Some(session) = session
                    && !backers.contains(&peer)
                    && !pool.iter().any(|(p, _, _)| *p == peer)
                {
                    pool.push((peer, None, session));
                }
            }
        }
        Err(FetchError::ProvidersFailed(digest))
    }
}
