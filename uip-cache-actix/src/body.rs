use std::fmt;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use actix_web::body::{BodySize, MessageBody};
use bytes::Bytes;
use pin_project_lite::pin_project;
use uip_cache_core::Recording;

pin_project! {
    /// The response body of the cache middleware: a stored body, the origin's
    /// body passed through, or the origin's body streamed to the client while
    /// it is recorded for the cache.
    pub struct CacheBody<B> {
        #[pin]
        kind: Kind<B>,
    }
}

pin_project! {
    #[project = KindProj]
    enum Kind<B> {
        Full { data: Option<Bytes> },
        // A HEAD answer: the stored body's length, no bytes.
        Head { len: u64 },
        Passthrough { #[pin] inner: B },
        Recording {
            #[pin] inner: B,
            recording: Recording,
        },
    }
}

impl<B> CacheBody<B> {
    pub(crate) fn full(data: Bytes) -> Self {
        CacheBody {
            kind: Kind::Full { data: Some(data) },
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

    pub(crate) fn recording(inner: B, recording: Recording) -> Self {
        CacheBody {
            kind: Kind::Recording { inner, recording },
        }
    }
}

impl<B: MessageBody> MessageBody for CacheBody<B> {
    type Error = B::Error;

    fn size(&self) -> BodySize {
        match &self.kind {
            Kind::Full { data } => BodySize::Sized(data.as_ref().map_or(0, |d| d.len() as u64)),
            Kind::Head { len } => BodySize::Sized(*len),
            Kind::Passthrough { inner } | Kind::Recording { inner, .. } => inner.size(),
        }
    }

    fn poll_next(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Bytes, B::Error>>> {
        match self.project().kind.project() {
            KindProj::Full { data } => Poll::Ready(data.take().filter(|d| !d.is_empty()).map(Ok)),
            KindProj::Head { .. } => Poll::Ready(None),
            KindProj::Passthrough { inner } => inner.poll_next(cx),
            KindProj::Recording { inner, recording } => {
                let chunk = ready!(inner.poll_next(cx));
                match &chunk {
                    Some(Ok(data)) => recording.chunk(data),
                    Some(Err(_)) => recording.failed(),
                    None => recording.ended(),
                }
                Poll::Ready(chunk)
            }
        }
    }
}

impl<B> fmt::Debug for CacheBody<B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kind = match &self.kind {
            Kind::Full { .. } => "Full",
            Kind::Head { .. } => "Head",
            Kind::Passthrough { .. } => "Passthrough",
            Kind::Recording { .. } => "Recording",
        };
        f.debug_struct("CacheBody").field("kind", &kind).finish()
    }
}
