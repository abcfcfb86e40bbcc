//! The Tower layer's behaviour, each case counting origin calls; the origin
//! streams its bodies without a length. What every adapter does alike runs
//! through both adapters in the behaviour suite (`tests/tests/behaviour/`).

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use uip_cache_testkit::tower::{cached, get, ok, req, send};
use uip_cache_testkit::{wait_for_sets, Origin, Reply};

const BASIC: &str = "policies:\n  - name: items\n    pattern: \"/items*\"\n    ttl: 60\n";

#[tokio::test]
async fn fresh_hits_skip_the_origin_with_x_cache_and_age() {
    let origin = Origin::always(
        Reply::ok("[1,2,3]")
            .header("content-type", "application/json")
            .header("age", "10"),
    )
    .chunked();
    let mut svc = cached(BASIC, &origin);
    let first = ok(&mut svc, get("/items?a=1")).await;
    assert_eq!(
        (first.status, first.x_cache(), &first.body[..]),
        (200, "MISS", &b"[1,2,3]"[..])
    );
    let second = ok(&mut svc, get("/items?a=1")).await;
    assert_eq!(
        (second.x_cache(), &second.body[..]),
        ("HIT", &b"[1,2,3]"[..])
    );
    assert_eq!(second.header("content-type"), Some("application/json"));
    assert_eq!(second.header("content-length"), Some("7"));
    let age: u64 = second.header("age").unwrap().parse().unwrap();
    assert!(
        (10..15).contains(&age),
        "age counts the upstream Age: {age}"
    );
    assert_eq!(origin.calls(), 1);
    // A different query is a different entry; unmatched paths bypass.
    assert_eq!(ok(&mut svc, get("/items?a=2")).await.x_cache(), "MISS");
    assert_eq!(ok(&mut svc, get("/other")).await.x_cache(), "BYPASS");
    assert_eq!(ok(&mut svc, get("/other")).await.x_cache(), "BYPASS");
    assert_eq!(origin.calls(), 4);
    wait_for_sets(svc.cache(), 2).await;
    let s = svc.cache().stats().snapshot();
    assert_eq!((s.hits, s.misses, s.bypasses, s.sets), (1, 2, 2, 2));
}

#[tokio::test]
async fn a_hit_in_memory_is_answered_at_once_and_counted_once() {
    let origin = Origin::always(Reply::ok("[1]").header("cache-control", "max-age=60")).chunked();
    let mut svc = cached(BASIC, &origin);
    ok(&mut svc, get("/items")).await;
    wait_for_sets(svc.cache(), 1).await;
    // The memory store has the entry at hand: the response future is ready
    // on its first poll, without the origin service.
    let fut = tower::Service::call(&mut svc, get("/items"));
    let resp = futures_util::FutureExt::now_or_never(fut)
        .expect("a hit in memory needs no waiting")
        .expect("the hit succeeds");
    assert_eq!(resp.headers()["x-cache"], "HIT");
    assert_eq!(resp.headers()["content-length"], "3");
    // A request that must revalidate takes the usual path to the origin.
    let again = ok(
        &mut svc,
        req("GET", "/items", &[("cache-control", "no-cache")]),
    )
    .await;
    assert_eq!(again.x_cache(), "EXPIRED");
    assert_eq!(origin.calls(), 2);
    let s = svc.cache().stats().snapshot();
    assert_eq!((s.hits, s.misses), (1, 2), "each request counted once");
}

#[tokio::test]
async fn head_is_served_from_the_get_entry() {
    let origin = Origin::always(Reply::ok("hello world")).chunked();
    let mut svc = cached(BASIC, &origin);
    ok(&mut svc, get("/items")).await;
    let head = ok(&mut svc, req("HEAD", "/items", &[])).await;
    assert_eq!(head.x_cache(), "HIT");
    assert!(head.body.is_empty());
    assert_eq!(head.header("content-length"), Some("11"));
    assert_eq!(origin.calls(), 1);
}

