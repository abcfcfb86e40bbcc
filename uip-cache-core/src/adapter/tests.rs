use std::convert::Infallible;
use std::future::Future;
use std::task::Poll;
use std::time::Duration;

use bytes::Bytes;
use proptest::prelude::*;

use super::*;
use crate::store::PutOptions;
use crate::{CacheConfig, Forward, HttpCache, NoCacheReason, RequestView, XCache};

const YAML: &str = "policies:\n  - name: items\n    pattern: \"/items*\"\n    ttl: 60\n";

fn cache(yaml: &str) -> HttpCache {
    HttpCache::with_memory_store(&CacheConfig::from_yaml_str(yaml).unwrap()).unwrap()
}

// ===== the bypass ticket =====

/// Stores an entry for `path` on `host`, tagged with its target as the
/// request path tags one.
async fn put(cache: &HttpCache, host: &str, path: &str) -> String {
    let none: [(&str, &str); 0] = [];
    let view = RequestView::new("GET", path, &none).authority(Some(host));
    let settings = cache.settings();
    let m = settings.policies().find(path, None).unwrap();
    let tags = vec![m.policy().key_spec().target_tag(&view)];
    let key = format!("k:{host}{path}");
    let options = PutOptions::new(Duration::from_secs(60), path).tags(&tags);
    cache
        .store()
        .put(&key, Bytes::from_static(b"entry"), options)
        .await
        .unwrap();
    key
}

async fn stored(cache: &HttpCache, key: &str) -> bool {
    cache.store().get(key).await.unwrap().is_some()
}

#[tokio::test]
async fn a_post_that_succeeds_removes_its_target_and_location() {
    let cache = cache(YAML);
    let target = put(&cache, "a.example", "/items").await;
    let created = put(&cache, "a.example", "/items/7").await;
    let other = put(&cache, "a.example", "/items/8").await;
    let elsewhere = put(&cache, "b.example", "/items").await;

    let headers = [("host", "a.example")];
    let view = RequestView::new("POST", "/items", &headers)
        .scheme(Some("http"))
        .authority(Some("a.example"));
    let ticket = cache.bypass(&view, NoCacheReason::Method);
    assert_eq!(ticket.reason(), NoCacheReason::Method);
    let stats = cache.stats().snapshot();
    assert_eq!(stats.bypasses, 1, "counted when the ticket is made");
    assert_eq!(stats.uncacheable["method"], 1);

    let response = [("location", "/items/7"), ("content-type", "text/plain")];
    let edits = ticket.origin_responded(201, &response).await;
    assert!(!stored(&cache, &target).await, "the target goes");
    assert!(!stored(&cache, &created).await, "so does the Location");
    assert!(stored(&cache, &other).await);
    assert!(stored(&cache, &elsewhere).await, "another host's stays");
    let edits: Vec<_> = edits.into_iter().collect();
    assert!(
        edits.contains(&HeaderEdit::Remove("surrogate-control")),
        "{edits:?}"
    );
    assert_eq!(
        &edits[edits.len() - 2..],
        [
            HeaderEdit::Set("x-cache", "BYPASS".into()),
            HeaderEdit::Set(
                "cache-status",
                "uip-cache; fwd=method; detail=method".into()
            ),
        ]
    );
}

#[tokio::test]
async fn a_post_that_fails_removes_nothing() {
    let cache = cache(YAML);
    let target = put(&cache, "a.example", "/items").await;
    let created = put(&cache, "a.example", "/items/7").await;
    let headers = [("host", "a.example")];
    let view = RequestView::new("POST", "/items", &headers).authority(Some("a.example"));
    let ticket = cache.bypass(&view, NoCacheReason::Method);
    let response = [("location", "/items/7")];
    let _ = ticket.origin_responded(403, &response).await;
    assert!(stored(&cache, &target).await);
    assert!(stored(&cache, &created).await);
    assert_eq!(cache.stats().snapshot().bypasses, 1);
}

