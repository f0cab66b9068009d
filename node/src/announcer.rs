//! Keeps the DHT's provider records in step with the store: every blob
//! held is announced after start (rate-limited, since each announcement
//! starts a DHT query), each new commit at once, each deletion withdrawn.

use std::time::Duration;

use tokio::sync::broadcast::error::RecvError;

use crate::network::NetworkHandle;
use crate::store::{Store, StoreError, StoreEvent};

/// Announcements per second when re-announcing everything after a start.
pub const REANNOUNCE_PER_SECOND: u32 = 500;

/// Runs until the store's event channel closes or the network stops.
pub async fn run(store: Store, network: NetworkHandle) {
    // Subscribe before listing, so nothing committed in between is missed.
    let mut events = store.subscribe();
    if let Err(e) = announce_all(&store, &network).await {
        tracing::warn!(error = %e, "re-announcing stored blobs failed");
    }
    loop {
        let result = match events.recv().await {
            Ok(StoreEvent::Committed(d)) => network.provide(&d).await,
            Ok(StoreEvent::Deleted(d)) => network.unprovide(&d).await,
            Err(RecvError::Lagged(missed)) => {
                tracing::warn!(missed, "announcer fell behind; re-announcing everything");
                announce_all(&store, &network)
                    .await
                    .map_err(|e| {
                        tracing::warn!(error = %e, "re-announcing stored blobs failed");
                    })
                    .ok();
                Ok(())
            }
            Err(RecvError::Closed) => break,
        };
        if let Err(e) = result {
            tracing::debug!(error = %e, "announcer stopping");
            break;
        }
    }
}

async fn announce_all(store: &Store, network: &NetworkHandle) -> Result<(), StoreError> {
    let blobs = store.list_blobs()?;
    let pause = Duration::from_secs(1) / REANNOUNCE_PER_SECOND;
    let mut ticker = tokio::time::interval(pause);
    for blob in &blobs {
        ticker.tick().await;
        if network.provide(&blob.digest).await.is_err() {
            break;
        }
    }
    tracing::info!(blobs = blobs.len(), "announced stored blobs");
    Ok(())
}
