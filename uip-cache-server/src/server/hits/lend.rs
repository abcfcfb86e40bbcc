//! The streams and hyper connections a fast connection gives its stream
//! to: lent for one request ([`LendIo`], [`Lent`]), or handed over for
//! good ([`Prefixed`], [`HyperConn`]).

use std::future::Future;
use std::io::{self, IoSlice};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{ready, Context, Poll};

use bytes::Bytes;
use http::Request;
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use uip_cache_core::Looked;

use crate::interim::InterimStream;
use crate::server::conn::Stream;

/// Writes of a stream wrapper go to its `inner` stream unchanged (the
/// wrappers here only change what is read).
macro_rules! write_through {
    ($wrapper:ident) => {
        impl<I: AsyncWrite + Unpin> AsyncWrite for $wrapper<I> {
            fn poll_write(
                mut self: Pin<&mut Self>,
                cx: &mut Context<'_>,
                buf: &[u8],
            ) -> Poll<io::Result<usize>> {
                Pin::new(&mut self.inner).poll_write(cx, buf)
            }

            fn poll_write_vectored(
                mut self: Pin<&mut Self>,
                cx: &mut Context<'_>,
                bufs: &[IoSlice<'_>],
            ) -> Poll<io::Result<usize>> {
                Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
            }

            fn is_write_vectored(&self) -> bool {
                self.inner.is_write_vectored()
            }

            fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
                Pin::new(&mut self.inner).poll_flush(cx)
            }

            fn poll_shutdown(
                mut self: Pin<&mut Self>,
                cx: &mut Context<'_>,
            ) -> Poll<io::Result<()>> {
                Pin::new(&mut self.inner).poll_shutdown(cx)
            }
        }
    };
}

/// hyper's HTTP/1.1 connection as [`Http1`] holds it once the connection
/// is handed over.
pub(in crate::server) trait HyperConn:
    Future<Output = Result<(), hyper::Error>> + Send
{
    /// Finishes the request in flight, then closes.
    fn drain(self: Pin<&mut Self>);
}

impl<T, S, B> HyperConn for hyper::server::conn::http1::Connection<T, S>
where
    S: hyper::service::HttpService<hyper::body::Incoming, ResBody = B> + Send,
    S::Future: Send,
    S::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    T: hyper::rt::Read + hyper::rt::Write + Unpin + Send,
    B: http_body::Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    fn drain(self: Pin<&mut Self>) {
        self.graceful_shutdown();
    }
}

/// Makes hyper's connection of a stream whose first bytes are given back.
pub(in crate::server) type MakeHyper<I> =
    Box<dyn FnOnce(Prefixed<I>) -> Pin<Box<dyn HyperConn>> + Send>;

/// hyper's HTTP/1.1 connection lent one request (see [`LendIo`]).
pub(in crate::server) trait Lent<I>: Send {
    /// Polls it until it is done, without closing the stream.
    fn poll_done(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), hyper::Error>>;
    /// Asks it to finish the request in flight and be done.
    fn finish(&mut self);
    /// Whether its answer closes the connection (`Connection: close`):
    /// hyper then closes it once the answer is out, and the stream is not
    /// taken back.
    fn closes(&self) -> bool;
    /// The stream, any bytes hyper read and did not use, and the bytes
    /// the client sent after the lent request's head meanwhile.
    fn give_back(self: Box<Self>) -> (I, Bytes, Vec<u8>);
}

/// hyper's connection lent one request, and whether its answer said it
/// closes the connection.
pub(in crate::server) struct LentConn<C> {
    pub(in crate::server) conn: C,
    pub(in crate::server) closes: Arc<AtomicBool>,
}

impl<I, S, B> Lent<I>
    for LentConn<hyper::server::conn::http1::Connection<TokioIo<InterimStream<LendIo<I>>>, S>>
where
    I: Stream,
    S: hyper::service::HttpService<hyper::body::Incoming, ResBody = B> + Send + Unpin,
    S::Future: Send + Unpin,
    S::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    B: http_body::Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    fn poll_done(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), hyper::Error>> {
        self.conn.poll_without_shutdown(cx)
    }

    fn finish(&mut self) {
        Pin::new(&mut self.conn).graceful_shutdown();
    }

    fn closes(&self) -> bool {
        self.closes.load(Ordering::Relaxed)
    }

    fn give_back(self: Box<Self>) -> (I, Bytes, Vec<u8>) {
        let parts = self.conn.into_parts();
        let lent = parts.io.into_inner().into_inner();
        (lent.inner, parts.read_buf, lent.held)
    }
}

