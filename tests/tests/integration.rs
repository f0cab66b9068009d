//! shoal's integration tests: the real `shoal` binary, driven by real
//! clients (skopeo, the Docker Engine, raw HTTP), next to Debian's
//! `docker-registry` as the reference that proves each test's logic.
//!
//! Tests that cannot run on this machine report `SKIPPED <name>: <reason>`
//! (see `shoal_tests::skip`); `tests/run.sh` counts them as skipped.

mod crash_safety;
mod docker_mirror;
mod docker_pull;
mod mirror_speed;
mod mirror_support;
mod shoal_pull;
mod skopeo_roundtrip;
mod swarm_pull;
