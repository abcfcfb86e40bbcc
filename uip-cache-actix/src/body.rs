use std::fmt;
use std::pin::Pin;
use std::task::{Context, Poll};

use actix_web::body::{BodySize, MessageBody};
use bytes::Bytes;
use pin_project_lite::pin_project;
use uip_cache_core::tee::Tap;
use uip_cache_core::CachedBody;

pin_project! {
    /// The response body of the cache middleware: a stored body, the origin's
    /// body passed through, or the origin's body streamed to the client while
    /// it is recorded for the cache.
    pub struct CacheBody<B>
    where
        B: MessageBody,
    {
        #[pin]
        kind: Kind<B>,
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
        }
    }

    /// A body from the cache: one buffer, or read chunk by chunk.
    pub(crate) fn cached(body: CachedBody) -> Self {
        match body.into_bytes() {
            Ok(data) => Self::full(data),
            Err(body) => CacheBody {
                kind: Kind::Cached { body },
            },
        }
    }

    pub(crate) fn head(len: u64) -> Self {
        CacheBody {
            kind: Kind::Head { len },
        }
    }

    pub(crate) fn passthrough(inner: B) -> Self {
        CacheBody {
            kind: Kind::Passthrough { inner },
        }
    }

    pub(crate) fn tapped(tap: Tap<Result<Bytes, B::Error>>, size: BodySize) -> Self {
        CacheBody {
            kind: Kind::Tapped { tap, size },
        }
    }
}

impl<B: MessageBody> MessageBody for CacheBody<B> {
    type Error = B::Error;

    fn size(&self) -> BodySize {
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
        match self.project().kind.project() {
            KindProj::Full { data } => Poll::Ready(data.take().filter(|d| !d.is_empty()).map(Ok)),
            KindProj::Cached { body } => Poll::Ready(body.next_chunk().map(Ok)),
            KindProj::Head { .. } => Poll::Ready(None),
            KindProj::Passthrough { inner } => inner.poll_next(cx),
            KindProj::Tapped { tap, .. } => tap.poll_next(cx),
        }
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
