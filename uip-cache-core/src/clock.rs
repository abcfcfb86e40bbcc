//! The time the cache decides by: a [`Clock`], the system's by default, that
//! an [`HttpCache`](crate::HttpCache) reads whenever time decides what it
//! does, and that tests replace with a `MockClock` (feature `test-util`)
//! to move time on instead of sleeping.
//!
//! Two kinds of time go through it:
//!
//! - wall time ([`Clock::now`], a [`SystemTime`]): when a response was
//!   requested and received, the `Age` of a stored entry, whether it is
//!   fresh, and how stale it is (stale-while-revalidate, stale-if-error,
//!   soft purges);
//! - monotonic time ([`Clock::instant`], an [`Instant`]): the hit-for-miss
//!   window of a key whose response could not be stored, and how long a
//!   request waits for another instance's lease.
//!
//! What stays on the runtime's time: timers that wait for the network or
//! for another task (store and purge timeouts, the wait for a coalesced
//! leader, body read deadlines, warming retries, the admin monitor and
//! schedules). A clock cannot wake a sleeping task; tokio's
//! `start_paused` test runtime and `tokio::time::advance` drive those.
//! Latencies reported in the statistics are measured in real time too.
//!
//! Stores keep their own expiry in real time: the memory store drops an
//! entry when its storage TTL has passed on the system clock, and Redis
//! when its key expires. The cache's own decision uses the clock, so an
//! entry that the clock says is stale is revalidated or fetched again even
//! though the store still holds it; an entry the store has already dropped
//! is a miss whatever the clock says. In a test, where little real time
//! passes, only the clock matters.

use std::fmt;
use std::time::{Instant, SystemTime};

#[cfg(feature = "test-util")]
pub use mock::MockClock;

/// Milliseconds on a process-wide monotonic clock, from 1 (so that 0 can
/// stand for "never"): for times kept in atomics and compared with each
/// other, such as when a log line was last written or a connection last
/// made progress (the server reads it for every socket read and write:
/// inlined across crates). Not mocked.
///
/// ```
/// let a = uip_cache_core::clock::monotonic_ms();
/// assert!(a >= 1 && uip_cache_core::clock::monotonic_ms() >= a);
/// ```
#[inline]
pub fn monotonic_ms() -> u64 {
    static EPOCH: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();
    let epoch = *EPOCH.get_or_init(Instant::now);
    u64::try_from(epoch.elapsed().as_millis()).unwrap_or(u64::MAX / 2) + 1
}

/// Where the cache reads the time: the system clock unless a test set a
/// `MockClock` (feature `test-util`; see the [module docs](self)). Cheap to
/// clone.
///
/// ```
/// use uip_cache_core::clock::Clock;
///
/// let clock = Clock::system();
/// assert!(clock.now() > std::time::UNIX_EPOCH);
/// ```
#[derive(Clone, Default)]
pub struct Clock {
    source: Source,
}

#[derive(Clone, Default)]
enum Source {
    #[default]
    System,
    #[cfg(feature = "test-util")]
    Mock(MockClock),
}

impl Clock {
    /// The system clock: [`SystemTime::now`] and [`Instant::now`]. The
    /// default.
    pub const fn system() -> Self {
        Clock {
            source: Source::System,
        }
    }

    /// The wall time now.
    #[inline]
    pub fn now(&self) -> SystemTime {
        match &self.source {
            Source::System => SystemTime::now(),
            #[cfg(feature = "test-util")]
            Source::Mock(m) => m.now(),
        }
    }

    /// The monotonic time now.
    #[inline]
    pub fn instant(&self) -> Instant {
        match &self.source {
            Source::System => Instant::now(),
            #[cfg(feature = "test-util")]
            Source::Mock(m) => m.instant(),
        }
    }

    /// Whether this is the system clock.
    pub fn is_system(&self) -> bool {
        matches!(self.source, Source::System)
    }
}

impl fmt::Debug for Clock {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.source {
            Source::System => f.write_str("Clock::System"),
            #[cfg(feature = "test-util")]
            Source::Mock(m) => f.debug_tuple("Clock::Mock").field(m).finish(),
        }
    }
}

#[cfg(feature = "test-util")]
#[cfg_attr(docsrs, doc(cfg(feature = "test-util")))]
impl From<MockClock> for Clock {
    fn from(mock: MockClock) -> Self {
        Clock {
            source: Source::Mock(mock),
        }
    }
}

#[cfg(feature = "test-util")]
mod mock {
    use std::fmt;
    use std::sync::{Arc, Mutex, PoisonError};
    use std::time::{Duration, Instant, SystemTime};

