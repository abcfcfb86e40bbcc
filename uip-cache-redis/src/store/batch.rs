//! The reads of concurrent hits sent to Redis as one pipeline.
//!
//! Every hit is one read (`GET`, or `GETRANGE` for a local copy). Sent one
//! by one, each wakes Redis for a single command and its reply, and when
//! Redis shares a core with the cache every read costs two context
//! switches. Reads issued while the runtime works through the tasks that
//! are ready now are queued instead, and the first one's flush task sends
//! them all after that pass (it yields once first): one write, one wakeup
//! of Redis, one read of the replies. A read waits for no timer, only for
//! the tasks already runnable. On a cluster, where a pipeline's commands
//! must share a slot, reads go one by one.

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

impl RedisStore {
    /// Runs the read `cmd`, with the reads of other hits issued in the same
    /// pass of the runtime.
    pub(super) async fn read(&self, cmd: Cmd) -> RedisResult<Value> {
        if self.is_cluster() {
            return cmd.query_async(&mut self.conn().await?).await;
        }
        let (tx, rx) = oneshot::channel();
        let first = {
            let mut q = self
                .inner
                .batch
                .queue
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            q.push((cmd, tx));
            q.len() == 1
        };
        if first {
            let store = self.clone();
            tokio::spawn(async move {
                tokio::task::yield_now().await;
                store.flush().await;
            });
        }
        rx.await.unwrap_or_else(|_| {
            Err(RedisError::from(std::io::Error::other(
                "the batch of reads was dropped",
            )))
        })
    }

    async fn flush(&self) {
        let batch = mem::take(
            &mut *self
                .inner
                .batch
                .queue
                .lock()
                .unwrap_or_else(PoisonError::into_inner),
        );
        let mut pipe = redis::pipe();
        pipe.ignore_errors();
        let mut waiters = Vec::with_capacity(batch.len());
        for (cmd, waiter) in batch {
            pipe.add_command(cmd);
            waiters.push(waiter);
        }
        let replies = async {
            pipe.query_async::<Vec<RedisResult<Value>>>(&mut self.conn().await?)
                .await
        }
        .await;
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
