//! The edge-site benchmark: N machines behind one slow uplink all pull the
//! same image at the same moment, once straight from the origin registry
//! ("direct") and once each through its own shoal node ("shoal").
//!
//! The site is built on this machine out of network namespaces: one per
//! host, one for the origin registry, and a "switch" namespace whose Linux
//! bridge joins them. Every link is a veth pair with a `tc tbf` shaper on
//! the egress of each end, so each direction has its own rate:
//!
//! ```text
//!   origin ns ──(U0 both ways)── switch ns (bridge) ──(u up / d down)── host ns × N
//!   docker-registry                                                   client [+ shoal daemon]
//! ```
//!
//! Links carry Ethernet's 1500-byte frames; `--lan-mtu` gives the hosts'
//! links larger ones (the origin's keeps 1500) to see how much of a run's
//! CPU is the kernel's per-packet work. The bridge does not hand frames to
//! netfilter, as a switch would not.
//!
//! Everything that runs inside a namespace (the pull clients, the image
//! pusher, readiness probes, the shaping self-check) is this same binary
//! re-executed with `ip netns exec NS <exe> <internal subcommand>`, so no
//! code here changes its own thread's namespace.
//!
//! Cleanup: namespaces, and with them every veth and the bridge, are named
//! `shoaledge<pid>-<role>`, so a run that was SIGKILLed leaves names that
//! the next run recognises as dead (no `edge_bench` with that pid) and
//! sweeps, together with any process still inside them.

pub mod bench;
pub mod client;
pub mod cmd;
pub mod counters;
pub mod cpu;
pub mod image;
pub mod lab;
pub mod link_trace;
pub mod names;
pub mod nodes;
pub mod origin;
pub mod params;
pub mod plot;
pub mod preflight;
pub mod pullers;
pub mod report;
pub mod scenario;
pub mod selfcheck;
pub mod shaping;
pub mod smoke;
pub mod transfer;