    /// A clock that moves only when told: give it to
    /// [`HttpCacheBuilder::clock`](crate::HttpCacheBuilder::clock), then
    /// [`advance`](MockClock::advance) it where a test would otherwise
    /// sleep. Clones share one time. Feature `test-util`.
    ///
    /// It starts at the real time it was made, so that entries keep
    /// plausible dates, and stands still from there.
    ///
    /// ```
    /// use std::time::Duration;
    /// use uip_cache_core::clock::MockClock;
    /// use uip_cache_core::{CacheConfig, HttpCache};
    ///
    /// let config = CacheConfig::from_yaml_str("policies:\n  - name: items\n    pattern: /items\n    ttl: 60\n")?;
    /// let clock = MockClock::new();
    /// let cache = HttpCache::builder(&config).clock(clock.clone()).build()?;
    ///
    /// let (wall, mono) = (clock.now(), clock.instant());
    /// clock.advance(Duration::from_secs(61));
    /// // The cache reads the same time: an entry stored at `wall` with a
    /// // 60 s TTL is stale for it now.
    /// assert_eq!(cache.clock().now(), wall + Duration::from_secs(61));
    /// assert_eq!(cache.clock().instant(), mono + Duration::from_secs(61));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    #[derive(Clone)]
    pub struct MockClock {
        time: Arc<Mutex<Time>>,
    }

    #[derive(Clone, Copy, Debug)]
    struct Time {
        wall: SystemTime,
        mono: Instant,
    }

    impl MockClock {
        /// A clock standing at the real time now.
        pub fn new() -> Self {
            MockClock {
                time: Arc::new(Mutex::new(Time {
                    wall: SystemTime::now(),
                    mono: Instant::now(),
                })),
            }
        }

        /// Moves wall and monotonic time on by `by`.
        ///
        /// # Panics
        ///
        /// If the time would leave the range of [`SystemTime`] or
        /// [`Instant`] (centuries away).
        pub fn advance(&self, by: Duration) {
            let mut t = self.lock();
            t.wall = t.wall.checked_add(by).expect("mock wall time overflow");
            t.mono = t
                .mono
                .checked_add(by)
                .expect("mock monotonic time overflow");
        }

        /// Sets the wall time, forwards or back, as when a system clock is
        /// set; monotonic time does not move (it never goes back), so
        /// hit-for-miss windows and lease waits are not affected.
        pub fn set(&self, wall: SystemTime) {
            self.lock().wall = wall;
        }

        /// The wall time the clock stands at.
        pub fn now(&self) -> SystemTime {
            self.lock().wall
        }

        /// The monotonic time the clock stands at.
        pub fn instant(&self) -> Instant {
            self.lock().mono
        }

        fn lock(&self) -> std::sync::MutexGuard<'_, Time> {
            self.time.lock().unwrap_or_else(PoisonError::into_inner)
        }
    }

    impl Default for MockClock {
        fn default() -> Self {
            MockClock::new()
        }
    }

    impl fmt::Debug for MockClock {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            let t = *self.lock();
            f.debug_struct("MockClock")
                .field("wall", &t.wall)
                .field("mono", &t.mono)
                .finish()
        }
    }
}

#[cfg(all(test, feature = "test-util"))]
mod tests {
    use std::time::{Duration, UNIX_EPOCH};

    use super::{Clock, MockClock};

    #[test]
    fn a_mock_clock_moves_only_when_told_and_clones_share_it() {
        let mock = MockClock::new();
        let clock = Clock::from(mock.clone());
        assert!(!clock.is_system());
        let (wall, mono) = (clock.now(), clock.instant());
        assert_eq!((clock.now(), clock.instant()), (wall, mono));
        mock.clone().advance(Duration::from_secs(61));
        assert_eq!(clock.now(), wall + Duration::from_secs(61));
        assert_eq!(clock.instant(), mono + Duration::from_secs(61));
    }

    #[test]
    fn setting_the_wall_time_leaves_monotonic_time_alone() {
        let mock = MockClock::new();
        let mono = mock.instant();
        let then = UNIX_EPOCH + Duration::from_secs(784_111_777);
        mock.set(then);
        assert_eq!((mock.now(), mock.instant()), (then, mono));
    }

    #[test]
    fn the_default_clock_is_the_system_clock() {
        let clock = Clock::default();
        assert!(clock.is_system());
        let before = std::time::SystemTime::now();
        assert!(clock.now() >= before);
    }
}
