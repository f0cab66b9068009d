//! Daemon settings in two steps: raw flags (with `SHOAL_*` variables), then
//! a validated `NodeConfig` made of defaults < config file < env < flags.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use anyhow::Context;
use clap::Args;
use shoal_node::config::NodeConfig;
use shoal_node::limits::Rate;

#[derive(Debug, Args)]
pub struct DaemonArgs {
    /// TOML configuration file; flags and SHOAL_* variables override it.
    #[arg(long, env = "SHOAL_CONFIG", value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Directory for blobs, the index and the node identity.
    #[arg(long, env = "SHOAL_DATA_DIR", value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
    /// Address of the OCI registry endpoint.
    #[arg(long, env = "SHOAL_REGISTRY_ADDR", value_name = "ADDR")]
    pub registry_addr: Option<SocketAddr>,
    /// Multiaddr to listen on for peers (repeatable; replaces the defaults).
    #[arg(
        long = "p2p-listen",
        env = "SHOAL_P2P_LISTEN",
        value_name = "MULTIADDR",
        value_delimiter = ','
    )]
    pub p2p_listen: Vec<String>,
    /// Peer to join the network through, ending in /p2p/<peer id> (repeatable).
    #[arg(
        long,
        env = "SHOAL_BOOTSTRAP",
        value_name = "MULTIADDR",
        value_delimiter = ','
    )]
    pub bootstrap: Vec<String>,
    /// Do not look for peers on the local network with mDNS.
    #[arg(long, env = "SHOAL_NO_MDNS")]
    pub no_mdns: bool,
    /// Run as a plain local registry, without the peer-to-peer network.
    #[arg(long, env = "SHOAL_NO_P2P")]
    pub no_p2p: bool,
    /// Default upstream registry for names without a registry host, e.g.
    /// https://registry-1.docker.io (an http:// URL allows plain HTTP to it).
    #[arg(long, env = "SHOAL_UPSTREAM", value_name = "URL")]
    pub upstream: Option<String>,
    /// Serve only local and peer content: no pull-through from registries.
    #[arg(long, env = "SHOAL_NO_UPSTREAM")]
    pub no_upstream: bool,
    /// How many of the nodes wanting a blob from upstream at once fetch a
    /// range of it each (1: one fetches, the others follow it).
    #[arg(long, env = "SHOAL_UPSTREAM_SPLIT", value_name = "N")]
    pub upstream_split: Option<usize>,
    /// Most bytes per second sent to peers, for the whole node: e.g.
    /// 100Mbit, 12MiB, or bytes per second (0: unlimited).
    #[arg(long, env = "SHOAL_PEER_UPLOAD", value_name = "RATE")]
    pub peer_upload: Option<Rate>,
    /// Most bytes per second received from peers (same units).
    #[arg(long, env = "SHOAL_PEER_DOWNLOAD", value_name = "RATE")]
    pub peer_download: Option<Rate>,
    /// Chunk uploads to peers at once, shared out per peer (default 16).
    #[arg(long, env = "SHOAL_UPLOAD_SLOTS", value_name = "N")]
    pub upload_slots: Option<usize>,
    /// Most bytes per second received from upstream registries.
    #[arg(long, env = "SHOAL_UPSTREAM_DOWNLOAD", value_name = "RATE")]
    pub upstream_download: Option<Rate>,
    /// Log filter in RUST_LOG syntax (e.g. "info,shoal_node=debug").
    #[arg(long, env = "RUST_LOG", value_name = "FILTER", default_value = "info")]
    pub log: String,
}

