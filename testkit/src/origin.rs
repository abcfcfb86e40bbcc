use std::time::Duration;

use bytes::Bytes;
use uip_cache_core::store::{
    Coordination, MemoryUsage, PutOptions, Storage, StoreError, StoreErrorKind, StoreFuture,
    StoreHealth, StoreStatus,
};
use uip_cache_core::UrlPattern;

/// What a mock origin answers: status, headers, body chunks (sent one frame
/// each, without a length), a delay, or a failure of the service itself.
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

    /// Sets the body chunks.
    pub fn chunks(mut self, chunks: Vec<Bytes>) -> Self {
        self.chunks = chunks;
        self
    }
}

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
