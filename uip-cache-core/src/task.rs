//! Work that is often done at once: [`run_or_spawn`], [`until_it_waits`].

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, Waker};

/// Runs `fut` on the caller's thread until it first has to wait, and
/// spawns the rest on `runtime`: a future that is done at once costs no
/// task and no wake-up (only the box it is polled in).
///
/// What it runs shares the caller's task: should it panic, it takes the
/// caller's task down with it, not a task of its own.
///
/// A miss's recording is such work: a small origin body is usually all
/// read by the time its head is, and the memory store's write is
/// synchronous, so the pump that reads the body and the write that ends it
/// finish in their first poll far more often than not.
///
/// The first poll is made with a waker that does nothing. That is sound:
/// when the future is not done, the spawned task polls it again at once,
/// and a future must register the waker of its latest poll, so whatever it
/// waits on wakes the task, including what became ready between the two
/// polls (that second poll sees it).
///
/// ```
/// use std::sync::atomic::{AtomicBool, Ordering};
/// use std::sync::Arc;
///
/// let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
/// let done = Arc::new(AtomicBool::new(false));
/// let d = done.clone();
/// uip_cache_core::task::run_or_spawn(rt.handle(), async move { d.store(true, Ordering::SeqCst) });
/// // Done before the runtime ran anything.
/// assert!(done.load(Ordering::SeqCst));
/// ```
pub fn run_or_spawn<F>(runtime: &tokio::runtime::Handle, fut: F)
where
    F: Future<Output = ()> + Send + 'static,
{
    if let Some(rest) = until_it_waits(Box::pin(fut)) {
        runtime.spawn(rest);
    }
}

/// The first part of [`run_or_spawn`], for a runtime of another kind (a
/// local task set): polls `fut` once, with a waker that does nothing, and
/// gives it back when it is not done. The caller must then have it polled
/// again at once (spawn it), for the reason [`run_or_spawn`] gives.
#[must_use = "a future given back must be spawned"]
pub fn until_it_waits<F>(mut fut: Pin<Box<F>>) -> Option<Pin<Box<F>>>
where
    F: Future<Output = ()> + ?Sized,
{
    match fut.as_mut().poll(&mut Context::from_waker(Waker::noop())) {
        Poll::Ready(()) => None,
        Poll::Pending => Some(fut),
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;

    use super::run_or_spawn;

    #[test]
    fn a_future_done_at_once_runs_on_the_callers_thread() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        let polls = Arc::new(AtomicUsize::new(0));
        let p = polls.clone();
        let caller = std::thread::current().id();
        let ran_on = Arc::new(std::sync::Mutex::new(None));
        let r = ran_on.clone();
        run_or_spawn(rt.handle(), async move {
            p.fetch_add(1, Ordering::SeqCst);
            *r.lock().unwrap() = Some(std::thread::current().id());
        });
        assert_eq!(polls.load(Ordering::SeqCst), 1);
        assert_eq!(*ran_on.lock().unwrap(), Some(caller));
    }

    /// What the future waits on becomes ready between its first poll
    /// (with a waker that does nothing) and the spawned task's: it still
    /// completes.
    #[test]
    fn a_future_that_waits_is_finished_by_the_task_whenever_it_is_woken() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        for send_before_the_task_runs in [true, false] {
            let (tx, rx) = tokio::sync::oneshot::channel::<u32>();
            let (done_tx, done_rx) = tokio::sync::oneshot::channel::<u32>();
            let reached = Arc::new(AtomicUsize::new(0));
            let r = reached.clone();
            run_or_spawn(rt.handle(), async move {
                r.fetch_add(1, Ordering::SeqCst);
                let v = rx.await.unwrap();
                let _ = done_tx.send(v + 1);
            });
            // The first part ran here; the rest waits for `tx`.
            assert_eq!(reached.load(Ordering::SeqCst), 1);
            if send_before_the_task_runs {
                tx.send(41).unwrap();
                assert_eq!(rt.block_on(done_rx).unwrap(), 42);
            } else {
                let got = rt.block_on(async move {
                    tokio::task::yield_now().await;
                    tx.send(41).unwrap();
                    done_rx.await.unwrap()
                });
                assert_eq!(got, 42);
            }
        }
    }
}
