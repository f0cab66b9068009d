//! One transfer stream to a peer: a request, then its reply, each bounded
//! in time.

use std::time::Duration;

use libp2p::{PeerId, StreamProtocol};
use shoal_protocol::wire::{Message, PROTOCOL_NAME};

use super::framed::{self, FrameError, FrameReader};

/// How long one request may take before its peer counts as stalled.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

pub struct Session {
    stream: libp2p::Stream,
    reader: FrameReader,
}

impl Session {
    pub async fn open(control: &mut libp2p_stream::Control, peer: PeerId) -> Option<Session> {
        let stream = tokio::time::timeout(
            REQUEST_TIMEOUT,
            control.open_stream(peer, StreamProtocol::new(PROTOCOL_NAME)),
        )
        .await
        .ok()?
        .ok()?;
        Some(Session {
            stream,
            reader: FrameReader::default(),
        })
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