#[tokio::test]
async fn responses_that_must_not_be_stored_are_not() {
    type Headers = &'static [(&'static str, &'static str)];
    let cases: Vec<(Reply, Headers, &str)> = vec![
        (
            Reply::ok("x").header("cache-control", "no-store"),
            &[],
            "response_no_store",
        ),
        (
            Reply::ok("x").header("cache-control", "private"),
            &[],
            "private",
        ),
        (
            Reply::ok("x").header("set-cookie", "session=1"),
            &[],
            "set_cookie",
        ),
        (
            Reply::ok("x"),
            &[("authorization", "Bearer t")],
            "authorization",
        ),
        (Reply::ok("x").header("vary", "*"), &[], "vary_star"),
        (Reply::ok("x").status(206), &[], "status"),
        (Reply::ok("x").status(500), &[], "status"),
    ];
    for (reply, headers, reason) in cases {
        let origin = Origin::always(reply).chunked();
        let mut svc = cached(BASIC, &origin);
        for _ in 0..2 {
            let got = ok(&mut svc, req("GET", "/items", headers)).await;
            assert_eq!(got.x_cache(), "MISS", "{reason}");
        }
        assert_eq!(origin.calls(), 2, "{reason}");
        let snap = svc.cache().stats().snapshot();
        assert_eq!(
            snap.uncacheable.get(reason),
            Some(&2),
            "{reason}: {:?}",
            snap.uncacheable
        );
    }
    // Authorization is fine when the origin says the response is shared.
    let origin =
        Origin::always(Reply::ok("x").header("cache-control", "public, max-age=60")).chunked();
    let mut svc = cached(BASIC, &origin);
    ok(&mut svc, req("GET", "/items", &[("authorization", "a")])).await;
    assert_eq!(
        ok(&mut svc, req("GET", "/items", &[("authorization", "b")]))
            .await
            .x_cache(),
        "HIT"
    );
}

#[tokio::test]
async fn request_directives() {
    let origin = Origin::always(Reply::ok("x")).chunked();
    let mut svc = cached(BASIC, &origin);
    // only-if-cached with nothing stored: 504, origin untouched.
    let got = ok(
        &mut svc,
        req("GET", "/items", &[("cache-control", "only-if-cached")]),
    )
    .await;
    assert_eq!(got.status, 504);
    assert_eq!(origin.calls(), 0);
    ok(&mut svc, get("/items")).await;
    for cc in ["no-cache", "max-age=0"] {
        let got = ok(&mut svc, req("GET", "/items", &[("cache-control", cc)])).await;
        assert_eq!(got.x_cache(), "EXPIRED", "{cc} goes to the origin");
    }
    let got = ok(&mut svc, req("GET", "/items", &[("pragma", "no-cache")])).await;
    assert_eq!(
        got.x_cache(),
        "EXPIRED",
        "Pragma: no-cache without Cache-Control"
    );
    assert_eq!(origin.calls(), 4);
    let got = ok(
        &mut svc,
        req("GET", "/items", &[("cache-control", "no-store")]),
    )
    .await;
    assert_eq!(got.x_cache(), "BYPASS");
    let got = ok(
        &mut svc,
        req("GET", "/items", &[("cache-control", "only-if-cached")]),
    )
    .await;
    assert_eq!(got.x_cache(), "HIT");
}

#[tokio::test]
async fn max_stale_and_min_fresh() {
    // 40 seconds stale on arrival (max-age 60, Age 100).
    let origin = Origin::always(
        Reply::ok("x")
            .header("cache-control", "max-age=60")
            .header("age", "100"),
    )
    .chunked();
    let mut svc = cached(BASIC, &origin);
    ok(&mut svc, get("/items")).await;
    let got = ok(
        &mut svc,
        req("GET", "/items", &[("cache-control", "max-stale=100")]),
    )
    .await;
    assert_eq!(got.x_cache(), "STALE");
    assert_eq!(origin.calls(), 1);
    let got = ok(
        &mut svc,
        req("GET", "/items", &[("cache-control", "max-stale=10")]),
    )
    .await;
    assert_eq!(got.x_cache(), "EXPIRED");
    assert_eq!(origin.calls(), 2);
}

