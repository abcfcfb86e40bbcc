//! The settings a cache runs on: built from a config or from settings
//! compiled already, and replaced while requests run, each request keeping
//! the settings it began with.

use std::sync::Arc;

use bytes::Bytes;
use uip_cache_core::{
    After, Begin, CacheConfig, CachePlan, HttpCache, Plan, RequestView, Settings,
};

const HOST: [(&str, &str); 1] = [("host", "api.example")];

fn settings(yaml: &str) -> Arc<Settings> {
    Arc::new(Settings::compile(&CacheConfig::from_yaml_str(yaml).unwrap()).unwrap())
}

fn items(cache_status: &str, hit_for_miss: u64) -> Arc<Settings> {
    settings(&format!(
        "defaults:\n  cache_status: {cache_status}\n  hit_for_miss: {hit_for_miss}\npolicies:\n  - name: items\n    pattern: /items\n    ttl: 60\n"
    ))
}

fn req() -> RequestView<'static> {
    RequestView::new("GET", "/items", &HOST).authority(Some("api.example"))
}

fn plan(cache: &HttpCache) -> CachePlan {
    match cache.plan(&req()) {
        Plan::Cache(plan) => plan,
        other => unreachable!("the policy matches: {other:?}"),
    }
}

/// A miss answered by the origin with `cache_control`, its body read to
/// the end.
async fn fetch(cache: &HttpCache, cache_control: &str) {
    let Begin::Fetch(ticket) = cache.begin(plan(cache), &req(), Vec::new).await else {
        unreachable!("nothing fresh is stored")
    };
    let headers = vec![
        ("content-length".into(), Bytes::from_static(b"2")),
        (
            "cache-control".into(),
            Bytes::from(cache_control.to_owned()),
        ),
    ];
    match ticket.origin_responded(200, headers).await {
        After::Record { mut recording, .. } => {
            recording.chunk(&Bytes::from_static(b"[]"));
            recording.ended();
        }
        After::Pass(_) => {}
        other => unreachable!("{other:?}"),
    }
}

/// The `Cache-Status` of a hit for `plan`.
async fn hit_status(cache: &HttpCache, plan: CachePlan) -> String {
    let Begin::Respond(r) = cache.begin(plan, &req(), Vec::new).await else {
        unreachable!("the entry is fresh")
    };
    let (_, v) = r
        .headers
        .iter()
        .find(|(n, _)| n == "cache-status")
        .expect("Cache-Status is on");
    String::from_utf8(v.to_vec()).unwrap()
}

#[test]
fn a_cache_built_from_settings_runs_on_them_and_one_built_from_a_config_compiles_its_own() {
    let shared = items("edge", 0);
    let a = HttpCache::from_settings(shared.clone()).build().unwrap();
    let b = HttpCache::from_settings(shared.clone()).build().unwrap();
    assert!(Arc::ptr_eq(&a.settings(), &shared));
    assert!(Arc::ptr_eq(&a.settings(), &b.settings()));

    let config = shared.config().clone();
    let c = HttpCache::builder(&config).build().unwrap();
    assert!(!Arc::ptr_eq(&c.settings(), &shared));
    assert_eq!(c.settings().cache_status_name(), Some("edge"));
}

#[test]
fn a_config_whose_cross_section_checks_fail_builds_no_cache() {
    // Not loaded through from_yaml_str, which would refuse it first.
    let mut config = CacheConfig::default();
    config.server.trusted_proxies = vec!["10.1.0.0/8".to_owned().into()];
    let err = HttpCache::builder(&config).build().unwrap_err();
    assert_eq!(err.problems()[0].path, "server.trusted_proxies[0]");
}

#[tokio::test]
async fn a_request_keeps_the_settings_it_began_with_when_they_are_replaced() {
    let cache = HttpCache::from_settings(items("before", 0))
        .build()
        .unwrap();
    fetch(&cache, "max-age=60").await;
    cache.stats().wait_for_sets(1).await;

    let planned_before = plan(&cache);
    let old = cache.replace_settings(items("after", 0));
    assert_eq!(old.cache_status_name(), Some("before"));
    assert_eq!(cache.settings().cache_status_name(), Some("after"));

    let status = hit_status(&cache, planned_before).await;
    assert!(status.starts_with("before;"), "{status}");
    let status = hit_status(&cache, plan(&cache)).await;
    assert!(status.starts_with("after;"), "{status}");
}

