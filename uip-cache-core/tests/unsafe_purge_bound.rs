//! A flood of writes against a store that does not answer: the purges after
//! unsafe requests run in tasks of their own only up to a bound; past it the
//! writer waits for its own purge instead of leaving one more task behind.

use std::sync::Arc;
use std::time::Duration;

use uip_cache_core::{CacheConfig, HttpCache, RequestView};
use uip_cache_testkit::FailingStore;

const YAML: &str =
    "store:\n  purge_timeout: 1h\npolicies:\n  - name: w\n    pattern: \"/w\"\n    ttl: 60\n";

#[tokio::test(start_paused = true)]
async fn past_the_bound_a_writer_waits_for_its_own_purge() {
    let config = CacheConfig::from_yaml_str(YAML).unwrap();
    let cache = HttpCache::new(&config, Arc::new(FailingStore::hanging())).unwrap();
    let headers = [("host", "a.example")];
    let view = RequestView::new("POST", "/w", &headers).authority(Some("a.example"));
    let req = cache
        .unsafe_request(&view)
        .expect("a POST to a cached path");

    // Within the bound each write answers after the request path's store
    // timeout, its purge going on in a task.
    for _ in 0..256 {
        let quick = tokio::time::timeout(
            Duration::from_secs(1),
            cache.invalidate_after_unsafe(&req, 200, &[]),
        )
        .await;
        assert!(quick.is_ok(), "a write within the bound answers at once");
    }
    // Past it, the write waits for its purge (the store hangs: up to
    // store.purge_timeout, an hour here), instead of spawning one more task.
    let waited = tokio::time::timeout(
        Duration::from_secs(1),
        cache.invalidate_after_unsafe(&req, 200, &[]),
    )
    .await;
    assert!(waited.is_err(), "past the bound the writer waits");
    // Once the tasks in flight have given up, writes answer at once again.
    tokio::time::sleep(Duration::from_secs(3 * 3600)).await;
    let again = tokio::time::timeout(
        Duration::from_secs(1),
        cache.invalidate_after_unsafe(&req, 200, &[]),
    )
    .await;
    assert!(again.is_ok(), "the bound frees up when purges end");
}
