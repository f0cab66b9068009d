//! The node's `/_shoal/status` JSON, read leniently (a field this client
//! does not know is ignored, one the node does not send is empty), and
//! printed for people.

use std::fmt::Write;

use indicatif::HumanBytes;
use serde::Deserialize;

/// Peer ids listed by name; the rest are counted.
const PEERS_LISTED: usize = 3;

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct NodeStatus {
    pub peer_id: Option<String>,
    /// Ids of connected peers (a node may send only their number).
    pub peers: Vec<String>,
    pub connected_peers: Option<u64>,
    /// Multiaddrs the node listens on for peers.
    pub p2p_listen: Vec<String>,
    pub blobs: u64,
    pub bytes_stored: u64,
    pub downloads: Vec<Download>,
    pub bytes: ByteCounters,
    pub upstream: Option<String>,
}

/// A blob the node is fetching now.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct Download {
    pub digest: String,
    /// Unknown until a peer or the upstream has said.
    pub size: Option<u64>,
    /// Bytes checked so far, which the node can already serve.
    pub streamable: u64,
    /// Where the bytes come from: "peers" or "upstream".
    pub source: Option<String>,
}

/// Byte counters; a node that does not count one leaves it out, and so
/// does the summary.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct ByteCounters {
    pub served_http: Option<u64>,
    pub from_peers: Option<u64>,
    pub from_upstream: Option<u64>,
    pub to_peers: Option<u64>,
}

impl ByteCounters {
    fn line(&self) -> String {
        let counters = [
            ("served over HTTP", self.served_http),
            ("from peers", self.from_peers),
            ("from upstream", self.from_upstream),
            ("to peers", self.to_peers),
        ];
        let known: Vec<String> = counters
            .iter()
            .filter_map(|(label, n)| n.map(|n| format!("{label} {}", HumanBytes(n))))
            .collect();
        if known.is_empty() {
            "not reported".into()
        } else {
            known.join(", ")
        }
    }
}

impl NodeStatus {
    pub fn render(&self, node: &str) -> String {
        let mut out = String::new();
        row(&mut out, "node", node);
        let peer_id = self.peer_id.as_deref();
        row(
            &mut out,
            "peer id",
            peer_id.unwrap_or("none (peer-to-peer is off)"),
        );
        if !self.p2p_listen.is_empty() {
            row(&mut out, "listening", &self.p2p_listen.join(", "));
        }
        row(&mut out, "peers", &self.peers_line());
        let stored = format!("{} ({})", self.blobs, HumanBytes(self.bytes_stored));
        row(&mut out, "blobs", &stored);
        row(
            &mut out,
            "upstream",
            self.upstream.as_deref().unwrap_or("none"),
        );
        row(
            &mut out,
            "fetching",
            &format!("{} blobs", self.downloads.len()),
        );
        for download in &self.downloads {
            let _ = writeln!(out, "  {}", download.line());
        }
        row(&mut out, "bytes", &self.bytes.line());
        out
    }

    fn peers_line(&self) -> String {
        let count = self
            .connected_peers
            .unwrap_or(0)
            .max(self.peers.len() as u64);
        let mut line = count.to_string();
        if !self.peers.is_empty() {
            let listed: Vec<&str> = self
                .peers
                .iter()
                .take(PEERS_LISTED)
                .map(String::as_str)
                .collect();
            let _ = write!(line, ": {}", listed.join(", "));
            let more = count.saturating_sub(PEERS_LISTED as u64);
            if more > 0 {
                let _ = write!(line, " and {more} more");
            }
        }
        line
    }
}

/// `label      value`, labels in one column.
pub fn row(out: &mut String, label: &str, value: &str) {
    let _ = writeln!(out, "{label:<10} {value}");
}

impl Download {
    /// `e3b0c44298fc  45% of 12.00 MiB from peers`, or the bytes so far
    /// when the size is not known yet.
    fn line(&self) -> String {
        let hex = self
            .digest
            .split_once(':')
            .map_or(self.digest.as_str(), |(_, hex)| hex);
        let short: String = hex.chars().take(12).collect();
        let mut line = match self.size {
            Some(size) if size > 0 => {
                let percent = self.streamable.min(size) * 100 / size;
                format!("{short}  {percent:>3}% of {}", HumanBytes(size))
            }
            _ => format!("{short}  {} so far", HumanBytes(self.streamable)),
        };
        if let Some(source) = &self.source {
            let _ = write!(line, " from {source}");
        }
        line
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_full_status_reads_as_rows() {
        let json = r#"{
            "peer_id": "12D3KooWself",
            "peers": ["p1", "p2", "p3", "p4", "p5"],
            "p2p_listen": ["/ip4/127.0.0.1/tcp/4001", "/ip4/127.0.0.1/udp/4001/quic-v1"],
            "blobs": 12, "bytes_stored": 3145728,
            "downloads": [
                {"digest": "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855", "size": 200, "streamable": 90, "source": "peers"},
                {"digest": "sha256:0123456789abcdef", "size": null, "streamable": 2048}
            ],
            "bytes": {"served_http": 1024, "from_peers": 2048, "from_upstream": 0, "to_peers": 1},
            "upstream": "registry-1.docker.io",
            "a_field_from_a_newer_node": true
        }"#;
        let status: NodeStatus = serde_json::from_str(json).expect("parses");
        let text = status.render("http://127.0.0.1:5000");
        let expected = "\
node       http://127.0.0.1:5000
peer id    12D3KooWself
listening  /ip4/127.0.0.1/tcp/4001, /ip4/127.0.0.1/udp/4001/quic-v1
peers      5: p1, p2, p3 and 2 more
blobs      12 (3.00 MiB)
upstream   registry-1.docker.io
fetching   2 blobs
  e3b0c44298fc   45% of 200 B from peers
  0123456789ab  2.00 KiB so far
bytes      served over HTTP 1.00 KiB, from peers 2.00 KiB, from upstream 0 B, to peers 1 B
";
        assert_eq!(text, expected);
    }

    #[test]
    fn missing_fields_are_empty() {
        let status: NodeStatus = serde_json::from_str(r#"{"peer_id": null}"#).expect("parses");
        let text = status.render("http://n");
        assert!(
            text.contains("peer id    none (peer-to-peer is off)"),
            "{text}"
        );
        assert!(text.contains("peers      0\n"), "{text}");
        assert!(!text.contains("listening"), "{text}");
        assert!(text.contains("fetching   0 blobs"), "{text}");
        assert!(text.contains("bytes      not reported\n"), "{text}");
    }

    /// The shape the node sends today: a peer count without ids, no
    /// `served_http`.
    #[test]
    fn a_peer_count_without_ids_and_missing_counters() {
        let json = r#"{"peer_id": "me", "connected_peers": 4, "peers": [],
            "bytes": {"from_peers": 1024, "to_peers": 0, "from_upstream": 2048}}"#;
        let status: NodeStatus = serde_json::from_str(json).expect("parses");
        let text = status.render("http://n");
        assert!(text.contains("peers      4\n"), "{text}");
        assert!(
            text.contains("bytes      from peers 1.00 KiB, from upstream 2.00 KiB, to peers 0 B\n"),
            "{text}"
        );
    }
}
