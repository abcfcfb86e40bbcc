//! For an application's own tests of its cache (feature `test-util`): a
//! [`MockClock`] to move the cache's time on instead of sleeping, and an
//! [`OriginCounter`] for the mock origin's handlers, so that a test can say
//! "the second request did not reach the origin" and "61 s later it did"
//! without waiting.
//!
//! ```
//! use uip_cache_core::test_util::OriginCounter;
//!
//! let origin = OriginCounter::new();
//! // The mock origin's handler counts each request that reaches it.
//! let handler = {
//!     let origin = origin.clone();
//!     move || {
//!         origin.count();
//!         "[]"
//!     }
//! };
//! handler();
//! assert_eq!(origin.calls(), 1);
//! ```
//!
//! [`MockClock`] shows the clock given to a cache. The adapters re-export
//! both under their own `test-util` feature, with a whole test of an app:
//! `uip_cache_tower::test_util` (which adds `CountingOrigin`, a layer that
//! counts the requests reaching the service it wraps) and
//! `uip_cache_actix::test_util`.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

pub use crate::clock::MockClock;

/// Counts the requests that reached a mock origin: its handlers call
/// [`count`](OriginCounter::count), the test reads
/// [`calls`](OriginCounter::calls). Clones share one count.
#[derive(Clone, Debug, Default)]
pub struct OriginCounter {
    calls: Arc<AtomicU64>,
}

impl OriginCounter {
    /// A counter at zero.
    pub fn new() -> Self {
        OriginCounter::default()
    }

    /// Counts one request; the count with it.
    pub fn count(&self) -> u64 {
        self.calls.fetch_add(1, Ordering::SeqCst) + 1
    }

    /// The requests counted so far.
    pub fn calls(&self) -> u64 {
        self.calls.load(Ordering::SeqCst)
    }

    /// Back to zero.
    pub fn reset(&self) {
        self.calls.store(0, Ordering::SeqCst);
    }
}

#[cfg(test)]
mod tests {
    use super::OriginCounter;

    #[test]
    fn clones_share_one_count() {
        let a = OriginCounter::new();
        let b = a.clone();
        assert_eq!((a.count(), b.count()), (1, 2));
        assert_eq!(a.calls(), 2);
        b.reset();
        assert_eq!(a.calls(), 0);
    }
}
