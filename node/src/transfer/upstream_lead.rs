//! One copy over the uplink: when several nodes need the same blob from
//! upstream at once, one of them fetches it and the others follow it
//! (`follow.rs`), taking each chunk from it or from each other as soon as
//! it arrives. A follower whose leader stops answering picks the next
//! claimant, which goes on from where the chunks got to; one whose leader
//! lied fetches from upstream itself: a pull never hangs on a peer.
//!
//! Claims are provider records under a key derived from the digest, given
//! [`CLAIM_SETTLE`] to spread. The leader is a claimant already fetching
//! (one that announced the partial blob: the leader, or a follower relaying
//! it), so a node that asks seconds after the others joins them; when none
//! has started, the first in an order of peers of the blob's own (a hash
//! of the claim and the peer id: the layers of an image get different
//! leaders), so claimants that raced pick the same one without talking.
//! In a small site the node first in that order among all its peers is
//! that leader whoever claims, and starts without the settle
//! ([`Fetcher::site_start`]); the others follow it as soon as its
//! claim reaches their store.

use std::sync::Arc;
use std::time::Duration;

use libp2p::PeerId;
use shoal_protocol::Digest;
use tokio::time::Instant;

use super::downloads::DownloadState;
use super::fetch::{FIND_DEADLINE, FetchError, Fetcher};
use super::follow::FollowEnd;
use super::from_upstream::UpstreamSource;
use super::split::{MAX_PARTNERS, SplitEnd};
use crate::store::BlobInfo;
use crate::upstream::UpstreamClient;

/// How long claims may take to spread before the leader is picked.
pub const CLAIM_SETTLE: Duration = Duration::from_millis(300);
/// How often a claimant looks in its store for the site's leader while
/// the claims settle ([`Fetcher::site_start`]).
const SITE_LOOK_EVERY: Duration = Duration::from_millis(10);
/// Leaders a follower gives up on before fetching upstream itself.
const MAX_LEADERS: usize = 3;

/// The DHT key under which nodes fetching `digest` from upstream say so.
pub fn claim_key(digest: &Digest) -> Digest {
    let mut input = b"shoal-upstream-fetch\0".to_vec();
    input.extend_from_slice(digest.to_string().as_bytes());
    Digest::sha256_of(&input)
}

/// A claim made while peers are still being asked for the blob
/// ([`Fetcher::claim_early`]): when it reached the closest peers, if it did.
pub(super) type EarlyClaim = tokio::task::JoinHandle<Option<Instant>>;

/// Whether the early claim was made (and so is to be withdrawn), and when
/// it reached the closest peers.
async fn claimed_at(early: EarlyClaim) -> Option<Instant> {
    early.await.ok().flatten()
}

impl Fetcher {
    /// Claims the upstream fetch of `digest` at once, so that the claim
    /// spreads while the DHT is asked for providers instead of after: a
    /// site's pulls find each other half a second sooner. The claim is
    /// withdrawn if peers deliver the blob ([`Fetcher::withdraw_claim`]).
    /// Alone, there is nobody to share the uplink with: no claim.
    pub(super) fn claim_early(&self, digest: &Digest) -> EarlyClaim {
        let network = self.network().clone();
        let claim = claim_key(digest);
        let digest = digest.clone();
        tokio::spawn(async move {
            let began = std::time::Instant::now();
            let alone = network
                .info()
                .await
                .map_or(true, |i| i.connected_peers == 0);
            // Waited on until it reached the peers closest to its key: from
            // then on every lookup sees it, so two nodes that claim within
            // CLAIM_SETTLE of each other see each other.
            let claimed = !alone
                && network
                    .provide_confirmed(&claim, FIND_DEADLINE)
                    .await
                    .is_ok();
            tracing::debug!(%digest, claimed, ms = began.elapsed().as_millis() as u64, "claimed the upstream fetch");
            claimed.then(Instant::now)
        })
    }

    /// The blob came from peers: the early claim is withdrawn.
    pub(super) async fn withdraw_claim(&self, digest: &Digest, early: EarlyClaim) {
        if claimed_at(early).await.is_some() {
            let _ = self.network().unprovide(&claim_key(digest)).await;
        }
    }

