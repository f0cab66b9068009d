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
//! Not yet (swarm issue): rarest-first over have-maps, end-game duplicate
//! requests, throughput scoring, bans that outlive one fetch, resuming after
//! a restart, and streaming verified chunks to the client before the end.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use libp2p::{PeerId, StreamProtocol};
use shoal_protocol::Digest;
use shoal_protocol::chain::ChainVerifier;
use shoal_protocol::wire::{Message, PROTOCOL_NAME};

use super::framed::{self, FrameError, FrameReader};
use crate::metrics::Metrics;
use crate::network::NetworkHandle;
use crate::store::{BlobInfo, PartialBlob, Store, StoreError};

pub const MAX_PROVIDERS: usize = 4;
/// How long a provider lookup may take before the answer is "nobody".
pub const FIND_DEADLINE: Duration = Duration::from_secs(2);
/// How long one request may take before its peer counts as stalled.
pub const CHUNK_TIMEOUT: Duration = Duration::from_secs(10);

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
        // The map comes from the first provider that gives one that fits the
        // digest; it is checked chunk by chunk, never trusted.
        let mut sessions = Vec::new();
        let mut verifier = None;
        for peer in &providers {
            let Some(mut s) = Session::open(&mut control, *peer).await else {
                continue;
            };
            if verifier.is_none()
                && let Ok(Message::Map { digest: d, map }) = s
                    .ask(&Message::GetMap {
                        digest: digest.clone(),
                    })
                    .await
                && &d == digest
            {
                verifier = ChainVerifier::new(digest.clone(), map).ok();
            }
            sessions.push((*peer, s));
        }
        let verifier = verifier.ok_or_else(|| FetchError::ProvidersFailed(digest.clone()))?;
        let plan = verifier.plan();
        let partial = self.store.partial_blob(plan.size())?;
        let count = plan.count();
        let mut queue: VecDeque<u32> = (0..count).collect();
        // Last chunk first: it anchors the map in the digest.
        if let Some(last) = queue.pop_back() {
            queue.push_front(last);
        }
        let shared = Arc::new(tokio::sync::Mutex::new(Shared { queue, verifier }));
        let workers = sessions.into_iter().map(|(peer, session)| {
            let (shared, partial, digest, metrics) = (
                shared.clone(),
                partial.clone(),
                digest.clone(),
                self.metrics.clone(),
            );
            async move { worker(peer, session, shared, partial, digest, metrics).await }
        });
        futures_util::future::join_all(workers).await;
        if !shared.lock().await.verifier.complete() {
            return Err(FetchError::ProvidersFailed(digest.clone()));
        }
        let info = partial.commit(digest).await?;
        self.metrics.observe_fetch(started.elapsed());
        Ok(info)
    }
}

/// Takes chunks from the queue until it is empty or this peer fails.
async fn worker(
    peer: PeerId,
    mut session: Session,
    shared: Arc<tokio::sync::Mutex<Shared>>,
    partial: PartialBlob,
    digest: Digest,
    metrics: Arc<Metrics>,
) {
    loop {
        let Some(index) = shared.lock().await.queue.pop_front() else {
            return;
        };
        let reply = session
            .ask(&Message::GetChunk {
                digest: digest.clone(),
                index,
            })
            .await;
        let bytes = match reply {
            Ok(Message::Chunk {
                digest: d,
                index: i,
                bytes,
            }) if d == digest && i == index => bytes,
            other => {
                tracing::debug!(%peer, index, reply = ?other.map(|_| "unexpected reply"), "provider failed; dropping it");
                shared.lock().await.queue.push_back(index);
                Metrics::add(&metrics.peers_banned_total, 1);
                return;
            }
        };
        Metrics::add(&metrics.p2p_bytes_received_total, bytes.len() as u64);
        let verdict = shared.lock().await.verifier.check(index, &bytes);
        if let Err(e) = verdict {
            tracing::warn!(%peer, index, error = %e, "chunk failed its check; banning the sender for this fetch");
            Metrics::add(&metrics.chunks_rejected_total, 1);
            Metrics::add(&metrics.peers_banned_total, 1);
            shared.lock().await.queue.push_back(index);
            return;
        }
        Metrics::add(&metrics.chunks_verified_total, 1);
        let offset = u64::from(index) * u64::from(shared.lock().await.verifier.plan().chunk_size());
        if partial.write_at(offset, bytes).await.is_err() {
            shared.lock().await.queue.push_back(index);
            return;
        }
    }
}
