//! Which upstream registries the node may pull through, and how to reach
//! them: the `[upstream]` table of the config file, checked into a table of
//! [`Endpoint`]s the client uses.
//!
//! ```toml
//! [upstream]
//! default_upstream = "docker.io"
//!
//! [[upstream.registries]]
//! host = "ghcr.io"
//! username = "me"
//! password = "ghp_…"
//!
//! [[upstream.registries]]
//! host = "127.0.0.1:5001"
//! insecure_http = true          # endpoint defaults to http://127.0.0.1:5001
//! ```

use std::collections::HashMap;
use std::fmt;
use std::time::Duration;

use reqwest::Url;
use serde::Deserialize;

use super::error::UpstreamError;
use super::names::{DOCKER_HUB, canonical_host};

/// Docker Hub's registry API is not served at `https://docker.io`.
const DOCKER_HUB_ENDPOINT: &str = "https://registry-1.docker.io";

/// Most attempts a request may make (first try included) whatever the config
/// says, so a typo cannot make a pull retry for hours.
const MAX_RETRIES: u32 = 10;

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct UpstreamSettings {
    /// Off: only local and peer content is served, no pull-through.
    pub enabled: bool,
    /// How long resolving a tag upstream may take before the cached
    /// mapping (or a peer's) is used instead.
    #[serde(with = "crate::config::seconds")]
    pub tag_timeout: Duration,
    /// Oldest cached tag mapping used when the upstream is unreachable.
    #[serde(with = "crate::config::seconds")]
    pub max_stale_tag_age: Duration,
    /// The registry for names that do not say which one (Docker Engine's
    /// `registry-mirrors` only ever asks for Docker Hub images).
    pub default_upstream: String,
    /// Registries with settings of their own.
    pub registries: Vec<RegistrySettings>,
    /// Whether a name such as `quay.io/x/y` may reach a registry that is not
    /// listed (over HTTPS, anonymously). Off turns the node into a mirror of
    /// the listed registries only.
    pub allow_unlisted_hosts: bool,
    /// Time to establish a connection.
    #[serde(with = "crate::config::seconds")]
    pub connect_timeout: Duration,
    /// Time for a whole manifest or token request, for a blob response's
    /// headers, and for each read while a blob streams.
    #[serde(with = "crate::config::seconds")]
    pub request_timeout: Duration,
    /// Retries after a connection failure, a 429 or a 5xx (at most 10).
    pub retries: u32,
    /// How many of the nodes that want a blob from upstream at the same
    /// time fetch it, each a range of it (1 to 32). 1: one fetches and the
    /// rest follow it, which fills the uplink when a host downloads at
    /// least as fast as the uplink carries. Set it to about
    /// uplink / a host's download rate when hosts are slower, the same on
    /// every node of a site.
    pub split: usize,
}

impl Default for UpstreamSettings {
    fn default() -> UpstreamSettings {
        UpstreamSettings {
            enabled: true,
            tag_timeout: Duration::from_secs(3),
            max_stale_tag_age: Duration::from_secs(7 * 86_400),
            default_upstream: DOCKER_HUB.to_owned(),
            registries: Vec::new(),
            allow_unlisted_hosts: true,
            connect_timeout: Duration::from_secs(5),
            request_timeout: Duration::from_secs(30),
            retries: 3,
            split: 1,
        }
    }
}

/// One upstream registry's own settings.
#[derive(Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RegistrySettings {
    /// The name clients use: `docker.io`, `ghcr.io`, `127.0.0.1:5001`.
    pub host: String,
    /// Where its API is served; `https://<host>` by default
    /// (`http://<host>` with `insecure_http`), Docker Hub's is
    /// `https://registry-1.docker.io`.
    #[serde(default)]
    pub endpoint: Option<String>,
    /// Allow plain HTTP to this registry.
    #[serde(default)]
    pub insecure_http: bool,
    /// Credentials for basic auth and for its token service.
    #[serde(default)]
    pub username: Option<String>,
    #[serde(default)]
    pub password: Option<String>,
}

/// Passwords stay out of logs.
impl fmt::Debug for RegistrySettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RegistrySettings")
            .field("host", &self.host)
            .field("endpoint", &self.endpoint)
            .field("insecure_http", &self.insecure_http)
            .field("username", &self.username)
            .field("password", &self.password.as_ref().map(|_| "<redacted>"))
            .finish()
    }
}