    /// Fetches `state`'s blob from upstream, unless another node already
    /// is: then follows it. `early` is the claim made when the fetch began.
    pub(super) async fn upstream_once(
        &self,
        state: &Arc<DownloadState>,
        client: &UpstreamClient,
        source: &UpstreamSource,
        early: EarlyClaim,
    ) -> Result<BlobInfo, FetchError> {
        let digest = state.digest.clone();
        let claim = claim_key(&digest);
        let me = self.network().peer_id();
        let start = if self.upstream_split() <= 1 {
            self.site_start(state, &digest, &claim, me).await
        } else {
            SiteStart::Settle
        };
        let (early, mut settled_at, mut next) = match start {
            // Not even waiting for its own claim to spread: the others
            // pick it once theirs have settled, by when it has.
            SiteStart::Lead => {
                tracing::info!(%digest, "first of the site in this blob's order; fetching from upstream at once");
                let result = self.finish_from_upstream(state, client, source).await;
                if claimed_at(early).await.is_some() {
                    let _ = self.network().unprovide(&claim).await;
                }
                return result;
            }
            // Followed at once, while this node's claim still spreads.
            SiteStart::Follow(leader) => (Some(early), None, Some(leader)),
            SiteStart::Settle => {
                let Some(claimed) = claimed_at(early).await else {
                    return self.finish_from_upstream(state, client, source).await;
                };
                if self.upstream_split() > 1 {
                    tokio::time::sleep(CLAIM_SETTLE).await;
                    let result = self
                        .split_among_claimants(state, client, source, &claim)
                        .await;
                    let _ = self.network().unprovide(&claim).await;
                    return result;
                }
                // The claims of nodes that claimed within the settle of
                // this one have reached it by then.
                (None, Some(claimed + CLAIM_SETTLE), None)
            }
        };
        let mut gone: Vec<PeerId> = Vec::new();
        let result = loop {
            let picked = match next.take() {
                Some(leader) => Some(leader),
                None => {
                    match settled_at.take() {
                        Some(at) => tokio::time::sleep_until(at).await,
                        None => tokio::time::sleep(CLAIM_SETTLE).await,
                    }
                    let view = state.view();
                    // Holding chunks taken from a leader that went away,
                    // this node is one of the fetching claimants the next
                    // leader comes from.
                    let me_fetching = view.is_some_and(|v| v.prefix.is_some());
                    self.leader(&digest, &claim, me, me_fetching, &gone).await
                }
            };
            // After a handover from peers the chunks are checked against
            // their map: this node goes on from upstream itself.
            let followable = state.view().as_ref().is_none_or(|v| v.map.is_none());
            match picked {
                Some(leader) if leader != me && followable => {
                    tracing::info!(%digest, %leader, "another node is fetching this from upstream; following it");
                    match self.follow(state, leader).await {
                        FollowEnd::Done(info) => break Ok(info),
                        FollowEnd::LeaderLost if gone.len() < MAX_LEADERS => {
                            tracing::info!(%digest, %leader, "lost the leader; choosing the next");
                            gone.push(leader);
                        }
                        FollowEnd::LeaderLost => {
                            break self.finish_from_upstream(state, client, source).await;
                        }
                        FollowEnd::LeaderLied => {
                            tracing::warn!(%digest, %leader, "the leader's chunks do not make the blob; fetching it from upstream");
                            state.reset();
                            break self.finish_from_upstream(state, client, source).await;
                        }
                        FollowEnd::Store(e) => break Err(e.into()),
                    }
                }
                _ => break self.finish_from_upstream(state, client, source).await,
            }
        };
        if let Some(e) = early {
            let _ = e.await;
        }
        let _ = self.network().unprovide(&claim).await;
        result
    }

