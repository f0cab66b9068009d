//! Benchmarks and scale experiments for shoal. Each binary in `src/bin/`
//! measures shoal against a baseline in the same run and prints ratios.

pub mod edge;
pub mod http_fetch;
pub mod proc_stats;

/// A test-helper error (a `String`) as an `anyhow` error.
pub fn err(e: String) -> anyhow::Error {
    anyhow::anyhow!(e)
}

/// `len` random bytes: blobs no compression or dedup can shortcut.
pub fn random_bytes(len: usize) -> bytes::Bytes {
    use rand::RngCore;
    let mut v = vec![0u8; len];
    rand::rng().fill_bytes(&mut v);
    bytes::Bytes::from(v)
}
