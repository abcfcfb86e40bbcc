//! A store that takes bodies as they stream in (`Storage::begin_put`):
//! which answers go to it that way, under which key, and what keeps them
//! out, as for a buffered write.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use uip_cache_core::store::{
    Coordination, EntryWriter, MemoryStore, PutOptions, Storage, StoreFuture,
};
use uip_cache_testkit::tower::{config, get, ok, req};
use uip_cache_testkit::{wait_for_sets, Origin, Reply};
use uip_cache_tower::CacheLayer;

/// A memory store that also takes streamed writes, counting both kinds.
#[derive(Debug, Clone)]
struct Streaming {
    memory: MemoryStore,
    puts: Arc<AtomicUsize>,
    streamed: Arc<AtomicUsize>,
    aborted: Arc<AtomicUsize>,
}

impl Streaming {
    fn new() -> Streaming {
        Streaming {
            memory: MemoryStore::new(64 << 20),
            puts: Arc::default(),
            streamed: Arc::default(),
            aborted: Arc::default(),
        }
    }
}

/// Gathers the chunks, and puts head and chunks in the memory store at
/// the commit.
#[derive(Debug)]
struct Writer {
    store: Streaming,
    key: String,
    ttl: std::time::Duration,
    path: String,
    tags: Vec<String>,
    head_len: u64,
    body: BytesMut,
    committed: bool,
}

impl EntryWriter for Writer {
    fn write(&mut self, chunk: Bytes) -> StoreFuture<'_, ()> {
        self.body.extend_from_slice(&chunk);
        Box::pin(async { Ok(()) })
    }
    fn written(&self) -> u64 {
        self.body.len() as u64
    }
    fn commit(mut self: Box<Self>, head: Bytes) -> StoreFuture<'static, ()> {
        Box::pin(async move {
            assert_eq!(head.len() as u64, self.head_len, "the head announced");
            self.committed = true;
            let mut value = BytesMut::from(&head[..]);
            value.extend_from_slice(&self.body);
            let o = PutOptions::new(self.ttl, &self.path).tags(&self.tags);
            self.store.memory.put(&self.key, value.freeze(), o).await?;
            self.store.streamed.fetch_add(1, Ordering::SeqCst);
            Ok(())
        })
    }
}

impl Drop for Writer {
    fn drop(&mut self) {
        if !self.committed {
            self.store.aborted.fetch_add(1, Ordering::SeqCst);
        }
    }
}

impl Storage for Streaming {
    fn get<'a>(&'a self, key: &'a str) -> StoreFuture<'a, Option<Bytes>> {
        self.memory.get(key)
    }
    fn put<'a>(&'a self, key: &'a str, v: Bytes, o: PutOptions<'a>) -> StoreFuture<'a, ()> {
        self.puts.fetch_add(1, Ordering::SeqCst);
        self.memory.put(key, v, o)
    }
    fn begin_put(
        &self,
        key: &str,
        head_len: u64,
        o: PutOptions<'_>,
    ) -> Option<Box<dyn EntryWriter>> {
        Some(Box::new(Writer {
            store: self.clone(),
            key: key.to_owned(),
            ttl: o.ttl,
            path: o.path.to_owned(),
            tags: o.tags.to_vec(),
            head_len,
            body: BytesMut::new(),
            committed: false,
        }))
    }
    uip_cache_testkit::storage_removals_to!(memory);
}

uip_cache_testkit::store_status_of!(Streaming, memory);

impl Coordination for Streaming {}

const POLICY: &str = "defaults:\n  stream_above: 1MB\npolicies:\n  - name: all\n    pattern: \"/*\"\n    ttl: 60\n    max_size: 4MB\n    compression: {min_size: 10}\n";

/// `n` bytes that differ from one place to the next.
fn body(n: usize) -> String {
    (0..n).map(|i| (b'a' + (i % 23) as u8) as char).collect()
}

