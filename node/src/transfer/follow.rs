//! Following the node that fetches a blob from upstream (the leader, chosen
//! in `upstream_lead.rs`): each chunk is taken as soon as the leader has
//! it, from the leader or from another follower that already has it, and
//! checked against the leader's chain prefix. The blob crosses the uplink
//! once and the followers finish right behind the leader.
//!
//! Spreading: a new chunk is asked of the leader by one follower only (its
//! *first receiver*, by the chunk's index among the followers sorted by
//! peer id); the others take it from the followers that have it, rarest
//! first. So the leader's upload carries each chunk about once and the
//! followers' uploads carry the copies. A chunk nobody took from the
//! leader within [`FIRST_RECEIVER_WAIT`] may be asked of it by one more
//! follower per wait; one a follower has is never asked of the leader.
//!
//! Trust: a follower's chunk must match the leader's prefix, so a follower
//! cannot forge bytes (it is banned at the first wrong chunk). The leader
//! can — its prefix proves nothing until the last chunk finishes to the
//! digest. If it does not, everything taken under that prefix is thrown
//! away and the leader banned (`docs/security.md`).

use std::collections::{HashMap, HashSet};
use std::hash::BuildHasher;
use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use futures_util::future::BoxFuture;
use futures_util::stream::FuturesUnordered;
use libp2p::PeerId;
use shoal_protocol::Digest;
use shoal_protocol::chain::ChainPrefix;
use shoal_protocol::wire::Message;
use tokio::time::Instant;

use super::downloads::DownloadState;
use super::fetch::{FIND_DEADLINE, Fetcher};
use super::peers::LIE_BAN;
use super::session::{Session, ask_chunk};
use crate::metrics::Metrics;
use crate::store::{BlobInfo, PartialBlob, StoreError};

/// How often the leader's have-map (and, when it shows new chunks, its
/// prefix) is asked for; at most [`MEMBERS_PER_POLL`] other followers'
/// have-maps are asked for with it, in turn. So a follower asks a bounded
/// number of peers per second however many follow (16 hosts pulling six
/// layers asked each other some 8,000 times a second with every follower
/// polled every other tick, most of two cores' time).
const POLL: Duration = Duration::from_millis(100);
const MEMBERS_PER_POLL: usize = 3;
/// Chunk requests in flight at once, and to one peer.
const IN_FLIGHT: usize = 6;
const PER_PEER: usize = 2;
/// A new chunk left to its first receiver this long before anyone asks
/// the leader for it.
const FIRST_RECEIVER_WAIT: Duration = Duration::from_millis(800);
/// How long the leader may take to answer with its first prefix.
const LEADER_FIRST_ANSWER: Duration = Duration::from_secs(5);
/// Have-map asks in a row the leader may fail (a stream dropped while it
/// is busy) before it counts as gone.
const LEADER_MISSES: u32 = 5;
/// The leader's prefix not growing for this long, while it answers: it is
/// given up on. Long, because a chunk completes only when its last byte is
/// in, and a leader sharing a slow uplink among several layers (a 4 MiB
/// chunk through a third of 20 Mbit/s takes five seconds, more when other
/// leaders pull too) is slow, not stuck; taking over would pull through
/// the same uplink. A leader that stops answering, or no longer has the
/// fetch, is left after [`LEADER_MISSES`] polls.
const LEADER_STALL: Duration = Duration::from_secs(60);
/// How often the other followers are looked up in the DHT.
const REFIND_EVERY: Duration = Duration::from_secs(2);
/// Followers asked for have-maps and chunks at most.
const MAX_MEMBERS: usize = 32;

/// How following ended.
#[derive(Debug)]
pub(super) enum FollowEnd {
    Done(BlobInfo),
    /// The leader stopped answering or stalled. Chunks taken so far stay,
    /// with the prefix they were checked against, for whoever goes on.
    LeaderLost,
    /// The leader's chunks do not finish to the digest: all were dropped.
    LeaderLied,
    /// The store failed.
    Store(StoreError),
}

