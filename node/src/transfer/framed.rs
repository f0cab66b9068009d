//! Reading and writing protocol frames on a stream, with a bounded buffer.

use futures_util::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use shoal_protocol::wire::{Message, WireError, decode_frame, encode_frame};

#[derive(Debug, thiserror::Error)]
pub enum FrameError {
    #[error("stream: {0}")]
    Io(#[from] std::io::Error),
    #[error("peer sent a malformed frame: {0}")]
    Wire(#[from] WireError),
    #[error("stream closed")]
    Closed,
}

/// Reads frames from one stream; the buffer never holds more than one frame
/// plus one read (frames are size-checked before they are buffered whole).
#[derive(Debug, Default)]
pub struct FrameReader {
    buf: Vec<u8>,
}

impl FrameReader {
    pub async fn next<S: AsyncRead + Unpin>(
        &mut self,
        stream: &mut S,
    ) -> Result<Message, FrameError> {
        let mut chunk = vec![0u8; 256 * 1024];
        loop {
            if let Some((msg, used)) = decode_frame(&self.buf)? {
                self.buf.drain(..used);
                return Ok(msg);
            }
            let n = stream.read(&mut chunk).await?;
            if n == 0 {
                return Err(FrameError::Closed);
            }
            self.buf.extend_from_slice(&chunk[..n]);
        }
    }
}

pub async fn write<S: AsyncWrite + Unpin>(stream: &mut S, msg: &Message) -> Result<(), FrameError> {
    stream.write_all(&encode_frame(msg)).await?;
    stream.flush().await?;
    Ok(())
}
