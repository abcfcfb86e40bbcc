//! Planning: whether the cache handles a request, and its key.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use super::lookup::{AtHandOrLater, Later, NotNow};
use super::HttpCache;
use crate::http::cache_control::{request_cache_control, CacheControl};
use crate::http::request;
use crate::key::CacheKey;
use crate::policy::{Policy, PolicyMatch};
use crate::request::RequestView;
use crate::settings::Settings;
use crate::stats::NoCacheReason;
use crate::CachedResponse;

/// Where an adapter starts with a request ([`HttpCache::start`]).
// Made once per request and matched at once, as a plan is: boxing the plan
// would cost an allocation on every request.
#[allow(clippy::large_enum_variant)]
#[derive(Debug)]
pub enum Start {
    /// The policy keys on the body (`vary_by: [body]`) and caches this
    /// method: read up to this many bytes first. When the body ends within
    /// them, pass them in [`RequestView::body`] to [`HttpCache::plan`] (and
    /// send the origin exactly those bytes); otherwise bypass with
    /// [`NoCacheReason::BodyTooLarge`] and stream the body on untouched.
    ReadBody(u64),
    /// The plan; the body is not part of the key.
    Plan(Plan),
}

/// What to do with a request. Exhaustive on purpose: a new kind of plan must
/// make every adapter handle it.
// A plan is made once per request and moved, never stored in bulk; boxing
// the cache variant would cost an allocation on every hit.
#[allow(clippy::large_enum_variant)]
#[derive(Debug)]
pub enum Plan {
    /// Do not use the cache.
    Bypass(NoCacheReason),
    /// Look up, and store what the origin answers if allowed.
    Cache(CachePlan),
}

/// A request the cache handles. Owns its data, so it can move into the task
/// that stores the response once its body has streamed.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct CachePlan {
    /// The settings the request began with, kept to its end: its policy
    /// and everything decided after the plan come from them.
    pub(super) settings: Arc<Settings>,
    pub(super) policy: Option<usize>,
    pub(super) params: Vec<(String, String)>,
    /// The key before response `Vary` is known.
    pub key: CacheKey,
    /// The request's caching directives.
    pub request_cc: CacheControl,
    /// This instance's invalidation sequence when the request arrived: a
    /// response is not stored if an invalidation concerning it ran since.
    pub(super) epoch: u64,
    /// The shared store's invalidation counter when the fetch started.
    pub(super) store_epoch: Option<u64>,
    /// Reading that counter failed: what other instances invalidate
    /// meanwhile cannot be known, so the response is not stored.
    pub(super) store_epoch_unknown: bool,
    /// Whether this plan stores and looks up partial responses (206s)
    /// rather than complete ones: its key, and its variants' keys, are
    /// [`CacheKey::part`]s.
    pub(super) part: bool,
    /// The store held nothing under the key when [`HttpCache::answer_now`]
    /// asked it at hand (a store whose `get_now` is whole): `begin` takes
    /// that as its lookup.
    pub(super) absent: Option<AtHand>,
}

/// A key found absent at hand: how many entries the cache had written
/// before it asked, how long the store took, and whether that call was
/// counted already (a lookup made with a future, by `answer_later`).
#[derive(Debug, Clone, Copy)]
pub(super) struct AtHand {
    pub(super) writes: u64,
    pub(super) took: std::time::Duration,
    pub(super) counted: bool,
}

impl CachePlan {
    /// The plan of the same request for its stored parts.
    pub(super) fn for_part(&self) -> CachePlan {
        let mut plan = self.clone();
        plan.absent = None;
        if !plan.part {
            plan.key = plan.key.part();
            plan.part = true;
        }
        plan
    }
}

impl HttpCache {
    /// Where an adapter starts with a request whose body it has not read:
    /// its [`Plan`], or first the body to read, with one policy match for
    /// both questions.
    pub fn start(&self, req: &RequestView<'_>) -> Start {
        let settings = self.settings();
        let Some(m) = settings.policies().find(req.path, req.query) else {
            return Start::Plan(Plan::Bypass(NoCacheReason::NoPolicy));
        };
        let p = m.policy();
        if p.key_spec().uses_body() && p.allows_method(req.method) {
            Start::ReadBody(p.max_body())
        } else {
            Start::Plan(self.plan_matched(&settings, m, req))
        }
    }

    /// Decides whether the cache handles `req`.
    /// A request a policy matched but that bypasses the cache is counted for
    /// that policy here; the adapter counts the bypass and its reason with
    /// [`CacheStats::bypass`](crate::CacheStats::bypass).
    pub fn plan(&self, req: &RequestView<'_>) -> Plan {
        let settings = self.settings();
        match settings.policies().find(req.path, req.query) {
            Some(m) => self.plan_matched(&settings, m, req),
            None => Plan::Bypass(NoCacheReason::NoPolicy),
        }
    }

