//! The fast loop of one HTTP/1.1 connection: reads request heads, writes
//! the answers core has at hand, lends the stream to hyper for the other
//! requests or hands it over (see the module docs of [`super`]).

use std::future::Future;
use std::io::{self, IoSlice};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};

use bytes::Bytes;
use tokio::io::ReadBuf;
use uip_cache_core::{CachedBody, CachedResponse, LaterAnswer, Looked};

use super::head::encode_head;
use super::lend::{HyperConn, LendIo, Lent, MakeHyper, MakeLent, Prefixed};
use super::relay::{self, Done, Relay, Relayed};
use super::{Decision, Hits, LookUp, FIELDS_MAX, HEAD_MAX, READ_START};
use crate::server::conn::Stream;
use crate::slow::{Exchange, Watch, HTTP1_PIECE};

/// Requests lent to hyper in a row after which a connection is handed
/// over to it for good.
const LENT_IN_A_ROW_MAX: u8 = 4;

/// Store lookups (of a store without entries at hand) after which a
/// connection whose lookups find no answer more than once in
/// [`LOOKUP_MISS_RATIO`] is handed over to hyper for good: each such miss
/// is lent, and a lent connection costs more than a hit from the head
/// saves (with a second lookup per miss, the break-even was about one
/// miss in six).
const LOOKUPS_JUDGED: u32 = 8;
const LOOKUP_MISS_RATIO: u32 = 8;

/// An HTTP/1.1 connection: answered here while its requests are hits,
/// then by hyper (see the module docs).
pub(in crate::server) struct Http1<I> {
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
    /// A lookup of the store under way, for the request it took.
    looking: Option<Looking>,
    /// A request relayed to its backend, with the stream.
    relaying: Option<Relaying<I>>,
    /// Room the relay reads responses into, kept between requests.
    relay_room: Vec<u8>,
    /// Bytes were read since the last request head was taken (else the
    /// next one was there already: sent in a row with it).
    fresh: bool,
    /// The answer being written.
    out: Option<Out>,
    /// Room for the next answer's head.
    head: Vec<u8>,
    /// Asked to close once nothing is in flight.
    draining: bool,
    /// Requests lent to hyper since the last answered here.
    lent_in_a_row: u8,
    /// Store lookups begun on this connection, and those that found no
    /// answer.
    lookups: u32,
    lookups_missed: u32,
    /// Closing the stream as hyper closes it (TLS sends its
    /// `close_notify`), once nothing is left to write.
    closing: bool,
}

/// A relayed exchange: gives the stream back when it is done.
type Relaying<I> = Pin<Box<dyn Future<Output = Done<I>> + Send>>;

