//! shoal's protocol core. Pure: no I/O, no async runtime, no clock of its own.
//!
//! Everything a node must agree on with other nodes or with OCI clients lives
//! here: content digests and their CID forms, repository names and tags, and
//! the verifiers that decide whether bytes are what they claim to be.

pub mod chain;
pub mod chunk;
pub mod cid;
pub mod digest;
pub mod manifest;
pub mod name;
pub mod verify;
pub mod wire;

pub use cid::CidError;
pub use digest::{Algorithm, Digest, DigestError};
pub use name::{NameError, RepoName, Tag};
pub use verify::{DigestHasher, DigestMismatch, DigestVerifier};
