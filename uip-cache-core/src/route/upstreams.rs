//! The backends of one route: round robin, and passive health checks as
//! nginx's `max_fails=1 fail_timeout=...`.

use std::fmt;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

/// The backends of a route, each a URL and the client `T` that reaches it.
///
/// Requests take them in turn (round robin). A backend that could not be
/// connected to (refused, unreachable, or no connection within the connect
/// timeout) is marked down for `fail_timeout` and skipped meanwhile; a
/// request that reaches it again (once the time is over, or because every
/// backend is down) clears the mark when it succeeds. When every backend is
/// down, the one whose `fail_timeout` ends first is tried anyway rather
/// than failing the request without trying (nginx answers 502 "no live
/// upstreams" there). A route with one backend never marks it down.
///
/// Time is read by the caller (core's [`Clock`](crate::Clock), so tests
/// move a mock clock instead of sleeping) and passed in as an [`Instant`].
pub struct UpstreamSet<T> {
    servers: Vec<Backend<T>>,
    fail_timeout: Duration,
    next: AtomicUsize,
}

struct Backend<T> {
    url: String,
    client: T,
    /// Until when it is skipped; `None` while it is up.
    down_until: Mutex<Option<Instant>>,
}

impl<T> Backend<T> {
    fn down_until(&self) -> Option<Instant> {
        *self
            .down_until
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    fn set_down_until(&self, until: Option<Instant>) -> Option<Instant> {
        std::mem::replace(
            &mut *self
                .down_until
                .lock()
                .unwrap_or_else(PoisonError::into_inner),
            until,
        )
    }
}

impl<T> UpstreamSet<T> {
    /// The backends `urls` with their clients, skipped for `fail_timeout`
    /// after a failed connection (`Duration::ZERO`: never skipped).
    pub fn new(servers: Vec<(String, T)>, fail_timeout: Duration) -> Self {
        UpstreamSet {
            servers: servers
                .into_iter()
                .map(|(url, client)| Backend {
                    url,
                    client,
                    down_until: Mutex::new(None),
                })
                .collect(),
            fail_timeout,
            next: AtomicUsize::new(0),
        }
    }

    /// How many backends there are.
    pub fn len(&self) -> usize {
        self.servers.len()
    }

    /// Whether there are none (a set compiled from a config never is).
    pub fn is_empty(&self) -> bool {
        self.servers.is_empty()
    }

    /// The URL of backend `i`.
    ///
    /// # Panics
    ///
    /// If `i` is not below [`len`](Self::len).
    pub fn url(&self, i: usize) -> &str {
        &self.servers[i].url
    }

    /// The client of backend `i`.
    ///
    /// # Panics
    ///
    /// If `i` is not below [`len`](Self::len).
    pub fn client(&self, i: usize) -> &T {
        &self.servers[i].client
    }

    /// How long a backend that failed is skipped.
    pub fn fail_timeout(&self) -> Duration {
        self.fail_timeout
    }

    /// Whether backend `i` is marked down at `now`.
    pub fn is_down(&self, i: usize, now: Instant) -> bool {
        self.servers
            .get(i)
            .and_then(Backend::down_until)
            .is_some_and(|until| until > now)
    }

    /// The backends one request tries, each at most once, in order: those
    /// up at `now` starting with the next in round robin, then those down,
    /// the one whose `fail_timeout` ends first first. Call
    /// [`failed`](Self::failed) for each that could not be connected to
    /// before trying the next, and [`succeeded`](Self::succeeded) for the
    /// one that answered.
    pub fn attempts(&self, now: Instant) -> Attempts {
        let n = self.servers.len();
        if n <= 1 {
            return Attempts {
                order: Order::One((n == 1).then_some(0)),
            };
        }
        let turn = self.next.fetch_add(1, Ordering::Relaxed);
        let states: Vec<Option<Instant>> = self
            .servers
            .iter()
            .map(|s| s.down_until().filter(|&until| until > now))
            .collect();
        let up: Vec<usize> = (0..n).filter(|&i| states[i].is_none()).collect();
        let mut order = Vec::with_capacity(n);
        if !up.is_empty() {
            let first = turn % up.len();
            order.extend(up[first..].iter().chain(&up[..first]).copied());
        }
        let mut down: Vec<(Instant, usize)> = (0..n)
            .filter_map(|i| states[i].map(|until| (until, i)))
            .collect();
        down.sort_unstable();
        order.extend(down.into_iter().map(|(_, i)| i));
        Attempts {
            order: Order::Many(order.into_iter()),
        }
    }

    /// Marks backend `i` down from `now` for `fail_timeout` (not when it is
    /// the only one, or `fail_timeout` is zero). `true` when it was up
    /// before: the failure is news worth a log line.
    pub fn failed(&self, i: usize, now: Instant) -> bool {
        if self.servers.len() <= 1 || self.fail_timeout.is_zero() {
            return false;
        }
        let Some(server) = self.servers.get(i) else {
            return false;
        };
        let until = now.checked_add(self.fail_timeout);
        let before = server.set_down_until(until);
        before.is_none_or(|b| b <= now)
    }

    /// Clears the mark of backend `i`, which answered.
    pub fn succeeded(&self, i: usize) {
        if let Some(server) = self.servers.get(i) {
            // Read first: the common case (it was up) takes no write.
            if server.down_until().is_some() {
                server.set_down_until(None);
            }
        }
    }
}

impl<T> fmt::Debug for UpstreamSet<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("UpstreamSet")
            .field(
                "urls",
                &self.servers.iter().map(|s| &s.url).collect::<Vec<_>>(),
            )
            .field("fail_timeout", &self.fail_timeout)
            .finish_non_exhaustive()
    }
}

/// The backends one request tries, in order, by index (see
/// [`UpstreamSet::attempts`]).
#[derive(Debug)]
pub struct Attempts {
    order: Order,
}

#[derive(Debug)]
enum Order {
    One(Option<usize>),
    Many(std::vec::IntoIter<usize>),
}

impl Iterator for Attempts {
    type Item = usize;

    fn next(&mut self) -> Option<usize> {
        match &mut self.order {
            Order::One(i) => i.take(),
            Order::Many(it) => it.next(),
        }
    }
}
