//! HTTP/1.1 cache hits answered from the parsed request head
//! (`server.fast_hits`).
//!
//! Most requests at the edge are hits of a few hot entries. Through the
//! general path each one becomes an `http::Request` (a header map built
//! and hashed), passes the connection's service, the route, the cache
//! layer and back, and its response is a header map encoded again by
//! hyper: several times the work of finding the entry. Here an HTTP/1.1
//! connection starts on a loop of its own that parses each request head
//! (with `httparse`, the parser hyper itself uses) and asks core for the
//! answer the store has at hand ([`HttpCache::answer_at_hand`]). When core
//! has one, its head is written as hyper would write it and its body goes
//! out as hyper's would (large bodies with `sendfile`, see [`crate::io`]).
//!
//! Only requests whose answer through the general path could not differ
//! are taken: GET or HEAD over HTTP/1.1, an origin-form target that parses
//! as hyper parses it, exactly one `Host`, at most one `Cookie`, no body
//! (no `Content-Length` or `Transfer-Encoding`), no `Expect`, `Upgrade`,
//! hop-by-hop header or `Connection` other than `keep-alive` (the general
//! path removes those before keying), no `Range` (its answers may stream),
//! no forwarding header core would remove first, a route that takes the
//! request, and no debug logging (whose line the general path writes).
//! Every other request is answered by hyper, exactly as without this loop,
//! in one of two ways:
//!
//! - lent: a GET or HEAD over HTTP/1.1 with no body and no `Connection`
//!   other than `keep-alive` (a miss, a stale entry, a range, a bypass, a
//!   refused route...) is served by a hyper connection made for it alone,
//!   which reads that request's head ([`LendIo`]); once its answer is out
//!   hyper is asked to be done and the stream comes back to this loop,
//!   with whatever the client sent meanwhile. An answer that says
//!   `Connection: close` closes the connection, as hyper alone would;
//! - handed over: anything else (a body, `Expect`, `Upgrade`, HTTP/1.0,
//!   `Connection: close`, a head that does not parse or is over 16 KiB)
//!   gives the connection to hyper for the rest of its life, with the bytes
//!   read so far given back first ([`Prefixed`]).
//!
//! Core counts nothing for a request it does not answer here, so each
//! request is counted once, by whichever path answers it.
//!
//! The connection is watched as hyper's is ([`crate::slow`]): the answer
//! is a request in progress on the watch while it is written, its body
//! is handed over in pieces counted as owed, and the connection closes
//! when its watch or the server says so.

use std::future::Future;
use std::io::{self, IoSlice};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{ready, Context, Poll};

use bytes::Bytes;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use uip_cache_core::{
    CachedBody, CachedResponse, Connection, FieldName, HeaderSource, RequestView,
};

use super::conn::Stream;
use super::Proxy;
use crate::interim::InterimStream;
use crate::slow::{Exchange, Watch, HTTP1_PIECE};
use hyper_util::rt::TokioIo;

/// Bytes read for a request head before it goes to hyper as it is (which
/// takes larger heads, up to its own limit).
const HEAD_MAX: usize = 16 * 1024;

/// Room a connection reads into at first; it grows up to [`HEAD_MAX`]
/// for a larger head.
const READ_START: usize = 4 * 1024;

/// Header fields parsed here; a request with more goes to hyper.
const FIELDS_MAX: usize = 48;

/// Request fields after which hyper keeps the connection: a body, a
/// protocol change, an interim response, fields of the connection itself.
const FRAMING_REQUEST: [&str; 8] = [
    "content-length",
    "transfer-encoding",
    "expect",
    "upgrade",
    "te",
    "http2-settings",
    "keep-alive",
    "proxy-connection",
];

/// Request fields that make the general path answer the request (lent
/// the connection for it): hop-by-hop fields it removes before keying,
/// and `Range` (whose answers may be cut as they stream).
const GENERAL: [&str; 4] = ["proxy-authorization", "trailer", "range", "if-range"];

/// What answers the hits of one proxy connection.
#[derive(Clone)]
pub(crate) struct Hits {
    proxy: Proxy,
    connection: Connection,
}