    /// [`HttpCache::plan`] once the policy is found in `settings`.
    fn plan_matched(
        &self,
        settings: &Arc<Settings>,
        m: PolicyMatch<'_>,
        req: &RequestView<'_>,
    ) -> Plan {
        let policy = m.policy();
        let index = m.index();
        match self.decide(settings, m, req) {
            Ok(plan) => Plan::Cache(plan),
            Err(reason) => {
                self.inner
                    .stats
                    .policy_bypass(index.map(|i| (i, policy.name())));
                Plan::Bypass(reason)
            }
        }
    }

    /// The response to `req` from an entry the store has at hand, as
    /// [`HttpCache::start`] then [`HttpCache::answer_now`] would give it,
    /// and `None` for every other request with nothing counted: no policy,
    /// a bypass, a policy that keys on the body, no usable entry at hand.
    /// For a front end that answers such hits before building the request
    /// its usual path takes, and gives every `None` to that path (which
    /// then counts what it decides, once).
    pub fn answer_at_hand(&self, req: &RequestView<'_>) -> Option<CachedResponse> {
        match self.answer_at_hand_or_later(req) {
            AtHandOrLater::Answer(answer) => Some(answer),
            AtHandOrLater::Later(_) | AtHandOrLater::Pass(_) | AtHandOrLater::No => None,
        }
    }

    /// [`HttpCache::answer_at_hand`], and for a request the store has
    /// nothing at hand for while it does not keep every entry at hand
    /// ([`Storage::get_now_is_whole`](crate::store::Storage::get_now_is_whole)
    /// is false: Redis), its plan, for [`HttpCache::answer_later`] to ask
    /// the store with a future. A front end that cannot wait on a future
    /// where it reads request heads gives [`AtHandOrLater::Later`] to its
    /// usual path as it gives [`AtHandOrLater::No`].
    pub fn answer_at_hand_or_later(&self, req: &RequestView<'_>) -> AtHandOrLater {
        let settings = self.settings();
        let Some(m) = settings.policies().find(req.path, req.query) else {
            return AtHandOrLater::Pass(super::lookup::Pass {
                cache: self.clone(),
                reason: NoCacheReason::NoPolicy,
            });
        };
        if m.policy().key_spec().uses_body() {
            return AtHandOrLater::No;
        }
        let Ok(mut plan) = self.decide(&settings, m, req) else {
            return AtHandOrLater::No;
        };
        match self.answer_now_or_why(&mut plan, req) {
            Ok(answer) => {
                self.inner.stats.answered_at_hand();
                AtHandOrLater::Answer(answer)
            }
            Err(NotNow::Absent) if !self.inner.store.get_now_is_whole() => {
                AtHandOrLater::Later(Later { plan })
            }
            Err(_) => AtHandOrLater::No,
        }
    }

    /// The plan of `req` under its policy `m`, or why it bypasses the
    /// cache (counted by the caller).
    fn decide(
        &self,
        settings: &Arc<Settings>,
        m: PolicyMatch<'_>,
        req: &RequestView<'_>,
    ) -> Result<CachePlan, NoCacheReason> {
        let request_cc = request_cache_control(req.headers);
        let keys_body = m.policy().key_spec().uses_body();
        let reason = if !m.policy().allows_method(req.method) {
            Some(NoCacheReason::Method)
        } else if request_cc.unparsable {
            // What the client asked of caches is not known: it gets the
            // origin's answer, and the cache is left alone.
            Some(NoCacheReason::UnparsableCacheControl)
        } else if request_cc.no_store {
            Some(NoCacheReason::RequestNoStore)
        } else if request::has_method_override(req) {
            Some(NoCacheReason::MethodOverride)
        } else if keys_body && req.body.is_none() {
            Some(NoCacheReason::BodyNotBuffered)
        } else if !keys_body && request::carries_body(req) {
            Some(NoCacheReason::RequestBody)
        } else {
            None
        };
        if let Some(reason) = reason {
            return Err(reason);
        }
        let key = m.policy().key_spec().key(req, &[]);
        let (policy, params) = m.into_parts();
        Ok(CachePlan {
            settings: settings.clone(),
            policy,
            params,
            key,
            request_cc,
            epoch: self.inner.epoch.load(Ordering::Acquire),
            store_epoch: None,
            store_epoch_unknown: false,
            part: false,
            absent: None,
        })
    }

    /// The policy of a plan, in the settings it began with.
    pub(crate) fn policy<'p>(&self, plan: &'p CachePlan) -> &'p Policy {
        plan.settings.policies().get(plan.policy)
    }
}
