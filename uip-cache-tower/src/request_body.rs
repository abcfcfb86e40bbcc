//! The request body the inner service receives: the client's, untouched;
//! or the bytes the cache buffered to key on (policies with `vary_by:
//! [body]`), sent on exactly as received; or, when the body turned out
//! longer than the policy's `max_body`, the bytes read so far followed by
//! the rest of the client's stream.

use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http::HeaderMap;
use http_body::{Body, Frame, SizeHint};
use pin_project_lite::pin_project;
use uip_cache_core::{BodyRead, BodyReader};

use crate::headers::HeaderMapRef;

pin_project! {
    /// The body of a request on its way to the inner service.
    pub struct RequestBody<B: Body> {
        #[pin]
        inner: Inner<B>,
    }
}

pin_project! {
    #[project = Proj]
    enum Inner<B: Body> {
        // The client's body, untouched (no copy, no allocation).
        Client { #[pin] body: B },
        // Bytes the cache read, then (when the body was longer than the
        // limit) the rest of the client's stream, or the error reading it.
        Read {
            prefix: Option<Bytes>,
            error: Option<B::Error>,
            rest: Option<Pin<Box<B>>>,
        },
    }
}

impl<B: Body> std::fmt::Debug for RequestBody<B> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.inner {
            Inner::Client { .. } => f.write_str("RequestBody::Client"),
            Inner::Read { prefix, rest, .. } => f
                .debug_struct("RequestBody::Read")
                .field("buffered", &prefix.as_ref().map(Bytes::len))
                .field("streaming", &rest.is_some())
                .finish(),
        }
    }
}

impl<B: Body> RequestBody<B> {
    /// The client's body, as it comes.
    pub fn new(body: B) -> Self {
        RequestBody {
            inner: Inner::Client { body },
        }
    }

    /// Exactly these bytes.
    pub fn buffered(bytes: Bytes) -> Self {
        Self::read(Some(bytes), None, None)
    }

    /// The whole body, when it is bytes the cache read to key on and
    /// nothing else follows: a body that can be sent again (to another
    /// backend, when the first refused the connection).
    pub fn buffered_bytes(&self) -> Option<&Bytes> {
        match &self.inner {
            Inner::Read {
                prefix,
                error: None,
                rest: None,
            } => prefix.as_ref(),
            _ => None,
        }
    }

    fn read(prefix: Option<Bytes>, error: Option<B::Error>, rest: Option<Pin<Box<B>>>) -> Self {
        RequestBody {
            inner: Inner::Read {
                prefix,
                error,
                rest,
            },
        }
    }
}

impl<B: Body> Default for RequestBody<B> {
    fn default() -> Self {
        RequestBody::buffered(Bytes::new())
    }
}

