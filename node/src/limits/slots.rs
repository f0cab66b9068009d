//! Fair upload slots: at most `n` chunk uploads at once, and when peers
//! queue for them, a freed slot goes to the next peer in turn rather than
//! to the next request. A peer with sixty requests queued gets one slot per
//! round like a peer with one, so a greedy leecher cannot starve the rest.
//!
//! Bounded: the queue holds one entry per waiting request, and each waiting
//! request is a transfer stream (at most `MAX_INBOUND_STREAMS`); entries of
//! requests given up are pruned whenever another joins.

use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::hash::Hash;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use tokio::sync::oneshot;

/// Concurrent chunk uploads unless the config says otherwise: enough for
/// one downloader's streams (4 providers x 4 streams) to run at full speed.
pub const DEFAULT_UPLOAD_SLOTS: usize = 16;

/// Upload slots shared by clones, granted round-robin over `K` (a peer).
pub struct UploadSlots<K: Key> {
    queue: Arc<Mutex<Queue<K>>>,
}

/// What slots are granted per: a peer id (anything hashable in tests).
pub trait Key: Eq + Hash + Clone {}
impl<K: Eq + Hash + Clone> Key for K {}

struct Queue<K: Key> {
    free: usize,
    /// Peers with requests waiting, in the order they get their next turn.
    turns: VecDeque<K>,
    waiting: HashMap<K, VecDeque<oneshot::Sender<UploadSlot<K>>>>,
}

/// One upload slot; freed (and handed to the next peer in turn) on drop.
pub struct UploadSlot<K: Key> {
    /// `None` for a slot that was never handed out (its waiter had left).
    queue: Option<Arc<Mutex<Queue<K>>>>,
}

impl<K: Key> UploadSlots<K> {
    /// `slots` uploads at once (at least one).
    pub fn new(slots: usize) -> UploadSlots<K> {
        UploadSlots {
            queue: Arc::new(Mutex::new(Queue {
                free: slots.max(1),
                turns: VecDeque::new(),
                waiting: HashMap::new(),
            })),
        }
    }

    /// Waits for a slot for one of `peer`'s uploads. Dropping the future
    /// gives up the place in the queue (or the slot, if it was just
    /// granted).
    pub async fn acquire(&self, peer: K) -> UploadSlot<K> {
        loop {
            let granted = {
                let mut q = lock(&self.queue);
                if q.free > 0 {
                    q.free -= 1;
                    return UploadSlot {
                        queue: Some(self.queue.clone()),
                    };
                }
                q.prune();
                let (tx, rx) = oneshot::channel();
                if !q.waiting.contains_key(&peer) {
                    q.turns.push_back(peer.clone());
                }
                q.waiting.entry(peer.clone()).or_default().push_back(tx);
                rx
            };
            // A sender is only dropped unsent with the whole queue, which
            // `self` keeps alive; should it happen, queue again.
            if let Ok(slot) = granted.await {
                return slot;
            }
        }
    }

    /// Slots free right now (for tests and status).
    pub fn available(&self) -> usize {
        lock(&self.queue).free
    }
}

impl<K: Key> Queue<K> {
    /// Drops the entries of waiters that gave up.
    fn prune(&mut self) {
        self.waiting.retain(|_, waiters| {
            waiters.retain(|tx| !tx.is_closed());
            !waiters.is_empty()
        });
        let waiting = &self.waiting;
        self.turns.retain(|peer| waiting.contains_key(peer));
    }
}

/// Hands a freed slot to the next peer in turn, or keeps it free.
fn release<K: Key>(queue: &Arc<Mutex<Queue<K>>>) {
    let mut q = lock(queue);
    while let Some(peer) = q.turns.pop_front() {
        let Some(waiters) = q.waiting.get_mut(&peer) else {
            continue;
        };
        let mut granted = false;
        while let Some(tx) = waiters.pop_front() {
            let slot = UploadSlot {
                queue: Some(queue.clone()),
            };
            match tx.send(slot) {
                Ok(()) => {
                    granted = true;
                    break;
                }
                // Its waiter left: the slot was never out, and must not
                // release itself (the lock is held here).
                Err(mut unsent) => unsent.queue = None,
            }
        }
        if waiters.is_empty() {
            q.waiting.remove(&peer);
        } else {
            q.turns.push_back(peer);
        }
        if granted {
            return;
        }
    }
    q.free += 1;
}

fn lock<K: Key>(queue: &Mutex<Queue<K>>) -> MutexGuard<'_, Queue<K>> {
    // The queue is consistent between statements; a panic elsewhere
    // while holding it leaves nothing half-done.
    queue.lock().unwrap_or_else(PoisonError::into_inner)
}

impl<K: Key> Drop for UploadSlot<K> {
    fn drop(&mut self) {
        if let Some(queue) = self.queue.take() {
            release(&queue);
        }
    }
}

impl<K: Key> Clone for UploadSlots<K> {
    fn clone(&self) -> UploadSlots<K> {
        UploadSlots {
            queue: self.queue.clone(),
        }
    }
}

