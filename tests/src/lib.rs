//! Helpers for shoal's integration tests: real `shoal` daemons, a real
//! `docker-registry` to compare with, small OCI images built offline, and a
//! way to report a test as skipped when the machine cannot run it.
//!
//! Every wait has a deadline and every child process is killed on drop, so a
//! misbehaving daemon fails a test instead of hanging the suite.

pub mod command;
pub mod distribution;
pub mod docker;
pub mod http;
pub mod images;
pub mod must;
pub mod node;
pub mod oci;
pub mod paths;
pub mod registry;
pub mod skip;
pub mod skopeo;
pub mod tools;
pub mod upstream;

pub use must::Must;
pub use node::{NodeOptions, ShoalNode};
pub use registry::{StoredBlob, TestRegistry};
pub use skip::Skip;
pub use upstream::DockerRegistry;