enum Event {
    Chunk {
        peer: PeerId,
        index: u32,
        answer: Option<Vec<u8>>,
        session: Option<Session>,
        /// How long the ask took (for the debug log).
        took: Duration,
    },
    Have {
        peer: PeerId,
        bitmap: Option<Vec<bool>>,
        /// The leader's prefix, asked for with its have-map.
        prefix: Option<ChainPrefix>,
        session: Option<Session>,
    },
    Members(Vec<PeerId>),
}

/// One follower's view of the swarm around a blob.
struct Swarm {
    leader: PeerId,
    /// Chunks in the blob.
    count: usize,
    me: PeerId,
    /// Other followers (not this node), sorted by peer id, no repeats.
    members: Vec<PeerId>,
    have: HashMap<PeerId, Vec<bool>>,
    idle: HashMap<PeerId, Vec<Session>>,
    busy: HashMap<PeerId, usize>,
    polling: HashSet<PeerId>,
    in_flight: HashSet<u32>,
    /// When each chunk was first seen at the leader.
    seen_at_leader: HashMap<u32, Instant>,
    /// Random tie-breaks, fixed per follow.
    tie: std::hash::RandomState,
}

impl Swarm {
    fn holders(&self, index: u32) -> impl Iterator<Item = PeerId> + '_ {
        self.have
            .iter()
            .filter(move |(_, bits)| bits.get(index as usize).copied().unwrap_or(false))
            .map(|(p, _)| *p)
    }

    /// Whether this node may take `index` from the leader, `waits` whole
    /// [`FIRST_RECEIVER_WAIT`]s after the leader got it: its first
    /// receiver (by the chunk's index among the followers sorted by peer
    /// id) at once, the next follower in that order after one wait, the
    /// next after two, and so on. A slow first receiver is backed up one
    /// follower at a time, never by all of them at once: the leader's
    /// upload, which may have room for one copy of each chunk only, is
    /// not swamped.
    fn may_take_from_leader(&self, index: u32, waits: u32) -> bool {
        // `members` is sorted and leaves this node out: its place among
        // all followers is where it would go in.
        let n = self.members.len() + 1;
        let mine = self.members.partition_point(|p| *p < self.me);
        // How many places after the first receiver this node comes.
        let behind = (mine + n - index as usize % n) % n;
        behind <= waits as usize
    }

    fn free(&self, peer: &PeerId) -> bool {
        self.busy.get(peer).copied().unwrap_or(0) < PER_PEER
    }
}

impl Fetcher {
    /// Takes `state`'s blob from `leader` and the other followers while
    /// the leader fetches it from upstream.
    pub(super) async fn follow(&self, state: &Arc<DownloadState>, leader: PeerId) -> FollowEnd {
        let digest = state.digest.clone();
        let mut control = self.network().stream_control();
        // The leader may not have its plan yet (it is opening the upstream
        // response), and a stream may be dropped when it is busy: ask
        // until it answers, for a while.
        let waited = Instant::now();
        let mut session = None;
        let (first, leader_prefix) = loop {
            if waited.elapsed() > LEADER_FIRST_ANSWER {
                return FollowEnd::LeaderLost;
            }
            let mut current = match session.take() {
                Some(s) => s,
                None => match Session::open(&mut control, leader).await {
                    Some(s) => s,
                    None => {
                        tokio::time::sleep(POLL).await;
                        continue;
                    }
                },
            };
            match current
                .ask(&Message::GetPrefix {
                    digest: digest.clone(),
                })
                .await
            {
                Ok(Message::Prefix { digest: d, prefix }) if d == digest => {
                    break (current, prefix);
                }
                // Not fetching yet: ask again on the same stream.
                Ok(_) => session = Some(current),
                // The stream broke: a fresh one next time.
                Err(_) => {}
            }
            tokio::time::sleep(POLL).await;
        };
        match self.follow_with(state, leader, first, leader_prefix).await {
            Ok(end) => end,
            Err(e) => FollowEnd::Store(e),
        }
    }

