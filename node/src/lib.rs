//! The shoal daemon as a library.
