//! `Vary`: each variant of a response is its own entry, and a request
//! finds its variant whatever the spelling of its selecting headers.

use bytes::Bytes;
use uip_cache_testkit::harness::{Adapter, Backend, Harness};
use uip_cache_testkit::Reply;

use crate::ITEMS;

for_every_adapter_and_store!(
    vary,
    normal_forms,
    preferred_language,
    no_language_selection_by_default
);

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

/// The language an origin that has German and French picks: the first of
/// the client's languages with the highest weight, German when none.
fn negotiated(accept_language: &str) -> &'static str {
    let mut best = ("de", 0.0f32);
    for m in accept_language.split(',') {
        let mut parts = m.split(';');
        let tag = parts.next().unwrap_or("").trim().to_ascii_lowercase();
        let q = parts
            .find_map(|p| p.trim().strip_prefix("q="))
            .map_or(1.0, |q| q.parse().unwrap_or(0.0));
        let lang = match tag.as_str() {
            "de" => "de",
            "fr" => "fr",
            _ => continue,
        };
        if q > best.1 {
            best = (lang, q);
        }
    }
    best.0
}

/// The `n`th answer of that origin: in the language it picks, saying so,
/// varying on `Accept-Language`.
fn in_language(s: &uip_cache_testkit::Seen, n: usize) -> Reply {
    let lang = negotiated(s.header("accept-language").unwrap_or(""));
    Reply::ok(&format!("{n} {lang}"))
        .header("vary", "Accept-Language")
        .header("content-language", lang)
}

/// With `defaults.select_language`, a response that varies on
/// `Accept-Language` and names one `Content-Language`, stored for a
/// request that weights that language at the top, also answers the
/// requests that weight it above every other (RFC 9111 section 4.1 lets a
/// cache use what it knows of the negotiation); a tie at the top, another
/// language on top, or an answer in a language the storing request did not
/// ask for first (a fallback) goes to the origin; an unsafe request
/// removes both. Off (the default), only a request's own variant answers.
async fn preferred_language(a: Adapter, b: Backend) {
    let config = format!("defaults:\n  select_language: true\n{ITEMS}");
    let Some(h) = Harness::new(a, b, &config, in_language).await else {
        return;
    };
    let send = |lang: &'static str| {
        let h = &h;
        async move { h.send("GET", "/items", &[("accept-language", lang)]).await }
    };
    // German as a fallback for Japanese: not for those who prefer German.
    let fallback = send("ja").await;
    assert_eq!(
        (fallback.x_cache(), &fallback.body[..]),
        ("MISS", &b"0 de"[..])
    );
    h.wait_for_sets(1).await;
    let got = send("de").await;
    assert_eq!(
        (got.x_cache(), &got.body[..]),
        ("MISS", &b"1 de"[..]),
        "{a:?}/{b:?}"
    );
    h.wait_for_sets(2).await;
    let first = send("en, de").await;
    assert_eq!((first.x_cache(), &first.body[..]), ("MISS", &b"2 de"[..]));
    h.wait_for_sets(3).await;
    for lang in ["fr;q=0.5, de;q=1.0", "DE;q=0.9", "en;q=0.2, de;q=0.3"] {
        let got = send(lang).await;
        assert_eq!(
            (got.x_cache(), &got.body[..]),
            ("HIT", &b"2 de"[..]),
            "{a:?}/{b:?} {lang:?}"
        );
    }
    // A tie at the top, or French on top: the origin's.
    let tie = send("de, fr").await;
    assert_eq!((tie.x_cache(), &tie.body[..]), ("MISS", &b"3 de"[..]));
    h.wait_for_sets(4).await;
    let fr = send("fr, de;q=0.5").await;
    assert_eq!((fr.x_cache(), &fr.body[..]), ("MISS", &b"4 fr"[..]));
    h.wait_for_sets(5).await;
    let got = send("fr;q=0.9, en").await;
    assert_eq!(got.x_cache(), "MISS", "{a:?}/{b:?}: English is on top");
    h.wait_for_sets(6).await;
    // Stored for a request that weighted French below English: no copy.
    let got = send("FR;q=0.9, en;q=0.1").await;
    assert_eq!((got.x_cache(), &got.body[..]), ("HIT", &b"4 fr"[..]));
    assert_eq!(h.calls(), 6);
    // An unsafe request to the URL removes every answer stored for it.
    let post = h.send("POST", "/items", &[]).await;
    assert_eq!(post.status, 200);
    let got = send("fr;q=0.5, de").await;
    assert_eq!(got.x_cache(), "MISS", "{a:?}/{b:?}");
}

/// Without `defaults.select_language` (the default) only a request's own
/// variant answers it.
async fn no_language_selection_by_default(a: Adapter, b: Backend) {
    let Some(h) = Harness::new(a, b, ITEMS, in_language).await else {
        return;
    };
    let first = h.send("GET", "/items", &[("accept-language", "de")]).await;
    assert_eq!(first.x_cache(), "MISS");
    h.wait_for_sets(1).await;
    let got = h
        .send("GET", "/items", &[("accept-language", "fr;q=0.5, de")])
        .await;
    assert_eq!(
        (got.x_cache(), &got.body[..]),
        ("MISS", &b"1 de"[..]),
        "{a:?}/{b:?}"
    );
}
