//! The shoal daemon as a library.

pub mod store;
