//! Bodies: every framing is stored and replayed with its length, and a body
//! past the policy's `max_size` streams through intact and uncached.

use bytes::Bytes;
use uip_cache_testkit::harness::{Adapter, Backend, Harness, Transport};
use uip_cache_testkit::Reply;

use crate::ITEMS;

for_every_adapter_and_store!(framings, size_limit,);

async fn framings(a: Adapter, b: Backend) {
    // Content-Length, chunked, and empty bodies each way: a real server stops
    // polling at the announced length and never polls an empty body, and
    // every one must still be stored.
    let Some(h) = Harness::new(a, b, ITEMS, |_, _| Reply::ok("")).await else {
        return;
    };
    drop(h);
    let Some(h) = Harness::new(a, b, ITEMS, |_, n| match n % 4 {
        0 => Reply::ok("announced length"),
        1 => Reply::ok("sent chunked").chunked(),
        2 => Reply::ok(""),
        _ => Reply::ok("").chunked(),
    })
    .await
    else {
        return;
    };
    let cases = [
        ("/items/length", "announced length"),
        ("/items/chunked", "sent chunked"),
        ("/items/empty", ""),
        ("/items/empty-chunked", ""),
    ];
    for (i, (uri, body)) in cases.iter().enumerate() {
        let miss = h.get(uri).await;
        assert_eq!(
            (miss.x_cache(), &miss.body[..]),
            ("MISS", body.as_bytes()),
            "{a:?} {uri}"
        );
        h.wait_for_sets(i as u64 + 1).await;
        let hit = h.get(uri).await;
        assert_eq!(
            (hit.x_cache(), &hit.body[..]),
            ("HIT", body.as_bytes()),
            "{a:?}/{b:?} {uri}"
        );
        if a.transport == Transport::Socket {
            assert_eq!(
                hit.header("content-length"),
                Some(body.len().to_string().as_str()),
                "{a:?} {uri}"
            );
        }
    }
    assert_eq!(h.calls(), 4);
}

async fn size_limit(a: Adapter, b: Backend) {
    let chunk = Bytes::from((0..1024u32).map(|i| (i % 251) as u8).collect::<Vec<_>>());
    let policies = format!("{ITEMS}    max_size: 1KB\n");
    // Twice with an announced length past the limit, then twice chunked,
    // passing the limit midway.
    let Some(h) = Harness::new(a, b, &policies, move |_, n| {
        let r = Reply {
            chunks: vec![chunk.clone(); 10],
            ..Reply::ok("")
        };
        if n < 2 {
            r
        } else {
            r.chunked()
        }
    })
    .await
    else {
        return;
    };
    for _ in 0..4 {
        let got = h.get("/items").await;
        assert_eq!((got.x_cache(), got.body.len()), ("MISS", 10 * 1024));
        assert!(got
            .body
            .chunks(1024)
            .all(|c| c.iter().enumerate().all(|(i, &x)| x == (i % 251) as u8)));
    }
    assert_eq!(h.calls(), 4);
    assert_eq!(
        h.cache.stats().snapshot().uncacheable.get("too_large"),
        Some(&4),
        "{a:?}/{b:?}"
    );
}