impl DaemonArgs {
    pub fn node_config(&self) -> anyhow::Result<NodeConfig> {
        let mut config = match &self.config {
            Some(path) => load_file(path)?,
            None => NodeConfig::default(),
        };
        if let Some(dir) = &self.data_dir {
            config.data_dir = dir.clone();
        }
        if let Some(addr) = self.registry_addr {
            config.registry.addr = addr;
        }
        if !self.p2p_listen.is_empty() {
            config.p2p.listen = self.p2p_listen.clone();
        }
        config.p2p.bootstrap.extend(self.bootstrap.iter().cloned());
        if self.no_mdns {
            config.p2p.mdns = false;
        }
        if self.no_p2p {
            config.p2p.enabled = false;
        }
        if let Some(url) = &self.upstream {
            config
                .upstream
                .set_default_url(url)
                .with_context(|| format!("--upstream {url}"))?;
        }
        if self.no_upstream {
            config.upstream.enabled = false;
        }
        if let Some(n) = self.upstream_split {
            config.upstream.split = n;
        }
        let limits = &mut config.limits;
        for (flag, field) in [
            (self.peer_upload, &mut limits.peer_upload),
            (self.peer_download, &mut limits.peer_download),
            (self.upstream_download, &mut limits.upstream_download),
        ] {
            if let Some(rate) = flag {
                *field = rate;
            }
        }
        if let Some(n) = self.upload_slots {
            limits.upload_slots = n;
        }
        config.validate().context("invalid configuration")?;
        Ok(config)
    }
}

