//! Runs a node: opens the store, serves the registry endpoint, and stops
//! cleanly when the shutdown future completes.

use std::future::Future;
use std::net::SocketAddr;

use axum::serve::ListenerExt;
use std::sync::Arc;
use tokio::net::TcpListener;

use tokio_util::sync::CancellationToken;

use crate::metrics::Metrics;
use crate::transfer::{Downloads, Fetcher, TransferServer};

use crate::config::NodeConfig;
use crate::registry::mirror::Mirror;
use crate::registry::{self, RegistryState};
use crate::store::{Store, StoreError};
use crate::upstream::UpstreamClient;

#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("opening the store: {0}")]
    Store(#[from] StoreError),
    #[error("serving HTTP: {0}")]
    Serve(#[source] std::io::Error),
    #[error("store task failed: {0}")]
    Join(#[from] tokio::task::JoinError),
    #[error("configuration: {0}")]
    Config(#[from] crate::config::ConfigError),
    #[error("node identity: {0}")]
    Identity(#[from] crate::network::identity::IdentityError),
    #[error("network: {0}")]
    Network(#[from] crate::network::NetworkError),
}

/// Binds the configured registry address and serves until `shutdown`.
pub async fn run(
    config: NodeConfig,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), DaemonError> {
    let addr = config.registry.addr;
    let listener = TcpListener::bind(addr)
        .await
        .map_err(|source| DaemonError::Bind { addr, source })?;
    serve(config, listener, shutdown).await
}

/// Serves on an already bound listener (tests bind `127.0.0.1:0`).
pub async fn serve(
    config: NodeConfig,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), DaemonError> {
    let options = config.store_options();
    let store = tokio::task::spawn_blocking(move || Store::open(options)).await??;
    // One shutdown signal fans out to every part of the node.
    let stop = CancellationToken::new();
    {
        let stop = stop.clone();
        tokio::spawn(async move {
            tokio::select! {
                () = shutdown => tracing::info!("shutting down: finishing requests in flight"),
                () = stop.cancelled() => {}
            }
            stop.cancel();
        });
    }
    let metrics = Arc::new(Metrics::default());
    // One bucket per direction, shared by everything that moves bytes in it.
    let limits = config.limits.build();
    let l = &config.limits;
    if [l.peer_upload, l.peer_download, l.upstream_download]
        .iter()
        .any(|r| r.limit().is_some())
    {
        tracing::info!(
            peer_upload = %l.peer_upload,
            peer_download = %l.peer_download,
            upstream_download = %l.upstream_download,
            "bandwidth limited"
        );
    }
    let mut state = RegistryState::new(store.clone(), config.registry_limits());
    let upstream = if config.upstream.enabled {
        let client = UpstreamClient::new(&config.upstream)
            .map_err(|e| DaemonError::Config(e.into()))?
            .with_download_limit(limits.upstream_download.clone());
        state = state.with_mirror(Mirror::new(client.clone(), &config.upstream));
        tracing::info!(default = %config.upstream.default_upstream, "pulling through from upstream registries");
        Some(client)
    } else {
        None
    };
    let network = if config.p2p.enabled {
        let keypair = crate::network::identity::load_or_create(&config.data_dir)?;
        let (handle, _task) = crate::network::spawn(
            keypair,
            config.network_options()?,
            stop.clone().cancelled_owned(),
        )?;
        tracing::info!(peer_id = %handle.peer_id(), "p2p started");
        tokio::spawn(crate::announcer::run(store.clone(), handle.clone()));
        let downloads = Downloads::default();
        let server = TransferServer::new(store.clone(), metrics.clone(), downloads.clone())
            .with_upload_limits(limits.upload_slots.clone(), limits.peer_upload.clone());
        #[cfg(feature = "test-liars")]
        let server = server.lying(config.p2p.liar);
        tokio::spawn(server.run(handle.stream_control(), stop.clone()));
        let mut fetcher = Fetcher::new(
            handle.clone(),
            store.clone(),
            metrics.clone(),
            downloads,
            stop.clone(),
        )
        .with_download_limit(limits.peer_download.clone());
        if let Some(client) = &upstream {
            fetcher = fetcher
                .with_upstream(client.clone())
                .with_upstream_split(config.upstream.split);
        }
        state = state.with_peers(fetcher, metrics.clone());
        Some(handle)
    } else {
        None
    };
    let app = registry::router(state);
    let local = listener.local_addr().map_err(DaemonError::Serve)?;
    tracing::info!(addr = %local, data_dir = %config.data_dir.display(), "registry listening");

    let signal = stop.clone().cancelled_owned();
    // Without TCP_NODELAY a response's headers and first body frame meet
    // Nagle's algorithm and delayed ACKs: 40 ms to the first byte.
    let listener = listener.tap_io(|tcp| {
        if let Err(e) = tcp.set_nodelay(true) {
            tracing::debug!(error = %e, "cannot set TCP_NODELAY");
        }
    });
    let server = axum::serve(listener, app).with_graceful_shutdown(signal);
    let grace = config.shutdown_grace;
    let grace_over = async {
        stop.cancelled().await;
        tokio::time::sleep(grace).await;
    };
    tokio::select! {
        result = server => result.map_err(DaemonError::Serve)?,
        () = grace_over => {
            // Connections still open are dropped with the runtime; their
            // unfinished blob writes delete their temporary files.
            tracing::warn!(?grace, "grace period over; dropping open connections");
        }
    }
    stop.cancel();
    drop(network);
    tokio::task::spawn_blocking(move || store.close()).await??;
    tracing::info!("stopped");
    Ok(())
}
