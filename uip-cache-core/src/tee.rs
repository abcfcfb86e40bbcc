//! Reading a recorded origin body at the origin's pace, apart from the client.
//!
//! A server stops polling a response body once it has written the length it
//! announced (hyper), or never polls an empty one (hyper, actix), and a slow
//! client polls slowly. If the recording lived inside the client's body, the
//! entry would never be stored behind a real server, and requests waiting on
//! the coalescing lock would wait for the slowest client. So the adapter runs
//! a small task that reads the origin body to its end and feeds each frame to
//! a [`Pump`]: the pump records it and queues it for the client, whose body
//! reads the [`Tap`].
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

use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use tokio::sync::{mpsc, Notify};

use crate::Recording;

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

/// The origin side: feed it every frame of the origin body, then say how the
/// body ended.
pub struct Pump<T> {
    recording: Recording,
    tx: mpsc::UnboundedSender<(T, u64)>,
    shared: Arc<Shared>,
    /// Queued bytes past which even a recording pump waits for the client.
    cap: u64,
}

/// The client side: the frames, in order, as the origin sent them.
pub struct Tap<T> {
    rx: mpsc::UnboundedReceiver<(T, u64)>,
    shared: Arc<Shared>,
}

impl Recording {
    /// Splits the recording into the pump an adapter's task feeds and the
    /// tap the client's body reads.
    pub fn tee<T>(self) -> (Pump<T>, Tap<T>) {
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
            },
            Tap { rx, shared },
        )
    }
}

impl<T> Pump<T> {
    /// Records `data` (the frame's data, if it has any) and queues `frame`
    /// for the client. False when the pump should stop reading: the client
    /// is gone and nothing is being recorded any more.
    pub async fn send(&mut self, frame: T, data: Option<&Bytes>) -> bool {
        let len = data.map_or(0, |d| d.len() as u64) + FRAME_COST;
        if let Some(d) = data {
            self.recording.write(d).await;
        }
        if !self.tx.is_closed() {
            self.shared.queued.fetch_add(len, Ordering::AcqRel);
            if self.tx.send((frame, len)).is_err() {
                self.shared.queued.fetch_sub(len, Ordering::AcqRel);
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
            let taken = self.shared.taken.notified();
            if self.tx.is_closed() {
                return self.recording.is_recording();
            }
            if self.shared.queued.load(Ordering::Acquire) <= limit {
                return true;
            }
            taken.await;
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
        loop {
            let next = tokio::select! {
                next = std::future::poll_fn(&mut poll_next) => next,
                () = &mut abandoned => return,
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
        self.recording.ended();
    }

    /// The origin body failed with `frame` (passed on to the client): store
    /// nothing.
    pub fn failed(mut self, frame: T) {
        self.recording.failed();
        let _ = self.tx.send((frame, 0));
    }
}

impl<T> Tap<T> {
    /// The next frame; `None` once the origin body has ended (or the pump
    /// stopped).
    pub fn poll_next(&mut self, cx: &mut Context<'_>) -> Poll<Option<T>> {
        match self.rx.poll_recv(cx) {
            Poll::Ready(Some((frame, len))) => {
                self.shared.queued.fetch_sub(len, Ordering::AcqRel);
                self.shared.taken.notify_one();
                Poll::Ready(Some(frame))
            }
            other => other.map(|_| None),
        }
    }

    /// Whether every frame has been taken and no more will come.
    pub fn is_end_stream(&self) -> bool {
        self.rx.is_closed() && self.rx.is_empty()
    }

    /// A handle on what this tap holds for its client, readable from
    /// elsewhere (a server bounding the bytes held for slow clients).
    pub fn gauge(&self) -> QueueGauge {
        QueueGauge(self.shared.clone())
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
        let (mut pump, mut tap) = recording.tee::<Bytes>();
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
        let (mut pump, tap) = recording.tee::<Bytes>();
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
        let (mut pump, mut tap) = recording.tee::<Bytes>();
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
        let (mut pump, mut tap) = recording.tee::<Bytes>();
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
        let (mut pump, tap) = recording.tee::<Bytes>();
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
        let (mut pump, mut tap) = recording.tee::<Bytes>();
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

    fn futures_poll<F: std::future::Future + Unpin>(f: &mut F) -> Option<F::Output> {
        let waker = std::task::Waker::noop();
        let mut cx = Context::from_waker(waker);
        match std::pin::Pin::new(f).poll(&mut cx) {
            Poll::Ready(v) => Some(v),
            Poll::Pending => None,
        }
    }
}
