//! The shoal daemon as a library.

pub mod announcer;
pub mod config;
pub mod daemon;
mod error_chain;
pub mod limits;
pub mod metrics;
pub mod network;
pub mod registry;
pub mod store;
pub mod transfer;
pub mod upstream;
