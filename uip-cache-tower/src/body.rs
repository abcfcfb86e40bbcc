use std::fmt;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use pin_project_lite::pin_project;
use uip_cache_core::record::BodyRecorder;
use uip_cache_core::NoCacheReason;

/// Called once when a recorded body ends: with the whole body, or why it
/// cannot be stored (past the size limit, or the stream failed). Dropped
/// uncalled when the client goes away first.
pub(crate) type OnDone = Box<dyn FnOnce(Result<Bytes, NoCacheReason>) + Send>;

pin_project! {
    /// The response body of [`CacheService`](crate::CacheService): a stored
    /// body, the origin's body passed through, or the origin's body streamed to
    /// the client while it is recorded for the cache.
    pub struct CacheBody<B> {
        #[pin]
        kind: Kind<B>,
    }
}

pin_project! {
    #[project = KindProj]
    enum Kind<B> {
        Full { data: Option<Bytes> },
        Passthrough { #[pin] inner: B },
        Recording {
            #[pin] inner: B,
            recorder: Option<BodyRecorder>,
            on_done: Option<OnDone>,
        },
    }
}

impl<B> CacheBody<B> {
    pub(crate) fn full(data: Bytes) -> Self {
        CacheBody {
            kind: Kind::Full {
                data: (!data.is_empty()).then_some(data),
            },
        }
    }

    pub(crate) fn passthrough(inner: B) -> Self {
        CacheBody {
            kind: Kind::Passthrough { inner },
        }
    }

    pub(crate) fn recording(inner: B, max: u64, on_done: OnDone) -> Self {
        CacheBody {
            kind: Kind::Recording {
                inner,
                recorder: Some(BodyRecorder::new(max)),
                on_done: Some(on_done),
            },
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
        match self.project().kind.project() {
            KindProj::Full { data } => Poll::Ready(data.take().map(|d| Ok(Frame::data(d)))),
            KindProj::Passthrough { inner } => inner.poll_frame(cx),
            KindProj::Recording {
                inner,
                recorder,
                on_done,
            } => {
                let frame = ready!(inner.poll_frame(cx));
                match &frame {
                    Some(Ok(f)) => {
                        if let (Some(data), Some(r)) = (f.data_ref(), recorder.as_mut()) {
                            if !r.push(data) {
                                // Past max_size: stop recording, keep streaming.
                                *recorder = None;
                                if let Some(done) = on_done.take() {
                                    done(Err(NoCacheReason::TooLarge));
                                }
                            }
                        }
                    }
                    Some(Err(_)) => {
                        *recorder = None;
                        if let Some(done) = on_done.take() {
                            done(Err(NoCacheReason::IncompleteBody));
                        }
                    }
                    None => {
                        if let (Some(r), Some(done)) = (recorder.take(), on_done.take()) {
                            done(r.finish().ok_or(NoCacheReason::TooLarge));
                        }
                    }
                }
                Poll::Ready(frame)
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        match &self.kind {
            Kind::Full { data } => data.is_none(),
            Kind::Passthrough { inner } => inner.is_end_stream(),
            // Reported false so the last poll, which stores the entry, happens.
            Kind::Recording { on_done, inner, .. } => on_done.is_none() && inner.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match &self.kind {
            Kind::Full { data } => {
                SizeHint::with_exact(data.as_ref().map_or(0, |d| d.len() as u64))
            }
            Kind::Passthrough { inner } | Kind::Recording { inner, .. } => inner.size_hint(),
        }
    }
}

impl<B> fmt::Debug for CacheBody<B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kind = match &self.kind {
            Kind::Full { .. } => "Full",
            Kind::Passthrough { .. } => "Passthrough",
            Kind::Recording { .. } => "Recording",
        };
        f.debug_struct("CacheBody").field("kind", &kind).finish()
    }
}
