//! Following the node that fetches a blob from upstream (the leader, chosen
//! in `upstream_lead.rs`): each chunk is taken, in order, from this node's
//! predecessor in the chain of followers (`relay_chain.rs`) as soon as the
//! predecessor has it, and checked against the leader's chain prefix. The
//! blob crosses the uplink once, every follower's link carries one copy in
//! and one out, and the followers finish right behind the leader.
//!
//! A chunk is asked for with `WaitChunk` a few chunks ahead of the states
//! the leader has published, so a predecessor sends it the moment it has
//! checked it. One that arrives before this node knows the state after it
//! waits in memory (at most [`CHAIN_AHEAD`] chunks) for the next prefix.
//!
//! Trust: a follower's chunk must match the leader's prefix, so a follower
//! cannot forge bytes (it is banned at the first wrong chunk). The leader
//! can — its prefix proves nothing until the last chunk finishes to the
//! digest. If it does not, everything taken under that prefix is thrown
//! away and the leader banned (`docs/security.md`).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use futures_util::future::BoxFuture;
use futures_util::stream::FuturesUnordered;
use libp2p::PeerId;
use shoal_protocol::Digest;
use shoal_protocol::chain::{ChainPrefix, PrefixTail};
use shoal_protocol::wire::Message;
use tokio::time::Instant;

use super::chain_window::CHAIN_AHEAD;
use super::downloads::DownloadState;
use super::fetch::{FIND_DEADLINE, Fetcher};
use super::peers::LIE_BAN;
use super::relay_chain::{RelayChain, next_wanted};
use super::session::{Session, ask_chunk};
use super::upstream_lead::{CLAIM_SETTLE, claim_key};
use crate::metrics::Metrics;
use crate::store::{BlobInfo, PartialBlob, StoreError};

/// How often the leader is asked for the states past the known ones, at
/// most (the answer is a `PrefixTail`: a few states, not all of them).
const POLL: Duration = Duration::from_millis(100);
/// How soon a leader that is not fetching yet is asked again for its
/// first prefix: a follower that picked the site's leader at once asks
/// while the leader opens its upstream response.
const FIRST_ASK_RETRY: Duration = Duration::from_millis(20);
/// How long the predecessor may hold an ask for a chunk it does not have.
/// One the leader has had this long and the predecessor still has not is
/// a miss (`relay_chain.rs`).
const CHAIN_WAIT: Duration = Duration::from_secs(1);
/// How long the leader may take to answer with its first prefix.
const LEADER_FIRST_ANSWER: Duration = Duration::from_secs(5);
/// Polls in a row the leader may fail (a stream dropped while it
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
/// How often the other followers are looked for (in the node's provider
/// store in a small site, else in the DHT).
const REFIND_EVERY: Duration = Duration::from_secs(2);
/// How often in a small site, for the first twice [`CLAIM_SETTLE`] of
/// following: a follower that started at once, before the claims settled
/// (`upstream_lead.rs`), finds the others' claims in its store as they
/// arrive and moves from the leader to its place in the chain. Elsewhere
/// each look is a DHT lookup, and the followers started after the settle.
const REFIND_EARLY: Duration = Duration::from_millis(25);
/// Followers kept in view at most.
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
        /// Whether the leader had the chunk when it was asked for, so the
        /// peer could have had it within [`CHAIN_WAIT`].
        due: bool,
        answer: Option<Vec<u8>>,
        session: Option<Session>,
        /// How long the ask took (for the debug log).
        took: Duration,
    },
    /// The leader's poll: the states it has past the known ones, if any.
    Leader {
        answered: bool,
        tail: Option<PrefixTail>,
        session: Option<Session>,
    },
    Members(Vec<PeerId>),
}

/// A chunk as it came from a peer, not yet checked.
struct Received {
    peer: PeerId,
    index: u32,
    bytes: Vec<u8>,
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
                        tokio::time::sleep(FIRST_ASK_RETRY).await;
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
            tokio::time::sleep(FIRST_ASK_RETRY).await;
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
        tracing::info!(%digest, %leader, known = prefix.known(), of = plan.count(), "following the upstream fetch");

