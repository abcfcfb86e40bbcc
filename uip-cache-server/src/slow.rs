//! Slow clients and idle connections: what a client connection owes its
//! client, when it last made progress, and the rules that close it.
//!
//! Every client connection has a watch, fed without locks by its socket
//! ([`crate::io::ClientStream`]: bytes read, bytes written, writes the
//! socket could not take) and by its response and request bodies. The
//! connection's own task looks at it a few times per timeout and closes
//! the connection:
//!
//! - with a reset, when a response has made no progress towards the client
//!   for [`ClientLimits::send_timeout`]: a socket write the client does not
//!   read, an HTTP/2 response body its flow control holds (window 0), HTTP/2
//!   response bytes handed to the connection and not sent since, or a
//!   request body the client stopped sending; also when an HTTP/1 client
//!   started a request and has not finished its headers in
//!   [`HEADER_READ_TIMEOUT`];
//! - gracefully (HTTP/2: GOAWAY), when no request has been in progress for
//!   [`ClientLimits::idle_timeout`]; one that does not finish closing within
//!   `send_timeout` is then reset;
//! - with a reset, when the listener holds more than
//!   [`ClientLimits::max_inflight_bytes`] of response bytes for its clients
//!   together: the connections that went longest without the socket taking
//!   a byte go first, until the rest fits.
//!
//! # What counts as in flight
//!
//! A response body hands its bytes to the connection (hyper) in pieces of
//! at most 256 KB (HTTP/1) or 32 KB (HTTP/2); bytes handed and not yet
//! taken by the socket are *owed*. That is the memory a slow client makes
//! the server hold on top of what it would hold anyway: hyper's write
//! queue, HTTP/2 send buffers, chunks read from the upstream. A stored body
//! is one shared allocation (an `Arc`, sealed memory for large ones) that
//! every reader of the entry shares with the store, and the store counts it
//! against `store.max_bytes`: only the pieces a connection has been handed
//! count as owed, not the whole body, so a thousand clients downloading one
//! large entry at a normal pace are not counted a thousand times. A stored
//! body evicted while a slow client still reads it stays alive until that
//! client finishes or `send_timeout` cuts it. Response heads and HTTP/2
//! framing are not counted; kernel socket buffers are not either (a reset
//! frees them at once).
//!
//! A miss that is being stored reads the origin at the origin's pace, not
//! the client's, and queues what the client has not taken yet (up to the
//! policy's `max_size`, see [`uip_cache_core::tee`]): those queued bytes
//! count as well. They are summed when the connection looks at its watch
//! (every [`ClientLimits::send_timeout`] / 4, at most 5 s), so a burst of
//! them can pass the bound for that long.

use std::fmt;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock, Weak};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::{Buf, Bytes};
use http_body::{Body, Frame, SizeHint};
use hyper::body::Incoming;
use uip_cache_core::config::ServerConfig;
use uip_cache_core::tee::QueueGauge;

/// Time a client has to send a request's headers once it started sending
/// them (or from its connection's opening, for the first request).
pub const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(30);

/// Largest piece of a response body handed to an HTTP/1 connection at
/// once (large enough for `sendfile` to pay off, see [`crate::io`]).
pub(crate) const HTTP1_PIECE: usize = 256 * 1024;

/// Largest piece of a response body handed to an HTTP/2 stream at once
/// (HTTP/2 copies its frames anyway): a stream takes a new piece only when
/// its client has taken most of the last, so a stream that takes nothing
/// for `send_timeout` shows.
pub(crate) const HTTP2_PIECE: usize = 32 * 1024;

// ===== impl ClientLimits =====

/// How a listener treats slow and idle clients: `server.send_timeout`,
/// `server.idle_timeout` and `server.max_inflight_bytes` (see the module
/// docs for what each closes).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct ClientLimits {
    /// Longest time a response may make no progress towards its client
    /// (default 60s).
    pub send_timeout: Duration,
    /// Longest time a connection may stay without a request in progress
    /// (default 75s).
    pub idle_timeout: Duration,
    /// Response bytes the connections of one listener may owe their clients
    /// together (default 256 MB).
    pub max_inflight_bytes: u64,
}

impl Default for ClientLimits {
    fn default() -> Self {
        ClientLimits::from_config(&ServerConfig::default())
    }
}

