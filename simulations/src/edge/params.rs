//! The site being emulated, and the fluid lower bound on how fast any
//! distribution scheme could get the image to every host.

/// Link rates in Mbit/s (10^6 bits per second, as `tc` counts them).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Rates {
    /// The origin's uplink: U0.
    pub origin_mbit: f64,
    /// What each host can upload: u.
    pub up_mbit: f64,
    /// What each host can download: d.
    pub down_mbit: f64,
}

/// Ethernet's MTU: every link of the site has it unless asked otherwise.
pub const STANDARD_MTU: u32 = 1500;

/// N hosts behind one uplink.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Site {
    pub hosts: usize,
    pub rates: Rates,
    /// The MTU of the hosts' links to the switch. The origin's link keeps
    /// [`STANDARD_MTU`], so upstream traffic always has Ethernet's header
    /// overhead; a larger LAN MTU (jumbo frames) only changes how many
    /// packets — and so how much kernel work on this machine's two cores —
    /// the traffic between hosts takes.
    pub lan_mtu: u32,
}

fn bytes_per_s(mbit: f64) -> f64 {
    mbit * 1e6 / 8.0
}

/// T* = max(S/U0, N·S/(U0 + N·u), S/d): the origin must send every byte
/// at least once, all N copies must cross some uplink (the origin's or a
/// host's), and each host must receive the whole image. No scheme that
/// moves bytes as a fluid beats it; real ones pay for latency, protocol
/// overhead and discrete chunks on top.
pub fn lower_bound_s(image_bytes: u64, site: &Site) -> f64 {
    let s = image_bytes as f64;
    let n = site.hosts as f64;
    let u0 = bytes_per_s(site.rates.origin_mbit);
    let u = bytes_per_s(site.rates.up_mbit);
    let d = bytes_per_s(site.rates.down_mbit);
    (s / u0).max(n * s / (u0 + n * u)).max(s / d)
}

/// How long the direct scenario needs at least: N copies through U0 (or
/// one host's download, if that is slower).
pub fn direct_bound_s(image_bytes: u64, site: &Site) -> f64 {
    let s = image_bytes as f64;
    (site.hosts as f64 * s / bytes_per_s(site.rates.origin_mbit))
        .max(s / bytes_per_s(site.rates.down_mbit))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn site(hosts: usize, origin_mbit: f64, up_mbit: f64, down_mbit: f64) -> Site {
        Site {
            hosts,
            rates: Rates {
                origin_mbit,
                up_mbit,
                down_mbit,
            },
            lan_mtu: STANDARD_MTU,
        }
    }

    const S: u64 = 10_000_000; // 80 Mbit

    #[test]
    fn a_slow_uplink_bounds_at_one_copy() {
        // 80 Mbit through 10 Mbit: 8 s; peers could share the rest.
        assert!((lower_bound_s(S, &site(4, 10.0, 100.0, 100.0)) - 8.0).abs() < 1e-9);
    }

    #[test]
    fn slow_peer_uplinks_bound_the_aggregate() {
        // N·S/(U0 + N·u) = 4·80/(10 + 4·1) = 22.86 s > S/U0 = 8 s.
        let t = lower_bound_s(S, &site(4, 10.0, 1.0, 100.0));
        assert!((t - 320.0 / 14.0).abs() < 1e-9);
    }

    #[test]
    fn a_slow_download_bounds_each_host() {
        assert!((lower_bound_s(S, &site(4, 100.0, 100.0, 8.0)) - 10.0).abs() < 1e-9);
    }

    #[test]
    fn direct_sends_n_copies() {
        assert!((direct_bound_s(S, &site(4, 10.0, 100.0, 100.0)) - 32.0).abs() < 1e-9);
    }
}
