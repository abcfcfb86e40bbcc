//! Reading a recorded origin body at the origin's pace, apart from the client.
//!
//! A server stops polling a response body once it has written the length it
//! announced (hyper), or never polls an empty one (hyper, actix), and a slow
//! client polls slowly. If the recording lived inside the client's body, the
//! entry would never be stored behind a real server, and requests waiting on
//! the coalescing lock would wait for the slowest client. So the adapter runs
//! a small task that reads the origin body to its end and feeds each frame to
//! a [`Pump`]: the pump records it and queues it for the client, whose body
//! reads the [`Tap`]. The task is started with
//! [`run_or_spawn`](crate::task::run_or_spawn): a body all read already
//! (most small ones) is pumped where the response is made, with no task.
//!
//! Memory stays bounded: while the recording is under the policy's
//! `max_size`, queued frames share their bytes with the recording; once the
//! recording has stopped (too large) the pump waits for the client whenever
//! more than [`LOW_WATER`] bytes are queued, so the origin streams at the
//! client's pace. A recording that writes the body to the store as it comes
//! holds none of it: the pump waits for the store's write of each frame,
//! and for the client past the recording's
//! [`held_max`](Recording::held_max) queued. When the client goes away the pump keeps reading only as
//! long as it is still recording.
//!
//! A body of declared length that goes to a store able to give back what
//! it wrote ([`Recording::read_back`], the disk store's file being
//! written) does not hold the origin to a slow client's pace: past
//! `held_max` queued, the pump hands the client what the store has
//! written instead of the bytes (read back on a blocking thread as the
//! client takes them), and reads on at the store's pace. Only the chunks
//! not in the store yet stay in memory. So requests coalesced on the key
//! get the entry once the origin is done, whatever the first client
//! does, as nginx serves a slow client from its temporary file.

use std::collections::VecDeque;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{ready, Context, Poll};

use bytes::Bytes;
use tokio::sync::{mpsc, Notify};

use crate::store::ReadBack;
use crate::Recording;

/// The most bytes read back from the store at a time for a client.
const READ_PIECE: u64 = 256 << 10;

/// What a pump whose client is behind holds at least before it waits for
/// the client: chunks the store has not written yet, more than one of its
/// writes (the disk store's are of 256 KiB).
const HELD_BEHIND: u64 = 1 << 20;

/// Bytes queued for a client past which a pump that no longer records waits.
pub const LOW_WATER: u64 = 64 * 1024;

/// What each queued frame counts for besides its data, so that a flood of
/// tiny or empty frames is bounded like a flood of bytes.
const FRAME_COST: u64 = 64;

struct Shared {
    /// Data bytes queued and not yet taken by the client.
    queued: AtomicU64,
    /// The client's side is gone (and its queue with it).
    tap_gone: AtomicBool,
    /// Wakes a waiting pump when the client took some or went away.
    taken: Notify,
}

/// What goes to the client: a frame, or body bytes to read back from the
/// store's write.
enum Item<T> {
    Frame(T),
    Stored {
        reader: Arc<dyn ReadBack>,
        offset: u64,
        len: u64,
    },
}

/// A frame kept back while the client is behind, until the store has its
/// bytes (or its write ends).
struct Held<T> {
    frame: T,
    /// Where its data begins in the store's write (`None`: not written
    /// there, a frame without data or a write that ended).
    at: Option<u64>,
    len: u64,
    cost: u64,
}

/// The origin side: feed it every frame of the origin body, then say how the
/// body ended.
pub struct Pump<T> {
    recording: Recording,
    tx: mpsc::UnboundedSender<(Item<T>, u64)>,
    shared: Arc<Shared>,
    /// Queued bytes past which even a recording pump waits for the client.
    cap: u64,
    /// Whether the client is behind and gets what the store wrote.
    behind: bool,
    /// While behind: frames whose bytes the store cannot give back yet.
    held: VecDeque<Held<T>>,
    /// What `held` counts for in `shared.queued`.
    held_cost: u64,
}

/// The client side: the frames, in order, as the origin sent them.
pub struct Tap<T> {
    rx: mpsc::UnboundedReceiver<(Item<T>, u64)>,
    shared: Arc<Shared>,
    /// Makes a data frame of bytes read back from the store.
    data_frame: fn(Bytes) -> T,
    /// Bytes being read back from the store for the client.
    reading: Option<Box<Reading>>,
    /// A read back failed: the body ends there, short of its length.
    cut: bool,
}

