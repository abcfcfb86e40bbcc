//! A POST answer that is the representation of its own target (RFC 9110
//! sections 8.7 and 9.3.3, RFC 9111 section 4.4): stored as the GET entry
//! of that URL when the origin says so in every way that matters.

use crate::field::FieldName;
use bytes::Bytes;

use super::plan::CachePlan;
use super::recording::Finish;
use super::{HttpCache, OwnedRequest, Plan, Recording};
use crate::http::admission::{origin_tags, OriginResponse};
use crate::http::cache_control::{request_cache_control, response_cache_control};
use crate::http::encoding::forbids_transform;
use crate::http::target;
use crate::invalidate::Invalidation;
use crate::lock::Lock;
use crate::request::{HeaderList, HeaderSource, RequestView};

/// A POST the cache bypassed, noted before it went to the origin: what
/// its answer needs to become the GET entry of its own URL.
#[derive(Debug)]
pub(crate) struct PostTarget {
    scheme: Option<String>,
    authority: Option<String>,
    path: String,
    query: Option<String>,
    via_trusted_proxy: bool,
    /// The GET's plan and headers, made before the POST went to the
    /// origin ([`HttpCache::prepare_post`]): its invalidation fences date
    /// from then, so a purge that runs while the POST is at the origin
    /// keeps its answer out of the cache.
    prepared: std::sync::Mutex<Option<Prepared>>,
}

/// The GET's plan and its headers (the POST's, less those about its body).
type Prepared = (CachePlan, Vec<(FieldName, Bytes)>);

/// Request headers about the POST's body, not about the GET its answer
/// is stored for: left out of that GET's view.
const BODY_HEADERS: [&str; 5] = [
    "content-length",
    "content-type",
    "content-encoding",
    "transfer-encoding",
    "content-md5",
];

impl HttpCache {
    /// The target of a POST whose answer may be stored for GETs of its
    /// URL: a policy caches GETs there (and not by body), and the client
    /// did not forbid storing (`no-store`). `None` otherwise.
    pub(crate) fn post_target(&self, req: &RequestView<'_>) -> Option<PostTarget> {
        if !req.method.eq_ignore_ascii_case("POST") {
            return None;
        }
        let cc = request_cache_control(req.headers);
        if cc.no_store || cc.unparsable {
            return None;
        }
        let settings = self.settings();
        let m = settings.policies().find(req.path, req.query)?;
        let p = m.policy();
        if !p.allows_method("GET") || p.key_spec().uses_body() {
            return None;
        }
        Some(PostTarget {
            scheme: req.scheme.map(str::to_owned),
            authority: req.authority.map(str::to_owned),
            path: req.path.to_owned(),
            query: req.query.map(str::to_owned),
            via_trusted_proxy: req.via_trusted_proxy,
            prepared: std::sync::Mutex::new(None),
        })
    }