    async fn follow_with(
        &self,
        state: &Arc<DownloadState>,
        leader: PeerId,
        session: Session,
        leader_prefix: ChainPrefix,
    ) -> Result<FollowEnd, StoreError> {
        let digest = state.digest.clone();
        let plan = leader_prefix.plan();
        // Going on from an earlier leader's prefix (a takeover) keeps what
        // was taken under it, if the new one agrees.
        let (partial, mut prefix) = match state.view() {
            Some(view) if view.plan == plan && view.map.is_none() => {
                let mut prefix = view
                    .prefix
                    .unwrap_or_else(|| ChainPrefix::empty(digest.algorithm(), plan));
                if prefix.extend(&leader_prefix).is_err() {
                    tracing::warn!(%digest, %leader, "the new leader's prefix contradicts the old one; starting over");
                    view.partial.discard().await;
                    self.fresh_partial(state, &leader_prefix).await?
                } else {
                    (view.partial, prefix)
                }
            }
            _ => self.fresh_partial(state, &leader_prefix).await?,
        };
        state.set_prefix(prefix.clone());
        state.set_source("peers");
        if let Err(e) = self.network().provide(&digest).await {
            tracing::debug!(%digest, error = %e, "could not announce a partial blob");
        }
        tracing::info!(%digest, %leader, known = prefix.known(), of = plan.count(), "following the upstream fetch");

        let mut have: Vec<bool> = state.view().map(|v| v.checked).unwrap_or_default();
        have.resize(plan.count() as usize, false);
        let mut swarm = Swarm {
            leader,
            count: plan.count() as usize,
            me: self.network().peer_id(),
            members: Vec::new(),
            have: HashMap::new(),
            idle: HashMap::from([(leader, vec![session])]),
            busy: HashMap::new(),
            polling: HashSet::new(),
            in_flight: HashSet::new(),
            seen_at_leader: HashMap::new(),
            tie: std::hash::RandomState::new(),
        };
        let followed = Instant::now();
        let mut next_member: usize = 0;
        let mut last_poll = Instant::now() - POLL;
        let mut leader_misses: u32 = 0;
        let mut events: FuturesUnordered<BoxFuture<'static, Event>> = FuturesUnordered::new();
        let mut last_growth = Instant::now();
        let mut last_find: Option<Instant> = None;
        let mut finding = false;
        let mut poll = tokio::time::interval(POLL);
        poll.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);

