//! One line from an error and its causes.
//!
//! Many errors say only the outer half: reqwest's "error sending request"
//! leaves "connection refused" to its source, and libp2p's
//! `TransportError::Other` prints nothing at all, leaving "address already
//! in use" to its source.

/// `outer: cause: root cause`, skipping links that print nothing.
pub(crate) fn error_chain(err: &(dyn std::error::Error + 'static)) -> String {
    let mut parts = Vec::new();
    let mut next = Some(err);
    while let Some(e) = next {
        let text = e.to_string();
        // A wrapper often repeats its source's message verbatim.
        if !text.is_empty() && parts.last() != Some(&text) {
            parts.push(text);
        }
        next = e.source();
    }
    parts.join(": ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, thiserror::Error)]
    #[error("{0}")]
    struct Wrapper(&'static str, #[source] std::io::Error);

    #[test]
    fn causes_follow_the_message() {
        let err = Wrapper("cannot listen", std::io::Error::other("address in use"));
        assert_eq!(error_chain(&err), "cannot listen: address in use");
    }

    #[test]
    fn silent_and_repeated_links_are_skipped() {
        let err = Wrapper("", std::io::Error::other("address in use"));
        assert_eq!(error_chain(&err), "address in use");
        let err = Wrapper("address in use", std::io::Error::other("address in use"));
        assert_eq!(error_chain(&err), "address in use");
    }
}
