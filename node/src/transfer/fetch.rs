//! Fetches a blob from the peers that provide it, several at once, checking
//! every chunk against a chunk map anchored in the digest (`chain.rs`).
//!
//! One worker per provider (up to [`MAX_PROVIDERS`]) takes chunk indexes
//! from a shared queue, the last chunk first so the map is anchored at once.
//! A chunk that fails its check is put back and its sender dropped from this
//! fetch (and counted as banned); a peer that stalls past
//! [`CHUNK_TIMEOUT`] is dropped the same way. The assembled file is hashed
//! whole before it is committed (and, by the store, announced).
//!
//! End-game: when nothing is left to hand out, a chunk outstanding for
//! [`ENDGAME_AFTER`] is asked of an idle provider too; the first good copy
//! wins and the other request is abandoned.
//!
//! Not yet (swarm issue): rarest-first over have-maps, throughput scoring,
//! bans that outlive one fetch, resuming after a restart, and streaming
//! verified chunks to the client before the end.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use libp2p::{PeerId, StreamProtocol};
use shoal_protocol::Digest;
use shoal_protocol::chain::{ChainVerifier, ChunkMap};
use shoal_protocol::wire::{Message, PROTOCOL_NAME};

use super::framed::{self, FrameError, FrameReader};
use crate::metrics::Metrics;
use crate::network::NetworkHandle;
use crate::store::{BlobInfo, PartialBlob, Store, StoreError};

pub const MAX_PROVIDERS: usize = 4;
/// Streams (requests in flight) per provider: one request at a time per
/// stream, so several keep a provider's pipe full.
pub const STREAMS_PER_PEER: usize = 4;
/// How long a provider lookup may take before the answer is "nobody".
pub const FIND_DEADLINE: Duration = Duration::from_secs(2);
/// How long one request may take before its peer counts as stalled.
pub const CHUNK_TIMEOUT: Duration = Duration::from_secs(10);
/// End-game: once nothing is left to hand out, a chunk requested this long
/// ago and not yet delivered is asked of an idle provider too; the first
/// good copy wins and the slow request is abandoned.
pub const ENDGAME_AFTER: Duration = Duration::from_millis(500);

#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    #[error("no peer provides {0}")]
    NotFound(Digest),
    #[error("every provider of {0} failed or lied")]
    ProvidersFailed(Digest),
    #[error("store: {0}")]
    Store(#[from] StoreError),
}

#[derive(Debug, Clone)]
pub struct Fetcher {
    network: NetworkHandle,
    store: Store,
    metrics: Arc<Metrics>,
    /// One download per digest: later requests wait for it.
    inflight: Arc<Mutex<HashMap<Digest, Arc<tokio::sync::Mutex<()>>>>>,
}

struct Session {
    stream: libp2p::Stream,
    reader: FrameReader,
}

impl Session {
    async fn open(control: &mut libp2p_stream::Control, peer: PeerId) -> Option<Session> {
        let stream = tokio::time::timeout(
            CHUNK_TIMEOUT,
            control.open_stream(peer, StreamProtocol::new(PROTOCOL_NAME)),
        )
        .await
        .ok()?
        .ok()?;
        Some(Session {
            stream,
            reader: FrameReader::default(),
        })
    }

    async fn ask(&mut self, request: &Message) -> Result<Message, FrameError> {
        let exchange = async {
            framed::write(&mut self.stream, request).await?;
            self.reader.next(&mut self.stream).await
        };
        tokio::time::timeout(CHUNK_TIMEOUT, exchange)
            .await
            .map_err(|_| FrameError::Io(std::io::ErrorKind::TimedOut.into()))?
    }
}

/// State shared by the workers of one fetch.
struct Shared {
    queue: VecDeque<u32>,
    verifier: ChainVerifier,
    /// Chunks requested and not yet checked.
    in_flight: usize,
    /// Per chunk requested: when it was first asked for, and how many
    /// requests for it are outstanding (2 in the end-game).
    pending: HashMap<u32, (Instant, u32)>,
    /// Per chunk: who sent bytes that failed, and a fingerprint of them.
    failures: HashMap<u32, Vec<(PeerId, Digest)>>,
    /// Set when honest-looking chunks prove the map false.
    map_forged: bool,
    /// Chunks written to the partial file.
    stored: std::collections::BTreeSet<u32>,
    /// Peers whose bytes failed under this map: none of their streams gets
    /// another chunk in this round.
    rejected: std::collections::HashSet<PeerId>,
    /// Peers that delivered a chunk that checks under this map.
    trusted: std::collections::HashSet<PeerId>,
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
    pub fn new(network: NetworkHandle, store: Store, metrics: Arc<Metrics>) -> Fetcher {
        Fetcher {
            network,
            store,
            metrics,
            inflight: Arc::default(),
        }
    }