#[tokio::test]
async fn ttl_modes() {
    let origin = Origin::always(Reply::ok("x").header("cache-control", "max-age=0")).chunked();
    let mut svc = cached(BASIC, &origin);
    ok(&mut svc, get("/items")).await;
    assert_eq!(
        ok(&mut svc, get("/items")).await.x_cache(),
        "MISS",
        "origin max-age=0 wins by default"
    );
    let mut svc = cached(&format!("{BASIC}    ttl_mode: override\n"), &origin);
    ok(&mut svc, get("/items")).await;
    assert_eq!(
        ok(&mut svc, get("/items")).await.x_cache(),
        "HIT",
        "override keeps the policy ttl"
    );
    // Without a policy ttl only what the origin marks fresh is stored.
    let origin = Origin::always(Reply::ok("x")).chunked();
    let mut svc = cached("policies:\n  - name: p\n    pattern: /items\n", &origin);
    ok(&mut svc, get("/items")).await;
    assert_eq!(ok(&mut svc, get("/items")).await.x_cache(), "MISS");
    assert_eq!(
        svc.cache()
            .stats()
            .snapshot()
            .uncacheable
            .get("no_freshness"),
        Some(&2)
    );
}

#[tokio::test]
async fn hop_by_hop_headers_are_not_replayed() {
    let origin = Origin::always(
        Reply::ok("x")
            .header("connection", "x-hop")
            .header("x-hop", "1")
            .header("keep-alive", "timeout=5")
            .header("x-end-to-end", "kept"),
    )
    .chunked();
    let mut svc = cached(BASIC, &origin);
    ok(&mut svc, get("/items")).await;
    let hit = ok(&mut svc, get("/items")).await;
    assert_eq!(hit.x_cache(), "HIT");
    assert_eq!(hit.header("x-end-to-end"), Some("kept"));
    for h in ["connection", "x-hop", "keep-alive"] {
        assert_eq!(hit.header(h), None, "{h}");
    }
}

#[tokio::test]
async fn conditional_requests_get_304_from_fresh_entries() {
    let lm = "Tue, 01 Sep 2026 10:00:00 GMT";
    let origin = Origin::always(
        Reply::ok("body")
            .header("etag", "\"v1\"")
            .header("last-modified", lm),
    )
    .chunked();
    let mut svc = cached(BASIC, &origin);
    // The client's conditional on a miss still yields a full, storable response.
    let first = ok(
        &mut svc,
        req("GET", "/items", &[("if-none-match", "\"v1\"")]),
    )
    .await;
    assert_eq!(first.status, 200);
    assert!(
        origin
            .last_seen()
            .unwrap()
            .header("if-none-match")
            .is_none(),
        "client validators are not forwarded on a miss"
    );
    let got = ok(
        &mut svc,
        req("GET", "/items", &[("if-none-match", "\"v1\"")]),
    )
    .await;
    assert_eq!((got.status, got.x_cache()), (304, "HIT"));
    assert!(got.body.is_empty());
    assert_eq!(got.header("etag"), Some("\"v1\""));
    let got = ok(
        &mut svc,
        req("GET", "/items", &[("if-none-match", "\"v2\"")]),
    )
    .await;
    assert_eq!(got.status, 200);
    let got = ok(
        &mut svc,
        req(
            "GET",
            "/items",
            &[("if-modified-since", "Wed, 02 Sep 2026 10:00:00 GMT")],
        ),
    )
    .await;
    assert_eq!(got.status, 304);
    let got = ok(
        &mut svc,
        req(
            "GET",
            "/items",
            &[("if-modified-since", "Mon, 31 Aug 2026 10:00:00 GMT")],
        ),
    )
    .await;
    assert_eq!(got.status, 200);
    assert_eq!(origin.calls(), 1);
}