/// Body bytes the client gets from the store's write, a piece at a time.
struct Reading {
    reader: Arc<dyn ReadBack>,
    offset: u64,
    left: u64,
    piece: Option<Pin<Box<dyn Future<Output = std::io::Result<Bytes>> + Send>>>,
}

impl Recording {
    /// Splits the recording into the pump an adapter's task feeds and the
    /// tap the client's body reads. `data_frame` makes a data frame of
    /// bytes (those read back from the store for a client behind it).
    pub fn tee<T>(self, data_frame: fn(Bytes) -> T) -> (Pump<T>, Tap<T>) {
        let (tx, rx) = mpsc::unbounded_channel();
        let shared = Arc::new(Shared {
            queued: AtomicU64::new(0),
            tap_gone: AtomicBool::new(false),
            taken: Notify::new(),
        });
        let cap = self.held_max().saturating_add(LOW_WATER);
        (
            Pump {
                recording: self,
                tx,
                shared: shared.clone(),
                cap,
                behind: false,
                held: VecDeque::new(),
                held_cost: 0,
            },
            Tap {
                rx,
                shared,
                data_frame,
                reading: None,
                cut: false,
            },
        )
    }
}

impl<T> Pump<T> {
    /// Records `data` (the frame's data, if it has any) and queues `frame`
    /// for the client. False when the pump should stop reading: the client
    /// is gone and nothing is being recorded any more.
    pub async fn send(&mut self, frame: T, data: Option<&Bytes>) -> bool {
        let len = data.map_or(0, |d| d.len() as u64);
        let cost = len + FRAME_COST;
        let at = match data {
            Some(d) => self.recording.write(d).await,
            None => None,
        };
        self.catch_up();
        if self.tx.is_closed() {
            self.drop_held();
        } else if self.behind && at.is_some() && len == 0 {
            // An empty data frame carries nothing: not held (a flood of
            // them would be held without bound).
        } else if self.behind {
            self.shared.queued.fetch_add(cost, Ordering::AcqRel);
            self.held_cost += cost;
            self.held.push_back(Held {
                frame,
                at,
                len,
                cost,
            });
            self.hand_over();
        } else {
            self.queue(Item::Frame(frame), cost);
            if self.shared.queued.load(Ordering::Acquire) > self.cap
                && self.recording.read_back().is_some()
            {
                // The client is behind: from now on it reads what the
                // store wrote, and the origin goes on at the store's pace.
                self.behind = true;
            }
        }
        // While recording, the origin's pace (memory is bounded by what
        // the recording may hold); after, the client's.
        let limit = if self.recording.is_recording() {
            self.cap
        } else {
            LOW_WATER
        };
        loop {
            if self.tx.is_closed() {
                self.drop_held();
                return self.recording.is_recording();
            }
            // A client that has taken all it was handed gets what is held.
            self.catch_up();
            let queued = self.shared.queued.load(Ordering::Acquire);
            // Behind, only what the store cannot give back yet is held:
            // at least one of its writes.
            let (held, most) = match self.behind {
                true => (self.held_cost, limit.max(HELD_BEHIND)),
                false => (queued, limit),
            };
            if held <= most {
                return true;
            }
            let shared = self.shared.clone();
            let taken = shared.taken.notified();
            // Anything the client took since the load above woke nobody:
            // look again (what it takes from here on wakes `taken`).
            if self.shared.queued.load(Ordering::Acquire) == queued {
                taken.await;
            }
        }
    }

    /// The client is gone: what was held for it goes.
    fn drop_held(&mut self) {
        self.held.clear();
        self.shared
            .queued
            .fetch_sub(self.held_cost, Ordering::AcqRel);
        self.held_cost = 0;
    }

    /// A client behind that has taken all it was handed gets what is held
    /// now, and frames as they come from then on.
    fn catch_up(&mut self) {
        if self.behind && self.shared.queued.load(Ordering::Acquire) == self.held_cost {
            self.behind = false;
            self.send_held();
        }
    }

