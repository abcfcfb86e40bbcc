//! The mock origin every adapter test talks to: what it answers ([`Reply`]),
//! what it saw ([`Seen`]), and the origin itself ([`Origin`]), which counts
//! its calls; plus a store that fails or hangs ([`FailingStore`]).

use std::fmt;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use bytes::Bytes;
use tokio::sync::watch;
use uip_cache_core::store::{
    Coordination, MemoryUsage, PutOptions, Storage, StoreError, StoreErrorKind, StoreFuture,
    StoreHealth, StoreStatus,
};
use uip_cache_core::UrlPattern;

/// What a mock origin answers: status, headers, body chunks (sent one frame
/// each, the length announced unless [`Reply::chunked`]), a delay, or a
/// failure of the service itself.
#[derive(Clone, Debug)]
pub struct Reply {
    /// Status code.
    pub status: u16,
    /// Headers, in order.
    pub headers: Vec<(&'static str, String)>,
    /// Body chunks.
    pub chunks: Vec<Bytes>,
    /// How long the origin takes.
    pub delay: Duration,
    /// The origin service fails instead of answering.
    pub fail: bool,
    /// Send the body without a length (chunked); by default its length is
    /// announced (`Content-Length`), as most origins do.
    pub chunked: bool,
}

impl Reply {
    /// 200 with `body` in one chunk.
    pub fn ok(body: &str) -> Self {
        Reply {
            status: 200,
            headers: Vec::new(),
            chunks: vec![Bytes::from(body.to_owned())],
            delay: Duration::ZERO,
            fail: false,
            chunked: false,
        }
    }

    /// The body's length when it is announced.
    pub fn known_length(&self) -> Option<u64> {
        (!self.chunked).then(|| self.chunks.iter().map(|c| c.len() as u64).sum())
    }

    /// An origin failure (an error from the service, not a response).
    pub fn error() -> Self {
        Reply {
            fail: true,
            ..Reply::ok("")
        }
    }

    /// Sets the status.
    pub fn status(mut self, s: u16) -> Self {
        self.status = s;
        self
    }

    /// Adds a header.
    pub fn header(mut self, n: &'static str, v: impl Into<String>) -> Self {
        self.headers.push((n, v.into()));
        self
    }

    /// Sets the delay.
    pub fn delay(mut self, d: Duration) -> Self {
        self.delay = d;
        self
    }

    /// Sends the body chunked, without a length.
    pub fn chunked(mut self) -> Self {
        self.chunked = true;
        self
    }

    /// Waits [`Reply::delay`], as the origin does before it answers.
    pub async fn wait_delay(&self) {
        if !self.delay.is_zero() {
            tokio::time::sleep(self.delay).await;
        }
    }

    /// Sets the body chunks.
    pub fn chunks(mut self, chunks: Vec<Bytes>) -> Self {
        self.chunks = chunks;
        self
    }
}

/// What the origin saw of a request.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Seen {
    /// The method.
    pub method: String,
    /// Path and query.
    pub uri: String,
    /// Header fields in order, names in lower case.
    pub headers: Vec<(String, String)>,
    /// The request body the origin received.
    pub body: Bytes,
}

impl Seen {
    /// The first value of header `name` (lower case).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// The path, without the query.
    pub fn path(&self) -> &str {
        self.uri.split('?').next().unwrap_or("")
    }
}

type Handler = dyn Fn(&Seen, usize) -> Reply + Send + Sync;

/// A mock origin: answers each request as its handler says (given what it
/// saw and how many calls came before), counts its calls and keeps what it
/// saw. Clones share all of it. [`crate::tower`] serves it as a Tower
/// service, [`crate::actix`] as an actix-web app.
#[derive(Clone)]
pub struct Origin {
    handler: Arc<Handler>,
    calls: Arc<watch::Sender<usize>>,
    seen: Arc<Mutex<Vec<Seen>>>,
    chunked: bool,
}

impl fmt::Debug for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Origin")
            .field("calls", &self.calls())
            .field("chunked", &self.chunked)
            .finish_non_exhaustive()
    }
}

