//! Lookup: the entry a request's key (or its variant's) holds.

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use super::plan::AtHand;
use super::stored::Stored;
use super::{CachePlan, CachedResponse, HttpCache};
use crate::entry::{BodyEncoding, StoredResponse};
use crate::http::encoding::{takes_cache_gzip, varies_by_encoding};
use crate::http::freshness::{self, Usability};
use crate::key::CacheKey;
use crate::request::RequestView;

/// Why [`HttpCache::answer_now`] has no answer.
pub(super) enum NotNow {
    /// The store had nothing at hand under the plan's key.
    Absent,
    /// Anything else: an entry that needs the usual path, bytes that do
    /// not decode.
    Other,
}

/// A request whose entry the store does not keep at hand (Redis), planned
/// by [`HttpCache::answer_at_hand_or_later`] for [`HttpCache::answer_later`].
#[derive(Debug)]
pub struct Later {
    pub(super) plan: CachePlan,
}

/// What [`HttpCache::answer_at_hand_or_later`] has for a request.
#[derive(Debug)]
pub enum AtHandOrLater {
    /// The answer from an entry at hand, counted.
    Answer(CachedResponse),
    /// The store keeps nothing at hand under the request's key but may
    /// hold its entry elsewhere: [`HttpCache::answer_later`] asks it.
    Later(Later),
    /// No policy takes the request: it goes to the origin past the cache,
    /// counted once the front end that sends it takes its ticket
    /// ([`Pass::ticket`]); a front end that gives it to its usual path
    /// drops it, as it drops [`Self::No`].
    Pass(Pass),
    /// Nothing: the usual path answers, and counts what it decides.
    No,
}

/// A request no policy takes, as [`HttpCache::answer_at_hand_or_later`]
/// found it: it goes to the origin past the cache. Nothing is counted for
/// it yet: a front end that sends it to the origin itself takes its
/// ticket ([`Pass::ticket`], which counts the bypass as
/// [`HttpCache::bypass`] does); one that gives the request to its usual
/// path drops it, and that path counts what it decides.
#[derive(Debug)]
#[must_use = "a pass is counted when its ticket is taken"]
pub struct Pass {
    pub(crate) cache: HttpCache,
    pub(crate) reason: crate::stats::NoCacheReason,
}

impl Pass {
    /// Why the request bypasses the cache.
    pub fn reason(&self) -> crate::stats::NoCacheReason {
        self.reason
    }
}

/// What [`HttpCache::answer_later`] has for a request.
#[derive(Debug)]
pub enum LaterAnswer {
    /// The answer, counted.
    Answer(CachedResponse),
    /// No entry under the key, or a store that failed: the usual path
    /// takes this for its lookup ([`HttpCache::note_looked`]).
    Absent(Looked),
    /// The usual path looks for itself.
    Other,
}

/// A lookup [`HttpCache::answer_later`] made that found no entry, for the
/// usual path to take as its own ([`HttpCache::note_looked`]).
#[derive(Debug, Clone)]
pub struct Looked {
    /// The cache that looked (its shared state), the key, and how many
    /// entries that cache had written before it asked.
    cache: usize,
    key: CacheKey,
    writes: u64,
    took: Duration,
}

/// What a store holds under a key, asked with a future.
// Returned by value and matched at once, as `Now`.
#[allow(clippy::large_enum_variant)]
enum Got {
    Entry(Stored),
    /// Nothing, or the store failed.
    Nothing,
    /// Bytes that do not decode.
    Bad,
}

/// What a store had at hand under a key.
// Returned by value and matched at once, never kept: boxing the entry
// would cost every hit an allocation.
#[allow(clippy::large_enum_variant)]
enum Now {
    /// An entry, decoded, and how long the store took.
    Found(Stored, Duration),
    /// Nothing, and how long the store took to say so.
    Absent(Duration),
    /// Bytes that do not decode.
    Unusable,
}

impl HttpCache {
    async fn get_stored(&self, key: &str) -> Option<Stored> {
        let bytes = self.guarded("get", self.inner.store.get(key)).await??;
        match Stored::decode(&bytes) {
            Ok(stored) => Some(stored),
            Err(err) => {
                self.inner.stats.corrupt_entry();
                tracing::warn!(key, error = %err, "undecodable bytes under a cache key; deleting them");
                // Rare: boxed, so lookups do not carry room for it.
                let delete = Box::pin(self.guarded("delete", self.inner.store.delete(key)));
                delete.await;
                None
            }
        }
    }