    /// Queues `item` for the client, counted as `cost`.
    fn queue(&self, item: Item<T>, cost: u64) {
        self.shared.queued.fetch_add(cost, Ordering::AcqRel);
        if self.tx.send((item, cost)).is_err() {
            self.shared.queued.fetch_sub(cost, Ordering::AcqRel);
        }
    }

    /// Hands the client, in order, the held frames whose bytes the store
    /// can give back (as one read of them), and the frames without data
    /// between them; all of them, as they are, once the store's write has
    /// ended.
    fn hand_over(&mut self) {
        let Some((in_store, reader)) = self.recording.read_back() else {
            // The write ended (dropped or failed): the client's pace again,
            // what was handed over before stays readable.
            self.behind = false;
            self.send_held();
            return;
        };
        // A run of contiguous bytes in the store: (offset, length).
        let mut run: Option<(u64, u64)> = None;
        while let Some(h) = self.held.front() {
            match h.at {
                Some(at) if at.saturating_add(h.len) <= in_store => {
                    run = match run {
                        Some((o, n)) if o + n == at => Some((o, n + h.len)),
                        Some(r) => {
                            self.queue_stored(&reader, r);
                            Some((at, h.len))
                        }
                        None => Some((at, h.len)),
                    };
                    self.take_held();
                }
                None if h.len == 0 => {
                    if let Some(r) = run.take() {
                        self.queue_stored(&reader, r);
                    }
                    self.send_held_front();
                }
                // Not in the store yet.
                _ => break,
            }
        }
        if let Some(r) = run {
            self.queue_stored(&reader, r);
        }
    }

    fn queue_stored(&self, reader: &Arc<dyn ReadBack>, (offset, len): (u64, u64)) {
        if len > 0 {
            let item = Item::Stored {
                reader: reader.clone(),
                offset,
                len,
            };
            self.queue(item, FRAME_COST);
        }
    }

    /// A future that resolves once the client has been gone for the
    /// recording's orphan limit: an adapter stops reading the origin then (a
    /// stream that never ends, a trickle), dropping the recording. Make it
    /// once per pump and race every read against it.
    pub fn abandoned(&self) -> impl std::future::Future<Output = ()> + 'static
    where
        T: 'static,
    {
        let tx = self.tx.clone();
        let limit = self.recording.orphan_limit();
        async move {
            tx.closed().await;
            tokio::time::sleep(limit).await;
        }
    }