    /// Providers of `digest` other than this node.
    async fn providers(&self, digest: &Digest) -> Vec<PeerId> {
        let me = self.network.peer_id();
        let found = self
            .network
            .find_providers(digest, MAX_PROVIDERS + 1, FIND_DEADLINE)
            .await
            .unwrap_or_default();
        let found: Vec<PeerId> = found
            .into_iter()
            .filter(|p| *p != me)
            .take(MAX_PROVIDERS)
            .collect();
        Metrics::add(&self.metrics.dht_providers_found_total, found.len() as u64);
        found
    }

    /// A provider's claim of the blob's size, without downloading it (HEAD).
    pub async fn remote_size(&self, digest: &Digest) -> Option<u64> {
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

    /// Makes `digest` local, from peers. Concurrent calls share one download.
    pub async fn fetch(&self, digest: &Digest) -> Result<BlobInfo, FetchError> {
        let lock = {
            let mut inflight = self.inflight.lock().unwrap_or_else(|p| p.into_inner());
            inflight.entry(digest.clone()).or_default().clone()
        };
        let _guard = lock.lock().await;
        let result = match self.store.blob_size(digest)? {
            Some(size) => Ok(BlobInfo {
                digest: digest.clone(),
                size,
            }),
            None => self.download(digest).await,
        };
        self.inflight
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(digest);
        result
    }

    async fn download(&self, digest: &Digest) -> Result<BlobInfo, FetchError> {
        let started = Instant::now();
        let providers = self.providers(digest).await;
        if providers.is_empty() {
            return Err(FetchError::NotFound(digest.clone()));
        }
        let mut control = self.network.stream_control();
        // Ask every provider for its map. Honest maps are identical (the
        // plan follows from the size), so the most common one is tried first
        // and a provider whose map disagrees with it is not asked for chunks
        // under it.
        let mut candidates: Vec<(ChunkMap, Vec<PeerId>)> = Vec::new();
        let mut sessions: HashMap<PeerId, Vec<Session>> = HashMap::new();
        for peer in &providers {
            let Some(mut s) = Session::open(&mut control, *peer).await else {
                continue;
            };
            if let Ok(Message::Map { digest: d, map }) = s
                .ask(&Message::GetMap {
                    digest: digest.clone(),
                })
                .await
                && &d == digest
                && ChainVerifier::new(digest.clone(), map.clone()).is_ok()
            {
                match candidates.iter_mut().find(|(m, _)| *m == map) {
                    Some((_, peers)) => peers.push(*peer),
                    None => candidates.push((map, vec![*peer])),
                }
                let mut streams = vec![s];
                for _ in 1..STREAMS_PER_PEER {
                    if let Some(more) = Session::open(&mut control, *peer).await {
                        streams.push(more);
                    }
                }
                sessions.insert(*peer, streams);
            }
        }
        candidates.sort_by_key(|(_, peers)| std::cmp::Reverse(peers.len()));
        let all_maps = candidates.clone();
        // Chunks next to states the candidate maps disagree on: fetched
        // first, they expose a forged map within a chunk or two.
        let disputed = disputed_chunks(&all_maps);
        // Chunks stored under an earlier (disproved) map, kept and checked
        // again under the next one instead of being downloaded again.
        let mut carried: Option<(PartialBlob, Vec<u32>)> = None;
        for (map, backers) in candidates {
            let mut verifier = ChainVerifier::new(digest.clone(), map.clone())
                .map_err(|_| FetchError::ProvidersFailed(digest.clone()))?;
            let plan = verifier.plan();
            let mut have = std::collections::BTreeSet::new();
            let partial = match carried.take() {
                Some((partial, stored)) => {
                    for index in stored {
                        if let Ok(range) = plan.range(index)
                            && let Ok(bytes) = partial
                                .read_at(range.start, (range.end - range.start) as usize)
                                .await
                            && verifier.check(index, &bytes).is_ok()
                        {
                            have.insert(index);
                        }
                    }
                    partial
                }
                None => self.store.partial_blob(plan.size())?,
            };
            // Last chunk first: it anchors the map in the digest.
            let mut order: Vec<u32> = Vec::with_capacity(plan.count() as usize);
            order.extend(plan.count().checked_sub(1));
            order.extend(disputed.iter().copied().filter(|i| *i < plan.count()));
            order.extend(0..plan.count());
            let mut seen = std::collections::HashSet::new();
            let queue: VecDeque<u32> = order
                .into_iter()
                .filter(|i| !have.contains(i) && seen.insert(*i))
                .collect();
            let shared = Arc::new(tokio::sync::Mutex::new(Shared {
                queue,
                verifier,
                in_flight: 0,
                pending: HashMap::new(),
                failures: HashMap::new(),
                map_forged: false,
                stored: have.into_iter().collect(),
                rejected: std::collections::HashSet::new(),
                trusted: std::collections::HashSet::new(),
            }));
            let wake = Arc::new(tokio::sync::Notify::new());
            // Every provider that still has a session serves chunks; the
            // map's backers and the others alike (chunks are checked anyway).
            let workers: Vec<_> = sessions
                .drain()
                .flat_map(|(peer, streams)| {
                    streams
                        .into_iter()
                        .enumerate()
                        .map(move |(i, s)| (peer, i == 0, s))
                })
                .map(|(peer, primary, session)| {
                    let ctx = WorkerCtx {
                        peer,
                        primary,
                        shared: shared.clone(),
                        wake: wake.clone(),
                        partial: partial.clone(),
                        digest: digest.clone(),
                        metrics: self.metrics.clone(),
                    };
                    async move { (peer, ctx.run(session).await) }
                })
                .collect();
            let results = futures_util::future::join_all(workers).await;
            let state = shared.lock().await;
            if state.verifier.complete() {
                drop(state);
                // The digest proved this map: whoever served another lied.
                for (other, liars) in &all_maps {
                    if *other != map {
                        tracing::warn!(%digest, ?liars, "served a chunk map the digest disproves");
                        Metrics::add(&self.metrics.peers_banned_total, liars.len() as u64);
                    }
                }
                let info = partial.commit(digest).await?;
                self.metrics.observe_fetch(started.elapsed());
                return Ok(info);
            }
            carried = Some((partial.clone(), state.stored.iter().copied().collect()));
            // Either two peers agreed on bytes the map rejects, or the blob
            // could not be completed under this map: its backers are banned,
            // the others get another chance under the next candidate map.
            tracing::warn!(%digest, ?backers, forged = state.map_forged, "chunk map failed; banning its sources");
            Metrics::add(&self.metrics.peers_banned_total, backers.len() as u64);
            drop(state);
            for (peer, session) in results {
                if let Some(session) = session
                    && !backers.contains(&peer)
                {
                    sessions.entry(peer).or_default().push(session);
                }
            }
        }
        Err(FetchError::ProvidersFailed(digest.clone()))
    }
}

struct WorkerCtx {
    peer: PeerId,
    /// The peer's first stream; its others wait until it has delivered a
    /// chunk that checks, so a liar wastes one chunk, not one per stream.
    primary: bool,
    shared: Arc<tokio::sync::Mutex<Shared>>,
    wake: Arc<tokio::sync::Notify>,
    partial: PartialBlob,
    digest: Digest,
    metrics: Arc<Metrics>,
}

/// How one chunk request ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outcome {
    Stored,
    /// The bytes failed their check.
    Rejected,
    /// The peer did not answer properly (timeout, error, wrong reply).
    Broken,
    /// Another request stored the chunk first (end-game); this one was cut.
    Abandoned,
}

