//! The emulated site: namespaces, veth pairs, the bridge and the shapers.
//! Dropping a [`Lab`] deletes all of it, with any process still inside.

use std::net::Ipv4Addr;

use super::cmd;
use super::names::{RunNames, delete_namespace};
use super::params::{STANDARD_MTU, Site};
use super::shaping::shape_egress;

/// The device name of every host's and the origin's link, inside its own
/// namespace (names only need to be unique per namespace).
pub const LINK: &str = "eth0";
const BRIDGE: &str = "br0";
const PREFIX_LEN: u8 = 16;

/// The largest site [`host_ip`] can number.
pub const MAX_HOSTS: usize = 250 * 250;

/// One emulated machine.
#[derive(Debug, Clone)]
pub struct Host {
    pub index: usize,
    pub ns: String,
    pub ip: Ipv4Addr,
}

#[derive(Debug)]
pub struct Lab {
    pub names: RunNames,
    pub origin: Host,
    pub hosts: Vec<Host>,
    /// Every namespace made so far, in order, so a half-built lab is
    /// removed as completely as a whole one.
    made: Vec<String>,
}

pub fn origin_ip() -> Ipv4Addr {
    Ipv4Addr::new(10, 77, 0, 1)
}

/// Host `i`'s address: 10.77.1.1, 10.77.1.2, … in one /16 with the origin.
pub fn host_ip(i: usize) -> Ipv4Addr {
    Ipv4Addr::new(10, 77, 1 + (i / 250) as u8, 1 + (i % 250) as u8)
}

impl Lab {
    /// Builds the site; on an error everything made so far is removed.
    pub fn build(names: RunNames, site: &Site) -> anyhow::Result<Lab> {
        anyhow::ensure!(
            (1..=MAX_HOSTS).contains(&site.hosts),
            "between 1 and {MAX_HOSTS} hosts, not {}",
            site.hosts
        );
        let mut lab = Lab {
            origin: Host {
                index: usize::MAX,
                ns: names.origin(),
                ip: origin_ip(),
            },
            hosts: (0..site.hosts)
                .map(|i| Host {
                    index: i,
                    ns: names.host(i),
                    ip: host_ip(i),
                })
                .collect(),
            names,
            made: Vec::new(),
        };
        let switch = lab.names.switch();
        lab.add_namespace(&switch)?;
        cmd::run(
            "ip",
            &[
                "-n",
                &switch,
                "link",
                "add",
                BRIDGE,
                "type",
                "bridge",
                "stp_state",
                "0",
            ],
        )?;
        cmd::run("ip", &["-n", &switch, "link", "set", BRIDGE, "up"])?;
        // A switch forwards frames without filtering them. With Docker
        // installed, br_netfilter is loaded and would pass every bridged
        // packet through the switch namespace's (empty) iptables hooks
        // (about 2% of all CPU samples in a profile of N = 16 at 100
        // Mbit/s). The keys exist only while the module is loaded.
        if std::path::Path::new("/proc/sys/net/bridge").exists() {
            sysctl(
                &switch,
                &[
                    "net.bridge.bridge-nf-call-iptables=0",
                    "net.bridge.bridge-nf-call-ip6tables=0",
                    "net.bridge.bridge-nf-call-arptables=0",
                ],
            )?;
        }

        let rates = site.rates;
        let origin = lab.origin.clone();
        lab.add_namespace(&origin.ns)?;
        // The uplink is slow both ways: shaped to U0 at both ends.
        // The origin's link keeps Ethernet's MTU whatever the hosts' is: the
        // bridge forwards between ports of different MTUs, and TCP's MSS
        // keeps each connection to the smaller.
        lab.attach(
            &origin,
            "origin",
            rates.origin_mbit,
            rates.origin_mbit,
            STANDARD_MTU,
        )?;
        for host in lab.hosts.clone() {
            lab.add_namespace(&host.ns)?;
            lab.attach(
                &host,
                &format!("h{}", host.index),
                rates.up_mbit,
                rates.down_mbit,
                site.lan_mtu,
            )?;
        }
        Ok(lab)
    }

    pub fn switch(&self) -> String {
        self.names.switch()
    }

    fn add_namespace(&mut self, ns: &str) -> anyhow::Result<()> {
        cmd::run("ip", &["netns", "add", ns])?;
        self.made.push(ns.to_owned());
        cmd::run("ip", &["-n", ns, "link", "set", "lo", "up"])?;
        // IPv6 router solicitations and MLD reports would add their bytes
        // to the link counters; nothing here uses IPv6.
        if let Err(e) = sysctl(
            ns,
            &[
                "net.ipv6.conf.all.disable_ipv6=1",
                "net.ipv6.conf.default.disable_ipv6=1",
            ],
        ) {
            eprintln!("IPv6 stays on in {ns}: {e:#}");
        }
        Ok(())
    }

    /// Joins `machine` to the bridge through a veth pair: its end is `eth0`
    /// sending at `up_mbit`, the switch's end is `port` sending at
    /// `down_mbit`, both with frames of `mtu`.
    fn attach(
        &mut self,
        machine: &Host,
        port: &str,
        up_mbit: f64,
        down_mbit: f64,
        mtu: u32,
    ) -> anyhow::Result<()> {
        let switch = self.switch();
        cmd::run(
            "ip",
            &[
                "link",
                "add",
                "name",
                LINK,
                "netns",
                &machine.ns,
                "type",
                "veth",
                "peer",
                "name",
                port,
                "netns",
                &switch,
            ],
        )?;
        cmd::run(
            "ip",
            &["-n", &switch, "link", "set", port, "master", BRIDGE, "up"],
        )?;
        let addr = format!("{}/{PREFIX_LEN}", machine.ip);
        cmd::run(
            "ip",
            &["-n", &machine.ns, "addr", "add", &addr, "dev", LINK],
        )?;
        cmd::run("ip", &["-n", &machine.ns, "link", "set", LINK, "up"])?;
        if mtu != STANDARD_MTU {
            let mtu = mtu.to_string();
            cmd::run("ip", &["-n", &machine.ns, "link", "set", LINK, "mtu", &mtu])?;
            cmd::run("ip", &["-n", &switch, "link", "set", port, "mtu", &mtu])?;
        }
        shape_egress(&machine.ns, LINK, up_mbit)?;
        shape_egress(&switch, port, down_mbit)?;
        Ok(())
    }

    /// Deletes every namespace this lab made (idempotent).
    pub fn teardown(&mut self) {
        while let Some(ns) = self.made.pop() {
            delete_namespace(&ns);
        }
    }
}

/// Sets kernel parameters (`key=value`) inside namespace `ns`.
fn sysctl(ns: &str, settings: &[&str]) -> anyhow::Result<()> {
    let mut args = vec!["netns", "exec", ns, "sysctl", "-qw"];
    args.extend_from_slice(settings);
    cmd::run("ip", &args)?;
    Ok(())
}

impl Drop for Lab {
    fn drop(&mut self) {
        self.teardown();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts_are_numbered_without_colliding_with_the_origin() {
        assert_eq!(host_ip(0), Ipv4Addr::new(10, 77, 1, 1));
        assert_eq!(host_ip(249), Ipv4Addr::new(10, 77, 1, 250));
        assert_eq!(host_ip(250), Ipv4Addr::new(10, 77, 2, 1));
        assert_eq!(host_ip(MAX_HOSTS - 1), Ipv4Addr::new(10, 77, 250, 250));
        assert_ne!(host_ip(0), origin_ip());
    }
}
