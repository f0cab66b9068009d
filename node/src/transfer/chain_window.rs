//! How many chunks a follower asks of its predecessor at once, over all
//! the blobs the node follows at the same time.
//!
//! A predecessor answers a held ask the moment it has the chunk, so the
//! chunks asked for and not yet received are what a follower lags behind
//! it: the asks fill the follower's download, and with u = d nothing
//! drains them faster than they fill. Four chunks of one blob (256 KiB,
//! 21 ms at 100 Mbit/s) keep the link busy through the round trip of the
//! next ask, which waits behind data in both links' queues. Seven blobs
//! followed at once with four each would be seven times that per hop (with
//! 256 KiB chunks the chains of a six-layer image ended 2.4–3 s after their
//! leaders), while the link needs no more in flight than for one. So the
//! window is shared: each followed blob gets its part of it, rounded up
//! (three blobs: two chunks each), at least one chunk.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

/// Chunks asked of predecessors at once, over every blob followed.
pub(super) const CHAIN_AHEAD: usize = 4;

/// The blobs this node follows now (cheap to clone: one count).
#[derive(Debug, Clone, Default)]
pub(super) struct ChainWindow {
    followed: Arc<AtomicUsize>,
}

/// One blob followed; counted until dropped.
#[derive(Debug)]
pub(super) struct Following {
    followed: Arc<AtomicUsize>,
}

impl ChainWindow {
    /// Counts one more blob followed, until the guard is dropped.
    pub(super) fn follow(&self) -> Following {
        self.followed.fetch_add(1, Ordering::Relaxed);
        Following {
            followed: self.followed.clone(),
        }
    }

    /// Keeps `place` counted while the blob has chunks left to ask for,
    /// and not once every chunk is in hand or asked: a blob on its last
    /// asks (or being committed) leaves its part of the window to the
    /// blobs still coming in.
    pub(super) fn hold(&self, place: &mut Option<Following>, left_to_ask: bool) {
        match (left_to_ask, place.is_some()) {
            (false, true) => *place = None,
            (true, false) => *place = Some(self.follow()),
            _ => {}
        }
    }

    /// Chunks one followed blob may have asked for and not received.
    pub(super) fn per_blob(&self) -> usize {
        share(self.followed.load(Ordering::Relaxed))
    }
}

impl Drop for Following {
    fn drop(&mut self) {
        self.followed.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Each of `followed` blobs' part of [`CHAIN_AHEAD`], rounded up, at
/// least one.
fn share(followed: usize) -> usize {
    CHAIN_AHEAD.div_ceil(followed.max(1)).max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_blob_gets_the_whole_window_and_many_get_one_chunk_each() {
        assert_eq!(share(0), CHAIN_AHEAD);
        assert_eq!(share(1), CHAIN_AHEAD);
        assert_eq!(share(2), 2);
        assert_eq!(share(3), 2);
        assert_eq!(share(4), 1);
        assert_eq!(share(7), 1);
    }

    #[test]
    fn the_window_widens_again_as_blobs_finish() {
        let window = ChainWindow::default();
        assert_eq!(window.per_blob(), CHAIN_AHEAD);
        let first = window.follow();
        let others: Vec<Following> = (0..5).map(|_| window.clone().follow()).collect();
        assert_eq!(window.per_blob(), 1);
        drop(others);
        assert_eq!(window.per_blob(), CHAIN_AHEAD);
        drop(first);
        assert_eq!(window.per_blob(), CHAIN_AHEAD);
    }

    #[test]
    fn a_blob_with_nothing_left_to_ask_gives_up_its_part() {
        let window = ChainWindow::default();
        let mut a = Some(window.follow());
        let mut b = Some(window.follow());
        assert_eq!(window.per_blob(), CHAIN_AHEAD / 2);
        // `a` has asked for its last chunks: `b` gets the whole window.
        window.hold(&mut a, false);
        assert!(a.is_none());
        assert_eq!(window.per_blob(), CHAIN_AHEAD);
        window.hold(&mut a, false);
        assert_eq!(window.per_blob(), CHAIN_AHEAD);
        // An ask of `a` broke: it needs its part again, once.
        window.hold(&mut a, true);
        window.hold(&mut a, true);
        assert_eq!(window.per_blob(), CHAIN_AHEAD / 2);
        window.hold(&mut b, true);
        assert_eq!(window.per_blob(), CHAIN_AHEAD / 2);
        drop(b);
        assert_eq!(window.per_blob(), CHAIN_AHEAD);
    }
}
