//! Cache warming: the configured URLs fetched ahead of the first client, in
//! priority order, at most `max_concurrent` at once, with a timeout per
//! fetch and retries with exponential backoff and jitter.
//!
//! A warm request goes through the cache exactly as a client's request does
//! (the [`WarmFetcher`] sends it through the cache layer or middleware), so
//! the entry lands under the key, policy, tags and admission rules a client
//! request for that URL gets, and that client request is a HIT. It is made
//! for `warming.host` (default: the host of `warming.base_url`) and carries
//! no header but `Host` and the URL's own `headers`.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use serde::Serialize;

use crate::config::{redacted, WarmPriority, WarmUrlConfig};
use crate::http::freshness::{self, Usability};
use crate::request::RequestView;
use crate::settings::Settings;
use crate::stats::WarmOutcome;
use crate::{HttpCache, Plan};

/// A boxed future of a warm fetch.
pub type FetchFuture<'a> = Pin<Box<dyn Future<Output = Result<u16, String>> + Send + 'a>>;

/// Sends a warm request through the cache and reads its response to the end;
/// the status, or why there is none. Implementations: the Tower layer's
/// in-process fetcher over the wrapped service, and an HTTP fetcher to an
/// address served through the cache (`warming.base_url`).
pub trait WarmFetcher: fmt::Debug + Send + Sync + 'static {
    /// Sends `req` (a GET) and drains the response body.
    fn fetch<'a>(&'a self, req: &'a WarmRequest) -> FetchFuture<'a>;
}

/// One warm request: a GET, made and keyed as a client request would be.
#[derive(Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct WarmRequest {
    /// `http` or `https`: the scheme the entry is keyed for.
    pub scheme: String,
    /// The `Host` the request carries, when there is one.
    pub host: Option<String>,
    /// Path and query, starting with `/`.
    pub path_and_query: String,
    /// Headers besides `Host`, names lower case.
    pub headers: Vec<(String, String)>,
}

impl fmt::Debug for WarmRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WarmRequest")
            .field("scheme", &self.scheme)
            .field("host", &self.host)
            .field("path_and_query", &self.path_and_query)
            .field(
                "headers",
                &redacted(self.headers.iter().map(|(n, v)| (n, v))),
            )
            .finish()
    }
}

impl WarmRequest {
    /// The path.
    pub fn path(&self) -> &str {
        self.path_and_query
            .split_once('?')
            .map_or(self.path_and_query.as_str(), |(p, _)| p)
    }

    /// The query, without `?`.
    pub fn query(&self) -> Option<&str> {
        self.path_and_query.split_once('?').map(|(_, q)| q)
    }

    /// Every header, `host` first.
    pub fn header_list(&self) -> Vec<(String, String)> {
        self.host
            .iter()
            .map(|h| ("host".to_owned(), h.clone()))
            .chain(self.headers.iter().cloned())
            .collect()
    }
}

/// What a warming run did, seed-compatible (`total`, `success`, `failed`,
/// `skipped`, `duration_ms`) with the failures spelled out.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct WarmReport {
    /// URLs in the run.
    pub total: u64,
    /// URLs fetched through the cache.
    pub success: u64,
    /// URLs whose every attempt failed.
    pub failed: u64,
    /// URLs skipped because a fresh entry was there.
    pub skipped: u64,
    /// How long the run took.
    pub duration_ms: u64,
    /// The failed URLs and why.
    pub failures: Vec<WarmFailure>,
}

/// One URL that could not be warmed.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct WarmFailure {
    /// The URL as configured.
    pub url: String,
    /// The last error.
    pub error: String,
}

/// One configured URL, resolved.
#[derive(Clone, Debug)]
pub(crate) struct Target {
    pub(crate) url: String,
    pub(crate) request: WarmRequest,
    pub(crate) priority: WarmPriority,
    /// Its own cron schedule, or its policy's; `None`: every `interval`.
    pub(crate) schedule: Option<String>,
}

/// Runs warming for a cache with a fetcher. Cheap to share behind an `Arc`.
pub struct Warmer {
    cache: HttpCache,
    fetcher: Arc<dyn WarmFetcher>,
    /// The URLs of the settings they were resolved from: resolved again
    /// when the cache runs on other settings (a reload).
    targets: Mutex<(Arc<Settings>, Arc<Vec<Target>>)>,
    /// One run at a time; a run asked for meanwhile waits (scheduled) or is
    /// refused (the admin route answers 409).
    running: tokio::sync::Mutex<()>,
    last: Mutex<Option<WarmReport>>,
}

impl fmt::Debug for Warmer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Warmer")
            .field("fetcher", &self.fetcher)
            .field("urls", &self.targets().len())
            .finish()
    }
}

/// Splits `scheme://host[:port]` or `host[:port]` into scheme and host.
fn scheme_and_host(spec: &str) -> (&str, &str) {
    if let Some(h) = spec.strip_prefix("https://") {
        ("https", h.trim_end_matches('/'))
    } else if let Some(h) = spec.strip_prefix("http://") {
        ("http", h.trim_end_matches('/'))
    } else {
        ("http", spec)
    }
}

