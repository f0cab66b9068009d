//! Answers other peers' transfer requests from the local store, and from
//! downloads still under way: a blob that is arriving is offered chunk by
//! chunk, each only once it was checked against the chunk map in use
//! (`Info` says `complete: false`; `Have` says which chunks).
//!
//! The accept loop only hands each stream to its own task (libp2p-stream
//! drops streams when its accept queue is full, so it must stay tight); at
//! most [`MAX_INBOUND_STREAMS`] are served at once, the rest are dropped.
//!
//! Chunk maps of committed blobs are computed once, when the blob is
//! committed (in the background, one at a time), and kept in the store, so
//! a first request does not wait for the whole blob to be hashed.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use futures_util::StreamExt;
use libp2p::{PeerId, StreamProtocol};
use shoal_protocol::Digest;
use shoal_protocol::chain::{ChunkMap, ChunkMapBuilder, PrefixTail};
use shoal_protocol::chunk::{ChunkError, ChunkPlan, DEFAULT_CHUNK_SIZE};
use shoal_protocol::share::SplitShare;
use shoal_protocol::wire::{MAX_CHUNK_WAIT_MS, Message, PROTOCOL_NAME};
use tokio::sync::Semaphore;
use tokio::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;

use super::downloads::{Downloads, PartialView};
use super::framed::{self, FrameError, FrameReader};
#[cfg(feature = "test-liars")]
use super::liars::{LiarMode, Lie, lie};
use super::session::REQUEST_TIMEOUT;
use crate::limits::{DEFAULT_UPLOAD_SLOTS, RateLimiter, UploadSlots};
use crate::metrics::Metrics;
use crate::store::{Store, StoreError, StoreEvent};

/// Streams are sessions a peer keeps open and reuses (a follower holds one
/// or three per blob it follows), so a node that many peers follow at once
/// has hundreds. An idle one costs a few KiB; the memory of chunks being
/// sent is bounded by the upload slots, not by this.
pub const MAX_INBOUND_STREAMS: usize = 512;
/// Chunk maps kept in memory; computing one reads the whole blob.
const MAP_CACHE: usize = 256;
/// How often a held `WaitChunk` looks again without being woken.
const AWAIT_RECHECK: Duration = Duration::from_millis(50);

#[derive(Debug, Clone)]
pub struct TransferServer {
    store: Store,
    metrics: Arc<Metrics>,
    downloads: Downloads,
    maps: Arc<Mutex<HashMap<Digest, Arc<ChunkMap>>>>,
    /// One map computation at a time: a request for a map being computed
    /// in the background waits for it instead of hashing the blob again.
    computing: Arc<tokio::sync::Mutex<()>>,
    /// Chunk uploads in progress, shared out per peer (`limits/`).
    upload_slots: UploadSlots<PeerId>,
    /// Paid for every chunk sent (`[limits] peer_upload`).
    upload_rate: RateLimiter,
    #[cfg(feature = "test-liars")]
    liar: Option<LiarMode>,
    /// Chunks served so far (for `StallMidway`).
    #[cfg(feature = "test-liars")]
    chunks_served: Arc<std::sync::atomic::AtomicU32>,
    /// Chunk maps served so far (for `DropFirstMapAsk`).
    #[cfg(feature = "test-liars")]
    maps_served: Arc<std::sync::atomic::AtomicU32>,
}

impl TransferServer {
    pub fn new(store: Store, metrics: Arc<Metrics>, downloads: Downloads) -> TransferServer {
        TransferServer {
            store,
            metrics,
            downloads,
            maps: Arc::default(),
            computing: Arc::default(),
            upload_slots: UploadSlots::new(DEFAULT_UPLOAD_SLOTS),
            upload_rate: RateLimiter::unlimited(),
            #[cfg(feature = "test-liars")]
            liar: None,
            #[cfg(feature = "test-liars")]
            chunks_served: Arc::default(),
            #[cfg(feature = "test-liars")]
            maps_served: Arc::default(),
        }
    }

