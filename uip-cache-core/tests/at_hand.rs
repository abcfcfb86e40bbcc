//! A miss found at hand in a store whose `get_now` sees all it holds (the
//! memory store) is not looked up a second time by `begin`, and an entry
//! written between the two is still found.

use bytes::Bytes;
use uip_cache_core::{
    After, AtHandOrLater, Begin, CacheConfig, HttpCache, LaterAnswer, Plan, RequestView,
};

use crate::owned;

/// A cache on the memory store, caching `pattern`.
fn cache(pattern: &str) -> HttpCache {
    let yaml = format!("policies:\n  - name: items\n    pattern: \"{pattern}\"\n");
    HttpCache::with_memory_store(&CacheConfig::from_yaml_str(&yaml).unwrap()).unwrap()
}

/// A miss of `req` through the protocol, stored with `body`.
async fn store(cache: &HttpCache, req: &RequestView<'_>, body: &'static [u8]) {
    let Plan::Cache(plan) = cache.plan(req) else {
        panic!("cached")
    };
    let Begin::Fetch(ticket) = cache.begin(plan, req, Vec::new).await else {
        panic!("a miss")
    };
    let len = body.len().to_string();
    let origin = [("cache-control", "max-age=60"), ("content-length", &len)];
    let After::Record { mut recording, .. } = ticket.origin_responded(200, owned(&origin)).await
    else {
        panic!("recorded")
    };
    recording.chunk(&Bytes::from_static(body));
    recording.ended();
}

#[tokio::test]
async fn an_entry_written_after_a_miss_at_hand_answers_the_request() {
    let cache = cache("/items");
    let none: [(&str, &str); 0] = [];
    let req = RequestView::new("GET", "/items", &none);
    let Plan::Cache(mut plan) = cache.plan(&req) else {
        panic!("cached")
    };
    assert!(
        cache.answer_now(&mut plan, &req).is_none(),
        "nothing at hand"
    );
    // Another request stores the entry meanwhile.
    store(&cache, &req, b"body").await;
    uip_cache_testkit::wait_until(&cache, "the entry stored", |s| s.sets >= 1).await;
    // The request that found nothing at hand sees that a write landed
    // since it asked, looks again and is answered: not sent to the origin.
    match cache.begin(plan, &req, Vec::new).await {
        Begin::Respond(r) => assert_eq!(r.status, 200),
        other => panic!("answered from the entry, not {other:?}"),
    }
}

#[tokio::test]
async fn a_miss_at_hand_is_counted_as_the_lookup_it_spares() {
    let cache = cache("/items/*");
    let ops = || cache.stats().snapshot().store_latency.count;
    let none: [(&str, &str); 0] = [];
    // A miss through `begin` alone.
    let req = RequestView::new("GET", "/items/a", &none);
    let Plan::Cache(plan) = cache.plan(&req) else {
        panic!("cached")
    };
    let before = ops();
    let Begin::Fetch(_) = cache.begin(plan, &req, Vec::new).await else {
        panic!("a miss")
    };
    let alone = ops() - before;
    // The same miss asked at hand first.
    let req = RequestView::new("GET", "/items/b", &none);
    let Plan::Cache(mut plan) = cache.plan(&req) else {
        panic!("cached")
    };
    let before = ops();
    assert!(cache.answer_now(&mut plan, &req).is_none());
    assert_eq!(
        ops(),
        before,
        "nothing counted while the request may yet go to another path"
    );
    let Begin::Fetch(_) = cache.begin(plan, &req, Vec::new).await else {
        panic!("a miss")
    };
    assert_eq!(ops() - before, alone, "counted as the lookup it spares");
}

/// A memory store with nothing at hand, as Redis.
#[derive(Debug)]
struct Remote(uip_cache_core::store::MemoryStore);

delegate_storage_and_status!(Remote);

impl uip_cache_core::store::Coordination for Remote {}

