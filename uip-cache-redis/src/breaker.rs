//! A small circuit breaker: after repeated failures Redis is skipped for a
//! while, so a dead or frozen server costs nothing per request; then one call
//! is let through to see whether it is back.

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering::Relaxed};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

#[derive(Debug)]
pub(crate) struct Breaker {
    failures: AtomicU32,
    open_until_ms: AtomicU64,
    threshold: u32,
    cool_down: Duration,
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_millis() as u64
}

impl Breaker {
    pub(crate) fn new(threshold: u32, cool_down: Duration) -> Self {
        Breaker {
            failures: AtomicU32::new(0),
            open_until_ms: AtomicU64::new(0),
            threshold,
            cool_down,
        }
    }

    /// Whether calls may go to Redis now. When the cool-down has passed, the
    /// breaker lets calls through again (half open) until the next failure.
    pub(crate) fn allows(&self) -> bool {
        now_ms() >= self.open_until_ms.load(Relaxed)
    }

    pub(crate) fn is_open(&self) -> bool {
        !self.allows()
    }

    pub(crate) fn has_failures(&self) -> bool {
        self.failures.load(Relaxed) > 0
    }

    pub(crate) fn success(&self) {
        self.failures.store(0, Relaxed);
    }

    /// Counts a failure; whether it opened the circuit (and said so in the
    /// log).
    pub(crate) fn failure(&self) -> bool {
        let n = self.failures.fetch_add(1, Relaxed) + 1;
        if n >= self.threshold {
            let now = now_ms();
            let was = self
                .open_until_ms
                .swap(now + self.cool_down.as_millis() as u64, Relaxed);
            // A line when it opens, not for each failure while it is open
            // (the calls in flight when Redis went away, those let through
            // after a cool-down): those would be a line a request.
            if was <= now {
                tracing::warn!(failures = n, cool_down = ?self.cool_down, "redis circuit open: skipping redis");
                return true;
            }
        }
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Requests in flight when Redis went dark (each waits out
    /// `store.timeout`) fail one after another once the circuit is open;
    /// so do all those let through in the half-open window every
    /// cool-down. Each must not be a line of its own.
    #[test]
    fn failures_past_the_threshold_are_not_a_line_each() {
        // Counted by what `failure` says it logged, not through a tracing
        // subscriber: a subscriber set for one thread shares tracing's
        // per-callsite cache with the tests running beside it.
        let b = Breaker::new(5, Duration::from_millis(100));
        // 100 requests in flight, all timing out.
        let lines = (0..100).filter(|_| b.failure()).count();
        assert_eq!(lines, 1, "one line when it opens");
        // After the cool-down, the calls let through fail: it opens again,
        // with a line again.
        std::thread::sleep(Duration::from_millis(150));
        assert!(b.allows());
        let lines = (0..100).filter(|_| b.failure()).count();
        assert_eq!(lines, 1, "a line each time it opens");
    }

    #[test]
    fn opens_after_the_threshold_and_closes_after_the_cool_down() {
        let b = Breaker::new(3, Duration::from_millis(50));
        b.failure();
        b.failure();
        assert!(b.allows());
        b.failure();
        assert!(b.is_open());
        std::thread::sleep(Duration::from_millis(60));
        assert!(b.allows(), "half open after the cool-down");
        b.success();
        assert!(!b.has_failures());
    }
}
