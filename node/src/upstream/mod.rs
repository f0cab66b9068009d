//! The client for upstream registries: where a node gets what no peer has.
//!
//! - [`settings`] says which registries and how to reach them (`[upstream]`
//!   in the config file, or `--upstream URL`).
//! - [`names`] says which registry and repository a client's name means, by
//!   Docker's and containerd's rules.
//! - [`UpstreamClient`] fetches manifests (capped, checked against their
//!   digest) and blobs (streamed, from an offset or as a range) over one
//!   pooled HTTP client, with anonymous-first auth (bearer tokens cached per
//!   repository, or basic), bounded retries on connection failures, 429 and
//!   5xx, and redirects that never carry the registry's credentials to
//!   another host.
//! - [`UpstreamError`] says what went wrong, naming the host, with the OCI
//!   code and status to answer a client with.
//!
//! Goals: a pull through shoal behaves like a pull from the upstream, fails
//! fast and clearly when the upstream cannot serve, and never hands out a
//! manifest that does not match its digest. Non-goals: pushing upstream,
//! listing tags upstream, the HTTP-date form of `Retry-After`.

mod auth;
mod blobs;
mod challenge;
mod client;
mod error;
mod manifests;
pub mod names;
mod retry;
pub mod settings;

pub use blobs::{BlobStream, UpstreamBlob};
pub use challenge::{Challenge, parse_challenges};
pub use client::UpstreamClient;
pub use error::{UpstreamError, Wanted};
pub use manifests::{MAX_MANIFEST_BYTES, ManifestHead, UpstreamManifest};
pub use names::{DOCKER_HUB, NameMapError, UpstreamRepo, upstream_repo};
pub use settings::{RegistrySettings, UpstreamConfigError, UpstreamSettings};