    /// How a claimant of a small site starts, from what its store shows
    /// ([`Fetcher::site_view`]):
    ///
    /// - [`SiteStart::Lead`] if it will lead `digest`'s fetch whoever
    ///   claims ([`leads_at_once`]), so it starts without waiting
    ///   [`CLAIM_SETTLE`] for the claims and looking them up: it comes
    ///   first among every peer of its site in the blob's order, no peer
    ///   fetches or holds the blob (one that does is followed, whatever its
    ///   place), and every other claim it holds is younger than half the
    ///   settle — an older claimant may already have settled without
    ///   seeing this node's claim and be fetching. Looked at once, on the
    ///   first look. A rollout's leaders start their upstream fetches a
    ///   third of a second sooner.
    /// - [`SiteStart::Follow`] the node that leads so, seen from another
    ///   claimant ([`leader_at_once`]), once its claim is in this node's
    ///   store; looked for every [`SITE_LOOK_EVERY`] while only that claim
    ///   is missing, until the claims would have settled. A rollout's
    ///   followers start a third of a second sooner, and with links as
    ///   fast as the uplink they never make up for a late start.
    /// - [`SiteStart::Settle`] otherwise — at once where the site is not
    ///   small or neither rule can hold (alone, a holder, an old claim),
    ///   so the settle that follows is not made longer. The claimants that
    ///   settle pick the same leader by the usual rule.
    async fn site_start(
        &self,
        state: &DownloadState,
        digest: &Digest,
        claim: &Digest,
        me: PeerId,
    ) -> SiteStart {
        let until = Instant::now() + CLAIM_SETTLE;
        let mut first_look = true;
        loop {
            if state.view().is_some() {
                tracing::debug!(%digest, "holds chunks already; settling");
                return SiteStart::Settle;
            }
            let Some(v) = self.site_view(digest, claim).await else {
                tracing::debug!(%digest, "not a small site; settling");
                return SiteStart::Settle;
            };
            if std::mem::take(&mut first_look)
                && leads_at_once(claim, me, &v.peers, &v.holders, &v.claims)
            {
                return SiteStart::Lead;
            }
            match leader_at_once(claim, me, &v.peers, &v.holders, &v.claims) {
                AtOnce::Follow(leader) => return SiteStart::Follow(leader),
                AtOnce::No => {
                    tracing::debug!(%digest, peers = v.peers.len(), holders = ?v.holders, claims = ?v.claims, "neither leads nor follows at once; settling");
                    return SiteStart::Settle;
                }
                AtOnce::NotYet if Instant::now() + SITE_LOOK_EVERY >= until => {
                    tracing::debug!(%digest, peers = v.peers.len(), claims = v.claims.len(), "the first of the site never claimed; settling");
                    return SiteStart::Settle;
                }
                AtOnce::NotYet => {}
            }
            tokio::time::sleep(SITE_LOOK_EVERY).await;
        }
    }

    /// What this node's store shows of a small site for `digest`: `None`
    /// where the site is not small (or the network actor is gone).
    async fn site_view(&self, digest: &Digest, claim: &Digest) -> Option<SiteView> {
        let network = self.network();
        let (peers, holders, claims) = tokio::join!(
            network.site_peers(),
            network.stored_providers(digest, 20),
            network.stored_provider_ages(claim, 20),
        );
        Some(SiteView {
            peers: peers.ok()??,
            holders: holders.ok()??,
            claims: claims.ok()??,
        })
    }

    /// Fetches the blob in ranges with the claimants seen now
    /// (`split.rs`); if their chunks do not make the blob, once more from
    /// upstream alone.
    async fn split_among_claimants(
        &self,
        state: &Arc<DownloadState>,
        client: &UpstreamClient,
        source: &UpstreamSource,
        claim: &Digest,
    ) -> Result<BlobInfo, FetchError> {
        let me = self.network().peer_id();
        let claimants = self
            .network()
            .find_providers(claim, MAX_PARTNERS, FIND_DEADLINE)
            .await
            .unwrap_or_default();
        let mut order: Vec<PeerId> = claimants
            .into_iter()
            .filter(|p| *p != me && !self.peer_book().is_banned(p))
            .collect();
        order.sort_by_key(|p| rank(claim, p));
        order.dedup();
        order.truncate(MAX_PARTNERS - 1);
        order.push(me);
        order.sort_by_key(|p| rank(claim, p));
        if order.len() == 1 {
            return self.finish_from_upstream(state, client, source).await;
        }
        match self
            .split_fetch(state, client, source, order, self.upstream_split())
            .await?
        {
            SplitEnd::Done(info) => Ok(info),
            SplitEnd::Wrong(partners) => {
                tracing::warn!(digest = %state.digest, ?partners, "chunks taken in the split were wrong; fetching afresh");
                state.reset();
                self.download_from_upstream(state, client, source).await
            }
        }
    }

