//! Every call to Redis: under a timeout, after the eviction policy is
//! known to be safe, with the circuit breaker taking part as the kind of
//! call says, its errors mapped to store errors.

use std::future::Future;
use std::time::Duration;

use redis::{Cmd, RedisResult};
use uip_cache_core::store::{StoreError, StoreErrorKind};

use super::error::{is_refusal, store_error};
use super::RedisStore;

/// How a call takes part in the circuit breaker.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Call {
    /// The request path: skipped while the circuit is open; its failures
    /// and successes count.
    Request,
    /// A read of the shared invalidation log: skipped while the circuit is
    /// open (its caller then does not store), never counted.
    Log,
    /// A purge, its log record, its backplane messages: tried even while
    /// the circuit is open, never counted.
    Purge,
}

impl RedisStore {
    /// Runs `f` under the breaker and a timeout, mapping errors to store errors.
    pub(super) async fn guarded<T>(
        &self,
        timeout: Duration,
        f: impl Future<Output = RedisResult<T>>,
    ) -> Result<T, StoreError> {
        self.call(Call::Request, timeout, f).await
    }

    /// Runs `f` within `timeout`, the circuit breaker taking part as `call`
    /// says, once the eviction policy is known to be safe.
    pub(super) async fn call<T>(
        &self,
        call: Call,
        timeout: Duration,
        f: impl Future<Output = RedisResult<T>>,
    ) -> Result<T, StoreError> {
        if call != Call::Purge && !self.inner.breaker.allows() {
            return Err(StoreError::from_kind(StoreErrorKind::Unavailable));
        }
        if timeout.is_zero() {
            return Err(StoreError::from_kind(StoreErrorKind::Timeout));
        }
        let counted = call == Call::Request;
        let checked = async {
            match self.eviction_refusal().await? {
                Some(reason) => Ok(Err(reason)),
                None => f.await.map(Ok),
            }
        };
        match tokio::time::timeout(timeout, checked).await {
            Ok(Ok(Ok(v))) => {
                if counted {
                    self.inner.breaker.success();
                }
                Ok(v)
            }
            Ok(Ok(Err(reason))) => Err(StoreError::new(StoreErrorKind::Backend, reason)),
            Ok(Err(e)) => {
                if !is_refusal(&e) && counted {
                    self.inner.breaker.failure();
                }
                Err(store_error(e))
            }
            Err(_) => {
                if counted {
                    self.inner.breaker.failure();
                }
                Err(StoreError::from_kind(StoreErrorKind::Timeout))
            }
        }
    }

    /// Runs one command under the breaker and `timeout`.
    pub(super) async fn query<T: redis::FromRedisValue>(
        &self,
        timeout: Duration,
        cmd: &Cmd,
    ) -> Result<T, StoreError> {
        self.guarded(timeout, async {
            cmd.query_async(&mut self.conn().await?).await
        })
        .await
    }
}
