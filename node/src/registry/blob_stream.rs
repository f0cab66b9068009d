//! Streams a byte range of a blob file with read-ahead.
//!
//! A blocking thread reads the next chunks while hyper writes the current
//! one to the socket, so disk (page cache) copies and socket writes overlap
//! on different cores. The channel depth bounds memory per transfer to
//! `(READ_AHEAD + 1) * CHUNK` bytes.

use std::io::Read;

use bytes::Bytes;
use futures_util::Stream;
use tokio::sync::mpsc;

/// Bytes per read and per body frame. 4 MiB frames let one stream go twice
/// as fast as 1 or 2 MiB frames when the client is not the bottleneck
/// (`blob_serve`'s discarding client: 4,000-4,700 MiB/s against 2,600-2,800;
/// docs/benchmarks.md); memory per transfer stays at 12 MiB, and blobs
/// smaller than a frame get a buffer of their own size.
pub const CHUNK: usize = 4 * 1024 * 1024;
/// Chunks read ahead of the one being sent.
pub const READ_AHEAD: usize = 2;

/// Streams `len` bytes from `file` starting at its current position.
pub fn blob_stream(
    mut file: std::fs::File,
    len: u64,
) -> impl Stream<Item = std::io::Result<Bytes>> {
    let (tx, mut rx) = mpsc::channel::<std::io::Result<Bytes>>(READ_AHEAD);
    tokio::task::spawn_blocking(move || {
        let mut remaining = len;
        while remaining > 0 {
            let want = remaining.min(CHUNK as u64) as usize;
            // read_to_end fills spare capacity without zeroing it first: a
            // zeroed buffer would cost one more pass over every byte.
            let mut buf = Vec::with_capacity(want);
            match (&mut file).take(want as u64).read_to_end(&mut buf) {
                Ok(n) if n == want => {}
                Ok(_) => {
                    let err = std::io::Error::new(
                        std::io::ErrorKind::UnexpectedEof,
                        "blob file is shorter than its index entry",
                    );
                    let _ = tx.blocking_send(Err(err));
                    return;
                }
                Err(e) => {
                    let _ = tx.blocking_send(Err(e));
                    return;
                }
            }
            remaining -= want as u64;
            // The receiver is gone when the client disconnected: stop reading.
            if tx.blocking_send(Ok(Bytes::from(buf))).is_err() {
                return;
            }
        }
    });
    futures_util::stream::poll_fn(move |cx| rx.poll_recv(cx))
}
