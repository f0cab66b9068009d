//! Fetching one blob from upstream in disjoint chunk ranges, several nodes
//! at once, and exchanging the ranges (`[upstream] split`): for a site
//! whose hosts each download slower than its uplink, where one leader
//! (`follow.rs`) could not fill the uplink alone.
//!
//! The claimants of the blob (`upstream_lead.rs`), in the blob's own order
//! of peers, are the *partners*; the first `split` of them each own a range
//! of [`split_ranges`]. Each fetches its range with `Range` requests and
//! vouches for every chunk with its SHA-256 ([`SplitShare`]); every partner
//! takes the other chunks from whoever holds them, rarest first, checked
//! against their owner's hash, so a partner that only relays cannot forge a
//! byte. The whole blob is hashed at commit: an owner's bytes are proven
//! only then (`docs/security.md`).
//!
//! A chunk range nobody owns any more (its owner stopped answering, or a
//! partner came late and saw no range left for it) and that cannot be had
//! from a live partner is *adopted* by the first live partner in order,
//! which fetches it from upstream: a range is fetched twice only when its
//! owner is gone.

use std::collections::{HashMap, HashSet};
use std::hash::BuildHasher;
use std::ops::Range;
use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use futures_util::future::BoxFuture;
use futures_util::stream::FuturesUnordered;
use libp2p::PeerId;
use shoal_protocol::Digest;
use shoal_protocol::chunk::{ChunkPlan, DEFAULT_CHUNK_SIZE};
use shoal_protocol::share::{ChunkHash, SplitShare, chunk_hash, flag_runs, split_ranges};
use shoal_protocol::wire::Message;
use tokio::time::Instant;

use super::downloads::DownloadState;
use super::fetch::{FetchError, Fetcher};
use super::from_upstream::{Check, RUN_ATTEMPTS, UpstreamSource};
use super::peers::LIE_BAN;
use super::session::{Session, ask_chunk};
use crate::metrics::Metrics;
use crate::store::{BlobInfo, PartialBlob, StoreError};
use crate::upstream::{UpstreamClient, UpstreamError};

/// How often every partner's share is asked for.
const POLL: Duration = Duration::from_millis(100);
/// Share asks in a row a partner may fail, and how long it may go without
/// answering one, before it counts as gone (a busy peer drops streams now
/// and then; one that has stopped fails every ask).
const MISSES: u32 = 5;
const GONE_AFTER: Duration = Duration::from_secs(2);
/// Chunk requests in flight at once, and to one partner.
const IN_FLIGHT: usize = 6;
const PER_PEER: usize = 2;
/// No chunk arriving from anywhere for this long: every missing chunk is
/// fetched from upstream by this node.
const STALL: Duration = Duration::from_secs(60);
/// How long a chunk range whose fetcher is alive but does not say it
/// fetches it (it saw the split differently) waits before it is adopted.
const ORPHAN_GRACE: Duration = Duration::from_secs(3);
/// Partners in one split at most.
pub const MAX_PARTNERS: usize = 32;

/// How a split fetch ended, short of an error.
#[derive(Debug)]
pub(super) enum SplitEnd {
    Done(BlobInfo),
    /// The chunks did not make the blob: the partners whose chunks were
    /// used (they are banned; the caller starts over from upstream).
    Wrong(Vec<PeerId>),
}

/// What is known of one partner.
#[derive(Default)]
struct Partner {
    /// It answered with a share: it is in the split (not still queued or
    /// looking for providers before it gets there).
    joined: bool,
    have: Vec<bool>,
    owned: Vec<Range<u32>>,
    misses: u32,
    last_answer: Option<Instant>,
    gone: bool,
    polling: bool,
    busy: usize,
    idle: Vec<Session>,
}

enum Event {
    Share {
        peer: PeerId,
        share: Option<SplitShare>,
        /// The share was its own, not an empty one for a `NotFound`.
        joined: bool,
        session: Option<Session>,
    },
    Chunk {
        peer: PeerId,
        index: u32,
        bytes: Option<Vec<u8>>,
        session: Option<Session>,
    },
}