    /// Reads the origin body to its end (or until it is abandoned), feeding
    /// every frame to the pump: the loop each adapter's task runs.
    /// `poll_next` polls the origin body, `data` gives a frame's data and
    /// `is_error` says whether a frame is the body's error.
    pub async fn drive(
        mut self,
        mut poll_next: impl FnMut(&mut Context<'_>) -> Poll<Option<T>>,
        data: impl Fn(&T) -> Option<Bytes>,
        is_error: impl Fn(&T) -> bool,
    ) where
        T: 'static,
    {
        let abandoned = self.abandoned();
        tokio::pin!(abandoned);
        let shared = self.shared.clone();
        loop {
            // A client behind that catches up while the origin is quiet
            // gets what is held without waiting for the origin's next chunk.
            let behind = self.behind && !self.held.is_empty();
            let next = tokio::select! {
                next = std::future::poll_fn(&mut poll_next) => next,
                () = &mut abandoned => return,
                () = shared.taken.notified(), if behind => {
                    self.catch_up();
                    continue;
                }
            };
            match next {
                None => return self.ended(),
                Some(frame) if is_error(&frame) => return self.failed(frame),
                Some(frame) => {
                    let d = data(&frame);
                    if !self.send(frame, d.as_ref()).await {
                        return;
                    }
                }
            }
        }
    }

    /// The origin body ended: store what was recorded.
    pub fn ended(mut self) {
        self.release_held();
        self.recording.ended();
    }

    /// The origin body failed with `frame` (passed on to the client): store
    /// nothing.
    pub fn failed(mut self, frame: T) {
        self.release_held();
        self.recording.failed();
        let _ = self.tx.send((Item::Frame(frame), 0));
    }

    /// Before the write ends: what the store has goes as reads of it, the
    /// rest (less than one write of the store) as it is.
    fn release_held(&mut self) {
        self.hand_over();
        self.send_held();
    }

    /// Every held frame goes to the client as it is.
    fn send_held(&mut self) {
        while self.send_held_front() {}
    }

    /// The first held frame goes to the client as it is (its cost counted
    /// as queued instead of held); false when none is held.
    fn send_held_front(&mut self) -> bool {
        let Some(h) = self.take_held() else {
            return false;
        };
        self.queue(Item::Frame(h.frame), h.cost);
        true
    }

    /// The first held frame, no longer counted.
    fn take_held(&mut self) -> Option<Held<T>> {
        let h = self.held.pop_front()?;
        self.held_cost -= h.cost;
        self.shared.queued.fetch_sub(h.cost, Ordering::AcqRel);
        Some(h)
    }
}

impl<T> Tap<T> {
    /// The next frame; `None` once the origin body has ended (or the pump
    /// stopped). Bytes the store could not give back end the body there:
    /// only a body of declared length is read back, so the client sees it
    /// cut short, never a shorter body as whole.
    pub fn poll_next(&mut self, cx: &mut Context<'_>) -> Poll<Option<T>> {
        loop {
            if let Some(reading) = self.reading.as_mut() {
                match ready!(reading.poll_piece(cx)) {
                    Some(Ok(bytes)) => return Poll::Ready(Some((self.data_frame)(bytes))),
                    None => self.reading = None,
                    Some(Err(e)) => {
                        // Every streamed miss while the disk fails: a line
                        // a second at most.
                        static CUT: crate::quiet::Quiet = crate::quiet::Quiet::new();
                        if let Some(left_out) = CUT.admit() {
                            tracing::warn!(error = %e, left_out, "a body being stored could not be read back for its client: the response is cut");
                        }
                        self.reading = None;
                        self.cut = true;
                        self.rx.close();
                        // What was queued will never be taken: not counted.
                        while let Ok((_, cost)) = self.rx.try_recv() {
                            self.shared.queued.fetch_sub(cost, Ordering::AcqRel);
                        }
                        self.shared.taken.notify_one();
                    }
                }
            }
            if self.cut {
                return Poll::Ready(None);
            }
            match ready!(self.rx.poll_recv(cx)) {
                Some((item, cost)) => {
                    self.shared.queued.fetch_sub(cost, Ordering::AcqRel);
                    self.shared.taken.notify_one();
                    match item {
                        Item::Frame(frame) => return Poll::Ready(Some(frame)),
                        Item::Stored {
                            reader,
                            offset,
                            len,
                        } => {
                            self.reading = Some(Box::new(Reading {
                                reader,
                                offset,
                                left: len,
                                piece: None,
                            }));
                        }
                    }
                }
                None => return Poll::Ready(None),
            }
        }
    }

    /// Whether every frame has been taken and no more will come.
    pub fn is_end_stream(&self) -> bool {
        (self.cut || (self.rx.is_closed() && self.rx.is_empty())) && self.reading.is_none()
    }

    /// A handle on what this tap holds for its client, readable from
    /// elsewhere (a server bounding the bytes held for slow clients).
    pub fn gauge(&self) -> QueueGauge {
        QueueGauge(self.shared.clone())
    }
}

impl Reading {
    /// The next piece read back: `None` once all of it was.
    fn poll_piece(&mut self, cx: &mut Context<'_>) -> Poll<Option<std::io::Result<Bytes>>> {
        if self.piece.is_none() {
            if self.left == 0 {
                return Poll::Ready(None);
            }
            let n = self.left.min(READ_PIECE) as usize;
            let (reader, offset) = (self.reader.clone(), self.offset);
            let read = move || reader.read_at(offset, n);
            self.piece = Some(match tokio::runtime::Handle::try_current() {
                Ok(rt) => Box::pin(async move {
                    rt.spawn_blocking(read)
                        .await
                        .unwrap_or_else(|e| Err(std::io::Error::other(e)))
                }),
                Err(_) => Box::pin(std::future::ready(read())),
            });
        }
        let Some(piece) = self.piece.as_mut() else {
            return Poll::Ready(None);
        };
        let read = ready!(piece.as_mut().poll(cx));
        self.piece = None;
        Poll::Ready(Some(match read {
            Ok(b) if !b.is_empty() && b.len() as u64 <= self.left => {
                self.offset += b.len() as u64;
                self.left -= b.len() as u64;
                Ok(b)
            }
            Ok(_) => Err(std::io::Error::other("a short read")),
            Err(e) => Err(e),
        }))
    }
}

/// What a [`Tap`] holds for its client, read from outside its body.
#[derive(Clone)]
pub struct QueueGauge(Arc<Shared>);

impl QueueGauge {
    /// Bytes queued for the client and not taken yet (each frame also
    /// counts a small fixed cost); 0 once the tap is gone.
    pub fn bytes(&self) -> u64 {
        if self.0.tap_gone.load(Ordering::Acquire) {
            return 0;
        }
        self.0.queued.load(Ordering::Acquire)
    }