        loop {
            if have.iter().all(|h| *h) && prefix.is_whole() {
                // Every chunk matched the prefix and the last one finished
                // to the digest: the chain from the first state to the
                // digest holds, so the bytes are the blob.
                let Some(map) = prefix.to_map() else {
                    return Ok(FollowEnd::LeaderLied);
                };
                state.mark_proven();
                return match partial.commit_proven(&digest, Some(&map)).await {
                    Ok(info) => {
                        let secs = followed.elapsed().as_secs_f64();
                        tracing::info!(%digest, %leader, size = info.size, secs = format!("{secs:.2}"), "followed the upstream fetch to the end");
                        Ok(FollowEnd::Done(info))
                    }
                    Err(StoreError::DigestMismatch { .. }) => Ok(FollowEnd::LeaderLied),
                    Err(e) => Err(e),
                };
            }
            if last_growth.elapsed() > LEADER_STALL || self.stop_token().is_cancelled() {
                tracing::info!(%digest, %leader, "the leader stalled; giving it up");
                return Ok(FollowEnd::LeaderLost);
            }
            if !finding && last_find.is_none_or(|t| t.elapsed() > REFIND_EVERY) {
                finding = true;
                let (network, digest) = (self.network().clone(), digest.clone());
                events.push(Box::pin(async move {
                    let found = network
                        .recent_providers(&digest, MAX_MEMBERS, FIND_DEADLINE)
                        .await
                        .unwrap_or_default();
                    Event::Members(found)
                }));
            }
            self.request_chunks(&digest, &prefix, &have, &mut swarm, &mut events);

            tokio::select! {
                _ = poll.tick() => {
                    // Asked about four times per chunk the leader takes in,
                    // at most every POLL: a leader taking a chunk a second
                    // (a shared 20 Mbit/s uplink) is not asked ten times
                    // for nothing new, one taking ten a second is.
                    let per_chunk = followed.elapsed() / prefix.known().max(1);
                    let every = (per_chunk / 4).clamp(POLL, 4 * POLL);
                    if last_poll.elapsed() + POLL / 2 >= every {
                        last_poll = Instant::now();
                        self.poll_haves(&digest, prefix.known(), &mut next_member, &mut swarm, &mut events);
                    }
                }
                Some(event) = events.next() => match event {
                    Event::Members(found) => {
                        finding = false;
                        last_find = Some(Instant::now());
                        let mut members: Vec<PeerId> = found
                            .into_iter()
                            .filter(|p| *p != swarm.me && *p != leader && !self.peer_book().is_banned(p))
                            .collect();
                        members.sort();
                        members.dedup();
                        members.truncate(MAX_MEMBERS);
                        swarm.members = members;
                    }
                    Event::Have { peer, bitmap, prefix: newer, session } => {
                        swarm.polling.remove(&peer);
                        if let Some(s) = session {
                            swarm.idle.entry(peer).or_default().push(s);
                            if peer == leader {
                                leader_misses = 0;
                            }
                        } else if peer == leader {
                            leader_misses += 1;
                            if leader_misses >= LEADER_MISSES {
                                return Ok(FollowEnd::LeaderLost);
                            }
                        }
                        if let Some(newer) = newer {
                            let before = prefix.known();
                            if prefix.extend(&newer).is_err() {
                                tracing::warn!(%digest, %leader, "the leader changed its prefix");
                                self.peer_book().ban(leader, LIE_BAN);
                                partial.discard().await;
                                return Ok(FollowEnd::LeaderLied);
                            }
                            if prefix.known() > before || prefix.is_whole() {
                                last_growth = Instant::now();
                            }
                            if prefix.known() > before {
                                state.set_prefix(prefix.clone());
                            }
                        }
                        if let Some(bits) = bitmap {
                            if peer == leader {
                                let now = Instant::now();
                                for (i, b) in bits.iter().enumerate() {
                                    if *b {
                                        swarm.seen_at_leader.entry(i as u32).or_insert(now);
                                    }
                                }
                            }
                            swarm.have.insert(peer, bits);
                        }
                    }
                    Event::Chunk { peer, index, answer, session, took } => {
                        tracing::debug!(%digest, %peer, from_leader = peer == leader, index, ok = answer.is_some(), took_ms = took.as_millis() as u64, in_flight = swarm.in_flight.len(), "chunk answer");
                        swarm.in_flight.remove(&index);
                        if let Some(n) = swarm.busy.get_mut(&peer) {
                            *n = n.saturating_sub(1);
                        }
                        if let Some(s) = session {
                            swarm.idle.entry(peer).or_default().push(s);
                        }
                        let Some(bytes) = answer else {
                            // Not there after all, or broke off: ask again
                            // after the next have-map.
                            if let Some(bits) = swarm.have.get_mut(&peer)
                                && let Some(b) = bits.get_mut(index as usize)
                            {
                                *b = false;
                            }
                            continue;
                        };
                        if have[index as usize] {
                            continue;
                        }
                        if let Err(e) = prefix.judge(&digest, index, &bytes) {
                            tracing::warn!(%digest, %peer, index, error = %e, "a chunk did not match the leader's prefix");
                            Metrics::add(&self.metrics.peers_banned_total, 1);
                            self.peer_book().ban(peer, LIE_BAN);
                            if peer == leader {
                                // Its own bytes do not fit its own story.
                                partial.discard().await;
                                return Ok(FollowEnd::LeaderLied);
                            }
                            swarm.have.remove(&peer);
                            swarm.members.retain(|p| *p != peer);
                            swarm.idle.remove(&peer);
                            continue;
                        }
                        let offset = u64::from(index) * u64::from(plan.chunk_size());
                        Metrics::add(&self.metrics.p2p_bytes_received_total, bytes.len() as u64);
                        Metrics::add(&self.metrics.chunks_verified_total, 1);
                        partial.write_chunk(index, offset, bytes).await?;
                        have[index as usize] = true;
                        state.mark_checked(index);
                    }
                },
            }
        }
    }

    async fn fresh_partial(
        &self,
        state: &Arc<DownloadState>,
        prefix: &ChainPrefix,
    ) -> Result<(PartialBlob, ChainPrefix), StoreError> {
        let plan = prefix.plan();
        let partial = self.open_partial(&state.digest, plan).await?;
        // Left by an earlier run: not pinned by anything known here.
        for index in partial.claimed() {
            partial.forget(index).await?;
        }
        state.set_plan(partial.clone(), plan, None, "peers");
        Ok((partial, prefix.clone()))
    }

    /// Asks the leader for its have-map (and its prefix, when the map shows
    /// chunks past the `known` states), and the next [`MEMBERS_PER_POLL`]
    /// followers from `*next_member` on for theirs; a peer still answering
    /// the last ask is skipped.
    fn poll_haves(
        &self,
        digest: &Digest,
        known: u32,
        next_member: &mut usize,
        swarm: &mut Swarm,
        events: &mut FuturesUnordered<BoxFuture<'static, Event>>,
    ) {
        let n = swarm.members.len();
        let take = n.min(MEMBERS_PER_POLL);
        let start = if n == 0 { 0 } else { *next_member % n };
        *next_member = start + take;
        let peers: Vec<PeerId> = std::iter::once(swarm.leader)
            .chain(swarm.members.iter().cycle().skip(start).take(take).copied())
            .collect();
        let count = swarm.count;
        for peer in peers {
            if swarm.polling.contains(&peer) {
                continue;
            }
            let session = swarm.idle.get_mut(&peer).and_then(Vec::pop);
            if session.is_none() && swarm.busy.get(&peer).copied().unwrap_or(0) > 0 {
                // Its streams are busy with chunks: ask next time.
                continue;
            }
            swarm.polling.insert(peer);
            let is_leader = peer == swarm.leader;
            let mut control = self.network().stream_control();
            let digest = digest.clone();
            events.push(Box::pin(async move {
                let failed = Event::Have {
                    peer,
                    bitmap: None,
                    prefix: None,
                    session: None,
                };
                let session = match session {
                    Some(s) => Some(s),
                    None => Session::open(&mut control, peer).await,
                };
                let Some(mut session) = session else {
                    return failed;
                };
                let bitmap = match session
                    .ask(&Message::GetHave {
                        digest: digest.clone(),
                    })
                    .await
                {
                    Ok(Message::Have { bitmap, .. }) => super::bitmap::decode(&bitmap, count),
                    _ => return failed,
                };
                // A chunk it offers is one its prefix covers.
                let mut prefix = None;
                let newer = bitmap.iter().skip(known as usize).any(|b| *b);
                if is_leader && newer {
                    match session
                        .ask(&Message::GetPrefix {
                            digest: digest.clone(),
                        })
                        .await
                    {
                        Ok(Message::Prefix {
                            digest: d,
                            prefix: p,
                        }) if d == digest => prefix = Some(p),
                        _ => return failed,
                    }
                }
                Event::Have {
                    peer,
                    bitmap: Some(bitmap),
                    prefix,
                    session: Some(session),
                }
            }));
        }
    }

    /// Hands out chunk requests: rarest first among the followers' copies,
    /// new chunks from the leader by their first receiver (or by anyone
    /// once they waited long enough).
    fn request_chunks(
        &self,
        digest: &Digest,
        prefix: &ChainPrefix,
        have: &[bool],
        swarm: &mut Swarm,
        events: &mut FuturesUnordered<BoxFuture<'static, Event>>,
    ) {
        let count = prefix.plan().count();
        let mut wanted: Vec<(usize, u32)> = (0..count)
            .filter(|i| !have[*i as usize] && !swarm.in_flight.contains(i) && prefix.covers(*i))
            .map(|i| {
                let copies = swarm.holders(i).filter(|p| *p != swarm.leader).count();
                (copies, i)
            })
            .collect();
        // Rarest first (random among equals), but a chunk nobody but the
        // leader has comes last: it goes to its first receiver.
        wanted.sort_by_key(|(copies, i)| {
            let copies = if *copies == 0 { usize::MAX } else { *copies };
            (copies, swarm.tie.hash_one(i))
        });
        for (copies, index) in wanted {
            if swarm.in_flight.len() >= IN_FLIGHT {
                return;
            }
            let source = if copies > 0 {
                swarm
                    .holders(index)
                    .filter(|p| *p != swarm.leader && swarm.free(p))
                    .min_by_key(|p| swarm.tie.hash_one((p, index)))
            } else {
                None
            };
            let source = source.or_else(|| {
                let at_leader = swarm.holders(index).any(|p| p == swarm.leader);
                let waits = swarm.seen_at_leader.get(&index).map_or(0, |t| {
                    let waits = t.elapsed().as_millis() / FIRST_RECEIVER_WAIT.as_millis();
                    u32::try_from(waits).unwrap_or(u32::MAX)
                });
                // A chunk a follower has is never asked of the leader: when
                // the uplink is as fast as a node's upload, the leader's
                // upload has room for one copy of each chunk and no more,
                // and every extra ask slows the first receivers down.
                (at_leader
                    && swarm.free(&swarm.leader)
                    && copies == 0
                    && swarm.may_take_from_leader(index, waits))
                .then_some(swarm.leader)
            });
            let Some(peer) = source else { continue };
            swarm.in_flight.insert(index);
            *swarm.busy.entry(peer).or_default() += 1;
            let session = swarm.idle.get_mut(&peer).and_then(Vec::pop);
            let mut control = self.network().stream_control();
            let digest = digest.clone();
            let limit = self.download_limit().clone();
            events.push(Box::pin(async move {
                let asked = Instant::now();
                let (answer, session) =
                    ask_chunk(&mut control, session, peer, &digest, index, &limit).await;
                Event::Chunk {
                    peer,
                    index,
                    answer,
                    session,
                    took: asked.elapsed(),
                }
            }));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn swarm_of(me: PeerId, members: Vec<PeerId>) -> Swarm {
        Swarm {
            leader: PeerId::random(),
            count: 64,
            me,
            members,
            have: HashMap::new(),
            idle: HashMap::new(),
            busy: HashMap::new(),
            polling: HashSet::new(),
            in_flight: HashSet::new(),
            seen_at_leader: HashMap::new(),
            tie: std::hash::RandomState::new(),
        }
    }

    #[test]
    fn one_more_follower_may_ask_the_leader_per_wait() {
        let mut peers: Vec<PeerId> = (0..5).map(|_| PeerId::random()).collect();
        peers.sort();
        let views: Vec<Swarm> = peers
            .iter()
            .map(|me| swarm_of(*me, peers.iter().filter(|p| *p != me).copied().collect()))
            .collect();
        for index in 0..10u32 {
            for waits in 0..7u32 {
                let allowed = views
                    .iter()
                    .filter(|s| s.may_take_from_leader(index, waits))
                    .count();
                assert_eq!(
                    allowed,
                    (waits as usize + 1).min(5),
                    "chunk {index}, {waits} waits"
                );
            }
            // At once: exactly the first receiver, by index among the sorted.
            let first = &views[index as usize % 5];
            assert!(first.may_take_from_leader(index, 0));
        }
    }
}
