//! 1xx interim responses (103 Early Hints, 102 Processing, ...) passed
//! from the backend to an HTTP/1.1 client before the final response.
//!
//! hyper's server sends only a request's final response, so the proxy
//! writes interim responses itself, on the connection's socket:
//!
//! - [`InterimStream`] wraps an HTTP/1.1 connection's stream and holds a
//!   small queue of interim responses, already serialised. It writes them
//!   before hyper's next write, and as soon as they are queued when hyper
//!   is not writing (a push wakes the connection's task, whose next poll
//!   flushes the stream). Queued bytes only ever go between two of
//!   hyper's messages: hyper flushes its stream only once its own buffer
//!   is empty, and nothing is put in front of a write that continues one.
//! - For each request, the connection opens an [`Interims`] (a request
//!   extension); [`crate::proxy::Upstream`] registers
//!   [`hyper::ext::on_informational`] on the backend request and hands
//!   each 1xx to [`Interims::send`]. Once the final response is there the
//!   request's interims are closed: nothing is queued after it, so nothing
//!   can follow its head.
//!
//! What passes:
//!
//! - 1xx statuses other than 101 (an upgrade is a final response, and is
//!   not proxied); `100 Continue` only when the client asked for it with
//!   `Expect: 100-continue` (RFC 9110 sections 10.1.1 and 15.2: a proxy
//!   forwards the 1xx of the request it forwards; an unsolicited 100 tells
//!   a client nothing). hyper's server answers such a client with a 100
//!   of its own when the proxy starts reading the body, so that client
//!   may see two: RFC 9110 section 15.2 has every client parse any number
//!   of 1xx.
//! - at most [`MAX_INTERIMS`] responses and [`MAX_INTERIM_BYTES`] bytes
//!   per request; beyond that they are dropped;
//! - only header fields with a valid name and value (no CR, LF or NUL can
//!   reach the client), hop-by-hop fields removed.
//!
//! Never: to an HTTP/1.0 client (RFC 9110 section 15.2), over HTTP/2
//! (hyper's HTTP/2 server has no way to send one either; the connection
//! has no [`Interims`]), for a request the cache answers without the
//! backend (it is never sent), or from an HTTP/2 backend (hyper's HTTP/2
//! client does not report them). Nothing of an interim response is
//! stored: the cache sees the final response only.

use std::io::{self, IoSlice};
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{ready, Context, Poll, Waker};

use bytes::{Buf, BytesMut};
use http::{HeaderMap, StatusCode};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// Interim responses passed on per request, at most; more are dropped.
pub const MAX_INTERIMS: usize = 16;

/// Bytes of interim responses passed on per request, at most (status
/// lines and fields as sent); one that would go past it is dropped.
pub const MAX_INTERIM_BYTES: usize = 16 * 1024;

/// The queue a connection and the requests on it share.
#[derive(Debug, Default)]
struct Queue {
    /// The request whose interims are accepted now, if any.
    open: Option<u64>,
    /// The number the next request gets.
    next: u64,
    /// Whether the open request asked for `100 Continue`.
    expects_continue: bool,
    /// Interim responses and bytes accepted for the open request.
    count: usize,
    total: usize,
    /// Serialised responses not written yet.
    bytes: BytesMut,
    /// The connection's task, woken when bytes are queued.
    waker: Option<Waker>,
}

