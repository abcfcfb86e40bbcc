//! Unsafe requests (POST, PUT, PATCH, DELETE, ...): what their success
//! invalidates (RFC 9111 section 4.4), and the purge that follows.

use std::sync::Arc;

use super::HttpCache;
use crate::http::{request, target};
use crate::invalidate::Invalidation;
use crate::request::RequestView;
use crate::settings::Settings;
use crate::stats::InvalidationKind;
use crate::store::StoreError;

/// Purges after unsafe requests running in tasks of their own, at most.
pub(super) const UNSAFE_PURGES_IN_TASKS: usize = 256;

/// An unsafe request on its way to the origin, as
/// [`HttpCache::unsafe_request`] noted it: its scheme, host, path and query,
/// and the settings it began with.
#[derive(Clone, Debug)]
pub struct UnsafeRequest {
    settings: Arc<Settings>,
    scheme: Option<String>,
    authority: Option<String>,
    path: String,
    query: Option<String>,
}

impl HttpCache {
    /// What an unsafe request (POST, PUT, PATCH, DELETE, ...) will
    /// invalidate if it succeeds, noted from its view before it goes to the
    /// origin (the view holds the scheme and host the key holds); `None` when
    /// it invalidates nothing: a safe method, `invalidate_on_unsafe: false`,
    /// or a POST to a policy that caches POST by its body (a query, such as
    /// SPARQL or GraphQL, not a write). Pass it to
    /// [`HttpCache::invalidate_after_unsafe`] with the origin's answer.
    pub fn unsafe_request(&self, req: &RequestView<'_>) -> Option<UnsafeRequest> {
        if !request::is_unsafe(req.method) {
            return None;
        }
        let settings = self.settings();
        if !settings.invalidate_on_unsafe() {
            return None;
        }
        if settings
            .policies()
            .find(req.path, req.query)
            .is_some_and(|m| {
                m.policy().key_spec().uses_body() && m.policy().allows_method(req.method)
            })
        {
            return None;
        }
        Some(UnsafeRequest {
            settings,
            scheme: req.scheme.map(str::to_owned),
            authority: req.authority.map(str::to_owned),
            path: req.path.to_owned(),
            query: req.query.map(str::to_owned),
        })
    }

    /// After an unsafe request succeeded (2xx, 3xx), removes the entries of
    /// its target URI and of the `Location` / `Content-Location` values
    /// (`locations`, as the origin sent them) on the target's origin (RFC 9111
    /// section 4.4), and returns how many went.
    ///
    /// Only the request's own host is touched when keys hold the host
    /// (`key.include_host`, the default): the entries are found by their
    /// [`KeySpec::target_tag`](crate::KeySpec::target_tag), so a write on
    /// `attacker.example` never removes `victim.example`'s entries, and a
    /// `Location` naming another origin is ignored. Fetches in flight for
    /// these entries are not stored when they arrive. Store failures are
    /// logged and counted.
    pub async fn invalidate_after_unsafe(
        &self,
        req: &UnsafeRequest,
        status: u16,
        locations: &[&str],
    ) -> u64 {
        if !(200..400).contains(&status) {
            return 0;
        }
        self.inner.stats.invalidation(InvalidationKind::Unsafe);
        match self.unsafe_invalidation(req, status, locations) {
            Some(Invalidation::Tags(tags)) => self.purge_unsafe_targets(tags).await,
            _ => 0,
        }
    }

    /// The invalidation [`HttpCache::invalidate_after_unsafe`] runs for
    /// these arguments, as it is noted; `None` when it removes nothing.
    pub(crate) fn unsafe_invalidation(
        &self,
        req: &UnsafeRequest,
        status: u16,
        locations: &[&str],
    ) -> Option<Invalidation> {
        if !(200..400).contains(&status) {
            return None;
        }
        let tags = self.unsafe_targets(req, locations);
        (!tags.is_empty()).then_some(Invalidation::Tags(tags))
    }

    /// The target tags an unsafe request's success removes: its own target's
    /// and those of the same-origin locations, each under the policy its
    /// URL falls in (no policy: nothing of it is cached).
    fn unsafe_targets(&self, req: &UnsafeRequest, locations: &[&str]) -> Vec<String> {
        let none: [(&str, &str); 0] = [];
        let tag = |path: &str, query: Option<&str>| {
            let m = req.settings.policies().find(path, query)?;
            let view = RequestView::new("GET", path, &none)
                .query(query)
                .authority(req.authority.as_deref());
            Some(m.policy().key_spec().target_tag(&view))
        };
        let mut tags: Vec<String> = tag(&req.path, req.query.as_deref()).into_iter().collect();
        for l in locations {
            let Some(url) = target::same_origin_target(
                l,
                req.scheme.as_deref(),
                req.authority.as_deref(),
                &req.path,
            ) else {
                continue;
            };
            let (path, query) = match url.split_once('?') {
                Some((p, q)) => (p, Some(q)),
                None => (url.as_str(), None),
            };
            tags.extend(tag(path, query));
        }
        tags.sort();
        tags.dedup();
        tags
    }

    /// The purge of one unsafe request's target, in a task of its own
    /// bounded by `store.purge_timeout`: neither a slow store nor the
    /// response going out cuts it part-way. The response waits for it at
    /// most `store.timeout`; how many entries went, when it was done by
    /// then. Store failures are counted and logged.
    async fn purge_unsafe_targets(&self, tags: Vec<String>) -> u64 {
        let cache = self.clone();
        let purge = async move {
            // Deleted even when the shared record failed (RFC 9111 4.4: the
            // target must go); the failure is counted and logged.
            let _ = cache.note(Invalidation::Tags(tags.clone())).await;
            let purged = tokio::time::timeout(
                cache.purge_timeout(),
                cache.inner.store.invalidate_tags(&tags),
            )
            .await
            .unwrap_or_else(|_| Err(StoreError::from_kind(crate::store::StoreErrorKind::Timeout)));
            let purged = cache.counted(purged);
            purged.unwrap_or_else(|e| {
                cache.inner.stats.store_error();
                if let Some(left_out) = cache.inner.quiet.purge.admit() {
                    tracing::warn!(error = %e, tags = ?tags, left_out, "the purge after an unsafe request failed");
                }
                e.partial().unwrap_or(0)
            })
        };
        let permit = self.inner.unsafe_purges.clone().try_acquire_owned();
        let (rt, permit) = match (tokio::runtime::Handle::try_current(), permit) {
            (Ok(rt), Ok(permit)) => (rt, permit),
            // No runtime, or too many purges in tasks already: this request
            // waits for its own purge.
            _ => return purge.await,
        };
        let task = rt.spawn(async move {
            let n = purge.await;
            drop(permit);
            n
        });
        match tokio::time::timeout(self.store_timeout(), task).await {
            Ok(Ok(n)) => n,
            _ => 0,
        }
    }
}