/// The partners' view of the split, as one node sees it.
struct Split {
    me: PeerId,
    /// All partners in the blob's order of peers, this node included.
    order: Vec<PeerId>,
    partners: HashMap<PeerId, Partner>,
    /// The hash each chunk was vouched for with, and by whom.
    vouched: HashMap<u32, (PeerId, ChunkHash)>,
    /// Who fetches each range, as this node divided the blob.
    assigned: Vec<(Range<u32>, PeerId)>,
    /// When the split began here.
    began: Instant,
    in_flight: HashSet<u32>,
    /// A blob of one chunk: its digest checks that chunk, whoever sends it
    /// and whether or not its fetcher's hash was heard.
    whole: Option<Digest>,
    /// Who each chunk taken from a partner was vouched for by.
    taken_under: HashMap<u32, PeerId>,
    tie: std::hash::RandomState,
}

impl Split {
    /// Whether a copy of chunk `index` from a partner can be checked.
    fn checkable(&self, index: u32) -> bool {
        self.whole.is_some() || self.vouched.contains_key(&index)
    }

    fn live(&self, peer: &PeerId) -> bool {
        *peer == self.me || self.partners.get(peer).is_some_and(|p| !p.gone)
    }

    /// Whether a live partner other than this node fetches `index`.
    fn owned_elsewhere(&self, index: u32) -> bool {
        self.partners
            .values()
            .any(|p| !p.gone && p.owned.iter().any(|r| r.contains(&index)))
    }

    fn holders(&self, index: u32) -> impl Iterator<Item = (&PeerId, &Partner)> + '_ {
        self.partners
            .iter()
            .filter(move |(_, p)| !p.gone && p.have.get(index as usize).copied().unwrap_or(false))
    }

    /// Whether the partner `index` was given to, as this node divided the
    /// blob, may still be about to fetch it: it is alive and has not joined
    /// the split yet (a node pulling several layers may start this one
    /// late), or joined less than [`ORPHAN_GRACE`] ago.
    fn assigned_alive(&self, index: u32) -> bool {
        let Some((_, peer)) = self.assigned.iter().find(|(r, _)| r.contains(&index)) else {
            return false;
        };
        *peer != self.me
            && self.live(peer)
            && self
                .partners
                .get(peer)
                .is_some_and(|p| !p.joined || self.began.elapsed() < ORPHAN_GRACE)
    }

    /// The first live partner in order still fetching (one that holds the
    /// whole blob has finished, though it still vouches for its range):
    /// who adopts orphaned ranges.
    fn adopter(&self) -> PeerId {
        let finished = |p: &Partner| !p.have.is_empty() && p.have.iter().all(|h| *h);
        let fetching = |peer: &PeerId| {
            *peer == self.me
                || self
                    .partners
                    .get(peer)
                    .is_some_and(|p| !p.gone && !finished(p))
        };
        self.order.iter().copied().find(fetching).unwrap_or(self.me)
    }
}

/// The chunks that are nobody's to fetch any more: not this node's
/// (`mine`), fetched by no live partner (their owner stopped, or finished
/// and no longer says), and not about to be by the partner they were given
/// to — of those, the ones this node holds (`have`) and the ones it cannot
/// get checked from a live partner. Whoever adopts them owns them: it
/// vouches for the copies it holds (checked against the old owner's hash,
/// so a partner that never saw that hash can still check them) and
/// fetches the rest. A chunk a live partner can give is simply taken.
fn orphans(split: &Split, have: &[bool], mine: &SplitShare) -> Vec<u32> {
    (0..have.len() as u32)
        .filter(|&i| {
            !mine.owns(i)
                && !split.owned_elsewhere(i)
                && !split.assigned_alive(i)
                && (have[i as usize] || !obtainable(split, i))
        })
        .collect()
}

/// Whether chunk `index` can be had from a live partner, checked.
fn obtainable(split: &Split, index: u32) -> bool {
    split.checkable(index) && split.holders(index).next().is_some()
}

