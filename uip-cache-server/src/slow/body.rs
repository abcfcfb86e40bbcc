//! The bodies of a watched connection: responses handed to it in pieces
//! counted as owed, and request bodies whose waits on the client count.

use std::fmt;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::{Buf, Bytes};
use http_body::{Body, Frame, SizeHint};
use hyper::body::Incoming;

use super::watch::{Exchange, Wait, Watch};
use super::{HTTP1_PIECE, HTTP2_PIECE};

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
/// [`ClientLimits::send_timeout`](super::ClientLimits::send_timeout) has its
/// connection closed.
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