/// Makes hyper's connection lent one request, with what the fast loop's
/// lookup of the store found for it (see [`Noted`]).
pub(in crate::server) type MakeLent<I> =
    Box<dyn FnMut(LendIo<I>, Option<Looked>) -> Box<dyn Lent<I>> + Send>;

/// The stream as hyper sees it while it is lent one request: it reads
/// that request's head, then nothing (as from a client that sends no more
/// for now) but the client's close, and writes through. The connection
/// takes the stream back once the answer is written; bytes the client
/// sent meanwhile are held for the fast loop.
pub(in crate::server) struct LendIo<I> {
    head: Bytes,
    inner: I,
    /// Bytes read past the head while lent: the client's next request.
    held: Vec<u8>,
    /// The fast loop holds bytes past the head already: hyper reads none
    /// (as it does not look for a close with bytes of its own unread).
    ahead: bool,
}

impl<I> LendIo<I> {
    /// `inner` lent for the request whose head is `head`; `ahead` when
    /// bytes past it are read already.
    pub(in crate::server) fn new(head: Bytes, inner: I, ahead: bool) -> Self {
        LendIo {
            head,
            inner,
            held: Vec::new(),
            ahead,
        }
    }
}

/// The service of a lent connection: it gives the one request it is lent
/// for what the fast loop's lookup found ([`Looked`], which the cache
/// layer takes as that request's lookup).
pub(in crate::server) struct Noted<S> {
    pub(in crate::server) inner: S,
    pub(in crate::server) looked: Mutex<Option<Looked>>,
}

impl<S> hyper::service::Service<Request<Incoming>> for Noted<S>
where
    S: hyper::service::Service<Request<Incoming>>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = S::Future;

    fn call(&self, mut req: Request<Incoming>) -> Self::Future {
        let looked = self
            .looked
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        if let Some(looked) = looked {
            req.extensions_mut().insert(looked);
        }
        self.inner.call(req)
    }
}

impl<I: AsyncRead + Unpin> AsyncRead for LendIo<I> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if self.head.is_empty() {
            if self.ahead || !self.held.is_empty() {
                // No waker kept: the connection looks at hyper again as
                // soon as it has answered (see `Http1::poll`).
                return Poll::Pending;
            }
            // hyper reads on while it answers to see the client close (and
            // gives the request up then); what the client sends instead is
            // held for the fast loop, and hyper reads nothing more.
            let mut bytes = [0u8; 1024];
            let mut ahead = ReadBuf::new(&mut bytes);
            ready!(Pin::new(&mut self.inner).poll_read(cx, &mut ahead))?;
            if ahead.filled().is_empty() {
                return Poll::Ready(Ok(()));
            }
            let ahead = ahead.filled().to_vec();
            self.held = ahead;
            return Poll::Pending;
        }
        let n = self.head.len().min(buf.remaining());
        let taken = self.head.split_to(n);
        buf.put_slice(&taken);
        Poll::Ready(Ok(()))
    }
}

write_through!(LendIo);

/// A stream whose first bytes, read before hyper took it, are given back
/// first.
pub(in crate::server) struct Prefixed<I> {
    prefix: Bytes,
    inner: I,
}

impl<I> Prefixed<I> {
    /// `inner` with nothing to give back.
    pub(in crate::server) fn new(inner: I) -> Self {
        Prefixed::with(Bytes::new(), inner)
    }

    /// `inner`, whose first bytes `prefix` were read from it already.
    pub(in crate::server) fn with(prefix: Bytes, inner: I) -> Self {
        Prefixed { prefix, inner }
    }
}

impl<I: AsyncRead + Unpin> AsyncRead for Prefixed<I> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if self.prefix.is_empty() {
            return Pin::new(&mut self.inner).poll_read(cx, buf);
        }
        let n = self.prefix.len().min(buf.remaining());
        let taken = self.prefix.split_to(n);
        buf.put_slice(&taken);
        Poll::Ready(Ok(()))
    }
}

write_through!(Prefixed);