    /// Serves chunks under these slots and no faster than `rate`, both
    /// shared with every clone.
    pub fn with_upload_limits(
        mut self,
        slots: UploadSlots<PeerId>,
        rate: RateLimiter,
    ) -> TransferServer {
        self.upload_slots = slots;
        self.upload_rate = rate;
        self
    }

    #[cfg(feature = "test-liars")]
    pub fn lying(mut self, mode: Option<LiarMode>) -> TransferServer {
        self.liar = mode;
        self
    }

    pub async fn run(self, mut control: libp2p_stream::Control, stop: CancellationToken) {
        let mut incoming = match control.accept(StreamProtocol::new(PROTOCOL_NAME)) {
            Ok(incoming) => incoming,
            Err(e) => {
                tracing::error!(error = %e, "transfer protocol already registered");
                return;
            }
        };
        tokio::spawn(self.clone().warm_maps(stop.clone()));
        let slots = Arc::new(Semaphore::new(MAX_INBOUND_STREAMS));
        loop {
            let (peer, stream) = tokio::select! {
                () = stop.cancelled() => break,
                next = incoming.next() => match next {
                    Some(s) => s,
                    None => break,
                },
            };
            let Ok(permit) = slots.clone().try_acquire_owned() else {
                tracing::debug!(%peer, "too many transfer streams; dropping one");
                continue;
            };
            let server = self.clone();
            tokio::spawn(async move {
                let _permit = permit;
                if let Err(e) = server.serve_stream(peer, stream).await {
                    tracing::debug!(%peer, error = %e, "transfer stream ended");
                }
            });
        }
    }

    async fn serve_stream(
        &self,
        peer: PeerId,
        mut stream: libp2p::Stream,
    ) -> Result<(), FrameError> {
        let mut reader = FrameReader::default();
        loop {
            let request = match reader.next(&mut stream).await {
                Ok(m) => m,
                Err(FrameError::Closed) => return Ok(()),
                // A newer peer's request: refused, and the stream stays
                // open, so the peer can fall back on what this node knows.
                Err(FrameError::UnknownKind(kind)) => {
                    framed::write(
                        &mut stream,
                        &refused(format!("unknown request kind {kind}")),
                    )
                    .await?;
                    continue;
                }
                Err(e) => return Err(e),
            };
            // A chunk asked for ahead of time is waited for first, with no
            // upload slot held, then served like any other.
            let request = match request {
                Message::WaitChunk {
                    digest,
                    index,
                    wait_ms,
                } => {
                    let wait = Duration::from_millis(u64::from(wait_ms.min(MAX_CHUNK_WAIT_MS)));
                    self.await_chunk(&digest, index, wait).await;
                    Message::GetChunk { digest, index }
                }
                other => other,
            };
            // A chunk is read and sent under a fair upload slot and paid
            // for at the upload rate; other replies are small and free.
            let _slot = match &request {
                Message::GetChunk { .. } => Some(self.upload_slots.acquire(peer).await),
                _ => None,
            };
            #[allow(unused_mut)]
            let mut reply = self.answer(request).await;
            #[cfg(feature = "test-liars")]
            if let Some(mode) = self.liar {
                let counter = match reply {
                    Message::Chunk { .. } => Some(&self.chunks_served),
                    Message::Map { .. } => Some(&self.maps_served),
                    _ => None,
                };
                let served =
                    counter.map_or(0, |c| c.fetch_add(1, std::sync::atomic::Ordering::Relaxed));
                match lie(mode, &mut reply, served) {
                    Lie::Send => {}
                    Lie::Stall => {
                        std::future::pending::<()>().await;
                    }
                    Lie::Delay(d) => tokio::time::sleep(d).await,
                    Lie::Cut(frame) => {
                        use futures_util::AsyncWriteExt;
                        stream.write_all(&frame).await?;
                        stream.close().await?;
                        return Ok(());
                    }
                }
            }
            if let Message::Chunk { bytes, .. } = &reply {
                Metrics::add(&self.metrics.p2p_bytes_sent_total, bytes.len() as u64);
                tracing::trace!(%peer, bytes = bytes.len(), "chunk sent");
            }
            // The requester gives up after REQUEST_TIMEOUT: a peer that
            // stopped reading must not keep its upload slot any longer.
            let send = async {
                match &reply {
                    Message::Chunk { .. } => {
                        framed::write_paced(&mut stream, &reply, &self.upload_rate).await
                    }
                    _ => framed::write(&mut stream, &reply).await,
                }
            };
            tokio::time::timeout(REQUEST_TIMEOUT, send)
                .await
                .map_err(|_| FrameError::Io(std::io::ErrorKind::TimedOut.into()))??;
        }
    }

