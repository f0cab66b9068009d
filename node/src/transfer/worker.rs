//! One request stream to one provider during a fetch: takes chunks from
//! the shared [`Schedule`], fetches, checks and stores them.
//!
//! A provider's first stream starts at once; its others open only after it
//! delivered a chunk that checks, so a liar wastes one chunk, not one per
//! stream. A provider holding only part of the blob is asked for its
//! have-map again every [`HAVE_POLL`] while it has nothing wanted.

use std::sync::Arc;
use std::time::{Duration, Instant};

use libp2p::PeerId;
use shoal_protocol::Digest;
use shoal_protocol::chain::ChunkMap;
use shoal_protocol::wire::Message;

use super::downloads::DownloadState;
use super::peers::PeerBook;
use super::schedule::Schedule;
use super::session::Session;
use crate::limits::RateLimiter;
use crate::metrics::Metrics;
use crate::store::PartialBlob;

/// How often a partial provider's have-map is asked for again.
pub const HAVE_POLL: Duration = Duration::from_millis(300);
/// Broken requests a stream may have before its peer is dropped from the
/// fetch (a stall ends in a broken request too, after the timeout).
const MAX_BREAKS: u32 = 1;
/// Rejected chunks kept per round in case another map is the true one.
pub const MAX_ORPHANS: usize = 8;
/// A fetch in which no chunk arrived for this long gives up.
pub const STALL_LIMIT: Duration = Duration::from_secs(20);

/// What the workers of one round (one chunk map) share.
pub struct Round {
    pub schedule: tokio::sync::Mutex<Schedule>,
    pub wake: tokio::sync::Notify,
    pub map: Arc<ChunkMap>,
    /// The other candidate maps, not yet disproved.
    pub other_maps: Vec<Arc<ChunkMap>>,
    pub digest: Digest,
    pub partial: PartialBlob,
    pub state: Arc<DownloadState>,
    pub metrics: Arc<Metrics>,
    pub peers: PeerBook,
    /// Paid for every chunk stored (`[limits] peer_download`).
    pub download_limit: RateLimiter,
}

pub struct Worker {
    pub peer: PeerId,
    pub primary: bool,
    pub session: Option<Session>,
    pub control: libp2p_stream::Control,
    pub round: Arc<Round>,
}

/// How one chunk request ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outcome {
    Stored,
    /// The bytes failed their check.
    Rejected,
    /// The peer does not hold the chunk (a partial provider).
    Lacking,
    /// The peer did not answer properly (timeout, error, wrong reply).
    Broken,
    /// Another request stored the chunk first (end-game); this one was cut.
    Abandoned,
}

enum Next {
    Chunk(u32),
    Open,
    Poll,
    Wait,
    Done,
}

impl Worker {
    /// Takes chunks until none are left or this peer fails; gives back its
    /// session when it is still usable.
    pub async fn run(mut self) -> (PeerId, Option<Session>) {
        let mut last_poll = Instant::now();
        let mut breaks = 0;
        loop {
            let next = decide(
                &self.round,
                self.peer,
                self.primary,
                self.session.is_some(),
                last_poll,
            )
            .await;
            let index = match next {
                Next::Chunk(i) => i,
                Next::Open => {
                    self.session = Session::open(&mut self.control, self.peer).await;
                    if self.session.is_none() {
                        return (self.peer, None);
                    }
                    continue;
                }
                Next::Poll => {
                    last_poll = Instant::now();
                    if !self.poll_have().await {
                        return (self.peer, None);
                    }
                    continue;
                }
                Next::Wait => {
                    let _ = tokio::time::timeout(
                        Duration::from_millis(100),
                        self.round.wake.notified(),
                    )
                    .await;
                    continue;
                }
                Next::Done => return (self.peer, self.session),
            };
            let Some(session) = self.session.as_mut() else {
                return (self.peer, None);
            };
            let started = Instant::now();
            let outcome = tokio::select! {
                outcome = one_chunk(&self.round, self.peer, session, index) => outcome,
                () = until_stored(&self.round, index) => Outcome::Abandoned,
            };
            self.round.schedule.lock().await.settle(index);
            self.round.wake.notify_waiters();
            match outcome {
                // Paid after the chunk, outside the race above (a wait in
                // there would look like a slow peer): the wait holds back
                // this stream's next request.
                Outcome::Stored => {
                    let len = self.round.map.plan().len_of(index).unwrap_or(0);
                    self.round.download_limit.acquire(u64::from(len)).await;
                }
                Outcome::Lacking => {
                    last_poll = Instant::now().checked_sub(HAVE_POLL).unwrap_or(last_poll);
                }
                // Its bytes failed under this map: no more chunks from it
                // now; whether it lied or the map did is settled when the
                // round ends.
                Outcome::Rejected => return (self.peer, self.session),
                // A request left half-answered leaves the stream unusable.
                // Not a ban: streams also break when the peer's accept
                // queue overflows under a burst (libp2p-stream drops them).
                Outcome::Broken => {
                    self.round.peers.delivered(self.peer, 0, started.elapsed());
                    breaks += 1;
                    if breaks > MAX_BREAKS {
                        return (self.peer, None);
                    }
                    // A fresh stream (decide() opens one) gets another go.
                    self.session = None;
                }
                // Outrun by a duplicate request after the end-game wait: too
                // slow (or stalled) to keep for this fetch, and scored so.
                Outcome::Abandoned => {
                    tracing::debug!(peer = %self.peer, index, "request outrun in the end-game; dropping the peer");
                    self.round.peers.delivered(self.peer, 0, started.elapsed());
                    Metrics::add(&self.round.metrics.peers_banned_total, 1);
                    return (self.peer, None);
                }
            }
        }
    }

