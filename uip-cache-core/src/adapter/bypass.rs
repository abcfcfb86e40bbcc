//! A request that goes to the origin without the cache.

use std::fmt;

use bytes::Bytes;

use super::{text, HeaderEdits};
use crate::cache::PostTarget;
use crate::field::FieldName;
use crate::request::{HeaderSource, RequestView};
use crate::stats::NoCacheReason;
use crate::{Forward, HttpCache, Pass, Recording, UnsafeRequest};

/// A request the cache does not handle, on its way to the origin: made by
/// [`HttpCache::bypass`], which counts it, and kept until the origin
/// answers, when [`BypassTicket::origin_responded`] runs what the answer
/// invalidates and says how to change its headers.
#[must_use = "the origin's answer goes through `origin_responded`"]
pub struct BypassTicket {
    cache: HttpCache,
    reason: NoCacheReason,
    /// What an unsafe method's success invalidates, noted from the view
    /// the key would have had (scheme, host) before the request goes.
    target: Option<UnsafeRequest>,
    /// A POST whose answer may become the GET entry of its own URL
    /// ([`BypassTicket::record_answer`]).
    post: Option<PostTarget>,
}

impl HttpCache {
    /// Sends `req` past the cache for `reason`: counts the bypass, notes
    /// what the request invalidates if it is an unsafe one that succeeds
    /// ([`HttpCache::unsafe_request`]), and gives the ticket to hand the
    /// origin's answer to.
    pub fn bypass(&self, req: &RequestView<'_>, reason: NoCacheReason) -> BypassTicket {
        self.stats().bypass(reason);
        BypassTicket {
            cache: self.clone(),
            reason,
            target: self.unsafe_request(req),
            post: self.post_target(req),
        }
    }
}

impl Pass {
    /// The ticket of `req` (the request this pass was found for), counted:
    /// [`HttpCache::bypass`] of it.
    pub fn ticket(self, req: &RequestView<'_>) -> BypassTicket {
        self.cache.bypass(req, self.reason)
    }
}

impl BypassTicket {
    /// Why the request bypasses the cache.
    pub fn reason(&self) -> NoCacheReason {
        self.reason
    }

    /// The origin answered with `status` and `headers`: removes what an
    /// unsafe request's success invalidates (its target, and the
    /// same-origin `Location` and `Content-Location`, see
    /// [`HttpCache::invalidate_after_unsafe`]), then gives the changes to
    /// the response's headers ([`HttpCache::response_edits`]). Not called
    /// when the origin could not be reached: nothing is invalidated then.
    pub async fn origin_responded(
        &self,
        status: u16,
        headers: &(dyn HeaderSource + Sync),
    ) -> HeaderEdits<'_> {
        if let Some(target) = &self.target {
            let locations: Vec<&str> = ["location", "content-location"]
                .iter()
                .filter_map(|n| text(headers.first(n)?))
                .collect();
            let own = self
                .cache
                .invalidate_after_unsafe(target, status, &locations);
            match &self.post {
                Some(post) => {
                    let line = self.cache.unsafe_invalidation(target, status, &locations);
                    self.cache.fence_post(post, headers, line, own).await;
                }
                None => {
                    own.await;
                }
            }
        }
        self.cache
            .response_edits(Forward::bypass(self.reason), headers)
    }
}

impl BypassTicket {
    /// [`BypassTicket::origin_responded`] when the answer invalidates
    /// nothing (a safe method's) and so there is nothing to wait for: the
    /// changes to its headers now. `None` when the answer must go through
    /// [`BypassTicket::origin_responded`].
    pub fn origin_responded_now(
        &self,
        headers: &(dyn HeaderSource + Sync),
    ) -> Option<HeaderEdits<'_>> {
        if self.target.is_some() {
            return None;
        }
        Some(
            self.cache
                .response_edits(Forward::bypass(self.reason), headers),
        )
    }

    /// Whether [`BypassTicket::record_answer`] may store the origin's
    /// answer, so that the adapter hands the request's headers to
    /// [`BypassTicket::note_request_headers`] before the request goes: a
    /// POST to a URL whose GETs are cached.
    pub fn wants_request_headers(&self) -> bool {
        self.post.is_some()
    }

    /// Before the request goes to the origin, when
    /// [`BypassTicket::wants_request_headers`]: the POST's headers (lower
    /// case names), and the invalidation fences of now, so that a purge
    /// that runs while the POST is at the origin keeps its answer out.
    pub async fn note_request_headers(&mut self, request_headers: Vec<(FieldName, Bytes)>) {
        if let Some(post) = self.post.as_ref() {
            self.cache.prepare_post(post, request_headers).await;
        }
    }

    /// After [`BypassTicket::origin_responded`], the recording that stores
    /// a POST's answer as the GET entry of its own URL (RFC 9110 section
    /// 9.3.3, RFC 9111 section 4.4), fed with its body as it streams to the
    /// client as for [`After::Record`](crate::After::Record); `None` when
    /// it is not stored. Only a 200 or 203 whose `Content-Location` is the
    /// request's own URL (same scheme, host, path and query), with the
    /// origin's explicit freshness, admitted as an answer to a GET with the
    /// same headers would be, never when a purge concerning it ran since
    /// [`BypassTicket::note_request_headers`] (without which nothing is
    /// stored); purges of other URLs meanwhile do not keep it out. `headers` are the response's (lower-case names).
    pub async fn record_answer(
        &self,
        status: u16,
        headers: Vec<(FieldName, Bytes)>,
    ) -> Option<Recording> {
        let post = self.post.as_ref()?;
        self.cache.record_post_answer(post, status, headers).await
    }
}

impl fmt::Debug for BypassTicket {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BypassTicket")
            .field("reason", &self.reason)
            .field("target", &self.target)
            .finish_non_exhaustive()
    }
}