#[tokio::test]
async fn stale_entries_are_revalidated_and_updated_on_304() {
    let origin = Origin::new(|s, n| {
        if n == 0 {
            // Stale on arrival; a validator makes it worth keeping.
            Reply::ok("original")
                .header("etag", "\"v1\"")
                .header("cache-control", "max-age=60")
                .header("age", "100")
        } else {
            assert_eq!(
                s.header("if-none-match").unwrap(),
                "\"v1\"",
                "revalidation sends the stored validator"
            );
            Reply::ok("")
                .status(304)
                .header("cache-control", "max-age=60")
                .header("x-revalidated", "yes")
        }
    })
    .chunked();
    let mut svc = cached(BASIC, &origin);
    assert_eq!(ok(&mut svc, get("/items")).await.x_cache(), "MISS");
    let got = ok(&mut svc, get("/items")).await;
    assert_eq!(
        (got.status, got.x_cache(), &got.body[..]),
        (200, "EXPIRED", &b"original"[..])
    );
    assert_eq!(
        got.header("x-revalidated"),
        Some("yes"),
        "stored headers updated from the 304"
    );
    let got = ok(&mut svc, get("/items")).await;
    assert_eq!(
        (got.x_cache(), &got.body[..]),
        ("HIT", &b"original"[..]),
        "fresh again after the 304"
    );
    assert_eq!(got.header("x-revalidated"), Some("yes"));
    assert_eq!(origin.calls(), 2);
    assert_eq!(svc.cache().stats().snapshot().revalidations, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_thousand_concurrent_misses_make_one_origin_call() {
    let origin = Origin::always(Reply::ok("cold").delay(Duration::from_millis(200))).chunked();
    let svc = cached(BASIC, &origin);
    let mut tasks = Vec::new();
    for _ in 0..1000 {
        let mut svc = svc.clone();
        tasks.push(tokio::spawn(async move {
            ok(&mut svc, get("/items?cold=1")).await
        }));
    }
    let mut outcomes = std::collections::HashMap::new();
    for t in tasks {
        let got = t.await.unwrap();
        assert_eq!(&got.body[..], b"cold");
        *outcomes.entry(got.x_cache().to_owned()).or_insert(0) += 1;
    }
    assert_eq!(origin.calls(), 1, "{outcomes:?}");
    assert_eq!(outcomes.get("MISS"), Some(&1));
    assert_eq!(outcomes.get("HIT"), Some(&999));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn waiters_fetch_themselves_when_the_response_is_uncacheable() {
    let origin = Origin::always(
        Reply::ok("private")
            .header("cache-control", "no-store")
            .delay(Duration::from_millis(100)),
    )
    .chunked();
    let svc = cached(BASIC, &origin);
    let tasks: Vec<_> = (0..10)
        .map(|_| {
            let mut svc = svc.clone();
            tokio::spawn(async move { ok(&mut svc, get("/items")).await })
        })
        .collect();
    for t in tasks {
        assert_eq!(&t.await.unwrap().body[..], b"private");
    }
    assert_eq!(origin.calls(), 10);
}

#[tokio::test(start_paused = true)]
async fn the_lock_timeout_bounds_the_wait() {
    let origin = Origin::always(Reply::ok("slow").delay(Duration::from_secs(30))).chunked();
    let svc = cached(&format!("defaults:\n  lock_timeout: 1s\n{BASIC}"), &origin);
    let (mut a, mut b) = (svc.clone(), svc.clone());
    let leader = tokio::spawn(async move { ok(&mut a, get("/items")).await });
    origin.wait_for_calls(1).await;
    let started = tokio::time::Instant::now();
    let follower = tokio::spawn(async move { ok(&mut b, get("/items")).await });
    let got = follower.await.unwrap();
    assert_eq!(got.x_cache(), "MISS");
    // The follower waited 1s, then made its own 30s call.
    assert!(
        started.elapsed() < Duration::from_secs(32),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(origin.calls(), 2);
    leader.await.unwrap();
}

#[tokio::test]
async fn stale_while_revalidate_serves_stale_and_refreshes_once() {
    let origin = Origin::new(|_, n| {
        let r = Reply::ok(&format!("version {n}"))
            .header("cache-control", "max-age=60, stale-while-revalidate=600");
        if n == 0 {
            r.header("age", "100")
        } else {
            r
        }
    })
    .chunked();
    let mut svc = cached(BASIC, &origin);
    ok(&mut svc, get("/items")).await;
    let got = ok(&mut svc, get("/items")).await;
    assert_eq!((got.x_cache(), &got.body[..]), ("STALE", &b"version 0"[..]));
    // The background refresh runs once, then the new version is served fresh.
    wait_for_sets(svc.cache(), 2).await;
    let got = ok(&mut svc, get("/items")).await;
    assert_eq!((got.x_cache(), &got.body[..]), ("HIT", &b"version 1"[..]));
    assert_eq!(origin.calls(), 2);
}

#[tokio::test]
async fn stale_while_revalidate_from_the_policy() {
    let origin = Origin::new(|_, n| {
        Reply::ok(&format!("v{n}"))
            .header("cache-control", "max-age=60")
            .header("age", "70")
    })
    .chunked();
    let mut svc = cached(&format!("{BASIC}    stale_while_revalidate: 30\n"), &origin);
    ok(&mut svc, get("/items")).await;
    assert_eq!(ok(&mut svc, get("/items")).await.x_cache(), "STALE");
}

#[tokio::test]
async fn stale_if_error_covers_origin_errors_and_5xx() {
    let origin = Origin::new(|_, n| match n {
        0 => Reply::ok("good")
            .header("cache-control", "max-age=60, stale-if-error=600")
            .header("age", "100"),
        1 => Reply::ok("broken").status(503),
        _ => Reply::error(),
    })
    .chunked();
    let mut svc = cached(BASIC, &origin);
    ok(&mut svc, get("/items")).await;
    let got = ok(&mut svc, get("/items")).await;
    assert_eq!(
        (got.status, got.x_cache(), &got.body[..]),
        (200, "STALE", &b"good"[..])
    );
    let got = ok(&mut svc, get("/items")).await;
    assert_eq!(
        (got.status, got.x_cache(), &got.body[..]),
        (200, "STALE", &b"good"[..])
    );
    assert_eq!(origin.calls(), 3);
    assert_eq!(svc.cache().stats().snapshot().stale_hits, 2);

    // Without the window a 5xx passes through and an origin error is an error.
    let origin = Origin::new(|_, n| match n {
        0 => Reply::ok("good")
            .header("cache-control", "max-age=60")
            .header("age", "100"),
        1 => Reply::ok("broken").status(503),
        _ => Reply::error(),
    })
    .chunked();
    let mut svc = cached(BASIC, &origin);
    ok(&mut svc, get("/items")).await;
    assert_eq!(ok(&mut svc, get("/items")).await.status, 503);
    assert!(send(&mut svc, get("/items")).await.is_err());
    // The policy's stale_if_error works the same way.
    let origin = Origin::new(|_, n| match n {
        0 => Reply::ok("good")
            .header("cache-control", "max-age=60")
            .header("age", "100"),
        _ => Reply::error(),
    })
    .chunked();
    let mut svc = cached(&format!("{BASIC}    stale_if_error: 300\n"), &origin);
    ok(&mut svc, get("/items")).await;
    assert_eq!(ok(&mut svc, get("/items")).await.x_cache(), "STALE");
}

#[tokio::test]
async fn bodies_past_max_size_stream_through_intact_and_uncached() {
    let chunk: Vec<u8> = (0..1024u32).map(|i| (i % 251) as u8).collect();
    let chunks: Vec<Bytes> = (0..10).map(|_| Bytes::from(chunk.clone())).collect();
    let whole: Vec<u8> = chunks.iter().flat_map(|c| c.iter().copied()).collect();
    let origin = Origin::always(Reply::ok("").chunks(chunks)).chunked();
    let mut svc = cached(&format!("{BASIC}    max_size: 1KB\n"), &origin);
    for _ in 0..2 {
        let got = ok(&mut svc, get("/items")).await;
        assert_eq!(got.x_cache(), "MISS");
        assert_eq!(got.body.len(), 10 * 1024);
        assert_eq!(&got.body[..], &whole[..], "streamed intact");
    }
    assert_eq!(origin.calls(), 2);
    let snap = svc.cache().stats().snapshot();
    assert_eq!(snap.uncacheable.get("too_large"), Some(&2));
    assert_eq!(snap.sets, 0);
    // A declared Content-Length over the limit is not even recorded.
    let origin =
        Origin::always(Reply::ok(&"y".repeat(4096)).header("content-length", "4096")).chunked();
    let mut svc = cached(&format!("{BASIC}    max_size: 1KB\n"), &origin);
    assert_eq!(ok(&mut svc, get("/items")).await.body.len(), 4096);
    assert_eq!(ok(&mut svc, get("/items")).await.x_cache(), "MISS");
}

#[tokio::test]
async fn successful_unsafe_requests_invalidate_their_target() {
    let origin = Origin::new(|s, _| match s.method.as_str() {
        "POST" => Reply::ok("created")
            .status(201)
            .header("location", "/items/7"),
        "DELETE" => Reply::ok("nope").status(403),
        _ => Reply::ok("list"),
    })
    .chunked();
    let mut svc = cached(BASIC, &origin);
    ok(&mut svc, get("/items")).await;
    ok(&mut svc, get("/items/7")).await;
    assert_eq!(ok(&mut svc, get("/items")).await.x_cache(), "HIT");
    // A failed unsafe request changes nothing.
    assert_eq!(
        ok(&mut svc, req("DELETE", "/items", &[])).await.x_cache(),
        "BYPASS"
    );
    assert_eq!(ok(&mut svc, get("/items")).await.x_cache(), "HIT");
    assert_eq!(ok(&mut svc, req("POST", "/items", &[])).await.status, 201);
    assert_eq!(
        ok(&mut svc, get("/items")).await.x_cache(),
        "MISS",
        "target URI invalidated"
    );
    assert_eq!(
        ok(&mut svc, get("/items/7")).await.x_cache(),
        "MISS",
        "Location invalidated"
    );
}

#[tokio::test]
async fn gzip_is_served_to_clients_that_accept_it_and_decoded_for_others() {
    let json = format!(
        "[{}]",
        vec![r#"{"id":"urn:ngsi-ld:Camera:001","type":"Camera"}"#; 100].join(",")
    );
    let origin =
        Origin::always(Reply::ok(&json).header("content-type", "application/json")).chunked();
    let mut svc = cached(
        &format!("{BASIC}    compression: {{min_size: 256}}\n"),
        &origin,
    );
    assert_eq!(ok(&mut svc, get("/items")).await.body, json.as_bytes());
    let gz = ok(
        &mut svc,
        req("GET", "/items", &[("accept-encoding", "gzip, br")]),
    )
    .await;
    assert_eq!(gz.x_cache(), "HIT");
    assert_eq!(gz.header("content-encoding"), Some("gzip"));
    assert!(gz.header("vary").unwrap().contains("accept-encoding"));
    assert!(gz.body.len() < json.len() / 4, "{} bytes", gz.body.len());
    assert_eq!(
        uip_cache_core::compress::gunzip(&gz.body, 1 << 20).unwrap(),
        json.as_bytes()
    );
    let plain = ok(&mut svc, get("/items")).await;
    assert_eq!(plain.header("content-encoding"), None);
    assert_eq!(plain.body, json.as_bytes());
    assert_eq!(
        plain.header("content-length"),
        Some(json.len().to_string().as_str())
    );
    let snap = svc.cache().stats().snapshot();
    assert!(
        snap.compression_ratio > 0.0 && snap.compression_ratio < 0.25,
        "{}",
        snap.compression_ratio
    );
    assert_eq!(origin.calls(), 1);
}

#[tokio::test]
async fn corrupt_bytes_under_a_key_are_a_counted_miss_and_deleted() {
    let origin = Origin::always(Reply::ok("fine")).chunked();
    let mut svc = cached(BASIC, &origin);
    let cache = svc.cache().clone();
    let headers = [("host", "origin.test")];
    let view = uip_cache_core::RequestView::new("GET", "/items", &headers)
        .scheme(Some("http"))
        .authority(Some("origin.test"));
    let uip_cache_core::Plan::Cache(plan) = cache.plan(&view) else {
        panic!("cached path")
    };
    let opts = uip_cache_core::store::PutOptions::new(Duration::from_secs(60), "/items");
    cache
        .store()
        .put(
            plan.key.as_str(),
            Bytes::from_static(b"\x1f\x8bnot an entry"),
            opts,
        )
        .await
        .unwrap();
    let got = ok(&mut svc, get("/items")).await;
    assert_eq!(
        (got.status, got.x_cache(), &got.body[..]),
        (200, "MISS", &b"fine"[..])
    );
    assert_eq!(cache.stats().snapshot().corrupt_entries, 1);
    assert_eq!(
        ok(&mut svc, get("/items")).await.x_cache(),
        "HIT",
        "replaced by a good entry"
    );
}

#[tokio::test]
async fn a_response_fetched_before_an_invalidation_is_not_stored() {
    let slot: Arc<std::sync::OnceLock<uip_cache_core::HttpCache>> = Arc::default();
    let in_origin = slot.clone();
    let origin = Origin::new(move |_, n| {
        if n == 0 {
            // An invalidation lands while this response is on its way.
            let cache = in_origin.get().unwrap().clone();
            tokio::spawn(async move {
                cache
                    .invalidate_tags(&["path:/items".into()])
                    .await
                    .unwrap()
            });
            return Reply::ok("old").delay(Duration::from_millis(50));
        }
        Reply::ok("new")
    })
    .chunked();
    let mut svc = cached(BASIC, &origin);
    slot.set(svc.cache().clone()).unwrap();
    assert_eq!(&ok(&mut svc, get("/items")).await.body[..], b"old");
    let got = ok(&mut svc, get("/items")).await;
    assert_eq!((got.x_cache(), &got.body[..]), ("MISS", &b"new"[..]));
    assert_eq!(
        svc.cache()
            .stats()
            .snapshot()
            .uncacheable
            .get("invalidated"),
        Some(&1)
    );
    assert_eq!(origin.calls(), 2);
}

#[tokio::test]
async fn body_keyed_policies_cache_post_queries_by_their_body() {
    let origin = Origin::always(Reply::ok("result")).chunked();
    let mut svc = cached("policies:\n  - name: q\n    pattern: /sparql\n    ttl: 60\n    methods: [POST]\n    vary_by: [body]\n", &origin);
    let post = |body: &'static str| {
        http::Request::post("/sparql")
            .header("host", "origin.test")
            .body(http_body_util::Full::new(Bytes::from_static(
                body.as_bytes(),
            )))
            .unwrap()
    };
    assert_eq!(ok(&mut svc, post("ASK {}")).await.x_cache(), "MISS");
    assert_eq!(ok(&mut svc, post("ASK {}")).await.x_cache(), "HIT");
    assert_eq!(ok(&mut svc, post("ASK { }")).await.x_cache(), "MISS");
    assert_eq!(origin.calls(), 2);
    assert_eq!(
        svc.cache()
            .stats()
            .snapshot()
            .uncacheable
            .get("body_not_buffered"),
        None
    );
}