/// The host part of an `http://host[:port]/...` URL.
fn url_host(url: &str) -> Option<&str> {
    let rest = url
        .strip_prefix("http://")
        .or_else(|| url.strip_prefix("https://"))?;
    let host = rest.split(['/', '?']).next().unwrap_or("");
    (!host.is_empty()).then_some(host)
}

impl Warmer {
    /// A warmer for the cache's `warming` section, sending requests with
    /// `fetcher`.
    pub fn new(cache: HttpCache, fetcher: Arc<dyn WarmFetcher>) -> Self {
        let settings = cache.settings();
        let targets = Arc::new(resolve(&settings));
        Warmer {
            cache,
            fetcher,
            targets: Mutex::new((settings, targets)),
            running: tokio::sync::Mutex::new(()),
            last: Mutex::new(None),
        }
    }

    /// The URLs of the settings the cache runs on, in the order they are
    /// started (priority, then file order).
    pub fn requests(&self) -> Vec<WarmRequest> {
        self.targets().iter().map(|t| t.request.clone()).collect()
    }

    /// The URLs of the settings the cache runs on now.
    pub(crate) fn targets(&self) -> Arc<Vec<Target>> {
        let settings = self.cache.settings();
        let mut kept = self.targets.lock().unwrap_or_else(|e| e.into_inner());
        if !Arc::ptr_eq(&kept.0, &settings) {
            let targets = Arc::new(resolve(&settings));
            *kept = (settings, targets);
        }
        kept.1.clone()
    }

    /// The report of the last run, if any.
    pub fn last_report(&self) -> Option<WarmReport> {
        self.last.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Warms every URL now, after any run in progress.
    pub async fn run(&self) -> WarmReport {
        let targets = self.targets();
        let all: Vec<&Target> = targets.iter().collect();
        self.run_targets(&all).await
    }

    /// Warms every URL now, unless a run is in progress (`None`).
    pub async fn try_run(&self) -> Option<WarmReport> {
        let guard = self.running.try_lock().ok()?;
        let targets = self.targets();
        let all: Vec<&Target> = targets.iter().collect();
        Some(self.run_locked(&all, guard).await)
    }

    pub(crate) async fn run_targets(&self, targets: &[&Target]) -> WarmReport {
        let guard = self.running.lock().await;
        self.run_locked(targets, guard).await
    }

    async fn run_locked(
        &self,
        targets: &[&Target],
        _guard: tokio::sync::MutexGuard<'_, ()>,
    ) -> WarmReport {
        let started = Instant::now();
        self.cache.stats().warm_run();
        let limit = self.cache.config().warming.max_concurrent.max(1);
        // Started in priority order (targets are sorted), at most `limit` at once.
        // The futures are made before they go into the stream: a closure
        // returning them would not be provably `Send` for every lifetime.
        let fetches: Vec<_> = targets.iter().map(|t| self.warm_one(t)).collect();
        let results: Vec<(&Target, WarmOutcome, Option<String>)> =
            futures_util::stream::iter(fetches)
                .buffer_unordered(limit)
                .collect()
                .await;
        let mut report = WarmReport {
            total: results.len() as u64,
            ..WarmReport::default()
        };
        for (t, outcome, error) in results {
            self.cache.stats().warmed(outcome);
            match outcome {
                WarmOutcome::Success => report.success += 1,
                WarmOutcome::Skipped => report.skipped += 1,
                WarmOutcome::Failed => {
                    report.failed += 1;
                    report.failures.push(WarmFailure {
                        url: t.url.clone(),
                        error: error.unwrap_or_default(),
                    });
                }
            }
        }
        report.duration_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
        if report.failed > 0 {
            tracing::warn!(target: "uip_cache::warm", total = report.total, success = report.success, failed = report.failed, skipped = report.skipped, duration_ms = report.duration_ms, failures = ?report.failures, "warming run finished with failures");
        } else {
            tracing::info!(target: "uip_cache::warm", total = report.total, success = report.success, skipped = report.skipped, duration_ms = report.duration_ms, "warming run finished");
        }
        *self.last.lock().unwrap_or_else(|e| e.into_inner()) = Some(report.clone());
        report
    }

    /// Whether the cache holds a fresh entry for this request, as a client
    /// sending it would find; why it cannot be cached otherwise.
    async fn is_fresh(&self, req: &WarmRequest) -> Result<bool, String> {
        let headers = req.header_list();
        let view = RequestView::new("GET", req.path(), &headers)
            .query(req.query())
            .scheme(Some(&req.scheme))
            .authority(req.host.as_deref());
        match self.cache.plan(&view) {
            Plan::Bypass(reason) => Err(format!(
                "the cache does not store this URL ({})",
                reason.as_str()
            )),
            Plan::Cache(plan) => Ok(self.cache.lookup(&plan, &view).await.is_some_and(|e| {
                freshness::usability(&e, &plan.request_cc, self.cache.clock().now())
                    == Usability::Fresh
            })),
        }
    }

    async fn warm_one<'t>(&self, t: &'t Target) -> (&'t Target, WarmOutcome, Option<String>) {
        let (outcome, error) = self.warm_target(t).await;
        (t, outcome, error)
    }