/// A cache caching `pattern` for `ttl` seconds on a [`Remote`] store.
fn remote(pattern: &str, ttl: u32) -> HttpCache {
    let yaml = format!("policies:\n  - name: items\n    pattern: \"{pattern}\"\n    ttl: {ttl}\n");
    HttpCache::builder(&CacheConfig::from_yaml_str(&yaml).unwrap())
        .store(std::sync::Arc::new(Remote(
            uip_cache_core::store::MemoryStore::new(1 << 20),
        )))
        .build()
        .unwrap()
}

#[tokio::test]
async fn a_store_with_nothing_at_hand_is_asked_later_and_a_memory_store_is_not() {
    let none: [(&str, &str); 0] = [];
    let req = RequestView::new("GET", "/items", &none);
    // All a memory store holds is at hand: its absence is an answer.
    assert!(matches!(
        cache("/items").answer_at_hand_or_later(&req),
        AtHandOrLater::No
    ));
    let cache = remote("/items", 60);
    let AtHandOrLater::Later(later) = cache.answer_at_hand_or_later(&req) else {
        panic!("asked later")
    };
    // Nothing stored: no answer, and no request counted.
    assert!(matches!(
        cache.answer_later(later, &req).await,
        LaterAnswer::Absent(_)
    ));
    let s = cache.stats().snapshot();
    assert_eq!((s.hits, s.misses, s.answered_at_hand), (0, 0, 0));
    store(&cache, &req, b"body").await;
    uip_cache_testkit::wait_until(&cache, "the entry stored", |s| s.sets >= 1).await;
    let AtHandOrLater::Later(later) = cache.answer_at_hand_or_later(&req) else {
        panic!("still not at hand")
    };
    let LaterAnswer::Answer(answer) = cache.answer_later(later, &req).await else {
        panic!("a hit")
    };
    assert_eq!(answer.status, 200);
    assert_eq!(
        answer.body.into_bytes().ok().unwrap(),
        Bytes::from_static(b"body")
    );
    let s = cache.stats().snapshot();
    assert_eq!((s.hits, s.misses, s.answered_at_hand), (1, 1, 1));
    // A path no policy takes: a pass, counted only once its ticket is
    // taken (by a front end that sends it itself).
    let other = RequestView::new("GET", "/elsewhere", &none);
    let AtHandOrLater::Pass(pass) = cache.answer_at_hand_or_later(&other) else {
        panic!("a pass")
    };
    assert_eq!(pass.reason(), uip_cache_core::NoCacheReason::NoPolicy);
    assert_eq!(cache.stats().snapshot().bypasses, 0);
    let _ticket = pass.ticket(&other);
    assert_eq!(cache.stats().snapshot().bypasses, 1);
    assert!(cache.answer_at_hand(&other).is_none());
    assert_eq!(
        cache.stats().snapshot().bypasses,
        1,
        "answer_at_hand counts none"
    );
    // A request that bypasses a policy: nothing to ask.
    let no_store = [("cache-control", "no-store")];
    let bypass = RequestView::new("GET", "/items", &no_store);
    assert!(matches!(
        cache.answer_at_hand_or_later(&bypass),
        AtHandOrLater::No
    ));
}

#[tokio::test]
async fn a_stale_entry_found_later_is_left_to_the_usual_path() {
    let clock = uip_cache_core::clock::MockClock::new();
    let yaml = "policies:\n  - name: items\n    pattern: \"/items\"\n    ttl: 60\n";
    let cache = HttpCache::builder(&CacheConfig::from_yaml_str(yaml).unwrap())
        .store(std::sync::Arc::new(Remote(
            uip_cache_core::store::MemoryStore::new(1 << 20),
        )))
        .clock(clock.clone())
        .build()
        .unwrap();
    let none: [(&str, &str); 0] = [];
    let req = RequestView::new("GET", "/items", &none);
    store(&cache, &req, b"body").await;
    uip_cache_testkit::wait_until(&cache, "the entry stored", |s| s.sets >= 1).await;
    clock.advance(std::time::Duration::from_secs(61));
    let AtHandOrLater::Later(later) = cache.answer_at_hand_or_later(&req) else {
        panic!("asked later")
    };
    assert!(
        matches!(cache.answer_later(later, &req).await, LaterAnswer::Other),
        "stale: the usual path revalidates"
    );
    let s = cache.stats().snapshot();
    assert_eq!((s.hits, s.answered_at_hand), (0, 0));
}