/// Settings that cannot work.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UpstreamConfigError {
    #[error("upstream host {0:?} is not a registry host name")]
    InvalidHost(String),
    #[error("upstream host {0} is listed twice")]
    DuplicateHost(String),
    #[error("endpoint of upstream {host}: {value:?} is not a usable URL: {reason}")]
    InvalidEndpoint {
        host: String,
        value: String,
        reason: &'static str,
    },
    #[error("upstream {host} uses plain HTTP but insecure_http is not set for it")]
    HttpNotAllowed { host: String },
    #[error("upstream {host} has a password but no username")]
    PasswordWithoutUsername { host: String },
    #[error("upstream.{field} must be {requirement}")]
    Invalid {
        field: &'static str,
        requirement: &'static str,
    },
}

/// Credentials for one registry.
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    pub username: String,
    pub password: String,
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Credentials({}, <redacted>)", self.username)
    }
}

/// How to reach one registry, checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    /// The canonical host clients name it by.
    pub host: String,
    /// Base URL ending in `/`; API paths are joined onto it (`v2/…`).
    pub base: Url,
    pub credentials: Option<Credentials>,
}

/// The checked form of [`UpstreamSettings`].
#[derive(Debug, Clone)]
pub(crate) struct Endpoints {
    default_host: String,
    listed: HashMap<String, Endpoint>,
    allow_unlisted_hosts: bool,
}

impl UpstreamSettings {
    /// The settings for `shoal daemon --upstream URL`: that registry is the
    /// default upstream, and an `http://` URL allows plain HTTP to it.
    pub fn for_url(url: &str) -> Result<UpstreamSettings, UpstreamConfigError> {
        let mut settings = UpstreamSettings::default();
        settings.set_default_url(url)?;
        Ok(settings)
    }

    /// Lays `--upstream URL` over settings from the file: the URL's registry
    /// becomes the default, keeping any credentials listed for its host.
    pub fn set_default_url(&mut self, url: &str) -> Result<(), UpstreamConfigError> {
        let invalid = |reason| UpstreamConfigError::InvalidEndpoint {
            host: "--upstream".to_owned(),
            value: url.to_owned(),
            reason,
        };
        let parsed = Url::parse(url).map_err(|_| invalid("not a URL"))?;
        let authority = match (parsed.host_str(), parsed.port()) {
            (Some(h), Some(p)) => format!("{h}:{p}"),
            (Some(h), None) => h.to_owned(),
            (None, _) => return Err(invalid("it has no host")),
        };
        let host = canonical_host(&authority)
            .map_err(|_| UpstreamConfigError::InvalidHost(authority.clone()))?;
        parse_base(&host, url)?;
        let insecure_http = parsed.scheme() == "http";
        match self
            .registries
            .iter_mut()
            .find(|r| canonical_host(&r.host).is_ok_and(|h| h == host))
        {
            Some(entry) => {
                entry.endpoint = Some(url.to_owned());
                entry.insecure_http |= insecure_http;
            }
            None => self.registries.push(RegistrySettings {
                host: host.clone(),
                endpoint: Some(url.to_owned()),
                insecure_http,
                ..RegistrySettings::default()
            }),
        }
        self.default_upstream = host;
        Ok(())
    }

    pub fn validate(&self) -> Result<(), UpstreamConfigError> {
        if !(1..=32).contains(&self.split) {
            return Err(UpstreamConfigError::Invalid {
                field: "split",
                requirement: "from 1 to 32",
            });
        }
        self.endpoints().map(|_| ())
    }

    /// The retry count, capped.
    pub(crate) fn retries(&self) -> u32 {
        self.retries.min(MAX_RETRIES)
    }

    pub(crate) fn endpoints(&self) -> Result<Endpoints, UpstreamConfigError> {
        if self.connect_timeout.is_zero() || self.request_timeout.is_zero() {
            return Err(UpstreamConfigError::Invalid {
                field: "connect_timeout and request_timeout",
                requirement: "more than 0 seconds",
            });
        }
        let default_host = canonical_host(&self.default_upstream)
            .map_err(|_| UpstreamConfigError::InvalidHost(self.default_upstream.clone()))?;
        let mut listed = HashMap::new();
        for registry in &self.registries {
            let endpoint = registry.endpoint()?;
            if listed.contains_key(&endpoint.host) {
                return Err(UpstreamConfigError::DuplicateHost(endpoint.host));
            }
            listed.insert(endpoint.host.clone(), endpoint);
        }
        Ok(Endpoints {
            default_host,
            listed,
            allow_unlisted_hosts: self.allow_unlisted_hosts,
        })
    }
}

