//! A token bucket shared by every stream of one direction, so the node's
//! total stays under the limit however many peers or downloads there are.
//!
//! Kept as a theoretical arrival time (GCRA) rather than a token count: the
//! bucket is "paid up" at `paid_until`; a caller of `acquire(n)` moves it
//! `n / rate` further and waits until it is at most one burst ahead of now.
//! Each caller waits for its own reservation only, so concurrent callers
//! are served first come, first served, a request larger than the burst
//! still passes (it waits longer), and by any instant `t` no more than
//! `burst + rate * t` bytes have been let through. Integer nanoseconds, no
//! floating-point drift.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tokio::time::Instant;

use super::Rate;

/// How much may pass at once after a quiet spell: a quarter second's worth.
/// Short enough that a limit holds over any second, long enough that
/// streams need not take turns byte by byte.
pub const BURST_WINDOW: Duration = Duration::from_millis(250);

/// The shortest burst of a paced limiter: below a couple of milliseconds
/// timer wake-ups, not the rate, would set the pace.
const PACED_MIN_BURST: Duration = Duration::from_millis(2);

/// A rate limit shared by clones; unlimited costs one branch per call.
#[derive(Debug, Clone, Default)]
pub struct RateLimiter {
    bucket: Option<Arc<TokenBucket>>,
}

#[derive(Debug)]
struct TokenBucket {
    bytes_per_sec: u64,
    /// The time one burst takes at the rate: how far ahead of now the
    /// bucket may be booked before callers wait.
    burst: Duration,
    paid_until: Mutex<Instant>,
}

impl RateLimiter {
    pub fn new(rate: Rate) -> RateLimiter {
        RateLimiter::with_burst(rate, |_| BURST_WINDOW)
    }

    /// A limiter that lets at most `burst_bytes` (or a 2 ms worth, if that
    /// is more) pass at once: for pacing, where what matters is that the
    /// link's queue never holds more than one small burst of ours.
    pub fn paced(rate: Rate, burst_bytes: u64) -> RateLimiter {
        RateLimiter::with_burst(rate, |bucket| bucket.cost(burst_bytes).max(PACED_MIN_BURST))
    }

    /// A limiter at `rate` whose burst `burst` works out from its bucket.
    fn with_burst(rate: Rate, burst: impl FnOnce(&TokenBucket) -> Duration) -> RateLimiter {
        RateLimiter {
            bucket: rate.limit().map(|bytes_per_sec| {
                let mut bucket = TokenBucket {
                    bytes_per_sec,
                    burst: Duration::ZERO,
                    paid_until: Mutex::new(Instant::now()),
                };
                bucket.burst = burst(&bucket);
                Arc::new(bucket)
            }),
        }
    }

    pub fn is_limited(&self) -> bool {
        self.bucket.is_some()
    }

    pub fn unlimited() -> RateLimiter {
        RateLimiter::default()
    }

    /// The most bytes that pass at once after a quiet spell; `None` when
    /// unlimited.
    pub fn burst_bytes(&self) -> Option<u64> {
        let b = self.bucket.as_ref()?;
        Some((u128::from(b.bytes_per_sec) * b.burst.as_nanos() / 1_000_000_000) as u64)
    }

    /// Waits until `n` more bytes may pass. Dropped before it completes,
    /// it gives its reservation back.
    pub async fn acquire(&self, n: u64) {
        let Some(bucket) = &self.bucket else {
            return;
        };
        if n == 0 {
            return;
        }
        let cost = bucket.cost(n);
        let until = bucket.reserve(cost);
        let mut refund = Refund {
            bucket,
            cost,
            armed: true,
        };
        if until > Instant::now() {
            tokio::time::sleep_until(until).await;
        }
        refund.armed = false;
    }
}

impl TokenBucket {
    /// The time `n` bytes take at the rate, rounded up.
    fn cost(&self, n: u64) -> Duration {
        let nanos = (u128::from(n) * 1_000_000_000).div_ceil(u128::from(self.bytes_per_sec));
        Duration::from_nanos(u64::try_from(nanos).unwrap_or(u64::MAX))
    }

    /// Books `cost` and returns when the booking may go.
    fn reserve(&self, cost: Duration) -> Instant {
        let now = Instant::now();
        let mut paid_until = self
            .paid_until
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        // Idle time refills the bucket, but only up to one burst.
        let start = (*paid_until).max(now);
        let end = start.checked_add(cost).unwrap_or(start);
        *paid_until = end;
        end.checked_sub(self.burst).unwrap_or(now)
    }

    fn refund(&self, cost: Duration) {
        let mut paid_until = self
            .paid_until
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        *paid_until = paid_until.checked_sub(cost).unwrap_or(*paid_until);
    }
}

/// Gives a reservation back when its caller stops waiting (a stream that
/// closed, a request another copy outran): nobody sends those bytes.
struct Refund<'a> {
    bucket: &'a TokenBucket,
    cost: Duration,
    armed: bool,
}