    /// From upstream, going on from what the node holds. If chunks taken
    /// from a leader made the blob come out wrong, once more from nothing.
    async fn finish_from_upstream(
        &self,
        state: &Arc<DownloadState>,
        client: &UpstreamClient,
        source: &UpstreamSource,
    ) -> Result<BlobInfo, FetchError> {
        let followed = state
            .view()
            .is_some_and(|v| v.map.is_none() && v.prefix.is_some());
        match self.download_from_upstream(state, client, source).await {
            Err(FetchError::Corrupt(why)) if followed => {
                tracing::warn!(digest = %state.digest, %why, "chunks taken from a leader were wrong; fetching afresh");
                state.reset();
                self.download_from_upstream(state, client, source).await
            }
            other => other,
        }
    }

    /// Whom to take the blob from: a claimant that already fetches it (it
    /// announced the partial blob) before one still deciding, so a node
    /// that asks late follows the fetch under way instead of starting a
    /// second one because it comes first in the blob's order of peers;
    /// among equals the first in that order, this node included, so
    /// claimants that saw each other agree without talking. The ones
    /// already given up on are left out.
    ///
    /// In a site smaller than the DHT's replication factor the node's own
    /// store holds the claims: naming another node from it, the node
    /// follows at once (one that turns out to follow too relays its
    /// leader's chunks). Naming itself, it looks up the claims first: a
    /// claim still on its way when the store was read would make two
    /// nodes fetch the blob from upstream, and the lookup gives the claims
    /// that half second longer to arrive — a fetch from upstream too many
    /// costs a whole copy over the uplink, a later start a fraction of one.
    async fn leader(
        &self,
        digest: &Digest,
        claim: &Digest,
        me: PeerId,
        me_fetching: bool,
        gone: &[PeerId],
    ) -> Option<PeerId> {
        let network = self.network();
        let (claimants, fetching) = tokio::join!(
            network.stored_providers(claim, 20),
            network.stored_providers(digest, 20),
        );
        if let (Ok(Some(claimants)), Ok(Some(fetching))) = (claimants, fetching) {
            let pick = self.pick_among(claim, claimants, fetching, me, me_fetching, gone);
            if pick != me {
                return Some(pick);
            }
        }
        let (claimants, fetching) = tokio::join!(
            network.find_providers(claim, 20, FIND_DEADLINE),
            network.find_providers(digest, 20, FIND_DEADLINE),
        );
        let claimants = claimants.ok()?;
        let fetching = fetching.unwrap_or_default();
        Some(self.pick_among(claim, claimants, fetching, me, me_fetching, gone))
    }

    /// [`pick_leader`] on what a lookup or the store found, the peers given
    /// up on and banned left out.
    fn pick_among(
        &self,
        claim: &Digest,
        claimants: Vec<PeerId>,
        mut fetching: Vec<PeerId>,
        me: PeerId,
        me_fetching: bool,
        gone: &[PeerId],
    ) -> PeerId {
        let candidates: Vec<PeerId> = claimants
            .into_iter()
            .filter(|p| *p != me && !gone.contains(p) && !self.peer_book().is_banned(p))
            .collect();
        if me_fetching {
            fetching.push(me);
        }
        pick_leader(claim, &candidates, &fetching, me)
    }
}

/// How a claimant starts ([`Fetcher::site_start`]).
enum SiteStart {
    /// Fetch from upstream now: it leads whoever claims.
    Lead,
    /// Follow this node now: it leads whoever claims.
    Follow(PeerId),
    /// Wait out the settle, then pick the leader among the claimants.
    Settle,
}

