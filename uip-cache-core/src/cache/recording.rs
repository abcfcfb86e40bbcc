//! Recording a response body as it streams to the client, and storing the
//! entry when it ends.

use std::fmt;

use bytes::Bytes;

use super::{CachePlan, HttpCache, OwnedRequest};
use crate::entry::StoredResponse;
use crate::lock::{LockGuard, Waiter};
use crate::record::BodyRecorder;
use crate::stats::NoCacheReason;

/// How long, at least, a recording goes on once no client reads it.
const ORPHAN_LIMIT: std::time::Duration = std::time::Duration::from_secs(30);

/// Records a response body as it streams to the client, up to the policy's
/// `max_size`, and stores the entry when the body ends. Adapters call
/// [`chunk`](Recording::chunk) for each data chunk and
/// [`failed`](Recording::failed) or [`ended`](Recording::ended) once; a
/// recording dropped before either (the client went away) stores nothing.
pub struct Recording {
    recorder: Option<BodyRecorder>,
    finish: Option<OnEnd>,
    max_size: u64,
    /// How long a recording may go on once nobody reads it.
    orphan_limit: std::time::Duration,
}

/// What a recording does with its outcome.
type OnEnd = Box<dyn FnOnce(Result<Bytes, NoCacheReason>) + Send>;

impl Recording {
    /// Records up to `max_size` bytes, and stores `finish`'s entry with
    /// them when the body ends.
    pub(super) fn storing(max_size: u64, finish: Finish) -> Self {
        Recording {
            recorder: Some(BodyRecorder::new(max_size)),
            max_size,
            // Long enough for a background refresh (no client from the
            // start), short enough to end a stream that never does.
            orphan_limit: finish.plan.settings.lock_timeout().max(ORPHAN_LIMIT),
            finish: Some(Box::new(move |body| Box::new(finish).done(body))),
        }
    }

    /// A chunk went to the client.
    pub fn chunk(&mut self, data: &Bytes) {
        if let Some(r) = self.recorder.as_mut() {
            if !r.push(data) {
                // Past max_size: stop recording, keep streaming.
                self.recorder = None;
                self.end(Err(NoCacheReason::TooLarge));
            }
        }
    }

    /// The body stream failed.
    pub fn failed(&mut self) {
        self.recorder = None;
        self.end(Err(NoCacheReason::IncompleteBody));
    }

    /// The body ended: store what was recorded.
    pub fn ended(&mut self) {
        if let Some(r) = self.recorder.take() {
            let body = r.finish().ok_or(NoCacheReason::TooLarge);
            self.end(body);
        }
    }

    /// Whether the outcome has been handed on (stored, or given up).
    pub fn is_done(&self) -> bool {
        self.finish.is_none()
    }

    /// The most bytes it records.
    pub fn max_size(&self) -> u64 {
        self.max_size
    }

    /// How long it may go on once no client reads the body.
    pub fn orphan_limit(&self) -> std::time::Duration {
        self.orphan_limit
    }

    /// Whether chunks are still being recorded (not ended, not past `max_size`).
    pub fn is_recording(&self) -> bool {
        self.recorder.is_some()
    }

    fn end(&mut self, body: Result<Bytes, NoCacheReason>) {
        if let Some(f) = self.finish.take() {
            f(body);
        }
    }

    /// A recording of at most `max` bytes whose outcome lands in the returned
    /// slot (`Some(body)` once stored), for tests of what drives recordings.
    #[doc(hidden)]
    pub fn for_test(max: u64) -> (Self, std::sync::Arc<std::sync::Mutex<Option<Bytes>>>) {
        let slot = std::sync::Arc::new(std::sync::Mutex::new(None));
        let out = slot.clone();
        let recording = Recording {
            recorder: Some(BodyRecorder::new(max)),
            max_size: max,
            orphan_limit: std::time::Duration::from_secs(5),
            finish: Some(Box::new(move |body| {
                if let (Ok(b), Ok(mut s)) = (body, out.lock()) {
                    *s = Some(b);
                }
            })),
        };
        (recording, slot)
    }
}

impl fmt::Debug for Recording {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Recording")
            .field("recording", &self.recorder.is_some())
            .field("done", &self.is_done())
            .finish()
    }
}

/// Stores a recorded response once its body has streamed.
pub(super) struct Finish {
    pub(super) cache: HttpCache,
    pub(super) plan: CachePlan,
    pub(super) request: OwnedRequest,
    pub(super) entry: StoredResponse,
    /// Whether the cache may compress the body (no `no-transform`).
    pub(super) transform: bool,
    pub(super) guard: Option<LockGuard>,
    /// The task holding the key this fetch refreshes for, if any.
    pub(super) holder: Option<Waiter>,
    /// The length the body must have to be stored (a part: its
    /// `Content-Range`'s), when the headers state one the cache relies on.
    pub(super) exact_len: Option<u64>,
}

impl Finish {
    /// The recorded body ended: with all of it, or with why it cannot be
    /// stored. The write runs in a task of its own (on the current tokio
    /// runtime); waiting requests wake once it is done.
    fn done(self: Box<Self>, body: Result<Bytes, NoCacheReason>) {
        let body = match body {
            Ok(b) if self.exact_len.is_some_and(|n| n != b.len() as u64) => {
                self.cache
                    .stats()
                    .uncacheable(NoCacheReason::IncompleteBody);
                return;
            }
            Ok(b) => b,
            Err(reason) => {
                self.cache.stats().uncacheable(reason);
                return;
            }
        };
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        runtime.spawn(async move {
            let Finish {
                cache,
                plan,
                request,
                entry,
                transform,
                guard,
                holder,
                ..
            } = *self;
            let hs = request.header_list();
            let stored = cache
                .store_body(&plan, &request.view(&hs), entry, body, transform)
                .await;
            if stored {
                if let Some(g) = &guard {
                    g.stored();
                }
            }
            cache.release_and_count(guard, holder, stored).await;
        });
    }
}

impl fmt::Debug for Finish {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Finish")
            .field("key", &self.plan.key)
            .finish()
    }
}