#[tokio::test]
async fn a_large_answer_is_streamed_a_small_one_put_and_both_hit_whole() {
    let store = Streaming::new();
    let layer = CacheLayer::builder(config(POLICY))
        .store(store.clone())
        .build()
        .unwrap();
    let origin = Origin::new(|s, _| {
        let len = if s.path() == "/large" {
            3 << 20
        } else {
            500 << 10
        };
        Reply::ok(&body(len))
            .header("content-type", "text/plain")
            .header("content-length", len.to_string())
    });
    let mut svc = tower::Layer::layer(&layer, origin.clone());
    for (path, len) in [("/large", 3 << 20), ("/small", 500 << 10)] {
        let miss = ok(&mut svc, get(path)).await;
        assert_eq!(miss.x_cache(), "MISS");
        wait_for_sets(svc.cache(), if path == "/large" { 1 } else { 2 }).await;
        let hit = ok(&mut svc, get(path)).await;
        assert_eq!(hit.x_cache(), "HIT", "{path}");
        assert_eq!(hit.body.len(), len, "{path}");
        assert!(hit.body == body(len).as_bytes(), "{path}: the same bytes");
    }
    assert_eq!(store.streamed.load(Ordering::SeqCst), 1, "/large");
    assert_eq!(
        store.puts.load(Ordering::SeqCst),
        1,
        "/small, of a known length"
    );
    assert_eq!(origin.calls(), 2);
    // Never compressed on the streamed path: a client that takes gzip gets
    // the stored identity body.
    let gz = ok(
        &mut svc,
        req("GET", "/large", &[("accept-encoding", "gzip")]),
    )
    .await;
    assert_eq!(gz.x_cache(), "HIT");
    assert_eq!(gz.body.len(), 3 << 20);
}

