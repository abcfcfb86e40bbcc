use std::fmt;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use pin_project_lite::pin_project;
use uip_cache_core::http::range::RangeSlicer;
use uip_cache_core::tee::{QueueGauge, Tap};
use uip_cache_core::CachedBody;

pin_project! {
    /// The response body of [`CacheService`](crate::CacheService): a stored
    /// body, the origin's body passed through, or the origin's body streamed to
    /// the client while it is recorded for the cache; or the range of either
    /// of the last two that the client asked for.
    pub struct CacheBody<B>
    where
        B: Body,
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
        B: Body,
    {
        Full { data: Option<Bytes> },
        // A stored body decompressed as it is read.
        Cached { body: CachedBody },
        Passthrough { #[pin] inner: B },
        // The origin body, read to its end by a pump task that records it.
        Tapped {
            tap: Tap<Result<Frame<Bytes>, <B as Body>::Error>>,
            remaining: SizeHint,
        },
    }
}

impl<B: Body> CacheBody<B> {
    pub(crate) fn full(data: Bytes) -> Self {
        CacheBody {
            kind: Kind::Full {
                data: (!data.is_empty()).then_some(data),
            },
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

    /// A body passed through as it is (for responses a front-end answers
    /// itself around the cache, such as a proxy refusing a request).
    pub fn passthrough(inner: B) -> Self {
        CacheBody {
            kind: Kind::Passthrough { inner },
            part: None,
        }
    }

    pub(crate) fn tapped(tap: Tap<Result<Frame<Bytes>, B::Error>>, size: SizeHint) -> Self {
        CacheBody {
            kind: Kind::Tapped {
                tap,
                remaining: size,
            },
            part: None,
        }
    }

    /// Sends only what `slicer` cuts from this body (a client's range of
    /// the origin's complete response).
    pub(crate) fn cut(mut self, slicer: RangeSlicer) -> Self {
        self.part = Some(Box::new(slicer));
        self
    }

    /// For an origin body streamed while it is recorded: a handle on the
    /// bytes read from the origin and queued for this client, which a
    /// slow client makes grow up to the policy's `max_size` (a server
    /// counts them against what it holds for slow clients). `None` for
    /// other bodies.
    pub fn queue(&self) -> Option<QueueGauge> {
        match &self.kind {
            Kind::Tapped { tap, .. } => Some(tap.gauge()),
            _ => None,
        }
    }
}

impl<B> Body for CacheBody<B>
where
    B: Body<Data = Bytes>,
{
    type Data = Bytes;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, B::Error>>> {
        let this = self.project();
        let Some(part) = this.part.as_mut() else {
            return poll_kind(this.kind, cx);
        };
        let mut kind = this.kind;
        loop {
            if let Some(piece) = part.pop() {
                return Poll::Ready(Some(Ok(Frame::data(piece))));
            }
            // The rest of the origin's body is not the client's: the
            // body ends, and with it the reading of the origin (unless
            // the recording still reads it).
            if part.is_complete() {
                return Poll::Ready(None);
            }
            match ready!(poll_kind(kind.as_mut(), cx)) {
                Some(Ok(frame)) => {
                    // Trailers describe the whole, not the part: dropped.
                    if let Ok(data) = frame.into_data() {
                        part.push(data);
                    }
                }
                other => return Poll::Ready(other),
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        if let Some(part) = &self.part {
            return part.is_done();
        }
        match &self.kind {
            Kind::Full { data } => data.is_none(),
            Kind::Cached { body } => body.is_empty(),
            Kind::Passthrough { inner } => inner.is_end_stream(),
            Kind::Tapped { tap, .. } => tap.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        if let Some(part) = &self.part {
            return SizeHint::with_exact(part.len());
        }
        match &self.kind {
            Kind::Full { data } => {
                SizeHint::with_exact(data.as_ref().map_or(0, |d| d.len() as u64))
            }
            Kind::Cached { body } => SizeHint::with_exact(body.len()),
            Kind::Passthrough { inner } => inner.size_hint(),
            Kind::Tapped { remaining, .. } => *remaining,
        }
    }
}

/// The next frame of a body of any kind, before any range is cut from it.
#[allow(clippy::type_complexity)]
fn poll_kind<B: Body<Data = Bytes>>(
    kind: Pin<&mut Kind<B>>,
    cx: &mut Context<'_>,
) -> Poll<Option<Result<Frame<Bytes>, B::Error>>> {
    match kind.project() {
        KindProj::Full { data } => Poll::Ready(data.take().map(|d| Ok(Frame::data(d)))),
        KindProj::Cached { body } => Poll::Ready(body.next_chunk().map(|d| Ok(Frame::data(d)))),
        KindProj::Passthrough { inner } => inner.poll_frame(cx),
        KindProj::Tapped { tap, remaining } => {
            let frame = ready!(tap.poll_next(cx));
            if let Some(Ok(data)) = frame.as_ref().map(|f| f.as_ref().map(Frame::data_ref)) {
                let n = data.map_or(0, |d| d.len() as u64);
                let lower = remaining.lower().saturating_sub(n);
                let upper = remaining.upper().map(|u| u.saturating_sub(n));
                *remaining = SizeHint::new();
                remaining.set_lower(lower);
                if let Some(u) = upper {
                    remaining.set_upper(u.max(lower));
                }
            }
            Poll::Ready(frame)
        }
    }
}

impl<B: Body> fmt::Debug for CacheBody<B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kind = match &self.kind {
            Kind::Full { .. } => "Full",
            Kind::Cached { .. } => "Cached",
            Kind::Passthrough { .. } => "Passthrough",
            Kind::Tapped { .. } => "Tapped",
        };
        f.debug_struct("CacheBody").field("kind", &kind).finish()
    }
}
