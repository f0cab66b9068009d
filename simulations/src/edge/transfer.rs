//! A bare TCP transfer between two namespaces, to measure what a shaped
//! path really carries (`edge_bench send-bytes` / `recv-bytes`).

use std::net::SocketAddr;
use std::time::Instant;

use serde::{Deserialize, Serialize};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

pub const READY: &str = "ready";
const BUF: usize = 64 << 10;

/// Listens on `listen`, prints `ready`, sends `bytes` zero bytes to the
/// first connection and closes it.
pub async fn send(listen: SocketAddr, bytes: u64) -> anyhow::Result<()> {
    let listener = TcpListener::bind(listen).await?;
    println!("{READY}");
    let (mut stream, _) = listener.accept().await?;
    let buf = vec![0u8; BUF];
    let mut left = bytes;
    while left > 0 {
        let n = left.min(BUF as u64) as usize;
        stream.write_all(&buf[..n]).await?;
        left -= n as u64;
    }
    stream.shutdown().await?;
    Ok(())
}

/// What one receive measured.
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
pub struct Received {
    pub bytes: u64,
    /// From the first byte to the end of the stream (TCP's handshake and
    /// first round trip left out).
    pub seconds: f64,
}

impl Received {
    pub fn mbit_per_s(&self) -> f64 {
        self.bytes as f64 * 8.0 / 1e6 / self.seconds.max(1e-9)
    }
}

/// Connects to `addr` and reads until the sender closes.
pub async fn receive(addr: SocketAddr) -> anyhow::Result<Received> {
    let mut stream = TcpStream::connect(addr).await?;
    let mut buf = vec![0u8; BUF];
    let mut bytes = 0u64;
    let mut first = None;
    loop {
        let n = stream.read(&mut buf).await?;
        if n == 0 {
            break;
        }
        first.get_or_insert_with(Instant::now);
        bytes += n as u64;
    }
    Ok(Received {
        bytes,
        seconds: first.map_or(0.0, |f| f.elapsed().as_secs_f64()),
    })
}
