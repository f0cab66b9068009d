//! Timed HTTP GETs of a blob: time to first byte and throughput, with the
//! body drained (and hashed, to prove the bytes) and either dropped or
//! written to a file, as a pulling client keeps it.

use std::time::{Duration, Instant};

use futures_util::StreamExt;
use shoal_protocol::{Digest, DigestHasher};

/// One timed fetch.
#[derive(Debug, Clone, Copy)]
pub struct Fetch {
    /// From sending the request to the first body byte.
    pub ttfb: Duration,
    /// From sending the request to the last body byte.
    pub total: Duration,
    pub bytes: u64,
}

impl Fetch {
    pub fn mib_per_s(&self) -> f64 {
        self.bytes as f64 / (1024.0 * 1024.0) / self.total.as_secs_f64()
    }
}

/// GETs `url` and checks the body hashes to `digest` when `verify` is set
/// (hashing costs CPU on the client, so the throughput runs leave it off and
/// one separate run proves the bytes).
pub async fn fetch(
    client: &reqwest::Client,
    url: &str,
    digest: &Digest,
    verify: bool,
) -> anyhow::Result<Fetch> {
    fetch_into(client, url, digest, verify, None).await
}

/// GETs `url` as a pulling client does: the body hashed against `digest`
/// and written to a new file at `path`, synced to disk before the clock
/// stops (as a node syncs a blob it commits); the file is removed after.
/// The baseline a node's fetch, which stores what it fetches, compares
/// with besides the bare GET.
pub async fn fetch_to_file(
    client: &reqwest::Client,
    url: &str,
    digest: &Digest,
    path: &std::path::Path,
) -> anyhow::Result<Fetch> {
    let mut file = std::fs::File::create(path)?;
    let fetched = fetch_into(client, url, digest, true, Some(&mut file)).await;
    drop(file);
    let _ = std::fs::remove_file(path);
    fetched
}

async fn fetch_into(
    client: &reqwest::Client,
    url: &str,
    digest: &Digest,
    verify: bool,
    mut sink: Option<&mut std::fs::File>,
) -> anyhow::Result<Fetch> {
    use std::io::Write;

    let start = Instant::now();
    let resp = client.get(url).send().await?;
    anyhow::ensure!(resp.status().is_success(), "GET {url}: {}", resp.status());
    let mut stream = resp.bytes_stream();
    let mut ttfb = None;
    let mut bytes = 0u64;
    let mut hasher = verify.then(|| DigestHasher::new(digest.algorithm()));
    while let Some(chunk) = stream.next().await {
        let chunk = chunk?;
        if ttfb.is_none() && !chunk.is_empty() {
            ttfb = Some(start.elapsed());
        }
        bytes += chunk.len() as u64;
        if let Some(h) = hasher.as_mut() {
            h.update(&chunk);
        }
        // Written in place: a benchmark client, one transfer at a time.
        if let Some(file) = sink.as_mut() {
            file.write_all(&chunk)?;
        }
    }
    if let Some(file) = sink {
        file.sync_all()?;
    }
    let total = start.elapsed();
    if let Some(h) = hasher {
        let actual = h.finish();
        anyhow::ensure!(
            &actual == digest,
            "GET {url}: body is {actual}, not {digest}"
        );
    }
    Ok(Fetch {
        ttfb: ttfb.unwrap_or(total),
        total,
        bytes,
    })
}

/// Pushes a blob with `POST` then a single `PUT ?digest=` carrying the whole
/// body: the one push both shoal and docker-registry 2.8 accept (the latter
/// has no monolithic `POST`).
pub async fn push_blob(
    client: &reqwest::Client,
    base: &str,
    repo: &str,
    data: bytes::Bytes,
) -> anyhow::Result<Digest> {
    let digest = Digest::sha256_of(&data);
    let resp = client
        .post(format!("{base}/v2/{repo}/blobs/uploads/"))
        .send()
        .await?;
    anyhow::ensure!(
        resp.status().as_u16() == 202,
        "start upload at {base}: {}",
        resp.status()
    );
    let location = resp
        .headers()
        .get("location")
        .and_then(|l| l.to_str().ok())
        .ok_or_else(|| anyhow::anyhow!("upload session at {base} without Location"))?;
    let mut url = if location.starts_with("http") {
        location.to_owned()
    } else {
        format!("{base}{location}")
    };
    url.push(if url.contains('?') { '&' } else { '?' });
    url.push_str(&format!("digest={digest}"));
    let resp = client
        .put(url)
        .header("content-type", "application/octet-stream")
        .body(data)
        .send()
        .await?;
    anyhow::ensure!(
        resp.status().as_u16() == 201,
        "push to {base}: {}",
        resp.status()
    );
    Ok(digest)
}

/// Median and 99th percentile of a sample (sorted in place).
pub fn percentiles(sample: &mut [Duration]) -> (Duration, Duration) {
    sample.sort();
    if sample.is_empty() {
        return (Duration::ZERO, Duration::ZERO);
    }
    let at = |q: f64| sample[((sample.len() - 1) as f64 * q).round() as usize];
    (at(0.5), at(0.99))
}

/// GETs `path` from `addr` over a plain HTTP/1.1 connection and drops the
/// body in the kernel (`recv` with `MSG_TRUNC` copies nothing to user space),
/// so the client costs as little CPU as a TCP receiver can: what is measured
/// is the server, not the client's copies. Blocking; run it on its own thread.
pub fn fetch_discard(addr: std::net::SocketAddr, path: &str) -> anyhow::Result<Fetch> {
    use std::io::{Read, Write};
    use std::mem::MaybeUninit;

    let start = Instant::now();
    let mut conn = std::net::TcpStream::connect(addr)?;
    conn.set_nodelay(true)?;
    write!(
        conn,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )?;
    // Read the head with ordinary reads; whatever body bytes came with it
    // are counted, the rest is dropped by the kernel.
    let mut head = Vec::with_capacity(4096);
    let mut buf = [0u8; 4096];
    let end = loop {
        let n = conn.read(&mut buf)?;
        anyhow::ensure!(n > 0, "GET {path}: connection closed before the headers");
        head.extend_from_slice(&buf[..n]);
        if let Some(at) = head.windows(4).position(|w| w == b"\r\n\r\n") {
            break at + 4;
        }
        anyhow::ensure!(head.len() < 64 * 1024, "GET {path}: headers over 64 KiB");
    };
    let ttfb = start.elapsed();
    let text = String::from_utf8_lossy(&head[..end]).to_ascii_lowercase();
    anyhow::ensure!(
        text.starts_with("http/1.1 200") || text.starts_with("http/1.0 200"),
        "GET {path}: {}",
        text.lines().next().unwrap_or_default()
    );
    let len: u64 = text
        .lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .and_then(|v| v.trim().parse().ok())
        .ok_or_else(|| anyhow::anyhow!("GET {path}: no Content-Length"))?;
    let mut got = (head.len() - end) as u64;
    let sock = socket2::SockRef::from(&conn);
    let mut sink = vec![MaybeUninit::<u8>::uninit(); 4 << 20];
    while got < len {
        let want = ((len - got) as usize).min(sink.len());
        let n = sock.recv_with_flags(&mut sink[..want], libc::MSG_TRUNC)?;
        anyhow::ensure!(n > 0, "GET {path}: body ended at {got} of {len} bytes");
        got += n as u64;
    }
    Ok(Fetch {
        ttfb,
        total: start.elapsed(),
        bytes: got,
    })
}
