//! Log lines that every request could repeat, written at most once a
//! second each.
//!
//! When the store is down, every request's lookup, lease and epoch read
//! fails, and a line for each failure is thousands of lines a second
//! (measured: 48 000 a second, over three for each request, with Redis
//! gone and a keep-alive client); a client guessing the admin secret could
//! do the same. Such a line goes through a [`Quiet`]: the first is
//! written, then at most one a second, each saying how many like it were
//! left out since the last one written (`left_out`). The metrics count
//! every event. What the lines left out said (their error, their
//! operation) is not kept, and a count left out at the end of a burst is
//! told by the next line of its kind, whenever that comes.
//!
//! ```
//! use uip_cache_core::quiet::Quiet;
//!
//! static STORE_DOWN: Quiet = Quiet::new();
//! let mut written = 0;
//! for _ in 0..1000 {
//!     if let Some(left_out) = STORE_DOWN.admit() {
//!         written += 1;
//!         // tracing::warn!(left_out, "store failed");
//!         let _ = left_out;
//!     }
//! }
//! // A thousand failures in well under a second: one line.
//! assert_eq!(written, 1);
//! ```

use std::sync::atomic::{AtomicU64, Ordering};

use crate::clock::monotonic_ms;

/// The shortest time between two lines of one kind, in milliseconds.
const INTERVAL_MS: u64 = 1000;

/// One kind of log line, written at most once a second (see the module
/// docs). Shared by every thread; lock-free. A thread paused between
/// reading the clock and taking the line can bring two lines closer than a
/// second; the counts stay exact.
#[derive(Debug, Default)]
pub struct Quiet {
    /// When the last line was written ([`monotonic_ms`]; 0: never).
    last: AtomicU64,
    /// Lines left out since then.
    left_out: AtomicU64,
}

impl Quiet {
    /// A kind of line none of which was written yet.
    pub const fn new() -> Quiet {
        Quiet {
            last: AtomicU64::new(0),
            left_out: AtomicU64::new(0),
        }
    }

    /// Whether a line of this kind is written now: `Some(n)` when it is,
    /// `n` being how many were left out since the last one written (write
    /// it in the line); `None` when it is left out (and counted).
    pub fn admit(&self) -> Option<u64> {
        self.admit_at(monotonic_ms())
    }

    /// [`Quiet::admit`] at `now` (milliseconds, at least 1, never going
    /// back).
    fn admit_at(&self, now: u64) -> Option<u64> {
        let last = self.last.load(Ordering::Relaxed);
        let due = last == 0 || now.saturating_sub(last) >= INTERVAL_MS;
        // Of the callers that find the line due, one takes it.
        if due
            && self
                .last
                .compare_exchange(last, now.max(1), Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
        {
            return Some(self.left_out.swap(0, Ordering::Relaxed));
        }
        self.left_out.fetch_add(1, Ordering::Relaxed);
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn the_first_line_is_written_then_one_a_second_with_what_was_left_out() {
        let q = Quiet::new();
        assert_eq!(q.admit_at(5), Some(0), "the first");
        assert_eq!(q.admit_at(6), None);
        assert_eq!(q.admit_at(1004), None, "999 ms after it");
        assert_eq!(q.admit_at(1005), Some(2), "a second after it");
        assert_eq!(q.admit_at(9000), Some(0), "nothing left out meanwhile");
    }

    proptest! {
        /// Over any run of events, every event is either written or
        /// counted in a later written line (or still pending), and lines
        /// are at least a second apart.
        #[test]
        fn every_event_is_written_or_counted_and_lines_are_a_second_apart(
            steps in proptest::collection::vec(0u64..1500, 1..300)
        ) {
            let q = Quiet::new();
            let mut now = 1;
            let (mut written, mut counted) = (0u64, 0u64);
            let mut last_line: Option<u64> = None;
            for step in &steps {
                now += step;
                if let Some(n) = q.admit_at(now) {
                    if let Some(at) = last_line {
                        prop_assert!(now - at >= INTERVAL_MS);
                    }
                    last_line = Some(now);
                    written += 1;
                    counted += n;
                }
            }
            let pending = q.left_out.load(Ordering::Relaxed);
            prop_assert_eq!(written + counted + pending, steps.len() as u64);
            prop_assert!(written <= 1 + (now - 1) / INTERVAL_MS);
        }
    }

    #[test]
    fn threads_that_find_a_line_due_together_write_it_once() {
        let q = Quiet::new();
        let written: u64 = std::thread::scope(|s| {
            let handles: Vec<_> = (0..8)
                .map(|_| s.spawn(|| (0..1000).filter(|_| q.admit_at(7).is_some()).count() as u64))
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).sum()
        });
        assert_eq!(written, 1);
        assert_eq!(q.left_out.load(Ordering::Relaxed), 7999);
    }
}