    /// Looks up the entry for `req`: one store round trip, two when the stored
    /// response varies on request headers.
    ///
    /// Not part of the adapters' protocol ([`HttpCache::begin`] looks up):
    /// public for tests that check what a store holds.
    #[doc(hidden)]
    pub async fn lookup(&self, plan: &CachePlan, req: &RequestView<'_>) -> Option<StoredResponse> {
        let started = Instant::now();
        // One await in a loop rather than two: a future holds room for
        // each await's store call.
        let mut variant: Option<(CacheKey, Vec<String>)> = None;
        let mut by_language = None;
        let stored = loop {
            let key = match (&by_language, &variant) {
                (Some(k), _) | (None, Some((k, _))) => k,
                (None, None) => &plan.key,
            };
            let stored = self.get_stored(key.as_str()).await;
            match (stored, &variant) {
                (Some(Stored::Vary(vary)), None) => {
                    variant = Some((self.entry_key(plan, req, &vary), vary));
                }
                // No answer for this request's own variant: the answer in
                // the language it prefers to every other, if one is stored.
                (None, Some((_, vary))) if by_language.is_none() => {
                    match self.preferred_language_key(plan, req, vary) {
                        Some(k) => by_language = Some(k),
                        None => break None,
                    }
                }
                (stored, _) => break stored,
            }
        };
        self.inner.stats.latency(started.elapsed());
        match stored {
            Some(Stored::Entry(entry)) if by_language.is_none() => Some(entry),
            // Found by language: kept only if it is (still) in that
            // language, and fresh. A stale one is no answer: it is never
            // revalidated, replaced or removed on behalf of a request whose
            // own variant it is not.
            Some(Stored::Entry(entry))
                if self.language_entry_key(plan, req, &entry) == by_language
                    && freshness::usability(&entry, &plan.request_cc, self.inner.clock.now())
                        == Usability::Fresh =>
            {
                Some(entry)
            }
            // A marker under a variant's key is no answer.
            _ => None,
        }
    }

    /// Answers `req` from an entry the store has at hand
    /// ([`Storage::get_now`](crate::store::Storage::get_now)) when that entry
    /// is fresh, or stale where the request accepts it, counted as
    /// [`HttpCache::begin`] counts it. `None` leaves the request to
    /// `begin`, with nothing counted: no entry at hand, one that needs the
    /// origin or a refresh, a gzip-stored one that goes out decompressed
    /// (decompressed there), or one that does not decode (which `begin`
    /// deletes). The hit path of stores in memory, without a future.
    ///
    /// When the store has nothing at hand under the plan's key and what
    /// it has at hand is all it has ([`Storage::get_now_is_whole`], a memory
    /// store), the plan notes it, and [`HttpCache::begin`] on this cache
    /// takes that for its lookup instead of asking the store again, when
    /// the cache has written nothing since.
    ///
    /// [`Storage::get_now_is_whole`]: crate::store::Storage::get_now_is_whole
    pub fn answer_now(
        &self,
        plan: &mut CachePlan,
        req: &RequestView<'_>,
    ) -> Option<CachedResponse> {
        self.answer_now_or_why(plan, req).ok()
    }

    /// [`HttpCache::answer_now`], or why there is no answer: [`NotNow::Absent`]
    /// when the store had nothing at hand under the plan's key.
    pub(super) fn answer_now_or_why(
        &self,
        plan: &mut CachePlan,
        req: &RequestView<'_>,
    ) -> Result<CachedResponse, NotNow> {
        // What an earlier call noted no longer holds.
        plan.absent = None;
        // Before the store is asked: a write landing after it is seen by
        // `begin` as one it must look again for.
        let writes = self.writes();
        let started = Instant::now();
        let (stored, first) = match self.entry_now(plan.key.as_str(), started) {
            Now::Found(stored, took) => (stored, took),
            Now::Absent(took) => {
                if self.inner.store.get_now_is_whole() {
                    plan.absent = Some(AtHand {
                        writes,
                        took,
                        counted: false,
                    });
                }
                return Err(NotNow::Absent);
            }
            Now::Unusable => return Err(NotNow::Other),
        };
        let mut second = None;
        let entry = match stored {
            Stored::Entry(entry) => entry,
            Stored::Vary(vary) => {
                let key = self.entry_key(plan, req, &vary);
                let Now::Found(Stored::Entry(variant), took) =
                    self.entry_now(key.as_str(), Instant::now())
                else {
                    return Err(NotNow::Other);
                };
                second = Some(took);
                variant
            }
        };
        self.answer_entry(plan, req, &entry, [Some(first), second], started.elapsed())
            .ok_or(NotNow::Other)
    }