impl<K: Key> fmt::Debug for UploadSlots<K> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let q = lock(&self.queue);
        f.debug_struct("UploadSlots")
            .field("free", &q.free)
            .field("peers_waiting", &q.waiting.len())
            .finish()
    }
}

impl<K: Key> fmt::Debug for UploadSlot<K> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("UploadSlot").finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Duration;

    use futures_util::FutureExt;
    use tokio::time::Instant;

    use super::*;

    const UPLOAD: Duration = Duration::from_millis(10);

    /// Starts one upload by `peer` that logs its turn and holds its slot
    /// for [`UPLOAD`]; returns once the request is queued.
    async fn queue_one(
        slots: &UploadSlots<&'static str>,
        peer: &'static str,
        log: &Arc<Mutex<Vec<&'static str>>>,
    ) -> tokio::task::JoinHandle<()> {
        let (slots, log) = (slots.clone(), log.clone());
        let task = tokio::spawn(async move {
            let _slot = slots.acquire(peer).await;
            log.lock().expect("log").push(peer);
            tokio::time::sleep(UPLOAD).await;
        });
        // Lets it reach the queue before the next one is started.
        tokio::task::yield_now().await;
        task
    }

    #[tokio::test(start_paused = true)]
    async fn a_greedy_peer_gets_one_turn_per_round() {
        let slots = UploadSlots::new(1);
        let busy = slots.acquire("someone").await;
        let log = Arc::new(Mutex::new(Vec::new()));
        let mut tasks = Vec::new();
        // The greedy peer asked first, and for the most.
        for _ in 0..6 {
            tasks.push(queue_one(&slots, "greedy", &log).await);
        }
        for peer in ["b", "c", "b", "c"] {
            tasks.push(queue_one(&slots, peer, &log).await);
        }
        drop(busy);
        for task in tasks {
            task.await.expect("upload");
        }
        let log = log.lock().expect("log").clone();
        assert_eq!(
            log,
            [
                "greedy", "b", "c", "greedy", "b", "c", "greedy", "greedy", "greedy", "greedy"
            ]
        );
        assert_eq!(slots.available(), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn modest_peers_are_served_while_a_leecher_keeps_asking() {
        let slots = UploadSlots::new(3);
        let held = Arc::new(AtomicUsize::new(0));
        let most_held = Arc::new(AtomicUsize::new(0));
        let start = Instant::now();
        // `streams` streams of `peer`, each asking for `uploads` chunks one
        // after another; returns when the last is done.
        let peer = |name: &'static str, streams: usize, uploads: usize| {
            let (slots, held, most_held) = (slots.clone(), held.clone(), most_held.clone());
            tokio::spawn(async move {
                let streams = (0..streams).map(|_| {
                    let (slots, held, most_held) = (slots.clone(), held.clone(), most_held.clone());
                    async move {
                        for _ in 0..uploads {
                            let _slot = slots.acquire(name).await;
                            let now = held.fetch_add(1, Ordering::SeqCst) + 1;
                            most_held.fetch_max(now, Ordering::SeqCst);
                            tokio::time::sleep(UPLOAD).await;
                            held.fetch_sub(1, Ordering::SeqCst);
                        }
                    }
                });
                futures_util::future::join_all(streams).await;
                start.elapsed()
            })
        };
        let greedy = peer("greedy", 20, 5);
        let b = peer("b", 1, 5);
        let c = peer("c", 1, 5);
        let (greedy, b, c) = (
            greedy.await.expect("greedy"),
            b.await.expect("b"),
            c.await.expect("c"),
        );
        assert_eq!(
            most_held.load(Ordering::SeqCst),
            3,
            "never more than 3 at once"
        );
        // Alone, five uploads in a row take 50 ms; first come, first served
        // behind the leecher's 20 queued requests, about 400 ms. In turn, a
        // modest peer waits a round at most per upload.
        assert!(b <= Duration::from_millis(120), "b took {b:?}");
        assert!(c <= Duration::from_millis(120), "c took {c:?}");
        // The leecher still gets every slot nobody else wants.
        assert!(
            greedy <= Duration::from_millis(400),
            "greedy took {greedy:?}"
        );
        assert_eq!(slots.available(), 3);
    }

    #[tokio::test(start_paused = true)]
    async fn a_request_given_up_takes_no_slot() {
        let slots = UploadSlots::new(1);
        let busy = slots.acquire(1u32).await;
        // Gives up while queued.
        let gave_up = tokio::time::timeout(UPLOAD, slots.acquire(2)).await;
        assert!(gave_up.is_err());
        // Queued, granted the slot, and dropped before it looked.
        let mut late = Box::pin(slots.acquire(3));
        assert!((&mut late).now_or_never().is_none());
        drop(busy);
        assert_eq!(slots.available(), 0, "granted to the waiter");
        drop(late);
        assert_eq!(slots.available(), 1);
        // Still usable afterwards.
        let again = slots.acquire(2).now_or_never();
        assert!(again.is_some());
    }
}