impl RegistrySettings {
    fn endpoint(&self) -> Result<Endpoint, UpstreamConfigError> {
        let host = canonical_host(&self.host)
            .map_err(|_| UpstreamConfigError::InvalidHost(self.host.clone()))?;
        let value = match &self.endpoint {
            Some(url) => url.clone(),
            None if self.insecure_http => format!("http://{host}"),
            None => default_endpoint(&host),
        };
        let base = parse_base(&host, &value)?;
        if base.scheme() == "http" && !self.insecure_http {
            return Err(UpstreamConfigError::HttpNotAllowed { host });
        }
        let credentials = match (&self.username, &self.password) {
            (Some(username), password) => Some(Credentials {
                username: username.clone(),
                password: password.clone().unwrap_or_default(),
            }),
            (None, Some(_)) => return Err(UpstreamConfigError::PasswordWithoutUsername { host }),
            (None, None) => None,
        };
        Ok(Endpoint {
            host,
            base,
            credentials,
        })
    }
}

fn default_endpoint(host: &str) -> String {
    if host == DOCKER_HUB {
        DOCKER_HUB_ENDPOINT.to_owned()
    } else {
        format!("https://{host}")
    }
}

fn parse_base(host: &str, value: &str) -> Result<Url, UpstreamConfigError> {
    let invalid = |reason| UpstreamConfigError::InvalidEndpoint {
        host: host.to_owned(),
        value: value.to_owned(),
        reason,
    };
    let mut url = Url::parse(value).map_err(|_| invalid("not a URL"))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(invalid("the scheme must be http or https"));
    }
    if url.host_str().is_none() {
        return Err(invalid("it has no host"));
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(invalid(
            "credentials go in username and password, not the URL",
        ));
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err(invalid("it must not have a query or fragment"));
    }
    // `v2/…` is joined onto the base; without the slash a path prefix would
    // be replaced instead of extended.
    if !url.path().ends_with('/') {
        let path = format!("{}/", url.path());
        url.set_path(&path);
    }
    Ok(url)
}

impl Endpoints {
    pub(crate) fn default_host(&self) -> &str {
        &self.default_host
    }