    /// The answer to `req` from `entry`, found in the store (the store's
    /// calls took `took`, the lookup `looked`), when it is fresh or stale
    /// where the request accepts it, counted as [`HttpCache::begin`] counts
    /// it; `None` with nothing counted when it needs the usual path.
    fn answer_entry(
        &self,
        plan: &CachePlan,
        req: &RequestView<'_>,
        entry: &StoredResponse,
        took: [Option<Duration>; 2],
        looked: Duration,
    ) -> Option<CachedResponse> {
        // A gzip-stored body that goes out decompressed (a client without
        // gzip, a `no-transform` request or response) is decompressed, and
        // a corrupt one counted, on the usual path only: not here, where
        // the Tower service's `call` runs.
        if entry.compression == BodyEncoding::Gzip
            && !(varies_by_encoding(entry) && takes_cache_gzip(req))
        {
            return None;
        }
        let now = self.inner.clock.now();
        // Stale-while-revalidate needs a refresh, which `begin` starts.
        let usability = freshness::usability(entry, &plan.request_cc, now);
        if !matches!(usability, Usability::Fresh | Usability::StaleAccepted) {
            return None;
        }
        let r = self.answer_as(plan, req, entry, usability, now)?;
        for d in took.into_iter().flatten() {
            self.inner.stats.store_op(d);
        }
        self.inner.stats.latency(looked);
        Some(r)
    }

    /// The answer to the request of `later` (`req`, the request
    /// [`HttpCache::answer_at_hand_or_later`] was given) from the store,
    /// asked with a future: as [`HttpCache::answer_at_hand`] gives an
    /// entry at hand. For every other request the usual path answers:
    /// [`LaterAnswer::Absent`] when the store held nothing under the key
    /// or failed (`store.timeout` included), which that path takes for its
    /// own lookup ([`HttpCache::note_looked`]), and [`LaterAnswer::Other`]
    /// for an entry it must look at itself (one that needs the origin or
    /// a refresh, a variant not stored, bytes that do not decode). The
    /// store's calls are counted as they are made (store operations, and
    /// errors); the request only when it is answered.
    pub async fn answer_later(&self, later: Later, req: &RequestView<'_>) -> LaterAnswer {
        let plan = later.plan;
        // Before the store is asked, as in `answer_now`.
        let writes = self.writes();
        let started = Instant::now();
        let stored = match self.get_for_answer(plan.key.as_str()).await {
            Got::Entry(stored) => stored,
            Got::Nothing => {
                return LaterAnswer::Absent(Looked {
                    cache: self.identity(),
                    key: plan.key,
                    writes,
                    took: started.elapsed(),
                })
            }
            Got::Bad => return LaterAnswer::Other,
        };
        let entry = match stored {
            Stored::Entry(entry) => entry,
            Stored::Vary(vary) => {
                let key = self.entry_key(&plan, req, &vary);
                let Got::Entry(Stored::Entry(variant)) = self.get_for_answer(key.as_str()).await
                else {
                    return LaterAnswer::Other;
                };
                variant
            }
        };
        // The store's calls were counted as they were made (`guarded`).
        match self.answer_entry(&plan, req, &entry, [None, None], started.elapsed()) {
            Some(answer) => {
                self.inner.stats.answered_at_hand();
                LaterAnswer::Answer(answer)
            }
            None => LaterAnswer::Other,
        }
    }

