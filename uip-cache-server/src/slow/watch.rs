//! One client connection's watch: what it owes its client, when it last
//! made progress, and what a look at it calls for.

use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use uip_cache_core::tee::QueueGauge;

use super::inflight::Inflight;
use super::{ms, now_ms, ClientLimits, HEADER_READ_TIMEOUT};

/// One client connection's progress (see the module docs).
pub(crate) struct Watch {
    pub(super) inflight: Arc<Inflight>,
    pub(super) opened: u64,
    /// When the socket last took bytes (the opening at first).
    pub(super) wrote: AtomicU64,
    /// Since when a write has waited for the socket; 0: none waits.
    pub(super) blocked: AtomicU64,
    /// Body bytes handed to the connection and not yet taken by the socket.
    pub(super) owed: AtomicU64,
    /// All body bytes handed, and all the socket took while some were owed
    /// (HTTP/2's rule: what was owed must be taken within the timeout).
    pub(super) handed_total: AtomicU64,
    pub(super) released_total: AtomicU64,
    /// Requests in progress: from the service call to the response body's
    /// end.
    pub(super) requests: AtomicU32,
    /// Requests begun since the connection opened.
    begun: AtomicU64,
    /// When the last request ended (the opening at first).
    pub(super) idle_since: AtomicU64,
    /// When the first byte of a new request arrived while none was in
    /// progress; 0: none since.
    pub(super) read_since: AtomicU64,
    /// Bodies waiting on the client (an HTTP/2 response body its stream
    /// does not take, a request body the client does not send): since when.
    pub(super) waits: Mutex<Vec<Arc<AtomicU64>>>,
    /// Misses being stored: what their bodies have queued for the client,
    /// and the sum counted in the listener's bytes at the last look.
    pub(super) queues: Mutex<Vec<QueueGauge>>,
    pub(super) queued: AtomicU64,
    pub(super) doomed: AtomicBool,
    pub(super) doomed_owed: AtomicU64,
    pub(super) kill: tokio::sync::Notify,
    pub(super) reset: AtomicBool,
}

/// What a look at a connection's watch says.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// Nothing to do.
    Fine,
    /// No request for `idle_timeout`: close gracefully.
    Idle,
    /// Close now, with a reset; the reason, for the log.
    Stalled(&'static str),
}

/// HTTP/2's drain rule: the response bytes owed at `since` must all have
/// been taken `send_timeout` later.
#[derive(Debug, Default)]
pub(crate) struct DrainMark(Option<(u64, u64)>);

impl Watch {
    /// A watch for a new connection of `inflight`, opened at `now`.
    pub(super) fn new(inflight: Arc<Inflight>, now: u64) -> Self {
        Watch {
            inflight,
            opened: now,
            wrote: AtomicU64::new(now),
            blocked: AtomicU64::new(0),
            owed: AtomicU64::new(0),
            handed_total: AtomicU64::new(0),
            released_total: AtomicU64::new(0),
            requests: AtomicU32::new(0),
            begun: AtomicU64::new(0),
            idle_since: AtomicU64::new(now),
            read_since: AtomicU64::new(0),
            waits: Mutex::new(Vec::new()),
            queues: Mutex::new(Vec::new()),
            queued: AtomicU64::new(0),
            doomed: AtomicBool::new(false),
            doomed_owed: AtomicU64::new(0),
            kill: tokio::sync::Notify::new(),
            reset: AtomicBool::new(false),
        }
    }

