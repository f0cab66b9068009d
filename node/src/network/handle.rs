//! The cloneable handle through which the node uses the network actor.

use std::time::Duration;

use libp2p::{Multiaddr, PeerId};
use shoal_protocol::Digest;
use tokio::sync::{mpsc, oneshot};

use super::lan::LanPeers;

#[derive(Debug, thiserror::Error)]
pub enum NetworkError {
    #[error("the network actor has stopped")]
    Stopped,
    #[error("building the libp2p transport: {0}")]
    Transport(String),
    #[error("cannot listen on {addr}: {reason}")]
    Listen { addr: Multiaddr, reason: String },
    #[error("cannot dial {addr}: {reason}")]
    Dial { addr: Multiaddr, reason: String },
    #[error("provider store refused {digest}: {reason}")]
    Provide { digest: Digest, reason: String },
}

/// What the actor knows about itself.
#[derive(Debug, Clone)]
pub struct NetworkInfo {
    pub peer_id: PeerId,
    pub listen_addrs: Vec<Multiaddr>,
    pub connected_peers: usize,
    /// Keys this node announces as a provider.
    pub provided_keys: usize,
    /// Provider records held for other peers (swept as they expire).
    pub others_provider_records: usize,
}

pub(crate) enum Command {
    Provide {
        digest: Digest,
        /// Answer once the record reached the closest peers (or the
        /// attempt ended), not as soon as it is stored locally.
        confirm: bool,
        reply: oneshot::Sender<Result<(), NetworkError>>,
    },
    Unprovide {
        digest: Digest,
    },
    FindProviders {
        digest: Digest,
        limit: usize,
        reply: oneshot::Sender<Vec<PeerId>>,
    },
    /// The node's own store's providers of `digest`, each with how long
    /// ago its record arrived, if it holds every record announced while it
    /// is up.
    StoredAges {
        digest: Digest,
        limit: usize,
        reply: oneshot::Sender<Option<Vec<(PeerId, Duration)>>>,
    },
    /// Every peer in the routing table, if it holds the whole network
    /// (fewer peers than Kademlia's replication factor).
    SitePeers {
        reply: oneshot::Sender<Option<Vec<PeerId>>>,
    },
    Dial {
        addr: Multiaddr,
        reply: oneshot::Sender<Result<(), NetworkError>>,
    },
    Info {
        reply: oneshot::Sender<NetworkInfo>,
    },
}

/// Cheap to clone; every method is a message to the actor.
#[derive(Clone)]
pub struct NetworkHandle {
    tx: mpsc::Sender<Command>,
    peer_id: PeerId,
    control: libp2p_stream::Control,
    lan: LanPeers,
}

impl std::fmt::Debug for NetworkHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NetworkHandle")
            .field("peer_id", &self.peer_id)
            .finish()
    }
}

impl std::fmt::Debug for Command {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Command::Provide { digest, .. } => write!(f, "Provide({digest})"),
            Command::Unprovide { digest } => write!(f, "Unprovide({digest})"),
            Command::FindProviders { digest, limit, .. } => {
                write!(f, "FindProviders({digest}, {limit})")
            }
            Command::StoredAges { digest, limit, .. } => {
                write!(f, "StoredAges({digest}, {limit})")
            }
            Command::SitePeers { .. } => write!(f, "SitePeers"),
            Command::Dial { addr, .. } => write!(f, "Dial({addr})"),
            Command::Info { .. } => write!(f, "Info"),
        }
    }
}

impl NetworkHandle {
    pub(crate) fn new(
        tx: mpsc::Sender<Command>,
        peer_id: PeerId,
        control: libp2p_stream::Control,
        lan: LanPeers,
    ) -> NetworkHandle {
        NetworkHandle {
            tx,
            peer_id,
            control,
            lan,
        }
    }

    /// Whether mDNS found `peer` on this node's LAN.
    pub fn is_lan_peer(&self, peer: &PeerId) -> bool {
        self.lan.contains(peer)
    }

    /// A control for opening and accepting transfer-protocol streams.
    pub fn stream_control(&self) -> libp2p_stream::Control {
        self.control.clone()
    }

    pub fn peer_id(&self) -> PeerId {
        self.peer_id
    }

    async fn ask<T>(
        &self,
        make: impl FnOnce(oneshot::Sender<T>) -> Command,
    ) -> Result<T, NetworkError> {
        let (reply, answer) = oneshot::channel();
        self.tx
            .send(make(reply))
            .await
            .map_err(|_| NetworkError::Stopped)?;
        answer.await.map_err(|_| NetworkError::Stopped)
    }