impl<B> Body for RequestBody<B>
where
    B: Body<Data = Bytes>,
{
    type Data = Bytes;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, B::Error>>> {
        match self.project().inner.project() {
            Proj::Client { body } => body.poll_frame(cx),
            Proj::Read {
                prefix,
                error,
                rest,
            } => {
                if let Some(p) = prefix.take().filter(|p| !p.is_empty()) {
                    return Poll::Ready(Some(Ok(Frame::data(p))));
                }
                if let Some(e) = error.take() {
                    return Poll::Ready(Some(Err(e)));
                }
                match rest {
                    Some(r) => r.as_mut().poll_frame(cx),
                    None => Poll::Ready(None),
                }
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        match &self.inner {
            Inner::Client { body } => body.is_end_stream(),
            Inner::Read {
                prefix,
                error,
                rest,
            } => {
                prefix.as_ref().is_none_or(Bytes::is_empty)
                    && error.is_none()
                    && rest.as_ref().is_none_or(|r| r.is_end_stream())
            }
        }
    }

    fn size_hint(&self) -> SizeHint {
        match &self.inner {
            Inner::Client { body } => body.size_hint(),
            Inner::Read {
                prefix,
                rest,
                error,
            } => {
                let prefix = prefix.as_ref().map_or(0, |p| p.len() as u64);
                match rest {
                    // A body that failed has no known length: announcing the
                    // part read would send the origin a complete, shorter request.
                    None if error.is_some() => {
                        let mut h = SizeHint::new();
                        h.set_lower(prefix);
                        h
                    }
                    None => SizeHint::with_exact(prefix),
                    Some(r) => {
                        let h = r.size_hint();
                        let mut out = SizeHint::new();
                        out.set_lower(h.lower().saturating_add(prefix));
                        if let Some(u) = h.upper() {
                            out.set_upper(u.saturating_add(prefix));
                        }
                        out
                    }
                }
            }
        }
    }
}

/// What reading a body up to a limit gave.
pub(crate) enum Read<B: Body> {
    /// The whole body, within the limit.
    Whole(Bytes),
    /// Longer than the limit (or failed): what was read, then the rest.
    Over(RequestBody<B>),
}

/// Reads `body` up to `limit` bytes, as core's [`BodyReader`] decides: a
/// body announcing a longer `Content-Length` is not read at all. Trailers,
/// if any, are not kept.
pub(crate) async fn read_limited<B>(body: B, limit: u64, headers: &HeaderMap) -> Read<B>
where
    B: Body<Data = Bytes>,
{
    let Some(reader) = BodyReader::new(limit, &HeaderMapRef(headers)) else {
        return Read::Over(RequestBody::new(body));
    };
    let mut body = Box::pin(body);
    let read = reader.read(|cx| {
        let frame = std::task::ready!(body.as_mut().poll_frame(cx));
        Poll::Ready(frame.map(|f| f.map(|f| f.into_data().unwrap_or_default())))
    });
    match read.await {
        BodyRead::Whole(bytes) => Read::Whole(bytes),
        // What was read, then the rest of the stream, or the error.
        BodyRead::Partial(read) => Read::Over(RequestBody::read(Some(read), None, Some(body))),
        BodyRead::Failed(read, e) => Read::Over(RequestBody::read(Some(read), Some(e), None)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::{BodyExt, StreamBody};

    fn chunked(
        parts: &[&'static [u8]],
    ) -> impl Body<Data = Bytes, Error = std::convert::Infallible> {
        let frames: Vec<Result<Frame<Bytes>, std::convert::Infallible>> = parts
            .iter()
            .map(|p| Ok(Frame::data(Bytes::from_static(p))))
            .collect();
        StreamBody::new(futures_util::stream::iter(frames))
    }

    #[tokio::test]
    async fn a_body_within_the_limit_is_read_whole_and_sent_on_exactly() {
        let Read::Whole(b) = read_limited(chunked(&[b"ab", b"cd"]), 4, &HeaderMap::new()).await
        else {
            panic!("within the limit");
        };
        assert_eq!(&b[..], b"abcd");
        let out = RequestBody::<http_body_util::Empty<Bytes>>::buffered(b);
        assert_eq!(out.size_hint().exact(), Some(4));
        assert_eq!(&out.collect().await.unwrap().to_bytes()[..], b"abcd");
    }

    #[tokio::test]
    async fn a_longer_chunked_body_goes_on_untouched() {
        let parts: &[&'static [u8]] = &[b"0123", b"4567", b"89"];
        let Read::Over(body) = read_limited(chunked(parts), 5, &HeaderMap::new()).await else {
            panic!("over the limit");
        };
        assert_eq!(&body.collect().await.unwrap().to_bytes()[..], b"0123456789");
    }

    #[tokio::test]
    async fn a_larger_announced_length_is_not_read() {
        let mut headers = HeaderMap::new();
        headers.insert(http::header::CONTENT_LENGTH, "10".parse().unwrap());
        let Read::Over(body) = read_limited(chunked(&[b"0123456789"]), 5, &headers).await else {
            panic!("over the limit");
        };
        assert!(matches!(body.inner, Inner::Client { .. }), "{body:?}");
        assert_eq!(&body.collect().await.unwrap().to_bytes()[..], b"0123456789");
    }
}