        let mut have: Vec<bool> = state.view().map(|v| v.checked).unwrap_or_default();
        have.resize(plan.count() as usize, false);
        let mut chain = RelayChain::new(leader, self.network().peer_id());
        let small_site = matches!(self.network().site_peers().await, Ok(Some(_)));
        // Counted in the shared window only while a chunk is left to ask
        // for: a blob whose last chunks are all asked (or that is being
        // committed) leaves its part to the blobs still coming in.
        let mut following = Some(self.chain_window().follow());
        // Streams not in use, per peer: the leader's poll stream, and the
        // streams of the asks to predecessors.
        let mut idle: HashMap<PeerId, Vec<Session>> = HashMap::from([(leader, vec![session])]);
        let mut in_flight: HashSet<u32> = HashSet::new();
        // Chunks that came before the state after them was known.
        let mut waiting: BTreeMap<u32, Received> = BTreeMap::new();
        let followed = Instant::now();
        let mut last_poll = Instant::now() - POLL;
        let mut polling = false;
        let mut leader_misses: u32 = 0;
        let mut events: FuturesUnordered<BoxFuture<'static, Event>> = FuturesUnordered::new();
        let mut last_growth = Instant::now();
        let mut last_find: Option<Instant> = None;
        let mut finding = false;
        let mut poll = tokio::time::interval(POLL);
        poll.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);

        // The partial blob is announced once it holds a checked chunk, not
        // before: a node that claims late follows a claimant already
        // fetching, and one that had announced with nothing in hand could
        // be chosen as leader by a node its own chain waits on (a cycle of
        // waits, broken only by a pass-over after two seconds; seen once in
        // 86 runs of eight hosts).
        let mut announced = false;
        loop {
            if !announced && have.iter().any(|h| *h) {
                announced = true;
                if let Err(e) = self.network().provide(&digest).await {
                    tracing::debug!(%digest, error = %e, "could not announce a partial blob");
                }
            }
            let asked = |i: u32| in_flight.contains(&i) || waiting.contains_key(&i);
            let left_to_ask = !next_wanted(&have, asked, 0, u32::MAX, 1).is_empty();
            self.chain_window().hold(&mut following, left_to_ask);
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
            let refind = if small_site && followed.elapsed() < 2 * CLAIM_SETTLE {
                REFIND_EARLY
            } else {
                REFIND_EVERY
            };
            if !finding && last_find.is_none_or(|t| t.elapsed() > refind) {
                finding = true;
                let (network, digest) = (self.network().clone(), digest.clone());
                events.push(Box::pin(async move {
                    // The claimants of the upstream fetch are known from the
                    // start (they claim before they follow); the partial
                    // blob's providers include followers that came later.
                    let claim = claim_key(&digest);
                    let (claimants, holders) = tokio::join!(
                        network.recent_providers(&claim, MAX_MEMBERS, FIND_DEADLINE),
                        network.recent_providers(&digest, MAX_MEMBERS, FIND_DEADLINE),
                    );
                    let found = claimants
                        .unwrap_or_default()
                        .into_iter()
                        .chain(holders.unwrap_or_default());
                    Event::Members(found.collect())
                }));
            }
            if chain.members_known() {
                // Asked and not yet judged, at most this blob's part of
                // the window (`chain_window.rs`); how far past the
                // leader's known states, at most CHAIN_AHEAD.
                let window = self.chain_window().per_blob();
                let room = window.saturating_sub(in_flight.len() + waiting.len());
                let wanted = next_wanted(
                    &have,
                    |i| in_flight.contains(&i) || waiting.contains_key(&i),
                    prefix.known(),
                    CHAIN_AHEAD as u32,
                    room,
                );
                let from = chain.predecessor();
                let now = Instant::now();
                // Right after a broken stream: asked again at a later turn
                // of the loop (the poll ticks every POLL).
                let wanted = if chain.may_ask(from, now) {
                    wanted
                } else {
                    Vec::new()
                };
                if !wanted.is_empty() {
                    chain.asking(from, now);
                }
                for index in wanted {
                    in_flight.insert(index);
                    let session = idle.get_mut(&from).and_then(Vec::pop);
                    let due = prefix.covers(index);
                    events.push(self.ask_relay(&digest, from, index, due, session));
                }
            }

            tokio::select! {
                _ = poll.tick() => {
                    // Asked about four times per chunk the leader takes in,
                    // at most every POLL: a leader taking a chunk a second
                    // (a shared 20 Mbit/s uplink) is not asked ten times
                    // for nothing new, one taking ten a second is.
                    let per_chunk = followed.elapsed() / prefix.known().max(1);
                    let every = (per_chunk / 4).clamp(POLL, 4 * POLL);
                    if !polling && last_poll.elapsed() + POLL / 2 >= every {
                        last_poll = Instant::now();
                        polling = true;
                        let session = idle.get_mut(&leader).and_then(Vec::pop);
                        events.push(self.poll_leader(&digest, leader, prefix.known(), session));
                    }
                }
                Some(event) = events.next() => match event {
                    Event::Members(found) => {
                        finding = false;
                        last_find = Some(Instant::now());
                        let book = self.peer_book();
                        chain.set_members(found.into_iter().filter(|p| !book.is_banned(p)), MAX_MEMBERS);
                    }
                    Event::Leader { answered, tail, session } => {
                        polling = false;
                        if let Some(s) = session {
                            idle.entry(leader).or_default().push(s);
                        }
                        if answered {
                            leader_misses = 0;
                        } else {
                            leader_misses += 1;
                            if leader_misses >= LEADER_MISSES {
                                return Ok(FollowEnd::LeaderLost);
                            }
                        }
                        let Some(tail) = tail else { continue };
                        let before = prefix.known();
                        if prefix.extend_tail(&tail).is_err() {
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
                        // Chunks that came early can be judged now.
                        if self.take_covered(&prefix, &partial, state, &mut waiting, &mut have, &mut chain).await? {
                            return Ok(FollowEnd::LeaderLied);
                        }
                    }
                    Event::Chunk { peer, index, due, answer, session, took } => {
                        tracing::debug!(%digest, %peer, from_leader = peer == leader, index, ok = answer.is_some(), took_ms = took.as_millis() as u64, "chunk answer");
                        in_flight.remove(&index);
                        // A broken stream, or a `NotFound` after the wait
                        // for a chunk the leader had, is a miss only from a
                        // peer that has delivered nothing for that long
                        // (`RelayChain::no_chunk`): one that is merely
                        // behind the leader keeps its place, one whose
                        // predecessor is slow to get the first chunks is not
                        // to blame, and a stream dropped in a burst is not.
                        let broke = session.is_none();
                        if let Some(s) = session {
                            idle.entry(peer).or_default().push(s);
                        }
                        let Some(bytes) = answer else {
                            if chain.no_chunk(peer, Instant::now(), broke, due, CHAIN_WAIT) {
                                tracing::info!(%digest, %peer, "passing over a predecessor that does not deliver");
                            }
                            continue;
                        };
                        chain.delivered(peer, Instant::now());
                        if have[index as usize] {
                            continue;
                        }
                        // Judged at once if the prefix covers it, else once it does.
                        waiting.insert(index, Received { peer, index, bytes });
                        if self.take_covered(&prefix, &partial, state, &mut waiting, &mut have, &mut chain).await? {
                            return Ok(FollowEnd::LeaderLied);
                        }
                    }
                },
            }
        }
    }

    /// Checks the `waiting` chunks `prefix` covers against it, writes the
    /// ones that match, and bans (and passes over) the senders of the
    /// others. Returns whether the leader sent one that did not match:
    /// its own bytes do not fit its own story, and everything taken under
    /// its prefix is thrown away.
    async fn take_covered(
        &self,
        prefix: &ChainPrefix,
        partial: &PartialBlob,
        state: &DownloadState,
        waiting: &mut BTreeMap<u32, Received>,
        have: &mut [bool],
        chain: &mut RelayChain,
    ) -> Result<bool, StoreError> {
        let digest = &state.digest;
        let ready: Vec<u32> = waiting
            .keys()
            .copied()
            .filter(|i| prefix.covers(*i))
            .collect();
        for index in ready {
            let Some(Received { peer, index, bytes }) = waiting.remove(&index) else {
                continue;
            };
            if let Err(e) = prefix.judge(digest, index, &bytes) {
                tracing::warn!(%digest, %peer, index, error = %e, "a chunk did not match the leader's prefix");
                Metrics::add(&self.metrics.peers_banned_total, 1);
                self.peer_book().ban(peer, LIE_BAN);
                if peer == chain.leader() {
                    partial.clone().discard().await;
                    return Ok(true);
                }
                chain.drop_peer(peer);
                continue;
            }
            let offset = u64::from(index) * u64::from(prefix.plan().chunk_size());
            Metrics::add(&self.metrics.p2p_bytes_received_total, bytes.len() as u64);
            Metrics::add(&self.metrics.chunks_verified_total, 1);
            partial.write_chunk(index, offset, bytes).await?;
            have[index as usize] = true;
            state.mark_checked(index);
        }
        Ok(false)
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

    /// Asks the leader for the states past the `known` ones.
    fn poll_leader(
        &self,
        digest: &Digest,
        leader: PeerId,
        known: u32,
        session: Option<Session>,
    ) -> BoxFuture<'static, Event> {
        let mut control = self.network().stream_control();
        let digest = digest.clone();
        Box::pin(async move {
            let failed = Event::Leader {
                answered: false,
                tail: None,
                session: None,
            };
            let session = match session {
                Some(s) => Some(s),
                None => Session::open(&mut control, leader).await,
            };
            let Some(mut session) = session else {
                return failed;
            };
            match session
                .ask(&Message::GetPrefixFrom {
                    digest: digest.clone(),
                    from: known,
                })
                .await
            {
                Ok(Message::PrefixTail { digest: d, tail }) if d == digest => Event::Leader {
                    answered: true,
                    tail: (!tail.is_empty()).then_some(tail),
                    session: Some(session),
                },
                _ => failed,
            }
        })
    }

    /// Asks `peer` for chunk `index`, letting it wait for the chunk.
    fn ask_relay(
        &self,
        digest: &Digest,
        peer: PeerId,
        index: u32,
        due: bool,
        session: Option<Session>,
    ) -> BoxFuture<'static, Event> {
        let mut control = self.network().stream_control();
        let digest = digest.clone();
        let limit = self.download_limit().clone();
        Box::pin(async move {
            let asked = Instant::now();
            let (answer, session) = ask_chunk(
                &mut control,
                session,
                peer,
                &digest,
                index,
                Some(CHAIN_WAIT),
                &limit,
            )
            .await;
            Event::Chunk {
                peer,
                index,
                due,
                answer,
                session,
                took: asked.elapsed(),
            }
        })
    }
}