#[tokio::test]
async fn the_usual_path_takes_a_later_lookup_that_found_nothing_for_its_own() {
    let none: [(&str, &str); 0] = [];
    let ops = |cache: &HttpCache| cache.stats().snapshot().store_latency.count;
    let mut calls = Vec::new();
    for path in ["/items", "/items?other"] {
        let cache = remote("/items*", 60);
        let asked = RequestView::new("GET", "/items", &none);
        let AtHandOrLater::Later(later) = cache.answer_at_hand_or_later(&asked) else {
            panic!("asked later")
        };
        let LaterAnswer::Absent(looked) = cache.answer_later(later, &asked).await else {
            panic!("nothing stored")
        };
        assert_eq!(ops(&cache), 1);
        // The usual path, for the same request (or, to check the key is
        // compared, another).
        let (p, q) = path
            .split_once('?')
            .map_or((path, None), |(p, q)| (p, Some(q)));
        let req = RequestView::new("GET", p, &none).query(q);
        let Plan::Cache(mut plan) = cache.plan(&req) else {
            panic!("cached")
        };
        assert!(cache.answer_now(&mut plan, &req).is_none());
        cache.note_looked(&mut plan, looked);
        let Begin::Fetch(_) = cache.begin(plan, &req, Vec::new).await else {
            panic!("a miss")
        };
        calls.push(ops(&cache));
    }
    // The same request's miss asks the store once less (its coalescing
    // lease and the shared invalidation counter are store calls too).
    assert_eq!(calls[0] + 1, calls[1], "{calls:?}");
}

#[tokio::test]
async fn an_entry_written_after_a_later_lookup_found_nothing_answers_the_request() {
    let cache = remote("/items", 60);
    let none: [(&str, &str); 0] = [];
    let req = RequestView::new("GET", "/items", &none);
    let AtHandOrLater::Later(later) = cache.answer_at_hand_or_later(&req) else {
        panic!("asked later")
    };
    let LaterAnswer::Absent(looked) = cache.answer_later(later, &req).await else {
        panic!("nothing stored")
    };
    // Another request stores the entry meanwhile.
    store(&cache, &req, b"body").await;
    uip_cache_testkit::wait_until(&cache, "the entry stored", |s| s.sets >= 1).await;
    let Plan::Cache(mut plan) = cache.plan(&req) else {
        panic!("cached")
    };
    assert!(cache.answer_now(&mut plan, &req).is_none());
    cache.note_looked(&mut plan, looked);
    // A write landed since the lookup: `begin` looks again and answers.
    match cache.begin(plan, &req, Vec::new).await {
        Begin::Respond(r) => assert_eq!(r.status, 200),
        other => panic!("answered from the entry, not {other:?}"),
    }
}

#[tokio::test]
async fn a_lookup_of_another_cache_is_not_taken() {
    let none: [(&str, &str); 0] = [];
    let req = RequestView::new("GET", "/items", &none);
    let (one, other) = (remote("/items", 60), remote("/items", 60));
    let ops = |cache: &HttpCache| cache.stats().snapshot().store_latency.count;
    let AtHandOrLater::Later(later) = one.answer_at_hand_or_later(&req) else {
        panic!("asked later")
    };
    let LaterAnswer::Absent(looked) = one.answer_later(later, &req).await else {
        panic!("nothing stored")
    };
    // The same key in another cache (its own writes, its own store): it
    // asks its store itself.
    let mut counts = Vec::new();
    for (cache, looked) in [(&other, Some(looked.clone())), (&other, None)] {
        let before = ops(cache);
        let Plan::Cache(mut plan) = cache.plan(&req) else {
            panic!("cached")
        };
        assert!(cache.answer_now(&mut plan, &req).is_none());
        if let Some(looked) = looked {
            cache.note_looked(&mut plan, looked);
        }
        let Begin::Fetch(_) = cache.begin(plan, &req, Vec::new).await else {
            panic!("a miss")
        };
        counts.push(ops(cache) - before);
    }
    assert_eq!(counts[0], counts[1], "noted or not, the same store calls");
}