    /// The socket took `n` bytes.
    pub(crate) fn wrote(&self, n: usize) {
        if n == 0 {
            return;
        }
        self.wrote.store(now_ms(), Ordering::Relaxed);
        if self.blocked.load(Ordering::Relaxed) != 0 {
            self.blocked.store(0, Ordering::Relaxed);
        }
        if self.owed.load(Ordering::Relaxed) == 0 {
            return;
        }
        let n = n as u64;
        let before = self
            .owed
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |o| {
                Some(o.saturating_sub(n))
            })
            .unwrap_or(0);
        let freed = before.min(n);
        if freed > 0 {
            self.released_total.fetch_add(freed, Ordering::Relaxed);
            self.inflight.sub(freed);
        }
    }

    /// How long the connection has been stalled, as a sort key: a blocked
    /// write first, by when it blocked; then when the socket last took
    /// bytes.
    pub(super) fn stalled_since(&self) -> (bool, u64) {
        match self.blocked.load(Ordering::Relaxed) {
            0 => (true, self.wrote.load(Ordering::Relaxed)),
            since => (false, since),
        }
    }

    /// A write found the socket full.
    pub(crate) fn blocked(&self) {
        if self.blocked.load(Ordering::Relaxed) == 0 {
            self.blocked.store(now_ms(), Ordering::Relaxed);
        }
    }

    /// The socket gave `n` bytes.
    pub(crate) fn read(&self, n: usize) {
        if n > 0
            && self.requests.load(Ordering::Relaxed) == 0
            && self.read_since.load(Ordering::Relaxed) == 0
        {
            self.read_since.store(now_ms(), Ordering::Relaxed);
        }
    }

    /// A response body handed `n` bytes to the connection.
    pub(super) fn handed(&self, n: usize) {
        let n = n as u64;
        if n == 0 {
            return;
        }
        self.owed.fetch_add(n, Ordering::Relaxed);
        self.handed_total.fetch_add(n, Ordering::Relaxed);
        self.inflight.add(n);
    }

    /// What the connection holds for its client: bytes owed and queued.
    pub(super) fn holds(&self) -> u64 {
        self.owed
            .load(Ordering::Relaxed)
            .saturating_add(self.queued.load(Ordering::Relaxed))
    }

    /// A response body that queues what its client has not taken (see
    /// the module docs), counted from the next look on.
    pub(crate) fn hold(&self, queue: QueueGauge) {
        self.queues
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(queue);
    }

    /// Counts what the connection's queues hold now in the listener's
    /// bytes (which may choose connections to close).
    pub(super) fn count_queues(&self) {
        let now: u64 = {
            let mut queues = self.queues.lock().unwrap_or_else(|e| e.into_inner());
            if queues.is_empty() && self.queued.load(Ordering::Relaxed) == 0 {
                return;
            }
            queues.retain(|q| !q.is_gone());
            queues.iter().map(QueueGauge::bytes).sum()
        };
        let before = self.queued.swap(now, Ordering::Relaxed);
        if now > before {
            self.inflight.add(now - before);
        } else {
            self.inflight.sub(before - now);
        }
    }

    /// A request begins; it ends when the guard is dropped.
    pub(crate) fn request(self: &Arc<Self>) -> Exchange {
        self.requests.fetch_add(1, Ordering::Relaxed);
        self.begun.fetch_add(1, Ordering::Relaxed);
        self.read_since.store(0, Ordering::Relaxed);
        Exchange(self.clone())
    }

    /// Requests begun on the connection so far, and whether one is in
    /// progress now (its response body not ended).
    pub(crate) fn requests(&self) -> (u64, bool) {
        (
            self.begun.load(Ordering::Relaxed),
            self.requests.load(Ordering::Relaxed) != 0,
        )
    }

    /// A body that may wait on the client, watched from now on.
    pub(crate) fn wait(&self, waiting: bool) -> Wait {
        let since = Arc::new(AtomicU64::new(if waiting { now_ms() } else { 0 }));
        self.waits
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(since.clone());
        Wait(since)
    }

    /// Chosen to close by the in-flight bound: what it owed then.
    pub(super) fn doom(&self) -> u64 {
        if self.doomed.swap(true, Ordering::Relaxed) {
            return 0;
        }
        let owed = self.holds();
        self.doomed_owed.store(owed, Ordering::Relaxed);
        self.inflight.doomed.fetch_add(owed, Ordering::Relaxed);
        self.kill.notify_one();
        owed
    }

    /// Resolves once the in-flight bound chose this connection to close.
    pub(crate) async fn doomed(&self) {
        self.kill.notified().await;
    }

    /// The socket is to be closed with a reset (its unsent bytes dropped).
    pub(crate) fn reset(&self) {
        self.reset.store(true, Ordering::Relaxed);
    }

    /// Whether the socket is to be closed with a reset.
    pub(crate) fn resets(&self) -> bool {
        self.reset.load(Ordering::Relaxed)
    }

    /// What the connection's state at `now` calls for.
    pub(crate) fn check(
        &self,
        limits: &ClientLimits,
        now: u64,
        http2: bool,
        drain: &mut DrainMark,
    ) -> Verdict {
        self.count_queues();
        let send = ms(limits.send_timeout);
        let blocked = self.blocked.load(Ordering::Relaxed);
        if blocked != 0 && now.saturating_sub(blocked) >= send {
            return Verdict::Stalled("the client took no response bytes for send_timeout");
        }
        {
            let mut waits = self.waits.lock().unwrap_or_else(|e| e.into_inner());
            waits.retain(|w| Arc::strong_count(w) > 1);
            let stalled = waits.iter().any(|w| {
                let since = w.load(Ordering::Relaxed);
                since != 0 && now.saturating_sub(since) >= send
            });
            if stalled {
                return Verdict::Stalled("a body waited on the client for send_timeout");
            }
        }
        if http2 {
            let released = self.released_total.load(Ordering::Relaxed);
            match drain.0 {
                Some((_, target)) if released >= target => drain.0 = None,
                Some((since, _)) if now.saturating_sub(since) >= send => {
                    return Verdict::Stalled(
                        "response bytes owed to the client were not taken within send_timeout",
                    )
                }
                _ => {}
            }
            let handed = self.handed_total.load(Ordering::Relaxed);
            if drain.0.is_none() && handed > released {
                drain.0 = Some((now, handed));
            }
        }
        if self.requests.load(Ordering::Relaxed) > 0 {
            return Verdict::Fine;
        }
        if !http2 {
            let started = self.read_since.load(Ordering::Relaxed);
            if started != 0 {
                if now.saturating_sub(started) >= ms(HEADER_READ_TIMEOUT) {
                    return Verdict::Stalled("request headers not finished in time");
                }
                return Verdict::Fine;
            }
        }
        let idle = self.idle_since.load(Ordering::Relaxed).max(self.opened);
        if now.saturating_sub(idle) >= ms(limits.idle_timeout) {
            return Verdict::Idle;
        }
        Verdict::Fine
    }
}