    /// Whether the tap is gone: its queue is freed, the gauge can go.
    pub fn is_gone(&self) -> bool {
        self.0.tap_gone.load(Ordering::Acquire)
    }
}

impl fmt::Debug for QueueGauge {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("QueueGauge").field(&self.bytes()).finish()
    }
}

impl<T> Drop for Tap<T> {
    fn drop(&mut self) {
        self.shared.tap_gone.store(true, Ordering::Release);
        self.rx.close();
        self.shared.taken.notify_one();
    }
}

impl<T> fmt::Debug for Pump<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Pump")
            .field("recording", &self.recording)
            .field("client_connected", &!self.tx.is_closed())
            .finish()
    }
}

impl<T> fmt::Debug for Tap<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Tap")
            .field("queued", &self.shared.queued.load(Ordering::Relaxed))
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Recording;
    use std::future::poll_fn;

    fn frames(n: usize, size: usize) -> Vec<Bytes> {
        (0..n).map(|i| Bytes::from(vec![i as u8; size])).collect()
    }

    #[tokio::test]
    async fn the_gauge_shows_what_the_tap_holds_until_it_is_gone() {
        let (recording, _stored) = Recording::for_test(1 << 20);
        let (mut pump, mut tap) = recording.tee::<Bytes>(std::convert::identity);
        let gauge = tap.gauge();
        for f in frames(3, 1000) {
            assert!(pump.send(f.clone(), Some(&f)).await);
        }
        assert_eq!(gauge.bytes(), 3 * (1000 + FRAME_COST));
        let _ = poll_fn(|cx| tap.poll_next(cx)).await;
        assert_eq!(gauge.bytes(), 2 * (1000 + FRAME_COST));
        drop(tap);
        assert!(gauge.is_gone());
        assert_eq!(gauge.bytes(), 0);
    }

    #[tokio::test]
    async fn a_client_that_never_reads_does_not_stop_the_recording() {
        let (recording, stored) = Recording::for_test(1 << 20);
        let (mut pump, tap) = recording.tee::<Bytes>(std::convert::identity);
        for f in frames(10, 1000) {
            assert!(pump.send(f.clone(), Some(&f)).await);
        }
        pump.ended();
        assert_eq!(stored.lock().unwrap().as_ref().unwrap().len(), 10_000);
        drop(tap);
    }

    #[tokio::test]
    async fn the_client_gets_every_frame_in_order_and_the_end() {
        let (recording, _stored) = Recording::for_test(1 << 20);
        let (mut pump, mut tap) = recording.tee::<Bytes>(std::convert::identity);
        let sent = frames(5, 10);
        for f in &sent {
            pump.send(f.clone(), Some(f)).await;
        }
        assert!(!tap.is_end_stream());
        pump.ended();
        let mut got = Vec::new();
        while let Some(f) = poll_fn(|cx| tap.poll_next(cx)).await {
            got.push(f);
        }
        assert_eq!(got, sent);
        assert!(tap.is_end_stream());
    }

    #[tokio::test]
    async fn past_max_size_the_pump_waits_for_the_client_and_stops_without_one() {
        let (recording, stored) = Recording::for_test(1000);
        let (mut pump, mut tap) = recording.tee::<Bytes>(std::convert::identity);
        let big = Bytes::from(vec![0u8; 40 * 1024]);
        // Recording stops at the first frame (too large); one frame fits
        // under the low-water mark, the second must wait for the client.
        assert!(pump.send(big.clone(), Some(&big)).await);
        {
            let second = pump.send(big.clone(), Some(&big));
            tokio::pin!(second);
            assert!(futures_poll(&mut second).is_none(), "waits for the client");
            poll_fn(|cx| tap.poll_next(cx)).await.unwrap();
            assert!(second.await);
        }
        assert!(stored.lock().unwrap().is_none(), "nothing stored");
        drop(tap);
        assert!(!pump.send(big.clone(), Some(&big)).await, "client gone");
    }

    #[tokio::test(start_paused = true)]
    async fn a_pump_nobody_reads_gives_up_after_its_orphan_limit() {
        let (recording, stored) = Recording::for_test(1 << 20);
        let (mut pump, tap) = recording.tee::<Bytes>(std::convert::identity);
        let abandoned = pump.abandoned();
        tokio::pin!(abandoned);
        let b = Bytes::from_static(b"x");
        assert!(pump.send(b.clone(), Some(&b)).await);
        assert!(
            futures_poll(&mut abandoned).is_none(),
            "the client still reads"
        );
        drop(tap);
        // The adapter's select! polls it all along: it sees the disconnect now.
        assert!(futures_poll(&mut abandoned).is_none());
        tokio::time::advance(std::time::Duration::from_secs(4)).await;
        assert!(
            futures_poll(&mut abandoned).is_none(),
            "still within the limit"
        );
        tokio::time::advance(std::time::Duration::from_secs(2)).await;
        assert!(futures_poll(&mut abandoned).is_some(), "past the limit");
        drop(pump);
        assert!(
            stored.lock().unwrap().is_none(),
            "an abandoned recording stores nothing"
        );
    }

    #[tokio::test]
    async fn empty_frames_count_so_a_flood_waits_for_the_client() {
        let (recording, _stored) = Recording::for_test(1000);
        let (mut pump, mut tap) = recording.tee::<Bytes>(std::convert::identity);
        let cap = (1000 + LOW_WATER) / FRAME_COST;
        for _ in 0..cap {
            assert!(pump.send(Bytes::new(), Some(&Bytes::new())).await);
        }
        let empty = Bytes::new();
        {
            let more = pump.send(Bytes::new(), Some(&empty));
            tokio::pin!(more);
            assert!(futures_poll(&mut more).is_none(), "queue full: waits");
            for _ in 0..100 {
                poll_fn(|cx| tap.poll_next(cx)).await.unwrap();
            }
            assert!(more.await);
        }
    }

    /// A store's write that keeps what it was given in `file` once it has
    /// gathered `PIECE` bytes, as the disk store writes its file.
    #[derive(Debug)]
    struct FileWriter {
        file: Arc<std::sync::Mutex<Vec<u8>>>,
        /// How much it gathers before one write to the file.
        piece: usize,
        pending: Vec<u8>,
        written: u64,
        /// The write fails when the file would pass this length.
        fail_past: Option<usize>,
        failed: bool,
        reader: Arc<FileReader>,
    }

    #[derive(Debug)]
    struct FileReader {
        file: Arc<std::sync::Mutex<Vec<u8>>>,
        fail: AtomicBool,
    }

    const PIECE: usize = 32 * 1024;

    impl crate::store::ReadBack for FileReader {
        fn read_at(&self, offset: u64, len: usize) -> std::io::Result<Bytes> {
            if self.fail.load(Ordering::SeqCst) {
                return Err(std::io::Error::other("the disk is gone"));
            }
            let file = self.file.lock().unwrap();
            let at = offset as usize;
            Ok(Bytes::copy_from_slice(&file[at..at + len]))
        }
    }

    impl crate::store::EntryWriter for FileWriter {
        fn write(&mut self, chunk: Bytes) -> crate::store::StoreFuture<'_, ()> {
            Box::pin(async move {
                if self.failed {
                    return Err(crate::store::StoreError::new(
                        crate::store::StoreErrorKind::Backend,
                        "failed before",
                    ));
                }
                self.written += chunk.len() as u64;
                self.pending.extend_from_slice(&chunk);
                if self.pending.len() >= self.piece {
                    let mut file = self.file.lock().unwrap();
                    if self
                        .fail_past
                        .is_some_and(|f| file.len() + self.pending.len() > f)
                    {
                        self.failed = true;
                        return Err(crate::store::StoreError::new(
                            crate::store::StoreErrorKind::Backend,
                            "the disk is full",
                        ));
                    }
                    file.append(&mut self.pending);
                }
                Ok(())
            })
        }
        fn written(&self) -> u64 {
            self.written
        }
        fn commit(self: Box<Self>, _head: Bytes) -> crate::store::StoreFuture<'static, ()> {
            Box::pin(async { Ok(()) })
        }
        fn read_back(&self) -> Option<(u64, Arc<dyn crate::store::ReadBack>)> {
            if self.failed {
                return None;
            }
            let len = self.file.lock().unwrap().len() as u64;
            Some((len, self.reader.clone()))
        }
    }

    /// A recording to a [`FileWriter`] (failing past `fail_past`) that
    /// holds `held` bytes for its client; and the reader, to make it fail.
    fn streamed(fail_past: Option<usize>, held: u64) -> (Recording, Arc<FileReader>) {
        streamed_in(PIECE, fail_past, held)
    }

    /// As [`streamed`], the store writing `piece` bytes at a time.
    fn streamed_in(
        piece: usize,
        fail_past: Option<usize>,
        held: u64,
    ) -> (Recording, Arc<FileReader>) {
        let file = Arc::new(std::sync::Mutex::new(Vec::new()));
        let reader = Arc::new(FileReader {
            file: file.clone(),
            fail: AtomicBool::new(false),
        });
        let writer = FileWriter {
            file,
            piece,
            pending: Vec::new(),
            written: 0,
            fail_past,
            failed: false,
            reader: reader.clone(),
        };
        let recording = Recording::for_test_streamed(Box::new(writer), 1 << 30, held);
        (recording, reader)
    }

    /// Frames of a test body: data, or the trailers that end it.
    #[derive(Debug, PartialEq)]
    enum Frame {
        Data(Bytes),
        Trailers,
    }

    /// `n` chunks of `size` bytes, each a different byte.
    fn body(n: usize, size: usize) -> Vec<Bytes> {
        (0..n)
            .map(|i| Bytes::from(vec![(i % 251) as u8; size]))
            .collect()
    }

    /// Everything the tap gives, joined, and whether trailers came last.
    async fn read_all(tap: &mut Tap<Frame>) -> (Vec<u8>, bool) {
        let mut got = Vec::new();
        let mut trailers_last = false;
        while let Some(f) = poll_fn(|cx| tap.poll_next(cx)).await {
            assert!(!trailers_last, "nothing after the trailers");
            match f {
                Frame::Data(d) => got.extend_from_slice(&d),
                Frame::Trailers => trailers_last = true,
            }
        }
        (got, trailers_last)
    }

    #[tokio::test]
    async fn a_client_behind_the_store_reads_it_back_and_the_origin_is_not_held() {
        let (recording, _reader) = streamed(None, 16 * 1024);
        let (mut pump, mut tap) = recording.tee(Frame::Data);
        let gauge = tap.gauge();
        let sent = body(200, 10_000);
        let mut most = 0;
        for c in &sent {
            // Never waits: the client reads nothing meanwhile.
            let send = pump.send(Frame::Data(c.clone()), Some(c));
            tokio::pin!(send);
            assert_eq!(
                futures_poll(&mut send),
                Some(true),
                "not held to the client"
            );
            most = most.max(gauge.bytes());
        }
        pump.send(Frame::Trailers, None).await;
        pump.ended();
        // In memory: the queue up to its cap, and what the store does
        // not have yet (under one of its writes), never the 2 MB.
        assert!(
            most <= 16 * 1024 + LOW_WATER + (PIECE as u64 + 10_000) + 64 * FRAME_COST,
            "held {most}"
        );
        let (got, trailers_last) = read_all(&mut tap).await;
        assert_eq!(got, sent.concat(), "every byte, in order");
        assert!(trailers_last);
        assert!(tap.is_end_stream());
    }

    #[tokio::test]
    async fn a_write_that_fails_hands_the_client_what_it_held_then_waits_for_it() {
        let (recording, _reader) = streamed(Some(200_000), 16 * 1024);
        let (mut pump, mut tap) = recording.tee(Frame::Data);
        let sent = body(100, 10_000);
        let mut waited = false;
        for c in &sent {
            let send = pump.send(Frame::Data(c.clone()), Some(c));
            tokio::pin!(send);
            if futures_poll(&mut send).is_none() {
                // The write failed: the client's pace again.
                waited = true;
                break;
            }
        }
        assert!(waited, "past the failure the pump waits for the client");
        drop(pump);
        let (got, _) = read_all(&mut tap).await;
        assert!(got.len() >= 200_000, "what was sent before: {}", got.len());
        assert_eq!(got[..], sent.concat()[..got.len()], "in order, none lost");
    }

    #[tokio::test]
    async fn a_read_back_that_fails_cuts_the_body_short() {
        let (recording, reader) = streamed(None, 16 * 1024);
        let (mut pump, mut tap) = recording.tee(Frame::Data);
        let sent = body(100, 10_000);
        for c in &sent {
            assert!(pump.send(Frame::Data(c.clone()), Some(c)).await);
        }
        pump.ended();
        reader.fail.store(true, Ordering::SeqCst);
        let (got, _) = read_all(&mut tap).await;
        assert!(got.len() < 1_000_000, "cut: {}", got.len());
        assert_eq!(got[..], sent.concat()[..got.len()]);
        assert!(tap.is_end_stream());
    }

    #[tokio::test]
    async fn a_client_that_catches_up_gets_frames_as_they_come_again() {
        let (recording, _reader) = streamed(None, 16 * 1024);
        let (mut pump, mut tap) = recording.tee(Frame::Data);
        let gauge = tap.gauge();
        // 210 kB: the store has 200 kB (its writes are of 40 kB here).
        let sent = body(21, 10_000);
        for c in &sent {
            assert!(pump.send(Frame::Data(c.clone()), Some(c)).await);
        }
        assert!(pump.behind, "behind after 210 kB unread");
        assert!(!pump.held.is_empty(), "the store does not have it all");
        // The client reads everything that was handed over.
        let held: u64 = pump.held.iter().map(|h| h.len).sum();
        let handed = (210_000 - held) as usize;
        let mut got = Vec::new();
        while got.len() < handed {
            match poll_fn(|cx| tap.poll_next(cx)).await {
                Some(Frame::Data(d)) => got.extend_from_slice(&d),
                other => panic!("{other:?}"),
            }
        }
        assert_eq!(got.len(), handed);
        assert!(gauge.bytes() > 0, "what is held still counts");
        let more = Bytes::from(vec![7u8; 100]);
        assert!(pump.send(Frame::Data(more.clone()), Some(&more)).await);
        assert!(!pump.behind, "caught up: frames as they come");
        assert!(pump.held.is_empty());
        pump.ended();
        let (rest, _) = read_all(&mut tap).await;
        got.extend_from_slice(&rest);
        assert_eq!(got, [sent.concat(), more.to_vec()].concat());
    }

    #[tokio::test]
    async fn a_pump_holding_its_most_goes_on_once_the_client_took_all_it_was_handed() {
        // The store writes 256 KiB at a time; the origin sends one byte a
        // frame, so what is held (65 bytes a frame) passes its bound
        // before the store has written anything more.
        let (recording, _reader) = streamed_in(256 << 10, None, 16 * 1024);
        let (mut pump, mut tap) = recording.tee(Frame::Data);
        let sent: Vec<Bytes> = (0..40_000u32)
            .map(|i| Bytes::from(vec![(i % 251) as u8]))
            .collect();
        let whole = sent.concat();
        let origin = tokio::spawn(async move {
            for c in &sent {
                assert!(pump.send(Frame::Data(c.clone()), Some(c)).await);
                // An empty frame now and then: never held.
                assert!(
                    pump.send(Frame::Data(Bytes::new()), Some(&Bytes::new()))
                        .await
                );
            }
            pump.ended();
        });
        let (got, _) = tokio::time::timeout(std::time::Duration::from_secs(60), read_all(&mut tap))
            .await
            .expect("neither side waits for the other for ever");
        origin.await.unwrap();
        assert_eq!(got, whole);
    }

    fn futures_poll<F: std::future::Future + Unpin>(f: &mut F) -> Option<F::Output> {
        let waker = std::task::Waker::noop();
        let mut cx = Context::from_waker(waker);
        match std::pin::Pin::new(f).poll(&mut cx) {
            Poll::Ready(v) => Some(v),
            Poll::Pending => None,
        }
    }
}