    /// Computes the chunk map of every blob committed from now on that has
    /// none yet, one at a time.
    async fn warm_maps(self, stop: CancellationToken) {
        let mut events = self.store.subscribe();
        loop {
            let event = tokio::select! {
                () = stop.cancelled() => return,
                e = events.recv() => e,
            };
            match event {
                Ok(StoreEvent::Committed(digest)) => {
                    let missing = match self.store.blob_size(&digest) {
                        Ok(Some(size)) => matches!(self.kept_map(&digest, size), Ok(None)),
                        _ => false,
                    };
                    if missing {
                        let _ = self.map(&digest).await;
                    }
                }
                Ok(StoreEvent::Deleted(digest)) => {
                    if let Ok(mut maps) = self.maps.lock() {
                        maps.remove(&digest);
                    }
                }
                // Missed some: they get their maps when first asked.
                Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {}
                Err(tokio::sync::broadcast::error::RecvError::Closed) => return,
            }
        }
    }

    async fn answer(&self, request: Message) -> Message {
        match request {
            Message::GetInfo { digest } => match self.store.blob_size(&digest) {
                Ok(Some(size)) => match served_plan(size) {
                    Ok(plan) => Message::Info {
                        digest,
                        size,
                        chunk_size: plan.chunk_size(),
                        complete: true,
                    },
                    Err(e) => refused(e),
                },
                _ => match self.partial(&digest) {
                    Some(view) => Message::Info {
                        digest,
                        size: view.plan().size(),
                        chunk_size: view.plan().chunk_size(),
                        complete: false,
                    },
                    None => Message::NotFound { digest },
                },
            },
            Message::GetMap { digest } => match self.map(&digest).await {
                Some(map) => Message::Map {
                    digest,
                    map: (*map).clone(),
                },
                None => match self.partial(&digest).and_then(|v| v.map) {
                    Some(map) => Message::Map {
                        digest,
                        map: (*map).clone(),
                    },
                    None => Message::NotFound { digest },
                },
            },
            Message::GetHave { digest } => match self.store.blob_size(&digest) {
                Ok(Some(size)) => match served_plan(size) {
                    Ok(plan) => Message::Have {
                        digest,
                        bitmap: super::bitmap::encode(std::iter::repeat_n(
                            true,
                            plan.count() as usize,
                        )),
                    },
                    Err(e) => refused(e),
                },
                _ => match self.partial(&digest).filter(|v| v.offerable()) {
                    Some(view) => Message::Have {
                        digest,
                        bitmap: view.bitmap(),
                    },
                    None => Message::NotFound { digest },
                },
            },
            Message::GetChunk { digest, index } => match self.chunk(&digest, index).await {
                Some(bytes) => Message::Chunk {
                    digest,
                    index,
                    bytes,
                },
                None => Message::NotFound { digest },
            },
            Message::GetPrefix { digest } => {
                match self
                    .prefix_tail(&digest, 0)
                    .await
                    .and_then(PrefixTail::into_prefix)
                {
                    Some(prefix) => Message::Prefix { digest, prefix },
                    None => Message::NotFound { digest },
                }
            }
            Message::GetPrefixFrom { digest, from } => {
                match self.prefix_tail(&digest, from).await {
                    Some(tail) => Message::PrefixTail { digest, tail },
                    None => Message::NotFound { digest },
                }
            }
            Message::GetShare { digest } => match self.store.blob_size(&digest) {
                // Whole here: every chunk may be asked for.
                Ok(Some(size)) => match served_plan(size) {
                    Ok(plan) => {
                        // Fetched in a split lately: still vouching for
                        // its range, for partners that missed a hash.
                        let mut share = self
                            .downloads
                            .recent_share(&digest)
                            .filter(|s| s.plan == plan)
                            .unwrap_or_else(|| SplitShare::new(plan));
                        share.have.fill(true);
                        Message::Share { digest, share }
                    }
                    Err(e) => refused(e),
                },
                _ => match self.partial(&digest) {
                    Some(PartialView {
                        split: Some(mut share),
                        checked,
                        ..
                    }) => {
                        share.have = checked;
                        Message::Share { digest, share }
                    }
                    _ => Message::NotFound { digest },
                },
            },
            Message::GetTag { name } => match self.store.mirror_tag(&name) {
                Ok(Some((digest, age))) => Message::TagIs {
                    name,
                    digest,
                    age_secs: age.as_secs(),
                },
                _ => Message::NotFound {
                    digest: super::tags::tag_key(&name),
                },
            },
            other => refused(format!("unexpected request {}", kind(&other))),
        }
    }

