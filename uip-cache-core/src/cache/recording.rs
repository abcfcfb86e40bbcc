//! Recording a response body as it streams to the client, and storing the
//! entry when it ends.

use std::fmt;

use bytes::Bytes;

use super::{CachePlan, HttpCache, OwnedRequest};
use crate::entry::{BodyEncoding, StoredResponse};
use crate::lock::{LockGuard, Waiter};
use crate::record::BodyRecorder;
use crate::stats::NoCacheReason;
use crate::store::{EntryWriter, PutOptions, ReadBack};

/// How long, at least, a recording goes on once no client reads it.
const ORPHAN_LIMIT: std::time::Duration = std::time::Duration::from_secs(30);

/// Records a response body as it streams to the client, up to the policy's
/// `max_size`, and stores the entry when the body ends. Adapters call
/// [`chunk`](Recording::chunk) for each data chunk and
/// [`failed`](Recording::failed) or [`ended`](Recording::ended) once; a
/// recording dropped before either (the client went away) stores nothing.
pub struct Recording {
    recorder: Option<BodyRecorder>,
    /// Instead of `recorder`: the body goes to the store as it comes.
    writer: Option<Streamed>,
    /// The write a body of unknown length moves to once `recorder` would
    /// hold more than the bound given with it.
    reserve: Option<(Streamed, u64)>,
    finish: Option<OnEnd>,
    max_size: u64,
    /// The most bytes held in memory for it (`max_size`, or the policy's
    /// `stream_above` when the body goes to the store as it comes).
    held_max: u64,
    /// How long a recording may go on once nobody reads it.
    orphan_limit: std::time::Duration,
    /// Bytes the body begins with that the origin does not send (a stored
    /// part the rest completes), written to the store before the first
    /// chunk.
    prefix: Option<Bytes>,
    /// Whether a client behind the store's write may read the body back
    /// from it (a streamed body of declared length, see
    /// [`Recording::read_back`]).
    read_back: bool,
}

/// The largest piece of a [`Recording::begin_with`] prefix written to the
/// store at a time (the disk store's own write size).
const PREFIX_PIECE: usize = 256 << 10;

/// What a recording does with its outcome.
type OnEnd = Box<dyn FnOnce(Result<Recorded, NoCacheReason>) + Send>;

/// A whole body recorded: in memory, or written to the store.
enum Recorded {
    Whole(Bytes),
    Written(Box<dyn EntryWriter>),
}

/// A body written to the store as it streams in.
struct Streamed {
    writer: Box<dyn EntryWriter>,
    /// Counts and logs a failed write.
    cache: HttpCache,
}

impl Recording {
    /// Records up to `max_size` bytes, and stores `finish`'s entry with
    /// them when the body ends.
    pub(super) fn storing(max_size: u64, finish: Finish) -> Self {
        Recording {
            recorder: Some(BodyRecorder::new(max_size)),
            writer: None,
            reserve: None,
            max_size,
            held_max: max_size,
            // Long enough for a background refresh (no client from the
            // start), short enough to end a stream that never does.
            orphan_limit: finish.plan.settings.lock_timeout().max(ORPHAN_LIMIT),
            finish: Some(Box::new(move |body| Box::new(finish).done(body))),
            prefix: None,
            read_back: false,
        }
    }

    /// The body begins with `prefix`, which the origin does not send: it is
    /// recorded now, or written to the store before the first chunk when
    /// the body goes there as it comes.
    pub(super) fn begin_with(&mut self, prefix: Bytes) {
        if self.writer.is_some() {
            self.prefix = Some(prefix);
        } else {
            self.chunk(&prefix);
        }
    }

    /// Like [`Recording::storing`], but when the store takes bodies as they
    /// stream in and the body is longer than the policy's `stream_above`
    /// (`declared`, its `Content-Length`), the body goes to the store as it
    /// comes. A body of unknown length is recorded in memory up to
    /// `stream_above` (so that a short one is stored as any other, even
    /// compressed), and goes to the store from there on. Either way no
    /// more than `stream_above` bytes of it are held in memory for the
    /// client (see [`Recording::held_max`]). A `finish` whose exact length
    /// is known otherwise (a part's) streams only when that length is
    /// `declared`.
    pub(super) fn storing_large(max_size: u64, declared: Option<u64>, mut finish: Finish) -> Self {
        let above = finish.cache.policy(&finish.plan).stream_above();
        // A body whose exact length is known otherwise (a part's, from its
        // `Content-Range`) streams only when it is the declared one.
        let other_len = finish.exact_len.is_some_and(|n| Some(n) != declared);
        if max_size <= above || declared.is_some_and(|n| n <= above) || other_len {
            return Self::storing(max_size, finish);
        }
        let Some(writer) = finish.begin_write() else {
            return Self::storing(max_size, finish);
        };
        // A streamed body is stored only when it is as long as the origin
        // said: an inner service whose body just ends early (or an origin
        // that stops short without an error) is never kept cut.
        if declared.is_some() {
            finish.exact_len = declared;
        }
        let mut recording = Self::storing(max_size, finish);
        recording.held_max = above;
        if declared.is_some() {
            recording.recorder = None;
            recording.writer = Some(writer);
            recording.read_back = true;
        } else {
            recording.reserve = Some((writer, above));
        }
        recording
    }

