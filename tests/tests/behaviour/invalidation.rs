//! Invalidation: unsafe requests purge their targets (and only them, even
//! while a fetch is in flight), tags and surrogate keys, webhooks, soft purges;
//! a POST answer that is its own URL's representation replaces its entry.

use std::time::Duration;

use bytes::Bytes;
use uip_cache_testkit::harness::{Adapter, Backend, Harness};
use uip_cache_testkit::Reply;

use crate::ITEMS;

for_every_adapter_and_store!(
    unsafe_method_invalidation,
    targeted_invalidation,
    tags,
    surrogate_keys,
    ngsi_ld_webhook,
    soft_purge,
    post_answer_for_its_own_url,
);

async fn unsafe_method_invalidation(a: Adapter, b: Backend) {
    let Some(h) = Harness::new(a, b, ITEMS, |s, _| match s.method.as_str() {
        "POST" => Reply::ok("created")
            .status(201)
            .header("location", "/items/7"),
        _ => Reply::ok("list"),
    })
    .await
    else {
        return;
    };
    h.get("/items").await;
    h.get("/items/7").await;
    assert_eq!(h.get("/items").await.x_cache(), "HIT");
    assert_eq!(h.send("POST", "/items", &[]).await.x_cache(), "BYPASS");
    assert_eq!(h.get("/items").await.x_cache(), "MISS");
    assert_eq!(h.get("/items/7").await.x_cache(), "MISS");
}

async fn targeted_invalidation(a: Adapter, b: Backend) {
    let Some(h) = Harness::new(a, b, ITEMS, |s, n| match s.method.as_str() {
        "GET" => Reply::ok(&format!("v{n}")).delay(Duration::from_millis(300)),
        _ => Reply::ok("written"),
    })
    .await
    else {
        return;
    };
    // The write goes once the fetch beside it has reached the origin, which
    // then takes 300 ms to answer.
    let write_during = |uri: &'static str| {
        let h = &h;
        let fetching = h.calls() + 1;
        async move {
            h.origin.wait_for_calls(fetching).await;
            assert_eq!(h.send("PUT", uri, &[]).await.status, 200);
        }
    };
    // Writes to other URLs while a fetch is in flight leave it alone.
    let (got, ()) = tokio::join!(h.get("/items/a"), write_during("/items/b"));
    assert_eq!(got.x_cache(), "MISS");
    let (got, ()) = tokio::join!(h.get("/items/c"), write_during("/elsewhere"));
    assert_eq!(got.x_cache(), "MISS");
    h.wait_for_sets(2).await;
    assert_eq!(h.get("/items/a").await.x_cache(), "HIT", "{a:?}/{b:?}");
    assert_eq!(h.get("/items/c").await.x_cache(), "HIT", "{a:?}/{b:?}");
    // A write to the URL being fetched keeps the old response out.
    let (got, ()) = tokio::join!(h.get("/items/d"), write_during("/items/d"));
    assert_eq!(got.x_cache(), "MISS");
    let again = h.get("/items/d").await;
    assert_eq!(
        again.x_cache(),
        "MISS",
        "{a:?}/{b:?}: fetched across its own write"
    );
    assert_eq!(
        h.cache.stats().snapshot().uncacheable.get("invalidated"),
        Some(&1)
    );
}

async fn tags(a: Adapter, b: Backend) {
    let Some(h) = Harness::new(a, b, ITEMS, |_, n| Reply::ok(&format!("v{n}"))).await else {
        return;
    };
    h.get("/items/1").await;
    h.get("/items/2").await;
    h.wait_for_sets(2).await;
    assert_eq!(h.cache.invalidate_tags(&["items".into()]).await.unwrap(), 2);
    let got = h.get("/items/1").await;
    assert_eq!((got.x_cache(), &got.body[..]), ("MISS", &b"v2"[..]));
}

async fn surrogate_keys(a: Adapter, b: Backend) {
    let Some(h) = Harness::new(a, b, ITEMS, |_, n| {
        Reply::ok(&format!("v{n}")).header("surrogate-key", "item-7 list")
    })
    .await
    else {
        return;
    };
    let got = h.get("/items/7").await;
    assert!(got.header("surrogate-key").is_none(), "{:?}", got.headers);
    h.wait_for_sets(1).await;
    let hit = h.get("/items/7").await;
    assert_eq!(hit.x_cache(), "HIT");
    assert!(hit.header("surrogate-key").is_none(), "{:?}", hit.headers);
    // The origin's tag purges it, with no policy change.
    assert_eq!(
        h.cache.invalidate_tags(&["item-7".into()]).await.unwrap(),
        1
    );
    assert_eq!(h.get("/items/7").await.x_cache(), "MISS", "{a:?}/{b:?}");
}

