//! Coalescing: concurrent misses make one origin call, a stalled client
//! holds nobody up, and an uncacheable key queues nobody (hit-for-miss).

use std::time::Duration;

use bytes::Bytes;
use uip_cache_testkit::harness::{Adapter, Backend, Harness};
use uip_cache_testkit::Reply;

use crate::ITEMS;

for_every_adapter_and_store!(coalescing, slow_leader_client, hit_for_miss,);

async fn coalescing(a: Adapter, b: Backend) {
    // A burst on a body of announced length, then one on a chunked body.
    let Some(h) = Harness::new(a, b, ITEMS, |s, _| {
        let r = Reply::ok("cold").delay(Duration::from_millis(150));
        if s.uri.ends_with("chunked") {
            r.chunked()
        } else {
            r
        }
    })
    .await
    else {
        return;
    };
    for uri in ["/items?cold=1", "/items?cold=chunked"] {
        let all = futures_util::future::join_all((0..100).map(|_| h.get(uri))).await;
        assert!(all.iter().all(|g| &g.body[..] == b"cold"), "{uri}");
        assert_eq!(
            all.iter().filter(|g| g.x_cache() == "HIT").count(),
            99,
            "{a:?}/{b:?} {uri}"
        );
    }
    assert_eq!(h.calls(), 2);
}

async fn slow_leader_client(a: Adapter, b: Backend) {
    // 16 MB, larger than loopback socket buffers: a client that never reads
    // stalls the server's writes to it.
    let chunk = Bytes::from(vec![7u8; 256 * 1024]);
    // Recorded in memory (`stream_above` past its length): a body a disk
    // store takes as it streams in goes at its client's pace instead, so
    // that no more than `stream_above` is held for a stalled client.
    let policies = format!("{ITEMS}    max_size: 64MB\n    stream_above: 64MB\n");
    let Some(h) = Harness::new(a, b, &policies, move |_, _| {
        Reply {
            chunks: vec![chunk.clone(); 64],
            ..Reply::ok("")
        }
        .delay(Duration::from_millis(50))
    })
    .await
    else {
        return;
    };
    let _stalled = h.hold("/items/big").await;
    h.origin.wait_for_calls(1).await;
    assert_eq!(h.calls(), 1, "the leader reached the origin");
    let follower = tokio::time::timeout(Duration::from_secs(20), h.get("/items/big"))
        .await
        .expect("a follower is not held up by the leader's stalled client");
    assert_eq!(
        (follower.x_cache(), follower.body.len()),
        ("HIT", 16 << 20),
        "{a:?}/{b:?}"
    );
    assert_eq!(h.calls(), 1);
}

async fn hit_for_miss(a: Adapter, b: Backend) {
    // A key whose response cannot be stored: later requests go straight to
    // the origin instead of queueing behind one fetch.
    let Some(h) = Harness::new(a, b, ITEMS, |_, _| {
        Reply::ok("mine")
            .header("cache-control", "no-store")
            .delay(Duration::from_millis(50))
    })
    .await
    else {
        return;
    };
    assert_eq!(h.get("/items/u").await.x_cache(), "MISS");
    let before = h.cache.stats().snapshot().coalesced;
    let all = futures_util::future::join_all((0..10).map(|_| h.get("/items/u"))).await;
    assert!(all
        .iter()
        .all(|g| g.x_cache() == "MISS" && &g.body[..] == b"mine"));
    let snap = h.cache.stats().snapshot();
    assert_eq!(snap.coalesced, before, "{a:?}/{b:?}: nobody queued");
    assert_eq!(snap.hit_for_miss, 10);
    assert_eq!(h.calls(), 11);
}
