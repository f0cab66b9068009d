//! `must`: like `expect`, but prints the error with `Display`. The helpers'
//! errors are multi-line (a daemon's log, an HTTP response); `expect` would
//! print them through `Debug` as one escaped string.

use std::fmt::Display;

pub trait Must<T> {
    /// The value, or a panic reading `<what>: <error>`.
    fn must(self, what: &str) -> T;
}

impl<T, E: Display> Must<T> for Result<T, E> {
    #[track_caller]
    fn must(self, what: &str) -> T {
        match self {
            Ok(value) => value,
            Err(err) => panic!("{what}: {err}"),
        }
    }
}

impl<T> Must<T> for Option<T> {
    #[track_caller]
    fn must(self, what: &str) -> T {
        match self {
            Some(value) => value,
            None => panic!("{what}: nothing there"),
        }
    }
}