#[derive(Debug, Default)]
struct Shared(Mutex<Queue>);

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Queue> {
        // A panic while holding it leaves a consistent queue.
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// The interim responses of one request on an HTTP/1.1 connection: a
/// request extension, cheap to clone (see the module docs).
#[derive(Debug, Clone)]
pub struct Interims {
    shared: Arc<Shared>,
    request: u64,
}

impl Interims {
    /// Queues the 1xx response `status` with `headers` for the client, if
    /// it may have it (see the module docs): whether it was queued.
    /// Hop-by-hop fields and `Content-Length` are removed, and fields that
    /// are not valid left out.
    pub fn send(&self, status: StatusCode, mut headers: HeaderMap) -> bool {
        let code = status.as_u16();
        if !(100..200).contains(&code) || code == 101 {
            return false;
        }
        {
            let q = self.shared.lock();
            if q.open != Some(self.request) || (code == 100 && !q.expects_continue) {
                return false;
            }
        }
        crate::proxy::strip_hop_by_hop(&mut headers);
        // A 1xx has no content (RFC 9110 section 8.6).
        headers.remove(http::header::CONTENT_LENGTH);
        let Some(message) = serialise(status, &headers) else {
            return false;
        };
        let mut q = self.shared.lock();
        if q.open != Some(self.request) {
            return false;
        }
        if q.count >= MAX_INTERIMS || q.total + message.len() > MAX_INTERIM_BYTES {
            tracing::debug!(
                status = code,
                "interim response over the per-request bound: dropped"
            );
            return false;
        }
        q.count += 1;
        q.total += message.len();
        q.bytes.extend_from_slice(&message);
        if let Some(w) = q.waker.take() {
            w.wake();
        }
        true
    }

    /// Stops accepting interim responses for this request (its final
    /// response is ready); those queued still go first.
    pub(crate) fn close(&self) {
        let mut q = self.shared.lock();
        if q.open == Some(self.request) {
            q.open = None;
        }
    }
}

/// Closes a request's [`Interims`] when dropped: when its response is
/// ready, or when the request is dropped unanswered.
#[derive(Debug)]
pub(crate) struct CloseOnDrop(pub(crate) Interims);

impl Drop for CloseOnDrop {
    fn drop(&mut self) {
        self.0.close();
    }
}

/// `HTTP/1.1 <status> <reason>`, the fields that may pass, an empty line;
/// `None` when it would not fit in [`MAX_INTERIM_BYTES`].
fn serialise(status: StatusCode, headers: &HeaderMap) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(64);
    out.extend_from_slice(b"HTTP/1.1 ");
    out.extend_from_slice(status.as_str().as_bytes());
    out.push(b' ');
    out.extend_from_slice(status.canonical_reason().unwrap_or("").as_bytes());
    out.extend_from_slice(b"\r\n");
    for (name, value) in headers {
        if !is_token(name.as_str().as_bytes()) || !is_field_value(value.as_bytes()) {
            continue;
        }
        if out.len() + name.as_str().len() + value.len() + 6 > MAX_INTERIM_BYTES {
            return None;
        }
        out.extend_from_slice(name.as_str().as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(value.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"\r\n");
    Some(out)
}

/// A field name: one or more `tchar` (RFC 9110 section 5.6.2).
fn is_token(b: &[u8]) -> bool {
    !b.is_empty()
        && b.iter()
            .all(|&c| c.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&c))
}

/// A field value: visible characters, spaces, tabs and obs-text, not
/// starting or ending with white space (RFC 9110 section 5.5): never CR,
/// LF or NUL.
fn is_field_value(b: &[u8]) -> bool {
    b.iter()
        .all(|&c| c == b'\t' || (0x20..0x7f).contains(&c) || c >= 0x80)
        && !b.first().is_some_and(|c| *c == b' ' || *c == b'\t')
        && !b.last().is_some_and(|c| *c == b' ' || *c == b'\t')
}

/// An HTTP/1.1 connection's stream that also writes the interim responses
/// of its requests (see the module docs).
#[derive(Debug)]
pub struct InterimStream<S> {
    inner: S,
    shared: Arc<Shared>,
    /// Whether hyper has nothing half-written: it flushed (which it does
    /// only with an empty buffer) and has not written since. Queued bytes
    /// only go out then.
    between: bool,
}

impl<S> InterimStream<S> {
    /// Wraps a connection's stream, with no request yet.
    pub fn new(inner: S) -> Self {
        InterimStream {
            inner,
            shared: Arc::default(),
            between: true,
        }
    }

    /// The stream it wraps.
    pub fn into_inner(self) -> S {
        self.inner
    }

    /// A handle the connection's service opens each request's interims
    /// with.
    pub fn opener(&self) -> InterimOpener {
        InterimOpener(self.shared.clone())
    }
}

/// Opens the interims of each request on one connection (see
/// [`InterimStream::opener`]).
#[derive(Debug, Clone)]
pub struct InterimOpener(Arc<Shared>);

impl InterimOpener {
    /// Opens the interims of the connection's next request, closing those
    /// of the one before; `expects_continue` when it carries
    /// `Expect: 100-continue`.
    pub fn open(&self, expects_continue: bool) -> Interims {
        Interims::open(&self.0, expects_continue)
    }
}

impl Interims {
    fn open(shared: &Arc<Shared>, expects_continue: bool) -> Interims {
        let mut q = shared.lock();
        let request = q.next;
        q.next += 1;
        q.open = Some(request);
        q.expects_continue = expects_continue;
        q.count = 0;
        q.total = 0;
        Interims {
            shared: shared.clone(),
            request,
        }
    }
}

impl<S: AsyncWrite + Unpin> InterimStream<S> {
    /// Writes the queued interim responses, if any and if hyper is between
    /// two messages; `Pending` until all are written.
    fn poll_interims(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let mut q = self.shared.lock();
        if !q.waker.as_ref().is_some_and(|w| w.will_wake(cx.waker())) {
            q.waker = Some(cx.waker().clone());
        }
        if !self.between {
            return Poll::Ready(Ok(()));
        }
        while !q.bytes.is_empty() {
            let n = ready!(Pin::new(&mut self.inner).poll_write(cx, &q.bytes))?;
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            q.bytes.advance(n);
        }
        Poll::Ready(Ok(()))
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for InterimStream<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for InterimStream<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        ready!(self.poll_interims(cx))?;
        let r = Pin::new(&mut self.inner).poll_write(cx, buf);
        if let Poll::Ready(Ok(_)) = r {
            self.between = false;
        }
        r
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        ready!(self.poll_interims(cx))?;
        let r = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        if let Poll::Ready(Ok(_)) = r {
            self.between = false;
        }
        r
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        // hyper flushes its stream once its own buffer is empty.
        self.between = true;
        ready!(self.poll_interims(cx))?;
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    fn hints() -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert("link", HeaderValue::from_static("</a.css>; rel=preload"));
        h
    }

    fn queued(s: &InterimStream<Vec<u8>>) -> Vec<u8> {
        s.shared.lock().bytes.to_vec()
    }

    #[test]
    fn an_interim_is_serialised_with_its_fields() {
        let s = InterimStream::new(Vec::<u8>::new());
        let i = s.opener().open(false);
        assert!(i.send(StatusCode::from_u16(103).unwrap(), hints()));
        assert_eq!(
            queued(&s),
            b"HTTP/1.1 103 Early Hints\r\nlink: </a.css>; rel=preload\r\n\r\n"
        );
    }

    #[test]
    fn final_101_and_unasked_100_do_not_pass() {
        let s = InterimStream::new(Vec::<u8>::new());
        let i = s.opener().open(false);
        assert!(!i.send(StatusCode::OK, hints()));
        assert!(!i.send(StatusCode::SWITCHING_PROTOCOLS, hints()));
        assert!(!i.send(StatusCode::CONTINUE, HeaderMap::new()));
        assert!(queued(&s).is_empty());
        let i = s.opener().open(true);
        assert!(i.send(StatusCode::CONTINUE, HeaderMap::new()));
        assert_eq!(queued(&s), b"HTTP/1.1 100 Continue\r\n\r\n");
    }

    #[test]
    fn nothing_passes_once_closed_or_for_an_earlier_request() {
        let s = InterimStream::new(Vec::<u8>::new());
        let first = s.opener().open(false);
        let second = s.opener().open(false);
        assert!(!first.send(StatusCode::from_u16(103).unwrap(), hints()));
        second.close();
        assert!(!second.send(StatusCode::from_u16(103).unwrap(), hints()));
        assert!(queued(&s).is_empty());
    }

    #[test]
    fn count_and_size_are_bounded_per_request() {
        let s = InterimStream::new(Vec::<u8>::new());
        let i = s.opener().open(false);
        let sent = (0..40)
            .filter(|_| i.send(StatusCode::PROCESSING, HeaderMap::new()))
            .count();
        assert_eq!(sent, MAX_INTERIMS);
        // The next request starts with a fresh allowance.
        let i = s.opener().open(false);
        let mut big = HeaderMap::new();
        big.insert("link", HeaderValue::from_str(&"x".repeat(6000)).unwrap());
        let sent = (0..5)
            .filter(|_| i.send(StatusCode::from_u16(103).unwrap(), big.clone()))
            .count();
        assert_eq!(sent, 2);
        let mut huge = HeaderMap::new();
        huge.insert("link", HeaderValue::from_str(&"x".repeat(20_000)).unwrap());
        let i = s.opener().open(false);
        assert!(!i.send(StatusCode::from_u16(103).unwrap(), huge));
    }

    /// Queued bytes go only between two of hyper's messages: never into a
    /// message hyper has begun and not yet flushed.
    #[tokio::test]
    async fn interims_go_between_messages_only() {
        use tokio::io::AsyncWriteExt;
        let mut s = InterimStream::new(Vec::<u8>::new());
        let early = StatusCode::from_u16(103).unwrap();
        // Not written yet: queued, then in front of the next message.
        assert!(s.opener().open(false).send(early, HeaderMap::new()));
        s.write_all(b"<head A>").await.unwrap();
        // Half of a message is out: what is queued now waits for its end.
        assert!(s.opener().open(false).send(early, HeaderMap::new()));
        s.write_all(b"<rest of A>").await.unwrap();
        assert_eq!(
            s.inner,
            b"HTTP/1.1 103 Early Hints\r\n\r\n<head A><rest of A>".to_vec()
        );
        // hyper flushes only with nothing of its own left: it goes then.
        s.flush().await.unwrap();
        s.write_all(b"<B>").await.unwrap();
        let want = b"HTTP/1.1 103 Early Hints\r\n\r\n<head A><rest of A>\
                     HTTP/1.1 103 Early Hints\r\n\r\n<B>";
        assert_eq!(s.inner, want.to_vec());
    }

    #[test]
    fn invalid_and_hop_by_hop_fields_are_left_out() {
        assert!(is_field_value(b"</a>; rel=preload"));
        assert!(is_field_value("caf\u{e9}".as_bytes()));
        for bad in [&b"a\r\nb: c"[..], b"a\rb", b"a\nb", b"a\0b", b" a", b"a\t"] {
            assert!(!is_field_value(bad), "{bad:?}");
        }
        assert!(is_token(b"x-my-header") && !is_token(b"a b") && !is_token(b""));
        let s = InterimStream::new(Vec::<u8>::new());
        let mut h = hints();
        h.insert("connection", HeaderValue::from_static("x-drop"));
        h.insert("x-drop", HeaderValue::from_static("1"));
        h.insert("transfer-encoding", HeaderValue::from_static("chunked"));
        h.insert("content-length", HeaderValue::from_static("5"));
        h.insert(
            "x-obs",
            HeaderValue::from_bytes(b"\xff ok").expect("obs-text is a valid value"),
        );
        assert!(s
            .opener()
            .open(false)
            .send(StatusCode::from_u16(103).unwrap(), h));
        assert_eq!(
            queued(&s),
            b"HTTP/1.1 103 Early Hints\r\nlink: </a.css>; rel=preload\r\nx-obs: \xff ok\r\n\r\n"
        );
    }
}
