//! The OCI endpoint over real HTTP: every endpoint, every error code, and
//! bad input that must leave the store unchanged.

mod support;

mod bad_input;
mod blobs;
mod listing;
mod manifests;
mod referrers;
mod uploads;