impl Fetcher {
    /// Fetches `state`'s blob with `partners` (every claimant, this node
    /// included, in the blob's order of peers), the first `fetchers` of
    /// them each fetching one range from upstream.
    pub(super) async fn split_fetch(
        &self,
        state: &Arc<DownloadState>,
        client: &UpstreamClient,
        source: &UpstreamSource,
        order: Vec<PeerId>,
        fetchers: usize,
    ) -> Result<SplitEnd, FetchError> {
        let digest = state.digest.clone();
        let me = self.network().peer_id();
        let (partial, plan) = self.split_plan(state, client, source).await?;
        let fetchers = fetchers.clamp(1, order.len().max(1));
        let assigned = split_ranges(plan.count(), fetchers as u32)
            .into_iter()
            .zip(order.iter().copied())
            .collect();
        let mut split = Split {
            me,
            assigned,
            began: Instant::now(),
            partners: order
                .iter()
                .filter(|p| **p != me)
                .map(|p| (*p, Partner::default()))
                .collect(),
            order,
            vouched: HashMap::new(),
            in_flight: HashSet::new(),
            taken_under: HashMap::new(),
            whole: (plan.count() == 1).then(|| digest.clone()),
            tie: std::hash::RandomState::new(),
        };
        let mut events: FuturesUnordered<BoxFuture<'static, Event>> = FuturesUnordered::new();

        // What the others own already (a partner that came late owns
        // nothing they fetch), then this node's range of the rest.
        self.poll_shares(&digest, plan, &mut split, &mut events);
        let first_round = tokio::time::timeout(Duration::from_secs(2), async {
            while split.partners.values().any(|p| p.polling) {
                let Some(event) = events.next().await else {
                    break;
                };
                self.on_event(state, &partial, plan, &mut split, event)
                    .await?;
            }
            Ok::<(), StoreError>(())
        })
        .await;
        if let Ok(Err(e)) = first_round {
            return Err(e.into());
        }
        let mine = split
            .assigned
            .iter()
            .find(|(_, p)| *p == me)
            .map(|(r, _)| r.clone());
        if let Some(range) = mine {
            let free: Vec<u32> = range.filter(|i| !split.owned_elsewhere(*i)).collect();
            self.own_free(state, &partial, free).await?;
        }
        if let Err(e) = self.network().provide(&digest).await {
            tracing::debug!(%digest, error = %e, "could not announce a partial blob");
        }
        let mine = state.view().and_then(|v| v.split).map(|s| s.owned);
        tracing::info!(%digest, partners = split.order.len(), fetchers, owned = ?mine, "fetching from upstream in a split");

        let started = Instant::now();
        let mut last_chunk = Instant::now();
        let mut upstream: Option<BoxFuture<'_, Result<(), FetchError>>> = None;
        // The chunk runs `upstream` is fetching.
        let mut fetching: Vec<Range<u32>> = Vec::new();
        let mut stalled = false;
        let mut poll = tokio::time::interval(POLL);
        poll.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            let Some(view) = state.view() else {
                return Err(FetchError::Stopped);
            };
            let have = view.checked;
            let mine = view.split.unwrap_or_else(|| SplitShare::new(plan));
            if have.iter().all(|h| *h) {
                drop(upstream);
                let mut used: Vec<PeerId> = split.taken_under.values().copied().collect();
                used.sort();
                used.dedup();
                return self.split_commit(state, partial, used, started).await;
            }
            if self.stop_token().is_cancelled() {
                return Err(FetchError::Stopped);
            }
            // Nothing moved for long: this node fetches what is missing.
            if last_chunk.elapsed() > STALL && !stalled {
                tracing::info!(%digest, "the split stalled; fetching the rest from upstream");
                state.own(0..plan.count());
                stalled = true;
            }
            let orphaned = orphans(&split, &have, &mine);
            if !orphaned.is_empty() && split.adopter() == me {
                tracing::info!(%digest, chunks = orphaned.len(), "adopting chunks nobody fetches any more");
                for i in orphaned {
                    state.own(i..i + 1);
                    if have[i as usize] {
                        let Ok(r) = plan.range(i) else { continue };
                        let bytes = partial.read_at(r.start, (r.end - r.start) as usize).await?;
                        state.vouch(i, chunk_hash(&bytes));
                    }
                }
                continue;
            }
            if upstream.is_none() {
                // What this node owns and no partner can give it.
                let missing: Vec<bool> = (0..plan.count())
                    .map(|i| {
                        !have[i as usize]
                            && mine.owns(i)
                            && !split.in_flight.contains(&i)
                            && (stalled || !obtainable(&split, i))
                    })
                    .collect();
                let runs = flag_runs(&missing);
                if !runs.is_empty() {
                    fetching = runs.clone();
                    upstream = Some(Box::pin(
                        self.fetch_runs(state, client, source, &partial, plan, runs),
                    ));
                }
            }
            self.request_split_chunks(&digest, &have, &fetching, &mut split, &mut events);

            tokio::select! {
                _ = poll.tick() => self.poll_shares(&digest, plan, &mut split, &mut events),
                Some(event) = events.next() => {
                    if matches!(event, Event::Chunk { bytes: Some(_), .. }) {
                        last_chunk = Instant::now();
                    }
                    self.on_event(state, &partial, plan, &mut split, event).await?;
                }
                result = async {
                    match upstream.as_mut() {
                        Some(job) => job.await,
                        None => std::future::pending().await,
                    }
                } => {
                    upstream = None;
                    fetching.clear();
                    result?;
                    last_chunk = Instant::now();
                }
            }
        }
    }

    /// The blob's partial file and plan: kept from an earlier phase, else
    /// from the size the upstream gives.
    async fn split_plan(
        &self,
        state: &Arc<DownloadState>,
        client: &UpstreamClient,
        source: &UpstreamSource,
    ) -> Result<(PartialBlob, ChunkPlan), FetchError> {
        let digest = state.digest.clone();
        if let Some(view) = state.view().filter(|v| v.map.is_none()) {
            if view.split.is_none() {
                state.set_split(SplitShare::new(view.plan));
            }
            return Ok((view.partial, view.plan));
        }
        let upstream = |e: UpstreamError| FetchError::Upstream(e.to_string(), e.status().as_u16());
        let size = client
            .blob_size(&source.host, &source.repo, &digest)
            .await
            .map_err(upstream)?;
        let plan = ChunkPlan::for_size(size, DEFAULT_CHUNK_SIZE)
            .map_err(|e| FetchError::Upstream(e.to_string(), 502))?;
        let partial = self.open_partial(&digest, plan).await?;
        // Left by an earlier run, with nothing known to vouch for them.
        for index in partial.claimed() {
            partial.forget(index).await?;
        }
        state.set_plan(partial.clone(), plan, None, "upstream");
        state.set_split(SplitShare::new(plan));
        Ok((partial, plan))
    }

    /// Takes the chunks `free` (of its range, those no partner fetches yet)
    /// as this node's to fetch; those held already are vouched for at once.
    async fn own_free(
        &self,
        state: &DownloadState,
        partial: &PartialBlob,
        free: Vec<u32>,
    ) -> Result<(), StoreError> {
        let plan_view = state.view();
        let held = plan_view
            .as_ref()
            .map(|v| v.checked.clone())
            .unwrap_or_default();
        let Some(plan) = plan_view.map(|v| v.plan) else {
            return Ok(());
        };
        for i in free {
            state.own(i..i + 1);
            if held.get(i as usize).copied().unwrap_or(false) {
                let Ok(r) = plan.range(i) else { continue };
                let bytes = partial.read_at(r.start, (r.end - r.start) as usize).await?;
                state.vouch(i, chunk_hash(&bytes));
            }
        }
        Ok(())
    }

    /// Fetches `runs` of chunks from upstream, vouching for each.
    async fn fetch_runs(
        &self,
        state: &DownloadState,
        client: &UpstreamClient,
        source: &UpstreamSource,
        partial: &PartialBlob,
        plan: ChunkPlan,
        runs: Vec<Range<u32>>,
    ) -> Result<(), FetchError> {
        let upstream = |e: UpstreamError| FetchError::Upstream(e.to_string(), e.status().as_u16());
        let bad_plan =
            |e: shoal_protocol::chunk::ChunkError| FetchError::Upstream(e.to_string(), 502);
        for run in runs {
            let mut next = run.start;
            let mut attempts = 0;
            while next < run.end {
                attempts += 1;
                let (start, end) = (
                    plan.range(next).map_err(bad_plan)?.start,
                    plan.range(run.end - 1).map_err(bad_plan)?.end,
                );
                let result = match client
                    .blob_range(&source.host, &source.repo, &state.digest, start, end - 1)
                    .await
                {
                    Ok(blob) => {
                        self.fill(state, partial, plan, Check::Vouch, blob, &mut next, run.end)
                            .await
                    }
                    Err(e) => Err(upstream(e)),
                };
                match result {
                    Ok(()) => {}
                    Err(e) if attempts < RUN_ATTEMPTS && next < run.end => {
                        tracing::info!(digest = %state.digest, error = %e, resume_at = next, "upstream transfer broke; resuming");
                    }
                    Err(e) => return Err(e),
                }
            }
        }
        Ok(())
    }

    /// Commits the blob: hashed whole here, which proves every chunk.
    async fn split_commit(
        &self,
        state: &DownloadState,
        partial: PartialBlob,
        used: Vec<PeerId>,
        started: Instant,
    ) -> Result<SplitEnd, FetchError> {
        let digest = state.digest.clone();
        match partial.commit(&digest, None).await {
            Ok(info) => {
                let secs = started.elapsed().as_secs_f64();
                tracing::info!(%digest, size = info.size, secs = format!("{secs:.2}"), "fetched in a split");
                Ok(SplitEnd::Done(info))
            }
            Err(StoreError::DigestMismatch { .. }) => {
                for peer in &used {
                    self.peer_book().ban(*peer, LIE_BAN);
                }
                Metrics::add(&self.metrics.peers_banned_total, used.len() as u64);
                Ok(SplitEnd::Wrong(used))
            }
            Err(e) => Err(e.into()),
        }
    }

    async fn on_event(
        &self,
        state: &DownloadState,
        partial: &PartialBlob,
        plan: ChunkPlan,
        split: &mut Split,
        event: Event,
    ) -> Result<(), StoreError> {
        match event {
            Event::Share {
                peer,
                share,
                joined,
                session,
            } => {
                let Some(p) = split.partners.get_mut(&peer) else {
                    return Ok(());
                };
                p.polling = false;
                if let Some(s) = session {
                    p.idle.push(s);
                }
                match share {
                    Some(share) if share.plan == plan => {
                        p.misses = 0;
                        p.last_answer = Some(Instant::now());
                        p.joined |= joined;
                        p.have = share.have;
                        p.owned = share.owned;
                        for (i, hash) in share.vouched {
                            // The first word on a chunk stands: a partner
                            // cannot take back or change its vouch.
                            split.vouched.entry(i).or_insert((peer, hash));
                        }
                    }
                    Some(_) => {
                        tracing::warn!(digest = %state.digest, %peer, "a partner's plan differs; leaving it");
                        p.gone = true;
                    }
                    None => {
                        p.misses += 1;
                        let silent = p.last_answer.is_none_or(|t| t.elapsed() > GONE_AFTER);
                        if p.misses >= MISSES && silent && !p.gone {
                            tracing::info!(digest = %state.digest, %peer, "a partner stopped answering");
                            p.gone = true;
                        }
                    }
                }
            }
            Event::Chunk {
                peer,
                index,
                bytes,
                session,
            } => {
                split.in_flight.remove(&index);
                let Some(p) = split.partners.get_mut(&peer) else {
                    return Ok(());
                };
                p.busy = p.busy.saturating_sub(1);
                if let Some(s) = session {
                    p.idle.push(s);
                }
                let Some(bytes) = bytes else {
                    if let Some(b) = p.have.get_mut(index as usize) {
                        *b = false;
                    }
                    return Ok(());
                };
                let hash = chunk_hash(&bytes);
                let (owner, good) = match (split.vouched.get(&index), &split.whole) {
                    (Some((owner, vouched)), _) => (*owner, *vouched == hash),
                    (None, Some(digest)) => {
                        (peer, Digest::compute(digest.algorithm(), &bytes) == *digest)
                    }
                    (None, None) => return Ok(()),
                };
                if !good {
                    tracing::warn!(digest = %state.digest, %peer, index, "a chunk did not match its fetcher's hash");
                    Metrics::add(&self.metrics.chunks_rejected_total, 1);
                    Metrics::add(&self.metrics.peers_banned_total, 1);
                    self.peer_book().ban(peer, LIE_BAN);
                    p.gone = true;
                    return Ok(());
                }
                if state.view().is_some_and(|v| v.checked[index as usize]) {
                    return Ok(());
                }
                let offset = u64::from(index) * u64::from(plan.chunk_size());
                Metrics::add(&self.metrics.p2p_bytes_received_total, bytes.len() as u64);
                Metrics::add(&self.metrics.chunks_verified_total, 1);
                partial.write_chunk(index, offset, bytes).await?;
                split.taken_under.insert(index, owner);
                // Adopted from a partner that went: vouched for here now.
                state.vouch(index, hash);
                state.mark_checked(index);
            }
        }
        Ok(())
    }

    /// Asks every live partner not already asked for its share.
    fn poll_shares(
        &self,
        digest: &Digest,
        plan: ChunkPlan,
        split: &mut Split,
        events: &mut FuturesUnordered<BoxFuture<'static, Event>>,
    ) {
        for (peer, p) in split.partners.iter_mut() {
            if p.gone || p.polling || (p.idle.is_empty() && p.busy > 0) {
                continue;
            }
            p.polling = true;
            let (peer, session) = (*peer, p.idle.pop());
            let mut control = self.network().stream_control();
            let digest = digest.clone();
            events.push(Box::pin(async move {
                let session = match session {
                    Some(s) => Some(s),
                    None => Session::open(&mut control, peer).await,
                };
                let Some(mut session) = session else {
                    return Event::Share {
                        peer,
                        share: None,
                        joined: false,
                        session: None,
                    };
                };
                match session
                    .ask(&Message::GetShare {
                        digest: digest.clone(),
                    })
                    .await
                {
                    Ok(Message::Share { digest: d, share }) if d == digest => Event::Share {
                        peer,
                        share: Some(share),
                        joined: true,
                        session: Some(session),
                    },
                    // Not (yet) in the split: it holds nothing to take.
                    Ok(Message::NotFound { .. }) => Event::Share {
                        peer,
                        share: Some(SplitShare::new(plan)),
                        joined: false,
                        session: Some(session),
                    },
                    _ => Event::Share {
                        peer,
                        share: None,
                        joined: false,
                        session: None,
                    },
                }
            }));
        }
    }

    /// Asks for the chunks this node lacks and is not fetching from
    /// upstream (`fetching`), rarest first, each of a holder that is not its owner when one can
    /// (the owner's upload is the one every copy starts from).
    fn request_split_chunks(
        &self,
        digest: &Digest,
        have: &[bool],
        fetching: &[Range<u32>],
        split: &mut Split,
        events: &mut FuturesUnordered<BoxFuture<'static, Event>>,
    ) {
        let mut wanted: Vec<(usize, u32)> = (0..have.len() as u32)
            .filter(|i| {
                !have[*i as usize]
                    && !fetching.iter().any(|r| r.contains(i))
                    && !split.in_flight.contains(i)
                    && split.checkable(*i)
            })
            .map(|i| (split.holders(i).count(), i))
            .filter(|(copies, _)| *copies > 0)
            .collect();
        wanted.sort_by_key(|(copies, i)| (*copies, split.tie.hash_one(i)));
        for (_, index) in wanted {
            if split.in_flight.len() >= IN_FLIGHT {
                return;
            }
            let owner = split.vouched.get(&index).map(|(o, _)| *o);
            let Some(peer) = split
                .holders(index)
                .filter(|(_, p)| p.busy < PER_PEER)
                .min_by_key(|(peer, p)| {
                    (
                        Some(**peer) == owner,
                        p.busy,
                        split.tie.hash_one((peer, index)),
                    )
                })
                .map(|(peer, _)| *peer)
            else {
                continue;
            };
            let Some(p) = split.partners.get_mut(&peer) else {
                continue;
            };
            p.busy += 1;
            split.in_flight.insert(index);
            let session = p.idle.pop();
            let mut control = self.network().stream_control();
            let digest = digest.clone();
            let limit = self.download_limit().clone();
            events.push(Box::pin(async move {
                let (bytes, session) =
                    ask_chunk(&mut control, session, peer, &digest, index, None, &limit).await;
                Event::Chunk {
                    peer,
                    index,
                    bytes,
                    session,
                }
            }));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Four partners in order, this node second; ranges of a 8-chunk blob
    /// given out as the split does, each partner saying it owns its own.
    fn split() -> (Split, Vec<PeerId>) {
        let order: Vec<PeerId> = (0..4).map(|_| PeerId::random()).collect();
        let me = order[1];
        let ranges = split_ranges(8, 4);
        let partners = order
            .iter()
            .zip(&ranges)
            .filter(|(p, _)| **p != me)
            .map(|(p, r)| {
                let partner = Partner {
                    joined: true,
                    have: vec![false; 8],
                    owned: vec![r.clone()],
                    ..Partner::default()
                };
                (*p, partner)
            })
            .collect();
        let split = Split {
            me,
            assigned: ranges.into_iter().zip(order.iter().copied()).collect(),
            began: Instant::now(),
            order: order.clone(),
            partners,
            vouched: HashMap::new(),
            in_flight: HashSet::new(),
            whole: None,
            taken_under: HashMap::new(),
            tie: std::hash::RandomState::new(),
        };
        (split, order)
    }

    fn mine() -> SplitShare {
        let mut share = SplitShare::new(ChunkPlan::new(8 * 16384, 16384).expect("plan"));
        share.own(2..4);
        share
    }

    #[test]
    fn nothing_is_orphaned_while_every_owner_answers() {
        let (split, order) = split();
        assert!(orphans(&split, &[false; 8], &mine()).is_empty());
        assert_eq!(split.adopter(), order[0]);
    }

    #[test]
    fn a_gone_owners_range_goes_to_the_first_partner_still_fetching() {
        let (mut split, order) = split();
        if let Some(p) = split.partners.get_mut(&order[3]) {
            p.gone = true;
        }
        assert_eq!(orphans(&split, &[false; 8], &mine()), vec![6, 7]);
        assert_eq!(split.adopter(), order[0]);
        // The first has finished: it holds everything and owns nothing.
        if let Some(p) = split.partners.get_mut(&order[0]) {
            p.have = vec![true; 8];
            p.owned.clear();
        }
        assert_eq!(split.adopter(), order[1], "this node adopts");
        // Its range is orphaned too once it no longer says it owns it, but
        // only after the grace a partner gets to say so.
        assert_eq!(orphans(&split, &[false; 8], &mine()), vec![6, 7]);
        split.began = Instant::now() - ORPHAN_GRACE;
        assert_eq!(orphans(&split, &[false; 8], &mine()), vec![0, 1, 6, 7]);
    }

    #[test]
    fn a_finished_owners_chunks_are_taken_from_it_not_fetched_again() {
        let (mut split, order) = split();
        split.began = Instant::now() - ORPHAN_GRACE;
        // The owner of 6..8 finished: it holds everything, owns nothing.
        if let Some(p) = split.partners.get_mut(&order[3]) {
            p.have = vec![true; 8];
            p.owned.clear();
        }
        split.vouched.insert(6, (order[3], [6; 32]));
        split.vouched.insert(7, (order[3], [7; 32]));
        let mut have = [false; 8];
        assert!(orphans(&split, &have, &mine()).is_empty());
        // Held here: adopted, so this node vouches for its copy.
        have[6] = true;
        assert_eq!(orphans(&split, &have, &mine()), vec![6]);
    }

    #[test]
    fn a_chunk_is_taken_only_when_it_can_be_checked() {
        let (mut split, order) = split();
        if let Some(p) = split.partners.get_mut(&order[2]) {
            p.have[4] = true;
        }
        assert!(!obtainable(&split, 4), "held, but no hash heard");
        split.vouched.insert(4, (order[2], [0; 32]));
        assert!(obtainable(&split, 4));
        split.whole = Some(Digest::sha256_of(b"one chunk"));
        split.vouched.clear();
        assert!(obtainable(&split, 4), "a one-chunk blob checks itself");
    }
}
