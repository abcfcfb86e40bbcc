//! The reads of concurrent hits sent to Redis as one pipeline.
//!
//! Every hit is one read (`GET`, or `GETRANGE` for a local copy). Sent one
//! by one, each wakes Redis for a single command and its reply, and when
//! Redis shares a core with the cache every read costs two context
//! switches. Reads issued while the runtime works through the tasks that
//! are ready now are queued instead, and the first one's flush task sends
//! them all after that pass (it yields once first): one write, one wakeup
//! of Redis, one read of the replies. A read waits for no timer, only for
//! the tasks already runnable. Only a multiplexed connection batches: a
//! pool keeps its reads apart on its connections, and on a cluster a
//! pipeline's commands must share a slot.

use std::mem;
use std::sync::{Mutex, PoisonError};

use redis::{Cmd, RedisError, RedisResult, Value};
use tokio::sync::oneshot;

use super::RedisStore;

type Waiter = oneshot::Sender<RedisResult<Value>>;

/// Reads waiting for the next flush.
#[derive(Default)]
pub(super) struct Batch {
    queue: Mutex<Vec<(Cmd, Waiter)>>,
}

impl Batch {
    fn queue(&self) -> std::sync::MutexGuard<'_, Vec<(Cmd, Waiter)>> {
        self.queue.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Queues a read; whether it is the first of a new batch.
    fn push(&self, cmd: Cmd, waiter: Waiter) -> bool {
        let mut q = self.queue();
        q.push((cmd, waiter));
        q.len() == 1
    }

    fn take(&self) -> Vec<(Cmd, Waiter)> {
        mem::take(&mut *self.queue())
    }
}

/// The queue's flush, owned by its task: should the task be dropped before
/// it takes the queue (its runtime shutting down), the queue is emptied
/// and its readers get an error at once, so the next read starts a new
/// batch instead of joining one that will never leave.
struct Flush {
    store: RedisStore,
    taken: bool,
}

impl Drop for Flush {
    fn drop(&mut self) {
        if !self.taken {
            drop(self.store.inner.batch.take());
        }
    }
}

impl RedisStore {
    /// Runs the read `cmd`, with the reads of other hits issued in the same
    /// pass of the runtime (on one multiplexed connection; a pool or a
    /// cluster runs it alone).
    pub(super) async fn read(&self, cmd: Cmd) -> RedisResult<Value> {
        let batched = self.inner.connections.is_multiplexed()
            && tokio::runtime::Handle::try_current().is_ok();
        if !batched {
            return cmd.query_async(&mut self.conn().await?).await;
        }
        let (tx, rx) = oneshot::channel();
        if self.inner.batch.push(cmd, tx) {
            let mut flush = Flush {
                store: self.clone(),
                taken: false,
            };
            tokio::spawn(async move {
                tokio::task::yield_now().await;
                flush.taken = true;
                let batch = flush.store.inner.batch.take();
                flush.store.flush(batch).await;
            });
        }
        rx.await.unwrap_or_else(|_| {
            Err(RedisError::from(std::io::Error::other(
                "the batch of reads was dropped",
            )))
        })
    }

    /// Sends the reads whose callers still wait, as one pipeline, within
    /// the store's timeout.
    async fn flush(&self, batch: Vec<(Cmd, Waiter)>) {
        let mut pipe = redis::pipe();
        pipe.ignore_errors();
        let mut waiters = Vec::with_capacity(batch.len());
        for (cmd, waiter) in batch {
            if !waiter.is_closed() {
                pipe.add_command(cmd);
                waiters.push(waiter);
            }
        }
        if waiters.is_empty() {
            return;
        }
        let replies = tokio::time::timeout(self.inner.op_timeout, async {
            pipe.query_async::<Vec<RedisResult<Value>>>(&mut self.conn().await?)
                .await
        })
        .await
        .unwrap_or_else(|_| {
            Err(RedisError::from(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                "the batch of reads timed out",
            )))
        });
        match replies {
            Ok(replies) if replies.len() == waiters.len() => {
                for (waiter, reply) in waiters.into_iter().zip(replies) {
                    let _ = waiter.send(reply);
                }
            }
            Ok(_) => {
                let e = RedisError::from(std::io::Error::other(
                    "a pipeline answered a different number of replies",
                ));
                for waiter in waiters {
                    let _ = waiter.send(Err(e.clone()));
                }
            }
            Err(e) => {
                for waiter in waiters {
                    let _ = waiter.send(Err(e.clone()));
                }
            }
        }
    }
}