#[tokio::test]
async fn a_streamed_answer_that_varies_is_stored_under_its_variant() {
    let store = Streaming::new();
    let layer = CacheLayer::builder(config(POLICY))
        .store(store.clone())
        .build()
        .unwrap();
    let origin = Origin::new(|s, n| {
        let lang = s.header("accept-language").unwrap_or("none").to_owned();
        Reply::ok(&format!("{lang} {n} {}", body(2 << 20))).header("vary", "accept-language")
    });
    let mut svc = tower::Layer::layer(&layer, origin.clone());
    let en = || req("GET", "/v", &[("accept-language", "en")]);
    let fr = || req("GET", "/v", &[("accept-language", "fr")]);
    let first = ok(&mut svc, en()).await;
    assert_eq!(first.x_cache(), "MISS");
    wait_for_sets(svc.cache(), 1).await;
    let again = ok(&mut svc, en()).await;
    assert_eq!(again.x_cache(), "HIT");
    assert!(again.body == first.body);
    let other = ok(&mut svc, fr()).await;
    assert_eq!(other.x_cache(), "MISS", "another variant");
    assert!(other.body.starts_with(b"fr "));
    assert_eq!(store.streamed.load(Ordering::SeqCst), 2);
    // The marker under the plain key is a whole (small) put.
    assert_eq!(store.puts.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn a_streamed_answer_an_invalidation_came_after_is_dropped() {
    let store = Streaming::new();
    let layer = CacheLayer::builder(config(POLICY))
        .store(store.clone())
        .build()
        .unwrap();
    let origin = Origin::new(|s, n| match s.method.as_str() {
        "GET" => Reply::ok(&format!("{n} {}", body(2 << 20)))
            .delay(std::time::Duration::from_millis(300)),
        _ => Reply::ok("done"),
    });
    let mut svc = tower::Layer::layer(&layer, origin.clone());
    let sending = tokio::spawn({
        let mut svc = svc.clone();
        async move { ok(&mut svc, get("/p")).await }
    });
    origin.wait_for_calls(1).await;
    // While the answer is on its way: a purge of its URL.
    let put = ok(&mut svc, req("PUT", "/p", &[])).await;
    assert_eq!(put.status, 200);
    let got = sending.await.unwrap();
    assert_eq!(got.x_cache(), "MISS");
    // Its write (in a task of its own) is dropped, not committed.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while store.aborted.load(Ordering::SeqCst) == 0 && std::time::Instant::now() < deadline {
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    assert_eq!(store.aborted.load(Ordering::SeqCst), 1, "the write dropped");
    assert_eq!(store.streamed.load(Ordering::SeqCst), 0);
    let next = ok(&mut svc, get("/p")).await;
    assert_eq!(next.x_cache(), "MISS", "purged during its write");
}

#[tokio::test]
async fn a_streamed_answer_past_max_size_is_dropped_and_still_reaches_the_client() {
    let store = Streaming::new();
    let layer = CacheLayer::builder(config(POLICY))
        .store(store.clone())
        .build()
        .unwrap();
    // No Content-Length: streamed, and found too large as it comes.
    let origin = Origin::new(|_, _| Reply::ok(&body(5 << 20)));
    let mut svc = tower::Layer::layer(&layer, origin.clone());
    let got = ok(&mut svc, get("/big")).await;
    assert_eq!(got.body.len(), 5 << 20, "the client gets it whole");
    assert!(got.body == body(5 << 20).as_bytes());
    assert_eq!(store.aborted.load(Ordering::SeqCst), 1);
    let again = ok(&mut svc, get("/big")).await;
    assert_eq!(again.x_cache(), "MISS");
    assert_eq!(store.streamed.load(Ordering::SeqCst), 0);
    assert_eq!(origin.calls(), 2);
}

#[tokio::test]
async fn an_answer_of_unknown_length_is_held_up_to_stream_above_then_streamed() {
    let store = Streaming::new();
    let layer = CacheLayer::builder(config(POLICY))
        .store(store.clone())
        .build()
        .unwrap();
    // No Content-Length: 12 chunks of 256 KiB (3 MiB), or one small one.
    let whole = Bytes::from(body(3 << 20));
    let origin = Origin::new(move |s, _| match s.path() {
        "/long" => Reply {
            chunks: (0..12)
                .map(|i| whole.slice(i * (256 << 10)..(i + 1) * (256 << 10)))
                .collect(),
            ..Reply::ok("")
        },
        _ => Reply::ok(&body(10_000)).header("content-type", "text/plain"),
    });
    let mut svc = tower::Layer::layer(&layer, origin.clone());
    for (path, len) in [("/short", 10_000), ("/long", 3 << 20)] {
        assert_eq!(ok(&mut svc, get(path)).await.x_cache(), "MISS");
        wait_for_sets(svc.cache(), if path == "/short" { 1 } else { 2 }).await;
        let hit = ok(&mut svc, get(path)).await;
        assert_eq!(hit.x_cache(), "HIT", "{path}");
        assert!(hit.body == body(len).as_bytes(), "{path}: the same bytes");
    }
    // The short one stored whole (and compressed: the policy says so).
    assert_eq!(store.puts.load(Ordering::SeqCst), 1);
    let gz = ok(
        &mut svc,
        req("GET", "/short", &[("accept-encoding", "gzip")]),
    )
    .await;
    assert_eq!(gz.header("content-encoding"), Some("gzip"));
    // The long one streamed, its first MiB included.
    assert_eq!(store.streamed.load(Ordering::SeqCst), 1);
}

/// An inner service whose body ends before its `Content-Length` (no error,
/// as an in-process body can) used to be committed cut, and served so.
#[tokio::test]
async fn a_streamed_answer_shorter_than_its_content_length_is_not_kept() {
    let store = Streaming::new();
    let layer = CacheLayer::builder(config(POLICY))
        .store(store.clone())
        .build()
        .unwrap();
    let origin = Origin::new(|_, _| {
        Reply::ok(&body(2 << 20))
            .header("content-type", "text/plain")
            .header("content-length", (3 << 20).to_string())
    });
    let mut svc = tower::Layer::layer(&layer, origin.clone());
    let first = ok(&mut svc, get("/cut")).await;
    assert_eq!(first.x_cache(), "MISS");
    // The write ends (dropped) once the body has; give its task a turn.
    for _ in 0..100 {
        if store.aborted.load(Ordering::SeqCst) > 0 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    assert_eq!(store.aborted.load(Ordering::SeqCst), 1, "the write dropped");
    assert_eq!(
        store.streamed.load(Ordering::SeqCst),
        0,
        "nothing committed"
    );
    let again = ok(&mut svc, get("/cut")).await;
    assert_eq!(again.x_cache(), "MISS", "never a cut body as a hit");
    assert_eq!(origin.calls(), 2);
}

/// With a store that takes whole values only, a large answer is stored as
/// before streamed writes: compressed when the policy says so.
#[tokio::test]
async fn a_store_without_streamed_writes_keeps_large_answers_compressed() {
    let layer = CacheLayer::builder(config(POLICY)).build().unwrap();
    let origin = Origin::new(|_, _| {
        Reply::ok(&body(3 << 20))
            .header("content-type", "text/plain")
            .header("content-length", (3 << 20).to_string())
    });
    let mut svc = tower::Layer::layer(&layer, origin.clone());
    assert_eq!(ok(&mut svc, get("/large")).await.x_cache(), "MISS");
    wait_for_sets(svc.cache(), 1).await;
    let gz = ok(
        &mut svc,
        req("GET", "/large", &[("accept-encoding", "gzip")]),
    )
    .await;
    assert_eq!(gz.x_cache(), "HIT");
    assert_eq!(
        gz.header("content-encoding"),
        Some("gzip"),
        "{:?}",
        gz.headers
    );
    assert!(
        gz.body.len() < 1 << 20,
        "stored compressed: {}",
        gz.body.len()
    );
}

/// A large part (a 206 for a `Range` passed to the origin) goes to a store
/// that takes streamed writes as a large whole does, and answers ranges
/// within it, byte for byte; the whole that completes it streams there too.
#[tokio::test]
async fn a_large_part_and_the_whole_completing_it_are_streamed() {
    let store = Streaming::new();
    let policy = "defaults:\n  stream_above: 1MB\npolicies:\n  - name: all\n    pattern: \"/*\"\n    ttl: 60\n    max_size: 8MB\n    range_passthrough_above: 0\n";
    let layer = CacheLayer::builder(config(policy))
        .store(store.clone())
        .build()
        .unwrap();
    let whole = body(5 << 20);
    let origin = {
        let whole = whole.clone();
        Origin::new(move |s, _| {
            let range = s.header("range").and_then(|r| r.strip_prefix("bytes="));
            let Some((first, last)) = range.and_then(|r| r.split_once('-')) else {
                return Reply::ok(&whole).header("etag", "\"v1\"");
            };
            let first = first.parse::<usize>().unwrap();
            let last = last.parse::<usize>().unwrap_or(whole.len() - 1);
            Reply::ok(&whole[first..=last])
                .status(206)
                .header(
                    "content-range",
                    format!("bytes {first}-{last}/{}", whole.len()),
                )
                .header("content-type", "text/plain")
                .header("etag", "\"v1\"")
        })
    };
    let mut svc = tower::Layer::layer(&layer, origin.clone());
    let first = ok(
        &mut svc,
        req("GET", "/big", &[("range", "bytes=0-3145727")]),
    )
    .await;
    assert_eq!((first.status, first.body.len()), (206, 3 << 20));
    wait_for_sets(svc.cache(), 1).await;
    assert_eq!(
        store.streamed.load(Ordering::SeqCst),
        1,
        "the part streamed"
    );
    assert_eq!(store.puts.load(Ordering::SeqCst), 0, "and not put whole");
    let within = ok(
        &mut svc,
        req("GET", "/big", &[("range", "bytes=1000000-2999999")]),
    )
    .await;
    assert_eq!((within.status, within.x_cache()), (206, "HIT"));
    assert!(
        within.body == whole.as_bytes()[1_000_000..3_000_000],
        "the same bytes"
    );
    assert_eq!(
        within.header("content-range"),
        Some(format!("bytes 1000000-2999999/{}", 5 << 20).as_str())
    );
    assert_eq!(origin.calls(), 1);

    // A whole GET completes the part: the origin sends the rest, and the
    // whole goes to the store as it comes, the part first.
    let completed = ok(&mut svc, get("/big")).await;
    assert_eq!((completed.status, completed.x_cache()), (200, "MISS"));
    assert!(completed.body == whole.as_bytes(), "the exact whole");
    let seen = origin.last_seen().unwrap();
    assert_eq!(seen.header("range"), Some("bytes=3145728-"));
    wait_for_sets(svc.cache(), 2).await;
    assert_eq!(
        store.streamed.load(Ordering::SeqCst),
        2,
        "the whole streamed"
    );
    assert_eq!(store.puts.load(Ordering::SeqCst), 0);
    let hit = ok(&mut svc, get("/big")).await;
    assert_eq!(hit.x_cache(), "HIT");
    assert!(hit.body == whole.as_bytes(), "the exact whole, stored");
    assert_eq!(origin.calls(), 2);
}

/// A large POST answer that is the representation of its own URL
/// (`Content-Location`, explicit freshness) goes to the store as it
/// streams, as a GET's does, and answers the GET of that URL.
#[tokio::test]
async fn a_large_post_answer_kept_for_its_get_is_streamed() {
    let store = Streaming::new();
    let layer = CacheLayer::builder(config(POLICY))
        .store(store.clone())
        .build()
        .unwrap();
    let len = 3 << 20;
    let origin = Origin::new(move |_, _| {
        Reply::ok(&body(len))
            .header("content-type", "text/plain")
            .header("content-length", len.to_string())
            .header("content-location", "/doc")
            .header("cache-control", "max-age=60")
    });
    let mut svc = tower::Layer::layer(&layer, origin.clone());
    let post = ok(&mut svc, req("POST", "/doc", &[])).await;
    assert_eq!((post.status, post.body.len()), (200, len));
    wait_for_sets(svc.cache(), 1).await;
    assert_eq!(store.streamed.load(Ordering::SeqCst), 1, "streamed");
    assert_eq!(store.puts.load(Ordering::SeqCst), 0, "not put whole");
    let get = ok(&mut svc, get("/doc")).await;
    assert_eq!(get.x_cache(), "HIT");
    assert!(get.body == body(len).as_bytes(), "the same bytes");
    assert_eq!(origin.calls(), 1);
}
