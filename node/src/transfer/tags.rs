//! Tags resolved at an upstream, shared between peers: a node that
//! resolved `<host>/<repo>:<tag>` announces itself in the DHT under a key
//! derived from that name, and a node whose upstream is unreachable (and
//! that has no mapping of its own) asks those providers which digest the
//! tag named. The answer is a claim: the manifest it names is still checked
//! against its digest, but which manifest a tag means is only as good as
//! the peer (publisher-signed tags are the planned fix; `docs/security.md`).

use std::time::Duration;

use shoal_protocol::Digest;
use shoal_protocol::wire::Message;

use super::fetch::{FIND_DEADLINE, Fetcher};
use super::session::Session;

/// Peers asked at most for one tag.
const MAX_TAG_PEERS: usize = 4;

/// The DHT key under which holders of a tag mapping announce themselves.
pub fn tag_key(name: &str) -> Digest {
    let mut input = b"shoal-tag\0".to_vec();
    input.extend_from_slice(name.as_bytes());
    Digest::sha256_of(&input)
}

impl Fetcher {
    /// Tells the network this node knows what `name` resolves to.
    pub async fn announce_tag(&self, name: &str) {
        if let Err(e) = self.network().provide(&tag_key(name)).await {
            tracing::debug!(%name, error = %e, "could not announce a tag mapping");
        }
    }

    /// What peers say `name` resolved to, the most recent answer first;
    /// `None` when no peer knows.
    pub async fn tag_from_peers(&self, name: &str) -> Option<(Digest, Duration)> {
        let me = self.network().peer_id();
        let providers = self
            .network()
            .find_providers(&tag_key(name), MAX_TAG_PEERS + 1, FIND_DEADLINE)
            .await
            .ok()?;
        let mut best: Option<(Digest, Duration)> = None;
        let mut control = self.network().stream_control();
        for peer in providers
            .into_iter()
            .filter(|p| *p != me)
            .take(MAX_TAG_PEERS)
        {
            let Some(mut session) = Session::open(&mut control, peer).await else {
                continue;
            };
            if let Ok(Message::TagIs {
                name: n,
                digest,
                age_secs,
            }) = session
                .ask(&Message::GetTag {
                    name: name.to_owned(),
                })
                .await
                && n == name
            {
                let age = Duration::from_secs(age_secs);
                if best.as_ref().is_none_or(|(_, a)| age < *a) {
                    best = Some((digest, age));
                }
            }
        }
        best
    }
}