    /// Gives `plan` (the usual path's plan of the request
    /// [`HttpCache::answer_later`] found no entry for) that lookup as its
    /// own, so that [`HttpCache::begin`] does not ask the store again:
    /// when `looked` is this cache's (or a clone's) and of the plan's key,
    /// and the cache has written nothing since (`begin` checks). Call it
    /// after [`HttpCache::answer_now`], which forgets what a plan noted.
    ///
    /// Instances sharing a store: an entry another instance stores
    /// between the two moments is not seen by this request, which then
    /// fetches it, as a lookup made a moment earlier would have.
    pub fn note_looked(&self, plan: &mut CachePlan, looked: Looked) {
        if looked.cache == self.identity() && looked.key == plan.key {
            plan.absent = Some(AtHand {
                writes: looked.writes,
                took: looked.took,
                counted: true,
            });
        }
    }

    /// What tells this cache (and its clones, which share its state) from
    /// another.
    fn identity(&self) -> usize {
        std::sync::Arc::as_ptr(&self.inner) as usize
    }

    /// The entry the store holds under `key`, decoded without its tags.
    async fn get_for_answer(&self, key: &str) -> Got {
        match self.guarded("get", self.inner.store.get(key)).await {
            Some(Some(bytes)) => match Stored::decode_for_answer(&bytes) {
                Ok(stored) => Got::Entry(stored),
                // The usual path looks again, and deletes it.
                Err(_) => Got::Bad,
            },
            // Nothing, or a store that failed: a miss either way.
            Some(None) | None => Got::Nothing,
        }
    }

    /// What the store has at hand under `key`, decoded, and how long the
    /// store took from `started`.
    fn entry_now(&self, key: &str, started: Instant) -> Now {
        let Some(bytes) = self.inner.store.get_now(key) else {
            return Now::Absent(started.elapsed());
        };
        let took = started.elapsed();
        // Only answered from: its tags are not needed.
        match Stored::decode_for_answer(&bytes) {
            Ok(stored) => Now::Found(stored, took),
            // `begin` looks it up again, and deletes it.
            Err(_) => Now::Unusable,
        }
    }

    /// How many entries this cache has written (a cheap "did anything land
    /// meanwhile" check).
    pub(crate) fn writes(&self) -> u64 {
        self.inner.writes.load(Ordering::Acquire)
    }

    /// The key under which the answer in the language `req` prefers to every
    /// other is also stored, for a response varying on `vary` (see
    /// [`KeySpec::preferred_language_key`](crate::KeySpec::preferred_language_key)).
    fn preferred_language_key(
        &self,
        plan: &CachePlan,
        req: &RequestView<'_>,
        vary: &[String],
    ) -> Option<CacheKey> {
        if !plan.settings.select_language() || plan.part {
            return None;
        }
        self.policy(plan)
            .key_spec()
            .preferred_language_key(req, vary)
    }

    /// The key under which `entry`, stored for `req`, is also found by the
    /// requests that prefer its one `Content-Language` to every other
    /// language, when it varies on `Accept-Language` (see
    /// [`KeySpec::language_key`](crate::KeySpec::language_key)): only with
    /// `defaults.select_language`, for a complete 200 (never a part, nor
    /// an error or a fallback page in a status of its own).
    pub(super) fn language_entry_key(
        &self,
        plan: &CachePlan,
        req: &RequestView<'_>,
        entry: &StoredResponse,
    ) -> Option<CacheKey> {
        if !plan.settings.select_language() || plan.part || entry.status != 200 {
            return None;
        }
        let mut lines = entry
            .headers
            .iter()
            .filter(|(n, _)| n == "content-language");
        let (Some((_, language)), None) = (lines.next(), lines.next()) else {
            return None;
        };
        self.policy(plan)
            .key_spec()
            .language_key(req, &entry.vary, language)
    }

    /// The key an entry of `req` lives under: the plan's, or its variant's
    /// when the response varies on request headers (`vary`).
    pub(super) fn entry_key(
        &self,
        plan: &CachePlan,
        req: &RequestView<'_>,
        vary: &[String],
    ) -> CacheKey {
        if vary.is_empty() {
            plan.key.clone()
        } else if plan.part {
            self.policy(plan).key_spec().key(req, vary).part()
        } else {
            self.policy(plan).key_spec().key(req, vary)
        }
    }
}
