//! The task that owns the libp2p `Swarm`.

use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::time::Duration;

use futures_util::StreamExt;
use libp2p::kad::store::RecordStore;
use libp2p::kad::{self, GetProvidersOk, QueryId, QueryResult, RecordKey};
use libp2p::multiaddr::Protocol;
use libp2p::swarm::SwarmEvent;
use libp2p::swarm::behaviour::toggle::Toggle;
use libp2p::{Multiaddr, PeerId, StreamProtocol, Swarm, identify, mdns, noise, tcp, yamux};
use tokio::sync::{mpsc, oneshot};

use super::behaviour::{Behaviour, BehaviourEvent};
use super::config::{IDENTIFY_PROTOCOL, KAD_PROTOCOL, NetworkOptions};
use super::handle::{Command, NetworkError, NetworkInfo};
use super::lan::LanPeers;
use super::provider_store::ProviderStore;

/// A provider lookup in flight.
struct PendingFind {
    found: HashSet<PeerId>,
    limit: usize,
    reply: oneshot::Sender<Vec<PeerId>>,
}

pub(crate) struct EventLoop {
    swarm: Swarm<Behaviour>,
    commands: mpsc::Receiver<Command>,
    finds: HashMap<QueryId, PendingFind>,
    /// Announcements whose caller waits for them to reach the closest peers.
    confirming: HashMap<QueryId, oneshot::Sender<Result<(), NetworkError>>>,
    /// What mDNS found, shared with every handle.
    lan: LanPeers,
    sweep_interval: Duration,
    /// How long a received provider record lives: it was received this
    /// long before it expires.
    provider_ttl: Duration,
}

/// Whether a routing table of `known` peers holds the whole network as
/// this node sees it: fewer peers than the replication factor, so every
/// record published goes to all of them ([`EventLoop::holds_every_record`]).
fn whole_network(known: usize) -> bool {
    known < kad::K_VALUE.get()
}

fn key_of(digest: &shoal_protocol::Digest) -> RecordKey {
    RecordKey::new(&digest.multihash_bytes())
}

/// Splits `/…/p2p/<id>` into the peer id and the address before it.
fn split_peer(addr: &Multiaddr) -> Option<(PeerId, Multiaddr)> {
    let mut base = addr.clone();
    match base.pop() {
        Some(Protocol::P2p(peer)) => Some((peer, base)),
        _ => None,
    }
}

impl EventLoop {
    /// A control for opening and accepting transfer streams; it talks to
    /// the stream behaviour directly, not through the command channel.
    pub(crate) fn stream_control(&self) -> libp2p_stream::Control {
        self.swarm.behaviour().stream.new_control()
    }

    pub(crate) fn new(
        keypair: libp2p::identity::Keypair,
        options: &NetworkOptions,
        commands: mpsc::Receiver<Command>,
        lan: LanPeers,
    ) -> Result<EventLoop, NetworkError> {
        let transport_err = |e: &dyn std::fmt::Display| NetworkError::Transport(e.to_string());
        let peer_id = keypair.public().to_peer_id();
        let mut kad_config = kad::Config::new(StreamProtocol::new(KAD_PROTOCOL));
        kad_config
            .set_provider_record_ttl(Some(options.provider_ttl))
            .set_provider_publication_interval(Some(options.republish_interval))
            .set_query_timeout(Duration::from_secs(10));
        let store = ProviderStore::new(peer_id, options.provider_store.clone());
        let mdns_enabled = options.mdns;
        let swarm = libp2p::SwarmBuilder::with_existing_identity(keypair)
            .with_tokio()
            .with_tcp(
                tcp::Config::default().nodelay(true),
                noise::Config::new,
                yamux::Config::default,
            )
            .map_err(|e| transport_err(&e))?
            .with_quic()
            .with_behaviour(|key| {
                let mut kad = kad::Behaviour::with_config(peer_id, store, kad_config);
                // Kademlia starts as a client until an external address is
                // confirmed; on a LAN or test network that never happens.
                kad.set_mode(Some(kad::Mode::Server));
                let identify = identify::Behaviour::new(identify::Config::new(
                    IDENTIFY_PROTOCOL.into(),
                    key.public(),
                ));
                let mdns = if mdns_enabled {
                    Some(mdns::tokio::Behaviour::new(
                        mdns::Config::default(),
                        peer_id,
                    )?)
                } else {
                    None
                };
                Ok(Behaviour {
                    kad,
                    identify,
                    mdns: Toggle::from(mdns),
                    stream: libp2p_stream::Behaviour::new(),
                })
            })
            .map_err(|e| transport_err(&e))?
            .with_swarm_config(|c| c.with_idle_connection_timeout(Duration::from_secs(120)))
            .build();
        let mut event_loop = EventLoop {
            swarm,
            commands,
            finds: HashMap::new(),
            confirming: HashMap::new(),
            lan,
            sweep_interval: options.sweep_interval,
            provider_ttl: options.provider_ttl,
        };
        for addr in &options.listen {
            event_loop
                .swarm
                .listen_on(addr.clone())
                .map_err(|e| NetworkError::Listen {
                    addr: addr.clone(),
                    reason: crate::error_chain::error_chain(&e),
                })?;
        }
        for addr in &options.bootstrap {
            if let Err(e) = event_loop.dial(addr.clone()) {
                tracing::warn!(error = %e, "bootstrap peer not dialled");
            }
        }
        Ok(event_loop)
    }

