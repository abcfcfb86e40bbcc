//! Writing: admission of the origin's response, compression, and the
//! store, under the plan's key or its variant's with a `Vary` marker.

use std::sync::atomic::Ordering;

use bytes::Bytes;

use super::stored::Stored;
use super::{CachePlan, HttpCache};
use crate::compress::{self, Compressed};
use crate::entry::{BodyEncoding, StoredResponse};
use crate::http::admission::{self, OriginResponse};
use crate::http::encoding::may_compress;
use crate::request::RequestView;
use crate::stats::NoCacheReason;
use crate::store::{EntryWriter, PutOptions};

impl HttpCache {
    /// Decides whether the origin's response may be stored, counting the reason when not.
    pub(crate) fn admit(
        &self,
        plan: &CachePlan,
        req: &RequestView<'_>,
        resp: &OriginResponse<'_>,
    ) -> Result<StoredResponse, NoCacheReason> {
        match admission::admit(self.policy(plan), req, resp) {
            Ok(entry) => Ok(entry),
            Err(reason) => {
                self.inner.stats.uncacheable(reason);
                tracing::debug!(
                    policy = self.policy(plan).name(),
                    reason = reason.as_str(),
                    "response not stored"
                );
                Err(reason)
            }
        }
    }

    /// The largest body the plan's policy stores.
    pub(crate) fn max_size(&self, plan: &CachePlan) -> u64 {
        self.policy(plan).max_size()
    }

    /// Stores `entry` with `body` (compressing it if the policy says so and
    /// the response allows it, see [`may_compress`]) unless an
    /// invalidation ran since the plan was made. Failures are counted and
    /// logged, never returned. `transform` is false when headers the
    /// entry does not keep (a consumed `Surrogate-Control`) forbade
    /// transformation.
    pub(crate) async fn store_body(
        &self,
        plan: &CachePlan,
        req: &RequestView<'_>,
        mut entry: StoredResponse,
        body: Bytes,
        transform: bool,
    ) -> bool {
        entry.body = body;
        entry.compression = BodyEncoding::Identity;
        if let Some(c) = self.policy(plan).compression() {
            if transform && may_compress(&entry.headers) {
                // Large bodies are compressed off the async workers.
                let z = compress::gzip_off_runtime(entry.body.clone(), c.min_size, c.level).await;
                if let Compressed::Gzip(z) = z {
                    self.inner
                        .stats
                        .compressed(entry.body.len() as u64, z.len() as u64);
                    entry.body = Bytes::from(z);
                    entry.compression = BodyEncoding::Gzip;
                }
            }
        }
        self.put_entry(plan, req, entry).await
    }

    /// The tags an entry for `req` carries, sorted and without repeats: the
    /// policy's, the tag unsafe requests to this URL on this host remove,
    /// and `origin`'s, those the origin gave (Surrogate-Key, ...).
    pub(super) fn entry_tags(
        &self,
        plan: &CachePlan,
        req: &RequestView<'_>,
        mut origin: Vec<String>,
    ) -> Vec<String> {
        let policy = self.policy(plan);
        let mut tags = policy.entry_tags(&plan.params, req.path);
        tags.push(policy.key_spec().target_tag(req));
        tags.append(&mut origin);
        tags.sort();
        tags.dedup();
        tags
    }

    /// Stores an entry whose body is ready (as after a revalidation), under the
    /// plan's key or, when it varies, under its variant key with a marker.
    pub(crate) async fn put_entry(
        &self,
        plan: &CachePlan,
        req: &RequestView<'_>,
        mut entry: StoredResponse,
    ) -> bool {
        entry.tags = self.entry_tags(plan, req, std::mem::take(&mut entry.tags));
        if self.invalidated_since(plan, req, &entry.tags).await {
            self.inner.stats.uncacheable(NoCacheReason::Invalidated);
            return false;
        }
        let ttl = entry.storage_ttl_with_unreachable(plan.settings.stale_if_unreachable());
        let options = PutOptions::new(ttl, req.path)
            .tags(&entry.tags)
            .query(req.query);
        if !self.put_vary_marker(plan, &entry, ttl, options).await {
            return false;
        }
        let key = self.entry_key(plan, req, &entry.vary);
        let Ok(bytes) = entry.encode() else {
            tracing::warn!("response too large to encode as an entry");
            return false;
        };
        // Also found by the requests that prefer its language (a copy: the
        // lookup that finds it is one read, as any variant's).
        let by_language = self
            .language_entry_key(plan, req, &entry)
            .filter(|k| *k != key);
        let stored = self
            .guarded(
                "put",
                self.inner.store.put(key.as_str(), bytes.clone(), options),
            )
            .await
            .is_some();
        if !stored {
            return false;
        }
        if let Some(k) = &by_language {
            self.guarded("put", self.inner.store.put(k.as_str(), bytes, options))
                .await;
        }
        // Checked again after the put: an invalidation recorded between the
        // first check and the put is seen here, one recorded after the put
        // deletes the entry itself.
        let kept = self
            .kept_unless_invalidated(plan, req, &entry.tags, key.as_str(), true)
            .await;
        if !kept {
            if let Some(k) = &by_language {
                self.guarded("delete", self.inner.store.delete(k.as_str()))
                    .await;
            }
        }
        kept
    }

