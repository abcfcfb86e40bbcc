//! [`Coordination`] for [`RedisStore`]: the shared invalidation log (see
//! the `log` module for its bounds), leases, and the messages a tiered
//! store's instances send each other.

use std::time::Duration;

use uip_cache_core::store::{Coordination, StoreError, StoreFuture};

use super::call::Call;
use super::{keys, log, scripts, RedisStore};

impl RedisStore {
    /// Publishes `message` on `channel` (every node of a cluster sees it),
    /// as part of a purge: tried even while the circuit is open, for up to
    /// `store.purge_timeout`.
    pub(crate) async fn publish(&self, channel: &str, message: &str) -> Result<(), StoreError> {
        let publish = redis::cmd("PUBLISH").arg(channel).arg(message).clone();
        self.call(Call::Purge, self.inner.purge_timeout, async {
            publish.query_async::<i64>(&mut self.conn().await?).await
        })
        .await
        .map(drop)
    }

    /// The channel a tiered store's instances tell each other about
    /// invalidations on.
    pub(crate) fn invalidation_channel(&self) -> String {
        self.inner.keys.invalidation_channel()
    }
}

impl Coordination for RedisStore {
    fn shared(&self) -> bool {
        true
    }

    fn epoch(&self) -> StoreFuture<'_, u64> {
        Box::pin(async move {
            let mut get = redis::cmd("GET");
            get.arg(self.inner.keys.epoch());
            let n: Option<u64> = self
                .call(Call::Log, self.inner.op_timeout, async {
                    get.query_async(&mut self.conn().await?).await
                })
                .await?;
            Ok(n.unwrap_or(0))
        })
    }

    /// Part of a purge (see the type's docs); a line longer than the log
    /// holds is recorded as a wider invalidation (see the `log` module).
    fn record_invalidation<'a>(&'a self, line: &'a str) -> StoreFuture<'a, ()> {
        Box::pin(async move {
            let mut record = redis::cmd("EVAL");
            record
                .arg(scripts::RECORD)
                .arg(3)
                .arg(self.inner.keys.epoch())
                .arg(self.inner.keys.log())
                .arg(self.inner.keys.log_rate())
                .arg(log::bounded(line).as_ref())
                .arg(log::LEN)
                .arg(log::RATE_MAX);
            self.call(Call::Purge, self.inner.purge_timeout, async {
                record.query_async::<u64>(&mut self.conn().await?).await
            })
            .await
            .map(drop)
        })
    }

    fn invalidations_since(&self, epoch: u64) -> StoreFuture<'_, Option<Vec<String>>> {
        Box::pin(async move {
            let mut since = redis::cmd("EVAL");
            since
                .arg(scripts::SINCE)
                .arg(2)
                .arg(self.inner.keys.epoch())
                .arg(self.inner.keys.log())
                .arg(epoch)
                .arg(log::READ_MAX);
            let members: Option<Vec<Vec<u8>>> = self
                .call(Call::Log, self.inner.op_timeout, async {
                    since.query_async(&mut self.conn().await?).await
                })
                .await?;
            Ok(members.map(|ms| ms.iter().map(|m| keys::log_line(m)).collect()))
        })
    }

    fn try_lease<'a>(&'a self, key: &'a str, token: u64, ttl: Duration) -> StoreFuture<'a, bool> {
        Box::pin(async move {
            let set: Option<String> = self
                .query(
                    self.inner.op_timeout,
                    redis::cmd("SET")
                        .arg(key)
                        .arg(token)
                        .arg("NX")
                        .arg("PX")
                        .arg((ttl.as_millis() as u64).max(1)),
                )
                .await?;
            Ok(set.is_some())
        })
    }

    fn release_lease<'a>(&'a self, key: &'a str, token: u64) -> StoreFuture<'a, ()> {
        Box::pin(async move {
            self.query::<i64>(
                self.inner.op_timeout,
                redis::cmd("EVAL")
                    .arg(scripts::RELEASE)
                    .arg(1)
                    .arg(key)
                    .arg(token),
            )
            .await?;
            Ok(())
        })
    }
}
