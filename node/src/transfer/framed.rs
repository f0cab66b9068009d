//! Reading and writing protocol frames on a stream, with a bounded buffer.

use futures_util::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use shoal_protocol::wire::{Message, WireError, decode_frame, encode_frame, frame_len};

use crate::limits::{PACE_PIECE, RateLimiter};

#[derive(Debug, thiserror::Error)]
pub enum FrameError {
    #[error("stream: {0}")]
    Io(#[from] std::io::Error),
    #[error("peer sent a malformed frame: {0}")]
    Wire(#[from] WireError),
    /// A whole frame of a kind this build does not know (a newer peer's
    /// request): it was skipped, and the stream can go on.
    #[error("peer sent a frame of unknown kind {0}")]
    UnknownKind(u8),
    #[error("stream closed")]
    Closed,
}

/// Reads frames from one stream into one buffer that is reused: bytes are
/// read in place (not into a scratch buffer and copied), and the buffer is
/// zeroed only when it grows. It never holds more than one frame plus one
/// read (frames are size-checked before they are buffered whole).
#[derive(Debug, Default)]
pub struct FrameReader {
    /// `buf[start..filled]` was read and not yet decoded; the rest is room.
    buf: Vec<u8>,
    start: usize,
    filled: usize,
}

/// Room asked of a read beyond the frame being read, at least.
const READ_ROOM: usize = 64 * 1024;

impl FrameReader {
    pub async fn next<S: AsyncRead + Unpin>(
        &mut self,
        stream: &mut S,
    ) -> Result<Message, FrameError> {
        loop {
            match decode_frame(&self.buf[self.start..self.filled]) {
                Ok(Some((msg, used))) => {
                    self.consume(used);
                    return Ok(msg);
                }
                Ok(None) => {}
                // Its length is known and it is all here: step over it.
                Err(WireError::UnknownKind(kind)) => {
                    let len = frame_len(&self.buf[self.start..self.filled]).unwrap_or(0);
                    self.consume(4 + len);
                    return Err(FrameError::UnknownKind(kind));
                }
                Err(e) => return Err(e.into()),
            }
            self.make_room();
            let n = stream.read(&mut self.buf[self.filled..]).await?;
            if n == 0 {
                return Err(FrameError::Closed);
            }
            self.filled += n;
        }
    }

    fn consume(&mut self, used: usize) {
        self.start = (self.start + used).min(self.filled);
        if self.start == self.filled {
            (self.start, self.filled) = (0, 0);
        }
    }

    /// Moves the undecoded bytes to the front and makes the buffer big
    /// enough for the frame they begin (its length is known once its
    /// header is in, and was checked against the limit by `decode_frame`),
    /// or for one read.
    fn make_room(&mut self) {
        if self.start > 0 {
            self.buf.copy_within(self.start..self.filled, 0);
            self.filled -= self.start;
            self.start = 0;
        }
        let frame = frame_len(&self.buf[..self.filled]).map_or(0, |len| 4 + len);
        let wanted = frame.max(self.filled + READ_ROOM);
        if self.buf.len() < wanted {
            self.buf.resize(wanted, 0);
        }
    }
}

pub async fn write<S: AsyncWrite + Unpin>(stream: &mut S, msg: &Message) -> Result<(), FrameError> {
    stream.write_all(&encode_frame(msg)).await?;
    stream.flush().await?;
    Ok(())
}

/// Writes `msg` in [`PACE_PIECE`] pieces, each paid for at `limit` before
/// it is written and flushed: the link sees our bytes at the limit's pace
/// instead of a whole chunk at once. Unlimited, it is one write.
pub async fn write_paced<S: AsyncWrite + Unpin>(
    stream: &mut S,
    msg: &Message,
    limit: &RateLimiter,
) -> Result<(), FrameError> {
    if !limit.is_limited() {
        return write(stream, msg).await;
    }
    for piece in encode_frame(msg).chunks(PACE_PIECE) {
        limit.acquire(piece.len() as u64).await;
        stream.write_all(piece).await?;
        stream.flush().await?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::pin::Pin;
    use std::task::{Context, Poll};

    use tokio::time::{Duration, Instant};

    use super::*;
    use crate::limits::Rate;

    /// Records when each write happened and what it carried.
    #[derive(Debug)]
    struct Recorder {
        start: Instant,
        writes: Vec<(Duration, usize)>,
        bytes: Vec<u8>,
    }

    fn chunk(len: usize) -> Message {
        Message::Chunk {
            digest: shoal_protocol::Digest::sha256_of(b"x"),
            index: 3,
            bytes: vec![7u8; len],
        }
    }

    /// What `write_paced` wrote of `msg`, and when.
    async fn paced(msg: &Message, limit: &RateLimiter) -> Recorder {
        let mut out = Recorder {
            start: Instant::now(),
            writes: Vec::new(),
            bytes: Vec::new(),
        };
        write_paced(&mut out, msg, limit).await.expect("written");
        out
    }

    impl AsyncWrite for Recorder {
        fn poll_write(
            mut self: Pin<&mut Self>,
            _cx: &mut Context<'_>,
            buf: &[u8],
        ) -> Poll<std::io::Result<usize>> {
            let at = self.start.elapsed();
            self.writes.push((at, buf.len()));
            self.bytes.extend_from_slice(buf);
            Poll::Ready(Ok(buf.len()))
        }
        fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
            Poll::Ready(Ok(()))
        }
        fn poll_close(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
            Poll::Ready(Ok(()))
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_paced_chunk_leaves_in_small_pieces_at_the_rate() {
        // 1 MiB/s, so a 1 MiB chunk takes about a second after its first
        // piece; written at once it would all be in the link's queue at 0.
        let rate = 1024 * 1024;
        let limit = RateLimiter::paced(
            Rate::bytes_per_sec(rate).expect("valid rate"),
            PACE_PIECE as u64,
        );
        let burst = limit.burst_bytes().expect("limited");
        assert_eq!(burst, PACE_PIECE as u64, "the bucket holds one piece");
        let msg = chunk(1024 * 1024);
        let out = paced(&msg, &limit).await;

        // The bytes are the frame, whole and in order.
        let (decoded, used) = decode_frame(&out.bytes)
            .expect("valid frame")
            .expect("complete frame");
        assert_eq!(used, out.bytes.len());
        assert_eq!(decoded, msg);
        // No write larger than a piece, and no write earlier than the rate
        // allows: by time t at most burst + rate * t bytes were written.
        let mut sent = 0u64;
        for &(at, len) in &out.writes {
            assert!(len <= PACE_PIECE, "a write of {len} bytes");
            sent += len as u64;
            let allowed = burst + (rate as f64 * at.as_secs_f64()).ceil() as u64;
            assert!(sent <= allowed, "{sent} bytes out by {at:?}");
        }
        let (last, _) = out.writes.last().copied().expect("writes");
        let expected = (out.bytes.len() as u64 - burst) as f64 / rate as f64;
        assert!(
            (last.as_secs_f64() - expected).abs() < 0.01,
            "last piece at {last:?}, expected about {expected:.3} s"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn unlimited_pacing_writes_without_waiting() {
        let limit = RateLimiter::unlimited();
        let msg = chunk(300 * 1024);
        let out = paced(&msg, &limit).await;
        assert!(out.writes.iter().all(|&(at, _)| at == Duration::ZERO));
        assert_eq!(out.bytes, encode_frame(&msg));
    }

    /// A stream that hands out `bytes` in reads of the given sizes (the
    /// last size repeating), then ends.
    struct Pieces {
        bytes: Vec<u8>,
        at: usize,
        sizes: Vec<usize>,
        reads: usize,
    }

    impl Pieces {
        fn new(bytes: Vec<u8>, sizes: Vec<usize>) -> Pieces {
            Pieces {
                bytes,
                at: 0,
                sizes,
                reads: 0,
            }
        }
    }

    impl AsyncRead for Pieces {
        fn poll_read(
            mut self: Pin<&mut Self>,
            _cx: &mut Context<'_>,
            buf: &mut [u8],
        ) -> Poll<std::io::Result<usize>> {
            let size = *self
                .sizes
                .get(self.reads)
                .or(self.sizes.last())
                .unwrap_or(&1);
            let n = size.min(buf.len()).min(self.bytes.len() - self.at);
            let at = self.at;
            buf[..n].copy_from_slice(&self.bytes[at..at + n]);
            self.at += n;
            self.reads += 1;
            Poll::Ready(Ok(n))
        }
    }

    fn messages() -> Vec<Message> {
        let digest = shoal_protocol::Digest::sha256_of(b"x");
        vec![
            Message::GetHave {
                digest: digest.clone(),
            },
            chunk(300 * 1024),
            Message::NotFound {
                digest: digest.clone(),
            },
            chunk(1),
            chunk(70 * 1024),
            Message::GetPrefix { digest },
        ]
    }

    #[tokio::test]
    async fn frames_are_read_back_whatever_the_reads_cut() {
        let sent = messages();
        let bytes: Vec<u8> = sent.iter().flat_map(encode_frame).collect();
        for sizes in [
            vec![1],
            vec![3, 5, 7],
            vec![4096],
            vec![100_000],
            vec![bytes.len()],
            vec![2, bytes.len()],
        ] {
            let mut stream = Pieces::new(bytes.clone(), sizes.clone());
            let mut reader = FrameReader::default();
            for msg in &sent {
                let got = reader.next(&mut stream).await.expect("a frame");
                assert_eq!(&got, msg, "reads of {sizes:?}");
            }
            assert!(
                matches!(reader.next(&mut stream).await, Err(FrameError::Closed)),
                "the stream ended after the last frame"
            );
            // One frame plus one read at most, whatever came before.
            assert!(reader.buf.len() <= 300 * 1024 + 128 + READ_ROOM);
        }
    }

    #[tokio::test]
    async fn a_stream_ending_mid_frame_or_announcing_a_huge_one_is_an_error() {
        let frame = encode_frame(&chunk(1000));
        let mut cut = Pieces::new(frame[..frame.len() - 1].to_vec(), vec![333]);
        let mut reader = FrameReader::default();
        assert!(matches!(
            reader.next(&mut cut).await,
            Err(FrameError::Closed)
        ));

        let huge = ((shoal_protocol::wire::MAX_FRAME_LEN + 1) as u32).to_be_bytes();
        let mut liar = Pieces::new(huge.to_vec(), vec![4]);
        let mut reader = FrameReader::default();
        assert!(matches!(
            reader.next(&mut liar).await,
            Err(FrameError::Wire(_))
        ));
        assert!(
            reader.buf.len() <= READ_ROOM,
            "nothing was allocated for it"
        );
    }

    /// A frame of a kind this build does not know is stepped over whole:
    /// the frame after it reads as usual.
    #[tokio::test]
    async fn a_frame_of_an_unknown_kind_is_skipped() {
        let mut unknown = encode_frame(&Message::GetHave {
            digest: shoal_protocol::Digest::sha256_of(b"x"),
        });
        unknown[4] = 200;
        let next = Message::GetPrefix {
            digest: shoal_protocol::Digest::sha256_of(b"y"),
        };
        let bytes = [unknown, encode_frame(&next)].concat();
        for sizes in [vec![1], vec![bytes.len()]] {
            let mut stream = Pieces::new(bytes.clone(), sizes);
            let mut reader = FrameReader::default();
            assert!(matches!(
                reader.next(&mut stream).await,
                Err(FrameError::UnknownKind(200))
            ));
            assert_eq!(reader.next(&mut stream).await.expect("a frame"), next);
            assert!(matches!(
                reader.next(&mut stream).await,
                Err(FrameError::Closed)
            ));
        }
    }
}