    /// Returns once chunk `index` of `digest` can be served, or after
    /// `wait`. Woken by the download's changes; looks again every
    /// [`AWAIT_RECHECK`] in case the download has not started yet or has
    /// just been committed.
    async fn await_chunk(&self, digest: &Digest, index: u32, wait: Duration) {
        let deadline = Instant::now() + wait;
        loop {
            // Subscribed before looking, so a change in between is not missed.
            let mut changes = self.downloads.get(digest).map(|s| s.changes());
            if self.can_serve(digest, index) {
                return;
            }
            let now = Instant::now();
            if now >= deadline {
                return;
            }
            let until = deadline.min(now + AWAIT_RECHECK);
            match changes.as_mut() {
                Some(changes) => {
                    let _ = tokio::time::timeout_at(until, changes.changed()).await;
                }
                None => tokio::time::sleep_until(until).await,
            }
        }
    }

    /// Whether a `GetChunk` for chunk `index` would be answered with it.
    /// Asked on every change to the download while a `WaitChunk` is held,
    /// so the download is looked at in place first.
    fn can_serve(&self, digest: &Digest, index: u32) -> bool {
        if self
            .downloads
            .get(digest)
            .is_some_and(|state| state.servable(index))
        {
            return true;
        }
        match self.store.blob_size(digest) {
            Ok(Some(size)) => served_plan(size).is_ok_and(|plan| index < plan.count()),
            _ => false,
        }
    }

    /// The chain states known of `digest` from `from` on: all of them for
    /// a committed blob or a download with a map, those hashed so far for
    /// one coming from upstream.
    async fn prefix_tail(&self, digest: &Digest, from: u32) -> Option<PrefixTail> {
        if let Some(map) = self.map(digest).await {
            return Some(map.tail(from));
        }
        self.downloads.get(digest)?.prefix_tail(from)
    }

    /// The download of `digest` under way, if it has a chunk map yet.
    fn partial(&self, digest: &Digest) -> Option<super::downloads::PartialView> {
        self.downloads.get(digest)?.view()
    }

    async fn chunk(&self, digest: &Digest, index: u32) -> Option<Vec<u8>> {
        let Some(blob) = self.store.open_blob(digest).await.ok()? else {
            // Not committed: a checked chunk of a download under way.
            let view = self.partial(digest)?;
            if !view.servable(index) {
                return None;
            }
            let range = view.plan().range(index).ok()?;
            return view
                .partial
                .read_at(range.start, (range.end - range.start) as usize)
                .await
                .ok();
        };
        let plan = served_plan(blob.size).ok()?;
        let range = plan.range(index).ok()?;
        let file = blob.file.into_std().await;
        let len = (range.end - range.start) as usize;
        tokio::task::spawn_blocking(move || read_range(file, range.start, len))
            .await
            .ok()?
            .ok()
    }

