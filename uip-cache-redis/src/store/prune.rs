//! Pruning of expired index members. Index keys carry no TTL (see
//! [`RedisStore`]'s docs), so what expires leaves them here: the path
//! indexes lose their expired members on every write and count, and the
//! sets of tags whose entries have all expired are emptied (and so
//! deleted) in proportion to writes with tags.

use std::sync::atomic::Ordering;

use redis::Cmd;
use uip_cache_core::store::StoreError;

use super::call::Call;
use super::{now_ms, scripts, RedisStore};

/// How many expired tags a write with tags pays for pruning, per tag it
/// carries and once: more than it can create, so that unique tags (one per
/// URL with `target:` tags) never pile up faster than they are pruned.
const TAG_PRUNE_PER_TAG: u64 = 2;
const TAG_PRUNE_PER_PUT: u64 = 8;

/// The most expired tags one pruning round empties.
const TAG_PRUNE_ROUND: u64 = 500;

/// The most expired path-index members one write or count drops.
const PATHS_PRUNE: u64 = 200;

impl RedisStore {
    /// Pays for pruning after a write of `tags` tags: the sets of tags whose
    /// entries have all expired are emptied (tag sets carry no TTL, see the
    /// type's docs) in proportion to writes, by one task at a time per
    /// instance that runs while writes keep paying. A tag set and the tags
    /// index are in different slots on a cluster, hence a task rather than
    /// the write's own pipeline.
    pub(super) fn prune_tags_after_write(&self, tags: usize) {
        let paid = TAG_PRUNE_PER_TAG * tags as u64 + TAG_PRUNE_PER_PUT;
        self.inner.tag_prune_debt.fetch_add(paid, Ordering::AcqRel);
        if self.inner.tag_pruning.swap(true, Ordering::AcqRel) {
            return; // the running task takes this debt too
        }
        let Ok(rt) = tokio::runtime::Handle::try_current() else {
            self.inner.tag_pruning.store(false, Ordering::Release);
            return;
        };
        let store = self.clone();
        rt.spawn(async move {
            loop {
                let debt = store.inner.tag_prune_debt.swap(0, Ordering::AcqRel);
                if debt == 0 {
                    store.inner.tag_pruning.store(false, Ordering::Release);
                    // A write may have paid between the swap and the store.
                    if store.inner.tag_prune_debt.load(Ordering::Acquire) == 0
                        || store.inner.tag_pruning.swap(true, Ordering::AcqRel)
                    {
                        return;
                    }
                    continue;
                }
                match store.prune_tags(now_ms(), debt.min(TAG_PRUNE_ROUND)).await {
                    // Fewer expired tags than paid for: nothing is left over.
                    Ok(n) if n < debt.min(TAG_PRUNE_ROUND) => {}
                    // Unpaid rest of a large debt: carried to the next round.
                    Ok(_) => {
                        store
                            .inner
                            .tag_prune_debt
                            .fetch_add(debt.saturating_sub(TAG_PRUNE_ROUND), Ordering::AcqRel);
                    }
                    Err(e) => {
                        tracing::debug!(error = %e, "redis store: pruning expired tags failed");
                        // Kept for the task the next write starts.
                        store.inner.tag_prune_debt.fetch_add(debt, Ordering::AcqRel);
                        store.inner.tag_pruning.store(false, Ordering::Release);
                        return;
                    }
                }
            }
        });
    }

    /// Empties the sets of up to `limit` tags whose entries expired by
    /// `now`; how many expired tags it found.
    async fn prune_tags(&self, now: u64, limit: u64) -> Result<u64, StoreError> {
        let timeout = self.inner.op_timeout * 10;
        let keys = &self.inner.keys;
        let tags: Vec<String> = self
            .call(Call::Purge, timeout, async {
                redis::cmd("ZRANGEBYSCORE")
                    .arg(keys.tags())
                    .arg("-inf")
                    .arg(now)
                    .arg("LIMIT")
                    .arg(0)
                    .arg(limit)
                    .query_async(&mut self.conn().await?)
                    .await
            })
            .await?;
        if tags.is_empty() {
            return Ok(0);
        }
        let groups = tags
            .iter()
            .map(|t| {
                let mut p = redis::pipe();
                p.cmd("ZREMRANGEBYSCORE")
                    .arg(keys.tag(t))
                    .arg("-inf")
                    .arg(now)
                    .ignore();
                p
            })
            .collect();
        self.call(Call::Purge, timeout, self.run_groups(groups))
            .await?;
        let mut forget = redis::cmd("EVAL");
        forget
            .arg(scripts::FORGET_TAGS)
            .arg(1)
            .arg(keys.tags())
            .arg(now)
            .arg(&tags);
        self.call(Call::Purge, timeout, async {
            forget.query_async::<i64>(&mut self.conn().await?).await
        })
        .await?;
        Ok(tags.len() as u64)
    }

    /// The command dropping expired members from the path indexes.
    pub(super) fn prune_cmd(&self) -> Cmd {
        let mut c = redis::cmd("EVAL");
        c.arg(scripts::PRUNE)
            .arg(2)
            .arg(self.inner.keys.paths())
            .arg(self.inner.keys.paths_exp())
            .arg(now_ms())
            .arg(PATHS_PRUNE);
        c
    }
}