fn load_file(path: &Path) -> anyhow::Result<NodeConfig> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("reading config file {}", path.display()))?;
    toml::from_str(&text).with_context(|| format!("parsing config file {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(config: Option<PathBuf>, data_dir: Option<&str>) -> DaemonArgs {
        DaemonArgs {
            config,
            data_dir: data_dir.map(PathBuf::from),
            registry_addr: None,
            p2p_listen: Vec::new(),
            bootstrap: Vec::new(),
            no_mdns: false,
            no_p2p: false,
            upstream: None,
            no_upstream: false,
            upstream_split: None,
            peer_upload: None,
            peer_download: None,
            upload_slots: None,
            upstream_download: None,
            log: "info".into(),
        }
    }

    #[test]
    fn flags_override_the_file_and_the_file_overrides_defaults() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("shoal.toml");
        std::fs::write(
            &path,
            "data_dir = \"/from/file\"\n[registry]\naddr = \"127.0.0.1:6000\"\nmax_page_size = 5\n",
        )
        .expect("write config");
        let c = args(Some(path.clone()), None).node_config().expect("valid");
        assert_eq!(c.data_dir, PathBuf::from("/from/file"));
        assert_eq!(c.registry.addr.port(), 6000);
        assert_eq!(c.registry.max_page_size, 5);
        let c = args(Some(path), Some("/from/flag"))
            .node_config()
            .expect("valid");
        assert_eq!(c.data_dir, PathBuf::from("/from/flag"));
    }

    #[test]
    fn the_upstream_section_and_flag() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("shoal.toml");
        std::fs::write(
            &path,
            "[upstream]\ntag_timeout = 1.5\ndefault_upstream = \"ghcr.io\"\n[[upstream.registries]]\nhost = \"ghcr.io\"\n",
        )
        .expect("write config");
        let c = args(Some(path.clone()), None).node_config().expect("valid");
        assert!(c.upstream.enabled);
        assert_eq!(c.upstream.default_upstream, "ghcr.io");
        assert_eq!(c.upstream.tag_timeout.as_millis(), 1500);
        std::fs::write(&path, "[upstream]\nno_such_key = 1\n").expect("write");
        let err = args(Some(path.clone()), None)
            .node_config()
            .expect_err("unknown key");
        assert!(format!("{err:#}").contains("no_such_key"), "{err:#}");
        let mut a = args(None, None);
        a.upstream = Some("http://127.0.0.1:5001".into());
        let c = a.node_config().expect("valid");
        assert_eq!(c.upstream.default_upstream, "127.0.0.1:5001");
        assert_eq!(c.upstream.split, 1);
        std::fs::write(&path, "[upstream]\nsplit = 4\n").expect("write");
        let c = args(Some(path.clone()), None).node_config().expect("valid");
        assert_eq!(c.upstream.split, 4);
        let mut a = args(Some(path), None);
        a.upstream_split = Some(0);
        let err = a.node_config().expect_err("split 0");
        assert!(format!("{err:#}").contains("upstream.split"), "{err:#}");
    }

    #[test]
    fn the_limits_section_and_flags() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("shoal.toml");
        std::fs::write(
            &path,
            "[limits]\npeer_upload = \"100Mbit\"\nupstream_download = \"2MiB\"\n",
        )
        .expect("write config");
        let c = args(Some(path.clone()), None).node_config().expect("valid");
        assert_eq!(c.limits.peer_upload.limit(), Some(12_500_000));
        assert_eq!(c.limits.peer_download, Rate::UNLIMITED);
        assert_eq!(c.limits.upstream_download.limit(), Some(2 << 20));
        let mut a = args(Some(path.clone()), None);
        a.peer_upload = Some("0".parse().expect("rate"));
        a.peer_download = Some("1Gbit".parse().expect("rate"));
        let c = a.node_config().expect("valid");
        assert_eq!(c.limits.peer_upload, Rate::UNLIMITED);
        assert_eq!(c.limits.peer_download.limit(), Some(125_000_000));
        std::fs::write(&path, "[limits]\npeer_download = \"10Mb\"\n").expect("write");
        let err = args(Some(path.clone()), None)
            .node_config()
            .expect_err("ambiguous unit");
        let err = format!("{err:#}");
        assert!(
            err.contains("peer_download") && err.contains("ambiguous"),
            "{err}"
        );
        std::fs::write(&path, "[limits]\nupload_slots = 0\n").expect("write");
        let err = args(Some(path.clone()), None)
            .node_config()
            .expect_err("no slots");
        assert!(
            format!("{err:#}").contains("limits.upload_slots"),
            "{err:#}"
        );
        // The flag overrides the file, and is checked the same way.
        std::fs::write(&path, "[limits]\nupload_slots = 8\n").expect("write");
        assert_eq!(
            args(Some(path.clone()), None)
                .node_config()
                .expect("valid")
                .limits
                .upload_slots,
            8
        );
        let mut a = args(Some(path.clone()), None);
        a.upload_slots = Some(2);
        assert_eq!(a.node_config().expect("valid").limits.upload_slots, 2);
        a.upload_slots = Some(0);
        let err = a.node_config().expect_err("no slots");
        assert!(
            format!("{err:#}").contains("limits.upload_slots"),
            "{err:#}"
        );
    }

    #[test]
    fn rate_flags_are_checked_by_clap() {
        use clap::Parser;
        #[derive(Debug, Parser)]
        struct Cli {
            #[command(flatten)]
            daemon: DaemonArgs,
        }
        let cli = Cli::try_parse_from(["shoal", "--peer-upload", "12MiB"]).expect("parses");
        assert_eq!(cli.daemon.peer_upload.and_then(Rate::limit), Some(12 << 20));
        let err = Cli::try_parse_from(["shoal", "--upstream-download", "lots"])
            .expect_err("not a rate")
            .to_string();
        assert!(err.contains("does not start with a number"), "{err}");
    }

    #[test]
    fn bad_files_are_refused_with_the_cause() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("shoal.toml");
        std::fs::write(&path, "[registry]\nmax_page_size = 0\n").expect("write");
        let err = args(Some(path.clone()), None)
            .node_config()
            .expect_err("invalid");
        assert!(format!("{err:#}").contains("max_page_size"), "{err:#}");
        std::fs::write(&path, "no_such_key = 1\n").expect("write");
        let err = args(Some(path.clone()), None)
            .node_config()
            .expect_err("unknown key");
        assert!(format!("{err:#}").contains("no_such_key"), "{err:#}");
        std::fs::write(&path, "[p2p]\nlisten = [\"not-a-multiaddr\"]\n").expect("write");
        let err = args(Some(path.clone()), None)
            .node_config()
            .expect_err("bad multiaddr");
        assert!(format!("{err:#}").contains("not-a-multiaddr"), "{err:#}");
        let err = args(Some(dir.path().join("missing.toml")), None)
            .node_config()
            .expect_err("missing file");
        assert!(format!("{err:#}").contains("missing.toml"), "{err:#}");
    }
}