    /// A chunk went to the client. A recording that writes to the store as
    /// the body comes needs [`write`](Recording::write) (as
    /// [`Pump`](crate::tee::Pump) does): this gives it up.
    pub fn chunk(&mut self, data: &Bytes) {
        if self.writer.take().is_some() {
            self.end(Err(NoCacheReason::BodyNotBuffered));
            return;
        }
        if let Some(r) = self.recorder.as_mut() {
            if !r.push(data) {
                // Past max_size: stop recording, keep streaming.
                self.recorder = None;
                self.reserve = None;
                self.end(Err(NoCacheReason::TooLarge));
            }
        }
    }

    /// A chunk went to the client: recorded as [`chunk`](Recording::chunk)
    /// does, or written to the store when the recording streams there (the
    /// future ends once the store has it: the origin is read at the
    /// store's pace). Where the chunk begins in the store's write, when
    /// it went there.
    pub async fn write(&mut self, data: &Bytes) -> Option<u64> {
        if let Some(prefix) = self.prefix.take() {
            // In pieces, as the origin's chunks come: each write is one the
            // store's timeout bounds (a part may be as large as `max_size`).
            let mut at = 0;
            while at < prefix.len() && self.writer.is_some() {
                let end = prefix.len().min(at + PREFIX_PIECE);
                self.write_streamed(&prefix.slice(at..end)).await;
                at = end;
            }
        }
        if let Some((_, above)) = &self.reserve {
            let held = self.recorder.as_ref().map_or(0, BodyRecorder::len);
            if held.saturating_add(data.len() as u64) > *above {
                // Too long to hold: what was recorded goes to the store
                // first, then the rest as it comes.
                if let (Some((writer, _)), Some(r)) = (self.reserve.take(), self.recorder.take()) {
                    self.writer = Some(writer);
                    for c in r.into_chunks() {
                        self.write_streamed(&c).await;
                    }
                }
            }
        }
        if self.writer.is_some() {
            let at = self.writer.as_ref().map(|s| s.writer.written());
            self.write_streamed(data).await;
            return at.filter(|_| self.writer.is_some());
        }
        self.chunk(data);
        None
    }

    /// The chunk bytes of a body of declared length that the store's write
    /// can give back (how many, from the first, and their reader), while
    /// that write goes on: a client that falls behind reads them from
    /// there, and the origin is not held to its pace.
    pub fn read_back(&self) -> Option<(u64, std::sync::Arc<dyn ReadBack>)> {
        if !self.read_back {
            return None;
        }
        self.writer.as_ref()?.writer.read_back()
    }

    /// Writes `data` to the store's write, if it still goes on.
    async fn write_streamed(&mut self, data: &Bytes) {
        let Some(s) = self.writer.as_mut() else {
            return;
        };
        if s.writer.written().saturating_add(data.len() as u64) > self.max_size {
            // Past max_size: the write is dropped (removed), the body keeps
            // streaming to the client.
            self.writer = None;
            return self.end(Err(NoCacheReason::TooLarge));
        }
        if data.is_empty() {
            return;
        }
        let cache = s.cache.clone();
        if cache
            .guarded("write", s.writer.write(data.clone()))
            .await
            .is_none()
        {
            // Counted and logged as a store error; the client still gets
            // the body.
            self.writer = None;
            self.finish = None;
        }
    }

    /// The body stream failed.
    pub fn failed(&mut self) {
        self.recorder = None;
        self.writer = None;
        self.reserve = None;
        self.end(Err(NoCacheReason::IncompleteBody));
    }

