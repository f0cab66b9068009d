//! One transfer stream to a peer: a request, then its reply, each bounded
//! in time.

use std::time::Duration;

use libp2p::{PeerId, StreamProtocol};
use shoal_protocol::wire::{Message, PROTOCOL_NAME};

use super::framed::{self, FrameError, FrameReader};
use crate::limits::RateLimiter;

/// How long one request may take before its peer counts as stalled.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// Tries to open a stream before the peer counts as unreachable.
const OPEN_ATTEMPTS: u32 = 3;

pub struct Session {
    stream: libp2p::Stream,
    reader: FrameReader,
}

impl Session {
    /// Opens a stream to `peer`. A refused open is tried again twice: a
    /// busy peer's libp2p-stream accept queue drops streams under a burst.
    pub async fn open(control: &mut libp2p_stream::Control, peer: PeerId) -> Option<Session> {
        for attempt in 0..OPEN_ATTEMPTS {
            if attempt > 0 {
                tokio::time::sleep(Duration::from_millis(20 * u64::from(attempt))).await;
            }
            match tokio::time::timeout(
                REQUEST_TIMEOUT,
                control.open_stream(peer, StreamProtocol::new(PROTOCOL_NAME)),
            )
            .await
            {
                Ok(Ok(stream)) => {
                    return Some(Session {
                        stream,
                        reader: FrameReader::default(),
                    });
                }
                Ok(Err(e)) => {
                    tracing::debug!(%peer, attempt, error = %e, "opening a stream failed")
                }
                Err(_) => return None,
            }
        }
        None
    }

    pub async fn ask(&mut self, request: &Message) -> Result<Message, FrameError> {
        let exchange = async {
            framed::write(&mut self.stream, request).await?;
            self.reader.next(&mut self.stream).await
        };
        tokio::time::timeout(REQUEST_TIMEOUT, exchange)
            .await
            .map_err(|_| FrameError::Io(std::io::ErrorKind::TimedOut.into()))?
    }
}

/// Asks `peer` for chunk `index` of `digest` on `session` (or a new
/// stream), paying for the bytes at `limit` (`[limits] peer_download`).
/// With `wait`, the peer may hold the request that long for a chunk it
/// does not have yet (`WaitChunk`). Returns the bytes, if it sent the chunk
/// asked for, and the stream, if it is still good for another request.
pub async fn ask_chunk(
    control: &mut libp2p_stream::Control,
    session: Option<Session>,
    peer: PeerId,
    digest: &shoal_protocol::Digest,
    index: u32,
    wait: Option<Duration>,
    limit: &RateLimiter,
) -> (Option<Vec<u8>>, Option<Session>) {
    let session = match session {
        Some(s) => Some(s),
        None => Session::open(control, peer).await,
    };
    let Some(mut session) = session else {
        return (None, None);
    };
    let asked = match wait {
        None => Message::GetChunk {
            digest: digest.clone(),
            index,
        },
        Some(wait) => Message::WaitChunk {
            digest: digest.clone(),
            index,
            wait_ms: u32::try_from(wait.as_millis()).unwrap_or(u32::MAX),
        },
    };
    match session.ask(&asked).await {
        Ok(Message::Chunk {
            digest: d,
            index: i,
            bytes,
        }) if d == *digest && i == index => {
            limit.acquire(bytes.len() as u64).await;
            (Some(bytes), Some(session))
        }
        Ok(_) => (None, Some(session)),
        Err(_) => (None, None),
    }
}
