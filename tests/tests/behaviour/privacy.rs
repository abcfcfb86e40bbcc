//! Privacy: what one client's request or response must not hand to
//! another: cookies both ways and `Authorization`.

use bytes::Bytes;
use uip_cache_testkit::harness::{Adapter, Backend, Harness};
use uip_cache_testkit::Reply;

use crate::ITEMS;

for_every_adapter_and_store!(set_cookie, cookie_request, cookie_on_304, authorization,);

async fn set_cookie(a: Adapter, b: Backend) {
    let Some(h) = Harness::new(a, b, ITEMS, |_, _| {
        Reply::ok("x").header("set-cookie", "session=1")
    })
    .await
    else {
        return;
    };
    for _ in 0..2 {
        assert_eq!(h.get("/items").await.x_cache(), "MISS");
    }
    assert_eq!(h.calls(), 2);
}

async fn cookie_request(a: Adapter, b: Backend) {
    let Some(h) = Harness::new(a, b, ITEMS, |s, _| {
        Reply::ok(&format!("for {}", s.header("cookie").unwrap_or("nobody")))
    })
    .await
    else {
        return;
    };
    // A policy TTL alone does not share a response to a request with cookies.
    for _ in 0..2 {
        let got = h
            .send("GET", "/items", &[("cookie", "session=alice")])
            .await;
        assert_eq!(got.x_cache(), "MISS", "{a:?}/{b:?}");
    }
    assert_eq!(h.get("/items").await.body, "for nobody");
    drop(h);
    // Keyed on the cookie, each cookie gets its own entry.
    let keyed = format!("{ITEMS}    vary_by: [\"header:cookie\"]\n");
    let Some(h) = Harness::new(a, b, &keyed, |s, _| {
        Reply::ok(&format!("for {}", s.header("cookie").unwrap_or("nobody")))
    })
    .await
    else {
        return;
    };
    for who in ["alice", "bob"] {
        let c = format!("session={who}");
        h.send("GET", "/items", &[("cookie", &c)]).await;
        let got = h.send("GET", "/items", &[("cookie", &c)]).await;
        assert_eq!(
            (got.x_cache(), got.body.clone()),
            ("HIT", Bytes::from(format!("for session={who}")))
        );
    }
    assert_eq!(h.calls(), 2);
}

async fn cookie_on_304(a: Adapter, b: Backend) {
    let Some(h) = Harness::new(a, b, ITEMS, |_, n| {
        if n == 0 {
            Reply::ok("shared body")
                .header("etag", "\"v1\"")
                .header("cache-control", "max-age=60")
                .header("age", "100")
        } else {
            Reply::ok("")
                .status(304)
                .header("cache-control", "max-age=60")
                .header("set-cookie", "session=alice")
        }
    })
    .await
    else {
        return;
    };
    h.get("/items").await;
    let revalidated = h.get("/items").await;
    assert_eq!(revalidated.x_cache(), "EXPIRED", "{a:?}/{b:?}");
    assert_eq!(revalidated.headers_named("set-cookie"), ["session=alice"]);
    // Another client gets the shared entry, never alice's cookie.
    let other = h.get("/items").await;
    assert_eq!(
        (other.x_cache(), &other.body[..]),
        ("HIT", &b"shared body"[..])
    );
    assert!(
        other.headers_named("set-cookie").is_empty(),
        "{:?}",
        other.headers
    );
    assert_eq!(h.calls(), 2);
}

async fn authorization(a: Adapter, b: Backend) {
    let Some(h) = Harness::new(a, b, ITEMS, |s, _| {
        let r = Reply::ok("secret");
        if s.header("x-public").is_some() {
            r.header("cache-control", "public, max-age=60")
        } else {
            r
        }
    })
    .await
    else {
        return;
    };
    for _ in 0..2 {
        assert_eq!(
            h.send("GET", "/items", &[("authorization", "Bearer t")])
                .await
                .x_cache(),
            "MISS"
        );
    }
    h.send(
        "GET",
        "/items/p",
        &[("authorization", "a"), ("x-public", "1")],
    )
    .await;
    assert_eq!(
        h.send(
            "GET",
            "/items/p",
            &[("authorization", "b"), ("x-public", "1")]
        )
        .await
        .x_cache(),
        "HIT"
    );
}