    async fn warm_target(&self, t: &Target) -> (WarmOutcome, Option<String>) {
        match self.is_fresh(&t.request).await {
            Ok(true) => return (WarmOutcome::Skipped, None),
            Ok(false) => {}
            Err(e) => return (WarmOutcome::Failed, Some(e)),
        }
        let config = self.cache.config();
        let cfg = &config.warming;
        let timeout = cfg.timeout.get();
        let mut last = String::new();
        for attempt in 0..=cfg.retries {
            if attempt > 0 {
                tokio::time::sleep(backoff(attempt, &t.url)).await;
            }
            match tokio::time::timeout(timeout, self.fetcher.fetch(&t.request)).await {
                Ok(Ok(status)) if (200..400).contains(&status) => {
                    return (WarmOutcome::Success, None);
                }
                Ok(Ok(status)) => {
                    last = format!("the origin answered {status}");
                    // A client error stays one: only server errors, 408 and
                    // 429 are worth another try.
                    if status < 500 && status != 408 && status != 429 {
                        break;
                    }
                }
                Ok(Err(e)) => last = e,
                Err(_) => last = format!("no response within {timeout:?}"),
            }
        }
        (WarmOutcome::Failed, Some(last))
    }
}

/// Exponential backoff: 200 ms doubled per attempt, at most 10 s, times a
/// jitter in [0.5, 1.5) so that instances restarted together do not retry
/// in step. The jitter comes from the std hasher's random keys: no random
/// number crate is needed for this much randomness.
fn backoff(attempt: u32, url: &str) -> Duration {
    use std::hash::{BuildHasher, Hasher};
    let base = Duration::from_millis(200)
        .saturating_mul(1u32 << attempt.min(16))
        .min(Duration::from_secs(10));
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write(url.as_bytes());
    h.write_u32(attempt);
    let jitter = 0.5 + (h.finish() % 1000) as f64 / 1000.0;
    base.mul_f64(jitter)
}

/// Resolves the configured URLs: host and scheme, headers, schedule, in
/// start order.
fn resolve(settings: &Settings) -> Vec<Target> {
    let config = settings.config();
    let w = &config.warming;
    let default_host = w.host.as_deref().map(scheme_and_host).or_else(|| {
        w.base_url
            .as_deref()
            .and_then(url_host)
            .map(|h| ("http", h))
    });
    let mut targets: Vec<Target> = w
        .urls
        .iter()
        .map(|u| {
            let request = request_for(u, default_host);
            let m = settings.policies().find(request.path(), request.query());
            // A policy's schedule applies to its warm URLs that have none
            // of their own, when its `warming.enabled` is on.
            let policy_schedule = m
                .as_ref()
                .and_then(|m| m.index())
                .and_then(|i| config.policies.get(i))
                .and_then(|p| p.warming.as_ref())
                .filter(|pw| pw.enabled)
                .and_then(|pw| pw.schedule.as_ref());
            Target {
                url: u.url.value.clone(),
                request,
                priority: u.priority,
                schedule: u
                    .schedule
                    .as_ref()
                    .or(policy_schedule)
                    .map(|s| s.value.clone()),
            }
        })
        .collect();
    // Stable: file order within a priority.
    targets.sort_by_key(|t| t.priority);
    targets
}

fn request_for(u: &WarmUrlConfig, default_host: Option<(&str, &str)>) -> WarmRequest {
    let url = u.url.value.as_str();
    let (scheme, host, path_and_query) = match url_host(url) {
        Some(host) => {
            let scheme = if url.starts_with("https://") {
                "https"
            } else {
                "http"
            };
            let after_scheme = url
                .strip_prefix("http://")
                .or_else(|| url.strip_prefix("https://"))
                .unwrap_or(url);
            let rest = &after_scheme[host.len()..];
            let pq = if rest.starts_with('/') {
                rest.to_owned()
            } else {
                format!("/{rest}")
            };
            (scheme, Some(host.to_owned()), pq)
        }
        None => (
            default_host.map_or("http", |(s, _)| s),
            default_host.map(|(_, h)| h.to_owned()),
            url.to_owned(),
        ),
    };
    WarmRequest {
        scheme: scheme.to_owned(),
        host,
        path_and_query,
        headers: u
            .headers
            .iter()
            .map(|(n, v)| (n.to_ascii_lowercase(), v.clone()))
            .collect(),
    }
}

#[cfg(feature = "http-fetcher")]
mod http;
#[cfg(feature = "http-fetcher")]
#[cfg_attr(docsrs, doc(cfg(feature = "http-fetcher")))]
pub use http::HttpFetcher;

#[cfg(test)]
mod tests;