/// The longest-outstanding chunk that only one request is waiting for, if
/// it has waited at least [`ENDGAME_AFTER`].
fn endgame_pick(pending: &HashMap<u32, (Instant, u32)>) -> Option<u32> {
    pending
        .iter()
        .filter(|(_, (since, holders))| *holders == 1 && since.elapsed() >= ENDGAME_AFTER)
        .min_by_key(|(_, (since, _))| *since)
        .map(|(i, _)| *i)
}

/// What the worker should do next.
enum Next {
    Chunk(u32),
    Wait,
    Done,
}

impl WorkerCtx {
    /// Takes chunks until none are left or this peer fails; gives back its
    /// session when it is still usable.
    async fn run(self, mut session: Session) -> Option<Session> {
        loop {
            let next = {
                let mut s = self.shared.lock().await;
                if s.map_forged || s.verifier.complete() || s.rejected.contains(&self.peer) {
                    Next::Done
                } else if !self.primary && !s.trusted.contains(&self.peer) {
                    Next::Wait
                } else if let Some(i) = s.queue.pop_front() {
                    s.in_flight += 1;
                    s.pending.entry(i).or_insert((Instant::now(), 0)).1 += 1;
                    Next::Chunk(i)
                } else if let Some(i) = endgame_pick(&s.pending) {
                    s.in_flight += 1;
                    if let Some(p) = s.pending.get_mut(&i) {
                        p.1 += 1;
                    }
                    Next::Chunk(i)
                } else if s.in_flight > 0 {
                    // Another worker's chunk may still fail and come back.
                    Next::Wait
                } else {
                    Next::Done
                }
            };
            let index = match next {
                Next::Chunk(i) => i,
                Next::Wait => {
                    let _ = tokio::time::timeout(Duration::from_millis(200), self.wake.notified())
                        .await;
                    continue;
                }
                Next::Done => return Some(session),
            };
            let outcome = tokio::select! {
                outcome = self.one_chunk(&mut session, index) => outcome,
                () = self.until_stored(index) => Outcome::Abandoned,
            };
            let mut s = self.shared.lock().await;
            s.in_flight -= 1;
            let others = match s.pending.get_mut(&index) {
                Some(p) => {
                    p.1 -= 1;
                    p.1
                }
                None => 0,
            };
            if others == 0 {
                s.pending.remove(&index);
            }
            if !matches!(outcome, Outcome::Stored | Outcome::Abandoned)
                && others == 0
                && !s.stored.contains(&index)
            {
                s.queue.push_back(index);
            }
            drop(s);
            self.wake.notify_waiters();
            match outcome {
                Outcome::Stored => {}
                // Its bytes failed under this map: no more chunks from it
                // now, but if the map turns out to be the lie it is asked
                // again under the next one.
                Outcome::Rejected => return Some(session),
                // A request left half-answered leaves the stream unusable.
                Outcome::Broken => return None,
                // It was outrun by a duplicate request after the end-game
                // wait: too slow (or stalled) to keep for this fetch.
                Outcome::Abandoned => {
                    tracing::debug!(peer = %self.peer, index, "request outrun in the end-game; dropping the peer");
                    Metrics::add(&self.metrics.peers_banned_total, 1);
                    return None;
                }
            }
        }
    }