    fn dial(&mut self, addr: Multiaddr) -> Result<(), NetworkError> {
        if let Some((peer, base)) = split_peer(&addr) {
            self.swarm.behaviour_mut().kad.add_address(&peer, base);
        }
        self.swarm
            .dial(addr.clone())
            .map_err(|e| NetworkError::Dial {
                addr,
                reason: e.to_string(),
            })
    }

    pub(crate) async fn run(mut self, shutdown: impl Future<Output = ()>) {
        tokio::pin!(shutdown);
        // The first sweep one interval after start: nothing has expired yet.
        // At least a second apart: a zero period would make `interval` panic.
        let period = self.sweep_interval.max(Duration::from_secs(1));
        let mut sweep = tokio::time::interval_at(tokio::time::Instant::now() + period, period);
        sweep.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                () = &mut shutdown => break,
                _ = sweep.tick() => self.sweep(),
                event = self.swarm.select_next_some() => self.on_swarm_event(event),
                command = self.commands.recv() => match command {
                    Some(c) => self.on_command(c),
                    // Every handle dropped: nobody can use the network.
                    None => break,
                },
            }
        }
        tracing::debug!("network actor stopped");
    }

    /// Drops expired records of others. Kademlia removes an expired record
    /// only when a lookup touches its key, so without this they would pile
    /// up until the store's cap refused new ones.
    fn sweep(&mut self) {
        let store = self.swarm.behaviour_mut().kad.store_mut();
        let swept = store.sweep(std::time::Instant::now());
        tracing::debug!(
            swept_records = swept.records,
            swept_providers = swept.providers,
            own_keys = store.provided_len(),
            others_providers = store.others_len(),
            records = store.records_len(),
            "provider store swept"
        );
    }

    fn on_command(&mut self, command: Command) {
        match command {
            Command::Provide {
                digest,
                confirm,
                reply,
            } => {
                match self
                    .swarm
                    .behaviour_mut()
                    .kad
                    .start_providing(key_of(&digest))
                {
                    Ok(id) if confirm => {
                        self.confirming.insert(id, reply);
                    }
                    Ok(_) => {
                        let _ = reply.send(Ok(()));
                    }
                    Err(e) => {
                        let _ = reply.send(Err(NetworkError::Provide {
                            digest,
                            reason: format!("{e:?}"),
                        }));
                    }
                }
            }
            Command::Unprovide { digest } => {
                self.swarm
                    .behaviour_mut()
                    .kad
                    .stop_providing(&key_of(&digest));
            }
            Command::StoredAges {
                digest,
                limit,
                reply,
            } => {
                let stored = self
                    .holds_every_record()
                    .then(|| self.stored_ages(&key_of(&digest), limit));
                let _ = reply.send(stored);
            }
            Command::SitePeers { reply } => {
                // Listed once instead of counted and then listed.
                let peers = self.routing_peers();
                let _ = reply.send(whole_network(peers.len()).then_some(peers));
            }
            Command::FindProviders {
                digest,
                limit,
                reply,
            } => {
                let id = self
                    .swarm
                    .behaviour_mut()
                    .kad
                    .get_providers(key_of(&digest));
                self.finds.insert(
                    id,
                    PendingFind {
                        found: HashSet::new(),
                        limit: limit.max(1),
                        reply,
                    },
                );
            }
            Command::Dial { addr, reply } => {
                let _ = reply.send(self.dial(addr));
            }
            Command::Info { reply } => {
                let store = self.swarm.behaviour_mut().kad.store_mut();
                let (provided_keys, others_provider_records) =
                    (store.provided_len(), store.others_len());
                let _ = reply.send(NetworkInfo {
                    peer_id: *self.swarm.local_peer_id(),
                    listen_addrs: self.swarm.listeners().cloned().collect(),
                    connected_peers: self.swarm.connected_peers().count(),
                    provided_keys,
                    others_provider_records,
                });
            }
        }
    }

    fn on_swarm_event(&mut self, event: SwarmEvent<BehaviourEvent>) {
        match event {
            SwarmEvent::NewListenAddr { address, .. } => {
                tracing::info!(%address, "p2p listening");
            }
            SwarmEvent::Behaviour(BehaviourEvent::Identify(identify::Event::Received {
                peer_id,
                info,
                ..
            })) => {
                for addr in info.listen_addrs {
                    self.swarm.behaviour_mut().kad.add_address(&peer_id, addr);
                }
            }
            SwarmEvent::Behaviour(BehaviourEvent::Mdns(mdns::Event::Discovered(peers))) => {
                self.lan.discovered(peers.iter().cloned());
                for (peer, addr) in peers {
                    self.swarm.behaviour_mut().kad.add_address(&peer, addr);
                }
            }
            SwarmEvent::Behaviour(BehaviourEvent::Mdns(mdns::Event::Expired(peers))) => {
                self.lan.expired(peers);
            }
            SwarmEvent::Behaviour(BehaviourEvent::Kad(kad::Event::OutboundQueryProgressed {
                id,
                result,
                step,
                ..
            })) => {
                self.on_query(id, result, step.last);
            }
            _ => {}
        }
    }

    fn on_query(&mut self, id: QueryId, result: QueryResult, last: bool) {
        match result {
            QueryResult::GetProviders(Ok(GetProvidersOk::FoundProviders { providers, .. })) => {
                let Some(pending) = self.finds.get_mut(&id) else {
                    return;
                };
                pending.found.extend(providers);
                if pending.found.len() >= pending.limit {
                    if let Some(mut query) = self.swarm.behaviour_mut().kad.query_mut(&id) {
                        query.finish();
                    }
                    self.answer_find(id);
                } else if last {
                    self.answer_find(id);
                }
            }
            QueryResult::GetProviders(_) if last => self.answer_find(id),
            QueryResult::StartProviding(result) => {
                if let Err(e) = &result {
                    tracing::debug!(error = ?e, "announcement reached no peer yet");
                }
                // Stored locally either way: the caller need wait no more.
                if let Some(reply) = self.confirming.remove(&id) {
                    let _ = reply.send(Ok(()));
                }
            }
            _ => {}
        }
    }

    /// Whether every provider record published while this node is up
    /// reaches it: a publisher sends its record to the replication-factor
    /// closest peers it finds, and with fewer peers than that in the
    /// network (as this node sees it) that is all of them.
    fn holds_every_record(&mut self) -> bool {
        let known: usize = self
            .swarm
            .behaviour_mut()
            .kad
            .kbuckets()
            .map(|bucket| bucket.num_entries())
            .sum();
        whole_network(known)
    }

    /// Every peer in the routing table.
    fn routing_peers(&mut self) -> Vec<PeerId> {
        let mut peers = Vec::new();
        for bucket in self.swarm.behaviour_mut().kad.kbuckets() {
            peers.extend(bucket.iter().map(|entry| *entry.node.key.preimage()));
        }
        peers
    }

    /// Providers of `key` in this node's own store, expired ones left out,
    /// each with how long ago its record arrived (or was last refreshed).
    /// A record without an expiry is taken as old.
    fn stored_ages(&mut self, key: &RecordKey, limit: usize) -> Vec<(PeerId, Duration)> {
        let now = std::time::Instant::now();
        let ttl = self.provider_ttl;
        let store = self.swarm.behaviour_mut().kad.store_mut();
        let mut peers: Vec<(PeerId, Duration)> = store
            .providers(key)
            .into_iter()
            .filter(|record| !record.is_expired(now))
            .map(|record| {
                let age = record.expires.map_or(Duration::MAX, |expires| {
                    ttl.saturating_sub(expires.saturating_duration_since(now))
                });
                (record.provider, age)
            })
            .collect();
        peers.truncate(limit.max(1));
        peers
    }

    fn answer_find(&mut self, id: QueryId) {
        if let Some(pending) = self.finds.remove(&id) {
            let mut peers: Vec<PeerId> = pending.found.into_iter().collect();
            peers.truncate(pending.limit);
            let _ = pending.reply.send(peers);
        }
    }
}
