//! The line that ends a pull: how many bytes came from where, and how long
//! it all took.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::time::Duration;

use indicatif::HumanBytes;

use super::progress::seconds;
use super::source::Source;

/// Bytes pulled, by where the node got them.
#[derive(Debug, Default)]
pub struct Summary {
    blobs: usize,
    by_source: BTreeMap<Source, u64>,
}

impl Summary {
    pub fn add(&mut self, source: Source, bytes: u64) {
        self.blobs += 1;
        *self.by_source.entry(source).or_default() += bytes;
    }

    /// `pulled <what>: 3 blobs, 2.10 MiB in 0.15s (local 2.00 MiB, peers 100.00 KiB)`
    pub fn line(&self, what: &str, took: Duration) -> String {
        let total: u64 = self.by_source.values().sum();
        let mut line = format!(
            "pulled {what}: {} {}, {} in {}",
            self.blobs,
            if self.blobs == 1 { "blob" } else { "blobs" },
            HumanBytes(total),
            seconds(took)
        );
        let parts: Vec<String> = self
            .by_source
            .iter()
            .map(|(source, bytes)| format!("{source} {}", HumanBytes(*bytes)))
            .collect();
        if !parts.is_empty() {
            let _ = write!(line, " ({})", parts.join(", "));
        }
        line
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bytes_are_summed_by_source() {
        let mut summary = Summary::default();
        summary.add(Source::Peers, 1024);
        summary.add(Source::Local, 2 << 20);
        summary.add(Source::Peers, 1024);
        assert_eq!(
            summary.line("app:v1", Duration::from_millis(1500)),
            "pulled app:v1: 3 blobs, 2.00 MiB in 1.50s (local 2.00 MiB, peers 2.00 KiB)"
        );
        assert_eq!(
            Summary::default().line("x", Duration::ZERO),
            "pulled x: 0 blobs, 0 B in 0.00s"
        );
    }
}