impl ClientLimits {
    /// The limits a config's `server` section sets.
    pub fn from_config(server: &ServerConfig) -> Self {
        ClientLimits {
            send_timeout: server.send_timeout.get(),
            idle_timeout: server.idle_timeout.get(),
            max_inflight_bytes: server.max_inflight_bytes.bytes(),
        }
    }

    /// How often a connection looks at its watch: a quarter of the shortest
    /// limit, between 20 ms and 5 s (a limit is enforced that much late at
    /// most).
    pub(crate) fn tick(&self) -> Duration {
        let shortest = self
            .send_timeout
            .min(self.idle_timeout)
            .min(HEADER_READ_TIMEOUT);
        (shortest / 4).clamp(Duration::from_millis(20), Duration::from_secs(5))
    }
}

/// Milliseconds on a process-wide monotonic clock, from 1 (0 is "never").
pub(crate) fn now_ms() -> u64 {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    let epoch = *EPOCH.get_or_init(Instant::now);
    u64::try_from(epoch.elapsed().as_millis()).unwrap_or(u64::MAX / 2) + 1
}

fn ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX / 2)
}

// ===== impl Inflight =====

/// The bytes the connections of one listener owe their clients, and the
/// connections, to close the longest-stalled when there are too many.
pub(crate) struct Inflight {
    limit: u64,
    bytes: AtomicU64,
    /// Owed bytes of connections chosen to close and not closed yet.
    doomed: AtomicU64,
    conns: Mutex<Registry>,
}

struct Registry {
    conns: Vec<Weak<Watch>>,
    prune_at: usize,
}

impl Inflight {
    pub(crate) fn new(limit: u64) -> Arc<Self> {
        Arc::new(Inflight {
            limit,
            bytes: AtomicU64::new(0),
            doomed: AtomicU64::new(0),
            conns: Mutex::new(Registry {
                conns: Vec::new(),
                prune_at: 1024,
            }),
        })
    }

    /// A watch for a new connection.
    pub(crate) fn watch(self: &Arc<Self>) -> Arc<Watch> {
        let now = now_ms();
        let watch = Arc::new(Watch {
            inflight: self.clone(),
            opened: now,
            wrote: AtomicU64::new(now),
            blocked: AtomicU64::new(0),
            owed: AtomicU64::new(0),
            handed_total: AtomicU64::new(0),
            released_total: AtomicU64::new(0),
            requests: AtomicU32::new(0),
            idle_since: AtomicU64::new(now),
            read_since: AtomicU64::new(0),
            waits: Mutex::new(Vec::new()),
            queues: Mutex::new(Vec::new()),
            queued: AtomicU64::new(0),
            doomed: AtomicBool::new(false),
            doomed_owed: AtomicU64::new(0),
            kill: tokio::sync::Notify::new(),
            reset: AtomicBool::new(false),
        });
        // One lock per connection, never per write.
        let mut reg = self.conns.lock().unwrap_or_else(|e| e.into_inner());
        if reg.conns.len() >= reg.prune_at {
            reg.conns.retain(|w| w.strong_count() > 0);
            reg.prune_at = (reg.conns.len() * 2).max(1024);
        }
        reg.conns.push(Arc::downgrade(&watch));
        watch
    }

    /// Bytes owed beyond the limit, not counting connections already
    /// chosen to close.
    fn excess(&self) -> u64 {
        self.bytes
            .load(Ordering::Relaxed)
            .saturating_sub(self.doomed.load(Ordering::Relaxed))
            .saturating_sub(self.limit)
    }

    fn add(&self, n: u64) {
        let before = self.bytes.fetch_add(n, Ordering::Relaxed);
        if before.saturating_add(n) > self.limit {
            self.shed();
        }
    }

    fn sub(&self, n: u64) {
        self.bytes.fetch_sub(n, Ordering::Relaxed);
    }

