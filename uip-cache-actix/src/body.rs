use std::fmt;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use actix_web::body::{BodySize, MessageBody};
use bytes::Bytes;
use pin_project_lite::pin_project;
use uip_cache_core::http::range::RangeSlicer;
use uip_cache_core::tee::Tap;
use uip_cache_core::CachedBody;

pin_project! {
    /// The response body of the cache middleware: a stored body, the origin's
    /// body passed through, or the origin's body streamed to the client while
    /// it is recorded for the cache; or the range of either of the last two
    /// that the client asked for.
    pub struct CacheBody<B>
    where
        B: MessageBody,
    {
        #[pin]
        kind: Kind<B>,
        // Cuts the client's range from the origin's body.
        part: Option<Box<RangeSlicer>>,
    }
}

pin_project! {
    #[project = KindProj]
    enum Kind<B>
    where
        B: MessageBody,
    {
        Full { data: Option<Bytes> },
        // A stored body decompressed as it is read.
        Cached { body: CachedBody },
        // A HEAD answer: the stored body's length, no bytes.
        Head { len: u64 },
        Passthrough { #[pin] inner: B },
        // The origin body, read to its end by a pump task that records it.
        Tapped {
            tap: Tap<Result<Bytes, <B as MessageBody>::Error>>,
            size: BodySize,
        },
    }
}

impl<B: MessageBody> CacheBody<B> {
    pub(crate) fn full(data: Bytes) -> Self {
        CacheBody {
            kind: Kind::Full { data: Some(data) },
            part: None,
        }
    }

    /// A body from the cache: one buffer, or read chunk by chunk.
    pub(crate) fn cached(body: CachedBody) -> Self {
        match body.into_bytes() {
            Ok(data) => Self::full(data),
            Err(body) => CacheBody {
                kind: Kind::Cached { body },
                part: None,
            },
        }
    }

    pub(crate) fn head(len: u64) -> Self {
        CacheBody {
            kind: Kind::Head { len },
            part: None,
        }
    }

    pub(crate) fn passthrough(inner: B) -> Self {
        CacheBody {
            kind: Kind::Passthrough { inner },
            part: None,
        }
    }

    /// Sends only what `slicer` cuts from this body (a client's range of
    /// the origin's complete response).
    pub(crate) fn cut(mut self, slicer: RangeSlicer) -> Self {
        self.part = Some(Box::new(slicer));
        self
    }

    pub(crate) fn tapped(tap: Tap<Result<Bytes, B::Error>>, size: BodySize) -> Self {
        CacheBody {
            kind: Kind::Tapped { tap, size },
            part: None,
        }
    }
}

impl<B: MessageBody> MessageBody for CacheBody<B> {
    type Error = B::Error;

    fn size(&self) -> BodySize {
        if let Some(part) = &self.part {
            return BodySize::Sized(part.len());
        }
        match &self.kind {
            Kind::Full { data } => BodySize::Sized(data.as_ref().map_or(0, |d| d.len() as u64)),
            Kind::Cached { body } => BodySize::Sized(body.len()),
            Kind::Head { len } => BodySize::Sized(*len),
            Kind::Passthrough { inner } => inner.size(),
            Kind::Tapped { size, .. } => *size,
        }
    }

    fn poll_next(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Bytes, B::Error>>> {
        let this = self.project();
        let Some(part) = this.part.as_mut() else {
            return poll_kind(this.kind, cx);
        };
        let mut kind = this.kind;
        loop {
            if let Some(piece) = part.pop() {
                return Poll::Ready(Some(Ok(piece)));
            }
            // The rest of the origin's body is not the client's: the body
            // ends, and with it the reading of the origin (unless the
            // recording still reads it).
            if part.is_complete() {
                return Poll::Ready(None);
            }
            match ready!(poll_kind(kind.as_mut(), cx)) {
                Some(Ok(data)) => part.push(data),
                other => return Poll::Ready(other),
            }
        }
    }
}

/// The next chunk of a body of any kind, before any range is cut from it.
fn poll_kind<B: MessageBody>(
    kind: Pin<&mut Kind<B>>,
    cx: &mut Context<'_>,
) -> Poll<Option<Result<Bytes, B::Error>>> {
    match kind.project() {
        KindProj::Full { data } => Poll::Ready(data.take().filter(|d| !d.is_empty()).map(Ok)),
        KindProj::Cached { body } => Poll::Ready(body.next_chunk().map(Ok)),
        KindProj::Head { .. } => Poll::Ready(None),
        KindProj::Passthrough { inner } => inner.poll_next(cx),
        KindProj::Tapped { tap, .. } => tap.poll_next(cx),
    }
}

impl<B: MessageBody> fmt::Debug for CacheBody<B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kind = match &self.kind {
            Kind::Full { .. } => "Full",
            Kind::Cached { .. } => "Cached",
            Kind::Head { .. } => "Head",
            Kind::Passthrough { .. } => "Passthrough",
            Kind::Tapped { .. } => "Tapped",
        };
        f.debug_struct("CacheBody").field("kind", &kind).finish()
    }
}
