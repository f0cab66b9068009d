//! shoal's protocol core. Pure: no I/O, no async runtime, no clock of its own.
//!
//! Everything a node must agree on with other nodes or with OCI clients lives
//! here: content digests and their CID forms, repository names, tags and
//! manifest references, and the verifiers that decide whether bytes are what
//! they claim to be.
//!
//! # Goals
//!
//! - **Validate at the edge, once.** A [`Digest`], [`RepoName`], [`Tag`] or
//!   [`Reference`] that exists has been checked against the OCI grammar, so
//!   the rest of shoal can use it in file names, database keys and DHT keys
//!   without checking again. Errors say which rule was broken and never echo
//!   more than a short prefix of hostile input.
//! - **One identity for content.** The OCI digest is the only trusted fact;
//!   its CIDv1 (codec raw) and multihash forms ([`mod@cid`]) are the same
//!   identity spelled for IPFS-style systems and for the DHT.
//! - **Trust nothing else.** Bytes from a peer are checked as they stream
//!   ([`DigestVerifier`]) and chunk by chunk against maps anchored in the
//!   digest ([`chain`]).
//! - **Testable by generation.** Everything here is a plain function or state
//!   machine, tested with property tests rather than sockets.
//!
//! # Non-goals
//!
//! - I/O, async, timers, retries or peer selection: those belong to the node.
//! - Digest algorithms beyond the OCI-registered `sha256` and `sha512`, or
//!   multihashes other than sha2-256/sha2-512. Content named by other hashes
//!   (access by any vendor's hash) is for later, on top of these types.
//! - Keeping a CID's codec: a CID is reduced to the digest it names.
//! - Parsing full image references (`host/name:tag@digest`); only the
//!   `<reference>` path segment of the distribution API is parsed.

pub mod chain;
pub mod chunk;
pub mod cid;
pub mod digest;
pub mod manifest;
pub mod name;
pub mod share;
pub mod verify;
pub mod wire;

pub use cid::CidError;
pub use digest::{Algorithm, Digest, DigestError};
pub use name::{NameError, Reference, ReferenceError, RepoName, Tag};
pub use verify::{DigestHasher, DigestMismatch, DigestVerifier};
