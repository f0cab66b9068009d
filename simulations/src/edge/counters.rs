//! Bytes through a link, from the kernel's interface counters (`ip -s`),
//! headers included: what the link carried, not what the application sent.

use anyhow::Context;
use serde::Deserialize;

use super::cmd;

/// Counters of one interface, seen from inside its namespace.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LinkBytes {
    /// Sent by the machine the interface belongs to.
    pub tx: u64,
    /// Received by it.
    pub rx: u64,
}

impl LinkBytes {
    /// What moved between two readings.
    pub fn since(self, before: LinkBytes) -> LinkBytes {
        LinkBytes {
            tx: self.tx.saturating_sub(before.tx),
            rx: self.rx.saturating_sub(before.rx),
        }
    }
}

#[derive(Deserialize)]
struct Link {
    stats64: Stats,
}

#[derive(Deserialize)]
struct Stats {
    rx: Counter,
    tx: Counter,
}

#[derive(Deserialize)]
struct Counter {
    bytes: u64,
}

pub fn read(ns: &str, dev: &str) -> anyhow::Result<LinkBytes> {
    let json = cmd::run("ip", &["-n", ns, "-j", "-s", "link", "show", "dev", dev])?;
    parse(&json).with_context(|| format!("counters of {dev} in {ns}"))
}

fn parse(json: &str) -> anyhow::Result<LinkBytes> {
    let links: Vec<Link> = serde_json::from_str(json)?;
    let link = links.first().context("`ip -j -s link` listed nothing")?;
    Ok(LinkBytes {
        tx: link.stats64.tx.bytes,
        rx: link.stats64.rx.bytes,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_iproute2_json() {
        let json = r#"[{"ifname":"eth0","stats64":{"rx":{"bytes":12,"packets":1},"tx":{"bytes":34,"packets":2}}}]"#;
        let b = parse(json).expect("parse");
        assert_eq!(b, LinkBytes { tx: 34, rx: 12 });
        assert_eq!(
            LinkBytes { tx: 40, rx: 20 }.since(b),
            LinkBytes { tx: 6, rx: 8 }
        );
    }
}