impl Origin {
    /// An origin answering `handler(request, calls before this one)`.
    pub fn new(handler: impl Fn(&Seen, usize) -> Reply + Send + Sync + 'static) -> Self {
        Origin {
            handler: Arc::new(handler),
            calls: Arc::new(watch::channel(0).0),
            seen: Arc::default(),
            chunked: false,
        }
    }

    /// An origin answering `reply` to everything.
    pub fn always(reply: Reply) -> Self {
        Self::new(move |_, _| reply.clone())
    }

    /// Sends every body chunked, without a length, whatever the reply says:
    /// a streaming origin.
    pub fn chunked(mut self) -> Self {
        self.chunked = true;
        self
    }

    /// Requests that reached the origin so far.
    pub fn calls(&self) -> usize {
        *self.calls.borrow()
    }

    /// Waits (at most 10 s, then panics) until `n` requests have reached
    /// the origin: a fetch is then under way.
    pub async fn wait_for_calls(&self, n: usize) {
        let mut calls = self.calls.subscribe();
        let reached = tokio::time::timeout(Duration::from_secs(10), calls.wait_for(|c| *c >= n));
        if reached.await.is_err() {
            panic!("the origin was called {} times, expected {n}", self.calls());
        }
    }

    /// Every request the origin saw, in order.
    pub fn seen(&self) -> Vec<Seen> {
        self.seen
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// The last request the origin saw.
    pub fn last_seen(&self) -> Option<Seen> {
        self.seen
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .last()
            .cloned()
    }

    /// Counts and records `seen`, and asks the handler for the reply (an
    /// adapter's origin then waits [`Reply::delay`] and sends it).
    pub fn answer(&self, seen: Seen) -> Reply {
        let mut n = 0;
        self.calls.send_modify(|c| {
            n = *c;
            *c += 1;
        });
        let mut reply = (self.handler)(&seen, n);
        self.seen
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(seen);
        reply.chunked |= self.chunked;
        reply
    }
}

/// The origin service failed (a reply made with [`Reply::error`]).
#[derive(Debug)]
pub struct OriginDown;

impl fmt::Display for OriginDown {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("the origin failed")
    }
}

impl std::error::Error for OriginDown {}

/// A store whose every call fails at once, or never completes.
#[derive(Debug)]
pub struct FailingStore {
    hang: bool,
}

impl FailingStore {
    /// Every call fails with a connection error.
    pub fn erroring() -> Self {
        FailingStore { hang: false }
    }

    /// Every call hangs forever (the cache's timeout must cut it).
    pub fn hanging() -> Self {
        FailingStore { hang: true }
    }

    fn fail<'a, T: Send + 'a>(&self) -> StoreFuture<'a, T> {
        if self.hang {
            Box::pin(std::future::pending())
        } else {
            Box::pin(async {
                Err(StoreError::new(
                    StoreErrorKind::Connection,
                    "connection refused",
                ))
            })
        }
    }
}

impl Storage for FailingStore {
    fn get<'a>(&'a self, _: &'a str) -> StoreFuture<'a, Option<Bytes>> {
        self.fail()
    }
    fn put<'a>(&'a self, _: &'a str, _: Bytes, _: PutOptions<'a>) -> StoreFuture<'a, ()> {
        self.fail()
    }
    fn delete<'a>(&'a self, _: &'a str) -> StoreFuture<'a, bool> {
        self.fail()
    }
    fn invalidate_tags<'a>(&'a self, _: &'a [String]) -> StoreFuture<'a, u64> {
        self.fail()
    }
    fn invalidate_pattern<'a>(&'a self, _: &'a UrlPattern) -> StoreFuture<'a, u64> {
        self.fail()
    }
}

/// The defaults: the log and leases never fail (the cache's own cover it).
impl Coordination for FailingStore {}

impl StoreStatus for FailingStore {
    fn keys_count(&self) -> StoreFuture<'_, u64> {
        self.fail()
    }
    fn memory(&self) -> StoreFuture<'_, MemoryUsage> {
        self.fail()
    }
    fn health(&self) -> StoreFuture<'_, StoreHealth> {
        self.fail()
    }
}