/// The seed's scenario: an NGSI-LD broker behind the cache, a webhook for
/// an entity update; exactly that entity and its type's listings go.
const NGSI_LD: &str = r#"policies:
  - name: entity
    pattern: "/ngsi-ld/v1/entities/{id}"
    ttl: 300
  - name: camera_entities
    pattern: "/ngsi-ld/v1/entities?type=Camera*"
    ttl: 60
    tags: [camera]
  - name: entities
    pattern: "/ngsi-ld/v1/entities*"
    ttl: 60
invalidation:
  strategies:
    - type: webhook
      secret: hook
      events:
        - event: entity_update
          invalidate_patterns:
            - "/ngsi-ld/v1/entities/{entity_id}"
            - "/ngsi-ld/v1/entities?type={entity_type}*"
"#;

async fn ngsi_ld_webhook(a: Adapter, b: Backend) {
    use uip_cache_core::admin::{Admin, AdminBody, AdminRequest};

    // An NGSI-LD-like origin: entities by id, listings by type, each answer
    // naming the call that made it.
    let Some(h) = Harness::new(a, b, NGSI_LD, |s, n| {
        Reply::ok(&format!("{} #{n}", s.uri)).header("content-type", "application/ld+json")
    })
    .await
    else {
        return;
    };
    let urls = [
        "/ngsi-ld/v1/entities/urn:ngsi-ld:Camera:001",
        "/ngsi-ld/v1/entities/urn:ngsi-ld:Camera:002",
        "/ngsi-ld/v1/entities?type=Camera&limit=100",
        "/ngsi-ld/v1/entities?type=Sensor&limit=100",
    ];
    for u in urls {
        assert_eq!(h.get(u).await.x_cache(), "MISS", "{a:?}/{b:?}: {u}");
    }
    h.wait_for_sets(4).await;
    for u in urls {
        assert_eq!(h.get(u).await.x_cache(), "HIT", "{a:?}/{b:?}: {u}");
    }
    let admin = Admin::new(h.cache.clone());
    let headers = [
        ("x-webhook-secret", "hook"),
        ("content-type", "application/json"),
    ];
    let webhook = |body: &'static str| {
        AdminRequest::new("POST", "/cache/invalidate", &headers)
            .body(AdminBody::Complete(Bytes::from_static(body.as_bytes())))
    };
    let resp = admin
        .handle(webhook(
            r#"{"event":"entity_update","entity_id":"urn:ngsi-ld:Camera:001","entity_type":"Camera"}"#,
        ))
        .await;
    assert_eq!(resp.status, 200);
    let body = String::from_utf8(resp.body.to_vec()).unwrap();
    assert!(body.starts_with(r#"{"deleted":2,"#), "{a:?}/{b:?}: {body}");
    let after: Vec<String> = {
        let mut v = Vec::new();
        for u in urls {
            v.push(h.get(u).await.x_cache().to_owned());
        }
        v
    };
    assert_eq!(after, ["MISS", "HIT", "MISS", "HIT"], "{a:?}/{b:?}");
    assert_eq!(h.calls(), 6);
    // An event nobody configured: 200, nothing deleted.
    let resp = admin
        .handle(webhook(r#"{"event":"entity_delete","entity_id":"x"}"#))
        .await;
    assert_eq!(resp.status, 200);
    assert!(String::from_utf8_lossy(&resp.body).contains(r#""matched":false"#));
    assert_eq!(h.cache.stats().snapshot().unknown_events, 1);
}

async fn soft_purge(a: Adapter, b: Backend) {
    // A soft purge marks the entry stale: the next request gets the old
    // answer at once while one refresh runs; by tag and by URL pattern, in
    // memory and in Redis.
    let Some(h) = Harness::new(a, b, ITEMS, |_, n| {
        Reply::ok(&format!("v{n}")).header("cache-control", "max-age=600")
    })
    .await
    else {
        return;
    };
    assert_eq!(h.get("/items/s").await.x_cache(), "MISS");
    h.wait_for_sets(1).await;
    let (n, soft) = h
        .cache
        .soft_invalidate_tags(&["items".into()])
        .await
        .unwrap();
    assert_eq!((n, soft), (1, true), "{a:?}/{b:?}");
    let got = h.get("/items/s").await;
    assert_eq!(
        (got.x_cache(), &got.body[..]),
        ("STALE", &b"v0"[..]),
        "{a:?}/{b:?}"
    );
    // The refresh stores v1; the entry is fresh again.
    h.wait_for_sets(2).await;
    let got = h.get("/items/s").await;
    assert_eq!((got.x_cache(), &got.body[..]), ("HIT", &b"v1"[..]));
    // By URL pattern: the same.
    let pattern = uip_cache_core::UrlPattern::glob("/items/*").unwrap();
    let (n, soft) = h.cache.soft_invalidate_pattern(&pattern).await.unwrap();
    assert_eq!((n, soft), (1, true), "{a:?}/{b:?}");
    let got = h.get("/items/s").await;
    assert_eq!((got.x_cache(), &got.body[..]), ("STALE", &b"v1"[..]));
    h.wait_for_sets(3).await;
    assert_eq!(h.get("/items/s").await.x_cache(), "HIT");
    // A soft-purged entry is still indexed: a hard purge removes it.
    h.cache
        .soft_invalidate_tags(&["items".into()])
        .await
        .unwrap();
    assert_eq!(h.cache.invalidate_tags(&["items".into()]).await.unwrap(), 1);
    let got = h.get("/items/s").await;
    assert_eq!((got.x_cache(), &got.body[..]), ("MISS", &b"v3"[..]));
    assert_eq!(h.calls(), 4);
}

/// A POST answer whose `Content-Location` is the request's own URL, with
/// the origin's explicit freshness, is that URL's representation (RFC 9110
/// section 9.3.3): it replaces the GET entry the POST invalidated. Never
/// for another path or host, without explicit freshness, when the client
/// said `no-store`, or for a POST with a cookie or credentials unless the
/// origin said `public` or `s-maxage`.
async fn post_answer_for_its_own_url(a: Adapter, b: Backend) {
    let Some(h) = Harness::new(a, b, ITEMS, |s, n| match s.method.as_str() {
        "POST" => {
            let r = Reply::ok(&format!("posted {n}"));
            let q = s.uri.split_once('?').map(|(_, q)| q).unwrap_or("");
            match q {
                "other" => r
                    .header("content-location", "/items/other")
                    .header("cache-control", "max-age=60"),
                "host" => r
                    .header("content-location", "http://elsewhere.example/items/p?host")
                    .header("cache-control", "max-age=60"),
                "implicit" => r
                    .header("content-location", "/items/p?implicit")
                    .header("last-modified", "Mon, 01 Jan 2024 00:00:00 GMT"),
                _ => r
                    .header("content-location", s.uri.clone())
                    .header("cache-control", "max-age=60"),
            }
        }
        _ => Reply::ok(&format!("got {n}")),
    })
    .await
    else {
        return;
    };
    let json = [("content-type", "text/plain")];
    assert_eq!(h.get("/items/p").await.x_cache(), "MISS");
    h.wait_for_sets(1).await;
    let posted = h
        .send_body("POST", "/items/p", &json, Bytes::from_static(b"12345"))
        .await;
    assert_eq!(
        (posted.status, posted.x_cache()),
        (200, "BYPASS"),
        "{posted:?}"
    );
    h.wait_for_sets(2).await;
    let got = h.get("/items/p").await;
    assert_eq!(
        (got.x_cache(), got.body.clone()),
        ("HIT", posted.body.clone()),
        "{a:?}/{b:?} the POST's answer replaced the entry"
    );
    let calls = h.calls();
    // Another path, another host, no explicit freshness, `no-store`.
    for (uri, headers) in [
        ("/items/p?other", &json[..]),
        ("/items/p?host", &json[..]),
        ("/items/p?implicit", &json[..]),
        (
            "/items/p?nostore",
            &[
                ("content-type", "text/plain"),
                ("cache-control", "no-store"),
            ][..],
        ),
        // A POST with a cookie or credentials, answered with `max-age`
        // only: its answer may be this client's own, never every GET's.
        (
            "/items/p?cookie",
            &[("content-type", "text/plain"), ("cookie", "session=alice")][..],
        ),
        (
            "/items/p?auth",
            &[
                ("content-type", "text/plain"),
                ("authorization", "Bearer alice"),
            ][..],
        ),
    ] {
        let posted = h
            .send_body("POST", uri, headers, Bytes::from_static(b"x"))
            .await;
        assert_eq!(posted.status, 200);
        let got = h.get(uri).await;
        assert_eq!(got.x_cache(), "MISS", "{a:?}/{b:?} {uri}");
    }
    assert_eq!(h.get("/items/other").await.x_cache(), "MISS");
    assert_eq!(h.calls(), calls + 13);
}
