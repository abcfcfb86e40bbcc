//! The purge API: by tags, by URL pattern, soft (marked stale), and by
//! webhook event.

use std::time::Duration;

use bytes::Bytes;

use super::HttpCache;
use crate::entry::StoredResponse;
use crate::invalidate::{Invalidation, InvalidationPlan};
use crate::pattern::UrlPattern;
use crate::store::StoreError;

/// An invalidation that could not be done.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum InvalidateError {
    /// The event or pattern is not usable (nothing was deleted).
    #[error("{0}")]
    BadRequest(String),
    /// The store failed (some entries may remain).
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl HttpCache {
    /// Removes every entry with any of `tags`. A purge cut short (see
    /// `store.purge_timeout`) or whose shared record failed is an error
    /// that says how many entries went ([`StoreError::partial`]).
    pub async fn invalidate_tags(&self, tags: &[String]) -> Result<u64, StoreError> {
        let noted = self.note(Invalidation::Tags(tags.to_vec())).await;
        let n = self.counted(self.inner.store.invalidate_tags(tags).await)?;
        noted.map(|()| n).map_err(|e| e.with_partial(n))
    }

    /// Removes every entry matching a URL pattern (see
    /// [`HttpCache::invalidate_tags`] for errors).
    pub async fn invalidate_pattern(&self, pattern: &UrlPattern) -> Result<u64, StoreError> {
        let noted = self.note(Invalidation::Pattern(pattern.clone())).await;
        let n = self.counted(self.inner.store.invalidate_pattern(pattern).await)?;
        noted.map(|()| n).map_err(|e| e.with_partial(n))
    }

    /// Counts the entries a purge removed, those of one cut short included.
    pub(super) fn counted(&self, purged: Result<u64, StoreError>) -> Result<u64, StoreError> {
        let n = match &purged {
            Ok(n) => *n,
            Err(e) => e.partial().unwrap_or(0),
        };
        self.inner.stats.deleted(n);
        purged
    }

    /// The rewrite of a soft purge: stale from now, servable stale (while
    /// one request revalidates) for its own stale-while-revalidate window or
    /// `defaults.soft_purge_grace`, whichever is longer.
    fn soft_rewrite(&self) -> impl Fn(&Bytes) -> Option<(Bytes, Duration)> + Send + Sync + 'static {
        let grace = self.settings().soft_purge_grace();
        let clock = self.inner.clock.clone();
        move |bytes: &Bytes| {
            let mut e = StoredResponse::decode(bytes).ok()?;
            let now = clock.now();
            e.freshness_lifetime = e.freshness_lifetime.min(e.age(now));
            e.stale_while_revalidate = e.stale_while_revalidate.max(grace);
            let ttl = e.storage_ttl();
            Some((e.encode().ok()?, ttl))
        }
    }

    /// Soft purge by tags: the entries are marked stale, not removed (see
    /// `defaults.soft_purge_grace`). A store that cannot rewrite entries
    /// removes them; the flag says which happened (every store of this
    /// workspace rewrites).
    pub async fn soft_invalidate_tags(&self, tags: &[String]) -> Result<(u64, bool), StoreError> {
        let rewrite = self.soft_rewrite();
        // A fetch in flight may carry the old answer: it must not store it
        // as fresh over the purge, as for a hard purge.
        let noted = self.note(Invalidation::Tags(tags.to_vec())).await;
        match self
            .inner
            .store
            .soft_invalidate_tags(tags, &rewrite)
            .await?
        {
            Some(n) => noted.map(|()| (n, true)).map_err(|e| e.with_partial(n)),
            None => Ok((self.invalidate_tags(tags).await?, false)),
        }
    }

    /// Soft purge by URL pattern (see [`HttpCache::soft_invalidate_tags`]).
    pub async fn soft_invalidate_pattern(
        &self,
        pattern: &UrlPattern,
    ) -> Result<(u64, bool), StoreError> {
        let rewrite = self.soft_rewrite();
        let noted = self.note(Invalidation::Pattern(pattern.clone())).await;
        match self
            .inner
            .store
            .soft_invalidate_pattern(pattern, &rewrite)
            .await?
        {
            Some(n) => noted.map(|()| (n, true)).map_err(|e| e.with_partial(n)),
            None => Ok((self.invalidate_pattern(pattern).await?, false)),
        }
    }

    /// Removes what a webhook event names (see
    /// [`Settings::plan_for_event`](crate::Settings::plan_for_event), by
    /// the settings the cache runs on); what it named and how many entries
    /// went.
    pub async fn invalidate_event(
        &self,
        event: &str,
        entity_id: Option<&str>,
        entity_type: Option<&str>,
    ) -> Result<(InvalidationPlan, u64), InvalidateError> {
        let plan = self
            .inner
            .settings
            .load()
            .plan_for_event(event, entity_id, entity_type)
            .map_err(InvalidateError::BadRequest)?;
        // An error says how many entries went in all, earlier steps included.
        let after = |n: u64| {
            move |e: StoreError| {
                let done = n + e.partial().unwrap_or(0);
                e.with_partial(done)
            }
        };
        let mut n = 0;
        if !plan.tags.is_empty() {
            n += self.invalidate_tags(&plan.tags).await.map_err(after(n))?;
        }
        for p in &plan.patterns {
            n += self.invalidate_pattern(p).await.map_err(after(n))?;
        }
        Ok((plan, n))
    }
}