/// A small site as one node's store shows it ([`Fetcher::site_view`]).
struct SiteView {
    /// Every other peer of the site.
    peers: Vec<PeerId>,
    /// Who holds or fetches the blob, whole or partly.
    holders: Vec<PeerId>,
    /// The claims of the upstream fetch, with how long ago each arrived.
    claims: Vec<(PeerId, Duration)>,
}

/// The rule of [`Fetcher::leader`], on what the lookups found (`me` is a
/// claimant too, and in `fetching` when it holds chunks already): the
/// first claimant that is already fetching, else the first of all, in the
/// blob's own order of peers ([`rank`]). The same views give every
/// claimant the same answer.
fn pick_leader(claim: &Digest, claimants: &[PeerId], fetching: &[PeerId], me: PeerId) -> PeerId {
    let all = || claimants.iter().copied().chain([me]);
    let first = |peers: &mut dyn Iterator<Item = PeerId>| peers.min_by_key(|p| rank(claim, p));
    first(&mut all().filter(|p| fetching.contains(p)))
        .or_else(|| first(&mut all()))
        .unwrap_or(me)
}

/// The leader's rule of [`Fetcher::site_start`], on what the store shows:
/// the site's peers, the holders of the blob (whole or partial), and the
/// claims with how long ago each arrived.
fn leads_at_once(
    claim: &Digest,
    me: PeerId,
    site: &[PeerId],
    holders: &[PeerId],
    claims: &[(PeerId, Duration)],
) -> bool {
    nobody_ahead(me, me, holders, claims) && first_of_site(claim, me, site)
}

/// No peer but `me` holds or fetches the blob, and every claim but those
/// of `me` and `first` is younger than half the settle: no claimant can
/// have settled without seeing `first`'s claim and be fetching already.
fn nobody_ahead(
    me: PeerId,
    first: PeerId,
    holders: &[PeerId],
    claims: &[(PeerId, Duration)],
) -> bool {
    holders.iter().all(|p| *p == me)
        && claims
            .iter()
            .all(|(p, age)| *p == me || *p == first || *age < CLAIM_SETTLE / 2)
}

/// What [`leader_at_once`] makes of a claimant's view of its small site.
#[derive(Debug, PartialEq, Eq)]
enum AtOnce {
    /// Follow this node now: it leads at once.
    Follow(PeerId),
    /// Its claim may be on its way: look again.
    NotYet,
    /// The rule cannot hold (alone, first itself, a holder, an old claim):
    /// the settle and the look-up decide.
    No,
}

/// The followers' rule of [`Fetcher::site_start`]: the first of the site (its
/// peers, the claimants and `me`) in `claim`'s order, if that is not `me`,
/// has claimed, nobody else holds or fetches the blob, and every other
/// claim is younger than half the settle — the same view makes that node
/// lead at once ([`leads_at_once`]), and a view it does not share makes it
/// settle and then pick itself, being first of every claimant.
fn leader_at_once(
    claim: &Digest,
    me: PeerId,
    site: &[PeerId],
    holders: &[PeerId],
    claims: &[(PeerId, Duration)],
) -> AtOnce {
    let Some(first) = site
        .iter()
        .chain(claims.iter().map(|(p, _)| p))
        .copied()
        .filter(|p| *p != me)
        .min_by_key(|p| rank(claim, p))
    else {
        return AtOnce::No;
    };
    if rank(claim, &me) < rank(claim, &first) || !nobody_ahead(me, first, holders, claims) {
        return AtOnce::No;
    }
    if claims.iter().any(|(p, _)| *p == first) {
        AtOnce::Follow(first)
    } else {
        AtOnce::NotYet
    }
}

/// Whether `me` comes before every other peer of its site in `claim`'s
/// order, so [`pick_leader`] picks it among any claimants when none is
/// fetching yet. Alone, it has nobody to come before: no.
fn first_of_site(claim: &Digest, me: PeerId, site: &[PeerId]) -> bool {
    let mine = rank(claim, &me);
    let mut others = site.iter().filter(|p| **p != me).peekable();
    others.peek().is_some() && others.all(|p| mine < rank(claim, p))
}