    /// Completes once another request has stored chunk `index`.
    async fn until_stored(&self, index: u32) {
        loop {
            let notified = self.wake.notified();
            {
                let s = self.shared.lock().await;
                if s.stored.contains(&index) || s.map_forged {
                    return;
                }
            }
            let _ = tokio::time::timeout(Duration::from_millis(200), notified).await;
        }
    }

    /// Fetches, checks and stores one chunk.
    async fn one_chunk(&self, session: &mut Session, index: u32) -> Outcome {
        let reply = session
            .ask(&Message::GetChunk {
                digest: self.digest.clone(),
                index,
            })
            .await;
        let bytes = match reply {
            Ok(Message::Chunk {
                digest: d,
                index: i,
                bytes,
            }) if d == self.digest && i == index => bytes,
            other => {
                tracing::debug!(peer = %self.peer, index, ok = other.is_ok(), "provider failed; dropping it");
                Metrics::add(&self.metrics.peers_banned_total, 1);
                return Outcome::Broken;
            }
        };
        Metrics::add(&self.metrics.p2p_bytes_received_total, bytes.len() as u64);
        let fingerprint = Digest::sha256_of(&bytes);
        let mut s = self.shared.lock().await;
        if s.stored.contains(&index) {
            // The end-game's other copy arrived first.
            return Outcome::Stored;
        }
        if let Err(e) = s.verifier.check(index, &bytes) {
            Metrics::add(&self.metrics.chunks_rejected_total, 1);
            // Two different peers sending the same bytes that fail the same
            // check: the map is the lie, not them.
            let earlier = s.failures.entry(index).or_default();
            if earlier
                .iter()
                .any(|(p, f)| *p != self.peer && *f == fingerprint)
            {
                s.map_forged = true;
                tracing::warn!(index, "two peers agree on a chunk the map rejects");
                return Outcome::Rejected;
            }
            earlier.push((self.peer, fingerprint));
            s.rejected.insert(self.peer);
            tracing::warn!(peer = %self.peer, index, error = %e, "chunk failed its check; dropping the sender");
            Metrics::add(&self.metrics.peers_banned_total, 1);
            return Outcome::Rejected;
        }
        let offset = u64::from(index) * u64::from(s.verifier.plan().chunk_size());
        s.trusted.insert(self.peer);
        drop(s);
        Metrics::add(&self.metrics.chunks_verified_total, 1);
        match self.partial.write_at(offset, bytes).await {
            Ok(()) => {
                self.shared.lock().await.stored.insert(index);
                Outcome::Stored
            }
            Err(_) => Outcome::Broken,
        }
    }
}