    /// Announces that this node holds `digest` (a verified, committed blob).
    pub async fn provide(&self, digest: &Digest) -> Result<(), NetworkError> {
        let digest = digest.clone();
        self.ask(|reply| Command::Provide {
            digest,
            confirm: false,
            reply,
        })
        .await?
    }

    /// Announces `digest` and waits until the announcement reached the
    /// peers closest to it, so that a lookup by any node from then on finds
    /// it: at most `deadline`, after which it is on its way anyway.
    pub async fn provide_confirmed(
        &self,
        digest: &Digest,
        deadline: Duration,
    ) -> Result<(), NetworkError> {
        let digest = digest.clone();
        let ask = self.ask(|reply| Command::Provide {
            digest,
            confirm: true,
            reply,
        });
        match tokio::time::timeout(deadline, ask).await {
            Ok(result) => result?,
            Err(_) => Ok(()),
        }
    }

    /// Withdraws the announcement (the blob was deleted or evicted).
    pub async fn unprovide(&self, digest: &Digest) -> Result<(), NetworkError> {
        let digest = digest.clone();
        self.tx
            .send(Command::Unprovide { digest })
            .await
            .map_err(|_| NetworkError::Stopped)
    }

    /// Peers that announced `digest`: at most `limit`, and whatever was found
    /// by `deadline` (a missing blob must answer quickly, never hang).
    pub async fn find_providers(
        &self,
        digest: &Digest,
        limit: usize,
        deadline: Duration,
    ) -> Result<Vec<PeerId>, NetworkError> {
        let digest = digest.clone();
        match tokio::time::timeout(
            deadline,
            self.ask(|reply| Command::FindProviders {
                digest,
                limit,
                reply,
            }),
        )
        .await
        {
            Ok(found) => found,
            Err(_) => Ok(Vec::new()),
        }
    }

    /// Peers that announced `digest` while this node was up, from its own
    /// store, without a lookup: `None` unless the node knows fewer peers
    /// than Kademlia's replication factor. Then every announcement made
    /// since it came up was sent to it as to every other peer, and a lookup
    /// would gather the same records from the same stores after half a
    /// second of round trips (sixteen nodes looking up every layer of an
    /// image in the same second kept two cores busy). Only for records of
    /// the moment — claims and partial blobs of a rollout: a blob announced
    /// before this node came up is not in its store.
    pub async fn stored_providers(
        &self,
        digest: &Digest,
        limit: usize,
    ) -> Result<Option<Vec<PeerId>>, NetworkError> {
        let stored = self.stored_provider_ages(digest, limit).await?;
        Ok(stored.map(|peers| peers.into_iter().map(|(peer, _)| peer).collect()))
    }

    /// Peers that announced `digest` while this node was up: from its own
    /// store when that holds them all ([`NetworkHandle::stored_providers`]),
    /// else by a lookup.
    pub async fn recent_providers(
        &self,
        digest: &Digest,
        limit: usize,
        deadline: Duration,
    ) -> Result<Vec<PeerId>, NetworkError> {
        match self.stored_providers(digest, limit).await? {
            Some(peers) => Ok(peers),
            None => self.find_providers(digest, limit, deadline).await,
        }
    }

    /// [`NetworkHandle::stored_providers`], each with how long ago its
    /// record reached this node.
    pub async fn stored_provider_ages(
        &self,
        digest: &Digest,
        limit: usize,
    ) -> Result<Option<Vec<(PeerId, Duration)>>, NetworkError> {
        let digest = digest.clone();
        self.ask(|reply| Command::StoredAges {
            digest,
            limit,
            reply,
        })
        .await
    }

    /// Every other peer of a small network (a site), known or not
    /// connected at the moment: `None` unless the node knows fewer peers
    /// than Kademlia's replication factor, as for
    /// [`NetworkHandle::stored_providers`].
    pub async fn site_peers(&self) -> Result<Option<Vec<PeerId>>, NetworkError> {
        self.ask(|reply| Command::SitePeers { reply }).await
    }

    /// Connects to a peer (an address with `/p2p/<peer id>`).
    pub async fn dial(&self, addr: Multiaddr) -> Result<(), NetworkError> {
        self.ask(|reply| Command::Dial { addr, reply }).await?
    }

    pub async fn info(&self) -> Result<NetworkInfo, NetworkError> {
        self.ask(|reply| Command::Info { reply }).await
    }
}
