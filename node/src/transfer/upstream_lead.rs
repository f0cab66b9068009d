//! One copy over the uplink: when several nodes need the same blob from
//! upstream at once, one of them (the lowest peer id among those that
//! claimed it within [`CLAIM_SETTLE`]) fetches it; the others follow — they
//! wait for it to commit and then fetch from it (and each other) as from
//! any peer. A follower whose leader stops answering, or that waited
//! [`FOLLOW_LIMIT`], fetches from upstream itself: a pull never hangs on a
//! peer.
//!
//! Claims are provider records under a key derived from the digest. The
//! leader is chosen by peer id so that every claimant picks the same one
//! without talking to the others.

use std::sync::Arc;
use std::time::{Duration, Instant};

use libp2p::PeerId;
use shoal_protocol::Digest;
use shoal_protocol::wire::Message;

use super::downloads::DownloadState;
use super::fetch::{FIND_DEADLINE, FetchError, Fetcher};
use super::from_upstream::UpstreamSource;
use super::session::Session;
use crate::store::BlobInfo;
use crate::upstream::UpstreamClient;

/// How long claims may take to spread before the leader is picked.
pub const CLAIM_SETTLE: Duration = Duration::from_millis(300);
/// How often a follower looks for the finished blob.
const FOLLOW_POLL: Duration = Duration::from_millis(250);
/// The longest a follower waits before fetching upstream itself.
pub const FOLLOW_LIMIT: Duration = Duration::from_secs(600);

/// The DHT key under which nodes fetching `digest` from upstream say so.
pub fn claim_key(digest: &Digest) -> Digest {
    let mut input = b"shoal-upstream-fetch\0".to_vec();
    input.extend_from_slice(digest.to_string().as_bytes());
    Digest::sha256_of(&input)
}

impl Fetcher {
    /// Fetches `state`'s blob from upstream, unless another node already
    /// is: then follows it.
    pub(super) async fn upstream_once(
        &self,
        state: &Arc<DownloadState>,
        client: &UpstreamClient,
        source: &UpstreamSource,
    ) -> Result<BlobInfo, FetchError> {
        let digest = state.digest.clone();
        let claim = claim_key(&digest);
        let me = self.network().peer_id();
        // Alone, there is nobody to share the uplink with: no claim, no wait.
        let alone = self
            .network()
            .info()
            .await
            .map_or(true, |i| i.connected_peers == 0);
        if alone || self.network().provide(&claim).await.is_err() {
            return self.download_from_upstream(state, client, source).await;
        }
        tokio::time::sleep(CLAIM_SETTLE).await;
        let leader = self.leader(&claim, me).await;
        let result = match leader {
            Some(leader) if leader != me && state.view().is_none() => {
                tracing::info!(%digest, %leader, "another node is fetching this from upstream; following it");
                match self.follow(state, leader).await {
                    Some(info) => Ok(info),
                    None => self.download_from_upstream(state, client, source).await,
                }
            }
            _ => self.download_from_upstream(state, client, source).await,
        };
        let _ = self.network().unprovide(&claim).await;
        result
    }

    /// The claimant with the lowest peer id (this node included).
    async fn leader(&self, claim: &Digest, me: PeerId) -> Option<PeerId> {
        let claimants = self
            .network()
            .find_providers(claim, 20, FIND_DEADLINE)
            .await
            .ok()?;
        claimants.into_iter().chain([me]).min()
    }

    /// Waits for `leader` to commit the blob, then fetches it from peers.
    /// `None` when the leader stops answering or takes too long.
    async fn follow(&self, state: &Arc<DownloadState>, leader: PeerId) -> Option<BlobInfo> {
        let started = Instant::now();
        let digest = state.digest.clone();
        let mut control = self.network().stream_control();
        let mut session = Session::open(&mut control, leader).await?;
        loop {
            if started.elapsed() > FOLLOW_LIMIT || self.stop_token().is_cancelled() {
                return None;
            }
            // Is the leader still at it, or done?
            let complete = match session
                .ask(&Message::GetInfo {
                    digest: digest.clone(),
                })
                .await
            {
                Ok(Message::Info { complete, .. }) => complete,
                // Not started, or failed and forgotten: do not wait on it.
                Ok(_) if started.elapsed() > 2 * CLAIM_SETTLE => return None,
                Ok(_) => false,
                Err(_) => return None,
            };
            if complete {
                return self.download(state, false).await.ok();
            }
            tokio::time::sleep(FOLLOW_POLL).await;
        }
    }
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
}