/// A request whose entry the store is asked for with a future.
struct Looking {
    answer: LookUp,
    /// The request's head, lent to hyper when there is no answer.
    head: Bytes,
    head_only: bool,
    /// The request, in progress on the watch from the moment it was read.
    exchange: Exchange,
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
    pub(in crate::server) fn fast(
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
                looking: None,
                relaying: None,
                relay_room: Vec::new(),
                fresh: false,
                out: None,
                head: Vec::new(),
                draining: false,
                lent_in_a_row: 0,
                lookups: 0,
                lookups_missed: 0,
                closing: false,
            })),
        }
    }

    /// A connection hyper serves from the start.
    pub(in crate::server) fn hyper(conn: Pin<Box<dyn HyperConn>>) -> Self {
        Http1 {
            phase: Phase::Hyper(conn),
        }
    }

    /// Finishes what is in flight, then closes.
    pub(in crate::server) fn drain(mut self: Pin<&mut Self>) {
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
    /// (the request's head), and what a lookup of the store found for it.
    Lend(Bytes, Option<Looked>),
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
                    End::Lend(head, looked) => {
                        let Phase::Fast(mut fast) =
                            std::mem::replace(&mut this.phase, Phase::Moving)
                        else {
                            unreachable!("in the fast phase");
                        };
                        let inner = fast.io.take().expect("the stream is here");
                        let ahead = fast.filled > 0;
                        let conn = (fast.lend)(LendIo::new(head, inner, ahead), looked);
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
                        let mut conn = make(Prefixed::with(
                            Bytes::from(read),
                            io.expect("the stream is here"),
                        ));
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
            if let Some(looking) = self.looking.as_mut() {
                let answer = ready!(looking.answer.as_mut().poll(cx));
                let Looking {
                    head,
                    head_only,
                    exchange,
                    ..
                } = self.looking.take().expect("a lookup under way");
                let looked = match answer {
                    LaterAnswer::Answer(answer) => {
                        self.lent_in_a_row = 0;
                        let buf = std::mem::take(&mut self.head);
                        self.out = Some(Out::new(answer, head_only, exchange, buf));
                        continue;
                    }
                    // hyper's path takes this for its lookup.
                    LaterAnswer::Absent(looked) => Some(looked),
                    LaterAnswer::Other => None,
                };
                // hyper begins it again, on its own watch entry.
                drop(exchange);
                self.lent_in_a_row += 1;
                self.lookups_missed += 1;
                return Poll::Ready(End::Lend(head, looked));
            }
            if let Some(relaying) = self.relaying.as_mut() {
                let done = ready!(relaying.as_mut().poll(cx));
                self.relaying = None;
                self.io = Some(done.io);
                self.relay_room = done.room;
                self.append(&done.early);
                match done.result {
                    Ok(Relayed::Open) => {
                        if self.draining {
                            self.closing = true;
                        }
                        continue;
                    }
                    // Its answer could not be written whole.
                    Ok(Relayed::Close) => return Poll::Ready(End::Closed(Ok(()))),
                    Err(e) => return Poll::Ready(End::Closed(Err(e))),
                }
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
                    Next::Lend(head) => return Poll::Ready(End::Lend(head, None)),
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
                Ok(()) => {
                    self.filled += buf.filled().len();
                    self.fresh = true;
                }
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
            Decision::Answer(answer) => {
                self.lent_in_a_row = 0;
                answer
            }
            // Lending costs a hyper connection per request: a connection
            // whose requests are not hits at hand (a store whose hits
            // never are, a client fetching new URLs) goes to hyper.
            Decision::Lend if self.lent_in_a_row >= LENT_IN_A_ROW_MAX => return Next::General,
            Decision::Lend => {
                self.lent_in_a_row += 1;
                let head = Bytes::copy_from_slice(&self.read[..len]);
                self.consume(len);
                return Next::Lend(head);
            }
            Decision::LookUp(..)
                if self.lent_in_a_row >= LENT_IN_A_ROW_MAX
                    || (self.lookups >= LOOKUPS_JUDGED
                        && self.lookups_missed.saturating_mul(LOOKUP_MISS_RATIO)
                            > self.lookups) =>
            {
                return Next::General
            }
            Decision::LookUp(later, snapshot) => {
                self.lookups = self.lookups.saturating_add(1);
                let head = Bytes::copy_from_slice(&self.read[..len]);
                let head_only = req.method == Some("HEAD");
                let exchange = self.watch.request();
                self.consume(len);
                self.looking = Some(Looking {
                    answer: self.hits.look_up(later, snapshot, head.clone()),
                    head,
                    head_only,
                    exchange,
                });
                return Next::Answer;
            }
            Decision::Relay(relayable) => {
                self.lent_in_a_row = 0;
                // Sent in a row with others (more after it, or it was read
                // with the one before): answered even if the client then
                // closes its side, as hyper answers such requests.
                let pipelined = self.filled > len || !self.fresh;
                let exchange = self.watch.request();
                self.consume(len);
                let io = self.io.take().expect("the stream is here");
                self.relaying = Some(Box::pin(relay::relay(
                    io,
                    Relay {
                        relayable: *relayable,
                        exchange,
                        pipelined,
                    },
                    std::mem::take(&mut self.relay_room),
                )));
                return Next::Answer;
            }
            Decision::Handover => return Next::General,
        };
        let head_only = req.method == Some("HEAD");
        let exchange = self.watch.request();
        self.consume(len);
        let head = std::mem::take(&mut self.head);
        self.out = Some(Out::new(answer, head_only, exchange, head));
        Next::Answer
    }

    /// Drops the first `len` bytes read (a request head taken).
    fn consume(&mut self, len: usize) {
        self.read.copy_within(len..self.filled, 0);
        self.filled -= len;
        self.fresh = false;
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