    /// The chunk map of a committed blob: from memory, from the store, or
    /// computed (and then kept in both). A blob whose file no longer hashes
    /// to its name is not served at all.
    async fn map(&self, digest: &Digest) -> Option<Arc<ChunkMap>> {
        if let Some(map) = self.maps.lock().ok()?.get(digest) {
            return Some(map.clone());
        }
        let size = self.store.blob_size(digest).ok()??;
        let _computing = self.computing.lock().await;
        if let Some(map) = self.maps.lock().ok()?.get(digest) {
            return Some(map.clone());
        }
        let map = match self.kept_map(digest, size).ok()? {
            Some(map) => map,
            None => {
                let map = self.compute_map(digest).await?;
                if let Err(e) = self.store.put_chunk_map(digest, &map) {
                    tracing::debug!(%digest, error = %e, "could not keep a chunk map");
                }
                map
            }
        };
        let map = Arc::new(map);
        if let Ok(mut maps) = self.maps.lock() {
            if maps.len() >= MAP_CACHE {
                maps.clear();
            }
            maps.insert(digest.clone(), map.clone());
        }
        Some(map)
    }

    /// The map the store kept for `digest` (of `size` bytes), if it fits
    /// the plan chunks are served under: one kept under another chunk size
    /// (an older default) would disagree with the chunks served by index.
    fn kept_map(&self, digest: &Digest, size: u64) -> Result<Option<ChunkMap>, StoreError> {
        let plan = served_plan(size).ok();
        Ok(self
            .store
            .chunk_map(digest)?
            .filter(|map| Some(map.plan()) == plan))
    }

    async fn compute_map(&self, digest: &Digest) -> Option<ChunkMap> {
        let blob = self.store.open_blob(digest).await.ok()??;
        let plan = served_plan(blob.size).ok()?;
        let file = blob.file.into_std().await;
        let expected = digest.clone();
        tokio::task::spawn_blocking(move || -> Option<ChunkMap> {
            use std::io::Read;
            let mut file = file;
            let mut builder = ChunkMapBuilder::new(expected.algorithm(), plan);
            let mut buf = vec![0u8; 1024 * 1024];
            loop {
                let n = file.read(&mut buf).ok()?;
                if n == 0 {
                    break;
                }
                builder.update(&buf[..n]);
            }
            let (map, actual) = builder.finish().ok()?;
            if actual != expected {
                tracing::error!(%expected, %actual, "stored blob does not match its digest");
                return None;
            }
            Some(map)
        })
        .await
        .ok()?
    }
}

fn refused(reason: impl std::fmt::Display) -> Message {
    Message::Refused {
        reason: reason.to_string(),
    }
}

fn kind(m: &Message) -> &'static str {
    match m {
        Message::Info { .. } => "Info",
        Message::Map { .. } => "Map",
        Message::Chunk { .. } => "Chunk",
        Message::Have { .. } => "Have",
        Message::NotFound { .. } => "NotFound",
        Message::Refused { .. } => "Refused",
        Message::GetHave { .. } => "GetHave",
        Message::Prefix { .. } => "Prefix",
        Message::GetPrefixFrom { .. } => "GetPrefixFrom",
        Message::PrefixTail { .. } => "PrefixTail",
        Message::TagIs { .. } => "TagIs",
        Message::Share { .. } => "Share",
        _ => "request",
    }
}

/// Reads `len` bytes at `offset`. Through std, whose reads fill a vector's
/// spare capacity directly: the buffer is neither zeroed first nor copied
/// again from a runtime-owned one (as `tokio::fs::File` would).
fn read_range(mut file: std::fs::File, offset: u64, len: usize) -> std::io::Result<Vec<u8>> {
    use std::io::{Read, Seek};
    file.seek(std::io::SeekFrom::Start(offset))?;
    let mut bytes = Vec::with_capacity(len);
    file.take(len as u64).read_to_end(&mut bytes)?;
    if bytes.len() != len {
        return Err(std::io::ErrorKind::UnexpectedEof.into());
    }
    Ok(bytes)
}