/// The per-policy counters of a snapshot, by name.
fn counted(cache: &HttpCache) -> Vec<(String, u64, u64)> {
    cache
        .stats()
        .snapshot()
        .policies
        .iter()
        .map(|p| (p.name.clone(), p.hits, p.misses))
        .collect()
}

#[tokio::test]
async fn settings_with_other_policies_keep_the_counters_of_the_policies_they_keep() {
    let cache = HttpCache::from_settings(settings(
        "policies:\n  - name: old\n    pattern: /old\n    ttl: 60\n  - name: items\n    pattern: /items\n    ttl: 60\n",
    ))
    .build()
    .unwrap();
    fetch(&cache, "max-age=60").await;
    cache.stats().wait_for_sets(1).await;
    let planned_before = plan(&cache);
    assert_eq!(
        counted(&cache),
        [
            ("old".to_owned(), 0, 0),
            ("items".to_owned(), 0, 1),
            ("(unmatched)".to_owned(), 0, 0)
        ]
    );

    // `items` moves to the second place, `old` goes, `new` comes first.
    let old = cache.replace_settings(settings(
        "policies:\n  - name: new\n    pattern: /new\n    ttl: 60\n  - name: items\n    pattern: /items\n    ttl: 60\n  - name: last\n    pattern: /last\n    ttl: 60\n",
    ));
    assert_eq!(old.policies().len(), 2);
    // A hit planned on the old list and one planned on the new: both
    // count for `items`, by name.
    hit_status(&cache, planned_before).await;
    hit_status(&cache, plan(&cache)).await;
    assert_eq!(
        counted(&cache),
        [
            ("new".to_owned(), 0, 0),
            ("items".to_owned(), 2, 1),
            ("last".to_owned(), 0, 0),
            ("(unmatched)".to_owned(), 0, 0)
        ]
    );
    assert_eq!(cache.stats().snapshot().hits, 2);
}

#[tokio::test]
async fn a_pinned_handle_reads_the_settings_it_was_pinned_to() {
    let cache = HttpCache::from_settings(items("before", 0))
        .build()
        .unwrap();
    let pinned = cache.pinned(cache.settings());
    cache.replace_settings(items("after", 0));
    assert_eq!(pinned.settings().cache_status_name(), Some("before"));
    assert_eq!(cache.settings().cache_status_name(), Some("after"));
    // The same cache: what one stores, the other finds.
    fetch(&pinned, "max-age=60").await;
    cache.stats().wait_for_sets(1).await;
    let status = hit_status(&cache, plan(&cache)).await;
    assert!(status.starts_with("after;"), "{status}");
}

#[tokio::test]
async fn hit_for_miss_follows_the_window_of_the_settings_it_runs_on() {
    let cache = HttpCache::from_settings(items("edge", 0)).build().unwrap();
    fetch(&cache, "no-store").await;
    fetch(&cache, "no-store").await;
    assert_eq!(cache.stats().snapshot().hit_for_miss, 0, "off");

    cache.replace_settings(items("edge", 10));
    fetch(&cache, "no-store").await;
    fetch(&cache, "no-store").await;
    assert_eq!(
        cache.stats().snapshot().hit_for_miss,
        1,
        "on: the key is marked, and its next request goes to the origin at once"
    );
}

#[tokio::test]
async fn a_mark_made_across_a_swap_lasts_the_window_of_the_table_it_goes_into() {
    let clock = uip_cache_core::clock::MockClock::new();
    let cache = HttpCache::from_settings(items("edge", 10))
        .clock(clock.clone())
        .build()
        .unwrap();
    // Planned under a 10 s window, answered after a swap to 100 s.
    let before = plan(&cache);
    cache.replace_settings(items("edge", 100));
    let Begin::Fetch(ticket) = cache.begin(before, &req(), Vec::new).await else {
        unreachable!("nothing is stored")
    };
    let headers = vec![
        ("content-length".into(), Bytes::from_static(b"2")),
        ("cache-control".into(), Bytes::from_static(b"no-store")),
    ];
    assert!(matches!(
        ticket.origin_responded(200, headers).await,
        After::Pass(_)
    ));
    // Past the old window, within the new one: still marked.
    clock.advance(std::time::Duration::from_secs(50));
    fetch(&cache, "no-store").await;
    assert_eq!(cache.stats().snapshot().hit_for_miss, 1);
}