    /// Past the limit: chooses the connections whose socket has refused
    /// writes the longest (then those that went longest without taking a
    /// byte), until what they owe covers the excess, and tells them to
    /// close. One caller at a time; the others go on.
    fn shed(&self) {
        if self.excess() == 0 {
            return;
        }
        let Ok(reg) = self.conns.try_lock() else {
            return;
        };
        let mut excess = self.excess();
        if excess == 0 {
            return;
        }
        let mut stalled: Vec<((bool, u64), Arc<Watch>)> = reg
            .conns
            .iter()
            .filter_map(Weak::upgrade)
            .filter(|w| !w.doomed.load(Ordering::Relaxed) && w.holds() > 0)
            .map(|w| (w.stalled_since(), w))
            .collect();
        drop(reg);
        stalled.sort_unstable_by_key(|(since, _)| *since);
        let mut closed = 0usize;
        for (_, w) in &stalled {
            if excess == 0 {
                break;
            }
            excess = excess.saturating_sub(w.doom());
            closed += 1;
        }
        tracing::debug!(
            closed,
            limit = self.limit,
            "bytes in flight to slow clients past server.max_inflight_bytes: closing the longest-stalled connections"
        );
    }
}

impl fmt::Debug for Inflight {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Inflight")
            .field("limit", &self.limit)
            .field("bytes", &self.bytes.load(Ordering::Relaxed))
            .finish_non_exhaustive()
    }
}

// ===== impl Watch =====