impl Hits {
    /// For a connection of `proxy` with these facts.
    pub(crate) fn new(proxy: &Proxy, connection: Connection) -> Self {
        Hits {
            proxy: proxy.clone(),
            connection,
        }
    }

    /// What to do with a request head: answer it from the hit core has
    /// at hand, lend the connection to hyper for it, or hand the
    /// connection over (see the module docs).
    fn decide(&self, req: &httparse::Request<'_, '_>) -> Decision {
        let Some(method) = req.method else {
            return Decision::Handover;
        };
        if !matches!(method, "GET" | "HEAD") || req.version != Some(1) {
            return Decision::Handover;
        }
        // hyper frames a request with none of these as this loop does,
        // answers it and keeps the connection open.
        for field in req.headers.iter() {
            let name = field.name;
            if name.eq_ignore_ascii_case("connection") {
                if !field.value.eq_ignore_ascii_case(b"keep-alive") {
                    return Decision::Handover;
                }
            } else if FRAMING_REQUEST.iter().any(|g| name.eq_ignore_ascii_case(g)) {
                return Decision::Handover;
            }
        }
        let snapshot = self.proxy.get_ref().snapshot();
        if !snapshot.settings().config().server.fast_hits {
            return Decision::Handover;
        }
        match self.answer(method, req, &snapshot) {
            Some(answer) => Decision::Answer(answer),
            None => Decision::Lend,
        }
    }

    /// The answer to a plain request head when it is a hit core has at
    /// hand and nothing about it needs the general path.
    fn answer(
        &self,
        method: &str,
        req: &httparse::Request<'_, '_>,
        snapshot: &crate::routes::Snapshot,
    ) -> Option<CachedResponse> {
        let target = req.path?;
        if !target.starts_with('/') {
            return None;
        }
        if tracing::enabled!(tracing::Level::DEBUG) {
            return None;
        }
        let (mut hosts, mut cookies) = (0, 0);
        for field in req.headers.iter() {
            let name = field.name;
            if name.eq_ignore_ascii_case("host") {
                hosts += 1;
            } else if name.eq_ignore_ascii_case("cookie") {
                cookies += 1;
            } else if GENERAL.iter().any(|g| name.eq_ignore_ascii_case(g)) {
                return None;
            }
        }
        if hosts != 1 || cookies > 1 {
            return None;
        }
        // The target as hyper makes it (or its 400).
        let uri: http::Uri = target.parse().ok()?;
        let fields = Fields(req.headers);
        let cache = self.proxy.cache();
        snapshot
            .route_for(cache, &self.connection, None, &fields, uri.path())
            .ok()?;
        let cache = cache.pinned(snapshot.settings().clone());
        let origin = cache.client_origin(&self.connection, None, &fields);
        let strip = origin.strip();
        if req.headers.iter().any(|f| strip.contains(f.name)) {
            return None;
        }
        let view = RequestView::new(method, uri.path(), &fields)
            .query(uri.query())
            .origin(origin);
        cache.answer_at_hand(&view)
    }
}

/// What the fast loop does with a request head.
enum Decision {
    /// Write this answer.
    Answer(CachedResponse),
    /// A request without a body that keeps the connection open: hyper
    /// answers it, and gives the connection back.
    Lend,
    /// Anything else: hyper takes the connection for the rest of its life.
    Handover,
}

/// Core's header lookup over a parsed head's fields.
struct Fields<'h, 'b>(&'h [httparse::Header<'b>]);

impl HeaderSource for Fields<'_, '_> {
    fn for_each_value(&self, name: &str, f: &mut dyn FnMut(&[u8])) {
        for field in self.0 {
            if field.name.eq_ignore_ascii_case(name) {
                f(field.value);
            }
        }
    }

    fn first(&self, name: &str) -> Option<&[u8]> {
        self.0
            .iter()
            .find(|field| field.name.eq_ignore_ascii_case(name))
            .map(|field| field.value)
    }
}

// ===== the connection =====