#[tokio::test]
async fn a_safe_bypass_removes_nothing_and_a_location_elsewhere_is_ignored() {
    let cache = cache(YAML);
    let target = put(&cache, "a.example", "/items").await;
    let headers = [("host", "a.example")];
    let view = RequestView::new("GET", "/items", &headers).authority(Some("a.example"));
    let ticket = cache.bypass(&view, NoCacheReason::RequestNoStore);
    let _ = ticket
        .origin_responded(200, &[("location", "/items")])
        .await;
    assert!(stored(&cache, &target).await, "a GET invalidates nothing");

    let view = RequestView::new("DELETE", "/other", &headers)
        .scheme(Some("http"))
        .authority(Some("a.example"));
    let ticket = cache.bypass(&view, NoCacheReason::Method);
    let response = [("content-location", "http://b.example/items")];
    let _ = ticket.origin_responded(204, &response).await;
    assert!(
        stored(&cache, &target).await,
        "another origin's URL is not ours"
    );
    let response = [("content-location", "http://a.example/items")];
    let _ = ticket.origin_responded(204, &response).await;
    assert!(!stored(&cache, &target).await, "a same-origin one is");
    assert_eq!(cache.stats().snapshot().bypasses, 2);
}

// ===== header edits =====

#[test]
fn response_edits_remove_what_the_cache_consumes_and_append_to_cache_status() {
    let cache = cache(concat!(
        "defaults:\n  tag_headers: [surrogate-key]\n",
        "policies:\n  - name: items\n    pattern: \"/items*\"\n    ttl: 60\n",
    ));
    let response = [
        ("surrogate-key", "a b"),
        ("cache-status", "origin-cache; hit"),
        ("cache-status", "broken; \"open"),
    ];
    let edits: Vec<_> = cache
        .response_edits(Forward::recorded(XCache::Miss), &response)
        .into_iter()
        .collect();
    assert!(
        edits.contains(&HeaderEdit::Remove("surrogate-key")),
        "{edits:?}"
    );
    assert_eq!(
        &edits[edits.len() - 2..],
        [
            HeaderEdit::Set("x-cache", "MISS".into()),
            HeaderEdit::Set(
                "cache-status",
                "origin-cache; hit, uip-cache; fwd=uri-miss; stored".into()
            ),
        ]
    );
    // Removals come first, so that a set is never undone.
    let first_set = edits.iter().position(|e| matches!(e, HeaderEdit::Set(..)));
    assert!(edits[first_set.unwrap()..]
        .iter()
        .all(|e| matches!(e, HeaderEdit::Set(..))));
}

#[test]
fn origin_changes_become_edits_in_order() {
    let changes = crate::OriginHeaders {
        remove: &["if-none-match", "if-modified-since"],
        set: vec![("if-none-match", Bytes::from_static(b"\"v1\""))],
    };
    let edits: Vec<_> = HeaderEdits::from(changes).into_iter().collect();
    assert_eq!(
        edits,
        [
            HeaderEdit::Remove("if-none-match"),
            HeaderEdit::Remove("if-modified-since"),
            HeaderEdit::Set("if-none-match", "\"v1\"".into()),
        ]
    );
}

// ===== the body reader =====

/// A source of `chunks`, then the end.
fn source(
    chunks: Vec<Bytes>,
) -> impl FnMut(&mut std::task::Context<'_>) -> Poll<Option<Result<Bytes, Infallible>>> {
    let mut chunks = chunks.into_iter();
    move |_| Poll::Ready(chunks.next().map(Ok))
}

fn run<F: std::future::Future>(f: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap()
        .block_on(f)
}

#[test]
fn a_longer_announced_length_is_not_read() {
    let headers = [("content-length", "10")];
    assert!(BodyReader::new(5, &headers).is_none());
    let headers = [("content-length", "5")];
    assert_eq!(BodyReader::new(5, &headers).unwrap().limit(), 5);
    // Not a length: read, and counted as it comes.
    assert!(BodyReader::new(5, &[("content-length", "ten")]).is_some());
}

#[tokio::test]
async fn a_failing_source_gives_what_was_read_and_the_error() {
    let mut chunks = vec![Ok(Bytes::from_static(b"ab")), Err("reset")].into_iter();
    let reader = BodyReader::new(10, &[("a", "b")]).unwrap();
    match reader.read(|_| Poll::Ready(chunks.next())).await {
        BodyRead::Failed(read, e) => assert_eq!((&read[..], e), (&b"ab"[..], "reset")),
        other => panic!("{other:?}"),
    }
}