/// The plan every committed blob is served under: its chunk map, have-map
/// and chunk indices all follow it.
fn served_plan(size: u64) -> Result<ChunkPlan, ChunkError> {
    ChunkPlan::for_size(size, DEFAULT_CHUNK_SIZE)
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use shoal_protocol::Digest;
    use shoal_protocol::chain::ChunkMapBuilder;
    use shoal_protocol::chunk::{ChunkPlan, DEFAULT_CHUNK_SIZE};
    use shoal_protocol::wire::Message;

    use super::TransferServer;
    use crate::metrics::Metrics;
    use crate::store::{Store, StoreOptions};
    use crate::transfer::downloads::{Download, DownloadState, Downloads};
    use tokio::time::{Duration, Instant};

    /// `len` bytes counting up modulo `modulus` (a prime, so chunks differ).
    fn patterned(len: u32, modulus: u32) -> Vec<u8> {
        (0..len).map(|i| (i % modulus) as u8).collect()
    }

    fn open_store() -> (tempfile::TempDir, Store) {
        let dir = tempfile::tempdir().expect("dir");
        let store = Store::open(StoreOptions {
            root: dir.path().to_path_buf(),
        })
        .expect("store");
        (dir, store)
    }

    /// A download of `digest` under way, as the fetcher would start it.
    fn start_download(downloads: &Downloads, digest: &Digest) -> (Download, Arc<DownloadState>) {
        let (tx, rx) = std::sync::mpsc::channel();
        let download = downloads.join_or_start(digest, |state| {
            tx.send(state).expect("send");
        });
        (download, rx.recv().expect("state"))
    }

    /// What the server answers a `GetChunk` for chunk `index` with, if a chunk.
    async fn served_chunk(server: &TransferServer, digest: &Digest, index: u32) -> Option<Vec<u8>> {
        match server
            .answer(Message::GetChunk {
                digest: digest.clone(),
                index,
            })
            .await
        {
            Message::Chunk { bytes, .. } => Some(bytes),
            _ => None,
        }
    }

    /// A store that kept a blob's map under an older default chunk size
    /// (4× the current one) serves a map that fits the chunks it serves.
    #[tokio::test]
    async fn a_map_kept_under_another_chunk_size_is_computed_afresh() {
        let (_dir, store) = open_store();
        let data = patterned(10 * DEFAULT_CHUNK_SIZE + 7, 251);
        assert!(
            data.len() > 4 * DEFAULT_CHUNK_SIZE as usize,
            "the old plan has chunks"
        );
        let digest = Digest::sha256_of(&data);
        store.put_blob(&digest, &data).await.expect("put");
        let old_plan =
            ChunkPlan::for_size(data.len() as u64, 4 * DEFAULT_CHUNK_SIZE).expect("plan");
        let mut old = ChunkMapBuilder::new(digest.algorithm(), old_plan);
        old.update(&data);
        let (old, whole) = old.finish().expect("old map");
        assert_eq!(whole, digest);
        store.put_chunk_map(&digest, &old).expect("keep old map");

        let server = TransferServer::new(store, Arc::new(Metrics::default()), Downloads::default());
        let Message::Map { map, .. } = server
            .answer(Message::GetMap {
                digest: digest.clone(),
            })
            .await
        else {
            panic!("no map");
        };
        let plan = ChunkPlan::for_size(data.len() as u64, DEFAULT_CHUNK_SIZE).expect("plan");
        assert_eq!(map.plan(), plan);
        let bytes = served_chunk(&server, &digest, 1).await.expect("no chunk");
        let range = plan.range(1).expect("range");
        assert_eq!(bytes, data[range.start as usize..range.end as usize]);
    }

    /// A `WaitChunk` for a chunk still on its way is held until the chunk
    /// is checked (and then served), or for the wait asked for.
    #[tokio::test]
    async fn a_held_chunk_ask_is_answered_once_the_chunk_is_checked() {
        let (_dir, store) = open_store();
        let data = patterned(3 * DEFAULT_CHUNK_SIZE, 253);
        let digest = Digest::sha256_of(&data);
        let plan = ChunkPlan::for_size(data.len() as u64, DEFAULT_CHUNK_SIZE).expect("plan");
        let mut builder = ChunkMapBuilder::new(digest.algorithm(), plan);
        builder.update(&data);
        let (map, _) = builder.finish().expect("map");
        let partial = store
            .partial_blob(&digest, plan.size(), plan.chunk_size())
            .expect("partial");
        let downloads = Downloads::default();
        let (_download, state) = start_download(&downloads, &digest);
        state.set_map(partial.clone(), Arc::new(map));
        let server = TransferServer::new(store, Arc::new(Metrics::default()), downloads);

        // Nothing arrives: the ask is held for the whole wait, and then
        // there is still nothing to serve.
        let asked = Instant::now();
        server
            .await_chunk(&digest, 1, Duration::from_millis(200))
            .await;
        assert!(asked.elapsed() >= Duration::from_millis(200));
        assert!(!server.can_serve(&digest, 1));

        // The chunk is checked while the ask waits: it is answered then,
        // long before the wait is over.
        let range = plan.range(1).expect("range");
        let chunk = data[range.start as usize..range.end as usize].to_vec();
        let arrives = {
            let (state, chunk) = (state.clone(), chunk.clone());
            tokio::spawn(async move {
                tokio::time::sleep(Duration::from_millis(100)).await;
                partial
                    .write_chunk(1, range.start, chunk)
                    .await
                    .expect("write");
                state.mark_checked(1);
            })
        };
        let asked = Instant::now();
        server
            .await_chunk(&digest, 1, Duration::from_secs(30))
            .await;
        assert!(
            asked.elapsed() < Duration::from_secs(20),
            "answered when the chunk came, not at the end of the wait"
        );
        arrives.await.expect("writer");
        let bytes = served_chunk(&server, &digest, 1)
            .await
            .expect("the chunk is not served");
        assert_eq!(bytes, chunk);
        assert!(!server.can_serve(&digest, 0), "only the checked chunk");
    }

    /// A node fetching a blob from upstream answers `GetPrefixFrom` with
    /// the states it has past the ones asked from; a node holding the
    /// blob with all of them past that point.
    #[tokio::test]
    async fn prefix_tails_carry_the_states_past_the_ones_asked_from() {
        let (_dir, store) = open_store();
        let data = patterned(6 * DEFAULT_CHUNK_SIZE + 9, 241);
        let digest = Digest::sha256_of(&data);
        let plan = ChunkPlan::for_size(data.len() as u64, DEFAULT_CHUNK_SIZE).expect("plan");
        let mut builder = ChunkMapBuilder::new(digest.algorithm(), plan);
        builder.update(&data[..3 * DEFAULT_CHUNK_SIZE as usize]);
        let prefix = builder.prefix();
        assert_eq!(prefix.known(), 3);
        let partial = store
            .partial_blob(&digest, plan.size(), plan.chunk_size())
            .expect("partial");
        let downloads = Downloads::default();
        let (_download, state) = start_download(&downloads, &digest);
        state.set_plan(partial, plan, None, "upstream");
        state.set_prefix(prefix.clone());
        let server = TransferServer::new(store.clone(), Arc::new(Metrics::default()), downloads);
        let tail_from = |digest: Digest, from: u32| {
            let server = &server;
            async move {
                match server.answer(Message::GetPrefixFrom { digest, from }).await {
                    Message::PrefixTail { tail, .. } => Some(tail),
                    _ => None,
                }
            }
        };

        // Two of the three states known there, from the second on.
        let tail = tail_from(digest.clone(), 1).await.expect("a tail");
        assert_eq!((tail.from(), tail.len()), (1, 2));
        let mut known = prefix.clone();
        known.extend_tail(&tail).expect("agrees");
        assert_eq!(known, prefix);
        // Past what it knows: empty, from the first state it lacks.
        let tail = tail_from(digest.clone(), 5).await.expect("a tail");
        assert!(tail.is_empty() && tail.from() == 3);
        // Unknown blob: not found, no tail.
        assert!(tail_from(Digest::sha256_of(b"other"), 0).await.is_none());

        // Once the blob is whole here, every state past the one asked from.
        store.put_blob(&digest, &data).await.expect("put");
        let tail = tail_from(digest.clone(), 3).await.expect("a tail");
        assert_eq!((tail.from(), tail.len()), (3, plan.count() - 1 - 3));
        let mut known = prefix;
        known.extend_tail(&tail).expect("agrees");
        assert!(known.is_whole());
        let (map, _) = {
            let mut b = ChunkMapBuilder::new(digest.algorithm(), plan);
            b.update(&data);
            b.finish().expect("map")
        };
        assert_eq!(known.to_map(), Some(map));
    }
}
