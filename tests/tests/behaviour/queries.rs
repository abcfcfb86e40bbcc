//! POST queries keyed on their body: each body its own entry, a body past
//! `max_body` passed through, and a POST answer never refreshed with a GET.

use bytes::Bytes;
use uip_cache_testkit::harness::{Adapter, Backend, Harness, Kind};
use uip_cache_testkit::Reply;

for_every_adapter_and_store!(post_queries, post_queries_vary_and_stale,);

/// POST queries keyed on their body, at most 1 KB of it.
const QUERIES: &str = "policies:\n  - name: sparql\n    pattern: \"/sparql\"\n    ttl: 60\n    methods: [GET, HEAD, POST]\n    vary_by: [body, \"header:content-type\"]\n    max_body: 1KB\n    tags: [sparql]\n";

async fn post_queries(a: Adapter, b: Backend) {
    // The origin echoes the method and the body it received.
    let Some(h) = Harness::new(a, b, QUERIES, |s, n| {
        Reply::ok(&format!(
            "{} {} #{n}",
            s.method,
            String::from_utf8_lossy(&s.body)
        ))
    })
    .await
    else {
        return;
    };
    let ct = [("content-type", "application/sparql-query")];
    let q1 = Bytes::from_static(b"SELECT * WHERE { ?s ?p ?o } LIMIT 10");
    let q2 = Bytes::from_static(b"SELECT * WHERE { ?s ?p ?o } LIMIT 11");
    let post = |q: &Bytes| h.send_body("POST", "/sparql", &ct, q.clone());

    let got = post(&q1).await;
    assert_eq!(
        (got.x_cache(), &got.body[..]),
        ("MISS", &b"POST SELECT * WHERE { ?s ?p ?o } LIMIT 10 #0"[..]),
        "{a:?}/{b:?}"
    );
    h.wait_for_sets(1).await;
    let got = post(&q1).await;
    assert_eq!(
        (got.x_cache(), &got.body[..]),
        ("HIT", &b"POST SELECT * WHERE { ?s ?p ?o } LIMIT 10 #0"[..])
    );
    assert_eq!(h.calls(), 1, "the same query twice is one origin call");
    // One byte differs: another entry.
    let got = post(&q2).await;
    assert_eq!(
        (got.x_cache(), &got.body[..]),
        ("MISS", &b"POST SELECT * WHERE { ?s ?p ?o } LIMIT 11 #1"[..])
    );
    h.wait_for_sets(2).await;
    assert_eq!(post(&q2).await.x_cache(), "HIT");
    assert_eq!(post(&q1).await.x_cache(), "HIT");
    // A GET to the same URL is not answered by a POST entry.
    let got = h.get("/sparql").await;
    assert_eq!((got.x_cache(), &got.body[..]), ("MISS", &b"GET  #2"[..]));
    h.wait_for_sets(3).await;
    // Over the limit: passed through intact, not cached, counted.
    let big = Bytes::from(
        (0..2000u32)
            .map(|i| b'a' + (i % 26) as u8)
            .collect::<Vec<_>>(),
    );
    for n in [3, 4] {
        let got = post(&big).await;
        let want = format!("POST {} #{n}", String::from_utf8_lossy(&big));
        assert_eq!(
            (got.x_cache(), &got.body[..]),
            ("BYPASS", want.as_bytes()),
            "{a:?}/{b:?}"
        );
    }
    assert_eq!(
        h.cache.stats().snapshot().uncacheable.get("body_too_large"),
        Some(&2)
    );
    // A cached POST query is not a write: the entries are still there.
    assert_eq!(post(&q1).await.x_cache(), "HIT");
    // Invalidation by tag and by URL removes POST entries too.
    assert_eq!(
        h.cache.invalidate_tags(&["sparql".into()]).await.unwrap(),
        3
    );
    assert_eq!(post(&q1).await.x_cache(), "MISS");
    h.wait_for_sets(4).await;
    let exact = uip_cache_core::UrlPattern::exact("/sparql");
    assert_eq!(h.cache.invalidate_pattern(&exact).await.unwrap(), 1);
    assert_eq!(post(&q1).await.x_cache(), "MISS");
    assert_eq!(h.calls(), 7);
}

async fn post_queries_vary_and_stale(a: Adapter, b: Backend) {
    // A POST answer that varies (Vary: Accept) is keyed with its body too,
    // and one served stale is never refreshed with a GET.
    let Some(h) = Harness::new(a, b, QUERIES, |s, n| {
        Reply::ok(&format!(
            "{} {} #{n}",
            s.method,
            String::from_utf8_lossy(&s.body)
        ))
        .header("vary", "Accept")
        .header("cache-control", "max-age=60, stale-while-revalidate=600")
        .header("age", "100")
    })
    .await
    else {
        return;
    };
    let headers = [
        ("content-type", "application/sparql-query"),
        ("accept", "text/csv"),
    ];
    let q = Bytes::from_static(b"ASK { ?s ?p ?o }");
    let post = || h.send_body("POST", "/sparql", &headers, q.clone());
    assert_eq!(post().await.x_cache(), "MISS", "{a:?}/{b:?}");
    h.wait_for_sets(1).await;
    let got = post().await;
    assert_eq!(
        (got.x_cache(), &got.body[..]),
        ("STALE", &b"POST ASK { ?s ?p ?o } #0"[..]),
        "{a:?}/{b:?}"
    );
    // Whatever refreshes it (the Tower layer sends the POST on; actix does
    // not refresh POSTs), the entry holds a POST answer: once the Tower
    // layer's refresh is stored, and while more refreshes run.
    if a.kind == Kind::Tower {
        h.wait_for_sets(2).await;
    }
    for _ in 0..3 {
        let got = post().await;
        assert!(
            got.body.starts_with(b"POST ASK"),
            "{a:?}/{b:?}: {:?}",
            got.body
        );
    }
    // Another body is another entry, even with the same Accept.
    let other = h
        .send_body(
            "POST",
            "/sparql",
            &headers,
            Bytes::from_static(b"ASK { ?s ?p 1 }"),
        )
        .await;
    assert_eq!(other.x_cache(), "MISS");
}
