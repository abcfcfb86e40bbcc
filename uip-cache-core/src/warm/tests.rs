use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

use super::*;
use crate::CacheConfig;

/// Answers after a pause; counts what is in flight; fails some URLs a
/// number of times first.
#[derive(Debug, Default)]
struct FakeFetcher {
    started: Mutex<Vec<String>>,
    in_flight: AtomicUsize,
    max_in_flight: AtomicUsize,
    failures_left: Mutex<HashMap<String, usize>>,
    statuses: HashMap<String, u16>,
    seen: Mutex<Vec<WarmRequest>>,
}

impl WarmFetcher for FakeFetcher {
    fn fetch<'a>(&'a self, req: &'a WarmRequest) -> FetchFuture<'a> {
        Box::pin(async move {
            self.started
                .lock()
                .unwrap()
                .push(req.path_and_query.clone());
            self.seen.lock().unwrap().push(req.clone());
            let now = self.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
            self.max_in_flight.fetch_max(now, Ordering::SeqCst);
            tokio::time::sleep(Duration::from_millis(20)).await;
            self.in_flight.fetch_sub(1, Ordering::SeqCst);
            let mut fails = self.failures_left.lock().unwrap();
            if let Some(n) = fails.get_mut(&req.path_and_query) {
                if *n > 0 {
                    *n -= 1;
                    return Err("connection refused".into());
                }
            }
            Ok(*self.statuses.get(&req.path_and_query).unwrap_or(&200))
        })
    }
}

fn config(extra: &str) -> CacheConfig {
    CacheConfig::from_yaml_str(&format!(
        r#"
policies:
  - name: all
    pattern: "/*"
    ttl: 60
warming:
  enabled: true
  max_concurrent: 2
  retries: 2
  timeout: 5
  host: "api.example"
{extra}"#
    ))
    .unwrap()
}

fn warmer(config: &CacheConfig, fetcher: Arc<FakeFetcher>) -> Warmer {
    Warmer::new(HttpCache::with_memory_store(config).unwrap(), fetcher)
}

#[tokio::test]
async fn urls_start_in_priority_order_with_at_most_max_concurrent_in_flight() {
    let config = config(
        r#"  urls:
    - {url: "/low1", priority: low}
    - {url: "/med1"}
    - {url: "/high1", priority: high}
    - {url: "/low2", priority: low}
    - {url: "/high2", priority: high}
    - {url: "/med2", priority: medium}
"#,
    );
    let fetcher = Arc::new(FakeFetcher::default());
    let report = warmer(&config, fetcher.clone()).run().await;
    assert_eq!((report.total, report.success, report.failed), (6, 6, 0));
    assert_eq!(
        *fetcher.started.lock().unwrap(),
        ["/high1", "/high2", "/med1", "/med2", "/low1", "/low2"]
    );
    assert_eq!(fetcher.max_in_flight.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn failures_are_retried_with_backoff_then_reported() {
    let config = config(
        r#"  urls:
    - {url: "/flaky"}
    - {url: "/down"}
    - {url: "/missing"}
"#,
    );
    let fetcher = Arc::new(FakeFetcher {
        failures_left: Mutex::new(HashMap::from([
            ("/flaky".to_owned(), 2),
            ("/down".to_owned(), 10),
        ])),
        statuses: HashMap::from([("/missing".to_owned(), 404)]),
        ..FakeFetcher::default()
    });
    let w = warmer(&config, fetcher.clone());
    let report = w.run().await;
    assert_eq!((report.success, report.failed), (1, 2), "{report:?}");
    let started = fetcher.started.lock().unwrap().clone();
    let count = |u: &str| started.iter().filter(|s| *s == u).count();
    // retries: 2 -> three attempts; a 404 is not retried.
    assert_eq!(
        (count("/flaky"), count("/down"), count("/missing")),
        (3, 3, 1)
    );
    let errors: HashMap<_, _> = report
        .failures
        .iter()
        .map(|f| (f.url.as_str(), f.error.as_str()))
        .collect();
    assert_eq!(errors["/down"], "connection refused");
    assert_eq!(errors["/missing"], "the origin answered 404");
    assert_eq!(w.last_report(), Some(report));
    let snap = w.cache.stats().snapshot();
    assert_eq!(
        (snap.warm_runs, snap.warm_success, snap.warm_failed),
        (1, 1, 2)
    );
}

#[tokio::test]
async fn requests_carry_the_warming_host_and_listed_headers_only() {
    let config = config(
        r#"  urls:
    - url: "/a?x=1"
      headers: {Accept: "application/ld+json"}
    - url: "https://other.example:8443/b"
"#,
    );
    let fetcher = Arc::new(FakeFetcher::default());
    warmer(&config, fetcher.clone()).run().await;
    let seen = fetcher.seen.lock().unwrap().clone();
    assert_eq!(seen[0].host.as_deref(), Some("api.example"));
    assert_eq!(seen[0].scheme, "http");
    assert_eq!(seen[0].path(), "/a");
    assert_eq!(seen[0].query(), Some("x=1"));
    assert_eq!(
        seen[0].header_list(),
        [
            ("host".to_owned(), "api.example".to_owned()),
            ("accept".to_owned(), "application/ld+json".to_owned())
        ]
    );
    assert_eq!(seen[1].host.as_deref(), Some("other.example:8443"));
    assert_eq!(seen[1].scheme, "https");
    assert_eq!(seen[1].path_and_query, "/b");
}

#[tokio::test]
async fn a_url_no_policy_caches_fails_without_a_fetch() {
    let config = CacheConfig::from_yaml_str(
        "policies:\n  - name: a\n    pattern: /a\n    ttl: 5\nwarming:\n  urls:\n    - url: /b\n",
    )
    .unwrap();
    let fetcher = Arc::new(FakeFetcher::default());
    let report = warmer(&config, fetcher.clone()).run().await;
    assert_eq!(report.failed, 1);
    assert!(report.failures[0].error.contains("no_policy"), "{report:?}");
    assert!(fetcher.started.lock().unwrap().is_empty());
}

#[tokio::test]
async fn a_policy_schedule_applies_to_its_urls_when_enabled() {
    let config = CacheConfig::from_yaml_str(
        "policies:\n  - name: a\n    pattern: /a\n    ttl: 5\n    warming: {enabled: false, schedule: \"*/5 * * * *\"}\n  - name: b\n    pattern: /b*\n    ttl: 5\n    warming: {enabled: true, schedule: \"*/5 * * * *\"}\nwarming:\n  urls:\n    - url: /a\n    - url: /b\n    - url: /b2\n      schedule: \"0 * * * *\"\n",
    )
    .unwrap();
    let w = warmer(&config, Arc::new(FakeFetcher::default()));
    let targets = w.targets();
    let schedules: Vec<(&str, Option<&str>)> = targets
        .iter()
        .map(|t| (t.url.as_str(), t.schedule.as_deref()))
        .collect();
    assert_eq!(
        schedules,
        [
            ("/a", None),
            ("/b", Some("*/5 * * * *")),
            ("/b2", Some("0 * * * *"))
        ]
    );
}

#[test]
fn backoff_doubles_with_jitter_and_is_capped() {
    for attempt in 1..20 {
        let base = Duration::from_millis(200)
            .saturating_mul(1 << attempt.min(16))
            .min(Duration::from_secs(10));
        let d = backoff(attempt, "/x");
        assert!(d >= base / 2 && d < base.mul_f64(1.5), "{attempt}: {d:?}");
    }
}