impl Drop for Refund<'_> {
    fn drop(&mut self) {
        if self.armed {
            self.bucket.refund(self.cost);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use futures_util::FutureExt;

    use super::*;

    const MIB: u64 = 1024 * 1024;

    fn limiter(bytes_per_sec: u64) -> RateLimiter {
        RateLimiter::new(Rate::bytes_per_sec(bytes_per_sec).expect("valid rate"))
    }

    /// Every grant as (time since start, bytes so far), checked against
    /// the token bucket's promise: at most `burst + rate * t` by time t.
    fn assert_within_envelope(grants: &[(Duration, u64)], rate: u64, burst: u64) {
        for (at, total) in grants {
            let allowed = burst + (u128::from(rate) * at.as_nanos() / 1_000_000_000) as u64;
            assert!(
                *total <= allowed,
                "{total} bytes by {at:?}, more than {allowed}"
            );
        }
    }

    #[tokio::test(start_paused = true)]
    async fn the_long_run_rate_is_the_limit() {
        let rate = 4 * MIB;
        let limit = limiter(rate);
        let burst = limit.burst_bytes().expect("limited");
        let start = Instant::now();
        let mut total = 0;
        let mut grants = Vec::new();
        while total < 40 * MIB {
            limit.acquire(64 * 1024).await;
            total += 64 * 1024;
            grants.push((start.elapsed(), total));
        }
        // 40 MiB at 4 MiB/s, the first burst free: 9.75 s.
        let expected = Duration::from_secs_f64((total - burst) as f64 / rate as f64);
        let took = start.elapsed();
        assert!(
            took.abs_diff(expected) < Duration::from_millis(1),
            "{took:?}"
        );
        assert_within_envelope(&grants, rate, burst);
    }

    #[tokio::test(start_paused = true)]
    async fn a_quiet_spell_buys_one_burst_only() {
        // 1 KiB costs exactly 1 ms at this rate.
        let rate = 1_024_000;
        let limit = limiter(rate);
        let burst = limit.burst_bytes().expect("limited");
        tokio::time::sleep(Duration::from_secs(60)).await;
        let start = Instant::now();
        let mut at_once = 0;
        loop {
            limit.acquire(1024).await;
            if start.elapsed() > Duration::ZERO {
                break;
            }
            at_once += 1024;
        }
        assert_eq!(at_once, burst, "a minute idle still allows one burst");
        // A request larger than the burst is not stuck: it waits its time.
        let before = Instant::now();
        limit.acquire(4 * MIB).await;
        assert!(before.elapsed() >= Duration::from_secs(3));
    }

    #[tokio::test(start_paused = true)]
    async fn concurrent_users_share_one_limit() {
        const USERS: usize = 5;
        const PIECE: u64 = 100 * 1024;
        let rate = 2 * MIB;
        let limit = limiter(rate);
        let burst = limit.burst_bytes().expect("limited");
        let start = Instant::now();
        // Who was let through, in order, and when.
        let grants = Arc::new(Mutex::new(Vec::new()));
        let users: Vec<_> = (0..USERS)
            .map(|user| {
                let (limit, grants) = (limit.clone(), grants.clone());
                tokio::spawn(async move {
                    for _ in 0..20 {
                        limit.acquire(PIECE).await;
                        grants.lock().expect("lock").push((user, start.elapsed()));
                    }
                })
            })
            .collect();
        for user in users {
            user.await.expect("user");
        }
        let grants = grants.lock().expect("lock");
        let envelope: Vec<_> = (1..)
            .zip(grants.iter())
            .map(|(n, (_, at))| (*at, n * PIECE))
            .collect();
        assert_within_envelope(&envelope, rate, burst);
        let total = grants.len() as u64 * PIECE;
        let expected = Duration::from_secs_f64((total - burst) as f64 / rate as f64);
        let last = grants.last().map(|(_, at)| *at).unwrap_or_default();
        assert!(
            last.abs_diff(expected) < Duration::from_millis(1),
            "{last:?}"
        );
        // First come, first served: the user that found the bucket full is
        // ahead by that burst and no more; nobody is kept waiting while
        // another runs on.
        let lead = burst / PIECE + 1;
        let mut counts = [0u64; USERS];
        for (user, at) in grants.iter() {
            counts[*user] += 1;
            let (most, least) = (counts.iter().max(), counts.iter().min());
            let gap = most.zip(least).map_or(0, |(m, l)| m - l);
            assert!(gap <= lead, "at {at:?}: {counts:?}");
        }
    }

    #[tokio::test(start_paused = true)]
    async fn unlimited_never_waits() {
        let limit = RateLimiter::new(Rate::UNLIMITED);
        assert_eq!(limit.burst_bytes(), None);
        let start = Instant::now();
        for _ in 0..1000 {
            // Completes on its first poll: no timer, no yield.
            assert!(limit.acquire(u64::MAX).now_or_never().is_some());
        }
        assert_eq!(start.elapsed(), Duration::ZERO);
        assert!(RateLimiter::unlimited().acquire(1).now_or_never().is_some());
    }

    #[tokio::test(start_paused = true)]
    async fn a_cancelled_wait_gives_its_bytes_back() {
        let limit = limiter(MIB);
        let burst = limit.burst_bytes().expect("limited");
        limit.acquire(burst).await;
        // Would wait 10 s; given up after 1.
        let gave_up = tokio::time::timeout(Duration::from_secs(1), limit.acquire(10 * MIB)).await;
        assert!(gave_up.is_err());
        // The next MiB waits what it would have without the cancelled one:
        // 1 s for itself, less the burst a quiet bucket holds.
        let before = Instant::now();
        limit.acquire(MIB).await;
        assert_eq!(before.elapsed(), Duration::from_millis(750));
    }
}
