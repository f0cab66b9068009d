//! The shoal daemon as a library.

pub mod config;
pub mod daemon;
pub mod registry;
pub mod store;