    /// The GET view of `post` with `headers`.
    fn post_view<'a>(post: &'a PostTarget, headers: &'a HeaderList<'a>) -> RequestView<'a> {
        let mut view = RequestView::new("GET", &post.path, headers)
            .query(post.query.as_deref())
            .scheme(post.scheme.as_deref())
            .authority(post.authority.as_deref());
        view.via_trusted_proxy = post.via_trusted_proxy;
        view
    }

    /// Before the POST goes to the origin: the plan of the GET its answer
    /// may be stored for, with the POST's `request_headers` (those about
    /// its body left out) and the invalidation fences of now.
    pub(crate) async fn prepare_post(
        &self,
        post: &PostTarget,
        request_headers: Vec<(FieldName, Bytes)>,
    ) {
        let get_headers: Vec<(FieldName, Bytes)> = request_headers
            .into_iter()
            .filter(|(n, _)| !BODY_HEADERS.contains(&&**n))
            .collect();
        let hs = HeaderList(&get_headers);
        let Plan::Cache(mut plan) = self.plan(&Self::post_view(post, &hs)) else {
            return;
        };
        self.note_store_epoch(&mut plan).await;
        *post.prepared.lock().unwrap_or_else(|e| e.into_inner()) = Some((plan, get_headers));
    }

    /// Runs `own`, the POST's own invalidation (`own_line`, of its target
    /// and locations; `None` when it removes nothing), then decides whether
    /// the answer may still be stored: not when an invalidation concerning
    /// the GET entry it would become (its path and query, the tags it would
    /// carry, those the origin gives in `headers` among them) ran since the
    /// POST went to the origin, here or on an instance sharing the store,
    /// other than `own` itself, whether before, during or after it. The
    /// fences are then moved to the moment `own` finished, noted before the
    /// check, so that `own` does not keep the answer out and nothing that
    /// runs after the check is missed. Purges of other URLs, which other
    /// requests run meanwhile, change nothing.
    pub(crate) async fn fence_post<F: std::future::Future>(
        &self,
        post: &PostTarget,
        headers: &(dyn HeaderSource + Sync),
        own_line: Option<Invalidation>,
        own: F,
    ) -> F::Output {
        let out = own.await;
        let taken = post
            .prepared
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take();
        let Some((plan, get_headers)) = taken else {
            return out;
        };
        // The fences of now, noted before the check.
        let mut after = plan.clone();
        after.epoch = self.inner.epoch.load(std::sync::atomic::Ordering::Acquire);
        self.note_store_epoch(&mut after).await;
        let hs = HeaderList(&get_headers);
        let view = Self::post_view(post, &hs);
        // The tags its entry would carry, as `put_entry` gives them.
        let origin = origin_tags(headers, self.policy(&plan).tag_headers());
        let tags = self.entry_tags(&plan, &view, origin);
        if self
            .invalidated_since_but(&plan, &view, &tags, own_line.as_ref())
            .await
        {
            self.inner
                .stats
                .uncacheable(crate::stats::NoCacheReason::Invalidated);
            return out;
        }
        *post.prepared.lock().unwrap_or_else(|e| e.into_inner()) = Some((after, get_headers));
        out
    }

    /// The recording that stores a POST's answer as the GET entry of its
    /// URL, or `None` when it may not be: only a 200 or 203 whose single
    /// `Content-Location` names the request's own URL (same scheme and
    /// host, same path and query: never another resource, which a client
    /// could otherwise fill through a POST), with explicit freshness from
    /// the origin (`max-age`, `s-maxage`, `Expires`), admitted as the
    /// answer to a GET with the POST's headers would be (`no-store`,
    /// `private`, `Set-Cookie`, `Vary`, credentials), and with `public` or
    /// `s-maxage` when the POST carried a cookie or credentials. `request_headers`
    /// are the POST's, as [`HttpCache::prepare_post`] noted them.
    pub(crate) async fn record_post_answer(
        &self,
        post: &PostTarget,
        status: u16,
        headers: Vec<(FieldName, Bytes)>,
    ) -> Option<Recording> {
        if status != 200 && status != 203 {
            return None;
        }
        let (plan, get_headers) = post
            .prepared
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take()?;
        let list = HeaderList(&headers);
        let mut locations = Vec::new();
        list.for_each_value("content-location", &mut |v| locations.push(v.to_vec()));
        let [location] = &locations[..] else {
            return None;
        };
        let location = std::str::from_utf8(location).ok()?;
        let resolved = target::same_origin_target(
            location,
            post.scheme.as_deref(),
            post.authority.as_deref(),
            &post.path,
        )?;
        let own = match &post.query {
            Some(q) => format!("{}?{q}", post.path),
            None => post.path.clone(),
        };
        if resolved != own {
            return None;
        }
        let hs = HeaderList(&get_headers);
        let view = Self::post_view(post, &hs);
        let policy = self.policy(&plan);
        let (cc, _) = response_cache_control(&list, policy.cache_control_targets());
        let explicit =
            cc.max_age.is_some() || cc.s_maxage.is_some() || list.first("expires").is_some();
        if !explicit {
            return None;
        }
        // A POST's answer is personal more often than a GET's ("order
        // placed for ..."): when the POST carried credentials, only the
        // origin's word for shared caches (`public`, `s-maxage`) lets it
        // stand for every client's GET, never `max-age` alone.
        let credentials = hs.first("cookie").is_some() || hs.first("authorization").is_some();
        if credentials && !(cc.public || cc.s_maxage.is_some()) {
            return None;
        }
        let now = self.inner.clock.now();
        let origin = OriginResponse::new(status, &list, &headers, now, now);
        let entry = self.admit(&plan, &view, &origin).ok()?;
        let max_size = self.max_size(&plan);
        let declared = list
            .first("content-length")
            .and_then(|v| std::str::from_utf8(v).ok()?.trim().parse::<u64>().ok());
        if declared.is_some_and(|len| len > max_size) {
            return None;
        }
        let transform = !forbids_transform(&headers);
        let request = OwnedRequest::new(&view, get_headers.clone());
        // The GET's key is held until the answer is written, as for a GET's
        // own fetch: a GET sent once the client has the answer's last byte
        // waits for the write instead of missing. A GET fetch under way
        // keeps the key, and this write waits for nobody.
        let guard = match self.lock(&plan) {
            Lock::Leader(g) => Some(g),
            Lock::Follower(_) => None,
        };
        // A large answer goes to a store that takes bodies as they stream
        // in as a GET's does.
        Some(Recording::storing_large(
            max_size,
            declared,
            Finish {
                cache: self.clone(),
                plan,
                request,
                entry,
                transform,
                guard,
                holder: None,
                exact_len: None,
            },
        ))
    }
}