/// A peer's place in the order in which `claim`'s claimants lead: a hash
/// of both, so the layers of one image are led by different nodes and no
/// single node's upload carries every first copy (rendezvous hashing).
fn rank(claim: &Digest, peer: &PeerId) -> Digest {
    let mut input = claim.to_string().into_bytes();
    input.extend_from_slice(&peer.to_bytes());
    Digest::sha256_of(&input)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn claims_have_their_own_key() {
        let d = Digest::sha256_of(b"layer");
        assert_ne!(claim_key(&d), d);
        assert_eq!(claim_key(&d), claim_key(&d));
        assert_ne!(claim_key(&d), claim_key(&Digest::sha256_of(b"other")));
    }

    fn claim() -> Digest {
        claim_key(&Digest::sha256_of(b"layer"))
    }

    /// `n` peers in the order in which they lead `claim()`.
    fn sorted_peers(n: usize) -> Vec<PeerId> {
        let mut peers: Vec<PeerId> = (0..n).map(|_| PeerId::random()).collect();
        peers.sort_by_key(|p| rank(&claim(), p));
        peers
    }

    #[test]
    fn different_blobs_are_led_by_different_nodes() {
        let peers: Vec<PeerId> = (0..8).map(|_| PeerId::random()).collect();
        let leaders: std::collections::HashSet<PeerId> = (0..32u32)
            .map(|i| {
                let claim = claim_key(&Digest::sha256_of(&i.to_be_bytes()));
                pick_leader(&claim, &peers[1..], &[], peers[0])
            })
            .collect();
        // 32 blobs over 8 peers: one peer leading them all would be a
        // chance of 8^-31.
        assert!(leaders.len() > 1, "one node leads every blob");
    }

    #[test]
    fn claimants_that_saw_each_other_agree_on_the_first() {
        let p = sorted_peers(3);
        assert_eq!(pick_leader(&claim(), &[p[1], p[2]], &[], p[0]), p[0]);
        assert_eq!(pick_leader(&claim(), &[p[0], p[2]], &[], p[1]), p[0]);
        assert_eq!(pick_leader(&claim(), &[p[0], p[1]], &[], p[2]), p[0]);
    }

    #[test]
    fn a_late_claimant_follows_the_fetch_under_way_even_with_a_lower_id() {
        let p = sorted_peers(3);
        // p[0] asks late; p[2] already fetches, p[1] only claimed.
        assert_eq!(pick_leader(&claim(), &[p[1], p[2]], &[p[2]], p[0]), p[2]);
        // Two fetching (they raced): the first of them.
        assert_eq!(
            pick_leader(&claim(), &[p[1], p[2]], &[p[1], p[2]], p[0]),
            p[1]
        );
        // A provider that never claimed is no leader.
        assert_eq!(pick_leader(&claim(), &[p[2]], &[p[1]], p[0]), p[0]);
    }

    #[test]
    fn only_the_first_of_the_whole_site_leads_without_the_claims() {
        let p = sorted_peers(4);
        assert!(first_of_site(&claim(), p[0], &p[1..]));
        // Itself in the list changes nothing.
        assert!(first_of_site(&claim(), p[0], &p));
        for me in 1..4 {
            assert!(!first_of_site(&claim(), p[me], &p), "p[{me}] is not first");
        }
        // Once the claims have settled, every other claimant picks the
        // same node by the usual rule, whether it is fetching yet or not.
        for me in 1..4 {
            let others: Vec<PeerId> = (0..4).filter(|&i| i != me).map(|i| p[i]).collect();
            assert_eq!(pick_leader(&claim(), &others, &[], p[me]), p[0]);
            assert_eq!(pick_leader(&claim(), &others, &[p[0]], p[me]), p[0]);
        }
        // Knowing no peer, it is first of nothing.
        assert!(!first_of_site(&claim(), p[0], &[]));
        assert!(!first_of_site(&claim(), p[0], &p[..1]));
    }

    #[test]
    fn the_first_of_the_site_waits_for_the_claims_when_someone_may_be_fetching() {
        let p = sorted_peers(3);
        let fresh = Duration::from_millis(40);
        // A rollout: everyone claimed in the same instant.
        let claims = [(p[1], fresh), (p[2], fresh), (p[0], Duration::ZERO)];
        assert!(leads_at_once(&claim(), p[0], &p[1..], &[], &claims));
        assert!(leads_at_once(&claim(), p[0], &p[1..], &[p[0]], &claims));
        // A peer holds or fetches the blob: it is followed instead.
        assert!(!leads_at_once(&claim(), p[0], &p[1..], &[p[2]], &claims));
        // A claim older than half the settle: that claimant may have
        // settled without seeing this one and be fetching already.
        let old = [(p[1], CLAIM_SETTLE / 2), (p[2], fresh)];
        assert!(!leads_at_once(&claim(), p[0], &p[1..], &[], &old));
        // Not first of the site.
        assert!(!leads_at_once(&claim(), p[1], &p, &[], &claims));
    }

    #[test]
    fn the_others_follow_the_first_of_the_site_once_it_has_claimed() {
        let p = sorted_peers(4);
        let fresh = Duration::from_millis(40);
        let claims = [(p[0], fresh), (p[2], fresh), (p[3], Duration::ZERO)];
        // p[3] sees p[0]'s claim: p[0] leads at once by the same view.
        assert_eq!(
            leader_at_once(&claim(), p[3], &p[..3], &[], &claims),
            AtOnce::Follow(p[0])
        );
        assert!(leads_at_once(&claim(), p[0], &p[1..], &[], &claims));
        // The first of the site has not claimed: its claim may be on its
        // way (or it does not pull this blob; the settle tells).
        let without = [(p[2], fresh), (p[3], Duration::ZERO)];
        assert_eq!(
            leader_at_once(&claim(), p[3], &p[..3], &[], &without),
            AtOnce::NotYet
        );
        // Someone holds or fetches the blob: the usual rule follows it.
        assert_eq!(
            leader_at_once(&claim(), p[3], &p[..3], &[p[1]], &claims),
            AtOnce::No
        );
        // Another claim is old enough to have settled without p[0]'s.
        let old = [(p[0], fresh), (p[2], CLAIM_SETTLE / 2)];
        assert_eq!(
            leader_at_once(&claim(), p[3], &p[..3], &[], &old),
            AtOnce::No
        );
        // The first claimed long ago (still deciding, or fetching with
        // nothing checked yet): still the one to follow.
        let first_old = [(p[0], CLAIM_SETTLE * 2), (p[2], fresh)];
        assert_eq!(
            leader_at_once(&claim(), p[3], &p[..3], &[], &first_old),
            AtOnce::Follow(p[0])
        );
        // A claimant missing from the routing table still counts: p[1]
        // outranks p[2] and p[3] though only its claim is known.
        let claims = [(p[1], fresh), (p[3], Duration::ZERO)];
        assert_eq!(
            leader_at_once(&claim(), p[3], &[p[2]], &[], &claims),
            AtOnce::Follow(p[1])
        );
        // The first of the site follows nobody, and alone there is nobody
        // to follow: neither waits.
        assert_eq!(
            leader_at_once(&claim(), p[0], &p[1..], &[], &claims),
            AtOnce::No
        );
        assert_eq!(leader_at_once(&claim(), p[0], &[], &[], &[]), AtOnce::No);
    }

    #[test]
    fn followers_left_without_a_leader_agree_on_the_next() {
        let p = sorted_peers(4);
        // p[3] led and went away; p[0..3] all hold chunks. Each sees the
        // other two and itself fetching: all pick p[0], which takes over.
        for me in 0..3 {
            let others: Vec<PeerId> = (0..3).filter(|&i| i != me).map(|i| p[i]).collect();
            let fetching = [p[0], p[1], p[2]];
            assert_eq!(pick_leader(&claim(), &others, &fetching, p[me]), p[0]);
        }
    }
}