#[tokio::test(start_paused = true)]
async fn a_trickling_body_goes_on_at_the_deadline_with_what_was_read() {
    let start = tokio::time::Instant::now();
    let mut first = Some(Bytes::from_static(b"abc"));
    let reader = BodyReader::new(100, &[("a", "b")]).unwrap();
    let read = reader
        .read(|_| match first.take() {
            Some(b) => Poll::Ready(Some(Ok::<_, Infallible>(b))),
            // The client sends nothing more, and never ends.
            None => Poll::Pending,
        })
        .await;
    assert!(
        matches!(read, BodyRead::Partial(ref b) if b == "abc"),
        "{read:?}"
    );
    assert_eq!(start.elapsed(), crate::BODY_READ_TIMEOUT);
}

#[tokio::test(start_paused = true)]
async fn the_deadline_counts_from_the_start_not_per_chunk() {
    let reader = BodyReader::new(100, &[("a", "b")]).unwrap();
    // A chunk every 20 s: each within 30 s of the last, the second past
    // 30 s from the start.
    let mut sleep = Box::pin(tokio::time::sleep(Duration::from_secs(20)));
    let mut sent = 0;
    let read = reader
        .read(|cx| {
            std::task::ready!(sleep.as_mut().poll(cx));
            sleep.set(tokio::time::sleep(Duration::from_secs(20)));
            sent += 1;
            Poll::Ready(Some(Ok::<_, Infallible>(Bytes::from_static(b"x"))))
        })
        .await;
    assert!(
        matches!(read, BodyRead::Partial(ref b) if b == "x"),
        "{read:?}"
    );
    assert_eq!(sent, 1);
}

proptest! {
    /// Whatever the chunks and the limit: a body within the limit is read
    /// whole; a longer one stops at the first chunk that goes past it, and
    /// what was read followed by the rest is the body.
    #[test]
    fn the_limit_is_kept_whatever_the_chunks(
        chunks in prop::collection::vec(prop::collection::vec(any::<u8>(), 0..20), 0..8),
        limit in 0u64..120,
    ) {
        let chunks: Vec<Bytes> = chunks.into_iter().map(Bytes::from).collect();
        let body: Vec<u8> = chunks.concat();
        let mut next = source(chunks.clone());
        let read = run(BodyReader::new(limit, &[("a", "b")]).unwrap().read(&mut next));
        match read {
            BodyRead::Whole(b) => {
                prop_assert!(body.len() as u64 <= limit);
                prop_assert_eq!(&b[..], &body[..]);
            }
            BodyRead::Partial(read) => {
                prop_assert!(body.len() as u64 > limit);
                prop_assert!(read.len() as u64 > limit);
                // It stopped at the first chunk that went past the limit.
                let mut n = 0;
                let mut at = 0;
                while n as u64 <= limit {
                    n += chunks[at].len();
                    at += 1;
                }
                prop_assert_eq!(read.len(), n);
                let mut rest = Vec::new();
                while let Poll::Ready(Some(Ok(c))) = next(&mut std::task::Context::from_waker(std::task::Waker::noop())) {
                    rest.extend_from_slice(&c);
                }
                prop_assert_eq!([&read[..], &rest[..]].concat(), &body[..]);
            }
            BodyRead::Failed(..) => prop_assert!(false, "the source never fails"),
        }
        // The same with the length announced.
        let len = body.len().to_string();
        let announced = BodyReader::new(limit, &[("content-length", len.as_str())]);
        prop_assert_eq!(announced.is_some(), body.len() as u64 <= limit);
    }
}

// ===== refreshes =====

#[test]
fn only_this_caches_marker_makes_a_refresh_keyed_on_the_clients_scheme() {
    let cache = cache(YAML);
    let marker = cache.refresh_token().header_value("https");
    let refresh = cache.refresh_marked(marker.as_bytes()).expect("our marker");
    assert_eq!(refresh.scheme(), "https");
    let other = self::cache(YAML).refresh_token().header_value("https");
    assert_eq!(cache.refresh_marked(other.as_bytes()), None);

    let headers = [("host", "shop.example")];
    let conn = crate::Connection::new(None, false);
    let origin = refresh.origin(cache.client_origin(&conn, None, &headers));
    assert_eq!(
        (origin.scheme, origin.host),
        ("https", Some("shop.example"))
    );
    assert!(
        origin.trusted,
        "the headers left are what a trusted proxy sent"
    );
}
