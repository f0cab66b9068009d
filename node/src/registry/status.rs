//! `GET /_shoal/status`: what `shoal status` prints — the node's peers,
//! what it holds, what it is fetching, and bytes by where they went or came
//! from. JSON; fields may be added, never renamed.

use std::sync::atomic::Ordering;

use axum::Json;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use serde_json::json;

use super::RegistryState;
use super::error::RegistryError;

pub async fn status(State(state): State<RegistryState>) -> Response {
    match collect(&state).await {
        Ok(body) => Json(body).into_response(),
        Err(e) => e.into_response(),
    }
}

async fn collect(state: &RegistryState) -> Result<serde_json::Value, RegistryError> {
    let blobs = state.store.list_blobs()?;
    let bytes_stored: u64 = blobs.iter().map(|b| b.size).sum();
    let (peer_id, peers, listen, downloads) = match &state.fetcher {
        Some(fetcher) => {
            let info = fetcher.network().info().await.ok();
            let downloads: Vec<serde_json::Value> = fetcher
                .downloads()
                .list()
                .into_iter()
                .map(|(digest, p)| {
                    json!({
                        "digest": digest.to_string(),
                        "size": p.size,
                        "streamable": p.streamable,
                        "source": p.source,
                    })
                })
                .collect();
            let (peers, listen) = info.map_or((0, Vec::new()), |i| {
                let listen: Vec<String> = i.listen_addrs.iter().map(ToString::to_string).collect();
                (i.connected_peers, listen)
            });
            (
                Some(fetcher.network().peer_id().to_string()),
                peers,
                listen,
                downloads,
            )
        }
        None => (None, 0, Vec::new(), Vec::new()),
    };
    let m = &state.metrics;
    let load = |c: &std::sync::atomic::AtomicU64| c.load(Ordering::Relaxed);
    Ok(json!({
        "peer_id": peer_id,
        "connected_peers": peers,
        "peers": [],
        // Where peers reach this node: with `/p2p/<peer_id>` appended, a
        // bootstrap address (the port is the real one when `tcp/0` was asked).
        "p2p_listen": listen,
        "blobs": blobs.len(),
        "bytes_stored": bytes_stored,
        "downloads": downloads,
        "bytes": {
            "from_peers": load(&m.p2p_bytes_received_total),
            "to_peers": load(&m.p2p_bytes_sent_total),
            "from_upstream": load(&m.upstream_bytes_received_total),
        },
        "upstream": state.mirror.as_ref().map(|m| m.client().default_host().to_owned()),
    }))
}