/// One client connection's progress (see the module docs).
pub(crate) struct Watch {
    inflight: Arc<Inflight>,
    opened: u64,
    /// When the socket last took bytes (the opening at first).
    wrote: AtomicU64,
    /// Since when a write has waited for the socket; 0: none waits.
    blocked: AtomicU64,
    /// Body bytes handed to the connection and not yet taken by the socket.
    owed: AtomicU64,
    /// All body bytes handed, and all the socket took while some were owed
    /// (HTTP/2's rule: what was owed must be taken within the timeout).
    handed_total: AtomicU64,
    released_total: AtomicU64,
    /// Requests in progress: from the service call to the response body's
    /// end.
    requests: AtomicU32,
    /// When the last request ended (the opening at first).
    idle_since: AtomicU64,
    /// When the first byte of a new request arrived while none was in
    /// progress; 0: none since.
    read_since: AtomicU64,
    /// Bodies waiting on the client (an HTTP/2 response body its stream
    /// does not take, a request body the client does not send): since when.
    waits: Mutex<Vec<Arc<AtomicU64>>>,
    /// Misses being stored: what their bodies have queued for the client,
    /// and the sum counted in the listener's bytes at the last look.
    queues: Mutex<Vec<QueueGauge>>,
    queued: AtomicU64,
    doomed: AtomicBool,
    doomed_owed: AtomicU64,
    kill: tokio::sync::Notify,
    reset: AtomicBool,
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
    fn stalled_since(&self) -> (bool, u64) {
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
    fn handed(&self, n: usize) {
        let n = n as u64;
        if n == 0 {
            return;
        }
        self.owed.fetch_add(n, Ordering::Relaxed);
        self.handed_total.fetch_add(n, Ordering::Relaxed);
        self.inflight.add(n);
    }

    /// What the connection holds for its client: bytes owed and queued.
    fn holds(&self) -> u64 {
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
    fn count_queues(&self) {
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
        self.read_since.store(0, Ordering::Relaxed);
        Exchange(self.clone())
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
    fn doom(&self) -> u64 {
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
pub(crate) struct Exchange(Arc<Watch>);

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
pub(crate) struct Wait(Arc<AtomicU64>);

impl Wait {
    fn set(&self, waiting: bool) {
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

// ===== impl Sent =====

/// A response body on its way to a watched connection: hands its bytes in
/// pieces (counted as owed), keeps its request in progress until dropped,
/// and on HTTP/2 says how long it has been waiting for its stream to take
/// the next piece (boxed: the body need not be `Unpin`, and the crate has
/// no unsafe pin projection).
pub(crate) struct Sent<B> {
    body: Pin<Box<B>>,
    /// The part of the last chunk not handed yet.
    rest: Bytes,
    piece: usize,
    /// HTTP/2: the stream has a piece it has not sent yet (or has not asked
    /// for the first) since then.
    wait: Option<Wait>,
    exchange: Exchange,
}

impl<B> Sent<B> {
    /// `body` for the request `exchange`; `http2` for a stream of an
    /// HTTP/2 connection.
    pub(crate) fn new(body: B, exchange: Exchange, http2: bool) -> Self {
        let (piece, wait) = if http2 {
            (HTTP2_PIECE, Some(exchange.0.wait(true)))
        } else {
            (HTTP1_PIECE, None)
        };
        Sent {
            body: Box::pin(body),
            rest: Bytes::new(),
            piece,
            wait,
            exchange,
        }
    }

    fn next_piece(&mut self) -> Bytes {
        let n = self.rest.len().min(self.piece);
        let piece = self.rest.split_to(n);
        self.exchange.0.handed(n);
        self.waiting(true);
        piece
    }

    fn waiting(&self, waiting: bool) {
        if let Some(w) = &self.wait {
            w.set(waiting);
        }
    }
}

impl<B> Body for Sent<B>
where
    B: Body,
    B::Data: Buf,
{
    type Data = Bytes;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, B::Error>>> {
        let this = self.get_mut();
        if !this.rest.is_empty() {
            return Poll::Ready(Some(Ok(Frame::data(this.next_piece()))));
        }
        let frame = match this.body.as_mut().poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => frame,
            Poll::Ready(other) => {
                this.waiting(false);
                return Poll::Ready(other.map(|r| r.map(|f| f.map_data(to_bytes))));
            }
            Poll::Pending => {
                // Waiting on the source (the upstream), not the client.
                this.waiting(false);
                return Poll::Pending;
            }
        };
        match frame.into_data() {
            Ok(data) => {
                this.rest = to_bytes(data);
                Poll::Ready(Some(Ok(Frame::data(this.next_piece()))))
            }
            Err(frame) => {
                this.waiting(false);
                Poll::Ready(Some(Ok(frame.map_data(to_bytes))))
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.rest.is_empty() && self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        let inner = self.body.size_hint();
        let rest = self.rest.len() as u64;
        let mut hint = SizeHint::new();
        hint.set_lower(inner.lower().saturating_add(rest));
        if let Some(u) = inner.upper() {
            hint.set_upper(u.saturating_add(rest));
        }
        hint
    }
}

/// A chunk as `Bytes`: no copy when it is one already.
fn to_bytes<D: Buf>(mut data: D) -> Bytes {
    data.copy_to_bytes(data.remaining())
}

// ===== impl ClientBody =====

/// A client's request body, with the time it keeps the proxy waiting
/// watched: a client that stops sending its body for
/// [`ClientLimits::send_timeout`] has its connection closed.
pub struct ClientBody {
    body: Incoming,
    wait: Wait,
}

impl ClientBody {
    pub(crate) fn new(body: Incoming, watch: &Watch) -> Self {
        ClientBody {
            wait: watch.wait(false),
            body,
        }
    }
}

impl fmt::Debug for ClientBody {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientBody")
            .field("body", &self.body)
            .finish_non_exhaustive()
    }
}

impl Body for ClientBody {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        let polled = Pin::new(&mut self.body).poll_frame(cx);
        self.wait.set(polled.is_pending());
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

impl Drop for ClientBody {
    fn drop(&mut self) {
        self.wait.set(false);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits() -> ClientLimits {
        ClientLimits {
            send_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(20),
            max_inflight_bytes: 1000,
        }
    }

    #[test]
    fn a_write_blocked_for_send_timeout_stalls_and_progress_clears_it() {
        let inflight = Inflight::new(1 << 20);
        let w = inflight.watch();
        let _busy = w.request();
        w.blocked();
        let t = w.blocked.load(Ordering::Relaxed);
        let mut d = DrainMark::default();
        assert_eq!(w.check(&limits(), t + 9_999, false, &mut d), Verdict::Fine);
        assert!(matches!(
            w.check(&limits(), t + 10_000, false, &mut d),
            Verdict::Stalled(_)
        ));
        w.wrote(1);
        assert_eq!(w.check(&limits(), t + 60_000, false, &mut d), Verdict::Fine);
    }

    #[test]
    fn a_request_in_progress_keeps_a_connection_busy_and_idle_counts_from_its_end() {
        let inflight = Inflight::new(1 << 20);
        let w = inflight.watch();
        let mut d = DrainMark::default();
        let first = w.request();
        let second = w.request();
        let t = now_ms();
        assert_eq!(w.check(&limits(), t + 100_000, true, &mut d), Verdict::Fine);
        drop(first);
        assert_eq!(w.check(&limits(), t + 100_000, true, &mut d), Verdict::Fine);
        drop(second);
        let ended = w.idle_since.load(Ordering::Relaxed);
        assert_eq!(
            w.check(&limits(), ended + 19_999, true, &mut d),
            Verdict::Fine
        );
        assert_eq!(
            w.check(&limits(), ended + 20_000, true, &mut d),
            Verdict::Idle
        );
    }

    #[test]
    fn http1_headers_begun_must_end_in_time() {
        let inflight = Inflight::new(1 << 20);
        let w = inflight.watch();
        let mut d = DrainMark::default();
        w.read(3);
        let t = w.read_since.load(Ordering::Relaxed);
        // Started: the idle rule no longer applies, the header rule does.
        assert_eq!(w.check(&limits(), t + 25_000, false, &mut d), Verdict::Fine);
        assert!(matches!(
            w.check(&limits(), t + 30_000, false, &mut d),
            Verdict::Stalled(_)
        ));
    }

    #[test]
    fn a_body_waiting_on_the_client_stalls_and_dropped_ones_are_forgotten() {
        let inflight = Inflight::new(1 << 20);
        let w = inflight.watch();
        let _busy = w.request();
        let mut d = DrainMark::default();
        let wait = w.wait(true);
        let t = wait.0.load(Ordering::Relaxed);
        assert!(matches!(
            w.check(&limits(), t + 10_000, false, &mut d),
            Verdict::Stalled(_)
        ));
        wait.set(false);
        assert_eq!(w.check(&limits(), t + 10_000, false, &mut d), Verdict::Fine);
        wait.set(true);
        drop(wait);
        assert_eq!(w.check(&limits(), t + 99_000, false, &mut d), Verdict::Fine);
        assert!(w.waits.lock().unwrap().is_empty());
    }

    #[test]
    fn http2_bytes_owed_must_be_taken_within_send_timeout() {
        let inflight = Inflight::new(1 << 20);
        let w = inflight.watch();
        let _busy = w.request();
        let mut d = DrainMark::default();
        w.handed(100);
        let t = now_ms();
        assert_eq!(w.check(&limits(), t, true, &mut d), Verdict::Fine);
        // Other bytes keep flowing, but not all of those owed at `t`.
        w.wrote(60);
        w.handed(100);
        assert_eq!(w.check(&limits(), t + 5_000, true, &mut d), Verdict::Fine);
        assert!(matches!(
            w.check(&limits(), t + 10_000, true, &mut d),
            Verdict::Stalled(_)
        ));
        // Taken in time: a new mark, for what is owed now.
        let mut d = DrainMark::default();
        assert_eq!(w.check(&limits(), t, true, &mut d), Verdict::Fine);
        w.wrote(140);
        assert_eq!(w.check(&limits(), t + 9_000, true, &mut d), Verdict::Fine);
        assert_eq!(w.check(&limits(), t + 18_000, true, &mut d), Verdict::Fine);
        assert_eq!(inflight.bytes.load(Ordering::Relaxed), 0);
    }

    #[test]
    fn past_the_bound_the_longest_stalled_connections_are_chosen_first() {
        let inflight = Inflight::new(1000);
        let oldest = inflight.watch();
        let newer = inflight.watch();
        let active = inflight.watch();
        oldest.blocked.store(10, Ordering::Relaxed);
        newer.blocked.store(20, Ordering::Relaxed);
        // Took nothing for longer, but is not refusing writes.
        active.wrote.store(1, Ordering::Relaxed);
        active.handed(400);
        newer.handed(400);
        assert!(!newer.doomed.load(Ordering::Relaxed));
        // 1200 > 1000: `oldest` owes the most stalled bytes... once it owes some.
        oldest.handed(400);
        assert!(oldest.doomed.load(Ordering::Relaxed));
        assert!(!newer.doomed.load(Ordering::Relaxed));
        assert!(!active.doomed.load(Ordering::Relaxed));
        assert_eq!(inflight.excess(), 0);
        drop(oldest);
        assert_eq!(inflight.bytes.load(Ordering::Relaxed), 800);
        assert_eq!(inflight.doomed.load(Ordering::Relaxed), 0);
        // Bytes the socket takes are no longer owed.
        newer.wrote(1000);
        assert_eq!(inflight.bytes.load(Ordering::Relaxed), 400);
    }
}
