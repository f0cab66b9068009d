//! The node's configuration file (TOML), with defaults and validation.
//!
//! The CLI reads this, lays flags and `SHOAL_*` variables over it, and calls
//! [`NodeConfig::validate`]. Each subsystem then gets only its own options
//! (`StoreOptions`, `RegistryLimits`, `Limits`), never the whole config.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

use crate::network::NetworkOptions;
use crate::registry::{DEFAULT_MAX_MANIFEST_BYTES, RegistryLimits};
use crate::store::StoreOptions;

/// Where the registry endpoint listens unless told otherwise: loopback only,
/// the port Docker users expect of a local registry.
pub const DEFAULT_REGISTRY_ADDR: &str = "127.0.0.1:5000";

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct NodeConfig {
    /// Where blobs, the index and the node's identity live.
    pub data_dir: PathBuf,
    pub registry: RegistryConfig,
    pub p2p: P2pConfig,
    /// Where content no peer has comes from (`[upstream]`).
    pub upstream: crate::upstream::UpstreamSettings,
    /// Bandwidth limits and upload slots (`[limits]`); unlimited by default.
    pub limits: crate::limits::LimitSettings,
    /// How long in-flight requests may run on after a shutdown signal.
    #[serde(with = "seconds")]
    pub shutdown_grace: Duration,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RegistryConfig {
    pub addr: SocketAddr,
    pub max_manifest_bytes: usize,
    pub max_concurrent_uploads: usize,
    pub max_page_size: usize,
}

/// The peer-to-peer side: where to listen, whom to ask first.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct P2pConfig {
    /// Off: the node is a plain local registry.
    pub enabled: bool,
    /// Multiaddrs to listen on.
    pub listen: Vec<String>,
    /// Multiaddrs of peers to join through, each ending in `/p2p/<peer id>`.
    pub bootstrap: Vec<String>,
    /// Find peers on the local network with mDNS.
    pub mdns: bool,
    /// Test double: serve transfers dishonestly (feature `test-liars`).
    #[cfg(feature = "test-liars")]
    pub liar: Option<crate::transfer::LiarMode>,
}

/// The p2p port peers expect by default (TCP and QUIC).
pub const DEFAULT_P2P_PORT: u16 = 4001;

impl Default for P2pConfig {
    fn default() -> P2pConfig {
        P2pConfig {
            enabled: true,
            listen: vec![
                format!("/ip4/0.0.0.0/tcp/{DEFAULT_P2P_PORT}"),
                format!("/ip4/0.0.0.0/udp/{DEFAULT_P2P_PORT}/quic-v1"),
            ],
            bootstrap: Vec::new(),
            mdns: true,
            #[cfg(feature = "test-liars")]
            liar: None,
        }
    }
}

impl Default for NodeConfig {
    fn default() -> NodeConfig {
        NodeConfig {
            data_dir: default_data_dir(),
            registry: RegistryConfig::default(),
            p2p: P2pConfig::default(),
            upstream: crate::upstream::UpstreamSettings::default(),
            limits: crate::limits::LimitSettings::default(),
            shutdown_grace: Duration::from_secs(10),
        }
    }
}

impl Default for RegistryConfig {
    fn default() -> RegistryConfig {
        let limits = RegistryLimits::default();
        RegistryConfig {
            addr: DEFAULT_REGISTRY_ADDR
                .parse()
                .unwrap_or_else(|_| SocketAddr::from(([127, 0, 0, 1], 5000))),
            max_manifest_bytes: DEFAULT_MAX_MANIFEST_BYTES,
            max_concurrent_uploads: limits.max_concurrent_uploads,
            max_page_size: limits.max_page_size,
        }
    }
}

/// `$XDG_DATA_HOME/shoal`, else `~/.local/share/shoal`, else `./shoal-data`.
pub fn default_data_dir() -> PathBuf {
    if let Some(xdg) = std::env::var_os("XDG_DATA_HOME").filter(|v| !v.is_empty()) {
        return PathBuf::from(xdg).join("shoal");
    }
    if let Some(home) = std::env::var_os("HOME").filter(|v| !v.is_empty()) {
        return PathBuf::from(home).join(".local/share/shoal");
    }
    PathBuf::from("shoal-data")
}

/// A configuration that cannot work.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{field} must be {requirement}")]
    Invalid {
        field: &'static str,
        requirement: &'static str,
    },
    #[error("upstream: {0}")]
    Upstream(#[from] crate::upstream::UpstreamConfigError),
    #[error("{field}: {value:?} is not a multiaddr: {reason}")]
    Multiaddr {
        field: &'static str,
        value: String,
        reason: String,
    },
}

fn parse_addrs(
    field: &'static str,
    values: &[String],
) -> Result<Vec<libp2p::Multiaddr>, ConfigError> {
    values
        .iter()
        .map(|v| {
            v.parse()
                .map_err(|e: libp2p::multiaddr::Error| ConfigError::Multiaddr {
                    field,
                    value: v.clone(),
                    reason: e.to_string(),
                })
        })
        .collect()
}

impl NodeConfig {
    pub fn validate(&self) -> Result<(), ConfigError> {
        let positive = |v: usize, field| {
            if v == 0 {
                Err(ConfigError::Invalid {
                    field,
                    requirement: "at least 1",
                })
            } else {
                Ok(())
            }
        };
        positive(
            self.registry.max_manifest_bytes,
            "registry.max_manifest_bytes",
        )?;
        positive(
            self.registry.max_concurrent_uploads,
            "registry.max_concurrent_uploads",
        )?;
        positive(self.registry.max_page_size, "registry.max_page_size")?;
        self.network_options()?;
        self.upstream.validate()?;
        self.limits
            .check()
            .map_err(|(field, requirement)| ConfigError::Invalid { field, requirement })?;
        if self.data_dir.as_os_str().is_empty() {
            return Err(ConfigError::Invalid {
                field: "data_dir",
                requirement: "a directory path",
            });
        }
        Ok(())
    }

    pub fn store_options(&self) -> StoreOptions {
        StoreOptions {
            root: self.data_dir.clone(),
        }
    }

    pub fn network_options(&self) -> Result<NetworkOptions, ConfigError> {
        Ok(NetworkOptions {
            listen: parse_addrs("p2p.listen", &self.p2p.listen)?,
            bootstrap: parse_addrs("p2p.bootstrap", &self.p2p.bootstrap)?,
            mdns: self.p2p.mdns,
            ..NetworkOptions::default()
        })
    }

    pub fn registry_limits(&self) -> RegistryLimits {
        RegistryLimits {
            max_manifest_bytes: self.registry.max_manifest_bytes,
            max_concurrent_uploads: self.registry.max_concurrent_uploads,
            max_page_size: self.registry.max_page_size,
        }
    }
}

/// Seconds as a float in the config file, up to a year (shared with the
/// `[upstream]` settings).
pub(crate) mod seconds {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer};

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        let secs = f64::deserialize(d)?;
        if !(0.0..=31_536_000.0).contains(&secs) {
            return Err(serde::de::Error::custom(
                "must be between 0 and 31536000 seconds (a year)",
            ));
        }
        Ok(Duration::from_secs_f64(secs))
    }
}