/// hyper's HTTP/1.1 connection as [`Http1`] holds it once the connection
/// is handed over.
pub(super) trait HyperConn: Future<Output = Result<(), hyper::Error>> + Send {
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
pub(super) type MakeHyper<I> = Box<dyn FnOnce(Prefixed<I>) -> Pin<Box<dyn HyperConn>> + Send>;

/// hyper's HTTP/1.1 connection lent one request (see [`LendIo`]).
pub(super) trait Lent<I>: Send {
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
pub(super) struct LentConn<C> {
    pub(super) conn: C,
    pub(super) closes: Arc<AtomicBool>,
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

/// Makes hyper's connection lent one request.
pub(super) type MakeLent<I> = Box<dyn FnMut(LendIo<I>) -> Box<dyn Lent<I>> + Send>;

/// The stream as hyper sees it while it is lent one request: it reads
/// that request's head, then nothing (as from a client that sends no more
/// for now) but the client's close, and writes through. The connection
/// takes the stream back once the answer is written; bytes the client
/// sent meanwhile are held for the fast loop.
pub(super) struct LendIo<I> {
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
    pub(super) fn new(head: Bytes, inner: I, ahead: bool) -> Self {
        LendIo {
            head,
            inner,
            held: Vec::new(),
            ahead,
        }
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

impl<I: AsyncWrite + Unpin> AsyncWrite for LendIo<I> {
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

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// An HTTP/1.1 connection: answered here while its requests are hits,
/// then by hyper (see the module docs).
pub(super) struct Http1<I> {
    phase: Phase<I>,
}

enum Phase<I> {
    Fast(Box<Fast<I>>),
    /// hyper answers one request; the stream comes back to `fast`.
    Lent {
        conn: Box<dyn Lent<I>>,
        fast: Box<Fast<I>>,
        /// Requests the connection had begun when it was lent.
        begun: u64,
        /// The answer is written: hyper was asked to be done.
        returning: bool,
    },
    Hyper(Pin<Box<dyn HyperConn>>),
    /// Between the two, for a moment.
    Moving,
}

struct Fast<I> {
    /// The stream; `None` while it is lent to hyper.
    io: Option<I>,
    hits: Hits,
    watch: Arc<Watch>,
    make: Option<MakeHyper<I>>,
    lend: MakeLent<I>,
    /// Bytes read and not yet answered: `read[..filled]`.
    read: Vec<u8>,
    filled: usize,
    /// The answer being written.
    out: Option<Out>,
    /// Room for the next answer's head.
    head: Vec<u8>,
    /// Asked to close once nothing is in flight.
    draining: bool,
    /// Closing the stream as hyper closes it (TLS sends its
    /// `close_notify`), once nothing is left to write.
    closing: bool,
}

/// An answer on its way to the socket.
struct Out {
    head: Vec<u8>,
    head_sent: usize,
    body: Bytes,
    /// Bytes of `body` handed to the connection (counted as owed).
    handed: usize,
    body_sent: usize,
    /// The rest of a body that is not one piece of memory.
    more: Option<CachedBody>,
    /// Body bytes the head announced and that are still to come from
    /// `more`; a body that ends short closes the connection.
    announced: u64,
    exchange: Exchange,
}

impl<I: Stream> Http1<I> {
    /// A connection that answers its hits here first.
    pub(super) fn fast(
        io: I,
        hits: Hits,
        watch: Arc<Watch>,
        make: MakeHyper<I>,
        lend: MakeLent<I>,
    ) -> Self {
        Http1 {
            phase: Phase::Fast(Box::new(Fast {
                io: Some(io),
                hits,
                watch,
                make: Some(make),
                lend,
                read: vec![0; READ_START],
                filled: 0,
                out: None,
                head: Vec::new(),
                draining: false,
                closing: false,
            })),
        }
    }

    /// A connection hyper serves from the start.
    pub(super) fn hyper(conn: Pin<Box<dyn HyperConn>>) -> Self {
        Http1 {
            phase: Phase::Hyper(conn),
        }
    }

    /// Finishes what is in flight, then closes.
    pub(super) fn drain(mut self: Pin<&mut Self>) {
        match &mut self.phase {
            Phase::Fast(fast) => fast.draining = true,
            Phase::Lent { conn, fast, .. } => {
                fast.draining = true;
                conn.finish();
            }
            Phase::Hyper(conn) => conn.as_mut().drain(),
            Phase::Moving => {}
        }
    }
}

/// What the fast loop ended with.
enum End {
    /// The connection is done (closed by the client, drained, or broken).
    Closed(io::Result<()>),
    /// A request hyper answers, the stream lent to it with these bytes
    /// (the request's head).
    Lend(Bytes),
    /// A request for the general path: hyper takes over.
    Handover,
}

impl<I: Stream> Future for Http1<I> {
    type Output = Result<(), hyper::Error>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = &mut *self;
        loop {
            match &mut this.phase {
                Phase::Hyper(conn) => return conn.as_mut().poll(cx),
                Phase::Moving => return Poll::Ready(Ok(())),
                Phase::Lent {
                    conn,
                    fast,
                    begun,
                    returning,
                } => match conn.poll_done(cx) {
                    Poll::Pending => {
                        // Its answer is written once the request it began
                        // has ended (its body handed to hyper, so its head
                        // written): then hyper may be done, and give the
                        // stream back.
                        let (now, in_progress) = fast.watch.requests();
                        if *returning || now == *begun || in_progress || conn.closes() {
                            return Poll::Pending;
                        }
                        *returning = true;
                        conn.finish();
                    }
                    Poll::Ready(result) => {
                        let Phase::Lent {
                            conn,
                            mut fast,
                            returning,
                            ..
                        } = std::mem::replace(&mut this.phase, Phase::Moving)
                        else {
                            unreachable!("lent");
                        };
                        if let Err(e) = result {
                            tracing::debug!(error = %e, "connection ended with an error");
                            return Poll::Ready(Ok(()));
                        }
                        let (io, unread, held) = conn.give_back();
                        fast.io = Some(io);
                        if !unread.is_empty() {
                            fast.unread(&unread);
                        }
                        fast.append(&held);
                        // hyper was done before it was asked (it would
                        // have closed), or the server is stopping.
                        if !returning || fast.draining {
                            fast.closing = true;
                        }
                        this.phase = Phase::Fast(fast);
                    }
                },
                Phase::Fast(fast) => match ready!(fast.poll_run(cx)) {
                    End::Closed(result) => {
                        if let Err(e) = result {
                            tracing::debug!(error = %e, "connection ended with an error");
                        }
                        this.phase = Phase::Moving;
                        return Poll::Ready(Ok(()));
                    }
                    End::Lend(head) => {
                        let Phase::Fast(mut fast) =
                            std::mem::replace(&mut this.phase, Phase::Moving)
                        else {
                            unreachable!("in the fast phase");
                        };
                        let inner = fast.io.take().expect("the stream is here");
                        let ahead = fast.filled > 0;
                        let conn = (fast.lend)(LendIo::new(head, inner, ahead));
                        let begun = fast.watch.requests().0;
                        this.phase = Phase::Lent {
                            conn,
                            fast,
                            begun,
                            returning: false,
                        };
                    }
                    End::Handover => {
                        let Phase::Fast(fast) = std::mem::replace(&mut this.phase, Phase::Moving)
                        else {
                            unreachable!("in the fast phase");
                        };
                        let Fast {
                            io,
                            mut make,
                            mut read,
                            filled,
                            draining,
                            ..
                        } = *fast;
                        read.truncate(filled);
                        let make = make.take().expect("handed over once");
                        let mut conn = make(Prefixed {
                            prefix: Bytes::from(read),
                            inner: io.expect("the stream is here"),
                        });
                        if draining {
                            conn.as_mut().drain();
                        }
                        this.phase = Phase::Hyper(conn);
                    }
                },
            }
        }
    }
}

impl<I: Stream> Fast<I> {
    fn io(&mut self) -> Pin<&mut I> {
        Pin::new(self.io.as_mut().expect("the stream is here"))
    }

    /// Puts bytes read while the stream was lent after what is unread.
    fn append(&mut self, bytes: &[u8]) {
        let end = self.filled + bytes.len();
        if self.read.len() < end {
            self.read.resize(end, 0);
        }
        self.read[self.filled..end].copy_from_slice(bytes);
        self.filled = end;
    }

    /// Puts bytes read past a request back in front of what is unread.
    fn unread(&mut self, bytes: &[u8]) {
        let mut read = bytes.to_vec();
        read.extend_from_slice(&self.read[..self.filled]);
        self.filled = read.len();
        read.resize(read.len().max(READ_START), 0);
        self.read = read;
    }

    fn poll_run(&mut self, cx: &mut Context<'_>) -> Poll<End> {
        loop {
            if self.closing {
                let r = ready!(self.io().poll_shutdown(cx));
                return Poll::Ready(End::Closed(r));
            }
            if self.out.is_some() {
                if let Err(e) = ready!(self.poll_write_out(cx)) {
                    return Poll::Ready(End::Closed(Err(e)));
                }
                if let Err(e) = ready!(self.io().poll_flush(cx)) {
                    return Poll::Ready(End::Closed(Err(e)));
                }
                let out = self.out.take().expect("an answer in flight");
                if out.announced != 0 {
                    // Its body ended short: the client must not read the
                    // next answer as the rest of it.
                    return Poll::Ready(End::Closed(Ok(())));
                }
                self.head = out.head;
                if self.draining {
                    self.closing = true;
                }
                continue;
            }
            if self.filled > 0 {
                match self.next_request() {
                    Next::Answer => continue,
                    Next::Partial => {}
                    Next::Lend(head) => return Poll::Ready(End::Lend(head)),
                    Next::General => return Poll::Ready(End::Handover),
                }
            }
            if self.draining && self.filled == 0 {
                self.closing = true;
                continue;
            }
            if self.filled == self.read.len() {
                if self.read.len() >= HEAD_MAX {
                    // A head this large is hyper's to take or refuse.
                    return Poll::Ready(End::Handover);
                }
                self.read.resize((self.read.len() * 2).min(HEAD_MAX), 0);
            }
            let mut buf = ReadBuf::new(&mut self.read[self.filled..]);
            match ready!(
                Pin::new(self.io.as_mut().expect("the stream is here")).poll_read(cx, &mut buf)
            ) {
                Ok(()) if buf.filled().is_empty() => {
                    self.closing = true;
                }
                Ok(()) => self.filled += buf.filled().len(),
                Err(e) => return Poll::Ready(End::Closed(Err(e))),
            }
        }
    }

    /// Parses the next request head in `read`; answers it when it is a
    /// hit for this path.
    fn next_request(&mut self) -> Next {
        let mut fields = [httparse::EMPTY_HEADER; FIELDS_MAX];
        let mut req = httparse::Request::new(&mut fields);
        let len = match req.parse(&self.read[..self.filled]) {
            Ok(httparse::Status::Complete(len)) => len,
            Ok(httparse::Status::Partial) => return Next::Partial,
            // Too many fields, or not HTTP: hyper's to answer.
            Err(_) => return Next::General,
        };
        let answer = match self.hits.decide(&req) {
            Decision::Answer(answer) => answer,
            Decision::Lend => {
                let head = Bytes::copy_from_slice(&self.read[..len]);
                self.read.copy_within(len..self.filled, 0);
                self.filled -= len;
                return Next::Lend(head);
            }
            Decision::Handover => return Next::General,
        };
        let head_only = req.method == Some("HEAD");
        let exchange = self.watch.request();
        self.read.copy_within(len..self.filled, 0);
        self.filled -= len;
        let head = std::mem::take(&mut self.head);
        self.out = Some(Out::new(answer, head_only, exchange, head));
        Next::Answer
    }

    /// Writes the answer in flight: head and body together, the body in
    /// pieces of at most [`HTTP1_PIECE`] counted as owed as hyper's are.
    fn poll_write_out(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let out = self.out.as_mut().expect("an answer in flight");
        loop {
            if out.body_sent == out.body.len() {
                if let Some(next) = out.more.as_mut().and_then(CachedBody::next_chunk) {
                    out.announced = out.announced.saturating_sub(next.len() as u64);
                    out.body = next;
                    out.handed = 0;
                    out.body_sent = 0;
                } else {
                    out.more = None;
                }
            }
            if out.handed == out.body_sent && out.handed < out.body.len() {
                let piece = (out.body.len() - out.handed).min(HTTP1_PIECE);
                out.exchange.handed(piece);
                out.handed += piece;
            }
            let head = &out.head[out.head_sent..];
            let body = &out.body[out.body_sent..out.handed];
            if head.is_empty() && body.is_empty() {
                return Poll::Ready(Ok(()));
            }
            let n = ready!(Pin::new(self.io.as_mut().expect("the stream is here"))
                .poll_write_vectored(cx, &[IoSlice::new(head), IoSlice::new(body)]))?;
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            let from_head = n.min(head.len());
            out.head_sent += from_head;
            out.body_sent += n - from_head;
        }
    }
}

enum Next {
    Answer,
    Partial,
    Lend(Bytes),
    General,
}

impl Out {
    /// `answer` with its head in `head` (a buffer the connection reuses).
    fn new(answer: CachedResponse, head_only: bool, exchange: Exchange, mut head: Vec<u8>) -> Self {
        let CachedResponse {
            status,
            headers,
            body,
            ..
        } = answer;
        head.clear();
        encode_head(&mut head, status, &headers, head_only, body.len());
        let (body, more, announced) = if head_only {
            (Bytes::new(), None, 0)
        } else {
            let len = body.len();
            match body.into_bytes() {
                Ok(bytes) => (bytes, None, 0),
                Err(body) => (Bytes::new(), Some(body), len),
            }
        };
        Out {
            head,
            head_sent: 0,
            body,
            handed: 0,
            body_sent: 0,
            more,
            announced,
            exchange,
        }
    }
}

/// Fields of a message's framing and connection, never written from a
/// stored answer: the answer's length is its body's, and the connection
/// stays open. Admission never stores them; an entry that has one (put in
/// a shared store by something else) would otherwise make the client read
/// the body as chunks, or the next answer as part of this one.
const FRAMING: [&str; 7] = [
    "transfer-encoding",
    "connection",
    "trailer",
    "keep-alive",
    "upgrade",
    "proxy-connection",
    "te",
];

/// Writes a response head as hyper's HTTP/1.1 server writes it for a
/// body of `len` bytes: the status line with its canonical reason, the
/// fields that are valid HTTP (others are left out, as the general path's
/// header map leaves them), `content-length` when none is given and the
/// status and method allow one, and `date` when none is given.
fn encode_head(
    head: &mut Vec<u8>,
    status: u16,
    fields: &[(FieldName, Bytes)],
    head_only: bool,
    len: u64,
) {
    let code = http::StatusCode::from_u16(status).unwrap_or(http::StatusCode::OK);
    head.extend_from_slice(b"HTTP/1.1 ");
    head.extend_from_slice(code.as_str().as_bytes());
    head.push(b' ');
    head.extend_from_slice(code.canonical_reason().unwrap_or("<none>").as_bytes());
    head.extend_from_slice(b"\r\n");
    let (mut length, mut date) = (false, false);
    // A field goes out as the header map has it: its name in lower case,
    // and only when its value is one (a `content-length` or `date` left
    // out is one hyper makes up, as for a field never given).
    let mut field = |name: &FieldName, value: &Bytes| {
        if !valid_value(value) {
            return;
        }
        length |= name.eq_ignore_ascii_case("content-length");
        date |= name.eq_ignore_ascii_case("date");
        let at = head.len();
        head.extend_from_slice(name.as_bytes());
        head[at..].make_ascii_lowercase();
        head.extend_from_slice(b": ");
        head.extend_from_slice(value);
        head.extend_from_slice(b"\r\n");
    };
    // hyper writes a header map's fields grouped by name, in the order
    // each name first appears; most answers repeat no name, which a
    // 64-bit sketch of the names tells without comparing them in pairs.
    let mut seen = 0u64;
    let repeats = fields.iter().any(|(name, _)| {
        let last = name.as_bytes().last().map_or(0, u8::to_ascii_lowercase);
        let bit = 1u64 << ((name.len() as u64 ^ u64::from(last)) % 64);
        let again = seen & bit != 0;
        seen |= bit;
        again
    });
    for (i, (name, value)) in fields.iter().enumerate() {
        if !valid_name(name.as_bytes()) || FRAMING.iter().any(|f| name.eq_ignore_ascii_case(f)) {
            continue;
        }
        if !repeats {
            field(name, value);
            continue;
        }
        if fields[..i]
            .iter()
            .any(|(n, _)| n.eq_ignore_ascii_case(name))
        {
            continue;
        }
        for (n, value) in &fields[i..] {
            if n.eq_ignore_ascii_case(name) {
                field(name, value);
            }
        }
    }
    let bodiless = code.is_informational()
        || code == http::StatusCode::NO_CONTENT
        || code == http::StatusCode::NOT_MODIFIED;
    if !length && !bodiless && !head_only {
        head.extend_from_slice(b"content-length: ");
        let mut digits = [0u8; 20];
        let mut at = digits.len();
        let mut n = len;
        loop {
            at -= 1;
            digits[at] = b'0' + (n % 10) as u8;
            n /= 10;
            if n == 0 {
                break;
            }
        }
        head.extend_from_slice(&digits[at..]);
        head.extend_from_slice(b"\r\n");
    }
    if !date {
        head.extend_from_slice(b"date: ");
        head.extend_from_slice(&now_date());
        head.extend_from_slice(b"\r\n");
    }
    head.extend_from_slice(b"\r\n");
}

/// A field name `http::HeaderName` takes (in lower case): a token.
fn valid_name(name: &[u8]) -> bool {
    !name.is_empty()
        && name
            .iter()
            .all(|&b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

/// A field value `http::HeaderValue` takes: no control byte but tab.
fn valid_value(value: &[u8]) -> bool {
    value
        .iter()
        .all(|&b| b == b'\t' || (b >= 0x20 && b != 0x7f))
}

/// Today's HTTP date, formatted once a second per thread.
fn now_date() -> [u8; 29] {
    use std::cell::Cell;
    use std::time::{SystemTime, UNIX_EPOCH};
    thread_local! {
        static DATE: Cell<(u64, [u8; 29])> = const { Cell::new((u64::MAX, [0; 29])) };
    }
    let now = SystemTime::now();
    let secs = now.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    DATE.with(|d| {
        let (at, text) = d.get();
        if at == secs {
            return text;
        }
        let mut text = [0; 29];
        let formatted = httpdate::fmt_http_date(now);
        let n = formatted.len().min(29);
        text[..n].copy_from_slice(&formatted.as_bytes()[..n]);
        d.set((secs, text));
        text
    })
}

// ===== the stream hyper takes over =====

/// A stream whose first bytes, read before hyper took it, are given back
/// first.
pub(super) struct Prefixed<I> {
    prefix: Bytes,
    inner: I,
}

impl<I> Prefixed<I> {
    /// `inner` with nothing to give back.
    pub(super) fn new(inner: I) -> Self {
        Prefixed {
            prefix: Bytes::new(),
            inner,
        }
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

impl<I: AsyncWrite + Unpin> AsyncWrite for Prefixed<I> {
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

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn head(status: u16, fields: &[(&'static str, &str)], head_only: bool, len: u64) -> String {
        let fields: Vec<(FieldName, Bytes)> = fields
            .iter()
            .map(|(n, v)| (FieldName::from(*n), Bytes::copy_from_slice(v.as_bytes())))
            .collect();
        let mut out = Vec::new();
        encode_head(&mut out, status, &fields, head_only, len);
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn a_head_groups_fields_by_name_and_adds_what_hyper_adds() {
        let h = head(200, &[("a", "1"), ("b", "2"), ("a", "3")], false, 5);
        assert!(
            h.starts_with("HTTP/1.1 200 OK\r\na: 1\r\na: 3\r\nb: 2\r\ncontent-length: 5\r\ndate: "),
            "{h}"
        );
        assert!(h.ends_with(" GMT\r\n\r\n"), "{h}");
        // Given length and date are kept as they are.
        let h = head(200, &[("content-length", "7"), ("date", "x")], false, 5);
        assert_eq!(h, "HTTP/1.1 200 OK\r\ncontent-length: 7\r\ndate: x\r\n\r\n");
        // No length made up for a 304 or a HEAD.
        let h = head(304, &[("date", "x")], false, 0);
        assert_eq!(h, "HTTP/1.1 304 Not Modified\r\ndate: x\r\n\r\n");
        let h = head(200, &[("date", "x")], true, 9);
        assert_eq!(h, "HTTP/1.1 200 OK\r\ndate: x\r\n\r\n");
    }

    #[test]
    fn a_length_or_date_left_out_is_made_up_as_hyper_makes_it() {
        // The general path's header map leaves out a value that is not
        // HTTP; hyper then writes the body's length and today's date.
        let h = head(200, &[("content-length", "5\0"), ("date", "\n")], false, 5);
        assert!(
            h.starts_with("HTTP/1.1 200 OK\r\ncontent-length: 5\r\ndate: "),
            "{h}"
        );
        assert!(h.ends_with(" GMT\r\n\r\n"), "{h}");
    }

    #[test]
    fn stored_framing_fields_never_go_out() {
        let h = head(
            200,
            &[
                ("Transfer-Encoding", "chunked"),
                ("connection", "close"),
                ("trailer", "x"),
                ("te", "trailers"),
                ("x-kept", "1"),
                ("date", "x"),
            ],
            false,
            3,
        );
        assert_eq!(
            h,
            "HTTP/1.1 200 OK\r\nx-kept: 1\r\ndate: x\r\ncontent-length: 3\r\n\r\n"
        );
    }

    #[test]
    fn names_go_out_in_lower_case_grouped_as_the_header_map_groups_them() {
        let h = head(
            200,
            &[("X-A", "1"), ("b", "2"), ("x-a", "3"), ("Date", "x")],
            false,
            0,
        );
        assert_eq!(
            h,
            "HTTP/1.1 200 OK\r\nx-a: 1\r\nx-a: 3\r\nb: 2\r\ndate: x\r\ncontent-length: 0\r\n\r\n"
        );
    }

    #[test]
    fn fields_that_are_not_http_are_left_out() {
        let h = head(
            200,
            &[
                ("x-a", "ok"),
                ("x-b", "bad\r\ninjected: 1"),
                ("Bad Name", "v"),
                ("date", "x"),
            ],
            true,
            0,
        );
        assert_eq!(h, "HTTP/1.1 200 OK\r\nx-a: ok\r\ndate: x\r\n\r\n");
    }

    proptest! {
        /// Whatever a stored entry holds, the head is one status line and
        /// well-formed fields ending in an empty line: no field can split
        /// the response.
        #[test]
        fn any_stored_fields_make_a_well_formed_head(
            status in 100u16..1000,
            fields in proptest::collection::vec(("[a-zA-Z :\r\n-]{0,8}", proptest::collection::vec(any::<u8>(), 0..12)), 0..6),
            head_only: bool,
            len in 0u64..1 << 40,
        ) {
            let fields: Vec<(FieldName, Bytes)> = fields
                .into_iter()
                .map(|(n, v)| (FieldName::from(n), Bytes::from(v)))
                .collect();
            let mut out = Vec::new();
            encode_head(&mut out, status, &fields, head_only, len);
            let mut parsed = [httparse::EMPTY_HEADER; 16];
            let mut resp = httparse::Response::new(&mut parsed);
            let n = resp.parse(&out).expect("parses");
            prop_assert_eq!(n, httparse::Status::Complete(out.len()));
            prop_assert_eq!(resp.code, Some(status));
        }
    }
}