    /// Stores the marker of `entry`'s `Vary` under the plan's key, when it
    /// varies (whether that put landed is not asked: the variant's put
    /// decides); `false` if the marker cannot be encoded.
    async fn put_vary_marker(
        &self,
        plan: &CachePlan,
        entry: &StoredResponse,
        ttl: std::time::Duration,
        options: PutOptions<'_>,
    ) -> bool {
        if entry.vary.is_empty() {
            return true;
        }
        let Ok(bytes) = Stored::encode_vary(&entry.vary, ttl) else {
            return false;
        };
        self.guarded(
            "put",
            self.inner.store.put(plan.key.as_str(), bytes, options),
        )
        .await;
        true
    }

    /// After a write of `key` (`stored`: it landed): an invalidation
    /// concerning `tags` recorded since the first check deletes it again
    /// (counted); otherwise a landed write is counted in `writes`. Whether
    /// the entry stays.
    async fn kept_unless_invalidated(
        &self,
        plan: &CachePlan,
        req: &RequestView<'_>,
        tags: &[String],
        key: &str,
        stored: bool,
    ) -> bool {
        if self.invalidated_since(plan, req, tags).await {
            self.guarded("delete", self.inner.store.delete(key)).await;
            self.inner.stats.uncacheable(NoCacheReason::Invalidated);
            return false;
        }
        if stored {
            // Counted in `stats` by the caller, once it has let go of the
            // key (`release_and_count`).
            self.inner.writes.fetch_add(1, Ordering::Release);
        }
        stored
    }

    /// Commits `writer`, the entry's body written to the store as it came
    /// (begun with the entry's key, tags and time to live: see
    /// `Recording::storing_large`), with the checks and the `Vary` marker of
    /// [`HttpCache::put_entry`]. `entry`'s tags are final and its body is
    /// empty: its encoding is the head of the stored value, with the body's
    /// length set to what was written.
    pub(crate) async fn put_written(
        &self,
        plan: &CachePlan,
        req: &RequestView<'_>,
        entry: StoredResponse,
        writer: Box<dyn EntryWriter>,
    ) -> bool {
        // A dropped writer stores nothing: every early return aborts it.
        if self.invalidated_since(plan, req, &entry.tags).await {
            self.inner.stats.uncacheable(NoCacheReason::Invalidated);
            return false;
        }
        let ttl = entry.storage_ttl_with_unreachable(plan.settings.stale_if_unreachable());
        let options = PutOptions::new(ttl, req.path)
            .tags(&entry.tags)
            .query(req.query);
        if !self.put_vary_marker(plan, &entry, ttl, options).await {
            return false;
        }
        let key = self.entry_key(plan, req, &entry.vary);
        let Ok(head) = entry.encode() else {
            return false;
        };
        // The encoding ends with the body's length (then the body).
        let mut head = bytes::BytesMut::from(&head[..]);
        let at = head.len() - 8;
        head[at..].copy_from_slice(&writer.written().to_le_bytes());
        let stored = self
            .guarded("put", writer.commit(head.freeze()))
            .await
            .is_some();
        // As in `put_entry`: an invalidation recorded between the first
        // check and the commit is seen here. Also when the commit did not
        // answer in time: a large commit may still land after it, and the
        // delete is ordered after it by the store.
        let kept = self
            .kept_unless_invalidated(plan, req, &entry.tags, key.as_str(), stored)
            .await;
        // A streamed body is not stored twice: a copy found by language
        // that an earlier answer left would now be older than this one.
        if let Some(k) = self.language_entry_key(plan, req, &entry) {
            self.guarded("delete", self.inner.store.delete(k.as_str()))
                .await;
        }
        kept
    }

    /// Removes the stored `entry` of `req` (its variant, when it varies).
    pub(crate) async fn remove_entry(
        &self,
        plan: &CachePlan,
        req: &RequestView<'_>,
        entry: &StoredResponse,
    ) {
        // Its own key, and its copy's found by language.
        let copy = self.language_entry_key(plan, req, entry);
        for key in std::iter::once(self.entry_key(plan, req, &entry.vary)).chain(copy) {
            if self
                .guarded("delete", self.inner.store.delete(key.as_str()))
                .await
                == Some(true)
            {
                self.inner.stats.deleted(1);
            }
        }
    }
}
