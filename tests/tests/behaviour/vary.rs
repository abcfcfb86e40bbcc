//! `Vary`: each variant of a response is its own entry, and a request
//! finds its variant whatever the spelling of its selecting headers.

use bytes::Bytes;
use uip_cache_testkit::harness::{Adapter, Backend, Harness};
use uip_cache_testkit::Reply;

use crate::ITEMS;

for_every_adapter_and_store!(vary, normal_forms);

async fn vary(a: Adapter, b: Backend) {
    let Some(h) = Harness::new(a, b, ITEMS, |s, _| {
        Reply::ok(&format!(
            "hello {}",
            s.header("accept-language").unwrap_or("-")
        ))
        .header("vary", "Accept-Language")
    })
    .await
    else {
        return;
    };
    for lang in ["en", "fr"] {
        let got = h.send("GET", "/items", &[("accept-language", lang)]).await;
        assert_eq!(
            (got.x_cache(), got.body.clone()),
            ("MISS", Bytes::from(format!("hello {lang}")))
        );
    }
    for lang in ["en", "fr"] {
        let got = h.send("GET", "/items", &[("accept-language", lang)]).await;
        assert_eq!(
            (got.x_cache(), got.body.clone()),
            ("HIT", Bytes::from(format!("hello {lang}")))
        );
    }
    assert_eq!(h.calls(), 2);
}

/// Selecting headers match a stored variant in their normal form (RFC 9111
/// section 4.1): `Accept-Language` in any case, spacing or spelling of its
/// weights, a list header with any spacing around its commas. Another
/// order of languages, or another weight, is another variant: servers
/// break ties by the order.
async fn normal_forms(a: Adapter, b: Backend) {
    let Some(h) = Harness::new(a, b, ITEMS, |s, n| {
        Reply::ok(&format!(
            "{n} {} {}",
            s.header("accept-language").unwrap_or("-"),
            s.header("x-foo").unwrap_or("-")
        ))
        .header("vary", "Accept-Language, X-Foo")
    })
    .await
    else {
        return;
    };
    let first = h
        .send(
            "GET",
            "/items",
            &[("accept-language", "en, de"), ("x-foo", "1,2")],
        )
        .await;
    assert_eq!(first.x_cache(), "MISS");
    h.wait_for_sets(1).await;
    for (lang, list) in [
        ("eN, De", "1,2"),
        (" en ,   de", " 1, 2 "),
        ("en;q=1.0, DE;Q=1", "1 ,2"),
    ] {
        let got = h
            .send(
                "GET",
                "/items",
                &[("accept-language", lang), ("x-foo", list)],
            )
            .await;
        assert_eq!(
            (got.x_cache(), got.body.clone()),
            ("HIT", first.body.clone()),
            "{a:?}/{b:?} {lang:?} {list:?}"
        );
    }
    for (lang, list) in [
        ("de, en", "1,2"),
        ("en, de;q=0.5", "1,2"),
        ("en, de", "1 2"),
    ] {
        let got = h
            .send(
                "GET",
                "/items",
                &[("accept-language", lang), ("x-foo", list)],
            )
            .await;
        assert_eq!(got.x_cache(), "MISS", "{a:?}/{b:?} {lang:?} {list:?}");
    }
    assert_eq!(h.calls(), 4);
}