    /// How to reach `host` (already canonical), if it may be reached.
    pub(crate) fn get(&self, host: &str) -> Result<Endpoint, UpstreamError> {
        if let Some(endpoint) = self.listed.get(host) {
            return Ok(endpoint.clone());
        }
        if !self.allow_unlisted_hosts && host != self.default_host {
            return Err(UpstreamError::HostNotAllowed {
                host: host.to_owned(),
            });
        }
        let value = default_endpoint(host);
        let base = parse_base(host, &value).map_err(|e| UpstreamError::BadResponse {
            host: host.to_owned(),
            reason: e.to_string(),
        })?;
        Ok(Endpoint {
            host: host.to_owned(),
            base,
            credentials: None,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn endpoint(settings: &UpstreamSettings, host: &str) -> Endpoint {
        settings
            .endpoints()
            .expect("valid")
            .get(host)
            .expect("reachable")
    }

    #[test]
    fn defaults_reach_docker_hub_over_https() {
        let settings = UpstreamSettings::default();
        let endpoints = settings.endpoints().expect("valid");
        assert_eq!(endpoints.default_host(), "docker.io");
        assert_eq!(
            endpoint(&settings, "docker.io").base.as_str(),
            "https://registry-1.docker.io/"
        );
        assert_eq!(
            endpoint(&settings, "ghcr.io").base.as_str(),
            "https://ghcr.io/"
        );
    }

    #[test]
    fn an_upstream_url_becomes_the_default() {
        let settings = UpstreamSettings::for_url("http://127.0.0.1:5001").expect("valid");
        assert_eq!(settings.default_upstream, "127.0.0.1:5001");
        let e = endpoint(&settings, "127.0.0.1:5001");
        assert_eq!(e.base.as_str(), "http://127.0.0.1:5001/");
        assert_eq!(e.credentials, None);

        let mut settings = UpstreamSettings {
            registries: vec![RegistrySettings {
                host: "registry.example.com".into(),
                username: Some("me".into()),
                password: Some("secret".into()),
                ..RegistrySettings::default()
            }],
            ..UpstreamSettings::default()
        };
        settings
            .set_default_url("https://registry.example.com/mirror")
            .expect("valid");
        let e = endpoint(&settings, "registry.example.com");
        assert_eq!(e.base.as_str(), "https://registry.example.com/mirror/");
        assert_eq!(e.credentials.map(|c| c.username), Some("me".into()));
        assert_eq!(settings.registries.len(), 1);

        for bad in ["127.0.0.1:5001", "ftp://x", "http://"] {
            assert!(UpstreamSettings::for_url(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn from_toml() {
        let text = r#"
            default_upstream = "ghcr.io"
            connect_timeout = 2.5
            retries = 1
            allow_unlisted_hosts = false

            [[registries]]
            host = "ghcr.io"
            username = "me"
            password = "pw"

            [[registries]]
            host = "localhost:5001"
            insecure_http = true
        "#;
        let settings: UpstreamSettings = toml::from_str(text).expect("parses");
        assert_eq!(settings.connect_timeout, Duration::from_millis(2500));
        assert_eq!(settings.request_timeout, Duration::from_secs(30));
        assert_eq!(
            endpoint(&settings, "localhost:5001").base.as_str(),
            "http://localhost:5001/"
        );
        assert_eq!(
            endpoint(&settings, "ghcr.io").credentials,
            Some(Credentials {
                username: "me".into(),
                password: "pw".into()
            })
        );
        let endpoints = settings.endpoints().expect("valid");
        assert_eq!(
            endpoints.get("quay.io"),
            Err(UpstreamError::HostNotAllowed {
                host: "quay.io".into()
            })
        );
        assert!(!format!("{settings:?}").contains("pw\""));
        assert!(toml::from_str::<UpstreamSettings>("retries = 1\nbogus = 2").is_err());
        assert!(toml::from_str::<UpstreamSettings>("connect_timeout = -1").is_err());
    }

    #[test]
    fn bad_settings_are_refused() {
        let with = |registry: RegistrySettings| UpstreamSettings {
            registries: vec![registry],
            ..UpstreamSettings::default()
        };
        let http = with(RegistrySettings {
            host: "r.example".into(),
            endpoint: Some("http://r.example".into()),
            ..RegistrySettings::default()
        });
        assert_eq!(
            http.validate(),
            Err(UpstreamConfigError::HttpNotAllowed {
                host: "r.example".into()
            })
        );
        let in_url = with(RegistrySettings {
            host: "r.example".into(),
            endpoint: Some("https://u:p@r.example".into()),
            ..RegistrySettings::default()
        });
        assert!(matches!(
            in_url.validate(),
            Err(UpstreamConfigError::InvalidEndpoint { .. })
        ));
        let no_user = with(RegistrySettings {
            host: "r.example".into(),
            password: Some("pw".into()),
            ..RegistrySettings::default()
        });
        assert!(matches!(
            no_user.validate(),
            Err(UpstreamConfigError::PasswordWithoutUsername { .. })
        ));
        let twice = UpstreamSettings {
            registries: vec![
                RegistrySettings {
                    host: "docker.io".into(),
                    ..RegistrySettings::default()
                },
                RegistrySettings {
                    host: "index.docker.io".into(),
                    ..RegistrySettings::default()
                },
            ],
            ..UpstreamSettings::default()
        };
        assert_eq!(
            twice.validate(),
            Err(UpstreamConfigError::DuplicateHost("docker.io".into()))
        );
        let bad_host = with(RegistrySettings {
            host: "a b".into(),
            ..RegistrySettings::default()
        });
        assert!(matches!(
            bad_host.validate(),
            Err(UpstreamConfigError::InvalidHost(_))
        ));
        let zero = UpstreamSettings {
            request_timeout: Duration::ZERO,
            ..UpstreamSettings::default()
        };
        assert!(matches!(
            zero.validate(),
            Err(UpstreamConfigError::Invalid { .. })
        ));
    }
}