impl Drop for Watch {
    fn drop(&mut self) {
        let held = self.owed.get_mut().saturating_add(*self.queued.get_mut());
        if held > 0 {
            self.inflight.sub(held);
        }
        let doomed = *self.doomed_owed.get_mut();
        if doomed > 0 {
            self.inflight.doomed.fetch_sub(doomed, Ordering::Relaxed);
        }
    }
}

impl fmt::Debug for Watch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Watch")
            .field("owed", &self.owed.load(Ordering::Relaxed))
            .field("requests", &self.requests.load(Ordering::Relaxed))
            .finish_non_exhaustive()
    }
}

/// A request in progress on a connection; ends when dropped.
pub(crate) struct Exchange(pub(super) Arc<Watch>);

impl Exchange {
    /// Its response handed `n` bytes of body to the connection (see the
    /// module docs of [`crate::slow`]: hand them in pieces of at most
    /// [`crate::slow::HTTP1_PIECE`]).
    pub(crate) fn handed(&self, n: usize) {
        self.0.handed(n);
    }
}

impl Drop for Exchange {
    fn drop(&mut self) {
        if self.0.requests.fetch_sub(1, Ordering::Relaxed) == 1 {
            self.0.idle_since.store(now_ms(), Ordering::Relaxed);
            self.0.read_since.store(0, Ordering::Relaxed);
        }
    }
}

/// A body that may wait on the client: since when it does (0: it does
/// not).
pub(crate) struct Wait(pub(super) Arc<AtomicU64>);

impl Wait {
    pub(super) fn set(&self, waiting: bool) {
        let now = self.0.load(Ordering::Relaxed);
        match (waiting, now) {
            (true, 0) => self.0.store(now_ms(), Ordering::Relaxed),
            (false, n) if n != 0 => self.0.store(0, Ordering::Relaxed),
            _ => {}
        }
    }
}

impl fmt::Debug for Wait {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("Wait")
            .field(&self.0.load(Ordering::Relaxed))
            .finish()
    }
}