    /// The body ended: store what was recorded.
    pub fn ended(&mut self) {
        if let Some(s) = self.writer.take() {
            return self.end(Ok(Recorded::Written(s.writer)));
        }
        // A body of unknown length that stayed short: stored whole.
        self.reserve = None;
        if let Some(r) = self.recorder.take() {
            let body = r
                .finish()
                .map(Recorded::Whole)
                .ok_or(NoCacheReason::TooLarge);
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

    /// The most bytes held in memory for it: `max_size`, or less when the
    /// body is written to the store as it comes. A tee queues up to this
    /// much for a client that reads slower than the origin sends.
    pub fn held_max(&self) -> u64 {
        self.held_max
    }

    /// How long it may go on once no client reads the body.
    pub fn orphan_limit(&self) -> std::time::Duration {
        self.orphan_limit
    }

    /// Whether chunks are still being recorded (not ended, not past `max_size`).
    pub fn is_recording(&self) -> bool {
        self.recorder.is_some() || self.writer.is_some()
    }

    fn end(&mut self, body: Result<Recorded, NoCacheReason>) {
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
            writer: None,
            reserve: None,
            max_size: max,
            held_max: max,
            orphan_limit: std::time::Duration::from_secs(5),
            prefix: None,
            read_back: false,
            finish: Some(Box::new(move |body| {
                if let (Ok(Recorded::Whole(b)), Ok(mut s)) = (body, out.lock()) {
                    *s = Some(b);
                }
            })),
        };
        (recording, slot)
    }
}

impl Recording {
    /// A recording that writes its body to `writer` as it comes (a body of
    /// declared length, which a client behind it may read back), holding
    /// at most `held_max` bytes for its client. For tests of the tee.
    #[doc(hidden)]
    pub fn for_test_streamed(writer: Box<dyn EntryWriter>, max: u64, held_max: u64) -> Self {
        let config =
            crate::CacheConfig::from_yaml_str("policies: []\n").expect("an empty configuration");
        let cache = HttpCache::with_memory_store(&config).expect("a memory store");
        Recording {
            recorder: None,
            writer: Some(Streamed { writer, cache }),
            reserve: None,
            max_size: max,
            held_max,
            orphan_limit: std::time::Duration::from_secs(5),
            prefix: None,
            read_back: true,
            // A test's body ends whole or not: its outcome is not kept.
            finish: Some(Box::new(|_| {})),
        }
    }
}

impl fmt::Debug for Recording {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Recording")
            .field("recording", &self.recorder.is_some())
            .field("streaming", &self.writer.is_some())
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
    /// stored. The write runs here until it has to wait, then in a task of
    /// its own (on the current tokio runtime); waiting requests wake once
    /// it is done.
    fn done(self: Box<Self>, body: Result<Recorded, NoCacheReason>) {
        let body = match body {
            Ok(b) => b,
            Err(reason) => {
                self.cache.stats().uncacheable(reason);
                return;
            }
        };
        let len = match &body {
            Recorded::Whole(b) => b.len() as u64,
            Recorded::Written(w) => w.written(),
        };
        if self.exact_len.is_some_and(|n| n != len) {
            // A write to the store is dropped (removed) with it.
            self.cache
                .stats()
                .uncacheable(NoCacheReason::IncompleteBody);
            return;
        }
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        // Done at once with a synchronous store (memory): no task then.
        crate::task::run_or_spawn(&runtime, async move {
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
            let req = request.view(&hs);
            let stored = match body {
                Recorded::Whole(b) => cache.store_body(&plan, &req, entry, b, transform).await,
                Recorded::Written(w) => cache.put_written(&plan, &req, entry, w).await,
            };
            if stored {
                if let Some(g) = &guard {
                    g.stored();
                }
            }
            cache.release_and_count(guard, holder, stored).await;
        });
    }
}

impl Finish {
    /// Begins the store's write of the entry as its body streams in, when
    /// the store takes one: under the key and with the tags and time to
    /// live the buffered write would have (see `put_entry`), without
    /// compression.
    fn begin_write(&mut self) -> Option<Streamed> {
        let hs = self.request.header_list();
        let req = self.request.view(&hs);
        // Worked out on a copy: when the store takes whole values only,
        // the buffered write gets the entry as it was (its tags not yet
        // worked out, its compression still to be decided).
        let mut entry = self.entry.clone();
        entry.body = Bytes::new();
        entry.compression = BodyEncoding::Identity;
        entry.tags = self
            .cache
            .entry_tags(&self.plan, &req, std::mem::take(&mut entry.tags));
        let head = entry.encode().ok()?;
        let ttl = entry.storage_ttl_with_unreachable(self.plan.settings.stale_if_unreachable());
        let options = PutOptions::new(ttl, req.path)
            .tags(&entry.tags)
            .query(req.query);
        let key = self.cache.entry_key(&self.plan, &req, &entry.vary);
        let writer = self
            .cache
            .inner
            .store
            .begin_put(key.as_str(), head.len() as u64, options)?;
        self.entry = entry;
        Some(Streamed {
            writer,
            cache: self.cache.clone(),
        })
    }
}

impl fmt::Debug for Finish {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Finish")
            .field("key", &self.plan.key)
            .finish()
    }
}