    /// Asks the peer which chunks it holds now; false when it fails.
    async fn poll_have(&mut self) -> bool {
        let Some(session) = self.session.as_mut() else {
            return false;
        };
        let reply = session
            .ask(&Message::GetHave {
                digest: self.round.digest.clone(),
            })
            .await;
        match reply {
            Ok(Message::Have { digest, bitmap }) if digest == self.round.digest => {
                self.round
                    .schedule
                    .lock()
                    .await
                    .set_bitmap(self.peer, &bitmap);
                true
            }
            Ok(Message::NotFound { .. }) => {
                self.round.schedule.lock().await.set_bitmap(self.peer, &[]);
                true
            }
            _ => false,
        }
    }
}

/// What a worker does next (a free function: a `&Worker` holds a stream,
/// which is not `Sync`, so it cannot be held across the lock's await).
async fn decide(
    round: &Round,
    peer: PeerId,
    primary: bool,
    has_session: bool,
    last_poll: Instant,
) -> Next {
    let mut s = round.schedule.lock().await;
    if s.map_forged || s.verifier.complete() || s.rejected.contains(&peer) {
        return Next::Done;
    }
    let idle_done = s.nothing_wanted() && s.in_flight == 0;
    if !primary && !s.trusted.contains(&peer) {
        return if idle_done { Next::Done } else { Next::Wait };
    }
    if !has_session {
        return if idle_done { Next::Done } else { Next::Open };
    }
    if let Some(i) = s.take_for(&peer) {
        return Next::Chunk(i);
    }
    if let Some(i) = s.take_endgame_for(&peer) {
        return Next::Chunk(i);
    }
    if idle_done || s.stalled() {
        return Next::Done;
    }
    if primary
        && !s.is_complete_provider(&peer)
        && !s.nothing_wanted()
        && last_poll.elapsed() >= HAVE_POLL
    {
        return Next::Poll;
    }
    Next::Wait
}

/// Completes once another request has stored chunk `index`.
async fn until_stored(round: &Round, index: u32) {
    loop {
        let notified = round.wake.notified();
        {
            let s = round.schedule.lock().await;
            if s.stored.contains(&index) || s.map_forged || s.stalled() {
                return;
            }
        }
        let _ = tokio::time::timeout(Duration::from_millis(200), notified).await;
    }
}

/// Fetches, checks and stores one chunk.
async fn one_chunk(round: &Round, peer: PeerId, session: &mut Session, index: u32) -> Outcome {
    let started = Instant::now();
    let reply = session
        .ask(&Message::GetChunk {
            digest: round.digest.clone(),
            index,
        })
        .await;
    let bytes = match reply {
        Ok(Message::Chunk {
            digest: d,
            index: i,
            bytes,
        }) if d == round.digest && i == index => bytes,
        Ok(Message::NotFound { .. }) => {
            round.schedule.lock().await.lacks(&peer, index);
            return Outcome::Lacking;
        }
        other => {
            tracing::debug!(%peer, index, ok = other.is_ok(), "provider failed; dropping it");
            Metrics::add(&round.metrics.peers_banned_total, 1);
            return Outcome::Broken;
        }
    };
    Metrics::add(&round.metrics.p2p_bytes_received_total, bytes.len() as u64);
    // Hashing a chunk takes a while: done before taking the lock.
    let judged = round.map.judge(&round.digest, index, &bytes);
    let mut s = round.schedule.lock().await;
    if s.stored.contains(&index) {
        // The end-game's other copy arrived first.
        return Outcome::Stored;
    }
    if let Err(e) = judged {
        Metrics::add(&round.metrics.chunks_rejected_total, 1);
        // Two different peers sending the same bytes that fail the same
        // check: the map is the lie, not them.
        let fingerprint = Digest::sha256_of(&bytes);
        if s.orphans.len() < MAX_ORPHANS
            && round
                .other_maps
                .iter()
                .any(|m| m.judge(&round.digest, index, &bytes).is_ok())
        {
            // Fits another candidate map: not thrown away yet.
            s.orphans.insert(index, bytes.clone());
        }
        let earlier = s.failures.entry(index).or_default();
        if earlier.iter().any(|(p, f)| *p != peer && *f == fingerprint) {
            s.map_forged = true;
            tracing::warn!(index, "two peers agree on a chunk the map rejects");
            return Outcome::Rejected;
        }
        earlier.push((peer, fingerprint));
        s.rejected.insert(peer);
        tracing::warn!(%peer, index, error = %e, "chunk failed its check; dropping the sender");
        Metrics::add(&round.metrics.peers_banned_total, 1);
        return Outcome::Rejected;
    }
    s.trusted.insert(peer);
    let offset = u64::from(index) * u64::from(s.verifier.plan().chunk_size());
    drop(s);
    let len = bytes.len();
    if round
        .partial
        .write_chunk(index, offset, bytes)
        .await
        .is_err()
    {
        return Outcome::Broken;
    }
    Metrics::add(&round.metrics.chunks_verified_total, 1);
    round.peers.delivered(peer, len, started.elapsed());
    let mut s = round.schedule.lock().await;
    if s.stored.insert(index) {
        s.verifier.accept(index);
        s.last_progress = Instant::now();
    }
    let proven = s.verifier.complete();
    drop(s);
    round.state.mark_checked(index);
    if proven {
        round.state.mark_proven();
    }
    Outcome::Stored
}
